"""The webhook ingestion path against a real database: what the hot-path shortcuts
(an account row read a moment ago, two statements per callback) must not change.

- A rotated secret counts from the next callback: the old one is refused at once even
  though the API process read the account with the old secret moments before.
- Several events for one message in one receipt compose forward-only, duplicates and
  out-of-order events included (invariant 4), with one status change recorded per move.
- Concurrent callbacks for the same messages, shuffled and repeated, leave each message
  with exactly its events and one transition.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from parley.channels.base import DeliveryEvent, WebhookRequest
from parley.channels.twilio import kit
from parley.domain.status import EventType
from parley.inbox import status_events
from parley.services import provider_accounts
from tests.support import callbacks, factories

_twilio = callbacks.twilio_account
_sent_message = callbacks.sent_message
_callback = callbacks.status_callback
_post = callbacks.post


async def test_a_rotated_secret_counts_from_the_next_callback(container: Any, tenant: Any) -> None:
    account = await _twilio(container, tenant, "old-token-0123456789")
    first = await _post(
        tenant, _callback(container, account, "SM1", "sent", "old-token-0123456789")
    )
    assert first.status_code == 200, first.text  # the API process now holds the row
    async with container.db.session() as session:
        await provider_accounts.update_account(
            session,
            tenant.organization_id,
            uuid.UUID(account),
            {"secrets": {"auth_token": "new-token-9876543210"}},
        )
    stale = await _post(
        tenant, _callback(container, account, "SM2", "sent", "old-token-0123456789")
    )
    assert stale.status_code == 403, stale.text
    rotated = await _post(
        tenant, _callback(container, account, "SM3", "sent", "new-token-9876543210")
    )
    assert rotated.status_code == 200, rotated.text
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM webhook_receipts")
        assert (await cur.fetchone())[0] == 2


async def test_events_of_one_receipt_compose_forward_only(container: Any, tenant: Any) -> None:
    account = await _twilio(container, tenant, "token-0123456789")
    message_id = await _sent_message(container, tenant, account, "SMcompose")
    at = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def event(kind: EventType, event_id: str, minutes: int) -> DeliveryEvent:
        return DeliveryEvent(
            event_type=kind,
            provider_message_id="SMcompose",
            provider_event_id=event_id,
            occurred_at=at + timedelta(minutes=minutes),
            provider_status=kind.value,
            raw={"id": event_id},
        )

    events = [
        event(EventType.DELIVERED, "e-delivered", 2),
        event(EventType.SENT, "e-sent", 1),  # late: absorbed
        event(EventType.DELIVERED, "e-delivered", 2),  # duplicate: skipped
        event(EventType.READ, "e-read", 3),
        event(EventType.UNKNOWN, "e-unknown", 4),  # stored, moves nothing
    ]
    async with container.db.pool.connection() as conn, conn.transaction():
        targets = await status_events.lock_messages(conn, account, events)
        changes, unmatched = await status_events.record_events(conn, targets, events)
    assert unmatched == 0
    assert [(c.before.value, c.after.value) for c in changes] == [
        ("sent", "delivered"),
        ("delivered", "read"),
    ]
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT provider_event_id, status_before, status_after FROM message_events "
            "WHERE message_id = %s AND source = 'provider' ORDER BY id",
            (message_id,),
        )
        assert await cur.fetchall() == [
            ("e-delivered", "sent", "delivered"),
            ("e-sent", "delivered", "delivered"),
            ("e-read", "delivered", "read"),
            ("e-unknown", "read", "read"),
        ]
        cur = await conn.execute(
            "SELECT status, delivered_at FROM messages WHERE id = %s", (message_id,)
        )
        assert await cur.fetchone() == ("read", at + timedelta(minutes=2))


async def test_concurrent_shuffled_callbacks_apply_once(container: Any, tenant: Any) -> None:
    token = "token-0123456789"
    account = await _twilio(container, tenant, token)
    sids = [f"SMc{i:03d}" for i in range(12)]
    messages = {sid: await _sent_message(container, tenant, account, sid) for sid in sids}
    requests = [
        _callback(container, account, sid, status, token)
        for sid in sids
        for status in ("sending", "sent", "delivered")
    ]
    rng = random.Random(3)
    requests += rng.sample(requests, 10)  # provider retries of the same callbacks
    rng.shuffle(requests)
    answers = await asyncio.gather(*(_post(tenant, r) for r in requests))
    assert [a.status_code for a in answers] == [200] * len(requests)
    assert sum(a.json()["duplicate"] for a in answers) == 10
    async with container.db.pool.connection() as conn:
        for sid, message_id in messages.items():
            cur = await conn.execute(
                "SELECT m.status, count(e.id), count(e.id) FILTER "
                "(WHERE e.status_after <> e.status_before) FROM messages m JOIN message_events e "
                "ON e.message_id = m.id AND e.source = 'provider' WHERE m.id = %s GROUP BY m.id",
                (message_id,),
            )
            assert await cur.fetchone() == ("delivered", 3, 1), sid


async def test_replay_covers_inbound_receipts_once(container: Any, tenant: Any) -> None:
    """`parley replay-receipts` re-runs every kind of receipt: an inbound message's
    receipt is handed to the inbound job again, and handling it twice records it once."""
    from parley.inbox import inbound
    from parley.inbox.receipts import replay

    token = "token-0123456789"
    account = await _twilio(container, tenant, token)
    await factories.borrower_with_case(container, tenant.organization_id, phone="+12025550188")
    body = urlencode(
        {
            "MessageSid": "SMinbound0001",
            "SmsStatus": "received",
            "From": "+12025550188",
            "To": kit.FROM_NUMBER,
            "Body": "I can pay on Friday",
            "AccountSid": kit.CONFIG["account_sid"],
        }
    ).encode()
    request = kit.sign(
        WebhookRequest(
            method="POST",
            url=f"{container.settings.base_url}/webhooks/twilio/{account}",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body=body,
        ),
        {"auth_token": token},
    )
    assert (await _post(tenant, request)).status_code == 200
    assert await replay(container, account_id=account) == (1, 0)

    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (args->>'receipt_id')::bigint FROM procrastinate_jobs "
            "WHERE task_name = 'parley:process_inbound' ORDER BY id"
        )
        jobs = [r[0] for r in await cur.fetchall()]
    assert len(jobs) == 2 and len(set(jobs)) == 1  # the original and the replay
    handled = [await inbound.process_receipt(container, receipt_id) for receipt_id in jobs]
    assert handled == [1, 0]
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM messages WHERE direction = 'inbound' "
            "AND provider_message_id = 'SMinbound0001'"
        )
        assert (await cur.fetchone())[0] == 1
