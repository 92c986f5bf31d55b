"""Agent presence: available, busy, away or offline, and the voice endpoint calls ring.

Only an ``available`` agent places or receives a call. A call makes its agent ``busy``
(remembering which call did); submitting that call's log makes them ``available`` again
-- unless they changed their presence meanwhile (then it stays as they set it). An agent
who never set a presence is ``offline``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services.errors import Conflict, Invalid, NotFound
from parley.storage.models import AgentPresence, User

STATUSES = ("available", "busy", "away", "offline")
# A Twilio Voice SDK client identity, a SIP URI, or a phone number in E.164.
_ENDPOINT = re.compile(r"\+[1-9]\d{6,14}\Z|client:[A-Za-z0-9_.\-]{1,121}\Z|sip:[^\s@]+@[^\s@]+\Z")


def validate_endpoint(endpoint: str) -> str:
    if not _ENDPOINT.match(endpoint):
        raise Invalid.field(
            "endpoint", "must be client:<identity>, sip:<user>@<host> or an E.164 number"
        )
    return endpoint


async def get(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> AgentPresence | None:
    query = select(AgentPresence).where(
        AgentPresence.user_id == user_id, AgentPresence.organization_id == org_id
    )
    if lock:
        query = query.with_for_update()
    presence: AgentPresence | None = await session.scalar(query)
    return presence


async def set_status(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    endpoint: str | None,
    now: datetime,
) -> AgentPresence:
    if status not in STATUSES:
        raise Invalid.field("status", "must be one of " + ", ".join(STATUSES))
    if endpoint is not None:
        validate_endpoint(endpoint)
    presence = await get(session, org_id, user_id, lock=True)
    if presence is None:
        presence = AgentPresence(user_id=user_id, organization_id=org_id, updated_at=now)
        session.add(presence)
    presence.status = status
    if endpoint is not None:
        presence.endpoint = endpoint
    presence.updated_at = now
    await session.flush()
    return presence


async def require_available(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, *, who: str = "you"
) -> AgentPresence:
    """The agent's presence row, locked until the transaction ends; 409 unless available
    with an endpoint to ring."""
    presence = await get(session, org_id, user_id, lock=True)
    status = presence.status if presence else "offline"
    if presence is None or status != "available":
        raise Conflict(f"{who} must be available to take a call (presence is {status})")
    if not presence.endpoint:
        raise Conflict(f"{who} have no voice endpoint: set one with PUT /api/agents/me/presence")
    return presence


def mark_busy(presence: AgentPresence, call_id: uuid.UUID, now: datetime) -> None:
    presence.status = "busy"
    presence.busy_call_id = call_id
    presence.updated_at = now


async def release(
    session: AsyncSession,
    org_id: uuid.UUID,
    user_id: uuid.UUID | None,
    call_id: uuid.UUID,
    now: datetime,
) -> None:
    """The call no longer needs this agent: busy-because-of-it becomes available."""
    if user_id is None:
        return
    presence = await get(session, org_id, user_id, lock=True)
    if presence is None or presence.busy_call_id != call_id:
        return
    presence.busy_call_id = None
    if presence.status == "busy":
        presence.status = "available"
    presence.updated_at = now


async def pick_available(
    session: AsyncSession, org_id: uuid.UUID, preferred: uuid.UUID | None
) -> AgentPresence | None:
    """The agent an inbound call rings: `preferred` (the case's agent) when available,
    else the available agent idle longest; locked, skipping agents another call is
    claiming right now."""
    base = (
        select(AgentPresence)
        .where(
            AgentPresence.organization_id == org_id,
            AgentPresence.status == "available",
            AgentPresence.endpoint.is_not(None),
        )
        .with_for_update(skip_locked=True)
    )
    if preferred is not None:
        found: AgentPresence | None = await session.scalar(
            base.where(AgentPresence.user_id == preferred)
        )
        if found is not None:
            return found
    return await session.scalar(base.order_by(AgentPresence.updated_at).limit(1))


async def list_for_org(
    session: AsyncSession, org_id: uuid.UUID
) -> list[tuple[User, AgentPresence | None]]:
    rows = await session.execute(
        select(User, AgentPresence)
        .outerjoin(AgentPresence, AgentPresence.user_id == User.id)
        .where(User.organization_id == org_id)
        .order_by(User.name, User.id)
    )
    return [(row[0], row[1]) for row in rows.all()]


async def user_in_org(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user: User | None = await session.scalar(
        select(User).where(User.id == user_id, User.organization_id == org_id)
    )
    if user is None:
        raise NotFound(f"agent {user_id} not found")
    return user
