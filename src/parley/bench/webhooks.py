"""`parley bench webhooks`: Twilio status callbacks against a running `parley api`.

N outbound SMS messages are seeded as already `sent` with Twilio message ids. Each gets
three signed status callbacks (sending, sent, then delivered -- or undelivered with
error 30003 for a share of them), shuffled so that `delivered` often arrives before
`sent`, plus a share of exact duplicates (Twilio retries). A load generator in its own
process posts them over keep-alive connections to `/webhooks/twilio/{account}` on a
real `parley api` process, and the same generator posts to a bare endpoint on the same
stack (`parley.bench.bare_api`: Parley's app, one route that only reads the body).

Phases, all in one run: warm-up; bare at full speed; Parley at full speed (the ratio);
Parley at 80% of its full speed, open loop (the latency gate); bare again (the better
bare run is the figure). Afterwards the database must hold exactly what the callbacks
imply for every message -- final status, one stored event per distinct callback, one
status transition -- or the run fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from parley.bench.common import (
    PYCACHE,
    base_parser,
    check,
    execute,
    gate,
)
from parley.bench.load import LoadResult, Prepared, run_load
from parley.bench.processes import CpuWindow, process_cpu
from parley.bench.seed import seed
from parley.domain.channels import Channel

WORKLOAD = "webhooks"
AUTH_TOKEN = "bench-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "b3" * 16
FROM_NUMBER = "+15005550006"
# The final callback of a message: delivered, or undelivered with this carrier error.
FAILED_CODE = "30003"
FINAL_STATUS = {"delivered": "delivered", "undelivered": "failed"}
EVENT_TYPES = {"sending": "queued", "sent": "sent", "delivered": "delivered"}
EVENT_TYPES["undelivered"] = "failed"

NOTES = [
    "Parley's figure: answered callbacks per second from a closed-loop load generator "
    "(its own process, aiohttp, keep-alive) against `python -m parley.cli api`; the bare "
    "figure: the same generator against Parley's own app with a route that only reads "
    "the body (parley.bench.bare_api), same uvicorn settings; ratio = Parley / better bare",
    "latency gate: Parley at 80% of its own full-speed rate, open loop, latency from the "
    "moment each request was due (queueing included)",
    "status events are applied in the request (verify, store the receipt, apply the "
    "events), in group commits: callbacks that arrive while earlier ones are being "
    "written share one transaction, and each is answered after its batch commits; "
    "nothing is left for a worker, so the database is checked as soon as the last "
    "answer arrives",
    "the messages table holds --table-messages rows (1M by default, the reference's "
    "size: the callbacks' own messages plus another organization's history)",
]


# -- the plan: which callbacks, in which order -------------------------------------------


@dataclass(frozen=True, slots=True)
class Callback:
    provider_message_id: str
    status: str  # Twilio's MessageStatus
    token: str  # I-Twilio-Idempotency-Token (the same on a retry)


@dataclass
class Plan:
    """The callbacks each phase posts, and what the database must hold afterwards."""

    finals: dict[str, str]  # provider message id -> the final Twilio status
    phases: dict[str, list[Callback]] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def unique(self) -> int:
        return 3 * len(self.finals)


def build_plan(
    provider_ids: list[str],
    *,
    seed: int,
    failed_share: float = 0.05,
    duplicate_share: float = 0.05,
    warmup_share: float = 0.03,
) -> Plan:
    """Deterministic for the same ids and seed (a test rebuilds it to check a database)."""
    rng = random.Random(seed)
    ids = sorted(provider_ids)
    finals = {pid: "undelivered" if rng.random() < failed_share else "delivered" for pid in ids}
    warm = max(1, int(len(ids) * warmup_share))
    rest = ids[warm:]
    half = len(rest) // 2
    groups = {"warmup": ids[:warm], "throughput": rest[:half], "latency": rest[half:]}
    plan = Plan(finals)
    for phase, members in groups.items():
        callbacks = [
            Callback(pid, status, str(uuid.UUID(int=rng.getrandbits(128))))
            for pid in members
            for status in ("sending", "sent", finals[pid])
        ]
        rng.shuffle(callbacks)
        # Twilio retries a callback it got no 2xx for: the same request again, later.
        for i in sorted(rng.sample(range(len(callbacks)), int(len(callbacks) * duplicate_share))):
            later = rng.randrange(i + 1, len(callbacks) + 1)
            callbacks.insert(later, callbacks[i])
            plan.duplicates += 1
        plan.phases[phase] = callbacks
    return plan


def prepare(callbacks: list[Callback], base_url: str, path: str) -> list[Prepared]:
    """Signed requests, as Twilio sends them (the signature covers the public URL)."""
    from parley.channels.twilio.signature import compute_signature

    out: list[Prepared] = []
    url = base_url.rstrip("/") + path
    for cb in callbacks:
        params = [
            ("SmsSid", cb.provider_message_id),
            ("SmsStatus", cb.status),
            ("MessageStatus", cb.status),
            ("To", "+12025550123"),
            ("MessageSid", cb.provider_message_id),
            ("AccountSid", ACCOUNT_SID),
            ("From", FROM_NUMBER),
            ("ApiVersion", "2010-04-01"),
        ]
        if cb.status == "undelivered":
            params.append(("ErrorCode", FAILED_CODE))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": cb.token,
            "X-Twilio-Signature": compute_signature(AUTH_TOKEN, url, params),
        }
        out.append((path, urlencode(params).encode(), headers))
    return out


def retarget(requests: list[Prepared], path: str) -> list[Prepared]:
    return [(path, body, headers) for _, body, headers in requests]


# -- verification -------------------------------------------------------------------------

VERIFY_SQL = """
SELECT m.provider_message_id, m.status, m.error_code, m.delivered_at IS NOT NULL,
       count(e.id), count(DISTINCT e.provider_event_id),
       count(e.id) FILTER (WHERE e.status_after IS DISTINCT FROM e.status_before),
       coalesce(array_agg(e.event_type ORDER BY e.event_type) FILTER (WHERE e.id IS NOT NULL),
                '{}')
