"""A standalone worker's database backends run at its lower CPU priority when PostgreSQL
is on this host (storage/priority.py); nobody else's backend is touched."""

from __future__ import annotations

import os

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
