"""A borrower's timeline: every message, status event, call and consent change, newest
first, across channels and cases (GET /api/borrowers/{id}/timeline).

One statement merges four index-backed branches, each limited to the page size before
the merge: messages by (borrower_id, created_at), their status events through
(message_id, id), calls by (borrower_id, created_at) and consent changes by
(borrower_id, channel, effective_at). The keyset cursor is (time, kind, id), so items
with the same time page deterministically.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row

from parley.services.errors import Invalid, NotFound

KINDS = ("message", "message_event", "call", "consent")

# Each branch yields (at, kind, key, ...): `key` is the item id as text (events and
# consent rows have bigint ids, zero-padded so text order is numeric order).
TIMELINE_SQL = """
SELECT * FROM (
  (SELECT m.created_at AS at, 'message' AS kind, m.id::text AS key,
          m.id AS message_id, NULL::bigint AS event_id, NULL::uuid AS call_id,
          m.case_id, m.channel, m.direction, m.status, NULL::text AS status_before,
          m.subject, left(m.body, 500) AS body, m.from_address, m.to_address,
          NULL::text AS result, NULL::text AS action, NULL::text AS reason, m.flags AS flags
   FROM messages m
   WHERE m.borrower_id = %(b)s AND m.organization_id = %(org)s
     AND (m.created_at, 'message', m.id::text) < (%(at)s, %(kind)s, %(key)s)
   ORDER BY m.created_at DESC, m.id DESC LIMIT %(n)s)
  UNION ALL
  (SELECT e.occurred_at, 'message_event', lpad(e.id::text, 20, '0'),
          e.message_id, e.id, NULL, m.case_id, m.channel, m.direction, e.status_after,
          e.status_before, NULL, NULL, NULL, NULL, NULL, e.event_type, e.reason, NULL
   FROM messages m JOIN message_events e ON e.message_id = m.id
   WHERE m.borrower_id = %(b)s AND m.organization_id = %(org)s
     AND e.status_before IS NOT NULL  -- the message item itself stands for its first event
     AND (e.occurred_at, 'message_event', lpad(e.id::text, 20, '0'))
         < (%(at)s, %(kind)s, %(key)s)
   ORDER BY e.occurred_at DESC, e.id DESC LIMIT %(n)s)
  UNION ALL
  (SELECT c.created_at, 'call', c.id::text, NULL, NULL, c.id, c.case_id, 'voice',
          c.direction, c.status, NULL, NULL, c.notes, c.from_address, c.to_address, c.result,
          NULL, NULL, NULL
   FROM calls c
   WHERE c.borrower_id = %(b)s AND c.organization_id = %(org)s
     AND (c.created_at, 'call', c.id::text) < (%(at)s, %(kind)s, %(key)s)
   ORDER BY c.created_at DESC, c.id DESC LIMIT %(n)s)
  UNION ALL
  (SELECT x.effective_at, 'consent', lpad(x.id::text, 20, '0'), x.source_message_id, x.id,
          NULL, NULL, x.channel, NULL, NULL, NULL, NULL, NULL, NULL, x.address, NULL,
          x.action, x.reason, NULL
   FROM consent_events x
   WHERE x.borrower_id = %(b)s AND x.organization_id = %(org)s
     AND (x.effective_at, 'consent', lpad(x.id::text, 20, '0')) < (%(at)s, %(kind)s, %(key)s)
   ORDER BY x.effective_at DESC, x.id DESC LIMIT %(n)s)
) t
ORDER BY at DESC, kind DESC, key DESC
LIMIT %(n)s
"""

# Above every real item: the first page's "cursor".
_TOP = (datetime.fromisoformat("9999-12-31T00:00:00+00:00"), "~", "~")


def encode_cursor(at: datetime, kind: str, key: str) -> str:
    raw = orjson.dumps([at.isoformat(), kind, key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str, str]:
    if not cursor:
        return _TOP
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, kind, key = orjson.loads(base64.urlsafe_b64decode(padded))
        parsed = datetime.fromisoformat(at)
        if kind not in KINDS or not isinstance(key, str) or parsed.tzinfo is None:
            raise ValueError(kind)
        return parsed, kind, key
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise Invalid.field("cursor", "is not a cursor this API returned") from exc


def statement_params(
    organization_id: uuid.UUID, borrower_id: uuid.UUID, limit: int, cursor: str | None
) -> dict[str, Any]:
    """TIMELINE_SQL's parameters for a page (one more row than `limit`: is there more?)."""
    at, kind, key = decode_cursor(cursor)
    return {
        "b": borrower_id,
        "org": organization_id,
        "at": at,
        "kind": kind,
        "key": key,
        "n": limit + 1,
    }


async def page(
    conn: psycopg.AsyncConnection[Any],
    organization_id: uuid.UUID,
    borrower_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` items older than the cursor, and the next cursor (None at the end)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            TIMELINE_SQL, statement_params(organization_id, borrower_id, limit, cursor)
        )
        rows = await cur.fetchall()
        # Every branch is scoped to the organization, so items prove the borrower is
        # ours; only an empty page needs the round trip that tells 404 from "nothing".
        if not rows:
            await cur.execute(
                "SELECT 1 FROM borrowers WHERE id = %s AND organization_id = %s",
                (borrower_id, organization_id),
            )
            if await cur.fetchone() is None:
                raise NotFound(f"borrower {borrower_id} not found")
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["at"], rows[-1]["kind"], rows[-1]["key"]) if more else None
    return rows, next_cursor