FROM messages m
LEFT JOIN message_events e ON e.message_id = m.id AND e.source = 'provider'
WHERE m.organization_id = %s AND m.provider_account_id = %s
GROUP BY m.id
"""


def verify(
    conn: psycopg.Connection[Any], organization_id: str, account_id: str, plan: Plan
) -> list[dict[str, Any]]:
    """Checks of the database against the plan: every message's final status, its events
    (one per distinct callback, none lost or doubled), its single transition, and one
    receipt per distinct callback."""
    rows = conn.execute(VERIFY_SQL, (organization_id, account_id)).fetchall()
    seen = {row[0]: row for row in rows}
    lost: list[str] = []
    doubled: list[str] = []
    wrong_status: list[str] = []
    for pid, final in plan.finals.items():
        row = seen.get(pid)
        if row is None:
            lost.append(f"{pid}: message missing")
            continue
        _, status, error_code, delivered, events, distinct, transitions, types = row
        expected_types = sorted(EVENT_TYPES[s] for s in ("sending", "sent", final))
        if events < 3 or distinct < 3 or transitions < 1:
            lost.append(f"{pid}: {events} events, {transitions} transitions")
        elif events > 3 or transitions > 1:
            doubled.append(f"{pid}: {events} events, {transitions} transitions")
        elif sorted(types) != expected_types:
            wrong_status.append(f"{pid}: events {types}")
        want = FINAL_STATUS[final]
        if status != want or (want == "delivered") != delivered:
            wrong_status.append(f"{pid}: {status} (want {want})")
        elif want == "failed" and error_code != FAILED_CODE:
            wrong_status.append(f"{pid}: error code {error_code}")
    receipts = conn.execute(
        "SELECT count(*) FROM webhook_receipts WHERE provider_account_id = %s", (account_id,)
    ).fetchone()
    stored = int(receipts[0]) if receipts else 0
    return [
        check("no lost transition", not lost, f"{len(lost)} messages short: {lost[:3]}"),
        check("no duplicated transition", not doubled, f"{len(doubled)} doubled: {doubled[:3]}"),
        check(
            "final statuses as the callbacks imply",
            not wrong_status,
            f"{len(plan.finals) - len(wrong_status)}/{len(plan.finals)} right: {wrong_status[:3]}",
        ),
        check(
            "one receipt per distinct callback",
            stored == plan.unique,
            f"{stored} receipts for {plan.unique} distinct callbacks",
        ),
    ]


# -- the server processes ------------------------------------------------------------------


class ServerProcess:
    """`python -m <module> [args]` serving HTTP on `port`, as an operator would run it."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, *self.command], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{self.env['PARLEY_PORT']}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer {url}:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def cpu_seconds(self) -> float:
        return round(process_cpu(self.popen.pid), 2) if self.popen else 0.0

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def _free_port() -> int:
    from parley.channels.testing import free_port

    return free_port()


