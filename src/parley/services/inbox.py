"""The agent's inbox: list conversations, open one, mark it read (GET /api/inbox).

Who sees what: an agent sees the conversations assigned to them and the team queue
(conversations of unassigned cases and of senders filed on no case); a supervisor or an
admin sees every conversation of the organization and may filter by agent. A
conversation an agent may not see answers 404, like another organization's.

Every list is an index scan on `conversations` in (last activity, id) order with keyset
pagination; an agent's default view (own + team queue) is two such scans merged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from parley.services import activity
from parley.services.auth import Principal, Role
from parley.services.errors import Forbidden, Invalid, NotFound

STATUSES = ("open", "closed")
CHANNELS = ("email", "sms", "whatsapp", "voice")

_SELECT = """
SELECT c.id, c.case_id, k.case_number, c.borrower_id, b.first_name, b.last_name,
       c.sender_address, c.assigned_agent_id, c.status, c.last_activity_at,
       c.last_item_kind, c.last_item_id, c.last_channel, c.last_direction, c.last_preview,
       c.unread_count, c.last_read_at
FROM ({scopes}) c
LEFT JOIN cases k ON k.id = c.case_id
LEFT JOIN borrowers b ON b.id = c.borrower_id
ORDER BY c.last_activity_at DESC, c.id DESC
"""


@dataclass(frozen=True, slots=True)
class InboxQuery:
    channel: str | None = None
    status: str = "open"
    agent: str | None = None  # a user id or "me"
    queue: str | None = None  # "team"
    unread: bool = False
    limit: int = 50
    after: tuple[datetime, uuid.UUID] | None = None


# One scope: all of the organization (None), an agent's (a user id) or the team queue.
_ALL = object()
_TEAM = object()


def _scopes(principal: Principal, q: InboxQuery) -> list[object]:
    """Which assignment ranges to scan, after checking the principal may see them."""
    if q.agent is not None and q.queue is not None:
        raise Invalid.field("queue", "give either agent or queue, not both")
    if q.queue is not None and q.queue != "team":
        raise Invalid.field("queue", "must be team")
    if q.queue == "team":
        return [_TEAM]
    supervisor = principal.at_least(Role.SUPERVISOR)
    if q.agent is not None:
        if q.agent == "me":
            wanted = principal.user_id
            if wanted is None:
                raise Invalid.field("agent", "this token belongs to no user; 'me' is nobody")
        else:
            try:
                wanted = uuid.UUID(q.agent)
            except ValueError:
                raise Invalid.field("agent", "must be a user id or me") from None
            if wanted != principal.user_id and not supervisor:
                raise Forbidden("agents see their own conversations and the team queue only")
        return [wanted]
    if supervisor:
        return [_ALL]
    return [principal.user_id, _TEAM] if principal.user_id else [_TEAM]


def _scope_sql(scope: object, q: InboxQuery, params: dict[str, Any], n: int) -> str:
    conds = ["organization_id = %(org)s", "status = %(status)s"]
    if scope is _TEAM:
        conds.append("assigned_agent_id IS NULL")
    elif scope is not _ALL:
        key = f"agent{n}"
        params[key] = scope
        conds.append(f"assigned_agent_id = %({key})s")
    if q.channel:
        conds.append("last_channel = %(channel)s")
    if q.unread:
        conds.append("unread_count > 0")
    if q.after:
        conds.append("(last_activity_at, id) < (%(after_at)s, %(after_id)s)")
    return (
        f"(SELECT * FROM conversations WHERE {' AND '.join(conds)} "  # noqa: S608 (constants)
        "ORDER BY last_activity_at DESC, id DESC LIMIT %(limit)s)"
    )


async def list_conversations(
    conn: psycopg.AsyncConnection[Any], principal: Principal, q: InboxQuery
) -> tuple[list[dict[str, Any]], bool]:
    """A page of conversations, newest activity first, and whether more follow."""
    sql, params = list_statement(principal, q)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        rows = await cur.fetchall()
    return rows[: q.limit], len(rows) > q.limit


def list_statement(principal: Principal, q: InboxQuery) -> tuple[str, dict[str, Any]]:
    """The statement (and its parameters) of one page, after checking the filters."""
    if q.status not in STATUSES:
        raise Invalid.field("status", "must be open or closed")
    if q.channel is not None and q.channel not in CHANNELS:
        raise Invalid.field("channel", "must be email, sms, whatsapp or voice")
    params: dict[str, Any] = {
        "org": principal.organization_id,
        "status": q.status,
        "channel": q.channel,
        "limit": q.limit + 1,
    }
    if q.after:
        params["after_at"], params["after_id"] = q.after
    scopes = _scopes(principal, q)
    union = " UNION ALL ".join(_scope_sql(s, q, params, i) for i, s in enumerate(scopes))
    return _SELECT.format(scopes=union) + " LIMIT %(limit)s", params


def _visible(principal: Principal) -> tuple[str, dict[str, Any]]:
    if principal.at_least(Role.SUPERVISOR):
        return "", {}
    return (
        " AND (assigned_agent_id IS NULL OR assigned_agent_id = %(me)s)",
        {"me": principal.user_id},
    )


def visibility(principal: Principal) -> tuple[str, dict[str, Any]]:
    """A condition on `conversations` (" AND ...", and its parameters) keeping the rows
    the principal may see: all for supervisors and admins, for an agent their own and the
    team queue's."""
    return _visible(principal)


