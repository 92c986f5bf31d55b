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
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from parley.bench.processes import (
    CpuWindow,
    PeerProcess,
    process_cpu,
)
from parley.bench.seed import release

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
    p.add_argument(
        "--database-url",
        help="use this database (default: "
        "$PARLEY_BENCH_DATABASE_URL, else a temporary database on "
        "$PARLEY_TEST_DATABASE_URL's server, else embedded PostgreSQL)",
    )
    p.add_argument(
        "--results",
        type=Path,
        help=f"JSON-lines file to append to (default bench/results/{workload}.jsonl)",
    )
    # One worker process per core, Parley's default jobs per process, and bigger batches
    # and chunks than the defaults (200/64): fewer transactions per message.
    p.add_argument("--workers", type=int, default=2, help="`parley worker` processes")
    p.add_argument("--concurrency", type=int, default=8, help="jobs per worker process")
    p.add_argument("--batch-size", type=int, default=400, help="messages per dispatch job")
    p.add_argument("--parallelism", type=int, default=200, help="messages per claim chunk")
    # Low so that retries do not dominate the run (production default: 2 s).
    p.add_argument("--retry-base-seconds", type=float, default=0.2)
    # Scaled down with the retry base (production default 0.5 s): how late an idle worker
    # may pick up a retry that came due; the last retries decide when a run ends.
    p.add_argument("--job-poll-seconds", type=float, default=0.1)
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

    # Keep the embedded server's runtime directory (its lock) out of the data directory
    # we delete: its exit hook would recreate it there.
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
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


def _first(path: str, prefix: str) -> str | None:
    """The rest of the first line of `path` starting with `prefix` (None if unreadable)."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :].strip(" \t:")
    return None


def environment(database_url: str) -> dict[str, Any]:
    """The machine (and how loaded it is) and the versions every result records."""
    mem_kib = (_first("/proc/meminfo", "MemTotal:") or "0 kB").split()[0]
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        # The server settings that move these figures (the buffer pool above all: a
        # 1M-message data set does not fit PostgreSQL's default 128 MB).
        settings: dict[str, str] = dict(
            conn.execute(
                "SELECT name, current_setting(name) FROM pg_settings "
                "WHERE name = ANY(%s) ORDER BY name",
                (list(_PG_SETTINGS),),
            ).fetchall()
        )
    versions = {"python": platform.python_version(), "postgresql": row[0] if row else None}
    for lib in _LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    machine = {
        "nproc": os.cpu_count(),
        "cpu_model": _first("/proc/cpuinfo", "model name") or platform.processor(),
        "ram_gib": round(int(mem_kib) / 1024 / 1024, 1),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    return {"machine": machine, "versions": versions, "postgresql_settings": settings}


_PG_SETTINGS = (
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "max_wal_size",
    "synchronous_commit",
    "jit",
)


PYCACHE = Path(tempfile.gettempdir()) / "parley-bench-pycache"
WARM_UP = (
    "import os, parley.cli, parley.runtime, parley.bootstrap, parley.dispatch.jobs, "
    "parley.dispatch.pipeline, parley.channels.registry, parley.channels.smtp.provider, "
    "parley.channels.twilio.provider; from parley.storage.migrate import upgrade; "
    "upgrade(os.environ['PARLEY_DATABASE_URL'])"
)


_warmed: list[bool] = []
SUMMARY_SQL = """
WITH m AS (SELECT * FROM messages WHERE organization_id = ANY(%s::uuid[]))
SELECT (SELECT json_object_agg(status, n) FROM (SELECT status, count(*) n FROM m GROUP BY 1) s),
       (SELECT json_object_agg(code, n) FROM (SELECT coalesce(error_code, '-') code, count(*) n
                                             FROM m WHERE status = 'failed' GROUP BY 1) f),
       count(*) FILTER (WHERE status = 'sent' AND attempts > 1), coalesce(sum(attempts), 0),
       coalesce(max(attempts), 0), extract(epoch FROM min(sent_at)),
       extract(epoch FROM max(sent_at))
