"""Provider status events applied to messages: forward only, deduplicated, few round trips.

A status callback is on the hot path (every message gets several), so its whole effect
takes two statements inside the receipt's transaction:

1. `lock_messages` (or `store_receipt_and_lock` on ingestion, which also stores the
   receipt and checks that the account it was verified with is unchanged): lock the
   messages the events name, in id order so that concurrent receipts touching the same
   messages cannot deadlock. Provider ids are resolved by `message_parts.RESOLVE_SQL`:
   a message's own provider id, or the id of one part of a message sent as several
   separately receipted parts (a long SMS over SMPP);
2. `record_event` per event: store the event with the status before and after it and
   move the message forward, in one statement. "After" comes from the domain's status
   machine (`status_after_event`), handed to SQL as a transition table for the event's
   type, and is looked up against the row as it is *now* -- so several events for one
   message in one receipt, or a duplicate among them, compose correctly. An event about
   one part takes `message_parts.RECORD_SQL` instead, which moves the part and then the
   message by what all its parts amount to.

Duplicate events (same provider event id) change nothing: the insert is skipped and so is
the update that depends on it.

A WhatsApp `failed` event with Meta's 131047 (re-engagement required) that fails its
message also closes the number's customer-service window (`close_whatsapp_windows`), in
the same transaction; the message's status moves exactly as for any other failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from parley.channels.base import DeliveryEvent
from parley.domain.status import EventType, MessageStatus, status_after_event
from parley.inbox import message_parts, status_sql
from parley.services import whatsapp_window

if TYPE_CHECKING:
    from parley.dispatch.providers import AccountRow

# Events whose error code and reason are kept on the message.
_FAILURES = frozenset({EventType.FAILED, EventType.BOUNCED, EventType.REJECTED})

# Each statement in two texts, by whether the events name exactly one provider id
# (message_parts.resolve_sql explains why).
_LOCK_SQL = {
    one: f"""
SELECT rp.pid, m.id::text, m.organization_id::text, m.case_id::text, m.channel, rp.part
FROM ({message_parts.resolve_sql(one)}) rp JOIN messages m ON m.id = rp.message_id
ORDER BY m.id FOR UPDATE OF m
"""  # noqa: S608 (constant fragments only)
    for one in (True, False)
}

_RECEIPT_AND_LOCK_SQL = {
    one: f"""
WITH a AS (
  SELECT 1 FROM provider_accounts
  WHERE id = %(account)s::uuid AND config = %(config)s::jsonb AND secrets = %(secrets)s::jsonb
), r AS (
  INSERT INTO webhook_receipts (organization_id, provider_account_id, provider, dedupe_key,
                                url, headers, body)
  SELECT %(org)s::uuid, %(account)s::uuid, %(provider)s, %(dedupe)s, %(url)s,
         %(headers)s::jsonb, %(body)s
  WHERE EXISTS (SELECT 1 FROM a)
  ON CONFLICT (provider_account_id, dedupe_key) DO NOTHING
  RETURNING id
), m AS (
  SELECT rp.pid, m.id, m.organization_id, m.case_id, m.channel, rp.part
  FROM ({message_parts.resolve_sql(one)}) rp JOIN messages m ON m.id = rp.message_id
  WHERE EXISTS (SELECT 1 FROM r)
  ORDER BY m.id FOR UPDATE OF m
)
SELECT EXISTS (SELECT 1 FROM a), r.id, m.pid, m.id::text,
       m.organization_id::text, m.case_id::text, m.channel, m.part
FROM (SELECT 1) one LEFT JOIN r ON true LEFT JOIN m ON true
"""  # noqa: S608 (constant fragments only)
    for one in (True, False)
}

_RECORD_SQL = f"""
WITH t AS (
  SELECT m.status AS before, coalesce(x.after, m.status) AS after
  FROM messages m
  LEFT JOIN unnest(%(from)s::text[], %(to)s::text[]) AS x(before, after)
    ON x.before = m.status
  WHERE m.id = %(message)s::uuid
), e AS (
  INSERT INTO message_events (organization_id, message_id, event_type, status_before,
    status_after, source, provider_event_id, provider_status, error_code, reason,
    occurred_at, raw)
  SELECT %(org)s::uuid, %(message)s::uuid, %(type)s, t.before, t.after, 'provider',
    %(event_id)s, %(provider_status)s, %(code)s, %(reason)s, %(at)s::timestamptz,
    %(raw)s::jsonb
  FROM t
  ON CONFLICT (message_id, provider_event_id) DO NOTHING
  RETURNING status_before, status_after
)
{status_sql.MOVE_MESSAGE_SQL}
"""  # noqa: S608 (constant fragments only)


@dataclass(frozen=True, slots=True)
class Target:
    """A message an event applies to, locked for the transaction."""

    message_id: str
    organization_id: str
    case_id: str | None = None  # for the status-change announcement
    channel: str | None = None
    part: int | None = None  # the provider id names this part of the message


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A message whose status an event moved (for notifications)."""

    message_id: str
    organization_id: str
    before: MessageStatus
    after: MessageStatus
    event: DeliveryEvent
    case_id: str | None = None
    channel: str | None = None


