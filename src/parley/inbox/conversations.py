"""Conversations: the unified inbox's rows, kept current in the transaction of each change.

Grain: one conversation per (organization, case, borrower), across every channel: an
agent works a borrower's debt, not a channel, and a reply by text to an email belongs to
the same exchange. A co-borrower on the same case is a separate conversation (another
person, another consent record). A sender matching no case (an unknown number or
address, or a known borrower without a case) gets one conversation per sender address in
the team queue, so the message is seen and can be filed by a person.

Routing: a case's conversations carry the case's assigned agent (NULL = the team queue)
and follow it when the case is reassigned (:func:`reassign_case`). Filing a team-queue
sender's messages on a case (parley.services.filing) moves them, with the unread count
they carry, into the case's conversation (:func:`merge_into_case`) and shrinks or removes
the sender's row (:func:`shrink_sender`).

Each change is one upsert in the transaction that records the message or call: the last
activity and the latest item move forward, inbound messages and calls add one to the
unread count (reset by :func:`mark_read`), and a new inbound item reopens a closed
conversation. No count is ever recomputed from `messages`, so the inbox stays an index
scan at any volume.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from parley.services import activity

PREVIEW_CHARS = 200
_SPACE = re.compile(r"\s+")

# The latest item only moves forward in time; the unread count only grows here.
_ON_CONFLICT_SET = """
    last_activity_at = GREATEST(c.last_activity_at, EXCLUDED.last_activity_at),
    last_item_kind = CASE WHEN EXCLUDED.last_activity_at >= c.last_activity_at
                     THEN EXCLUDED.last_item_kind ELSE c.last_item_kind END,
    last_item_id = CASE WHEN EXCLUDED.last_activity_at >= c.last_activity_at
                   THEN EXCLUDED.last_item_id ELSE c.last_item_id END,
    last_channel = CASE WHEN EXCLUDED.last_activity_at >= c.last_activity_at
                   THEN EXCLUDED.last_channel ELSE c.last_channel END,
    last_direction = CASE WHEN EXCLUDED.last_activity_at >= c.last_activity_at
                     THEN EXCLUDED.last_direction ELSE c.last_direction END,
    last_preview = CASE WHEN EXCLUDED.last_activity_at >= c.last_activity_at
                   THEN EXCLUDED.last_preview ELSE c.last_preview END,
    unread_count = c.unread_count + EXCLUDED.unread_count,
    status = CASE WHEN EXCLUDED.unread_count > 0 THEN 'open' ELSE c.status END,
    borrower_id = coalesce(c.borrower_id, EXCLUDED.borrower_id),
    updated_at = EXCLUDED.updated_at
"""

_COLUMNS = """(id, organization_id, case_id, borrower_id, sender_address, assigned_agent_id,
    status, last_activity_at, last_item_kind, last_item_id, last_channel, last_direction,
    last_preview, unread_count, created_at, updated_at)"""

_RETURNING = """RETURNING c.id, c.assigned_agent_id, c.unread_count, c.status,
    c.last_activity_at, (SELECT case_number FROM cases WHERE id = c.case_id)"""

# The case's agent is read FOR SHARE: a reassignment (which locks the case FOR UPDATE,
# services.cases.change) either happened before, and is read here, or waits for this
# transaction and then moves this conversation too.
CASE_UPSERT = f"""
INSERT INTO conversations AS c {_COLUMNS}
VALUES (%(id)s, %(org)s, %(case)s, %(borrower)s, NULL,
        (SELECT assigned_agent_id FROM cases WHERE id = %(case)s AND organization_id = %(org)s
         FOR SHARE),
        'open', %(at)s, %(kind)s, %(item)s, %(channel)s, %(direction)s, %(preview)s,
        %(unread)s, %(at)s, %(at)s)
ON CONFLICT (organization_id, case_id, borrower_id) WHERE case_id IS NOT NULL
DO UPDATE SET {_ON_CONFLICT_SET}
{_RETURNING}
"""  # noqa: S608 (constant fragments only)

SENDER_UPSERT = f"""
INSERT INTO conversations AS c {_COLUMNS}
VALUES (%(id)s, %(org)s, NULL, %(borrower)s, %(sender)s, NULL,
        'open', %(at)s, %(kind)s, %(item)s, %(channel)s, %(direction)s, %(preview)s,
        %(unread)s, %(at)s, %(at)s)
