"""Conversation threads on a case: one active thread per borrower and channel."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import case, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from parley.domain.channels import Channel
from parley.services.errors import NotFound
from parley.storage.models import Thread

_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv)\s*:\s*)+", re.IGNORECASE)


def base_subject(subject: str | None) -> str | None:
    return _REPLY_PREFIX.sub("", subject).strip() if subject else None


async def for_message(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    borrower_id: uuid.UUID,
    channel: Channel,
    subject: str | None,
    participants: list[str],
    now: datetime,
) -> uuid.UUID:
    """The id of the active thread this message joins, its counters updated.

    One statement (insert, or update the active thread on conflict with the unique
    active-thread index), so concurrent first messages of a conversation join one thread.
    """
    table = Thread.__table__
    stmt = pg_insert(table).values(
        id=uuid.uuid4(),
        organization_id=org_id,
        case_id=case_id,
        borrower_id=borrower_id,
        channel=channel.value,
        subject=base_subject(subject),
        status="active",
        participants=participants,
        message_count=1,
        last_message_at=now,
        created_at=now,
    )
    merged = case(
        (table.c.participants.contains(stmt.excluded.participants), table.c.participants),
        else_=table.c.participants.concat(stmt.excluded.participants),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["organization_id", "case_id", "borrower_id", "channel"],
        index_where=text("status = 'active'"),  # a literal, to match the partial index
        set_={
            "message_count": table.c.message_count + 1,
            # Forward only: a message filed later (services/filing.py) may be older.
            "last_message_at": func.greatest(
                table.c.last_message_at, stmt.excluded.last_message_at
            ),
            "participants": merged,
        },
    ).returning(table.c.id)
    thread_id: uuid.UUID = (await session.execute(stmt)).scalar_one()
    return thread_id


async def get(session: AsyncSession, org_id: uuid.UUID, thread_id: uuid.UUID) -> Thread:
    thread = await session.scalar(
        select(Thread).where(Thread.id == thread_id, Thread.organization_id == org_id)
    )
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return thread


async def for_case(session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID) -> list[Thread]:
    rows = await session.scalars(
        select(Thread)
        .where(Thread.case_id == case_id, Thread.organization_id == org_id)
        .order_by(Thread.last_message_at.desc().nulls_last())
    )
    return list(rows)
