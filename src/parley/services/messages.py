"""Sending a message on a case: validate, render, gate, and write it with its dispatch job.

The message row, its first event, the enqueue-time compliance decision and the
Procrastinate job are written in one transaction on one connection (invariant 1).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.compliance import content as content_rules
from parley.compliance import gate
from parley.compliance.assess import (
    PURPOSES,
    REPLY_PURPOSES,
    AttemptContext,
    assess,
    us_rules_apply,
)
from parley.dispatch import outbox
from parley.domain.channels import Channel, Direction
from parley.domain.status import CANCELLABLE, MessageStatus
from parley.inbox import announce, conversations
from parley.services import (
    activity,
    contactability,
    documents,
    provider_accounts,
    recipients,
    threads,
    unsubscribe,
    whatsapp,
)
from parley.services import context as case_context
from parley.services import templates as template_svc
from parley.services.auth import Principal
from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.storage.db import raw_connection
from parley.storage.models import (
    ComplianceDecision,
    Document,
    Message,
    MessageEvent,
    MessagePart,
    MessageTemplate,
    MessageTemplateVersion,
)

if TYPE_CHECKING:
    from parley.bootstrap import Container

SMS_MAX_SEGMENTS = 10
MAX_SCHEDULE_AHEAD = timedelta(days=366)
WHATSAPP_MAX_CHARS = 4096
EMAIL_MAX_BODY = 2_000_000


@dataclass
class SendRequest:
    message_type: str
    to: str | None = None
    subject: str | None = None
    body: str | None = None
    html_body: str | None = None
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    priority: str = "normal"
    template_id: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    send_at: datetime | None = None
    provider_account_id: uuid.UUID | None = None
    borrower_id: uuid.UUID | None = None
    purpose: str = "collection"
    # Set by Parley itself (an opt-out confirmation is allowed by its revocation only).
    message_id: uuid.UUID | None = None
    contact_point_id: uuid.UUID | None = None
    # WhatsApp only (services/whatsapp.py): an approved template, a media link, or
    # quick-reply buttons.
    whatsapp_template: dict[str, Any] | None = None
    media: dict[str, Any] | None = None
    quick_replies: list[str] | None = None
    attachments: list[uuid.UUID] = field(default_factory=list)  # document ids (email)


@dataclass
class Content:
    subject: str | None
    body: str
    html: str | None
    template: MessageTemplate | None
    version: MessageTemplateVersion | None


async def send(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    case_id: uuid.UUID,
    req: SendRequest,
) -> Message:
    org_id = principal.organization_id
    try:
        channel = Channel(req.message_type)
    except ValueError:
        raise Invalid.field("messageType", "must be email, sms or whatsapp") from None
    if channel is Channel.VOICE:
        raise Invalid.field("messageType", "calls are placed with the calls API, not messages")
    if channel is not Channel.WHATSAPP:
        whatsapp.reject_outside_whatsapp(req, channel.value)
    if req.purpose not in PURPOSES:
        raise Invalid.field("purpose", "must be one of " + ", ".join(sorted(PURPOSES)))
    ctx = await case_context.load(
        session, org_id, case_id, req.borrower_id, acting_user_id=principal.user_id
    )
    borrowers = [ctx.borrower] if req.borrower_id is not None else ctx.borrowers
    to = req.to
    if to is None and req.contact_point_id is None:
        to = await _preferred_address(session, org_id, ctx.case.id, channel)
    borrower, contact = await recipients.resolve(
        session, org_id, borrowers, channel, to, contact_point_id=req.contact_point_id
    )
    if borrower.id != ctx.borrower.id:
        ctx.borrower = borrower
    cc, bcc = _copies(channel, req)
    attached = await _attachments(session, org_id, ctx.case.id, channel, req)
    account = await provider_accounts.resolve_for_send(
        session, org_id, channel, req.provider_account_id
    )
    wa = None
    if channel is Channel.WHATSAPP:
        wa = await whatsapp.prepare(session, account, req)
        if wa.body is not None:
            req = dataclasses.replace(req, body=wa.body)
    content = await _content(session, org_id, channel, req, ctx)
    now = container.clock()
    if req.send_at is not None and req.send_at.tzinfo is None:
        raise Invalid.field("sendAt", "must include a timezone (RFC 3339, e.g. ...Z)")
    if req.send_at is not None and req.send_at > now + MAX_SCHEDULE_AHEAD:
        raise Invalid.field("sendAt", "can be at most one year ahead")
    if wa is not None:
        await whatsapp.check_window(session, account, org_id, contact.value, wa, now, req.send_at)
    schedule_at = req.send_at if req.send_at and req.send_at > now else None
    message_id = req.message_id or uuid.uuid4()

    conn = await raw_connection(session)
    # The enqueue-time decision is about the moment it would go: now, or its sendAt.
    attempt_ctx = await _attempt_context(
        conn,
        org_id,
        ctx.case.id,
        borrower.id,
        contact.id,
        channel,
        req.purpose,
        message_id,
        schedule_at or now,
    )
    decision = assess(attempt_ctx)
    written = content.body
    content, content_record = await _apply_content_rules(
        container, conn, channel, content, attempt_ctx, message_id, ctx.case.id, borrower.id
    )
    if wa is not None:
        whatsapp.check_content(wa, written, content.body)
    sms_encoding, segments = _check_length(channel, content)

    if decision.outcome is gate.Outcome.BLOCK:
        status = MessageStatus.BLOCKED
    elif decision.outcome is gate.Outcome.DEFER and decision.defer_until is not None:
        status = MessageStatus.SCHEDULED
        schedule_at = max(decision.defer_until, schedule_at or decision.defer_until)
    elif schedule_at is not None:
        status = MessageStatus.SCHEDULED
    else:
        status = MessageStatus.QUEUED

    thread_id = await threads.for_message(
        session, org_id, ctx.case.id, borrower.id, channel, content.subject, [contact.value], now
    )
    message = Message(
        id=message_id,
        organization_id=org_id,
        case_id=ctx.case.id,
        borrower_id=borrower.id,
        contact_point_id=contact.id,
        thread_id=thread_id,
        channel=channel.value,
        direction=Direction.OUTBOUND.value,
        status=status.value,
        priority=req.priority,
        to_address=contact.value,
        from_address=_sender(account.config),
        cc=cc,
        bcc=bcc,
        subject=content.subject,
        body=content.body,
        html_body=content.html,
        template_id=content.template.id if content.template else None,
        template_version=content.version.version if content.version else None,
        template_variables=_jsonable(req.variables) if content.template else None,
        provider_account_id=account.id,
        provider=account.provider,
        rfc822_message_id=_rfc822_id(message_id, account.config)
        if channel is Channel.EMAIL
        else None,
        encoding=sms_encoding,
        segments=segments,
        sent_by_user_id=principal.user_id,
        sent_by_name=principal.name,
        scheduled_at=schedule_at,
        status_changed_at=now,
        created_at=now,
        purpose=req.purpose,
        whatsapp=wa.payload if wa is not None else None,
    )
    session.add(message)
    await session.flush()
    if attached:
        await documents.link(session, org_id, message_id, attached)
    session.add(
        MessageEvent(
            organization_id=org_id,
            message_id=message_id,
            event_type=status.value,
            status_before=None,
            status_after=status.value,
            source="parley",
            occurred_at=now,
            reason=", ".join(decision.reasons) or None,
        )
    )
    session.add(
        ComplianceDecision(
            organization_id=org_id,
            message_id=message_id,
            stage="enqueue",
            outcome=decision.outcome.value,
            defer_until=decision.defer_until,
            rules=decision.rules_record(),
            facts={**decision.facts_record(), "content": content_record},
        )
    )
    await session.flush()
    if status is not MessageStatus.BLOCKED:
        await outbox.defer_send(
            container.jobs, conn, [str(message_id)], schedule_at=schedule_at, priority=req.priority
        )
    await _announce_created(conn, message)
    await session.commit()
    return message


async def _attachments(
    session: AsyncSession,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    channel: Channel,
    req: SendRequest,
) -> list[Document]:
    if not req.attachments:
        return []
    if channel is not Channel.EMAIL:
        raise Invalid.field("attachments", "only email messages carry attachments")
    return await documents.for_outbound_email(session, org_id, case_id, req.attachments)


async def _announce_created(conn: Any, message: Message) -> None:
    """The conversation moves (last activity; nothing unread) and live clients hear."""
    preview = conversations.preview_of(message.subject, message.body)
    touched = await conversations.touch(
        conn,
        conversations.Item(
            organization_id=message.organization_id,
            kind="message",
            item_id=message.id,
            channel=message.channel,
            direction=message.direction,
            at=message.created_at,
            preview=preview,
            case_id=message.case_id,
            borrower_id=message.borrower_id,
        ),
    )
    await activity.emit(
        conn,
        str(message.organization_id),
        "message.created",
        {
            "messageId": str(message.id),
            "caseId": str(message.case_id),
            "caseNumber": touched.case_number,
            "borrowerId": str(message.borrower_id),
            "conversationId": touched.conversation_id,
            "assignedAgentId": touched.assigned_agent_id,
            "messageType": message.channel,
            "direction": message.direction,
            "status": message.status,
            "to": message.to_address,
            "subject": message.subject,
            "preview": preview,
            "purpose": message.purpose,
            "sentBy": message.sent_by_name,
            "timestamp": message.created_at.isoformat(),
        },
    )


async def announce_status(
    conn: Any, message: Message, previous: str, at: datetime, error_code: str | None = None
) -> None:
    await activity.emit(
        conn,
        str(message.organization_id),
        announce.EVENT,
        announce.status_change_data(
            str(message.id),
            str(message.case_id),
            message.channel,
            message.status,
            previous,
            at,
            error_code,
        ),
    )


async def _preferred_address(
    session: AsyncSession, org_id: uuid.UUID, case_id: uuid.UUID, channel: Channel
) -> str | None:
    """The case preferences' emailAddress / phoneNumber, for a message without `to`."""
    from parley.services.preferences import current

    prefs = await current(session, org_id, case_id)
    if prefs is None:
        return None
    key = "emailAddress" if channel is Channel.EMAIL else "phoneNumber"
    value = prefs.document.get(key)
    return str(value) if value else None