ON CONFLICT (organization_id, sender_address) WHERE case_id IS NULL
DO UPDATE SET {_ON_CONFLICT_SET}
{_RETURNING}
"""  # noqa: S608 (constant fragments only)


# Filing (parley.services.filing): a team-queue sender's messages join a case's
# conversation. `unread` is what they bring along; a new row takes `status`, an
# existing one reopens only if something unread arrives, like any inbound message.
MERGE_UPSERT = f"""
INSERT INTO conversations AS c {_COLUMNS}
VALUES (%(id)s, %(org)s, %(case)s, %(borrower)s, NULL,
        (SELECT assigned_agent_id FROM cases WHERE id = %(case)s AND organization_id = %(org)s
         FOR SHARE),
        %(status)s, %(at)s, %(kind)s, %(item)s, %(channel)s, %(direction)s, %(preview)s,
        %(unread)s, %(now)s, %(now)s)
ON CONFLICT (organization_id, case_id, borrower_id) WHERE case_id IS NOT NULL
DO UPDATE SET {_ON_CONFLICT_SET}
RETURNING c.id, c.assigned_agent_id, c.unread_count, c.status, c.last_activity_at,
    (SELECT case_number FROM cases WHERE id = c.case_id), c.last_item_kind, c.last_item_id,
    c.last_channel, c.last_direction, c.last_preview
"""  # noqa: S608 (constant fragments only)


@dataclass(frozen=True, slots=True)
class Touched:
    """A conversation after an upsert: what the live update and the caller need."""

    conversation_id: str
    assigned_agent_id: str | None
    unread_count: int
    status: str
    last_activity_at: datetime
    case_number: str | None


@dataclass(frozen=True, slots=True)
class Item:
    """The message or call that moves a conversation."""

    organization_id: uuid.UUID | str
    kind: str  # message | call
    item_id: uuid.UUID | str
    channel: str
    direction: str  # inbound | outbound
    at: datetime
    preview: str | None
    case_id: uuid.UUID | str | None = None
    borrower_id: uuid.UUID | str | None = None
    sender_address: str | None = None  # the team-queue key when there is no case


def preview_of(subject: str | None, body: str | None) -> str | None:
    """A one-line excerpt: the subject and the start of the body, whitespace collapsed."""
    text = " - ".join(p for p in (subject, body) if p and p.strip())
    text = _SPACE.sub(" ", text).strip()
    return text[:PREVIEW_CHARS] or None


async def touch(conn: psycopg.AsyncConnection[Any], item: Item) -> Touched:
    """Upsert the item's conversation (on `conn`, inside the caller's transaction) and
    announce `conversation.updated`."""
    if item.case_id is None and not item.sender_address:
        raise ValueError("an item without a case needs the sender's address")
    params = {
        "id": uuid.uuid4(),
        "org": item.organization_id,
        "case": item.case_id,
        "borrower": item.borrower_id,
        "sender": item.sender_address,
        "at": item.at,
        "kind": item.kind,
        "item": item.item_id,
        "channel": item.channel,
        "direction": item.direction,
        "preview": item.preview,
        # What the borrower sent or did: a message, or a call to us (answered or not).
        "unread": 1 if item.direction == "inbound" else 0,
    }
    cur = await conn.execute(CASE_UPSERT if item.case_id is not None else SENDER_UPSERT, params)
    row = await cur.fetchone()
    assert row is not None  # an upsert always returns its row
    touched = Touched(
        conversation_id=str(row[0]),
        assigned_agent_id=str(row[1]) if row[1] else None,
        unread_count=row[2],
        status=row[3],
        last_activity_at=row[4],
        case_number=row[5],
    )
    await activity.emit(
        conn,
        str(item.organization_id),
        "conversation.updated",
        {
            "conversationId": touched.conversation_id,
            "caseId": _str(item.case_id),
            "borrowerId": _str(item.borrower_id),
            "assignedAgentId": touched.assigned_agent_id,
            "channel": item.channel,
            "lastItem": {
                "kind": item.kind,
                "id": str(item.item_id),
                "direction": item.direction,
                "preview": item.preview,
                "at": item.at.isoformat(),
            },
            "unreadCount": touched.unread_count,
            "status": touched.status,
            "lastActivityAt": touched.last_activity_at.isoformat(),
        },
    )
    return touched


@dataclass(frozen=True, slots=True)
class Merged:
    """A case's conversation after filed messages joined it."""

    conversation_id: str
    assigned_agent_id: str | None
    unread_count: int
    status: str
    last_activity_at: datetime
    case_number: str | None
    last_item: dict[str, Any]  # kind, id, channel, direction, preview, at


