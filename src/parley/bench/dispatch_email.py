"""`parley bench dispatch-email`: queued email messages -> `parley worker` processes ->
a local SMTP sink (in its own process) that answers 2% 451 and 1% 550.

Raw primitive, same sink, same run: a bare aiosmtplib loop over 10 connections sending
pre-rendered bytes. Rounds (`--rounds`, 3 by default, as in dispatch-sms): raw, Parley,
raw, Parley, ..., raw; a round's ratio is its Parley run against the better of the two
raw runs beside it (the conservative choice), and the median round is the figure.
Parley's figure is end to end: from releasing already-queued messages to running
workers until every message is terminal, counting messages sent per second of that wall
time (retries included).

Gates (reference/performance.md): Parley >= 0.5x raw and >= 500 msg/s; nothing lost
(every message terminal, sent + failed == total, the sink accepted each sent Message-ID
exactly once and nothing else); tempfails retried; permfails terminal as `failed` 550.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiosmtplib
import psycopg

from parley.bench import common
from parley.bench import rounds as paired

WORKLOAD = "dispatch-email"
FROM_ADDRESS = "collections@bench.parley.test"
DOMAIN = "bench.parley.test"
SUBJECT = "Your account"
# The body `seed()` writes, so raw and Parley send messages of the same size.
BODY = "Hello, this is a reminder about your balance. Reply STOP to opt out."
TEMPFAIL_RATE = 0.02
PERMFAIL_RATE = 0.01
RAW_CONNECTIONS = 10


# -- the sink, run in its own process ------------------------------------------------------


class SinkAdapter:
    """An `SmtpSink` plus the ledger summary the parent reads back over the pipe."""

    def __init__(self, options: dict[str, Any]) -> None:
        from parley.peers.smtp_sink import SmtpSink

        self.sink = SmtpSink(
            implementation=options["implementation"],
            tempfail_rate=TEMPFAIL_RATE,
            permfail_rate=PERMFAIL_RATE,
            seed=options["seed"],
            keep_data=False,
        )

    async def start(self) -> dict[str, Any]:
        await self.sink.start()
        return {"port": self.sink.port}

    def snapshot(self) -> dict[str, Any]:
        return {
            "accepted": dict(self.sink.accepted),
            "replies": dict(self.sink.replies),
            "transactions": sum(self.sink.attempts.values()),
        }

    def reset(self) -> None:
        self.sink.messages = []
        self.sink.accepted = Counter()
        self.sink.attempts = Counter()
        self.sink.replies = Counter()

    def configure(self, options: dict[str, Any]) -> None:
        raise NotImplementedError("the sink's failure policy is fixed for the run")

    async def stop(self) -> None:
        await self.sink.stop()


def sink_factory(options: dict[str, Any]) -> SinkAdapter:
    return SinkAdapter(options)


# -- raw: a bare aiosmtplib loop -----------------------------------------------------------


def prerender(count: int, tag: str) -> list[Any]:
    """Messages shaped like the seeded ones, rendered to bytes before the clock starts."""
    from parley.channels.base import OutboundMessage
    from parley.channels.smtp.mime import render
    from parley.domain.channels import Channel

    return [
        render(
            OutboundMessage(
                message_id=str(uuid.uuid4()),
                channel=Channel.EMAIL,
                to=f"borrower{i % 500 + 1}@example.com",
                sender=FROM_ADDRESS,
                body=f"{BODY} ({i + 1})",
                subject=SUBJECT,
                rfc822_message_id=f"<raw-{tag}-{i}@{DOMAIN}>",
            ),
            from_address=FROM_ADDRESS,
            from_name=None,
            message_id_domain=DOMAIN,
        )
        for i in range(count)
    ]


async def raw_send(port: int, emails: list[Any], connections: int) -> dict[str, Any]:
    """Send every email once over `connections` sessions; replies are counted, not retried."""
    replies: Counter[str] = Counter()
    pending = iter(emails)

    async def session() -> None:
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=port, local_hostname=DOMAIN, timeout=30, start_tls=False
        )
        await smtp.connect()
        for email in pending:  # the connections share one iterator: next free one sends
            try:
                await smtp.sendmail(email.envelope_from, list(email.envelope_to), email.data)
                replies["250"] += 1
            except aiosmtplib.SMTPResponseException as exc:
                replies[str(exc.code)] += 1
            except aiosmtplib.SMTPRecipientsRefused as exc:
                replies[str(exc.recipients[0].code)] += 1
        await smtp.quit()

    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(session() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "elapsed_s": round(elapsed, 3),
        "accepted": replies["250"],
        "replies": dict(replies),
        "sent_per_s": round(replies["250"] / elapsed, 1),
        "attempts_per_s": round(len(emails) / elapsed, 1),
        "client_cpu_s": round(time.process_time() - cpu, 2),
    }


async def raw_phase(sink: common.PeerProcess, url: str, count: int, tag: str) -> dict[str, Any]:
    emails = prerender(count, tag)
    before = sink.call("reset")
    window = common.CpuWindow(url).start()
    result = await raw_send(sink.info["port"], emails, RAW_CONNECTIONS)
    result.update(window.stop())
    after = sink.call("snapshot")
    result["peer_cpu_s"] = round(after["cpu_s"] - before["cpu_s"], 2)
    result["sink_replies"] = after["replies"]
    return result


# -- Parley ---------------------------------------------------------------------------------


async def seed_messages(
    container: Any, count: int, port: int, pool_size: int, batch_size: int
) -> tuple[str, list[str]]:
    from parley.bench.seed import seed
    from parley.domain.channels import Channel

    seeded = await seed(
        container,
        count=count,
        channel=Channel.EMAIL,
        provider="smtp",
        config={
            "host": "127.0.0.1",
            "port": port,
            "from_address": FROM_ADDRESS,
            "pool_size": pool_size,
        },
        secrets={},
        batch_size=batch_size,
        hold=True,  # released once the workers are up (see common.run_parley)
    )
    return seeded.organization_id, seeded.message_ids


async def sent_message_ids(url: str, org: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT rfc822_message_id FROM messages WHERE organization_id = %s AND status = 'sent'",
            (org,),
        )
        return [r[0] for r in await cur.fetchall()]


async def parley_phase(
    args: argparse.Namespace, container: Any, sink: common.PeerProcess, pool: int, log_dir: Path
) -> dict[str, Any]:
    url = container.db.url
    org, _ = await seed_messages(container, args.count, sink.info["port"], pool, args.batch_size)
    figures, ledger = await common.run_parley(args, url, [org], sink, log_dir)
    figures["sink_replies"] = ledger["replies"]
    figures["sink_transactions"] = ledger["transactions"]
    figures["_accepted"] = ledger["accepted"]
    figures["_sent_ids"] = await sent_message_ids(url, org)
    return figures


def correctness(parley: dict[str, Any]) -> list[dict[str, Any]]:
    total, st = parley["total"], parley["statuses"]
    accepted: dict[str, int] = parley.pop("_accepted")
    sent_ids = set(parley.pop("_sent_ids"))
    in_flight = sum(st.get(s, 0) for s in common.IN_FLIGHT)
    sent, failed = st.get("sent", 0), st.get("failed", 0)
    twice = sum(1 for n in accepted.values() if n > 1)
    missing = len(sent_ids - accepted.keys())
    unexpected = len(accepted.keys() - sent_ids)
    tempfails = parley["sink_replies"].get("451", 0)
    permfails = parley["sink_replies"].get("550", 0)
    failed_550 = parley["failed_by_code"].get("550", 0)
    return [
        common.check("all terminal", in_flight == 0, f"{in_flight} in flight; statuses {st}"),
        common.check(
            "sent + failed == total", sent + failed == total, f"{sent} + {failed} of {total}"
        ),
        common.check(
            "sink accepted each sent message once",
            twice == 0 and missing == 0 and unexpected == 0,
            f"{len(accepted)} Message-IDs accepted; {twice} more than once; "
            f"{missing} sent but not at the sink; {unexpected} at the sink not sent",
        ),
        common.check(
            "sink transactions == attempts recorded",
            parley["sink_transactions"] == parley["attempts_total"],
            f"{parley['sink_transactions']} DATA transactions, "
            f"{parley['attempts_total']} attempts in messages",
        ),
        common.check(
            "tempfails retried",
            tempfails > 0 and parley["sent_after_retry"] > 0,
            f"{tempfails} x 451 at the sink; {parley['sent_after_retry']} messages "
            f"sent after a retry (max attempts {parley['max_attempts']})",
        ),
        common.check(
            "permfails terminal",
            permfails > 0 and failed_550 == permfails and failed == failed_550,
            f"{permfails} x 550 at the sink; {failed_550} failed with 550; "
            f"failed by code {parley['failed_by_code']}",
        ),
    ]


async def run(args: argparse.Namespace, record: dict[str, Any], container: Any) -> None:
    url = container.db.url
    pool_size = max(1, RAW_CONNECTIONS // args.workers)
    record["settings"] = {
        "count": args.count,
        "sink": f"{args.sink} (parley.peers.smtp_sink), own process",
        "sink_failures": {"451": TEMPFAIL_RATE, "550": PERMFAIL_RATE, "seed": args.seed},
        "raw": f"aiosmtplib, {RAW_CONNECTIONS} connections, pre-rendered bytes; "
        + paired.rounds_setting(args),
        "rounds": args.rounds,
        "workers": args.workers,
        "smtp_pool_size_per_worker": pool_size,
        "worker_env": common.worker_env(args),
    }
    with (
        common.PeerProcess(sink_factory, {"implementation": args.sink, "seed": args.seed}) as sink,
        tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp,
    ):
        raws = [await raw_phase(sink, url, args.count, "before")]
        record["raw_runs"] = raws
        parleys: list[dict[str, Any]] = []
        record["checks"] = []
        for round_no in range(args.rounds):
            run_ = await parley_phase(args, container, sink, pool_size, Path(tmp))
            prefix = f"round {round_no + 1}: " if args.rounds > 1 else ""
            record["checks"] += [{**c, "check": prefix + c["check"]} for c in correctness(run_)]
            parleys.append(run_)
            if args.raw_runs > 1 or round_no + 1 < args.rounds:
                raws.append(await raw_phase(sink, url, args.count, "after"))
    rounds, parley = paired.record_rounds(record, raws, parleys)
    record["gates"] = [
        paired.ratio_gate(record, rounds["raws"], parley, rounds=rounds["rounds"]),
        common.gate(
            "parley >= 500 msg/s", parley["sent_per_s"] >= 500, f"{parley['sent_per_s']:.0f} msg/s"
        ),
    ]
    record["summary"] = [
        f"sink: {record['settings']['sink']}; database: {record['database']}",
        "raw runs (sent/s): "
        + ", ".join(f"{r['sent_per_s']:.0f}" for r in raws)
        + f" -> raw figure {record['raw_figure']:.0f} msg/s"
        + paired.rounds_summary(rounds),
        f"parley: {parley['sent']} sent of {parley['total']} in {parley['elapsed_s']:.2f} s "
        f"end to end = {parley['sent_per_s']:.0f} msg/s ({args.workers} workers x "
        f"concurrency {args.concurrency}, batch {args.batch_size}, parallelism "
        f"{args.parallelism}, pool {pool_size}/worker, retry base {args.retry_base_seconds} s)",
        f"workers ready {parley['workers_ready_after_launch_s']} s after launch "
        f"({parley['sent_per_s_from_launch']:.0f} msg/s counting start-up); "
        f"first message sent {parley['first_sent_s']} s after launch, last {parley['last_sent_s']}"
        f" s; {parley['sent_after_retry']} sent after a retry; ratio {record['ratio']:.2f}x",
        f"CPU during Parley: workers {parley['worker_cpu_s']} s, PostgreSQL "
        f"{parley['postgres_cpu_s']} s, sink {parley['peer_cpu_s']} s, whole machine "
        f"{parley['machine_busy_cpu_s']} s ({parley['machine_busy_pct']}% of "
        f"{record['machine']['nproc']} cores)",
    ]


def main(extra: list[str]) -> int:
    parser = common.base_parser(WORKLOAD, __doc__ or "", 20_000)
    parser.add_argument(
        "--sink",
        choices=("minimal", "aiosmtpd"),
        default="aiosmtpd",
        help="SMTP sink (default aiosmtpd, the sink of the reference's raw figure; "
        "minimal costs a third less per message, so the client is measured harder)",
    )
    paired.add_round_options(parser)
    args = parser.parse_args(extra)
    if args.quick:
        args.count = min(args.count, 500)
    paired.settle_round_options(parser, args)
    return common.execute(WORKLOAD, args, run)