def _copies(channel: Channel, req: SendRequest) -> tuple[list[str], list[str]]:
    if channel is not Channel.EMAIL:
        if req.cc or req.bcc:
            raise Invalid.field("cc", "cc and bcc apply to email only")
        return [], []
    from parley.services.contacts import normalize_email

    out: dict[str, list[str]] = {"cc": [], "bcc": []}
    errors: list[FieldError] = []
    for name, values in (("cc", req.cc), ("bcc", req.bcc)):
        for i, raw in enumerate(values):
            try:
                out[name].append(normalize_email(raw))
            except Invalid as exc:
                msg = exc.errors[0].message if exc.errors else exc.detail
                errors.append(FieldError(f"{name}.{i}", msg))
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    return out["cc"], out["bcc"]


async def _content(
    session: AsyncSession,
    org_id: uuid.UUID,
    channel: Channel,
    req: SendRequest,
    ctx: case_context.CaseContext,
) -> Content:
    template = version = None
    subject, body, html = req.subject, req.body, req.html_body
    if req.template_id:
        try:
            template, version = await template_svc.get(session, org_id, req.template_id)
        except NotFound:
            raise Invalid.field("templateId", f"unknown template {req.template_id!r}") from None
        if template.channel != channel.value:
            raise Invalid.field(
                "templateId", f"is a {template.channel} template, not {channel.value}"
            )
        template_svc.check_variables(version.variables, req.variables)
        # Explicit subject/body in the request override the template's parts (the seed's
        # example sends both); only the parts still needed are rendered.
        parts = template_svc.TemplateParts(
            subject=None if subject is not None else version.subject,
            body="" if body is not None else version.body,
            html_body=None if (body is not None or html is not None) else version.html_body,
        )
        rendered = template_svc.render_parts(parts, ctx.template_context(req.variables), ctx.locale)
        subject = subject if subject is not None else rendered.subject
        html = html if html is not None else rendered.html
        body = body if body is not None else rendered.body
    if not body or not body.strip():
        raise Invalid.field("body", "give a body or a templateId", "required")
    if channel is Channel.EMAIL and not (subject or "").strip():
        raise Invalid.field("subject", "an email needs a subject", "required")
    if channel is not Channel.EMAIL and subject:
        raise Invalid.field("subject", f"{channel.value} messages have no subject")
    if subject and ("\r" in subject or "\n" in subject):
        raise Invalid.field("subject", "must be a single line")
    return Content(subject=subject, body=body, html=html, template=template, version=version)


