"""Provider webhooks: verify, store the raw receipt once, apply its events to messages.

Status events only move a message forward (invariant 4): each event is stored with the
provider's timestamp and raw payload, deduplicated by the provider's event id, and the
message's status changes only when the event outranks it. An event for a message we
have not yet recorded a provider id for (the callback beat our own bookkeeping) is
retried shortly by a job that re-reads the stored receipt.
"""

from __future__ import annotations

import asyncio
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
from parley.inbox import receipt_batch, status_events
from parley.inbox.announce import EVENT as STATUS_CHANGED
from parley.inbox.announce import status_change_data
from parley.inbox.group_commit import GroupCommit
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
    """Verify a provider's webhook, store its receipt once and apply its status events;
    answered once that is committed.

    A receipt that carries only status events (the hot path: several callbacks per
    message) joins the process's group commit (`inbox.group_commit`): callbacks that
    arrive while earlier ones are being written are stored together, in one transaction
    with multi-row statements (`inbox.receipt_batch`). Anything else -- inbound messages,
    a batch that could not be written as one -- takes the single-receipt path.
    """
    account = await _recent_account(container, account_id)
    try:
        provider = await _verified(container, account, provider_name, request)
    except WebhookVerificationError:
        # The row may predate a secret rotation: decide again on a fresh read.
        account = await _recent_account(container, account_id, fresh=True)
        provider = await _verified(container, account, provider_name, request)
    assert account is not None  # _verified raised otherwise
    items = provider.parse_webhook(request)
    if not all(isinstance(item, DeliveryEvent) for item in items):
        return await _ingest_one(container, provider_name, account_id, request)
    pending = receipt_batch.PendingReceipt(
        account=account,
        provider=provider_name,
        dedupe_key=_dedupe_key(request),
        url=request.url,
        headers=_stored_headers(request),
        body=request.body,
        events=[item for item in items if isinstance(item, DeliveryEvent)],
    )
    return await _batcher(container).submit(_Submitted(pending, request))


# A second batch starts beside the one in flight only once this many callbacks wait
# (measured with `parley bench webhooks`, 1M messages: at 1 -- start at once -- batches
# stayed small and the API process spent 0.59 ms of CPU per callback; at 8, 0.58 ms; at
# 16, 0.51 ms, with p99 73 ms at 80% of full speed).
_OVERLAP_AT = 16


@dataclass(frozen=True, slots=True)
class _Submitted:
    pending: receipt_batch.PendingReceipt
    request: WebhookRequest


def _batcher(container: Container) -> GroupCommit[_Submitted, IngestResult]:
    """The process's group commit for receipts (one per event loop)."""
    batcher = container.receipt_batcher
    if batcher is None or batcher.loop is not asyncio.get_running_loop():

        async def process(batch: Sequence[_Submitted]) -> list[IngestResult | BaseException]:
            return await _store_batch(container, batch)

        batcher = GroupCommit(
            process,
            max_size=container.settings.webhook_batch_size,
            max_in_flight=2,
            overlap_at=_OVERLAP_AT,
        )
        container.receipt_batcher = batcher
    return batcher


async def _store_batch(
    container: Container, batch: Sequence[_Submitted]
) -> list[IngestResult | BaseException]:
    """One transaction for the batch; when it cannot be written as one (an account
    edited meanwhile, an event stored by someone else first), each receipt on its own."""
    pending = [s.pending for s in batch]
    try:
        # (Pipeline mode was measured here too: no cheaper in CPU -- psycopg still sends
        # each statement as it is queued -- and its enter/exit cost more than it saved.)
        async with container.db.pool.connection() as conn, conn.transaction():
            result = await receipt_batch.store_and_apply(conn, pending)
            await announce_changes(conn, result.changes)
            for p, stored in zip(pending, result.receipts, strict=True):
                if stored.receipt_id is None:
                    continue
                await whatsapp_templates.on_receipt(conn, p.account, p.body, container.clock())
                if stored.unmatched:
                    await _retry_later(container, conn, stored.receipt_id, 0)
    except (status_events.AccountChanged, psycopg.Error) as exc:
        log.info("batch of %d receipts applied one by one: %s", len(batch), exc)
        outcomes: list[IngestResult | BaseException] = []
        for s in batch:
            try:
                outcomes.append(
                    await _ingest_one(
                        container, s.pending.provider, s.pending.account.id, s.request
                    )
                )
            except Exception as one_exc:  # answered to its own request
                outcomes.append(one_exc)
        return outcomes
    return [
        IngestResult(
            duplicate=stored.receipt_id is None,
            events=len(p.events),
            unmatched=stored.unmatched,
        )
        for p, stored in zip(pending, result.receipts, strict=True)
    ]


async def _recent_account(
    container: Container, account_id: str, *, fresh: bool = False
) -> AccountRow | None:
    """The account as read a moment ago (re-reading it per callback was one query in
    five); the insert of its receipt checks that it is still the stored one."""
    cached = None if fresh else container.providers.cached_account(account_id)
    if cached is not None:
        return cached
    async with container.db.pool.connection() as conn:
        return await container.providers.recent_account(account_id, conn, fresh=fresh)


def _dedupe_key(request: WebhookRequest) -> str:
    return hashlib.sha256(request.body + request.url.encode()).hexdigest()


def _stored_headers(request: WebhookRequest) -> dict[str, Any]:
    return {k: v for k, v in request.headers.items() if k not in _SENSITIVE_HEADERS}


async def _ingest_one(
    container: Container, provider_name: str, account_id: str, request: WebhookRequest
) -> IngestResult:
    """A receipt on its own: one pooled connection, one transaction."""
    async with container.db.pool.connection() as conn:
        # The account may be as read a moment ago: the receipt's insert checks that it
        # is still the stored one; if not (a secret rotated, the account removed),
        # everything is decided again on a fresh read, so nothing is ever accepted or
        # refused on a stale row.
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
        dedupe_key=_dedupe_key(request),
        url=request.url,
        headers=_stored_headers(request),
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
