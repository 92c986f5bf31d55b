"""Many verified webhook receipts stored, and their status events applied, in two statements.

The batched form of `status_events.store_receipt_and_lock` + `record_events`, for the
group commit of status callbacks (`receipts.ingest`). Within the caller's transaction:

1. store the receipts, each unless one with its dedupe key exists (a repeat within the
   batch counts as a repeat too), in one insert -- which also checks that every account
   the receipts were verified with is still the stored one (else nothing is written and
   :class:`~parley.inbox.status_events.AccountChanged` is raised);
2. in the same statement, once the insert is done, lock the messages the receipts'
   events name, in id order (so concurrent batches and single receipts cannot
   deadlock), reading each one's status and which of the batch's provider event ids it
   already has;
3. walk the events in arrival order through the domain's status machine
   (`status_after_event`), exactly as `record_events` would one by one: a repeated
   event id changes nothing, an event that cannot advance the status is stored with
   before = after;
4. insert every event and update every moved message in one statement. The insert has
   no ON CONFLICT: if a concurrent writer stored one of the events first (step 2 reads
   the event ids with the statement's snapshot, which may predate a commit it waited
   for), the unique index fails the statement, the caller rolls the batch back and
   applies its receipts one by one instead.

So a batch of any size is two statements (plus BEGIN, COMMIT and the announcements),
and a third only when an event is a WhatsApp 131047 failure, which also closes the
number's customer-service window (`status_events.close_whatsapp_windows`).

Events whose provider id names a part of a multi-part message (SMPP, `message_parts`)
match no message here; they come over listener connections, never through the webhook
route, and a receipt with unmatched events is re-applied by the `process_receipt` job on
the single-receipt path, which resolves parts.

Receipts are inserted in (account, dedupe key) order so two batches that share a repeat
wait for each other in a fixed order rather than deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from parley.channels.base import DeliveryEvent
from parley.domain.status import EventType, MessageStatus, status_after_event
from parley.inbox.status_events import AccountChanged, StatusChange, close_whatsapp_windows

if TYPE_CHECKING:
    from parley.dispatch.providers import AccountRow

_FAILURES = frozenset({EventType.FAILED, EventType.BOUNCED, EventType.REJECTED})

# Each statement takes its rows as one JSON array (`jsonb_to_recordset`): orjson writes it
# in C, where psycopg would adapt every array element in Python (measured: the largest
# cost of a batch in the API process).
# Steps 1 and 2 in one statement. Its rows: one ('a', number of unchanged accounts), one
# ('r', receipt id, account, dedupe key) per new receipt, one ('m', ...) per locked
# message. The lock waits for the receipts' insert (its InitPlan counts them), so a
# batch takes its receipts' keys before its messages' locks, in that order, as a single
# receipt does: two batches sharing a repeat wait for each other instead of deadlocking.
_RECEIPTS_AND_LOCK_SQL = """
WITH a AS (
  SELECT count(*) AS n
  FROM jsonb_to_recordset(%(accounts)s::jsonb) AS u(id uuid, config jsonb, secrets jsonb)
  JOIN provider_accounts p ON p.id = u.id AND p.config = u.config AND p.secrets = u.secrets
), r AS (
  INSERT INTO webhook_receipts (organization_id, provider_account_id, provider, dedupe_key,
                                url, headers, body)
  SELECT u.org, u.account, u.provider, u.dedupe, u.url, u.headers, decode(u.body, 'hex')
  FROM jsonb_to_recordset(%(receipts)s::jsonb)
       AS u(org uuid, account uuid, provider text, dedupe text, url text, headers jsonb,
            body text)
  WHERE (SELECT n FROM a) = %(n_accounts)s
  ORDER BY u.account, u.dedupe
  ON CONFLICT (provider_account_id, dedupe_key) DO NOTHING
  RETURNING id, provider_account_id, dedupe_key
), m AS (
  SELECT m.provider_account_id, m.provider_message_id, m.id, m.organization_id, m.case_id,
         m.channel, m.status, m.delivered_at IS NOT NULL AS delivered,
         ARRAY(SELECT e.provider_event_id FROM message_events e
               WHERE e.message_id = m.id
                 AND e.provider_event_id IN
                     (SELECT jsonb_array_elements_text(%(event_ids)s::jsonb))) AS known
  FROM messages m
  JOIN jsonb_to_recordset(%(keys)s::jsonb) AS u(account uuid, pid text)
    ON m.provider_account_id = u.account AND m.provider_message_id = u.pid
  WHERE (SELECT count(*) FROM r) >= 0
  ORDER BY m.id
  FOR UPDATE OF m
)
SELECT 'a', (SELECT n FROM a)::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL::text[]
UNION ALL
SELECT 'r', r.id::text, r.provider_account_id::text, r.dedupe_key, NULL, NULL, NULL, NULL,
       NULL, NULL FROM r