@dataclass(frozen=True)
class AsSent:
    """A template preview's text as Parley would send it now (`preview_as_sent`)."""

    body: str
    html: str | None
    content_rules: dict[str, Any]


async def preview_as_sent(
    container: Container,
    session: AsyncSession,
    org_id: uuid.UUID,
    ctx: case_context.CaseContext,
    channel: Channel,
    subject: str | None,
    body: str,
    html: str | None,
) -> AsSent | None:
    """What the compliance content rules (disclosure, opt-out notice) would make of this
    text, sent now on `channel` to the case's preferred contact point: a preview's
    characters and segments must be those of the message that goes out. None when the
    case has no contact point for the channel. The caller commits nothing."""
    borrowers = [ctx.borrower]
    to = await _preferred_address(session, org_id, ctx.case.id, channel)
    try:
        borrower, contact = await recipients.resolve(session, org_id, borrowers, channel, to)
    except (Invalid, NotFound):
        return None
    conn = await raw_connection(session)
    message_id = uuid.uuid4()
    attempt_ctx = await _attempt_context(
        conn,
        org_id,
        ctx.case.id,
        borrower.id,
        contact.id,
        channel,
        "collection",
        message_id,
        container.clock(),
    )
    content = Content(subject=subject, body=body, html=html, template=None, version=None)
    sent, record = await _apply_content_rules(
        container, conn, channel, content, attempt_ctx, message_id, ctx.case.id, borrower.id
    )
    return AsSent(body=sent.body, html=sent.html, content_rules=record)