async def get(
    conn: psycopg.AsyncConnection[Any], principal: Principal, conversation_id: uuid.UUID
) -> dict[str, Any]:
    """One conversation the principal may see (404 otherwise)."""
    extra, params = _visible(principal)
    row = await _one(conn, principal.organization_id, conversation_id, extra, params)
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return row


async def get_in_organization(
    conn: psycopg.AsyncConnection[Any], organization_id: uuid.UUID, conversation_id: uuid.UUID
) -> dict[str, Any]:
    """One conversation of the organization, whoever it is assigned to (the result of an
    action the caller was allowed to take, e.g. filing on another agent's case)."""
    row = await _one(conn, organization_id, conversation_id, "", {})
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return row


async def _one(
    conn: psycopg.AsyncConnection[Any],
    organization_id: uuid.UUID,
    conversation_id: uuid.UUID,
    extra: str,
    params: dict[str, Any],
) -> dict[str, Any] | None:
    scope = (
        "(SELECT * FROM conversations WHERE id = %(id)s "  # noqa: S608 (constants)
        f"AND organization_id = %(org)s{extra})"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            _SELECT.format(scopes=scope), {"id": conversation_id, "org": organization_id, **params}
        )
        return await cur.fetchone()


async def mark_read(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    conversation_id: uuid.UUID,
    now: datetime,
) -> dict[str, Any]:
    """Everything in the conversation so far is read (the count is the team's, not per
    person: a conversation has one owner at a time)."""
    extra, params = _visible(principal)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE conversations SET unread_count = 0, last_read_at = %(now)s, "  # noqa: S608
            "last_read_by_user_id = %(user)s, updated_at = %(now)s "
            f"WHERE id = %(id)s AND organization_id = %(org)s{extra} "
            "RETURNING id::text, case_id::text, borrower_id::text, assigned_agent_id::text",
            {
                "now": now,
                "user": principal.user_id,
                "id": conversation_id,
                "org": principal.organization_id,
                **params,
            },
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        await activity.emit(
            conn,
            str(principal.organization_id),
            "conversation.updated",
            {
                "conversationId": row[0],
                "caseId": row[1],
                "borrowerId": row[2],
                "assignedAgentId": row[3],
                "unreadCount": 0,
                "lastReadAt": now.isoformat(),
            },
        )
    return await get(conn, principal, conversation_id)


async def set_status(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    conversation_id: uuid.UUID,
    status: str,
    now: datetime,
) -> dict[str, Any]:
    """Close a conversation (done for now) or reopen it; a new inbound message reopens it
    by itself."""
    if status not in STATUSES:
        raise Invalid.field("status", "must be open or closed")
    extra, params = _visible(principal)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE conversations SET status = %(status)s, updated_at = %(now)s "  # noqa: S608
            f"WHERE id = %(id)s AND organization_id = %(org)s{extra} "
            "RETURNING id::text, case_id::text, borrower_id::text, assigned_agent_id::text",
            {
                "status": status,
                "now": now,
                "id": conversation_id,
                "org": principal.organization_id,
                **params,
            },
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        await activity.emit(
            conn,
            str(principal.organization_id),
            "conversation.updated",
            {
                "conversationId": row[0],
                "caseId": row[1],
                "borrowerId": row[2],
                "assignedAgentId": row[3],
                "status": status,
            },
        )
    return await get(conn, principal, conversation_id)


async def assign_unfiled(
    conn: psycopg.AsyncConnection[Any],
    principal: Principal,
    conversation_id: uuid.UUID,
    agent_id: uuid.UUID | None,
    now: datetime,
) -> dict[str, Any]:
    """Give a team-queue sender's conversation (no case) to an agent, or back to the team.
    A case's conversations follow the case's agent: assign the case instead."""
    if not principal.at_least(Role.SUPERVISOR):
        raise Forbidden("assigning conversations needs the supervisor role")
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT case_id, assigned_agent_id FROM conversations "
            "WHERE id = %s AND organization_id = %s FOR UPDATE",
            (conversation_id, principal.organization_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        case_id, previous = row
        if case_id is not None:
            raise Invalid.field(
                "agentId",
                f"this conversation follows case {case_id}: assign the case "
                "(PATCH /api/cases/{caseId} with assignedAgentId)",
                "assign_the_case",
            )
        if agent_id is not None:
            cur = await conn.execute(
                "SELECT 1 FROM users WHERE id = %s AND organization_id = %s",
                (agent_id, principal.organization_id),
            )
            if await cur.fetchone() is None:
                raise Invalid.field("agentId", "unknown user", "unknown_user")
        await conn.execute(
            "UPDATE conversations SET assigned_agent_id = %s, updated_at = %s WHERE id = %s",
            (agent_id, now, conversation_id),
        )
        await activity.emit(
            conn,
            str(principal.organization_id),
            "conversation.assigned",
            {
                "conversationId": str(conversation_id),
                "caseId": None,
                "borrowerId": None,
                "assignedAgentId": str(agent_id) if agent_id else None,
                "previousAgentId": str(previous) if previous else None,
                "at": now.isoformat(),
            },
        )
    return await get(conn, principal, conversation_id)