def server_env(url: str, port: int, args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {
        "PARLEY_DATABASE_URL": url,
        "PARLEY_HOST": "127.0.0.1",
        "PARLEY_PORT": str(port),
        "PARLEY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PARLEY_LOG_LEVEL": "WARNING",
        "PARLEY_DB_POOL_SIZE": str(args.pool_size),
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
    }


# -- the run ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = base_parser(WORKLOAD, __doc__.split("\n", 1)[0], default_count=10_000)
    p.add_argument("--clients", type=int, default=32, help="requests in flight (closed loop)")
    p.add_argument("--pool-size", type=int, default=10, help="PARLEY_DB_POOL_SIZE of the API")
    p.add_argument("--raw-runs", type=int, choices=(1, 2), default=2, help="bare runs")
    p.add_argument("--latency-load", type=float, default=0.8, help="share of full speed")
    p.add_argument(
        "--table-messages",
        type=int,
        default=1_000_000,
        help="messages in the table when the callbacks arrive (the reference's 1M): the "
        "rest are another organization's history, seeded as `parley bench inbox` seeds "
        "it (0: only the callbacks' own messages; --quick: 0)",
    )
    return p


async def _seed_background(container: Any, args: argparse.Namespace) -> int:
    """Fill the messages table up to --table-messages with another organization's
    history (inbox bench's set-based seed), so indexes and lookups have the reference's
    size; how many messages were added."""
    from parley.bench import inbox

    count = max(0, args.table_messages - args.count)
    if count == 0:
        return 0
    history = argparse.Namespace(
        messages=count,
        borrowers=max(1, min(50_000, count // 20)),
        agents=50,
        calls=0,
        reuse=False,
    )
    async with container.db.pool.connection() as conn:
        await inbox.seed(conn, history)
    return count


async def _seed(container: Any, args: argparse.Namespace) -> tuple[str, str, list[str]]:
    """N messages, `sent` with Twilio ids; their held send jobs removed (they were sent)."""
    seeded = await seed(
        container,
        count=args.count,
        channel=Channel.SMS,
        provider="twilio",
        config={
            "account_sid": ACCOUNT_SID,
            "from_number": FROM_NUMBER,
            "base_url": "http://127.0.0.1:9",
        },
        secrets={"auth_token": AUTH_TOKEN},
        account_name="bench-webhooks",
        hold=True,
    )
    async with container.db.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "UPDATE messages SET status = 'sent', provider_message_id = 'SM' || md5(id::text), "
            "attempts = 1, sent_at = now(), status_changed_at = now() "
            "WHERE organization_id = %s",
            (seeded.organization_id,),
        )
        await conn.execute(
            "DELETE FROM procrastinate_jobs WHERE status = 'todo' "
            "AND task_name = 'parley:send_messages' AND scheduled_at > now() + interval '1 hour'"
        )
        cur = await conn.execute(
            "SELECT provider_message_id FROM messages WHERE organization_id = %s",
            (seeded.organization_id,),
        )
        ids = [r[0] for r in await cur.fetchall()]
    return seeded.organization_id, seeded.account_id, ids


def _phase(
    name: str,
    target: str,
    requests: list[Prepared],
    args: argparse.Namespace,
    url: str,
    server: ServerProcess,
    rate: float | None = None,
) -> dict[str, Any]:
    window = CpuWindow(url).start()
    cpu_before = server.cpu_seconds()
    result: LoadResult = run_load(target, requests, concurrency=args.clients, rate=rate)
    figures = {
        "phase": name,
        **result.summary(),
        "server_cpu_s": round(server.cpu_seconds() - cpu_before, 2),
        **window.stop(),
    }
    if rate is not None:
        figures["offered_req_per_s"] = round(rate, 1)
    return figures


async def run(args: argparse.Namespace, record: dict[str, Any], container: Any) -> None:
    url = container.settings.database_url
    record["notes"] = NOTES
    started = time.monotonic()
    background = await _seed_background(container, args)
    org, account, ids = await _seed(container, args)
    plan = build_plan(ids, seed=args.seed)
    record["seeded"] = {"organization_id": org, "account_id": account}
    record["settings"] = {
        "messages": len(ids),
        "table_messages": len(ids) + background,
        "seed_s": round(time.monotonic() - started, 1),
        "callbacks": sum(len(c) for c in plan.phases.values()),
        "distinct_callbacks": plan.unique,
        "duplicates": plan.duplicates,
        "failed_share": 0.05,
        "clients": args.clients,
        "api_processes": 1,
        "db_pool_size": args.pool_size,
        "latency_load": args.latency_load,
    }
    hook_path = f"/webhooks/twilio/{account}"
    log_dir = Path(tempfile.mkdtemp(prefix="parley-bench-webhooks-"))
    ours_port, bare_port = _free_port(), _free_port()
    ours = ServerProcess(
        "parley-api", ["-m", "parley.cli", "api"], server_env(url, ours_port, args), log_dir
    )
    bare = ServerProcess(
        "bare-api", ["-m", "parley.bench.bare_api"], server_env(url, bare_port, args), log_dir
    )
    requests = {
        phase: prepare(callbacks, f"http://127.0.0.1:{ours_port}", hook_path)
        for phase, callbacks in plan.phases.items()
    }
    bare_path = f"/bench/bare/twilio/{account}"
    bare_requests = retarget(requests["throughput"], bare_path)
    bare_target, ours_target = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{ours_port}"
    loop = asyncio.get_running_loop()

    def measure() -> dict[str, Any]:
        phases: dict[str, Any] = {"bare": []}
        bare.start()
        try:
            run_load(bare_target, retarget(requests["warmup"], bare_path), concurrency=args.clients)
            phases["bare"].append(_phase("bare", bare_target, bare_requests, args, url, bare))
        finally:
            bare.stop()
        ours.start()
        try:
            phases["warmup"] = _phase("warmup", ours_target, requests["warmup"], args, url, ours)
            full = _phase("parley", ours_target, requests["throughput"], args, url, ours)
            phases["parley"] = full
            rate = full["req_per_s"] * args.latency_load
            phases["latency"] = _phase(
                "latency", ours_target, requests["latency"], args, url, ours, rate=rate
            )
        finally:
            ours.stop()
        if args.raw_runs == 2:
            bare.start()
            try:
                phases["bare"].append(_phase("bare", bare_target, bare_requests, args, url, bare))
            finally:
                bare.stop()
        return phases

    try:
        phases = await loop.run_in_executor(None, measure)
    except Exception:
        record["server_logs"] = {s.name: s.tail() for s in (ours, bare) if s.log_path.exists()}
        raise
    record["raw_runs"] = phases["bare"]
    record["parley"] = phases["parley"]
    record["warmup"] = phases["warmup"]
    record["latency"] = phases["latency"]

    bare_figure = max(r["req_per_s"] for r in phases["bare"])
    ours_figure = phases["parley"]["req_per_s"]
    ratio = ours_figure / bare_figure if bare_figure else 0.0
    p99 = phases["latency"].get("p99_ms", float("inf"))
    record.update(
        {
            "unit": "req/s",
            "raw_figure": bare_figure,
            "parley_figure": ours_figure,
            "ratio": round(ratio, 3),
        }
    )
    record["gates"] = [
        gate(
            "parley >= 0.5x raw",
            ratio >= 0.5,
            f"{ours_figure:.0f} / {bare_figure:.0f} req/s = {ratio:.2f}x",
        ),
        gate(
            "p99 <= 250 ms at 80% load",
            p99 <= 250,
            f"p99 {p99} ms at {phases['latency'].get('offered_req_per_s')} req/s offered",
        ),
    ]
    answered = Counter[str]()
    duplicate_answers = 0
    for phase in ("warmup", "parley", "latency"):
        answered.update(phases[phase]["statuses"])
        duplicate_answers += phases[phase]["duplicate_answers"]
    total = sum(len(plan.phases[p]) for p in ("warmup", "throughput", "latency"))
    with psycopg.connect(url) as conn:
        checks = verify(conn, org, account, plan)
    record["checks"] = [
        check(
            "every callback answered 200",
            answered.get("200", 0) == total,
            f"{dict(answered)} for {total} callbacks",
        ),
        check(
            "duplicates recognised",
            duplicate_answers == plan.duplicates,
            f"{duplicate_answers} duplicate answers for {plan.duplicates} resent callbacks",
        ),
        *checks,
    ]
    record["summary"] = [
        f"bare {bare_figure:.0f} req/s, parley {ours_figure:.0f} req/s, ratio {ratio:.2f}x",
        "latency at {offered} req/s offered: p50 {p50} / p95 {p95} / p99 {p99} ms".format(
            offered=phases["latency"].get("offered_req_per_s"),
            p50=phases["latency"].get("p50_ms"),
            p95=phases["latency"].get("p95_ms"),
            p99=phases["latency"].get("p99_ms"),
        ),
    ]


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.count, args.table_messages = 300, 0
    return execute(WORKLOAD, args, run)
