"""Processes a benchmark measures: the peer (sink or provider look-alike) in its own
process, and CPU accounting for the workers, PostgreSQL backends and the whole machine."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds over all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


SETTLED_BUSY_PCT = 15.0


async def settle(
    max_wait_s: float = 60.0, busy_below: float = SETTLED_BUSY_PCT / 100, window_s: float = 1.0
) -> dict[str, float]:
    """Let the machine go quiet before a measurement: write the kernel's dirty pages out
    (`sync`: a seed or checkpoint just before would otherwise be flushed, with its I/O
    wait and CPU, during the measurement) and wait until a `window_s` sample shows
    the cores less than `busy_below` busy (at most `max_wait_s`; I/O wait counts as
    idle, but `sync` has written out what was pending). Returns what it saw, for the
    record (the caller checks it)."""
    started = time.perf_counter()
    await asyncio.to_thread(os.sync)
    busy = 1.0
    while time.perf_counter() - started < max_wait_s:
        before = machine_cpu()
        await asyncio.sleep(window_s)
        after = machine_cpu()
        total = after[1] - before[1]
        busy = (after[0] - before[0]) / total if total > 0 else 0.0
        if busy < busy_below:
            break
    return {
        "settle_s": round(time.perf_counter() - started, 1),
        "busy_pct_last_window": round(100 * busy, 1),
    }


# Spins until its parent is gone (a bench killed without running its cleanup must not
# leave busy loops behind): the parent is checked every million iterations (~20 ms).
_BUSY_LOOP = """
import os, sys
parent = int(sys.argv[1])  # not getppid() here: the parent may be gone already
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


class KeepAwake:
    """One busy loop per core at Linux SCHED_IDLE (niceness 19) while a latency
    measurement runs: the cores never go idle, so a read is not charged the wake-up of
    an idle (virtual) CPU, in the quiet phase as in the busy one. Measured here, a
    quiet machine answered a primary-key lookup at p50 0.78 ms and a busy one at 0.27 ms.
    SCHED_IDLE tasks run only on CPU time nothing else wants and give way at once to any
    other task (the same as booting with `idle=poll`, without rebooting)."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count if count is not None else (os.cpu_count() or 1)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lowered = True

    def __enter__(self) -> KeepAwake:
        from parley.storage import priority

        for _ in range(self.count):
            proc = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(os.getpid())])
            self.procs.append(proc)
            try:
                priority.lower_process(proc.pid, 19, idle=True)
            except OSError:
                self.lowered = False
        if not self.lowered:  # never compete with what is measured at normal priority
            self.__exit__()
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        self.procs = []

    def describe(self) -> str:
        if not self.count:
            return "off"
        if not self.lowered:
            return "off (could not lower the busy loops' priority)"
        return f"{self.count} SCHED_IDLE busy loop(s)"


def affinity(pid: int) -> list[int] | None:
    """The CPUs process `pid` may run on (None when it is gone)."""
    try:
        return sorted(os.sched_getaffinity(pid))
    except OSError:
        return None


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds of the live PostgreSQL backends connected to this database, by pid."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
    return {pid: process_cpu(pid) for pid in pids}


@dataclass
class CpuWindow:
    """Machine-wide CPU use between `start()` and `stop()`, and that of the PostgreSQL
    backends serving the benchmark's database (read before they disconnect)."""

    database_url: str
    busy: float = 0.0
    total: float = 0.0
    postgres: dict[int, float] = field(default_factory=dict)

    def start(self) -> CpuWindow:
        self.busy, self.total = machine_cpu()
        self.postgres = postgres_cpu(self.database_url)
        return self

    def stop(self) -> dict[str, float]:
        busy, total = machine_cpu()
        used, span = busy - self.busy, total - self.total
        now = postgres_cpu(self.database_url)
        pg = sum(cpu - self.postgres.get(pid, 0.0) for pid, cpu in now.items())
        return {
            "machine_busy_cpu_s": round(used, 2),
            "machine_busy_pct": round(100 * used / span, 1) if span else 0.0,
            "postgres_cpu_s": round(pg, 2),
        }


# -- a peer in its own process --------------------------------------------------------------


class PeerAdapter(Protocol):
    """What the peer process drives: a server plus the ledger we read back."""

    async def start(self) -> dict[str, Any]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    def configure(self, options: dict[str, Any]) -> None: ...
    async def stop(self) -> None: ...


def _peer_main(
    factory: Callable[[dict[str, Any]], PeerAdapter], options: dict[str, Any], conn: Any
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us through the pipe
    asyncio.run(_peer_loop(factory(options), conn))


async def _peer_loop(peer: PeerAdapter, conn: Any) -> None:
    conn.send(await peer.start())
    done = asyncio.Event()

    def on_command() -> None:
        try:
            command = conn.recv()
        except EOFError:
            done.set()
            return
        if command == "snapshot":
            conn.send({**peer.snapshot(), "cpu_s": round(time.process_time(), 2)})
        elif command == "reset":
            peer.reset()
            conn.send({"cpu_s": round(time.process_time(), 2)})
        elif isinstance(command, tuple) and command[0] == "configure":
            peer.configure(command[1])
            conn.send({})
        else:
            done.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), on_command)
    await done.wait()
    loop.remove_reader(conn.fileno())
    await peer.stop()


class PeerProcess:
    """Run `factory(options)` in a spawned process; talk to it over a pipe."""

    def __init__(
        self, factory: Callable[[dict[str, Any]], PeerAdapter], options: dict[str, Any]
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_peer_main, args=(factory, options, child), name="parley-bench-peer", daemon=True
        )
        self.info: dict[str, Any] = {}

    def __enter__(self) -> PeerProcess:
        self.process.start()
        if not self._conn.poll(60):
            self.process.kill()
            raise RuntimeError("the peer process did not start")
        self.info = self._conn.recv()
        return self

    def call(self, command: str | tuple[str, dict[str, Any]]) -> dict[str, Any]:
        self._conn.send(command)
        if not self._conn.poll(120):
            raise RuntimeError(f"the peer process did not answer {command!r}")
        result: dict[str, Any] = self._conn.recv()
        return result

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# -- Parley's workers -----------------------------------------------------------------------

# Workers read compiled bytecode from here. An installed deployment has its .pyc files;
# a checkout run with PYTHONDONTWRITEBYTECODE=1 and no .pyc in the venv (as on the
# benchmark machines) would otherwise compile every module at each worker start.
