"""Case documents: upload, list, download, and the attachments of email messages.

A document's metadata and its bytes are separate rows (`documents`,
`document_contents`) written in one transaction; listing never reads the bytes. Files
are at most 25 MB and of an accepted type, judged by their content as well as their
name (`services.file_types`). Documents belong to one organization and case; another
organization's document answers 404 like one that does not exist.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import file_types
from parley.services.context import get_case
from parley.services.errors import FieldError, Invalid, NotFound, ServiceError
from parley.storage.models import Document, DocumentContent, MessageAttachment

DOCUMENT_TYPES = (
    "invoice",
    "contract",
    "correspondence",
    "payment_proof",
    "settlement",
    "legal",
    "other",
)
MAX_DOCUMENT_BYTES = file_types.MAX_DOCUMENT_BYTES
# SMTP servers commonly refuse messages over 25-50 MB; base64 adds a third.
MAX_EMAIL_ATTACHMENT_TOTAL = 25 * 1024 * 1024
MAX_ATTACHMENTS = 10


class TooLarge(ServiceError):
    status = 413
    title = "Content too large"


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"


@dataclass(frozen=True, slots=True)
class NewFile:
    file_name: str
    declared_type: str | None
    content: bytes


def check_file(file: NewFile, field: str = "file") -> str:
    """The accepted content type of an uploaded or received file (413/415/422 if not)."""
    name = file.file_name.strip()
    if not name or len(name) > 255 or any(not c.isprintable() for c in name):
        raise Invalid.field(field, "needs a file name of at most 255 printable characters")
    if not file.content:
        raise Invalid.field(field, "is empty", "empty")
    if len(file.content) > MAX_DOCUMENT_BYTES:
        raise TooLarge(
            f"{field}: files are limited to {MAX_DOCUMENT_BYTES} bytes",
            [FieldError(field, f"larger than {MAX_DOCUMENT_BYTES} bytes", "too_large")],
        )
    try:
        return file_types.classify(name, file.declared_type, file.content).content_type
    except file_types.UnsupportedFile as exc:
        raise UnsupportedMediaType(
            f"{field}: {exc}", [FieldError(field, str(exc), "unsupported_type")]
        ) from None


def check_document_type(value: str | None) -> str:
    if value not in DOCUMENT_TYPES:
        raise Invalid.field("documentType", "must be one of " + ", ".join(DOCUMENT_TYPES))
    return value


async def add(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    file: NewFile,
    *,
    document_type: str,
    content_type: str,
    source: str,
    description: str | None = None,
    message_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    user_name: str | None = None,
) -> Document:
    """Store a checked file on a case (flushes; the caller commits)."""
    document = Document(
        id=uuid.uuid4(),
        organization_id=org_id,
        case_id=case_id,
        file_name=file.file_name.strip()[:255],
        document_type=document_type,
        content_type=content_type,
        size=len(file.content),
        sha256=hashlib.sha256(file.content).hexdigest(),
        description=description,
        source=source,
        message_id=message_id,
        uploaded_by_user_id=user_id,
        uploaded_by_name=user_name,
    )
    session.add(document)
    await session.flush()
    session.add(DocumentContent(document_id=document.id, organization_id=org_id, data=file.content))
    if message_id is not None:
        session.add(
            MessageAttachment(
                message_id=message_id, document_id=document.id, organization_id=org_id
            )
        )
    await session.flush()
    return document


async def upload(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    file: NewFile,
    document_type: str | None,
    description: str | None,
    *,
    user_id: uuid.UUID | None,
    user_name: str | None,
) -> Document:
    await get_case(session, org_id, case_id)
    kind = check_document_type(document_type)
    if description is not None and len(description) > 2000:
        raise Invalid.field("description", "is longer than 2000 characters", "too_long")
    content_type = check_file(file)
    document = await add(
        session,
        org_id,
        case_id,
        file,
        document_type=kind,
        content_type=content_type,
        source="upload",
        description=description,
        user_id=user_id,
        user_name=user_name,
    )
    await session.commit()
    return document


async def for_case(session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID) -> list[Document]:
    await get_case(session, org_id, case_id)
    rows = await session.scalars(
        select(Document)
        .where(Document.organization_id == org_id, Document.case_id == case_id)
        .order_by(Document.created_at, Document.id)
    )
    return list(rows)


async def get(session: AsyncSession, org_id: uuid.UUID, document_id: uuid.UUID) -> Document:
    document = await session.scalar(
        select(Document).where(Document.id == document_id, Document.organization_id == org_id)
    )
    if document is None:
        raise NotFound(f"document {document_id} not found")
    return document


async def content(session: AsyncSession, document: Document) -> bytes:
    data = await session.scalar(
        select(DocumentContent.data).where(
            DocumentContent.document_id == document.id,
            DocumentContent.organization_id == document.organization_id,
        )
    )
    if data is None:
        raise NotFound(f"document {document.id} has no content")
    return bytes(data)


async def for_outbound_email(
    session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> list[Document]:
    """The documents an outbound email attaches: this case's, each once, within limits."""
    if len(ids) > MAX_ATTACHMENTS:
        raise Invalid.field("attachments", f"at most {MAX_ATTACHMENTS} attachments", "too_many")
    if len(set(ids)) != len(ids):
        raise Invalid.field("attachments", "lists a document twice", "duplicate")
    rows = {
        d.id: d
        for d in await session.scalars(
            select(Document).where(
                Document.organization_id == org_id,
                Document.case_id == case_id,
                Document.id.in_(ids),
            )
        )
    }
    missing = [
        FieldError(f"attachments.{i}", "no such document on this case", "not_found")
        for i, doc_id in enumerate(ids)
        if doc_id not in rows
    ]
    if missing:
        raise Invalid("attachments: " + "; ".join(e.field for e in missing), missing)
    chosen = [rows[i] for i in ids]
    total = sum(d.size for d in chosen)
    if total > MAX_EMAIL_ATTACHMENT_TOTAL:
        raise TooLarge(
            f"attachments: {total} bytes together; an email carries at most "
            f"{MAX_EMAIL_ATTACHMENT_TOTAL}",
            [FieldError("attachments", "too large together", "too_large")],
        )
    return chosen


async def link(
    session: AsyncSession, org_id: uuid.UUID, message_id: uuid.UUID, documents: Sequence[Document]
) -> None:
    for position, document in enumerate(documents):
        session.add(
            MessageAttachment(
                message_id=message_id,
                document_id=document.id,
                organization_id=org_id,
                position=position,
            )
        )


async def messages_with_attachments(
    session: AsyncSession, org_id: uuid.UUID, message_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    if not message_ids:
        return set()
    rows = await session.scalars(
        select(MessageAttachment.message_id)
        .where(
            MessageAttachment.organization_id == org_id,
            MessageAttachment.message_id.in_(message_ids),
        )
        .distinct()
    )
    return set(rows)