async def _attempt_context(
    conn: Any,
    org_id: uuid.UUID,
    case_id: uuid.UUID,
    borrower_id: uuid.UUID,
    contact_point_id: uuid.UUID,
    channel: Channel,
    purpose: str,
    message_id: uuid.UUID,
    at: datetime,
) -> AttemptContext:
    """Every fact the gate and the content rules read about one attempt at `at`."""
    attempt = contactability.AttemptRequest(
        organization_id=str(org_id),
        case_id=str(case_id),
        borrower_id=str(borrower_id),
        contact_point_id=str(contact_point_id),
        channel=channel,
        purpose=purpose,
        message_id=str(message_id),
    )
    (attempt_ctx,) = await contactability.load_contexts(conn, [attempt], at, lock=False)
    return attempt_ctx


async def _apply_content_rules(
    container: Container,
    conn: Any,
    channel: Channel,
    content: Content,
    ctx: AttemptContext,
    message_id: uuid.UUID,
    case_id: uuid.UUID,
    borrower_id: uuid.UUID,
) -> tuple[Content, dict[str, Any]]:
    """Add what the law requires in the message itself, when the text lacks it: the
    debt-collector disclosure and the opt-out notice (Reg F 1006.6(e), 1006.18(e)).
    Replies the borrower asked for (opt-out confirmation, HELP) carry neither."""
    if ctx.purpose in REPLY_PURPOSES:
        return content, {"applied": False, "why": "reply_to_borrower"}
    # The first communication with this borrower about this debt carries the full
    # disclosure: until one has actually gone out (a queued or later-blocked message
    # does not count), every message does.
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE case_id = %s AND borrower_id = %s "
        "AND direction = 'outbound' AND status IN ('sending', 'sent', 'delivered', 'read', "
        "'opened', 'clicked', 'needs_review', 'bounced'))",
        (case_id, borrower_id),
    )
    row = await cur.fetchone()
    first = not (row and row[0])
    url = None
    if channel is Channel.EMAIL:
        url = await unsubscribe.url_for(container, conn, message_id)
    try:
        result = content_rules.apply_content_rules(
            content.body,
            channel,
            first_communication=first,
            policy=ctx.policy.disclosure
            if us_rules_apply(ctx.location.jurisdiction)
            else dataclasses.replace(ctx.policy.disclosure, enabled=False),
            notice=ctx.policy.opt_out_notice,
            html=content.html if channel is Channel.EMAIL else None,
            unsubscribe_url=url,
        )
    except ValueError as exc:  # malformed HTML would hide the footer
        raise Invalid.field("htmlBody", str(exc), "unsafe_html") from None
    new = Content(
        subject=content.subject,
        body=result.body,
        html=result.html,
        template=content.template,
        version=content.version,
    )
    return new, result.as_record()


def _check_length(channel: Channel, content: Content) -> tuple[str | None, int | None]:
    if channel is Channel.SMS:
        from parley.templates import analyze_sms

        sms = analyze_sms(content.body)
        if sms.segments > SMS_MAX_SEGMENTS:
            raise Invalid.field(
                "body",
                f"too long for SMS: {sms.characters} characters in {sms.encoding} "
                f"make {sms.segments} segments; the limit is {SMS_MAX_SEGMENTS}",
                "too_long",
            )
        return sms.encoding, sms.segments
    if channel is Channel.WHATSAPP and len(content.body) > WHATSAPP_MAX_CHARS:
        raise Invalid.field(
            "body",
            f"WhatsApp text is limited to {WHATSAPP_MAX_CHARS} characters, got {len(content.body)}",
            "too_long",
        )
    if channel is Channel.EMAIL:
        size = len(content.body) + len(content.html or "")
        if size > EMAIL_MAX_BODY:
            raise Invalid.field(
                "body", f"email bodies are limited to {EMAIL_MAX_BODY} characters", "too_long"
            )
        if content.subject and len(content.subject) > 998:
            raise Invalid.field("subject", "is longer than 998 characters", "too_long")
    return None, None