async def merge_into_case(
    conn: psycopg.AsyncConnection[Any],
    latest: Item,
    *,
    unread: int,
    status_if_new: str,
    now: datetime,
) -> Merged:
    """Upsert the (case, borrower) conversation with filed messages: `latest` is the
    newest of them, `unread` how many of them were unread where they came from. Announces
    nothing: the caller knows what the change means (services/filing.py)."""
    if latest.case_id is None or latest.borrower_id is None:
        raise ValueError("filed messages need a case and a borrower")
    cur = await conn.execute(
        MERGE_UPSERT,
        {
            "id": uuid.uuid4(),
            "org": latest.organization_id,
            "case": latest.case_id,
            "borrower": latest.borrower_id,
            "status": status_if_new,
            "at": latest.at,
            "kind": latest.kind,
            "item": latest.item_id,
            "channel": latest.channel,
            "direction": latest.direction,
            "preview": latest.preview,
            "unread": unread,
            "now": now,
        },
    )
    row = await cur.fetchone()
    assert row is not None  # an upsert always returns its row
    return Merged(
        conversation_id=str(row[0]),
        assigned_agent_id=str(row[1]) if row[1] else None,
        unread_count=row[2],
        status=row[3],
        last_activity_at=row[4],
        case_number=row[5],
        last_item={
            "kind": row[6],
            "id": str(row[7]),
            "channel": row[8],
            "direction": row[9],
            "preview": row[10],
            "at": row[4].isoformat(),
        },
    )


async def shrink_sender(
    conn: psycopg.AsyncConnection[Any],
    conversation_id: uuid.UUID | str,
    latest: Item | None,
    *,
    unread: int,
    now: datetime,
) -> None:
    """A team-queue conversation after some of its messages were filed: `latest` is the
    newest message still unfiled (None: nothing is left, and the row goes; the filing
    record keeps its id, see services/filing.py)."""
    if latest is None:
        await conn.execute("DELETE FROM conversations WHERE id = %s", (conversation_id,))
        return
    await conn.execute(
        "UPDATE conversations SET last_activity_at = %s, last_item_kind = %s, "
        "last_item_id = %s, last_channel = %s, last_direction = %s, last_preview = %s, "
        "unread_count = %s, updated_at = %s WHERE id = %s",
        (
            latest.at,
            latest.kind,
            latest.item_id,
            latest.channel,
            latest.direction,
            latest.preview,
            unread,
            now,
            conversation_id,
        ),
    )


async def reassign_case(
    conn: psycopg.AsyncConnection[Any],
    organization_id: uuid.UUID | str,
    case_id: uuid.UUID | str,
    agent_id: uuid.UUID | str | None,
    previous_agent_id: uuid.UUID | str | None,
    now: datetime,
) -> list[str]:
    """Move a case's conversations to its new agent (None: the team queue); announce
    `conversation.assigned` for each. The caller holds the case row locked."""
    cur = await conn.execute(
        "UPDATE conversations SET assigned_agent_id = %s, updated_at = %s "
        "WHERE organization_id = %s AND case_id = %s "
        "AND assigned_agent_id IS DISTINCT FROM %s RETURNING id::text, borrower_id::text",
        (agent_id, now, organization_id, case_id, agent_id),
    )
    moved = await cur.fetchall()
    for conversation_id, borrower_id in moved:
        await activity.emit(
            conn,
            str(organization_id),
            "conversation.assigned",
            {
                "conversationId": conversation_id,
                "caseId": str(case_id),
                "borrowerId": borrower_id,
                "assignedAgentId": _str(agent_id),
                "previousAgentId": _str(previous_agent_id),
                "at": now.isoformat(),
            },
        )
    return [c for c, _ in moved]


def _str(value: object) -> str | None:
    return None if value is None else str(value)
