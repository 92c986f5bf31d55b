"""Messages on a case, delivery reports, cancellation and threads (seed API shapes)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, status
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.api import pagination
from parley.api.deps import ContainerDep, PrincipalDep, SessionDep, SupervisorDep
from parley.api.schemas.messages import (
    ComplianceDecisionOut,
    ComplianceReport,
    ComplianceSummary,
    DeliveryEventOut,
    DeliveryPartOut,
    DeliveryReport,
    MessageCreate,
    MessageList,
    MessageOut,
    ReviewResolution,
    ThreadList,
    ThreadMessageOut,
    ThreadMessages,
    ThreadOut,
)
from parley.domain.status import MessageStatus
from parley.services import context as case_context
from parley.services import inbox as inbox_svc
from parley.services import messages as svc
from parley.services import threads as thread_svc
from parley.services.errors import Invalid
from parley.storage.db import raw_connection
from parley.storage.models import ComplianceDecision, Message, MessageAttachment, MessageTemplate

router = APIRouter(tags=["messages"])


async def _template_keys(session: SessionDep, messages: list[Message]) -> dict[uuid.UUID, str]:
    ids = {m.template_id for m in messages if m.template_id}
    if not ids:
        return {}
    rows = await session.execute(
        select(MessageTemplate.id, MessageTemplate.key).where(
            MessageTemplate.id.in_(ids),
            MessageTemplate.organization_id == messages[0].organization_id,
        )
    )
    return dict(rows.all())


async def _compliance(session: SessionDep, m: Message) -> ComplianceSummary | None:
    """The latest gate decision on a message, in short (the full record: /compliance)."""
    d = await session.scalar(
        select(ComplianceDecision)
        .where(
            ComplianceDecision.message_id == m.id,
            ComplianceDecision.organization_id == m.organization_id,
        )
        .order_by(ComplianceDecision.id.desc())
        .limit(1)
    )
    if d is None:
        return None
    # The rules that held it back (a block can also come from a defer with no time).
    reasons = [
        r.get("reason") or r.get("rule")
        for r in d.rules
        if d.outcome != "allow" and r.get("outcome") in ("block", "defer")
    ]
    return ComplianceSummary(
        stage=d.stage, outcome=d.outcome, reasons=reasons, defer_until=d.defer_until
    )


async def _attachments(
    session: SessionDep, messages: list[Message]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each message's attached document ids, in order (one query for a page)."""
    if not messages:
        return {}
    rows = await session.execute(
        select(MessageAttachment.message_id, MessageAttachment.document_id)
        .where(
            MessageAttachment.organization_id == messages[0].organization_id,
            MessageAttachment.message_id.in_([m.id for m in messages]),
        )
        .order_by(MessageAttachment.position, MessageAttachment.document_id)
    )
    out: dict[uuid.UUID, list[uuid.UUID]] = {}
    for message_id, document_id in rows.all():
        out.setdefault(message_id, []).append(document_id)
    return out


def _out(
    m: Message,
    keys: dict[uuid.UUID, str],
    compliance: ComplianceSummary | None = None,
    attachments: dict[uuid.UUID, list[uuid.UUID]] | None = None,
) -> MessageOut:
    attached = (attachments or {}).get(m.id, [])
    return MessageOut(
        message_id=m.id,
        case_id=m.case_id,
        borrower_id=m.borrower_id,
        thread_id=m.thread_id,
        message_type=m.channel,
        direction=m.direction,
        status=m.status,
        priority=m.priority,
        from_=m.from_address,
        to=[m.to_address],
        cc=list(m.cc or []),
        bcc=list(m.bcc or []),
        subject=m.subject,
        body=m.body,
        html_body=m.html_body,
        template_id=keys.get(m.template_id) if m.template_id else None,
        template_version=m.template_version,
        provider=m.provider,
        provider_account_id=m.provider_account_id,
        provider_message_id=m.provider_message_id,
        encoding=m.encoding,
        segments=m.segments,
        error_code=m.error_code,
        error_detail=m.error_detail,
        scheduled_at=m.scheduled_at,
        sent_at=m.sent_at,
        delivered_at=m.delivered_at,
        received_at=m.received_at,
        sent_by=m.sent_by_name,
        has_attachments=bool(attached),
        attachments=attached,
        purpose=m.purpose,
        flags=list(m.flags or []),
        whatsapp=m.whatsapp,
        created_at=m.created_at,
        compliance=compliance,
    )


