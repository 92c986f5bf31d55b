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
    DeliveryEvent,
    InboundMessage,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.domain.status import EventType, MessageStatus, status_after_event
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


@dataclass(frozen=True, slots=True)
class IngestResult:
    duplicate: bool
    events: int
    unmatched: int


async def ingest(
    container: Container, provider_name: str, account_id: str, request: WebhookRequest
) -> IngestResult:
    account = await container.providers.account(account_id)
    if account is None or account.provider != provider_name:
        raise UnknownWebhookAccount(f"no {provider_name} account {account_id}")
    provider = await container.providers.get(account)
    provider.verify_webhook(request)  # raises WebhookVerificationError
    items = provider.parse_webhook(request)
    dedupe = hashlib.sha256(request.body + request.url.encode()).hexdigest()
    headers = {k: v for k, v in request.headers.items() if k not in _SENSITIVE_HEADERS}
    async with container.db.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO webhook_receipts (organization_id, provider_account_id, provider, "
            "dedupe_key, url, headers, body) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (provider_account_id, dedupe_key) DO NOTHING RETURNING id",
            (
                account.organization_id,
                account.id,
                provider_name,
                dedupe,
                request.url,
                orjson.dumps(headers).decode(),
                request.body,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            return IngestResult(duplicate=True, events=len(items), unmatched=0)
        unmatched = await _apply_all(conn, account.id, items)
        await whatsapp_templates.on_receipt(conn, account, request.body, container.clock())
        if unmatched:
            await _retry_later(container, conn, row[0], 0)
        if any(isinstance(item, InboundMessage) for item in items):
            await defer_inbound(container, conn, row[0])
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
    dedupe = hashlib.sha256(key + url.encode()).hexdigest()
    async with container.db.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO webhook_receipts (organization_id, provider_account_id, provider, "
            "dedupe_key, url, headers, body) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (provider_account_id, dedupe_key) DO NOTHING RETURNING id",
            (
                account.organization_id,
                account.id,
                account.provider,
                dedupe,
                url,
                orjson.dumps(headers).decode(),
                raw,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            return IngestResult(duplicate=True, events=len(items), unmatched=0)
        unmatched = await _apply_all(conn, account.id, list(items))
        if unmatched:
            await _retry_later(container, conn, row[0], 0)
        if any(isinstance(item, InboundMessage) for item in items):
            await defer_inbound(container, conn, row[0])
    return IngestResult(duplicate=False, events=len(items), unmatched=unmatched)


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
    unmatched = 0
    # Inbound messages are handled by the process_inbound job (see defer_inbound).
    for item in items:
        if isinstance(item, DeliveryEvent) and not await apply_event(conn, account_id, item):
            unmatched += 1
    return unmatched


async def apply_event(conn: psycopg.AsyncConnection, account_id: str, event: DeliveryEvent) -> bool:
    """Apply one provider event; False if no message carries its provider id yet."""
    cur = await conn.execute(
        "SELECT id::text, organization_id::text, status, case_id::text, channel FROM messages "
        "WHERE provider_account_id = %s AND provider_message_id = %s FOR UPDATE",
        (account_id, event.provider_message_id),
    )
    row = await cur.fetchone()
    if row is None:
        return False
    message_id, org_id, status, case_id, channel = row
    before = MessageStatus(status)
    after = status_after_event(before, event.event_type)
    cur = await conn.execute(
        "INSERT INTO message_events (organization_id, message_id, event_type, status_before, "
        "status_after, source, provider_event_id, provider_status, error_code, reason, "
        "occurred_at, raw) VALUES (%s, %s, %s, %s, %s, 'provider', %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (message_id, provider_event_id) DO NOTHING RETURNING id",
        (
            org_id,
            message_id,
            event.event_type.value,
            before.value,
            after.value,
            event.provider_event_id,
            event.provider_status,
            event.error_code,
            event.reason,
            event.occurred_at,
            _json(event.raw),
        ),
    )
    inserted = await cur.fetchone()
    if inserted is None or after is before:
        return True  # duplicate event, or one that can't move the status: stored/absorbed
    sets = ["status = %s", "status_changed_at = %s"]
    params: list[Any] = [after.value, event.occurred_at]
    if after is MessageStatus.DELIVERED:
        sets.append("delivered_at = coalesce(delivered_at, %s)")
        params.append(event.occurred_at)
    if event.event_type in (EventType.FAILED, EventType.BOUNCED, EventType.REJECTED):
        sets.append("error_code = coalesce(%s, error_code)")
        sets.append("error_detail = coalesce(%s, error_detail)")
        params += [event.error_code, event.reason]
    params.append(message_id)
    # `sets` holds only the constant fragments above; values go as parameters.
    await conn.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = %s", params)  # noqa: S608
    await activity.emit(
        conn,
        org_id,
        STATUS_CHANGED,
        status_change_data(
            message_id,
            case_id,
            channel,
            after.value,
            before.value,
            event.occurred_at,
            event.error_code if after is not before and event.error_code else None,
        ),
    )
    return True


def _json(raw: dict[str, Any]) -> str:
    return orjson.dumps(raw, default=str).decode()


__all__ = [
    "IngestResult",
    "UnknownWebhookAccount",
    "WebhookVerificationError",
    "ingest",
    "ingest_received",
]
