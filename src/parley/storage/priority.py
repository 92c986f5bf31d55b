"""Bulk work yields the CPU: a standalone worker runs at a lower priority and, when
PostgreSQL runs on the same host, so do the database backends serving it.

On a small host that runs everything (API, workers and PostgreSQL on two cores), a
dispatch run keeps every core busy, and about half of the CPU a send costs is spent by
the PostgreSQL backend that writes it. Lowering only the worker process's priority
leaves those backends competing at normal priority with the backends that answer an
agent's inbox. So each new pooled connection of a worker looks up its backend
(`pg_backend_pid()`) and lowers it the same way, only when that process is a backend
of this connection's server on this host: its command line (which PostgreSQL
sets to "postgres: [cluster: ]user database client(port) ...") must name this
connection's client port (TCP), or be a local-socket backend of this user and
database (a Unix socket's title names no port: any backend of that user and database
passes, which is right unless the socket directory is shared into another PID
namespace, where the number would name a different process). Where the OS does not
allow it (a server run by another user, without CAP_SYS_NICE), the worker says so once
and carries on. On a separate database host (the scaled-out deployment) there is
nothing to do.

Two levels (`PARLEY_WORKER_PRIORITY`): `nice` (niceness `PARLEY_WORKER_NICE`) and
`idle` (Linux SCHED_IDLE: run only on CPU time nothing else wants).

Priority decides who runs first, not where: on a 2-core host both cores still take turns
at bulk work, and an agent's read that wakes on a core busy with a send batch waits (the
inbox benchmark measured p95 reads at 2.5-5x their quiet value with dispatch at nice 5
or SCHED_IDLE, even rate-limited to 200 SMS/s). `PARLEY_WORKER_CPUS` confines the worker
and its local backends to a set of CPUs (Linux `sched_setaffinity`), leaving the others
to the API and its backends: the same partitioning a systemd `CPUAffinity=` or a cgroup
cpuset gives, done by the worker itself because its backends are PostgreSQL's processes.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})
_warned: list[bool] = []
_MAX_CPUS = 8192  # Linux's own ceiling (CONFIG_NR_CPUS): a list past it is a typo


@dataclass(frozen=True)
class Placement:
    """Where and how urgently a standalone worker's work runs: niceness, SCHED_IDLE, and
    the CPUs it is confined to (None: any)."""

    nice: int = 0
    idle: bool = False
    cpus: frozenset[int] | None = None

    def __bool__(self) -> bool:
        return self.nice > 0 or self.idle or bool(self.cpus)


def lower_process(pid: int, nice: int, idle: bool, cpus: frozenset[int] | None = None) -> None:
    """Give process `pid` (0: this one) at least niceness `nice`, SCHED_IDLE if `idle`,
    and confine it to `cpus` if given: every thread it has now (Linux applies each of
    these per thread; threads started later inherit them). Raises OSError where the OS
    refuses."""
    for tid in _threads(pid):
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        if idle and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        if cpus:
            os.sched_setaffinity(tid, cpus)


def place_process(pid: int, placement: Placement) -> None:
    lower_process(pid, placement.nice, placement.idle, placement.cpus)


def _threads(pid: int) -> list[int]:
    """The thread ids of process `pid` (0: this one); just the pid where /proc has none."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid or 'self'}/task")]
    except OSError:
        return [pid]
    return tids or [pid]


def parse_cpu_list(text: str) -> frozenset[int]:
    """A CPU list as Linux writes one ("1", "2-3", "0,2-3"). Raises ValueError."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"not a CPU list: {text!r} (e.g. 1, 2-3 or 0,2-3)")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ValueError(f"not a CPU list: {text!r} ({part} runs backwards)")
        if last >= _MAX_CPUS:
            raise ValueError(f"not a CPU list: {text!r} (CPU {last} is past {_MAX_CPUS - 1})")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError("an empty CPU list")
    return frozenset(cpus)


def usable_cpus(text: str) -> frozenset[int]:
    """`parse_cpu_list`, checked against the CPUs this process may run on (a worker
    confined to CPUs it cannot use would fail at its first `sched_setaffinity`, or, given
    some it can, silently run on fewer than asked). Raises ValueError naming both."""
    cpus = parse_cpu_list(text)
    available = frozenset(os.sched_getaffinity(0))
    if not cpus <= available:
        raise ValueError(
            f"PARLEY_WORKER_CPUS={text}: CPU(s) {_format(cpus - available)} are not "
            f"available here (this process may use {_format(available)})"
        )
    if cpus == available:
        log.info("PARLEY_WORKER_CPUS=%s names every CPU available: nothing is reserved", text)
    return cpus


def _format(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def is_local_host(host: str | None) -> bool:
    """Whether a libpq host names this machine (a Unix socket directory or loopback)."""
    host = host or ""
    return host.startswith("/") or host in _LOCAL_HOSTS or host.startswith("127.")


def is_local(conn: psycopg.AsyncConnection) -> bool:
    return is_local_host(conn.info.host)


def _client_port(conn: psycopg.AsyncConnection) -> int | None:
    """The local port of a TCP connection (None for a Unix socket)."""
    try:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except OSError:
        return None
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def is_backend_of(pid: int, conn: psycopg.AsyncConnection) -> bool:
    """Whether process `pid` on this host is the backend serving `conn`."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return False
    if not title.startswith("postgres: ") or f" {conn.info.user} {conn.info.dbname} " not in title:
        return False
    port = _client_port(conn)
    if port is None:
        return "[local]" in title
    return f"({port})" in title


def place_backend(conn: psycopg.AsyncConnection, placement: Placement) -> bool:
    """Lower (and confine) this connection's backend like the worker, if it is on this
    host and the OS allows it. True if it was. No query: libpq knows the backend's pid,
    so this also serves connections another library opened (the SQLAlchemy engine's)."""
    if not placement or not is_local(conn):
        return False
    pid = conn.info.backend_pid
    if not pid or not is_backend_of(pid, conn):
        return False
    try:
        place_process(pid, placement)
    except OSError as exc:
        if not _warned:
            _warned.append(True)
            log.warning(
                "cannot lower or confine PostgreSQL backend %s (%s; a server run by another "
                "user needs root or CAP_SYS_NICE): inbox reads may slow down while this "
                "worker dispatches on a shared host",
                pid,
                exc,
            )
        return False
    return True