FROM m
"""


@dataclass
class WorkerFleet:
    """`python -m parley.cli worker` processes, as production runs them."""

    database_url: str
    processes: int
    env: dict[str, str]
    log_dir: Path
    popen: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _environ(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "PARLEY_DATABASE_URL": self.database_url}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env | {"PYTHONPYCACHEPREFIX": str(PYCACHE)}

    def warm(self) -> None:
        """Compile what a worker imports into the bytecode cache (before any clock; modules
        changed since an earlier run recompile at worker start, in milliseconds)."""
        if not _warmed and not PYCACHE.is_dir():
            _warmed.append(True)
            command = [sys.executable, "-c", WARM_UP]
            subprocess.run(command, env=self._environ(), check=True, capture_output=True)

    def start(self) -> None:
        for i in range(self.processes):
            with (self.log_dir / f"worker-{i}.log").open("ab") as log:
                command = [sys.executable, "-m", "parley.cli", "worker"]
                self.popen.append(
                    subprocess.Popen(
                        command,
                        env=self._environ(),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        cwd=self.log_dir,
                    )
                )

    def check(self) -> None:
        for i, p in enumerate(self.popen):
            if p.poll() is not None:
                log = (self.log_dir / f"worker-{i}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"worker {i} exited with {p.returncode}:\n{log}")

    def cpu_seconds(self) -> float:
        return round(sum(process_cpu(p.pid) for p in self.popen), 2)

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


async def wait_for_workers(
    conn: psycopg.AsyncConnection, count: int, fleet: WorkerFleet, limit_s: float
) -> None:
    """Until `count` workers have registered (they do once they listen for jobs)."""
    deadline = time.perf_counter() + limit_s
    while True:
        cur = await conn.execute("SELECT count(*) FROM procrastinate_workers")
        if int((await cur.fetchone() or (0,))[0]) >= count:
            return
        fleet.check()
        if time.perf_counter() > deadline:
            raise TimeoutError("workers did not start")
        await asyncio.sleep(0.02)


# `in_flight` (status queued, sending or scheduled: IN_FLIGHT) has a partial index
# (migration 0005); organization_id compared as text keeps the planner off the
# organization index, which would walk every finished message of the run.
IN_FLIGHT_COUNT = (
    "SELECT count(*) FROM messages WHERE in_flight AND organization_id::text = ANY(%s)"
)
ANY_IN_FLIGHT = (
    "SELECT EXISTS (SELECT 1 FROM messages WHERE in_flight AND organization_id::text = ANY(%s))"
)


async def _in_flight(conn: psycopg.AsyncConnection, orgs: Sequence[str]) -> int:
    cur = await conn.execute(IN_FLIGHT_COUNT, (list(orgs),))
    return int((await cur.fetchone() or (0,))[0])


async def _any_in_flight(conn: psycopg.AsyncConnection, orgs: Sequence[str]) -> bool:
    cur = await conn.execute(ANY_IN_FLIGHT, (list(orgs),))
    return bool((await cur.fetchone() or (False,))[0])


async def run_parley(
    args: argparse.Namespace, url: str, orgs: Sequence[str], peer: PeerProcess, log_dir: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Launch the workers on the already-queued messages of `orgs` and wait until every
    one is terminal: Parley's end-to-end figures, and the peer's ledger for the phase."""
    before = peer.call("reset")
    fleet = WorkerFleet(url, args.workers, worker_env(args), log_dir)
    fleet.warm()
    timeline: list[tuple[float, int]] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        window = CpuWindow(url).start()
        launched, launched_perf = time.time(), time.perf_counter()
        fleet.start()
        try:
            # Workers are long-running services: the clock starts when the queued
            # messages (seeded with held jobs) are released to workers that are up, and
            # runs to the poll that finds nothing in flight. The figure from launch,
            # interpreter start-up included, is recorded too.
            await wait_for_workers(conn, args.workers, fleet, args.timeout)
            released_after = time.perf_counter() - launched_perf
            # The workers' start-up (imports, container, connections) is in worker_cpu_s
            # but outside the measured interval: this is how much of it came before.
            worker_cpu_at_release = fleet.cpu_seconds()
            await release(conn)
            started = time.perf_counter()
            # Every 50 ms: is anything still in flight? (an index probe). Once a second:
            # how many, for the timeline. A count every 50 ms cost PostgreSQL 3-9 ms
            # of CPU per poll at 20k in flight (6-18% of a core), a load the raw
            # phase does not carry.
            await conn.execute("SET enable_seqscan = off")  # this connection only:
            await conn.execute("SET enable_bitmapscan = off")  # use the partial index
            while True:
                elapsed = time.perf_counter() - started
                if not timeline or elapsed - timeline[-1][0] >= 1.0:
                    left = await _in_flight(conn, orgs)
                    timeline.append((round(elapsed, 2), left))
                else:
                    left = 1 if await _any_in_flight(conn, orgs) else 0
                if left == 0:
                    elapsed = time.perf_counter() - started
                    if timeline[-1][1] != 0:
                        timeline.append((round(elapsed, 2), 0))
                    break
                if elapsed > args.timeout:
                    raise TimeoutError(f"messages still in flight after {elapsed:.0f} s")
                fleet.check()
                await asyncio.sleep(0.05)
            await conn.execute("RESET enable_seqscan")
            await conn.execute("RESET enable_bitmapscan")
            worker_cpu, machine = fleet.cpu_seconds(), window.stop()
        finally:
            fleet.stop()
        cur = await conn.execute(SUMMARY_SQL, (list(orgs),))
        row = await cur.fetchone()
    assert row is not None
    after = peer.call("snapshot")
    statuses, sent = row[0] or {}, (row[0] or {}).get("sent", 0)
    figures = {
        "elapsed_s": round(elapsed, 3),
        "sent": sent,
        "total": sum(statuses.values()),
        "sent_per_s": round(sent / elapsed, 1),
        "workers_ready_after_launch_s": round(released_after, 2),
        "sent_per_s_from_launch": round(sent / (elapsed + released_after), 1),
        "statuses": statuses,
        "failed_by_code": row[1] or {},
        "sent_after_retry": row[2],
        "attempts_total": int(row[3]),
        "max_attempts": row[4],
        "first_sent_s": round(float(row[5]) - launched, 2) if row[5] else None,
        "last_sent_s": round(float(row[6]) - launched, 2) if row[6] else None,
        "worker_cpu_s": worker_cpu,
        "worker_cpu_after_release_s": round(worker_cpu - worker_cpu_at_release, 2),
        "peer_cpu_s": round(after["cpu_s"] - before["cpu_s"], 2),
        **machine,
        "timeline": timeline,
    }
    return figures, after


