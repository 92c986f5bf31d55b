"""Email specifics of an inbound message: which of our messages it answers, and its
attachments as case documents.

Threading (RFC 5322 3.6.4): a reply names the message it answers in In-Reply-To and the
conversation so far in References. The newest of those ids that is one of our messages
(outbound, or an earlier inbound email we recorded) decides the case and thread the
reply joins -- before the sender's address is consulted, so a borrower writing from
another address, or a co-borrower on a shared case, still lands in the conversation.

Attachments are kept as documents of type ``correspondence`` linked to the message when
they pass the same checks as uploads (25 MB, accepted types, no executables); a refused
one is left in the raw receipt and the message is flagged ``attachment_rejected``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import InboundMedia, InboundMessage
from parley.domain.channels import Channel
from parley.services import documents
from parley.services.errors import ServiceError
from parley.storage.models import Message, Thread

log = logging.getLogger(__name__)

MAX_REFERENCES = 50  # a References header can be long; the newest ids matter


async def thread_for_reply(
    session: AsyncSession, org_id: uuid.UUID, item: InboundMessage
) -> Message | None:
    """Our message this email answers (newest named first), if any."""
    if item.channel is not Channel.EMAIL:
        return None
    named = [item.in_reply_to, *reversed(list(item.references)[-MAX_REFERENCES:])]
    ids = list(dict.fromkeys(i for i in named if i))
    if not ids:
        return None
    rows = {
        m.rfc822_message_id: m
        for m in await session.scalars(
            select(Message).where(
                Message.organization_id == org_id,
                Message.rfc822_message_id.in_(ids),
                Message.thread_id.is_not(None),
            )
        )
    }
    return next((rows[i] for i in ids if i in rows), None)


async def join_thread(session: AsyncSession, thread_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(Thread)
        .where(Thread.id == thread_id)
        .values(message_count=Thread.message_count + 1, last_message_at=now)
    )


def check_attachments(item: InboundMessage) -> tuple[list[tuple[InboundMedia, str]], int]:
    """(acceptable files with their content type, how many were refused)."""
    accepted, refused = [], 0
    for media in item.media:
        if media.content is None:
            continue
        name = media.filename or "attachment"
        try:
            kind = documents.check_file(documents.NewFile(name, media.content_type, media.content))
        except ServiceError as exc:
            log.info("inbound attachment %r refused: %s", name, exc.detail)
            refused += 1
            continue
        accepted.append((media, kind))
    return accepted, refused


async def store_attachments(
    session: AsyncSession, message: Message, files: list[tuple[InboundMedia, str]]
) -> None:
    for media, content_type in files:
        assert media.content is not None
        await documents.add(
            session,
            message.organization_id,
            message.case_id,
            documents.NewFile(media.filename or "attachment", content_type, media.content),
            document_type="correspondence",
            content_type=content_type,
            source="email",
            description=f"Attachment of the email {message.subject or ''}".strip()[:2000],
            message_id=message.id,
            user_name=message.from_address,
        )
