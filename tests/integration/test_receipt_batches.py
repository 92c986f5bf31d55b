"""Group commit of status callbacks (inbox.receipt_batch, inbox.group_commit) against a
real database.

- A batch leaves exactly what applying its receipts one by one leaves (a differential
  test over repeats, out-of-order and unknown events, failures with codes, several
  events per message, a repeated receipt and an event for no message).
- Concurrent callbacks really are written together.
- When a batch cannot be written as one -- the account was edited after it was read,
  or another transaction stored one of its events first -- every receipt is still
  stored and applied, one by one, and no request fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from parley.channels.base import DeliveryEvent, WebhookRequest
from parley.domain.status import EventType
from parley.inbox import receipt_batch, receipts, status_events
from tests.support import callbacks

TOKEN = "token-0123456789"
AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def _twilio(container: Any, tenant: Any) -> str:
    return await callbacks.twilio_account(container, tenant, TOKEN)


_sent = callbacks.sent_message


def _event(
    pid: str, kind: EventType, event_id: str, minutes: int, code: str | None = None
) -> DeliveryEvent:
    return DeliveryEvent(
        event_type=kind,
        provider_message_id=pid,
        provider_event_id=event_id,
        occurred_at=AT + timedelta(minutes=minutes),
        provider_status=kind.value,
        reason=f"carrier said {code}" if code else None,
        error_code=code,
        raw={"id": event_id},
    )


# Receipts (each a list of events), in arrival order.
SCRIPT: list[list[DeliveryEvent]] = [
    [_event("SMa", EventType.DELIVERED, "a-delivered", 2)],
    [_event("SMa", EventType.SENT, "a-sent", 1)],  # late: stored, moves nothing
    [_event("SMa", EventType.DELIVERED, "a-delivered", 2)],  # same event, new receipt
    [_event("SMb", EventType.SENT, "b-sent", 1), _event("SMb", EventType.READ, "b-read", 3)],
    [_event("SMc", EventType.FAILED, "c-failed", 2, code="30003")],
    [_event("SMc", EventType.DELIVERED, "c-delivered", 3)],  # after failure
    [_event("SMd", EventType.UNKNOWN, "d-unknown", 1)],
    [_event("SMd", EventType.DELIVERED, "d-delivered", 2)],
    [_event("SMd", EventType.FAILED, "d-failed", 3, code="30005")],  # after delivered
    [_event("SMnobody", EventType.DELIVERED, "x-delivered", 1)],  # no such message
    [_event("SMa", EventType.READ, "a-read", 4)],
]
SIDS = ["SMa", "SMb", "SMc", "SMd"]


def _pending(account: Any, n: int, events: list[DeliveryEvent]) -> receipt_batch.PendingReceipt:
    body = f"receipt-{n}".encode()
    return receipt_batch.PendingReceipt(
        account=account,
        provider="twilio",
        dedupe_key=hashlib.sha256(body).hexdigest(),
        url="http://test/webhooks/twilio",
        headers={"content-type": "text/plain"},
        body=body,
        events=events,
    )


async def _state(container: Any, account: str) -> dict[str, Any]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT provider_message_id, status, delivered_at, error_code, error_detail, "
            "status_changed_at FROM messages WHERE provider_account_id = %s",
            (account,),
        )
        messages = {row[0]: row[1:] for row in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT m.provider_message_id, e.provider_event_id, e.event_type, e.status_before, "
            "e.status_after, e.error_code, e.reason, e.occurred_at, e.raw FROM message_events e "
            "JOIN messages m ON m.id = e.message_id WHERE m.provider_account_id = %s "
            "AND e.source = 'provider' ORDER BY e.id",
            (account,),
        )
        events = await cur.fetchall()
        cur = await conn.execute(
            "SELECT count(*) FROM webhook_receipts WHERE provider_account_id = %s", (account,)
        )
        stored = (await cur.fetchone())[0]
    return {"messages": messages, "events": events, "receipts": stored}


async def test_a_batch_leaves_what_one_by_one_leaves(container: Any, tenant: Any) -> None:
    one_by_one, batched = await _twilio(container, tenant), await _twilio(container, tenant)
    for account in (one_by_one, batched):
        for sid in SIDS:
            await _sent(container, tenant, account, sid)
    rows = await container.providers.accounts([one_by_one, batched])

    # One by one: each receipt in its own transaction, on the single-receipt path.
    single_unmatched: list[int | None] = []
    single_changes: list[Any] = []
    for n, events in enumerate([*SCRIPT, SCRIPT[0]]):  # + a repeated receipt
        p = _pending(rows[one_by_one], n if n < len(SCRIPT) else 0, events)
        async with container.db.pool.connection() as conn, conn.transaction():
            receipt_id, targets = await status_events.store_receipt_and_lock(
                conn,
                account=p.account,
                provider=p.provider,
                dedupe_key=p.dedupe_key,
                url=p.url,
                headers=p.headers,
                body=p.body,
                events=p.events,
            )
            if receipt_id is None:
                single_unmatched.append(None)
                continue
            changes, unmatched = await status_events.record_events(conn, targets, p.events)
            single_unmatched.append(unmatched)
            single_changes.extend(changes)

    # The same receipts as one batch, in pipeline mode as ingestion runs it.
    batch = [_pending(rows[batched], n, events) for n, events in enumerate(SCRIPT)]
    batch.append(_pending(rows[batched], 0, SCRIPT[0]))
    async with container.db.pool.connection() as conn, conn.pipeline(), conn.transaction():
        result = await receipt_batch.store_and_apply(conn, batch)

    assert [r.unmatched if r.receipt_id else None for r in result.receipts] == single_unmatched
    assert single_unmatched[-1] is None and single_unmatched[9] == 1
    a, b = await _state(container, one_by_one), await _state(container, batched)
    assert a == b
    assert a["receipts"] == len(SCRIPT)
    assert {sid: m[0] for sid, m in b["messages"].items()} == {
        "SMa": "read",
        "SMb": "read",
        "SMc": "delivered",  # a carrier's late "delivered" outranks its "failed"
        "SMd": "delivered",
    }
    assert b["messages"]["SMc"][2:4] == ("30003", "carrier said 30003")
    assert [(c.event.provider_event_id, c.before, c.after) for c in result.changes] == [
        (c.event.provider_event_id, c.before, c.after) for c in single_changes
    ]
    assert len(result.changes) >= 5


async def test_concurrent_callbacks_are_written_together(container: Any, tenant: Any) -> None:
    container.receipt_batcher = None  # a fresh group commit, counted from zero
    account = await _twilio(container, tenant)
    sids = [f"SMg{i:03d}" for i in range(20)]
    for sid in sids:
        await _sent(container, tenant, account, sid)
    requests = [
        _callback(container, account, sid, s) for sid in sids for s in ("sent", "delivered")
    ]
    answers = await asyncio.gather(*(_post(tenant, r) for r in requests))
    assert [a.status_code for a in answers] == [200] * len(requests)
    batcher = container.receipt_batcher
    assert batcher is not None
    assert batcher.largest > 1 and batcher.batches < len(requests), (
        batcher.batches,
        batcher.largest,
    )
    state = await _state(container, account)
    assert {m[0] for m in state["messages"].values()} == {"delivered"}
    assert len(state["events"]) == 40 and state["receipts"] == 40


async def test_an_edited_account_sends_the_batch_one_by_one(
    container: Any, tenant: Any, caplog: Any
) -> None:
    account = await _twilio(container, tenant)
    await _sent(container, tenant, account, "SMedit")
    stale = (await container.providers.accounts([account]))[account]
    async with container.db.pool.connection() as conn:
        await conn.execute(
            'UPDATE provider_accounts SET config = config || \'{"note": "edited"}\' WHERE id = %s',
            (account,),
        )
    requests = [_callback(container, account, "SMedit", s) for s in ("sent", "delivered")]
    batch = [
        receipts._Submitted(
            receipt_batch.PendingReceipt(
                account=stale,
                provider="twilio",
                dedupe_key=receipts._dedupe_key(r),
                url=r.url,
                headers=receipts._stored_headers(r),
                body=r.body,
                events=await _events(container, stale, r),
            ),
            r,
        )
        for r in requests
    ]
    with caplog.at_level(logging.INFO, logger="parley.inbox.receipts"):
        outcomes = await receipts._store_batch(container, batch)
    assert "applied one by one" in caplog.text
    assert [(o.duplicate, o.events, o.unmatched) for o in outcomes] == [(False, 1, 0)] * 2
    state = await _state(container, account)
    assert state["messages"]["SMedit"][0] == "delivered"
    assert state["receipts"] == 2 and len(state["events"]) == 2


async def test_an_event_stored_meanwhile_sends_the_batch_one_by_one(
    container: Any, tenant: Any, caplog: Any
) -> None:
    """The batch's lock waits for a transaction that stores one of its events; the lock
    statement's snapshot predates that commit, so the batch believes the event new and
    its insert hits the unique index. The batch rolls back and each receipt is applied
    on its own, which sees the stored event."""
    account = await _twilio(container, tenant)
    message_id = await _sent(container, tenant, account, "SMrace")
    row = (await container.providers.accounts([account]))[account]
    delivered = _event("SMrace", EventType.DELIVERED, "race-delivered", 2)
    requests = [_callback(container, account, "SMrace", "delivered")]
    submitted = [
        receipts._Submitted(
            receipt_batch.PendingReceipt(
                account=row,
                provider="twilio",
                dedupe_key=receipts._dedupe_key(requests[0]),
                url=requests[0].url,
                headers=receipts._stored_headers(requests[0]),
                body=requests[0].body,
                events=[delivered],
            ),
            requests[0],
        )
    ]
    with caplog.at_level(logging.INFO, logger="parley.inbox.receipts"):
        async with container.db.pool.connection() as other:
            async with other.transaction():
                await other.execute(
                    "SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (message_id,)
                )
                await other.execute(
                    "INSERT INTO message_events (organization_id, message_id, event_type, "
                    "status_before, status_after, source, provider_event_id, occurred_at) "
                    "VALUES (%s, %s, 'delivered', 'sent', 'delivered', 'provider', "
                    "%s, now())",
                    (tenant.organization_id, message_id, delivered.provider_event_id),
                )
                await other.execute(
                    "UPDATE messages SET status = 'delivered' WHERE id = %s", (message_id,)
                )
                task = asyncio.create_task(receipts._store_batch(container, submitted))
                await _until_waiting_for_a_lock(container)
            outcomes = await task  # `other` has committed
    assert "applied one by one" in caplog.text
    assert [(o.duplicate, o.unmatched) for o in outcomes] == [(False, 0)]
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT provider_event_id, status_before, status_after FROM message_events "
            "WHERE message_id = %s ORDER BY id",
            (message_id,),
        )
        events = await cur.fetchall()
    # The callback's event (the Twilio token, not our pre-stored id) was applied once,
    # on top of the committed state: nothing doubled, nothing moved backwards.
    assert events[0] == ("race-delivered", "sent", "delivered")
    assert [e[1:] for e in events[1:]] == [("delivered", "delivered")]


async def _until_waiting_for_a_lock(container: Any) -> None:
    for _ in range(200):
        async with container.db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            )
            if (await cur.fetchone())[0]:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never waited for the message's lock")


async def _events(container: Any, account: Any, request: WebhookRequest) -> list[DeliveryEvent]:
    provider = await container.providers.get(account)
    return [i for i in provider.parse_webhook(request) if isinstance(i, DeliveryEvent)]


def _callback(container: Any, account: str, sid: str, status: str) -> WebhookRequest:
    return callbacks.status_callback(container, account, sid, status, TOKEN)


_post = callbacks.post