@router.post(
    "/api/cases/{case_id}/messages", response_model=MessageOut, status_code=status.HTTP_201_CREATED
)
async def send_message(
    case_id: uuid.UUID,
    body: MessageCreate,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> MessageOut:
    message = await svc.send(
        container,
        session,
        principal,
        case_id,
        svc.SendRequest(
            message_type=body.message_type,
            to=body.recipient(),
            subject=body.subject,
            body=body.body,
            html_body=body.html_body,
            cc=body.cc,
            bcc=body.bcc,
            priority=body.priority,
            template_id=body.template_id,
            variables=body.variables,
            send_at=body.send_at,
            provider_account_id=body.provider_account_id,
            borrower_id=body.borrower_id,
            purpose=body.purpose,
            whatsapp_template=body.whatsapp_template.model_dump()
            if body.whatsapp_template
            else None,
            media=body.media.model_dump() if body.media else None,
            quick_replies=body.quick_replies,
            attachments=list(body.attachments),
        ),
    )
    return _out(
        message,
        await _template_keys(session, [message]),
        await _compliance(session, message),
        await _attachments(session, [message]),
    )


def _bound(value: str | None, name: str, end: bool) -> datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime.combine(d, time.max if end else time.min, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid.field(name, "use YYYY-MM-DD or an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise Invalid.field(name, "timestamps need a timezone (e.g. Z)")
    return parsed


def _statuses(value: str) -> list[str]:
    """`status=queued,sent`: each one a message status, else a 422 naming the allowed ones."""
    wanted = [s.strip() for s in value.split(",")]
    allowed = [s.value for s in MessageStatus]
    unknown = [s for s in wanted if s not in allowed]
    if unknown:
        raise Invalid.field(
            "status",
            f"unknown status {', '.join(map(repr, unknown))}: use one or more "
            f"(comma-separated) of {', '.join(allowed)}",
        )
    return wanted


@router.get("/api/cases/{case_id}/messages", response_model=MessageList)
async def list_messages(
    case_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    type: Literal["email", "sms", "whatsapp", "voice"] | None = None,
    direction: Literal["inbound", "outbound"] | None = None,
    status: str | None = None,
    dateFrom: str | None = None,
    dateTo: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> MessageList:
    await case_context.get_case(session, principal.organization_id, case_id)
    limit = pagination.clamp_limit(limit)
    after = pagination.decode(cursor)
    start, end = _bound(dateFrom, "dateFrom", False), _bound(dateTo, "dateTo", True)
    conds = [Message.organization_id == principal.organization_id, Message.case_id == case_id]
    if type:
        conds.append(Message.channel == type)
    if direction:
        conds.append(Message.direction == direction)
    if status:
        conds.append(Message.status.in_(_statuses(status)))
    if start:
        conds.append(Message.created_at >= start)
    if end:
        conds.append(Message.created_at <= end)
    return await _page(session, conds, after, limit)


async def _page(session: AsyncSession, conds: list[Any], after: Any, limit: int) -> MessageList:
    """The messages matching `conds`, newest first, one keyset page after `after`."""
    total = await session.scalar(select(func.count()).select_from(Message).where(*conds)) or 0
    query = select(Message).where(*conds)
    if after:
        query = query.where((Message.created_at, Message.id) < after)
    rows = list(
        await session.scalars(
            query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit + 1)
        )
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode(rows[-1].created_at, rows[-1].id)
    keys = await _template_keys(session, rows)
    attached = await _attachments(session, rows)
    return MessageList(
        messages=[_out(m, keys, None, attached) for m in rows],
        total_count=total,
        next_cursor=next_cursor,
    )


@router.get("/api/inbox/{conversationId}/messages", response_model=MessageList)
async def conversation_messages(
    conversation_id: Annotated[uuid.UUID, Path(alias="conversationId")],
    session: SessionDep,
    principal: PrincipalDep,
    limit: int = 50,
    cursor: str | None = None,
) -> MessageList:
    """A conversation's messages, newest first: a case's conversation with one borrower,
    or a team-queue sender's unfiled messages (what POST .../file would file). Visible
    to whoever may see the conversation (404 otherwise)."""
    conv = await inbox_svc.get(await raw_connection(session), principal, conversation_id)
    limit = pagination.clamp_limit(limit)
    after = pagination.decode(cursor)
    conds = [Message.organization_id == principal.organization_id]
    if conv["case_id"] is not None:
        conds += [Message.case_id == conv["case_id"], Message.borrower_id == conv["borrower_id"]]
    else:
        conds += [Message.case_id.is_(None), Message.from_address == conv["sender_address"]]
    return await _page(session, conds, after, limit)


@router.get("/api/messages/{message_id}", response_model=MessageOut)
async def get_message(
    message_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> MessageOut:
    m = await svc.get(session, principal.organization_id, message_id)
    return _out(
        m,
        await _template_keys(session, [m]),
        await _compliance(session, m),
        await _attachments(session, [m]),
    )


@router.get("/api/messages/{message_id}/delivery-report", response_model=DeliveryReport)
async def delivery_report(
    message_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> DeliveryReport:
    m = await svc.get(session, principal.organization_id, message_id)
    events = await svc.events(session, m)
    parts = await svc.parts(session, m)
    return DeliveryReport(
        message_id=m.id,
        status=m.status,
        message_type=m.channel,
        to=[m.to_address],
        provider=m.provider,
        provider_message_id=m.provider_message_id,
        events=[
            DeliveryEventOut(
                event=e.event_type,
                timestamp=e.occurred_at,
                status=e.status_after,
                source=e.source,
                provider_status=e.provider_status,
                error_code=e.error_code,
                reason=e.reason,
                part=e.part,
            )
            for e in events
        ],
        parts=[DeliveryPartOut.model_validate(p, from_attributes=True) for p in parts],
    )


@router.get("/api/messages/{message_id}/compliance", response_model=ComplianceReport)
async def compliance_report(
    message_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> ComplianceReport:
    m = await svc.get(session, principal.organization_id, message_id)
    rows = await session.scalars(
        select(ComplianceDecision)
        .where(
            ComplianceDecision.message_id == m.id,
            ComplianceDecision.organization_id == principal.organization_id,
        )
        .order_by(ComplianceDecision.id)
    )
    return ComplianceReport(
        message_id=m.id,
        status=m.status,
        decisions=[ComplianceDecisionOut.model_validate(d, from_attributes=True) for d in rows],
    )


@router.post("/api/messages/{message_id}/cancel", response_model=MessageOut)
async def cancel_message(
    message_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, container: ContainerDep
) -> MessageOut:
    m = await svc.cancel(container, session, principal.organization_id, message_id)
    return _out(m, await _template_keys(session, [m]))


@router.post("/api/messages/{message_id}/resolve-review", response_model=MessageOut)
async def resolve_review(
    message_id: uuid.UUID,
    body: ReviewResolution,
    session: SessionDep,
    principal: SupervisorDep,
    container: ContainerDep,
) -> MessageOut:
    """Settle a `needs_review` message (a worker died after handing it to a provider that
    cannot be asked): it was `sent`, or `not_sent` (then it becomes `failed`)."""
    m = await svc.resolve_review(
        container, session, principal, message_id, body.resolution, body.note
    )
    return _out(m, await _template_keys(session, [m]))


@router.get("/api/cases/{case_id}/threads", response_model=ThreadList)
async def case_threads(
    case_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> ThreadList:
    case = await case_context.get_case(session, principal.organization_id, case_id)
    return ThreadList(
        threads=[
            ThreadOut(
                thread_id=t.id,
                subject=t.subject,
                channel=t.channel,
                participants=list(t.participants or []),
                message_count=t.message_count,
                last_message_at=t.last_message_at,
                status=t.status,
            )
            for t in await thread_svc.for_case(session, principal.organization_id, case.id)
        ]
    )


@router.get("/api/threads/{thread_id}/messages", response_model=ThreadMessages)
async def thread_messages(
    thread_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> ThreadMessages:
    thread = await thread_svc.get(session, principal.organization_id, thread_id)
    rows = await session.scalars(
        select(Message)
        .where(Message.thread_id == thread.id, Message.organization_id == thread.organization_id)
        .order_by(Message.created_at, Message.id)
        .limit(500)
    )
    return ThreadMessages(
        thread_id=thread.id,
        messages=[
            ThreadMessageOut(
                message_id=m.id,
                message_type=m.channel,
                direction=m.direction,
                status=m.status,
                from_=m.from_address,
                to=[m.to_address],
                subject=m.subject,
                body=m.body,
                timestamp=m.sent_at or m.received_at or m.created_at,
            )
            for m in rows
        ],
    )