@cache
def transitions(event_type: EventType) -> tuple[list[str], list[str]]:
    """The status machine for one event type as (from, to) lists: the statuses it moves."""
    pairs = [(s.value, status_after_event(s, event_type).value) for s in MessageStatus]
    moving = [(a, b) for a, b in pairs if a != b]
    return [a for a, _ in moving], [b for _, b in moving]


def provider_ids(events: Sequence[DeliveryEvent]) -> list[str]:
    return sorted({e.provider_message_id for e in events})


async def lock_messages(
    conn: psycopg.AsyncConnection, account_id: str, events: Sequence[DeliveryEvent]
) -> dict[str, Target]:
    """Lock the messages `events` name (by provider id); those found, by provider id."""
    if not events:
        return {}
    ids = provider_ids(events)
    cur = await conn.execute(_LOCK_SQL[len(ids) == 1], {"account": account_id, "ids": ids})
    return _targets(await cur.fetchall())


def _targets(rows: Sequence[tuple[Any, ...]]) -> dict[str, Target]:
    """Targets by provider id from (pid, message, org, case, channel, part) rows."""
    parts = message_parts.part_of(rows)
    return {
        pid: Target(mid, org, case, channel, parts[pid])
        for pid, mid, org, case, channel, _ in rows
        if pid is not None
    }


class AccountChanged(Exception):
    """The account row a receipt was verified with is no longer the stored one."""


async def store_receipt_and_lock(
    conn: psycopg.AsyncConnection,
    *,
    account: AccountRow,
    provider: str,
    dedupe_key: str,
    url: str,
    headers: dict[str, Any],
    body: bytes,
    events: Sequence[DeliveryEvent],
) -> tuple[int | None, dict[str, Target]]:
    """Store a receipt unless one with its dedupe key exists, and lock the messages its
    events name: (the new receipt's id or None for a duplicate, targets by provider id).

    The same statement checks that `account` (its config and secrets, which the signature
    was verified with) is still the stored one, so a caller may verify with a recently
    read row; AccountChanged (nothing written) when it is not.
    """
    ids = provider_ids(events)
    cur = await conn.execute(
        _RECEIPT_AND_LOCK_SQL[len(ids) == 1],
        {
            "org": account.organization_id,
            "account": account.id,
            "config": orjson.dumps(account.config).decode(),
            "secrets": orjson.dumps(account.secrets).decode(),
            "provider": provider,
            "dedupe": dedupe_key,
            "url": url,
            "headers": orjson.dumps(headers).decode(),
            "body": body,
            "ids": ids,
        },
    )
    rows = await cur.fetchall()
    if not rows or not rows[0][0]:
        raise AccountChanged(account.id)
    if rows[0][1] is None:
        return None, {}
    return rows[0][1], _targets([row[2:] for row in rows])


async def record_events(
    conn: psycopg.AsyncConnection, targets: dict[str, Target], events: Sequence[DeliveryEvent]
) -> tuple[list[StatusChange], int]:
    """Store each event on its locked message and move the message forward; the status
    changes made, and how many events matched no message."""
    pending: list[tuple[psycopg.AsyncCursor[Any], Target, DeliveryEvent]] = []
    unmatched = 0
    for event in events:
        target = targets.get(event.provider_message_id)
        if target is None:
            unmatched += 1
            continue
        moves_from, moves_to = transitions(event.event_type)
        # A cursor per statement, read once all are executed (ready for pipeline mode,
        # which did not pay off for the usual one-event callback).
        cur = conn.cursor()
        await cur.execute(
            _RECORD_SQL if target.part is None else message_parts.RECORD_SQL,
            {
                "message": target.message_id,
                "org": target.organization_id,
                "from": moves_from,
                "to": moves_to,
                "type": event.event_type.value,
                "event_id": event.provider_event_id,
                "provider_status": event.provider_status,
                "code": event.error_code,
                "reason": event.reason,
                "at": event.occurred_at,
                "raw": orjson.dumps(event.raw, default=str).decode(),
                "failure": event.event_type in _FAILURES,
            }
            | message_parts.part_params(target.part),
        )
        pending.append((cur, target, event))
    changes = []
    for cur, target, event in pending:
        row = await cur.fetchone()
        if row is not None:
            changes.append(
                StatusChange(
                    target.message_id,
                    target.organization_id,
                    MessageStatus(row[1]),
                    MessageStatus(row[2]),
                    event,
                    target.case_id,
                    target.channel,
                )
            )
    await close_whatsapp_windows(conn, changes)
    return changes, unmatched


async def close_whatsapp_windows(
    conn: psycopg.AsyncConnection, changes: Sequence[StatusChange]
) -> None:
    """The WhatsApp messages these changes failed with Meta's 131047 close their numbers'
    customer-service windows (as of the event). A repeated event moves nothing, so it
    closes nothing again."""
    await whatsapp_window.record_provider_closed(
        conn,
        [
            (c.message_id, c.event.occurred_at)
            for c in changes
            if c.after is MessageStatus.FAILED
            and whatsapp_window.closes_window(c.channel, c.event.error_code)
        ],
    )
