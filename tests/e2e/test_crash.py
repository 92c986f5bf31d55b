"""Crash test (invariants 1 and 2): kill -9 a worker mid-send and start another.

2,000 email messages go to a real SMTP server (aiosmtpd). The first worker process is
SIGKILLed once the server has received a few hundred; a second worker takes over,
re-queues the dead worker's jobs, and finishes. Afterwards every message is in exactly
one terminal state, the server received each message at most once, every message the
database calls sent was received, and every received message is either sent or flagged
for review (it was in flight when the worker died).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from parley.bench.seed import seed
from parley.domain.channels import Channel
from parley.domain.status import TERMINAL
from parley.peers.smtp_sink import SmtpSink, read_recorded_ids
from tests.support.live import worker_process

pytestmark = pytest.mark.slow

TOTAL = 2000


def _worker(database_url: str, log: Path) -> subprocess.Popen[bytes]:
    return worker_process(
        database_url,
        {
            "PARLEY_STALLED_WORKER_SECONDS": "3",
            "PARLEY_WORKER_CONCURRENCY": "4",
            "PARLEY_DISPATCH_PARALLELISM": "20",
            "PARLEY_RETRY_BASE_SECONDS": "0.2",
        },
        log,
    )


async def _statuses(container) -> Counter[str]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT status, count(*) FROM messages GROUP BY status")
        return Counter(dict(await cur.fetchall()))


async def test_kill_9_mid_send_loses_nothing_and_sends_nothing_twice(
    container, database_url, tmp_path
):
    ledger_file = tmp_path / "received.txt"
    log = tmp_path / "worker.log"
    with SmtpSink(record_path=ledger_file) as sink:
        seeded = await seed(
            container,
            count=TOTAL,
            channel=Channel.EMAIL,
            provider="smtp",
            config={
                "host": "127.0.0.1",
                "port": sink.port,
                "from_address": "collections@crash.test",
                "pool_size": 4,
            },
            secrets={},
            borrowers=200,
            batch_size=100,
        )
        first = _worker(database_url, log)
        try:
            deadline = time.monotonic() + 120
            # Kill mid-send: once a few hundred arrived and messages are `sending`.
            while (
                len(read_recorded_ids(ledger_file)) < 400
                or (await _statuses(container)).get("sending", 0) == 0
            ):
                assert first.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "first worker made no progress"
                await asyncio.sleep(0.01)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = len(read_recorded_ids(ledger_file))
        assert killed_at < TOTAL, "the worker finished before it could be killed"
        before = await _statuses(container)  # frozen: the worker is dead
        assert before["sending"] > 0, f"nothing was in flight at the kill: {before}"

        second = _worker(database_url, log)
        try:
            deadline = time.monotonic() + 180
            while True:
                counts = await _statuses(container)
                if sum(n for s, n in counts.items() if s not in TERMINAL) == 0:
                    break
                assert second.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"not finished: {counts}"
                await asyncio.sleep(0.2)
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=30)
            except subprocess.TimeoutExpired:
                second.kill()

        received = read_recorded_ids(ledger_file)
        assert sink.duplicates() == {}

    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT rfc822_message_id, status FROM messages WHERE organization_id = %s",
            (seeded.organization_id,),
        )
        rows = await cur.fetchall()
    assert len(rows) == TOTAL  # none lost, none invented
    by_status: dict[str, set[str]] = {}
    for mid, status in rows:
        by_status.setdefault(status, set()).add(mid)
    assert set(by_status) <= {"sent", "needs_review"}, by_status.keys()
    sent = by_status.get("sent", set())
    review = by_status.get("needs_review", set())
    # At most once on the wire.
    assert all(n == 1 for n in received.values()), [m for m, n in received.items() if n > 1]
    # Every message we call sent really arrived; nothing arrived that we don't know about.
    assert sent <= set(received)
    assert set(received) <= sent | review
    # Exactly the messages in flight at the kill need review; nothing else does.
    assert len(review) == before["sending"]
    assert len(review) <= 4 * 20  # worker concurrency x dispatch parallelism
    print(
        f"\ncrash test: killed after {killed_at} received; statuses at kill {dict(before)}; "
        f"final sent={len(sent)} needs_review={len(review)} received={len(received)}"
    )