NOTES = (
    "Parley's figure: sent messages / wall time from releasing the already-queued messages "
    "to running `parley worker` processes (their jobs are written held, then made due and "
    "notified, as an enqueue would) until none is in flight, retries included; "
    "sent_per_s_from_launch also counts process start-up; worker bytecode is compiled "
    "beforehand, as in an installed deployment",
    "retry base 0.2 s (production default 2 s) so that backoff does not dominate the run; "
    "idle workers poll for due retries every 0.1 s (production default 0.5 s)",
)


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    """The settings the worker processes run with (all stated in the record)."""
    return {
        "PARLEY_WORKER_CONCURRENCY": str(args.concurrency),
        "PARLEY_DISPATCH_PARALLELISM": str(args.parallelism),
        "PARLEY_DISPATCH_BATCH_SIZE": str(args.batch_size),
        "PARLEY_RETRY_BASE_SECONDS": str(args.retry_base_seconds),
        "PARLEY_RETRY_MAX_SECONDS": "5",
        "PARLEY_JOB_POLL_SECONDS": str(args.job_poll_seconds),
        "PARLEY_LOG_LEVEL": "WARNING",
    }


# -- gates and the results file -------------------------------------------------------------


def gate(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"gate": name, "passed": bool(passed), "detail": detail}


def check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"check": name, "passed": bool(passed), "detail": detail}


def new_record(workload: str, env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return {
        "workload": workload,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        **env,
        "quick": bool(args.quick),
        "argv": sys.argv[1:],
        "notes": list(NOTES),
    }


def execute(
    workload: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, dict[str, Any], Any], Awaitable[None]],
) -> int:
    """Provide a database and one container (one per process: the job app's task
    blueprint can be registered only once), run the workload, write its record."""
    with bench_database(args.database_url) as (url, where):
        record = new_record(workload, environment(url), args)
        record["database"] = where

        async def main() -> None:
            from parley.bootstrap import create_container
            from parley.config import Settings

            container = await create_container(Settings(database_url=url), migrate=False)
            try:
                await run(args, record, container)
            finally:
                await container.close()

        try:
            asyncio.run(main())
        except Exception as exc:  # still write what we have, and fail
            record["error"] = f"{type(exc).__name__}: {exc}"
    return finish(record, args.results)


def finish(record: dict[str, Any], results: Path | None) -> int:
    """Print the record, append it to the results file; exit status 1 if anything failed."""
    verdicts = record.get("gates", []) + record.get("checks", [])
    record["passed"] = all(v["passed"] for v in verdicts) and not record.get("error")
    record["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
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
