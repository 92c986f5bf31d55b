"""Inbound replies: match the sender, record the message, act on opt-out words.

Runs in a worker (job ``process_inbound``) over a stored webhook receipt, so the webhook
answers at once and a failure is retried. Each inbound message is recorded once
(provider message ids are unique per account); a repeated job finds it and stops.

Matching: the sender's address is looked up among the organization's contact points
(E.164 for phones, normalized email). The message joins the case the borrower was last
written to from that contact point (else the borrower's most recent case) and its
active thread. A sender matching no contact point, or a borrower with no case, is still
recorded: the message has no case and lands in the team queue's conversation for that
sender address (parley.inbox.conversations), for a person to look at.

Every recorded reply moves its conversation (unread count, last activity) and is
announced (`message.received`, `conversation.updated`) in the same transaction.

Opt-out (reference/compliance.md, TCPA and Reg F 1006.14(h)): the reply is classified
(:func:`parley.compliance.optout.classify_reply`): keywords (STOP, ... START, HELP) and
free-text revocations ("stop texting me") alike. A revocation is written to the consent
ledger for the channels it covers, messages waiting on them are cancelled, and one
confirmation is sent — only when the revocation is new (a second STOP confirms
nothing). Replies acting on consent take a per-borrower lock first, so two handled at
once cannot both confirm. A confirmation that cannot be sent (the account was disabled)
is dropped with a warning; the revocation stands. A free-text revocation is also flagged
on the inbound message for an agent.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels.base import InboundMessage, WebhookRequest
from parley.compliance import optout
from parley.compliance.reply_text import strip_email_quote
from parley.domain.channels import Channel, ContactKind, contact_kind_for
from parley.inbox import conversations, email_replies
from parley.services import activity, consent, threads, whatsapp_window
from parley.services import messages as message_svc
from parley.services.auth import Principal, Role
from parley.services.errors import ServiceError
from parley.storage.db import raw_connection
from parley.storage.models import ContactPoint, Message, MessageEvent, Organization

if TYPE_CHECKING:
    from parley.bootstrap import Container
    from parley.dispatch.providers import AccountRow

log = logging.getLogger(__name__)

AUTOMATIC = "Parley (automatic reply)"


async def process_receipt(container: Container, receipt_id: int) -> int:
    """Handle every inbound message in a stored receipt; returns how many were new."""
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT provider_account_id::text, url, headers, body FROM webhook_receipts "
            "WHERE id = %s",
            (receipt_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return 0
        account_id, url, headers, body = row
        account = (await container.providers.accounts([account_id], conn=conn)).get(account_id)
    if account is None:
        return 0
    provider = await container.providers.get(account)
    request = WebhookRequest(method="POST", url=url, headers=headers, body=bytes(body))
    new = 0
    for item in provider.parse_webhook(request):
        if isinstance(item, InboundMessage):
            new += await handle(container, account, item)
    return new


async def handle(container: Container, account: AccountRow, item: InboundMessage) -> int:
    async with container.db.session() as session:
        exists = await session.scalar(
            select(Message.id).where(
                Message.provider_account_id == uuid.UUID(account.id),
                Message.provider_message_id == item.provider_message_id,
            )
        )
        if exists is not None:
            return 0
        org_id = uuid.UUID(account.organization_id)
        sender = _normalize(item)
        cp = await _match(session, org_id, item.channel, sender)
        # An email naming one of our messages joins that message's case and thread.
        answered = await email_replies.thread_for_reply(session, org_id, item)
        if cp is None and answered is not None and answered.contact_point_id is not None:
            cp = await session.get(ContactPoint, answered.contact_point_id)
        if cp is None:
            case_id = None  # nobody we know: the team queue
        elif answered is not None:
            case_id = answered.case_id
        else:
            case_id = await _case_for(session, cp)
        if case_id is None:
            # No case to file the reply on: recorded for the team queue. An opt-out from a
            # known borrower is still honoured (consent belongs to the contact point).
            log.info("inbound %s matches no case: filed in the team queue", item.channel)
            if cp is not None:  # first: it takes the borrower's lock before any row lock
                await _consent_without_case(container, session, org_id, cp, item)
            await _record_unfiled(container, session, account, org_id, cp, sender, item)
            await session.commit()
            return 1
        intent = optout.classify_reply(_reply_text(item), channel=item.channel)
        if item.kind == "auto_reply":
            # An out-of-office quoting "reply STOP" is not the borrower speaking.
            intent = optout.ReplyIntent(action=optout.ReplyAction.NONE)
        flags = (
            []
            if not intent.needs_agent_review
            else ["opt_out_detected"]
            if intent.action is optout.ReplyAction.OPT_OUT
            else ["contact_preference_stated"]  # "email only please": for an agent
        )
        if item.kind == "auto_reply":
            flags.append("auto_reply")
        files, refused = email_replies.check_attachments(item)
        if refused:
            flags.append("attachment_rejected")
        if intent.action is not optout.ReplyAction.NONE:
            # Before anything else is locked (the thread row below): replies of one
            # borrower acting on consent are handled one at a time, so two STOPs (say by
            # text and by WhatsApp) cannot both find "not revoked" and both confirm.
            await consent.lock_borrower(await raw_connection(session), str(cp.borrower_id))
        # Read after the lock: a change the previous holder recorded is never "later".
        now = container.clock()
        if answered is not None and answered.thread_id is not None:
            thread_id = answered.thread_id
            await email_replies.join_thread(session, thread_id, now)
        else:
            thread_id = await threads.for_message(
                session,
                org_id,
                case_id,
                cp.borrower_id,
                item.channel,
                item.subject,
                [cp.value],
                now,
            )
        message = Message(
            id=uuid.uuid4(),
            organization_id=org_id,
            case_id=case_id,
            borrower_id=cp.borrower_id,
            contact_point_id=cp.id,
            thread_id=thread_id,
            channel=item.channel.value,
            direction="inbound",
            status="received",
            to_address=item.recipient or "",
            from_address=cp.value,
            subject=item.subject,
            body=item.body,
            provider_account_id=uuid.UUID(account.id),
            provider=account.provider,
            provider_message_id=item.provider_message_id,
            # Email: its Message-ID, so a later reply naming it joins this thread too.
            rfc822_message_id=item.provider_message_id[:300]
            if item.channel is Channel.EMAIL
            else None,
            cc=list(item.cc),
            received_at=item.occurred_at,
            purpose="reply",
            flags=flags,
            status_changed_at=now,
            created_at=now,
        )
        session.add(message)
        await session.flush()
        await email_replies.store_attachments(session, message, files)
        session.add(
            MessageEvent(
                organization_id=org_id,
                message_id=message.id,
                event_type="received",
                status_before=None,
                status_after="received",
                source="provider",
                occurred_at=item.occurred_at,
                reason=_intent_note(intent),
                raw=item.raw or None,
            )
        )
        await session.flush()
        if item.channel is Channel.WHATSAPP:  # opens or refreshes the 24-hour window
            await whatsapp_window.record_inbound(
                await raw_connection(session),
                org_id,
                cp.value,
                item.occurred_at,
                item.provider_message_id,
                now,
            )
        await _announce(await raw_connection(session), message, item, case_id=case_id)
        reply = await _act_on_intent(container, session, account, cp, message, intent, now)
        if reply is not None:
            savepoint = await session.begin_nested()
            try:
                # Commits everything (inbound message, ledger, confirmation) at once.
                await message_svc.send(container, session, _system(org_id), case_id, reply)
                return 1
            except ServiceError as exc:  # e.g. the account was disabled meanwhile
                # The revocation stands without its confirmation: undo only the latter.
                log.warning("no confirmation sent for inbound %s: %s", message.id, exc.detail)
                await savepoint.rollback()
        await session.commit()
        return 1


async def _consent_without_case(
    container: Container,
    session: AsyncSession,
    org_id: uuid.UUID,
    cp: ContactPoint,
    item: InboundMessage,
) -> None:
    if item.kind == "auto_reply":
        return
    intent = optout.classify_reply(_reply_text(item), channel=item.channel)
    if intent.action not in (optout.ReplyAction.OPT_OUT, optout.ReplyAction.OPT_IN):
        return
    conn = await raw_connection(session)
    await consent.lock_borrower(conn, str(cp.borrower_id))
    now = container.clock()
    scope = set(intent.scope) or {item.channel}
    states = await _states(conn, cp, scope, now)
    change = consent.ConsentChange(
        organization_id=str(org_id),
        borrower_id=str(cp.borrower_id),
        contact_point_id=str(cp.id),
        address=cp.value,
        channel=item.channel,
        action="revoke",
        source="reply_keyword" if intent.keyword else "reply_text",
        effective_at=now,
        reason=f"borrower replied {intent.matched!r} (no case to file the reply on)"[:1000],
        evidence={**intent.as_record(), "providerMessageId": item.provider_message_id},
        recorded_by_name=AUTOMATIC,
    )
    if intent.action is optout.ReplyAction.OPT_OUT:
        fresh = {c for c in scope if states.get(c) != "revoke"}
        if fresh:
            await _revoke(conn, change, cp, fresh)
    else:
        own = ContactKind(cp.kind)
        for c in sorted((c for c in scope if states.get(c) == "revoke"), key=lambda c: c.value):
            mine = own.serves(c)
            await consent.record(
                conn,
                dataclasses.replace(
                    change,
                    channel=c,
                    action="grant",
                    contact_point_id=str(cp.id) if mine else None,
                    address=cp.value if mine else None,
                ),
            )


async def _record_unfiled(
    container: Container,
    session: AsyncSession,
    account: AccountRow,
    org_id: uuid.UUID,
    cp: ContactPoint | None,
    sender: str,
    item: InboundMessage,
) -> None:
    """Record a reply that matches no case (no thread: threads belong to a case)."""
    now = container.clock()
    message = Message(
        id=uuid.uuid4(),
        organization_id=org_id,
        case_id=None,
        borrower_id=cp.borrower_id if cp else None,
        contact_point_id=cp.id if cp else None,
        thread_id=None,
        channel=item.channel.value,
        direction="inbound",
        status="received",
        to_address=item.recipient or "",
        from_address=sender,
        subject=item.subject,
        body=item.body,
        provider_account_id=uuid.UUID(account.id),
        provider=account.provider,
        provider_message_id=item.provider_message_id,
        # As on a filed reply: a later reply naming it can join its thread once filed.
        rfc822_message_id=item.provider_message_id[:300] if item.channel is Channel.EMAIL else None,
        cc=list(item.cc),
        received_at=item.occurred_at,
        purpose="reply",
        # `auto_reply`: when a person files it (services/filing.py), an out-of-office
        # quoting "reply STOP" is not taken for the borrower's words.
        flags=["unfiled", "auto_reply"] if item.kind == "auto_reply" else ["unfiled"],
        status_changed_at=now,
        created_at=now,
    )
    session.add(message)
    await session.flush()
    session.add(
        MessageEvent(
            organization_id=org_id,
            message_id=message.id,
            event_type="received",
            status_before=None,
            status_after="received",
            source="provider",
            occurred_at=item.occurred_at,
            reason="matches no case: filed in the team queue",
            raw=item.raw or None,
        )
    )
    await session.flush()
    if item.channel is Channel.WHATSAPP:
        # The window belongs to the number, known or not: once the message is filed, an
        # agent may answer free-form within 24 hours of it, as for any borrower.
        await whatsapp_window.record_inbound(
            await raw_connection(session),
            org_id,
            sender,
            item.occurred_at,
            item.provider_message_id,
            now,
        )
    await _announce(await raw_connection(session), message, item, case_id=None)


async def _announce(
    conn: Any, message: Message, item: InboundMessage, *, case_id: uuid.UUID | None
) -> None:
    """Move the message's conversation and tell the live clients (and webhooks)."""
    touched = await conversations.touch(
        conn,
        conversations.Item(
            organization_id=message.organization_id,
            kind="message",
            item_id=message.id,
            channel=message.channel,
            direction="inbound",
            at=message.created_at,
            preview=conversations.preview_of(message.subject, message.body),
            case_id=case_id,
            borrower_id=message.borrower_id,
            sender_address=message.from_address,
        ),
    )
    await activity.emit(
        conn,
        str(message.organization_id),
        "message.received",
        {
            "messageId": str(message.id),
            "caseId": str(case_id) if case_id else None,
            "caseNumber": touched.case_number,
            "borrowerId": str(message.borrower_id) if message.borrower_id else None,
            "conversationId": touched.conversation_id,
            "assignedAgentId": touched.assigned_agent_id,
            "messageType": message.channel,
            "direction": "inbound",
            "from": message.from_address,
            "subject": message.subject,
            "preview": conversations.preview_of(message.subject, message.body),
            "hasAttachments": bool(item.media),
            "flags": list(message.flags or []),
            "timestamp": item.occurred_at.isoformat(),
        },
    )