UNION ALL
SELECT 'm', m.id::text, m.provider_account_id::text, m.provider_message_id,
       m.organization_id::text, m.case_id::text, m.channel, m.status, m.delivered::text,
       m.known FROM m
"""

_WRITE_SQL = """
WITH e AS (
  INSERT INTO message_events (organization_id, message_id, event_type, status_before,
    status_after, source, provider_event_id, provider_status, error_code, reason,
    occurred_at, raw)
  SELECT u.org, u.message, u.type, u.before, u.after, 'provider', u.event_id,
         u.provider_status, u.code, u.reason, u.at, u.raw
  FROM jsonb_to_recordset(%(events)s::jsonb)
       AS u(org uuid, message uuid, type text, before text, after text, event_id text,
            provider_status text, code text, reason text, at timestamptz, raw jsonb)
  RETURNING 1
), m AS (
  UPDATE messages SET
    status = u.status,
    status_changed_at = u.changed_at,
    delivered_at = coalesce(messages.delivered_at, u.delivered_at),
    error_code = coalesce(u.code, messages.error_code),
    error_detail = coalesce(u.reason, messages.error_detail)
  FROM jsonb_to_recordset(%(moved)s::jsonb)
       AS u(id uuid, status text, changed_at timestamptz, delivered_at timestamptz,
            code text, reason text)
  WHERE messages.id = u.id
  RETURNING 1
)
SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM m)
"""


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    """A verified, parsed receipt waiting for its batch."""

    account: AccountRow
    provider: str
    dedupe_key: str
    url: str
    headers: dict[str, Any]
    body: bytes
    events: Sequence[DeliveryEvent]


@dataclass(slots=True)
class StoredReceipt:
    """What became of one receipt of the batch."""

    receipt_id: int | None  # None: a repeat of a stored receipt (nothing applied)
    unmatched: int = 0  # events naming no message (yet): retried later


@dataclass(slots=True)
class _Message:
    message_id: str
    organization_id: str
    case_id: str | None
    channel: str
    status: MessageStatus
    delivered: bool
    known_events: set[str]
    changed_at: datetime | None = None
    delivered_at: datetime | None = None
    error_code: str | None = None
    error_detail: str | None = None


@dataclass(slots=True)
class BatchResult:
    receipts: list[StoredReceipt]
    changes: list[StatusChange] = field(default_factory=list)


async def store_and_apply(
    conn: psycopg.AsyncConnection[Any], pending: Sequence[PendingReceipt]
) -> BatchResult:
    """Store the receipts and apply their status events (see the module docstring); to be
    called inside a transaction, which the caller rolls back on any exception."""
    # The lock covers the messages of every receipt, repeats included: locking a few
    # more rows costs less than learning first which receipts are new.
    receipts, messages = await _store_and_lock(conn, pending)
    new = [(p, r) for p, r in zip(pending, receipts, strict=True) if r.receipt_id is not None]
    if not any(p.events for p, _ in new):
        return BatchResult(receipts)
    rows: list[dict[str, Any]] = []
    changes: list[StatusChange] = []
    for p, stored in new:
        for event in p.events:
            msg = messages.get((p.account.id, event.provider_message_id))
            if msg is None:
                stored.unmatched += 1
                continue
            if event.provider_event_id is not None:
                if event.provider_event_id in msg.known_events:
                    continue  # a repeat: stored once, applied once
                msg.known_events.add(event.provider_event_id)
            before = msg.status
            after = status_after_event(before, event.event_type)
            rows.append(
                {
                    "org": msg.organization_id,
                    "message": msg.message_id,
                    "type": event.event_type.value,
                    "before": before.value,
                    "after": after.value,
                    "event_id": event.provider_event_id,
                    "provider_status": event.provider_status,
                    "code": event.error_code,
                    "reason": event.reason,
                    "at": event.occurred_at,
                    "raw": event.raw,
                }
            )
            if after is not before:
                _move(msg, event, after)
                changes.append(
                    StatusChange(
                        msg.message_id,
                        msg.organization_id,
                        before,
                        after,
                        event,
                        msg.case_id,
                        msg.channel,
                    )
                )
    await _write(conn, rows, [m for m in messages.values() if m.changed_at is not None])
    await close_whatsapp_windows(conn, changes)
    return BatchResult(receipts, changes)


async def _store_and_lock(
    conn: psycopg.AsyncConnection[Any], pending: Sequence[PendingReceipt]
) -> tuple[list[StoredReceipt], dict[tuple[str, str], _Message]]:
    accounts = {p.account.id: p.account for p in pending}
    keys = sorted({(p.account.id, e.provider_message_id) for p in pending for e in p.events})
    event_ids = sorted(
        {e.provider_event_id for p in pending for e in p.events if e.provider_event_id}
    )
    cur = await conn.execute(
        _RECEIPTS_AND_LOCK_SQL,
        {
            "accounts": _json(
                [{"id": a.id, "config": a.config, "secrets": a.secrets} for a in accounts.values()]
            ),
            "n_accounts": len(accounts),
            "receipts": _json(
                [
                    {
                        "org": p.account.organization_id,
                        "account": p.account.id,
                        "provider": p.provider,
                        "dedupe": p.dedupe_key,
                        "url": p.url,
                        "headers": p.headers,
                        "body": p.body.hex(),
                    }
                    for p in pending
                ]
            ),
            "keys": _json([{"account": a, "pid": pid} for a, pid in keys]),
            "event_ids": orjson.dumps(event_ids).decode(),
        },
    )
    ids: dict[tuple[str, str], int] = {}
    messages: dict[tuple[str, str], _Message] = {}
    unchanged = -1
    for (
        kind,
        first,
        account,
        key,
        org,
        case,
        channel,
        status,
        delivered,
        known,
    ) in await cur.fetchall():
        if kind == "a":
            unchanged = int(first)
        elif kind == "r":
            ids[(account, key)] = int(first)
        else:
            messages[(account, key)] = _Message(
                first, org, case, channel, MessageStatus(status), delivered == "true", set(known)
            )
    if unchanged != len(accounts):
        raise AccountChanged(",".join(sorted(accounts)))
    # The first receipt with a new key gets its id; a repeat in the same batch is a
    # repeat like any other.
    return [StoredReceipt(ids.pop((p.account.id, p.dedupe_key), None)) for p in pending], messages


def _move(msg: _Message, event: DeliveryEvent, after: MessageStatus) -> None:
    """The message's row after `event` moved it (what `status_events._RECORD_SQL` sets)."""
    msg.status = after
    msg.changed_at = event.occurred_at
    if after is MessageStatus.DELIVERED and not msg.delivered:
        msg.delivered = True
        msg.delivered_at = event.occurred_at
    if event.event_type in _FAILURES:
        msg.error_code = event.error_code or msg.error_code
        msg.error_detail = event.reason or msg.error_detail


async def _write(
    conn: psycopg.AsyncConnection[Any], events: list[dict[str, Any]], moved: list[_Message]
) -> None:
    # Not read here: in pipeline mode it travels with what follows. An event stored
    # meanwhile by another transaction fails the insert (unique index), and with it the
    # batch.
    await conn.execute(
        _WRITE_SQL,
        {
            "events": _json(events),
            "moved": _json(
                [
                    {
                        "id": m.message_id,
                        "status": m.status.value,
                        "changed_at": m.changed_at,
                        "delivered_at": m.delivered_at,
                        "code": m.error_code,
                        "reason": m.error_detail,
                    }
                    for m in moved
                ]
            ),
        },
    )


def _json(rows: list[dict[str, Any]]) -> str:
    # `default=str` as the single-receipt path stores raw payloads (Decimals, dates...).
    return orjson.dumps(rows, default=str).decode()
