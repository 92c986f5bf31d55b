"""SMS dispatch kept running in the background while another workload measures.

`parley bench inbox` measures its reads twice: on a quiet machine, and again while
`parley worker` processes send SMS as fast as they can through the `twilio` provider to
the Twilio Messages API peer (the `dispatch-sms` workload's peer, settings and worker
options). The messages are seeded, held, before the quiet phase, so both phases read the
same data set; they are released to the workers only for the second phase, which starts
once sending is under way and ends while messages are still queued (checked: a phase
that ran out of messages to send did not measure "while dispatch runs").

The peer stands in for the provider's cloud, which in production runs on the provider's
machines, not on Parley's. On a 2-core bench host it would take about 0.6 of a core at
normal priority (measured: 29% of all CPU samples while dispatch ran flat out), CPU that
no production deployment gives up to its provider. By default (`peer_priority="idle"`)
it therefore runs at niceness 19 (a CPU weight of 15 against 1,024 at niceness 0): it
answers every request, but the reads hardly compete with it, only with Parley's own
dispatch work (workers and their database backends), as they would in production.
`normal` keeps it at normal priority (the record says which).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from parley.bench import common, dispatch_sms
from parley.bench.processes import PeerProcess, affinity, process_cpu
from parley.storage import priority

# The `dispatch-sms` workload's worker options (common.base_parser's defaults).
WORKER_OPTIONS = argparse.Namespace(
    concurrency=8,
    parallelism=200,
    batch_size=400,
    retry_base_seconds=0.2,
    job_poll_seconds=0.1,
)
SID = dispatch_sms.account_sid(9)
SENT_COUNT = (
    "SELECT count(*) FILTER (WHERE NOT in_flight), count(*) FILTER (WHERE in_flight) "
    "FROM messages WHERE organization_id = %s"
)
# What is left unsent is cancelled, with its jobs, so that a later run on the same data
# set (--reuse) does not send it (its workers, or reconciliation).
CANCEL_LEFTOVERS = [
    "UPDATE messages SET status = 'cancelled', status_changed_at = now() "
    "WHERE organization_id = %(org)s AND in_flight",
    "DELETE FROM procrastinate_jobs WHERE status = 'todo' AND task_name = 'parley:send_messages'",
]


@dataclass
class BackgroundDispatch:
    """Seed (held), start, sample and stop a dispatch run; `figures` says what it did."""

    container: Any
    count: int
    workers: int
    log_dir: Path
    seed: int = 7
    peer_priority: str = "idle"
    # Per-second rate limit of the provider account (None: unlimited, as fast as the
    # workers can send).
    rate: float | None = None
    # CPUs the workers (PARLEY_WORKER_CPUS, their local backends with them) and the peer
    # are confined to; None: any CPU.
    cpus: str | None = None
    organization_id: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    _peer: PeerProcess | None = None
    _fleet: common.WorkerFleet | None = None
    _window_start: tuple[float, int] | None = None
    _cpu_at_start: float = 0.0
    _peer_cpu_at_start: float = 0.0

    async def prepare(self) -> None:
        """Start the peer and seed the messages with held jobs (no clock runs yet)."""
        self._peer = PeerProcess(
            dispatch_sms.peer_factory,
            {"accounts": {SID: dispatch_sms.AUTH_TOKEN}, "seed": self.seed},
        ).__enter__()
        applied = self.peer_priority
        if self.peer_priority == "idle":
            pid = self._peer.process.pid
            assert pid is not None
            try:
                # Niceness 19, not SCHED_IDLE: the bench's own SCHED_IDLE busy loops
                # (processes.KeepAwake) must give way to it, as to everything else.
                priority.lower_process(pid, 19, idle=False)
            except OSError as exc:  # recorded, not hidden: the figures differ
                applied = f"normal (could not lower it: {exc})"
        self.figures["peer_priority"] = applied
        self.figures["cpus"] = self.cpus
        if self.cpus:
            # The peer stands in for the provider's own machines: kept off the CPUs the
            # API is left, beside the workers it answers (every thread of it).
            pid = self._peer.process.pid
            assert pid is not None
            priority.lower_process(pid, 0, False, priority.parse_cpu_list(self.cpus))
        self.figures["account_rate_per_s"] = self.rate
        started = time.perf_counter()
        self.organization_id = (
            await dispatch_sms.seed_accounts(
                self.container,
                self._peer.info["base_url"],
                [(SID, self.count)],
                WORKER_OPTIONS.batch_size,
                self.rate,
                None,
                max(1, dispatch_sms.RAW_CONCURRENCY // self.workers),
            )
        )[0]
        self.figures["seed_s"] = round(time.perf_counter() - started, 1)

    async def start(self, conn: psycopg.AsyncConnection[Any], warm_up_sent: int) -> None:
        """Launch the workers, release the messages, and return once `warm_up_sent` are
        sent (the workers are past start-up and sending steadily)."""
        from parley.bench.seed import release

        url = self.container.db.url
        env = common.worker_env(WORKER_OPTIONS)
        if self.cpus:
            env["PARLEY_WORKER_CPUS"] = self.cpus
        self._fleet = common.WorkerFleet(url, self.workers, env, self.log_dir)
        self._fleet.warm()
        self._fleet.start()
        await common.wait_for_workers(conn, self.workers, self._fleet, 120)
        await release(conn)
        deadline = time.perf_counter() + 120
        while (await self._counts(conn))[0] < warm_up_sent:
            self._fleet.check()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"fewer than {warm_up_sent} sent after 120 s")
            await asyncio.sleep(0.1)
        self.figures["placement"] = await self._placement(conn)
        self._window_start = (time.perf_counter(), (await self._counts(conn))[0])
        self._cpu_at_start = self._fleet.cpu_seconds()
        self._peer_cpu_at_start = self._peer_cpu()

    async def stop(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
        """End the window: what was sent during it, and whether sending lasted through it."""
        assert self._fleet is not None and self._window_start is not None
        try:
            self._fleet.check()
            sent, in_flight = await self._counts(conn)
            elapsed = time.perf_counter() - self._window_start[0]
            during = sent - self._window_start[1]
            self.figures.update(
                {
                    "messages": self.count,
                    "workers": self.workers,
                    "worker_env": common.worker_env(WORKER_OPTIONS),
                    "window_s": round(elapsed, 1),
                    "sent_during_window": during,
                    "sent_per_s_during_window": round(during / elapsed, 1) if elapsed else 0.0,
                    "in_flight_at_end": in_flight,
                    "worker_cpu_during_window_s": round(
                        self._fleet.cpu_seconds() - self._cpu_at_start, 2
                    ),
                    "peer_cpu_during_window_s": round(
                        self._peer_cpu() - self._peer_cpu_at_start, 2
                    ),
                }
            )
        finally:
            self.close()
            for sql in CANCEL_LEFTOVERS:
                await conn.execute(sql, {"org": self.organization_id})
        return self.figures

    async def _placement(self, conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
        """Where the workers, every database backend they hold (by the application name
        each worker gives its connections, "parley worker <pid>") and the peer actually
        run, read back from the OS: what `cpus` asked for is only a request (a backend
        run by another user cannot be moved without root)."""
        assert self._fleet is not None and self._peer is not None
        workers = [p.pid for p in self._fleet.popen]
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = ANY(%s)",
            ([f"parley worker {pid}" for pid in workers],),
        )
        backends = [int(pid) for (pid,) in await cur.fetchall()]
        wanted = sorted(priority.parse_cpu_list(self.cpus)) if self.cpus else None
        on_workers = [affinity(pid) for pid in workers]
        on_backends = [affinity(pid) for pid in backends]
        on_peer = affinity(self._peer.process.pid or 0)
        return {
            "wanted": wanted,
            "workers": on_workers,
            "worker_backends": on_backends,
            "peer": on_peer,
            "all_as_wanted": wanted is not None
            and bool(backends)
            and all(a == wanted for a in [*on_workers, *on_backends, on_peer]),
        }

    def _peer_cpu(self) -> float:
        pid = self._peer.process.pid if self._peer is not None else None
        return process_cpu(pid) if pid is not None else 0.0

    def close(self) -> None:
        if self._fleet is not None:
            self._fleet.stop()
            self._fleet = None
        if self._peer is not None:
            self._peer.__exit__(None, None, None)
            self._peer = None

    async def _counts(self, conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
        cur = await conn.execute(SENT_COUNT, (self.organization_id,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
