"""Conversation threads on a case: one active thread per borrower and channel."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy import select
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
) -> Thread:
    """The active thread this message joins (created if none), its counters updated."""
    thread = await session.scalar(
        select(Thread)
        .where(
            Thread.organization_id == org_id,
            Thread.case_id == case_id,
            Thread.borrower_id == borrower_id,
            Thread.channel == channel.value,
            Thread.status == "active",
        )
        .order_by(Thread.created_at.desc())
        .limit(1)
        .with_for_update()
    )
    if thread is None:
        thread = Thread(
            organization_id=org_id,
            case_id=case_id,
            borrower_id=borrower_id,
            channel=channel.value,
            subject=base_subject(subject),
            participants=[],
            message_count=0,
            created_at=now,
        )
        session.add(thread)
    thread.message_count = (thread.message_count or 0) + 1
    thread.last_message_at = now
    merged = list(thread.participants or [])
    for p in participants:
        if p not in merged:
            merged.append(p)
    thread.participants = merged
    await session.flush()
    return thread


async def get(session: AsyncSession, org_id: uuid.UUID, thread_id: uuid.UUID) -> Thread:
    thread = await session.scalar(
        select(Thread).where(Thread.id == thread_id, Thread.organization_id == org_id)
    )
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return thread


async def for_case(session: AsyncSession, case_id: uuid.UUID) -> list[Thread]:
    rows = await session.scalars(
        select(Thread)
        .where(Thread.case_id == case_id)
        .order_by(Thread.last_message_at.desc().nulls_last())
    )
    return list(rows)