def _sender(config: dict[str, Any]) -> str | None:
    for key in ("from_address", "from_number", "sender", "messaging_service_sid"):
        if config.get(key):
            return str(config[key])
    return None


def _rfc822_id(message_id: uuid.UUID, config: dict[str, Any]) -> str:
    domain = config.get("message_id_domain")
    if not domain:
        sender = str(config.get("from_address") or "")
        domain = sender.rpartition("@")[2] or "parley.local"
    return f"<{message_id}@{domain}>"


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(orjson.dumps(values, default=str))
    return result


async def get(session: AsyncSession, org_id: uuid.UUID, message_id: uuid.UUID) -> Message:
    message = await session.scalar(
        select(Message).where(Message.id == message_id, Message.organization_id == org_id)
    )
    if message is None:
        raise NotFound(f"message {message_id} not found")
    return message


async def events(session: AsyncSession, message: Message) -> list[MessageEvent]:
    rows = await session.scalars(
        select(MessageEvent)
        .where(
            MessageEvent.message_id == message.id,
            MessageEvent.organization_id == message.organization_id,
        )
        .order_by(MessageEvent.occurred_at, MessageEvent.id)
    )
    return list(rows)


async def parts(session: AsyncSession, message: Message) -> list[MessagePart]:
    """The parts of a message sent as separately receipted parts; empty for the others."""
    rows = await session.scalars(
        select(MessagePart)
        .where(
            MessagePart.message_id == message.id,
            MessagePart.organization_id == message.organization_id,
        )
        .order_by(MessagePart.part)
    )
    return list(rows)


async def cancel(
    container: Container, session: AsyncSession, org_id: uuid.UUID, message_id: uuid.UUID
) -> Message:
    message = await session.scalar(
        select(Message)
        .where(Message.id == message_id, Message.organization_id == org_id)
        .with_for_update()
    )
    if message is None:
        raise NotFound(f"message {message_id} not found")
    current = MessageStatus(message.status)
    if current not in CANCELLABLE:
        raise Conflict(
            f"message is {current.value}; only scheduled or queued messages can be cancelled"
        )
    now = container.clock()
    message.status = MessageStatus.CANCELLED.value
    message.status_changed_at = now
    session.add(
        MessageEvent(
            organization_id=org_id,
            message_id=message.id,
            event_type="cancelled",
            status_before=current.value,
            status_after="cancelled",
            source="parley",
            occurred_at=now,
        )
    )
    await session.flush()
    await announce_status(await raw_connection(session), message, current.value, now)
    await session.commit()
    return message


REVIEW_RESOLUTIONS = {"sent": MessageStatus.SENT, "not_sent": MessageStatus.FAILED}


async def resolve_review(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    message_id: uuid.UUID,
    resolution: str,
    note: str | None,
) -> Message:
    """A person settles a `needs_review` message: it did reach the borrower (`sent`) or it
    did not (`not_sent` -> failed; send a new message if it should go out). The decision
    is recorded as an event with who made it; nothing is resent automatically."""
    target = REVIEW_RESOLUTIONS.get(resolution)
    if target is None:
        raise Invalid.field("resolution", "must be sent or not_sent")
    message = await session.scalar(
        select(Message)
        .where(Message.id == message_id, Message.organization_id == principal.organization_id)
        .with_for_update()
    )
    if message is None:
        raise NotFound(f"message {message_id} not found")
    if message.status != MessageStatus.NEEDS_REVIEW.value:
        raise Conflict(f"message is {message.status}; only needs_review messages are resolved")
    now = container.clock()
    message.status = target.value
    message.status_changed_at = now
    if target is MessageStatus.FAILED:
        message.error_code = "not_sent_after_review"
    session.add(
        MessageEvent(
            organization_id=message.organization_id,
            message_id=message.id,
            event_type="review_resolved",
            status_before=MessageStatus.NEEDS_REVIEW.value,
            status_after=target.value,
            source="parley",
            occurred_at=now,
            reason=f"{resolution} (by {principal.name})" + (f": {note}" if note else ""),
        )
    )
    await session.flush()
    await announce_status(
        await raw_connection(session),
        message,
        MessageStatus.NEEDS_REVIEW.value,
        now,
        message.error_code,
    )
    await session.commit()
    return message
