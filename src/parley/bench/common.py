"""What the dispatch benchmarks share: arguments, a throw-away database, peers in their
own process, worker processes, CPU accounting, and the results file.

Honesty rules the workloads rely on (reference/performance.md): the raw primitive and
Parley talk to the same peer process in the same run; Parley's figure is end to end,
from launching `parley worker` processes on already-queued messages until the database
says every message is terminal; a failed gate still writes its record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg

IN_FLIGHT = ("queued", "sending", "scheduled")
_LIBRARIES = ("aiosmtplib", "aiohttp", "procrastinate", "psycopg", "aiosmtpd")


def project_root() -> Path:
    """The checkout holding this package (for `bench/results/`), else the cwd."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "parley").is_dir():
            return parent
    return Path.cwd()


def base_parser(workload: str, description: str, default_count: int) -> argparse.ArgumentParser:
    """Options every dispatch workload takes; workloads add their own."""
    p = argparse.ArgumentParser(prog=f"parley bench {workload}", description=description)
    p.add_argument("--count", type=int, default=default_count, help="messages per phase")
    p.add_argument("--quick", action="store_true", help="smoke run: 500 messages")
    p.add_argument("--database-url", help="use this database (default: "
                   "$PARLEY_BENCH_DATABASE_URL, else a temporary database on "
                   "$PARLEY_TEST_DATABASE_URL's server, else embedded PostgreSQL)")
    p.add_argument("--results", type=Path, help="JSON-lines file to append to "
                   f"(default bench/results/{workload}.jsonl)")
    p.add_argument("--workers", type=int, default=2, help="`parley worker` processes")
    p.add_argument("--concurrency", type=int, default=4, help="jobs per worker process")
    p.add_argument("--batch-size", type=int, default=200, help="messages per dispatch job")
    p.add_argument("--parallelism", type=int, default=100, help="sends in flight per job")
    p.add_argument("--retry-base-seconds", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this long")
    p.add_argument("--seed", type=int, default=7, help="seed of the peer's failures")
    return p


# -- the database -------------------------------------------------------------------------


def _swap_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


@contextlib.contextmanager
def bench_database(explicit: str | None) -> Iterator[tuple[str, str]]:
    """(url, where) of a migrated database; databases and servers we create are removed."""
    from parley.storage.migrate import upgrade

    logging.getLogger("alembic").setLevel(logging.WARNING)
    given = explicit or os.environ.get("PARLEY_BENCH_DATABASE_URL")
    if given:
        upgrade(given)
        yield given, "given database"
        return
    server_url = os.environ.get("PARLEY_TEST_DATABASE_URL")
    if server_url:
        name = f"parley_bench_{uuid.uuid4().hex[:10]}"
        admin = _swap_db(server_url, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = _swap_db(server_url, name)
            upgrade(url)
            yield url, f"temporary database {name}"
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    from parley.storage import embedded

    tmp = Path(tempfile.mkdtemp(prefix="parley-bench-pg-"))
    server = embedded.start(tmp)
    try:
        url = server.url()
        upgrade(url)
        yield url, "embedded PostgreSQL in a temporary directory"
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- the machine and CPU accounting ---------------------------------------------------------


def environment(database_url: str) -> dict[str, Any]:
    """The machine and the versions every result records."""
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    versions = {"python": platform.python_version(), "postgresql": row[0] if row else None}
    for lib in _LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model, "ram_gib": ram_gib,
                    "platform": platform.platform()},
        "versions": versions,
    }


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds over all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


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
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()]
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
        return {"machine_busy_cpu_s": round(used, 2),
                "machine_busy_pct": round(100 * used / span, 1) if span else 0.0,
                "postgres_cpu_s": round(pg, 2)}


# -- a peer in its own process --------------------------------------------------------------


class PeerAdapter(Protocol):
    """What the peer process drives: a server plus the ledger we read back."""

    async def start(self) -> dict[str, Any]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def reset(self) -> None: ...
    async def stop(self) -> None: ...


def _peer_main(factory: Callable[[dict[str, Any]], PeerAdapter], options: dict[str, Any],
               conn: Any) -> None:
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
        else:
            done.set()

    loop = asyncio.get_running_loop()
    loop.add_reader(conn.fileno(), on_command)
    await done.wait()
    loop.remove_reader(conn.fileno())
    await peer.stop()


class PeerProcess:
    """Run `factory(options)` in a spawned process; talk to it over a pipe."""

    def __init__(self, factory: Callable[[dict[str, Any]], PeerAdapter],
                 options: dict[str, Any]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_peer_main, args=(factory, options, child),
                                   name="parley-bench-peer", daemon=True)
        self.info: dict[str, Any] = {}

    def __enter__(self) -> PeerProcess:
        self.process.start()
        if not self._conn.poll(60):
            self.process.kill()
            raise RuntimeError("the peer process did not start")
        self.info = self._conn.recv()
        return self

    def call(self, command: str) -> dict[str, Any]:
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
PYCACHE = Path(tempfile.gettempdir()) / "parley-bench-pycache"
WARM_IMPORTS = ("import parley.cli, parley.runtime, parley.bootstrap, parley.dispatch.jobs, "
                "parley.dispatch.pipeline, parley.channels.registry, "
                "parley.channels.smtp.provider, parley.channels.twilio.provider")


