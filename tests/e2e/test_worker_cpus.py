"""`PARLEY_WORKER_CPUS` (storage/priority.py): a standalone `parley worker` and its
backends on a local PostgreSQL run only on the CPUs it names; other backends keep every
CPU (docs/deployment.md, "One small host")."""

from __future__ import annotations

import asyncio
import os
import signal

import psycopg
import pytest

from tests.support.live import worker_process


async def test_a_worker_and_its_backends_stay_on_the_cpus_it_is_given(database_url):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"SKIPPED LOUDLY: confining to one CPU needs two; this process has {cpus}")
    cpu = cpus[-1]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT pg_backend_pid(), current_database()")
        own_pid, dbname = await cur.fetchone()
        worker = worker_process(database_url, {"PARLEY_WORKER_CPUS": str(cpu)})
        try:
            confined: list[int] = []
            for _ in range(300):
                assert worker.poll() is None, "the worker exited"
                cur = await conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
                    "AND backend_type = 'client backend'",
                    (dbname, own_pid),
                )
                backends = [pid for (pid,) in await cur.fetchall()]
                confined = [p for p in backends if _affinity(p) == {cpu}]
                if os.sched_getaffinity(worker.pid) == {cpu} and len(confined) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert os.sched_getaffinity(worker.pid) == {cpu}
            assert len(confined) >= 2, "the worker's pooled backends should be confined"
            assert _affinity(own_pid) == set(cpus), "a backend of someone else was touched"
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)


def _affinity(pid: int) -> set[int] | None:
    try:
        return set(os.sched_getaffinity(pid))
    except ProcessLookupError:
        return None
