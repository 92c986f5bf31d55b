"""`PARLEY_WORKER_CPUS` (storage/priority.py): a standalone `parley worker` and every
backend it opens on a local PostgreSQL (its pool's, the job queue's LISTEN connection)
run only on the CPUs it names; other backends, and an embedded server the worker starts
itself, keep every CPU (docs/deployment.md, "One machine")."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.live import worker_process


def _cpus() -> tuple[set[int], int]:
    cpus = set(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"SKIPPED LOUDLY: confining to one CPU needs two; this process has {cpus}")
    return cpus, max(cpus)


def _affinity(pid: int) -> set[int] | None:
    try:
        return set(os.sched_getaffinity(pid))
    except ProcessLookupError:
        return None


async def _others(conn: psycopg.AsyncConnection, own: int) -> list[int]:
    cur = await conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s "
        "AND backend_type = 'client backend'",
        (own,),
    )
    return [pid for (pid,) in await cur.fetchall()]


async def test_a_worker_and_all_its_backends_stay_on_the_cpus_it_is_given(database_url):
    cpus, cpu = _cpus()
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        own = conn.info.backend_pid
        before = await _others(conn, own)  # other tests' connections, if any: not ours
        worker = worker_process(database_url, {"PARLEY_WORKER_CPUS": str(cpu)})
        try:
            mine: list[int] = []
            listening = False
            for _ in range(300):
                assert worker.poll() is None, "the worker exited"
                mine = [p for p in await _others(conn, own) if p not in before]
                cur = await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) "
                    "AND query LIKE 'LISTEN %%'",
                    (mine,),
                )
                # The job queue's LISTEN connection is the last one a worker opens.
                listening = (await cur.fetchone())[0] > 0
                if listening and len(mine) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert os.sched_getaffinity(worker.pid) == {cpu}
            assert listening and len(mine) >= 2, mine
            placed = {pid: _affinity(pid) for pid in mine}
            assert all(a in ({cpu}, None) for a in placed.values()), placed
            assert _affinity(own) == cpus, "a backend of someone else was touched"
            # Told apart in pg_stat_activity (the inbox benchmark reads placement by it).
            cur = await conn.execute(
                "SELECT DISTINCT application_name FROM pg_stat_activity WHERE pid = ANY(%s)",
                (mine,),
            )
            assert [n for (n,) in await cur.fetchall()] == [f"parley worker {worker.pid}"]
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)


def test_an_embedded_server_started_by_a_confined_worker_keeps_every_cpu(tmp_path: Path):
    cpus, cpu = _cpus()
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_DATABASE_URL"}
    env.update({"PARLEY_WORKER_CPUS": str(cpu), "PARLEY_DATA_DIR": str(data_dir)})
    worker = subprocess.Popen(
        [sys.executable, "-m", "parley.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        pidfile = data_dir / "pgdata" / "postmaster.pid"
        for _ in range(600):  # initdb and start-up: seconds
            assert worker.poll() is None, "the worker exited"
            if pidfile.exists() and _affinity(worker.pid) == {cpu}:
                break
            time.sleep(0.1)
        assert _affinity(worker.pid) == {cpu}
        postmaster = int(pidfile.read_text().split()[0])
        assert _affinity(postmaster) == cpus
        assert os.getpriority(os.PRIO_PROCESS, postmaster) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