@dataclass
class WorkerFleet:
    """`python -m parley.cli worker` processes, as production runs them."""

    database_url: str
    processes: int
    env: dict[str, str]
    log_dir: Path
    popen: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _environ(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "PARLEY_DATABASE_URL": self.database_url,
               "PYTHONPYCACHEPREFIX": str(PYCACHE)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def warm(self) -> None:
        """Compile what a worker imports into the bytecode cache (before any clock)."""
        for command in (["-c", WARM_IMPORTS], ["-m", "parley.cli", "migrate"]):
            subprocess.run([sys.executable, *command], env=self._environ(), check=True,  # noqa: S603
                           cwd=self.log_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        env = self._environ()
        for i in range(self.processes):
            log = (self.log_dir / f"worker-{i}.log").open("ab")
            self.popen.append(subprocess.Popen(
                [sys.executable, "-m", "parley.cli", "worker"], env=env, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.log_dir))

    def check(self) -> None:
        for i, p in enumerate(self.popen):
            if p.poll() is not None:
                raise RuntimeError(f"worker {i} exited with {p.returncode}:\n{self.log_tail(i)}")

    def cpu_seconds(self) -> float:
        return round(sum(process_cpu(p.pid) for p in self.popen), 2)

    def log_tail(self, index: int, chars: int = 3000) -> str:
        path = self.log_dir / f"worker-{index}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for p in self.popen:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.popen:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


async def wait_terminal(
    database_url: str, org_ids: Sequence[str], fleet: WorkerFleet, *, started: float,
    timeout: float, interval: float = 0.05,
) -> tuple[float, list[tuple[float, int]]]:
    """Poll until no message of `org_ids` is in flight; returns (seconds since `started`,
    a once-a-second timeline of (seconds, messages in flight))."""
    timeline: list[tuple[float, int]] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT count(*) FROM messages WHERE status = ANY(%s) "
                "AND organization_id = ANY(%s::uuid[])", (list(IN_FLIGHT), list(org_ids)))
            row = await cur.fetchone()
            left = int(row[0]) if row else 0
            elapsed = time.perf_counter() - started
            if not timeline or elapsed - timeline[-1][0] >= 1.0 or left == 0:
                timeline.append((round(elapsed, 2), left))
            if left == 0:
                return elapsed, timeline
            if elapsed > timeout:
                raise TimeoutError(f"{left} messages still in flight after {timeout:.0f} s")
            fleet.check()
            await asyncio.sleep(interval)


async def message_summary(database_url: str, org_ids: Sequence[str],
                          launched: float) -> dict[str, Any]:
    """Final statuses, retries and failure codes of the workload's messages, and when the
    first and last were sent (seconds after `launched`, a `time.time()`)."""
    orgs = list(org_ids)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT status, count(*) FROM messages WHERE organization_id = ANY(%s::uuid[]) "
            "GROUP BY status", (orgs,))
        statuses = {s: n for s, n in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent' AND attempts > 1), "
            "coalesce(sum(attempts), 0), coalesce(max(attempts), 0), "
            "extract(epoch FROM min(sent_at)), extract(epoch FROM max(sent_at)) "
            "FROM messages WHERE organization_id = ANY(%s::uuid[])", (orgs,))
        row = await cur.fetchone()
        assert row is not None
        cur = await conn.execute(
            "SELECT coalesce(error_code, '-'), count(*) FROM messages "
            "WHERE status = 'failed' AND organization_id = ANY(%s::uuid[]) GROUP BY 1", (orgs,))
        failed = {code: n for code, n in await cur.fetchall()}
    return {"statuses": statuses, "sent_after_retry": row[0], "attempts_total": int(row[1]),
            "max_attempts": row[2], "failed_by_code": failed,
            "first_sent_s": round(float(row[3]) - launched, 2) if row[3] else None,
            "last_sent_s": round(float(row[4]) - launched, 2) if row[4] else None}


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    """The settings the worker processes run with (all stated in the record)."""
    return {
        "PARLEY_WORKER_CONCURRENCY": str(args.concurrency),
        "PARLEY_DISPATCH_PARALLELISM": str(args.parallelism),
        "PARLEY_DISPATCH_BATCH_SIZE": str(args.batch_size),
        "PARLEY_RETRY_BASE_SECONDS": str(args.retry_base_seconds),
        "PARLEY_RETRY_MAX_SECONDS": "5",
        "PARLEY_LOG_LEVEL": "WARNING",
    }


# -- gates and the results file -------------------------------------------------------------


def gate(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"gate": name, "passed": bool(passed), "detail": detail}


def check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "passed": bool(passed), "detail": detail}


def new_record(workload: str, env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return {"workload": workload, "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            **env, "quick": bool(args.quick), "argv": sys.argv[1:]}


def finish(record: dict[str, Any], results: Path | None) -> int:
    """Print the record, append it to the results file; exit status 1 if anything failed."""
    verdicts = record.get("gates", []) + record.get("checks", [])
    record["passed"] = all(v["passed"] for v in verdicts) and not record.get("error")
    path = results or project_root() / "bench" / "results" / f"{record['workload']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"\n== {record['workload']} ({'PASS' if record['passed'] else 'FAIL'}) ==")
    for line in record.get("summary", []):
        print("  " + line)
    for v in verdicts:
        name = v.get("gate") or v.get("check")
        print(f"  [{'pass' if v['passed'] else 'FAIL'}] {name}: {v['detail']}")
    if record.get("error"):
        print(f"  error: {record['error']}")
    print(f"  record appended to {path}")
    return 0 if record["passed"] else 1
