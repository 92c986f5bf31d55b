"""Provider webhooks: verify, store the raw receipt once, apply its events to messages.

Status events only move a message forward (invariant 4): each event is stored with the
provider's timestamp and raw payload, deduplicated by the provider's event id, and the
message's status changes only when the event outranks it. An event for a message we
have not yet recorded a provider id for (the callback beat our own bookkeeping) is
retried shortly by a job that re-reads the stored receipt.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from parley.channels.base import (
    ChannelProvider,
    DeliveryEvent,
    InboundMessage,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.inbox import status_events
from parley.inbox.announce import EVENT as STATUS_CHANGED
from parley.inbox.announce import status_change_data
from parley.services import activity, whatsapp_templates

if TYPE_CHECKING:
    from parley.bootstrap import Container
    from parley.dispatch.providers import AccountRow

log = logging.getLogger(__name__)

UNMATCHED_RETRIES = 5
_SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


class UnknownWebhookAccount(LookupError):
    pass


AccountChanged = status_events.AccountChanged


@dataclass(frozen=True, slots=True)
class IngestResult:
    duplicate: bool
    events: int
    unmatched: int


async def ingest(
    container: Container, provider_name: str, account_id: str, request: WebhookRequest
) -> IngestResult:
    # One pooled connection for the whole callback: each checkout costs a round trip.
    async with container.db.pool.connection() as conn:
        # The account as read a moment ago: re-reading it per callback was one query in
        # five. The receipt's insert checks that it is still the stored one; if not (a
        # secret rotated, the account removed), everything is decided again on a fresh
        # read, so nothing is ever accepted or refused on a stale row.
        for attempt in range(3):
            fresh = attempt > 0
            account = await container.providers.recent_account(account_id, conn, fresh=fresh)
            try:
                provider = await _verified(container, account, provider_name, request)
            except WebhookVerificationError:
                if fresh:
                    raise
                continue
            assert account is not None  # _verified raised otherwise
            items = provider.parse_webhook(request)
            try:
                # (Pipeline mode was measured here: slower, its enter/exit syncs cost
                # more than the round trips it saves.)
                async with conn.transaction():
                    return await _store_and_apply(
                        container, conn, account, provider_name, request, items
                    )
            except status_events.AccountChanged:
                continue
        raise status_events.AccountChanged(account_id)  # edited again and again: retry later


async def _verified(
    container: Container, account: AccountRow | None, provider_name: str, request: WebhookRequest
) -> ChannelProvider:
    """The account's provider, once it has verified the request's signature."""
    if account is None or account.provider != provider_name:
        raise UnknownWebhookAccount(f"no such {provider_name} account")
    provider = await container.providers.get(account)
    provider.verify_webhook(request)  # raises WebhookVerificationError
    return provider


async def _store_and_apply(
    container: Container,
    conn: psycopg.AsyncConnection,
    account: AccountRow,
    provider_name: str,
    request: WebhookRequest,
    items: list[DeliveryEvent | InboundMessage],
) -> IngestResult:
    """Store the receipt once (deduplicated by URL + body) and apply its status events in
    the same transaction; inbound messages go to a worker (`process_inbound`)."""
    events = [item for item in items if isinstance(item, DeliveryEvent)]
    receipt_id, targets = await status_events.store_receipt_and_lock(
        conn,
        account=account,
        provider=provider_name,
        dedupe_key=hashlib.sha256(request.body + request.url.encode()).hexdigest(),
        url=request.url,
        headers={k: v for k, v in request.headers.items() if k not in _SENSITIVE_HEADERS},
        body=request.body,
        events=events,
    )
    if receipt_id is None:
        return IngestResult(duplicate=True, events=len(items), unmatched=0)
    changes, unmatched = await status_events.record_events(conn, targets, events)
    await announce_changes(conn, changes)
    await whatsapp_templates.on_receipt(conn, account, request.body, container.clock())
    if unmatched:
        await _retry_later(container, conn, receipt_id, 0)
    if len(events) < len(items):
        await defer_inbound(container, conn, receipt_id)
    return IngestResult(duplicate=False, events=len(items), unmatched=unmatched)


async def ingest_received(
    container: Container,
    account: AccountRow,
    raw: bytes,
    items: Sequence[DeliveryEvent | InboundMessage],
    *,
    provider: Any = None,
) -> IngestResult:
    """What a listening provider received on its own connection (an SMPP deliver_sm, an
    IMAP message): stored once as a receipt and processed exactly like a webhook's, so
    `replay` re-parses it with the provider's `parse_webhook`.

    The receipt's URL names the listener (`listener://<provider>/<account>`); its headers
    carry the provider's `received_content_type` and the receipt time
    (`x-parley-received-at`), which `parse_webhook` may use for items with no time of
    their own. The provider's `receipt_key(raw)`, when it has one, deduplicates (e.g.
    without the PDU sequence number an SMSC changes when it offers a PDU again)."""
    url = f"listener://{account.provider}/{account.id}"
    content_type = getattr(provider, "received_content_type", "application/octet-stream")
    headers = {"content-type": content_type, "x-parley-received-at": container.clock().isoformat()}
    key_of = getattr(provider, "receipt_key", None)
    key = key_of(raw) if callable(key_of) else raw
    events = [item for item in items if isinstance(item, DeliveryEvent)]
    async with container.db.pool.connection() as conn, conn.transaction():
        try:
            receipt_id, targets = await status_events.store_receipt_and_lock(
                conn,
                account=account,
                provider=account.provider,
                dedupe_key=hashlib.sha256(key + url.encode()).hexdigest(),
                url=url,
                headers=headers,
                body=raw,
                events=events,
            )
        except status_events.AccountChanged:
            # Received on a bind opened with settings since edited: stored all the same
            # (the connection was authentic when it was opened).
            receipt_id, targets = await _store_unchecked(conn, account, url, headers, raw, key)
            if receipt_id is not None:
                targets = await status_events.lock_messages(conn, account.id, events)
        if receipt_id is None:
            return IngestResult(duplicate=True, events=len(items), unmatched=0)
        changes, unmatched = await status_events.record_events(conn, targets, events)
        await announce_changes(conn, changes)
        if unmatched:
            await _retry_later(container, conn, receipt_id, 0)
        if len(events) < len(items):
            await defer_inbound(container, conn, receipt_id)
    return IngestResult(duplicate=False, events=len(items), unmatched=unmatched)


async def _store_unchecked(
    conn: psycopg.AsyncConnection,
    account: AccountRow,
    url: str,
    headers: dict[str, Any],
    raw: bytes,
    key: bytes,
) -> tuple[int | None, dict[str, status_events.Target]]:
    cur = await conn.execute(
        "INSERT INTO webhook_receipts (organization_id, provider_account_id, provider, "
        "dedupe_key, url, headers, body) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (provider_account_id, dedupe_key) DO NOTHING RETURNING id",
        (
            account.organization_id,
            account.id,
            account.provider,
            hashlib.sha256(key + url.encode()).hexdigest(),
            url,
            orjson.dumps(headers).decode(),
            raw,
        ),
    )
    row = await cur.fetchone()
    return (row[0] if row else None), {}


async def announce_changes(
    conn: psycopg.AsyncConnection, changes: Sequence[status_events.StatusChange]
) -> None:
    """`message.status_changed` for every message an event moved: live clients and
    customer webhooks, in one statement for the whole receipt."""
    if not changes:
        return
    await activity.emit_many(
        conn,
        [
            (
                c.organization_id,
                STATUS_CHANGED,
                status_change_data(
                    c.message_id,
                    c.case_id,
                    c.channel,
                    c.after.value,
                    c.before.value,
                    c.event.occurred_at,
                    c.event.error_code,
                ),
            )
            for c in changes
        ],
    )


async def process_stored_receipt(container: Container, receipt_id: int, attempt: int) -> None:
    """Re-apply a stored receipt whose events matched no message yet (retried a few times:
    the callback may have beaten our own bookkeeping of the provider's id)."""
    async with container.db.pool.connection() as conn, conn.transaction():
        unmatched = await _reapply(container, conn, receipt_id)
        if unmatched and attempt + 1 < UNMATCHED_RETRIES:
            await _retry_later(container, conn, receipt_id, attempt + 1)
        elif unmatched:
            log.warning("receipt %s: %d events match no message", receipt_id, unmatched)


async def replay(
    container: Container, *, account_id: str | None = None, since: datetime | None = None
) -> tuple[int, int]:
    """Re-apply stored receipts (all, or one account's, or those received since a time);
    safe to repeat because events are deduplicated. Returns (receipts, unmatched events)."""
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM webhook_receipts WHERE (%(account)s::uuid IS NULL "
            "OR provider_account_id = %(account)s::uuid) AND (%(since)s::timestamptz IS NULL "
            "OR received_at >= %(since)s::timestamptz) ORDER BY id",
            {"account": account_id, "since": since},
        )
        ids = [r[0] for r in await cur.fetchall()]
    unmatched = 0
    for receipt_id in ids:
        async with container.db.pool.connection() as conn, conn.transaction():
            unmatched += await _reapply(container, conn, receipt_id, inbound=True) or 0
    return len(ids), unmatched


async def _reapply(
    container: Container, conn: psycopg.AsyncConnection, receipt_id: int, inbound: bool = False
) -> int | None:
    """Parse a stored receipt again and apply its events on `conn`; the number of events
    that matched no message (None when the receipt or its account is gone)."""
    cur = await conn.execute(
        "SELECT provider_account_id::text, url, headers, body FROM webhook_receipts WHERE id = %s",
        (receipt_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    account_id, url, headers, body = row
    # The account is read on this connection: a second pooled one while this one is held
    # could exhaust the pool under load.
    account = (await container.providers.accounts([account_id], conn=conn)).get(account_id)
    if account is None:
        return None
    provider = await container.providers.get(account)
    request = WebhookRequest(method="POST", url=url, headers=headers, body=bytes(body))
    items = provider.parse_webhook(request)
    if inbound and any(isinstance(item, InboundMessage) for item in items):
        await defer_inbound(container, conn, receipt_id)  # idempotent: recorded once
    return await _apply_all(conn, account_id, items)


async def defer_inbound(
    container: Container, conn: psycopg.AsyncConnection, receipt_id: int
) -> None:
    """Inbound messages are handled by a worker (inbox.inbound), in the receipt's
    transaction so none is lost."""
    task = container.jobs.tasks["parley:process_inbound"]
    await task.configure(connection=conn).defer_async(receipt_id=receipt_id)


async def _retry_later(
    container: Container, conn: psycopg.AsyncConnection, receipt_id: int, attempt: int
) -> None:
    task = container.jobs.tasks["parley:process_receipt"]
    at = container.clock() + timedelta(seconds=2 * (attempt + 1))
    await task.configure(connection=conn, schedule_at=at).defer_async(
        receipt_id=receipt_id, attempt=attempt
    )


async def _apply_all(
    conn: psycopg.AsyncConnection, account_id: str, items: list[DeliveryEvent | InboundMessage]
) -> int:
    """Apply the status events among `items`; how many matched no message. (Inbound
    messages are handled by the process_inbound job, see defer_inbound.)"""
    events = [item for item in items if isinstance(item, DeliveryEvent)]
    targets = await status_events.lock_messages(conn, account_id, events)
    changes, unmatched = await status_events.record_events(conn, targets, events)
    await announce_changes(conn, changes)
    return unmatched


async def apply_event(conn: psycopg.AsyncConnection, account_id: str, event: DeliveryEvent) -> bool:
    """Apply one provider event; False if no message carries its provider id yet."""
    return await _apply_all(conn, account_id, [event]) == 0


__all__ = [
    "IngestResult",
    "UnknownWebhookAccount",
    "WebhookVerificationError",
    "ingest",
    "ingest_received",
]