def _normalize(item: InboundMessage) -> str:
    from parley.services.contacts import normalize_email, normalize_phone
    from parley.services.errors import Invalid

    raw = item.sender.strip()
    try:
        if item.channel is Channel.EMAIL:
            from email.utils import parseaddr

            return normalize_email(parseaddr(raw)[1] or raw)
        raw = raw.removeprefix("whatsapp:")
        return normalize_phone(raw, default_region=None, strict=False)
    except Invalid:
        return raw


async def _match(
    session: AsyncSession, org_id: uuid.UUID, channel: Channel, sender: str
) -> ContactPoint | None:
    kind: ContactKind = contact_kind_for(channel)
    rows = list(
        await session.scalars(
            select(ContactPoint)
            .where(
                ContactPoint.organization_id == org_id,
                ContactPoint.kind == kind.value,
                ContactPoint.value == sender,
            )
            .order_by(ContactPoint.created_at)
        )
    )
    if not rows:
        return None
    if len(rows) == 1:
        return rows[0]
    # The same number on several borrowers (a shared home phone): the one we last wrote to.
    last = await session.scalar(
        select(Message.contact_point_id)
        .where(
            Message.contact_point_id.in_([r.id for r in rows]),
            Message.direction == "outbound",
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )
    return next((r for r in rows if r.id == last), rows[0])


async def _case_for(session: AsyncSession, cp: ContactPoint) -> uuid.UUID | None:
    case_id = await session.scalar(
        select(Message.case_id)
        .where(Message.contact_point_id == cp.id, Message.direction == "outbound")
        .order_by(Message.created_at.desc())
        .limit(1)
    )
    if case_id is not None:
        return case_id
    row = await session.execute(
        text(
            "SELECT c.id FROM case_borrowers cb JOIN cases c ON c.id = cb.case_id "
            "WHERE cb.borrower_id = :b ORDER BY c.updated_at DESC LIMIT 1"
        ),
        {"b": cp.borrower_id},
    )
    first = row.first()
    return first[0] if first else None


def _reply_text(item: InboundMessage) -> str:
    if item.channel is Channel.EMAIL:
        return strip_email_quote(item.body or "")
    return item.body or ""


def _intent_note(intent: optout.ReplyIntent) -> str | None:
    if intent.action is optout.ReplyAction.NONE:
        return None
    scope = ", ".join(sorted(c.value for c in intent.scope))
    how = "keyword" if intent.keyword else "free text, flagged for an agent"
    return f"{intent.action.value} ({scope}) by {how}: {intent.matched!r}"


def _system(org_id: uuid.UUID) -> Principal:
    return Principal(
        organization_id=org_id,
        role=Role.ADMIN,
        user_id=None,
        name=AUTOMATIC,
        token_id=uuid.UUID(int=0),
    )


async def _act_on_intent(
    container: Container,
    session: AsyncSession,
    account: AccountRow,
    cp: ContactPoint,
    message: Message,
    intent: optout.ReplyIntent,
    now: Any,
) -> message_svc.SendRequest | None:
    """Write the consent change; the confirmation to send, if one is due."""
    if intent.action is optout.ReplyAction.NONE:
        return None
    conn = await raw_connection(session)
    channel = Channel(message.channel)
    org = await session.get(Organization, message.organization_id)
    org_name = org.name if org else "us"
    from parley.services.contactability import load_policy

    policy = await load_policy(conn, str(message.organization_id))
    confirmation_id = uuid.uuid4()
    change = consent.ConsentChange(
        organization_id=str(message.organization_id),
        borrower_id=str(cp.borrower_id),
        contact_point_id=str(cp.id),
        address=cp.value,
        channel=channel,
        action="revoke",
        source="reply_keyword" if intent.keyword else "reply_text",
        effective_at=now,
        source_message_id=str(message.id),
        reason=f"borrower replied {intent.matched!r}"[:1000],
        evidence={**intent.as_record(), "confirmationMessageId": str(confirmation_id)},
        recorded_by_name=AUTOMATIC,
    )
    if intent.action is optout.ReplyAction.HELP:
        text_ = optout.confirmation_text(
            intent, organization=org_name, help_contact=policy.help_contact
        )
        return _reply(message, cp, account, text_, "help_reply", uuid.uuid4())
    scope = set(intent.scope) or {channel}
    if intent.action is optout.ReplyAction.OPT_OUT:
        states = await _states(conn, cp, scope, now)
        fresh = {c for c in scope if states.get(c) != "revoke"}
        if not fresh:
            return None  # already revoked: no second confirmation
        await _revoke(conn, change, cp, fresh)
        if channel not in fresh:
            return None
        text_ = optout.confirmation_text(intent, organization=org_name)
        return _reply(message, cp, account, text_, "opt_out_confirmation", confirmation_id)
    # OPT_IN
    states = await _states(conn, cp, scope, now)
    fresh = {c for c in scope if states.get(c) == "revoke"}
    if not fresh:
        return None
    for c in sorted(fresh, key=lambda c: c.value):
        await consent.record(
            conn,
            dataclasses.replace(
                change,
                channel=c,
                action="grant",
                contact_point_id=str(cp.id) if ContactKind(cp.kind).serves(c) else None,
                address=cp.value if ContactKind(cp.kind).serves(c) else None,
            ),
        )
    text_ = optout.confirmation_text(intent, organization=org_name)
    return _reply(message, cp, account, text_, "opt_in_confirmation", uuid.uuid4())


async def _states(
    conn: Any, cp: ContactPoint, scope: set[Channel], now: datetime
) -> dict[Channel, str]:
    return {c: await consent.latest_action(conn, cp.borrower_id, cp.id, c, now) for c in scope}


async def _revoke(
    conn: Any, change: consent.ConsentChange, cp: ContactPoint, channels: set[Channel]
) -> None:
    """Revoke on this contact point where it serves the channel (a number: texts, calls,
    WhatsApp); on every contact point of the borrower otherwise ("stop emailing me" sent
    by text)."""
    kind = ContactKind(cp.kind)
    own = {c for c in channels if kind.serves(c)}
    other = channels - own
    if own:
        await consent.revoke(conn, change, own)
    if other:
        await consent.revoke(
            conn, dataclasses.replace(change, contact_point_id=None, address=None), other
        )


def _reply(
    message: Message,
    cp: ContactPoint,
    account: AccountRow,
    body: str | None,
    purpose: str,
    message_id: uuid.UUID,
) -> message_svc.SendRequest | None:
    if not body:
        return None
    channel = Channel(message.channel)
    return message_svc.SendRequest(
        message_type=channel.value,
        subject=("Re: " + (message.subject or "your message"))[:200]
        if channel is Channel.EMAIL
        else None,
        body=body,
        purpose=purpose,
        message_id=message_id,
        contact_point_id=cp.id,
        borrower_id=cp.borrower_id,
        provider_account_id=uuid.UUID(account.id),
    )
