"""Messages sent as several separately receipted parts: resolving and applying their events.

A long SMS over SMPP is sent as several submit_sm, each with its own SMSC message id and
its own delivery receipt. The dispatcher records every part's id in `message_parts`
(`record_sent_parts`, in the transaction that marks the message `sent`, or `needs_review`
when a later part failed after earlier ones were accepted: those parts' ids); part 1's id
is also the message's provider_message_id. This module holds the pieces the status-event
path (status_events.py) needs for them:

- `resolve_sql`, the resolver the lock statements select from: provider message ids ->
  (id, message, part). A message's own provider_message_id is found by the unique index
  on messages, as before; a part's id by the unique index on message_parts. A one-part
  message costs one more probe of that index in the same statement, no round trip.
  Part 1's id is found both ways; `part_of` prefers the row naming the part.
- `RECORD_SQL` (with `part_params`), used instead of status_events' record statement
  for an event about one part: stores the event (with its part number, deduplicated by
  provider event id like every event), moves the part forward, and moves the message by
  what all its parts now amount to (`domain.status.parts_event`): `delivered` once every
  part is delivered, `failed` (with the failing part's error) as soon as one part is
  failed, else `sent` (`domain.status.status_after_parts`: a `needs_review` message is
  not moved, its part events are stored as evidence for the reviewer). Still one
  statement; the message row is locked by then, so the parts of one message are never
  updated concurrently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import psycopg

from parley.domain.status import EventType, MessageStatus, status_after_parts
from parley.inbox import status_sql

log = logging.getLogger(__name__)

_RESOLVE_SQL = """
SELECT provider_message_id AS pid, id AS message_id, NULL::smallint AS part FROM messages
WHERE provider_account_id = %(account)s::uuid AND provider_message_id {match}
UNION ALL
SELECT provider_message_id, message_id, part FROM message_parts
WHERE provider_account_id = %(account)s::uuid AND provider_message_id {match}
"""


def resolve_sql(one_id: bool) -> str:
    """The resolver: rows (pid, message_id, part) for the provider ids `%(ids)s` (a text
    array) of account `%(account)s`; `part` is NULL for a message's own provider id.

    `one_id`: the text for an array of exactly one id (most receipts name one message),
    matched as a scalar. PostgreSQL then keeps one generic plan for the prepared statement;
    with `= ANY(array)` it cannot size the array, estimates several rows and plans every
    execution anew (measured: most of the statement's cost)."""
    match = "= (%(ids)s::text[])[1]" if one_id else "= ANY(%(ids)s)"
    return _RESOLVE_SQL.format(match=match)


# What the parts amount to, over `s` (each part's status): domain.status.parts_event.
PARTS_EVENT_SQL = (
    "CASE WHEN bool_and(s = 'delivered') THEN 'delivered' "
    "WHEN bool_or(s = 'failed') THEN 'failed' ELSE 'sent' END"
)

RECORD_SQL = f"""
WITH p AS (
  SELECT mp.status AS before, coalesce(x.after, mp.status) AS after
  FROM message_parts mp
  LEFT JOIN unnest(%(from)s::text[], %(to)s::text[]) AS x(before, after)
    ON x.before = mp.status
  WHERE mp.message_id = %(message)s::uuid AND mp.part = %(part)s
), a AS (
  SELECT {PARTS_EVENT_SQL} AS event, count(*) AS recorded
  FROM (SELECT CASE WHEN mp.part = %(part)s THEN p.after ELSE mp.status END AS s
        FROM message_parts mp CROSS JOIN p WHERE mp.message_id = %(message)s::uuid) parts
), t AS (
  -- Only a message whose every part is on record moves by its parts: one of which some
  -- parts were never accepted (needs_review when sent, whatever a reviewer made of it
  -- since) keeps its status; its parts' receipts are stored as its events.
  SELECT m.status AS before, coalesce(y.after, m.status) AS after
  FROM messages m CROSS JOIN a
  LEFT JOIN unnest(%(parts_event)s::text[], %(parts_from)s::text[], %(parts_to)s::text[])
    AS y(event, before, after)
    ON y.event = a.event AND y.before = m.status AND a.recorded >= coalesce(m.segments, 0)
  WHERE m.id = %(message)s::uuid
), e AS (
  INSERT INTO message_events (organization_id, message_id, event_type, status_before,
    status_after, source, provider_event_id, provider_status, error_code, reason,
    occurred_at, raw, part)
  SELECT %(org)s::uuid, %(message)s::uuid, %(type)s, t.before, t.after, 'provider',
    %(event_id)s, %(provider_status)s, %(code)s, %(reason)s, %(at)s::timestamptz,
    %(raw)s::jsonb, %(part)s
  FROM t
  ON CONFLICT (message_id, provider_event_id) DO NOTHING
  RETURNING status_before, status_after
), moved_part AS (
  UPDATE message_parts mp SET
    status = p.after,
    status_changed_at = %(at)s::timestamptz,
    error_code = CASE WHEN %(failure)s THEN coalesce(%(code)s, mp.error_code)
                      ELSE mp.error_code END,
    error_detail = CASE WHEN %(failure)s THEN coalesce(%(reason)s, mp.error_detail)
                        ELSE mp.error_detail END
  FROM p, e
  WHERE mp.message_id = %(message)s::uuid AND mp.part = %(part)s AND p.after <> p.before
)
{status_sql.MOVE_MESSAGE_SQL}
"""  # noqa: S608 (constant fragments only)

# Every value PARTS_EVENT_SQL can give.
_PARTS_EVENTS = (EventType.SENT, EventType.FAILED, EventType.DELIVERED)


@cache
def _parts_transitions() -> tuple[list[str], list[str], list[str]]:
    """The message's status machine for each event the parts can amount to, as (event,
    from, to) lists of the statuses it moves."""
    # status_after_parts: a `needs_review` message (parts accepted before a later part
    # failed) is never moved by its parts' receipts; they are stored as its events.
    rows = [
        (event.value, s.value, status_after_parts(s, event).value)
        for event in _PARTS_EVENTS
        for s in MessageStatus
        if status_after_parts(s, event) != s
    ]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def part_params(part: int | None) -> dict[str, Any]:
    """What RECORD_SQL needs besides status_events' record parameters (whose `from`/`to`,
    the event type's transitions, it applies to the part): the part and the message's
    transitions. Nothing for an event about a whole message."""
    if part is None:
        return {}
    events, moves_from, moves_to = _parts_transitions()
    return {"part": part, "parts_event": events, "parts_from": moves_from, "parts_to": moves_to}


def part_of(rows: Iterable[tuple[Any, ...]]) -> dict[str, int | None]:
    """The part each resolved provider id names, from rows whose first column is the
    provider id and last the part (NULL when found as a message's own id): part 1's id is
    found both ways, and the part wins."""
    parts: dict[str, int | None] = {}
    for row in rows:
        pid, part = row[0], row[-1]
        if pid is not None and (part is not None or pid not in parts):
            parts[pid] = part
    return parts


_RECORD_SENT_SQL = """
INSERT INTO message_parts (message_id, part, organization_id, provider_account_id,
                           provider_message_id)
SELECT m.id, u.part, m.organization_id, m.provider_account_id, u.pid
FROM unnest(%(ids)s::uuid[], %(parts)s::smallint[], %(pids)s::text[]) AS u(id, part, pid)
JOIN messages m ON m.id = u.id
WHERE m.provider_account_id IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING message_id
"""


async def record_sent_parts(
    conn: psycopg.AsyncConnection, sent: Sequence[tuple[str, Sequence[str]]]
) -> None:
    """Record the part ids of messages just marked `sent` or `needs_review` (in that
    transaction): `(message id, part ids in part order)` for each message sent as several
    parts -- for `needs_review`, the parts the SMSC accepted before a later one failed."""
    rows = [(mid, n, pid) for mid, pids in sent for n, pid in enumerate(pids, 1)]
    if not rows:
        return
    cur = await conn.execute(
        _RECORD_SENT_SQL,
        {
            "ids": [r[0] for r in rows],
            "parts": [r[1] for r in rows],
            "pids": [r[2] for r in rows],
        },
    )
    recorded = len(await cur.fetchall())
    if recorded < len(rows):
        # The SMSC gave a part an id another part of this account already has (ids
        # reused, or the same id for two parts): that part's receipts go to the first.
        log.warning("%d of %d part ids not recorded: taken", len(rows) - recorded, len(rows))
