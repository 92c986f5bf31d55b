"""`parley bench dispatch-sms`: queued SMS -> `parley worker` processes -> the `twilio`
provider -> a local server speaking the Twilio Messages API, in its own process.

Phase 1 (throughput): the peer answers 1% 429 (with Retry-After) and 0.5% 503. Raw
primitive, same peer, same run: a bare aiohttp loop, 32 requests in flight, POSTing the
same form (built by the provider's own `form()`). Parley's figure is end to end: from
releasing already-queued messages to running workers until every message is terminal,
sent per second of wall time. Rounds (`--rounds`, 3 by default): raw, Parley, raw,
Parley, ..., raw; a round's ratio is its Parley run against the better of the two raw
runs beside it. Gate: the median round's ratio >= 0.5 (`ratio`; `raw_figure` and
`parley` are that round's). `ratio_vs_best_raw` compares the median round's Parley run
with the fastest raw run of all, for the record.

Phase 2 (rate limits), same peer process: two provider accounts, each configured with
`rate_per_second` R (burst 1: pure pacing), while the peer now enforces R per account
SID (a token bucket of burst 20 answering 429 beyond it, counted apart from the injected
failures, which stay on). Gates: the achieved total rate (accepted requests per second
at the peer over the middle 90% of them: start-up and the Retry-After tail are left out
of the rate, not out of the run) is within 5% of 2R; and no rate-limit 429 was issued.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp

from parley.bench import common
from parley.bench import rounds as paired

WORKLOAD = "dispatch-sms"
FROM_NUMBER = "+15005550006"
BODY = "Hello, this is a reminder about your balance. Reply STOP to opt out."
RATE_429 = 0.01
RATE_5XX = 0.005
RETRY_AFTER = 1
RAW_CONCURRENCY = 32
AUTH_TOKEN = "parley-bench-auth-token"


# -- the peer, run in its own process ------------------------------------------------------


class ApiAdapter:
    """A `TwilioApiPeer` plus the counts and timestamps the parent reads back."""

    def __init__(self, options: dict[str, Any]) -> None:
        from parley.peers.twilio_api import TwilioApiPeer

        self.peer = TwilioApiPeer(
            accounts=options["accounts"],
            rate_429=RATE_429,
            rate_5xx=RATE_5XX,
            retry_after=RETRY_AFTER,
            seed=options["seed"],
        )

    async def start(self) -> dict[str, Any]:
        await self.peer.start()
        return {"base_url": self.peer.base_url}

    def snapshot(self) -> dict[str, Any]:
        stats = asdict(self.peer.stats)
        stats["callback_statuses"] = dict(stats["callback_statuses"])
        accepted: dict[str, list[float]] = {}
        for m in self.peer.messages:
            accepted.setdefault(m.account_sid, []).append(m.created_at.timestamp())
        # Each account's messages have distinct bodies (seed numbers them), so a body seen
        # twice on one account is a message accepted twice.
        bodies = Counter((m.account_sid, m.body) for m in self.peer.messages)
        return {
            "stats": stats,
            "accepted_at": {k: sorted(v) for k, v in accepted.items()},
            "duplicate_bodies": sum(n - 1 for n in bodies.values() if n > 1),
        }

    def reset(self) -> None:
        from parley.peers.twilio_api import PeerStats

        p = self.peer
        p.messages, p.by_sid, p.status_by_sid, p.stats = [], {}, {}, PeerStats()
        p._buckets.clear()

    def configure(self, options: dict[str, Any]) -> None:
        """Turn on the per-account rate limit (it applies to each account SID)."""
        self.peer.rate_limit_per_second = options["rate"]
        self.peer.rate_limit_burst = options["burst"]

    async def stop(self) -> None:
        await self.peer.stop()


def peer_factory(options: dict[str, Any]) -> ApiAdapter:
    return ApiAdapter(options)


def account_sid(n: int) -> str:
    return "AC" + f"{n:04x}" * 8


# -- raw: a bare aiohttp loop --------------------------------------------------------------


def forms(count: int, base_url: str, sid: str) -> list[bytes]:
    """Request bodies exactly as the provider builds them, before the clock starts."""
    from urllib.parse import urlencode

    from parley.channels.base import OutboundMessage, ProviderContext
    from parley.channels.twilio.provider import create
    from parley.domain.channels import Channel

    provider = create(
        ProviderContext(
            account_id=str(uuid.uuid4()),
            channel=Channel.SMS,
            public_base_url="http://127.0.0.1:8000",
            config={"base_url": base_url, "account_sid": sid, "from_number": FROM_NUMBER},
            secrets={"auth_token": AUTH_TOKEN},
        )
    )
    return [
        urlencode(
            provider.form(
                OutboundMessage(
                    message_id=str(uuid.uuid4()),
                    channel=Channel.SMS,
                    to=f"+1202555{i % 10000:04d}",
                    sender=FROM_NUMBER,
                    body=f"{BODY} ({i + 1})",
                )
            )
        ).encode()
        for i in range(count)
    ]


async def raw_post(url: str, bodies: list[bytes], sid: str) -> dict[str, Any]:
    """POST every body once, RAW_CONCURRENCY at a time; answers are counted, not retried."""
    statuses: Counter[str] = Counter()
    pending = iter(bodies)
    auth = "Basic " + base64.b64encode(f"{sid}:{AUTH_TOKEN}".encode()).decode()
    headers = {
        "Authorization": auth,
        "Accept": "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    connector = aiohttp.TCPConnector(limit=RAW_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            for body in pending:  # the tasks share one iterator
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses[str(response.status)] += 1

        cpu, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(RAW_CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return {
        "elapsed_s": round(elapsed, 3),
        "accepted": statuses["201"],
        "statuses": dict(statuses),
        "sent_per_s": round(statuses["201"] / elapsed, 1),
        "attempts_per_s": round(len(bodies) / elapsed, 1),
        "client_cpu_s": round(time.process_time() - cpu, 2),
    }


async def raw_phase(peer: common.PeerProcess, url: str, count: int) -> dict[str, Any]:
    sid = account_sid(1)
    bodies = forms(count, peer.info["base_url"], sid)
    target = f"{peer.info['base_url']}/2010-04-01/Accounts/{sid}/Messages.json"
    before = peer.call("reset")
    window = common.CpuWindow(url).start()
    result = await raw_post(target, bodies, sid)
    result.update(window.stop())
    after = peer.call("snapshot")
    result["peer_cpu_s"] = round(after["cpu_s"] - before["cpu_s"], 2)
    return result


# -- Parley ---------------------------------------------------------------------------------


async def seed_accounts(
    container: Any,
    base_url: str,
    plan: list[tuple[str, int]],
    batch: int,
    rate: float | None,
    burst: int | None,
    max_concurrency: int,
) -> list[str]:
    """One organization and provider account per (sid, count); returns the org ids."""
    from parley.bench.seed import seed
    from parley.domain.channels import Channel

    orgs = []
    for sid, count in plan:
        seeded = await seed(
            container,
            count=count,
            channel=Channel.SMS,
            provider="twilio",
            config={
                "base_url": base_url,
                "account_sid": sid,
                "from_number": FROM_NUMBER,
                "max_concurrency": max_concurrency,
            },
            secrets={"auth_token": AUTH_TOKEN},
            batch_size=batch,
            rate_per_second=rate,
            burst=burst,
            account_name=f"bench {sid[:6]}",
            hold=True,  # released once the workers are up (see common.run_parley)
        )
        orgs.append(seeded.organization_id)
    return orgs


async def parley_phase(
    args: argparse.Namespace,
    container: Any,
    peer: common.PeerProcess,
    plan: list[tuple[str, int]],
    log_dir: Path,
    *,
    rate: float | None = None,
    burst: int | None = None,
) -> dict[str, Any]:
    url = container.db.url
    orgs = await seed_accounts(
        container,
        peer.info["base_url"],
        plan,
        args.batch_size,
        rate,
        burst,
        max(1, RAW_CONCURRENCY // args.workers),
    )
    figures, ledger = await common.run_parley(args, url, orgs, peer, log_dir)
    figures["peer_stats"] = ledger["stats"]
    figures["duplicate_bodies"] = ledger["duplicate_bodies"]
    figures["_accepted_at"] = ledger["accepted_at"]
    return figures


def steady_rate(stamps: list[float]) -> float:
    """Accepted requests per second across the middle 90% of them."""
    if len(stamps) < 20:
        return 0.0
    lo, hi = int(len(stamps) * 0.05), int(len(stamps) * 0.95)
    span = stamps[hi] - stamps[lo]
    return (hi - lo) / span if span > 0 else 0.0


def correctness(p: dict[str, Any], *, rate_limited: bool) -> list[dict[str, Any]]:
    st, stats, total = p["statuses"], p["peer_stats"], p["total"]
    in_flight = sum(st.get(s, 0) for s in common.IN_FLIGHT)
    sent, failed = st.get("sent", 0), st.get("failed", 0)
    prefix = "rate phase: " if rate_limited else ""
    checks = [
        common.check(prefix + "all terminal", in_flight == 0, f"{in_flight} in flight; {st}"),
        common.check(
            prefix + "sent + failed == total",
            sent + failed == total,
            f"{sent} + {failed} of {total}",
        ),
        common.check(
            prefix + "peer accepted each sent message once",
            stats["accepted"] == sent and p["duplicate_bodies"] == 0,
            f"{stats['accepted']} accepted at the peer, {sent} sent, "
            f"{p['duplicate_bodies']} bodies accepted twice",
        ),
        common.check(
            prefix + "429/5xx retried",
            stats["injected_429"] + stats["injected_5xx"] == 0 or p["sent_after_retry"] > 0,
            f"{stats['injected_429']} x 429 and {stats['injected_5xx']} x 503 "
            f"injected; {p['sent_after_retry']} sent after a retry",
        ),
    ]
    if rate_limited:
        checks.append(
            common.check(
                "no 429 caused by us",
                stats["rate_limited"] == 0,
                f"{stats['rate_limited']} rate-limit 429s issued by the peer",
            )
        )
    return checks


async def run(args: argparse.Namespace, record: dict[str, Any], container: Any) -> None:
    url = container.db.url
    record["settings"] = {
        "count": args.count,
        "peer": "parley.peers.twilio_api.TwilioApiPeer, own process",
        "peer_failures": {
            "429": RATE_429,
            "503": RATE_5XX,
            "retry_after_s": RETRY_AFTER,
            "seed": args.seed,
        },
        "raw": f"aiohttp, {RAW_CONCURRENCY} in flight, the provider's form; "
        + paired.rounds_setting(args),
        "rounds": args.rounds,
        "workers": args.workers,
        "max_concurrency_per_worker": max(1, RAW_CONCURRENCY // args.workers),
        "rate_phase": {
            "accounts": 2,
            "rate_per_account": args.rate,
            "parley_burst": args.parley_burst,
            "peer_burst": args.peer_burst,
            "messages": args.rate_count,
        },
        "worker_env": common.worker_env(args),
    }
    sid, sids = account_sid(1), [account_sid(2), account_sid(3)]
    accounts = dict.fromkeys([sid, *sids], AUTH_TOKEN)
    with (
        tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp,
        common.PeerProcess(peer_factory, {"accounts": accounts, "seed": args.seed}) as peer,
    ):
        raws = [await raw_phase(peer, url, args.count)]
        record["raw_runs"] = raws
        parleys: list[dict[str, Any]] = []
        record["checks"] = []
        for round_no in range(args.rounds):
            run_ = await parley_phase(args, container, peer, [(sid, args.count)], Path(tmp))
            run_.pop("_accepted_at")
            parleys.append(run_)
            prefix = f"round {round_no + 1}: " if args.rounds > 1 else ""
            record["checks"] += [
                {**c, "check": prefix + c["check"]} for c in correctness(run_, rate_limited=False)
            ]
            if args.raw_runs > 1 or round_no + 1 < args.rounds:
                raws.append(await raw_phase(peer, url, args.count))
        rounds, parley = paired.record_rounds(record, raws, parleys)
        # Phase 2, same peer: now limiting each account SID to the rate Parley is given.
        peer.call(("configure", {"rate": args.rate, "burst": args.peer_burst}))
        half = args.rate_count // 2
        limited = await parley_phase(
            args,
            container,
            peer,
            [(sids[0], half), (sids[1], args.rate_count - half)],
            Path(tmp),
            rate=args.rate,
            burst=args.parley_burst,
        )
    stamps = limited.pop("_accepted_at")
    limited["achieved_per_account"] = {s[:10]: round(steady_rate(v), 1) for s, v in stamps.items()}
    achieved = steady_rate(sorted(t for v in stamps.values() for t in v))
    configured = 2 * args.rate
    limited.update(
        {"configured_total_per_s": configured, "achieved_total_per_s": round(achieved, 1)}
    )
    record["rate_phase"] = limited
    record["checks"] += correctness(limited, rate_limited=True)
    deviation = achieved / configured - 1
    record["gates"] = [
        paired.ratio_gate(record, rounds["raws"], parley, rounds=rounds["rounds"]),
        common.gate(
            "rate within 5% of configured",
            abs(deviation) <= 0.05,
            f"{achieved:.1f} msg/s achieved vs {configured:.0f} configured "
            f"({100 * deviation:+.1f}%); per account {limited['achieved_per_account']}",
        ),
    ]
    record["summary"] = [
        f"peer: {record['settings']['peer']}; database: {record['database']}",
        "raw runs (sent/s): "
        + ", ".join(f"{r['sent_per_s']:.0f}" for r in raws)
        + f" -> raw figure {record['raw_figure']:.0f} msg/s (the better one beside the "
        "median round's Parley run)" + paired.rounds_summary(rounds),
        f"parley: {parley['sent']} sent of {parley['total']} in {parley['elapsed_s']:.2f} s "
        f"end to end = {parley['sent_per_s']:.0f} msg/s ({args.workers} workers x "
        f"concurrency {args.concurrency}, batch {args.batch_size}, parallelism "
        f"{args.parallelism}, max_concurrency {RAW_CONCURRENCY // args.workers}/worker, "
        f"retry base {args.retry_base_seconds} s); ratio {record['ratio']:.2f}x",
        f"workers ready {parley['workers_ready_after_launch_s']} s after launch "
        f"({parley['sent_per_s_from_launch']:.0f} msg/s counting start-up); "
        f"first message sent {parley['first_sent_s']} s after launch, last {parley['last_sent_s']}"
        f" s; {parley['sent_after_retry']} sent after a retry; CPU: workers "
        f"{parley['worker_cpu_s']} s ({parley['worker_cpu_after_release_s']} s after the "
        f"release), PostgreSQL {parley['postgres_cpu_s']} s, peer "
        f"{parley['peer_cpu_s']} s, whole machine {parley['machine_busy_cpu_s']} s",
        f"rate phase: {limited['sent']} sent of {limited['total']} over 2 accounts at "
        f"{args.rate:g}/s each: {achieved:.1f} msg/s steady, {limited['sent_per_s']:.1f} msg/s "
        f"end to end in {limited['elapsed_s']:.1f} s; peer rate-limit 429s: "
        f"{limited['peer_stats']['rate_limited']} (Parley burst {args.parley_burst}, peer "
        f"burst {args.peer_burst})",
    ]


def main(extra: list[str]) -> int:
    parser = common.base_parser(WORKLOAD, __doc__ or "", 20_000)
    paired.add_round_options(parser)
    parser.add_argument("--rate", type=float, default=100.0, help="per-account rate (msg/s)")
    parser.add_argument(
        "--rate-count",
        type=int,
        default=3000,
        help="messages in the rate-limit phase (both accounts)",
    )
    parser.add_argument(
        "--parley-burst", type=int, default=1, help="burst of Parley's per-account bucket"
    )
    parser.add_argument(
        "--peer-burst", type=int, default=20, help="burst of the peer's per-account bucket"
    )
    args = parser.parse_args(extra)
    if args.quick:
        # Smoke run: 500 messages; the rate phase 100 messages at up to 50/s per account.
        args.count, args.rate_count = min(args.count, 500), min(args.rate_count, 100)
        args.rate = min(args.rate, 50.0)
    paired.settle_round_options(parser, args)
    return common.execute(WORKLOAD, args, run)
