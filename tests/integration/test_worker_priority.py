"""A standalone worker's database backends run at its lower CPU priority when PostgreSQL
is on this host (storage/priority.py); nobody else's backend is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from parley.storage import priority
from parley.storage.db import Database


async def _backend_pid(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def _niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _sched_idle(pid: int) -> bool:
    return os.sched_getscheduler(pid) == os.SCHED_IDLE


@pytest.fixture
def may_lower_postgres(database_url: str) -> None:
    """Lowering another user's process needs CAP_SYS_NICE (root); the embedded server
    runs as this user. Anything else cannot run this test."""
    with psycopg.connect(database_url) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    if os.geteuid() != 0 and os.stat(f"/proc/{pid}").st_uid != os.geteuid():
        pytest.fail("cannot lower a PostgreSQL backend run by another user without root")


@pytest.mark.usefixtures("may_lower_postgres")
async def test_a_workers_pooled_backends_take_its_niceness(database_url: str) -> None:
    worker = Database.create(database_url, pool_size=2, backend_nice=7)
    api = Database.create(database_url, pool_size=2)
    await worker.open()
    await api.open()
    try:
        async with worker.pool.connection() as w, api.pool.connection() as a:
            worker_pid, api_pid = await _backend_pid(w), await _backend_pid(a)
            assert _niceness(worker_pid) == 7
            assert _niceness(api_pid) == 0  # the API's backends keep their priority
            assert not _sched_idle(worker_pid)
            # The guard: the pid must be a backend of this user and database on this
            # host; over TCP, the very one serving this connection (its client port).
            assert priority.is_backend_of(worker_pid, w)
            assert not priority.is_backend_of(os.getpid(), w)
            if w.info.host.startswith("/"):  # a Unix socket (the embedded server)
                assert priority.is_backend_of(api_pid, w)  # the title names no port
            else:
                assert not priority.is_backend_of(api_pid, w)
    finally:
        await worker.close()
        await api.close()


@pytest.mark.usefixtures("may_lower_postgres")
async def test_idle_priority_puts_the_backends_in_sched_idle(database_url: str) -> None:
    worker = Database.create(database_url, pool_size=1, backend_nice=5, backend_idle=True)
    await worker.open()
    try:
        async with worker.pool.connection() as w:
            pid = await _backend_pid(w)
            assert _niceness(pid) == 5 and _sched_idle(pid)
    finally:
        await worker.close()


def test_only_a_server_on_this_host_is_considered() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "/var/run/postgresql", ""):
        assert priority.is_local_host(host), host
    for host in ("db.internal.example", "10.0.0.5", "2001:db8::1"):
        assert not priority.is_local_host(host), host


def _last_cpu_or_fail() -> int:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip(f"SKIPPED LOUDLY: confining to one CPU needs two; this process has {cpus}")
    return cpus[-1]


@pytest.mark.usefixtures("may_lower_postgres")
async def test_worker_cpus_confine_the_pools_and_the_engines_backends(database_url: str) -> None:
    from sqlalchemy import text

    cpu = _last_cpu_or_fail()
    worker = Database.create(database_url, pool_size=1, backend_cpus=frozenset({cpu}))
    await worker.open()
    try:
        async with worker.pool.connection() as w:
            pooled = await _backend_pid(w)
        async with worker.session() as session:  # the ORM's connections (services)
            orm = int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        assert os.sched_getaffinity(pooled) == {cpu}
        assert os.sched_getaffinity(orm) == {cpu}
        assert _niceness(pooled) == 0  # confined, not lowered: they are separate
    finally:
        await worker.close()


def test_a_cpu_list_is_read_as_linux_writes_it() -> None:
    assert priority.parse_cpu_list("1") == {1}
    assert priority.parse_cpu_list("2-3") == {2, 3}
    assert priority.parse_cpu_list("0, 2-4") == {0, 2, 3, 4}
    for bad in ("", "one", "3-1", "1-", "-2", "1;2"):
        with pytest.raises(ValueError):
            priority.parse_cpu_list(bad)


def test_cpus_this_process_cannot_use_are_refused_by_name() -> None:
    missing = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ValueError, match=f"CPU\\(s\\) {missing} are not available"):
        priority.usable_cpus(f"0,{missing}")
    first = min(os.sched_getaffinity(0))
    assert priority.usable_cpus(str(first)) == {first}
    with pytest.raises(ValueError, match="past 8191"):
        priority.parse_cpu_list("0-4000000000")


def test_the_setting_is_validated_where_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from parley.config import Settings

    monkeypatch.setenv("PARLEY_WORKER_CPUS", "first")
    with pytest.raises(ValidationError, match="not a CPU list"):
        Settings()
    monkeypatch.setenv("PARLEY_WORKER_CPUS", " 1 ")
    assert Settings().worker_cpus == "1"


def test_a_worker_asked_for_missing_cpus_says_so_and_exits_2(tmp_path: Path) -> None:
    missing = max(os.sched_getaffinity(0)) + 1
    env = {
        **os.environ,
        "PARLEY_WORKER_CPUS": str(missing),
        # Never reached: the setting is checked before anything connects.
        "PARLEY_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
    }
    done = _start_worker(tmp_path, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"PARLEY_WORKER_CPUS={missing}: CPU(s) {missing} are not available" in done.stderr


def test_a_malformed_cpu_list_stops_the_worker_with_a_line_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "PARLEY_WORKER_CPUS": "first", "PARLEY_PORT": "eighty"}
    done = _start_worker(tmp_path, env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "parley: PARLEY_WORKER_CPUS: Value error, not a CPU list: 'first'" in done.stderr
    assert "parley: PARLEY_PORT: " in done.stderr  # every bad setting, one line each


def _start_worker(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`parley worker` run to its exit (these settings stop it before it connects)."""
    return subprocess.run(
        [sys.executable, "-m", "parley.cli", "worker"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
