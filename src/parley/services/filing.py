"""Filing: a person puts a team-queue sender's messages on a borrower and a case
(POST /api/inbox/{conversationId}/file).

An inbound message from a sender that matched no case is recorded with no case (and,
for an unknown address, no borrower) in the team queue's conversation for that address
(parley.inbox.inbound, parley.inbox.conversations). Filing, in one transaction:

- each message gets the case, the borrower, the borrower's contact point for the
  sender's address (when there is one) and the case's active thread for its channel,
  the way a reply from a known sender would have (the database guard lets exactly this
  NULL -> value transition through, migration 0012), and a `filed` message event saying
  who filed it;
- the messages, with their unread count, join the case's conversation with that borrower
  (created if needed), which carries the case's assigned agent; the team-queue
  conversation shrinks to what is left, or goes when nothing is;
- optionally the sender's address becomes a contact point of the borrower
  (`addContactPoint`), unless it is another borrower's (409);
- opt-outs are applied (below);
- a `conversation_filings` row keeps who filed what and when; a second filing of the
  same conversation answers 409 from it, even once the conversation is gone;
- `conversation.updated` for both conversations and `conversation.assigned` when the
  messages change hands are announced in the transaction.

Who may file: supervisors and admins any team-queue conversation; an agent the ones
they can see in the inbox (the team queue and their own), as for every other inbox
action. Any case of the organization may be the target: every role reads and writes
messages on every case (GET /api/cases, POST /api/cases/{id}/messages), and filing on
another agent's case hands the messages to that agent.

Opt-outs (reference/compliance.md: TCPA revocation "by any reasonable means", Reg F
1006.14(h) "a specific address/number"): a STOP (or "stop texting me") that came from an
address nobody knew revoked consent for that address; nothing could be recorded then,
since the consent ledger belongs to a borrower. Once a person says whose address it is,
the revocation is recorded exactly as for a known sender -- the channels the address
serves on its contact point, any other medium it names on all of the borrower's contact
points -- and what is queued on them is cancelled. It takes effect at filing time (the
ledger then never lets an older entry outrank it). A revocation of the address's own
channels needs the address on file: without `addContactPoint` it answers 422 rather than
dropping the revocation (the address could be added later with no trace of it) or
stretching it to every number of the borrower. START/YES restore what the same sender
revoked, on its contact point only. Nothing is sent: the one confirmation the TCPA allows
is the immediate reply (47 CFR 64.1200(a)(12): within five minutes), and a text days
later would be a contact the consumer refused. Replies of a borrower that was known at
receipt already had their consent applied then (inbound._consent_without_case), and
automatic replies (`auto_reply`) are not the borrower speaking: neither counts here.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.compliance import optout
from parley.compliance.reply_text import strip_email_quote
from parley.domain.channels import Channel, ContactKind, contact_kind_for
from parley.inbox import conversations
from parley.services import activity, consent, contacts, threads
from parley.services.auth import Principal
from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.services.inbox import visibility
from parley.storage.db import raw_connection
from parley.storage.models import (
    Borrower,
    Case,
    CaseBorrower,
    ContactPoint,
    ConversationFiling,
    Message,
    MessageEvent,
)

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)

# One filing is one transaction: a sender with more unfiled messages than this files
# them in batches (`messageIds`, listed by GET /api/inbox/{id}/messages).
MAX_MESSAGES = 500


@dataclass(frozen=True, slots=True)
class FileRequest:
    case_id: uuid.UUID
    borrower_id: uuid.UUID
    add_contact_point: bool = False
    message_ids: list[uuid.UUID] | None = None  # None: every unfiled message


@dataclass(frozen=True, slots=True)
class ConsentApplied:
    message_id: uuid.UUID
    channel: str
    action: str  # revoke | grant
    contact_point_id: uuid.UUID | None  # None: every contact point of the borrower
    matched: str


@dataclass
class Filing:
    filing_id: uuid.UUID
    from_conversation_id: uuid.UUID
    from_conversation_removed: bool
    conversation_id: uuid.UUID
    case_id: uuid.UUID
    borrower_id: uuid.UUID
    message_ids: list[uuid.UUID]
    contact_point: ContactPoint | None
    contact_point_added: bool
    filed_at: datetime
    filed_by: str
    consent: list[ConsentApplied] = field(default_factory=list)


@dataclass
class _Source:
    id: uuid.UUID
    case_id: uuid.UUID | None
    borrower_id: uuid.UUID | None
    sender: str
    agent_id: uuid.UUID | None
    unread: int
    last_read_at: datetime | None
    status: str


async def file(
    container: Container,
    session: AsyncSession,
    principal: Principal,
    conversation_id: uuid.UUID,
    req: FileRequest,
) -> Filing:
    """File the conversation's unfiled messages (or those of `req.message_ids`) on the
    borrower and case; commits."""
    org_id = principal.organization_id
    conn = await raw_connection(session)
    # Lock order as on the inbound path: the borrower's consent lock, then conversation
    # rows, then the case (FOR SHARE, in the conversation upsert).
    await consent.lock_borrower(conn, str(req.borrower_id))
    source = await _lock_source(session, principal, conversation_id)
    unfiled = list(
        await session.scalars(
            select(Message)
            .where(
                Message.organization_id == org_id,
                Message.case_id.is_(None),
                Message.from_address == source.sender,
                Message.direction == "inbound",
            )
            .order_by(Message.created_at, Message.id)
            .with_for_update()
        )
    )
    chosen = await _choose(session, org_id, unfiled, req.message_ids)
    case, borrower = await _target(session, org_id, req)
    for m in chosen:
        if m.borrower_id is not None and m.borrower_id != borrower.id:
            raise Conflict(
                f"message {m.id} came from a contact point of borrower {m.borrower_id}; "
                "it can only be filed on that borrower's cases",
                [FieldError("borrowerId", "is not who sent the message", "borrower_mismatch")],
            )
    kind = contact_kind_for(Channel(chosen[0].channel))
    cp, added = await _contact_point(session, org_id, borrower, kind, source.sender, chosen, req)
    now = container.clock()
    applied = await _apply_consent(conn, principal, borrower, cp, kind, chosen, now)

    filing_id = uuid.uuid4()
    for m in chosen:
        thread_id = await threads.for_message(
            session,
            org_id,
            case.id,
            borrower.id,
            Channel(m.channel),
            m.subject,
            [m.from_address or source.sender],
            m.created_at,
        )
        m.case_id = case.id
        m.borrower_id = borrower.id
        if m.contact_point_id is None and cp is not None:
            m.contact_point_id = cp.id
        m.thread_id = thread_id
        session.add(
            MessageEvent(
                organization_id=org_id,
                message_id=m.id,
                event_type="filed",
                status_before=m.status,
                status_after=m.status,
                source="parley",
                occurred_at=now,
                reason=(
                    f"filed on case {case.case_number} for {borrower.first_name} "
                    f"{borrower.last_name} by {principal.name}"
                )[:1000],
                raw={
                    "filingId": str(filing_id),
                    "fromConversationId": str(source.id),
                    "caseId": str(case.id),
                    "borrowerId": str(borrower.id),
                    "contactPointId": str(cp.id) if cp else None,
                    "filedBy": {
                        "userId": str(principal.user_id) if principal.user_id else None,
                        "name": principal.name,
                        "tokenId": str(principal.token_id),
                    },
                },
            )
        )
    await session.flush()  # the guard (migration 0012) checks each row here

    moved_unread = _moved_unread(source, unfiled, chosen)
    latest = max(chosen, key=lambda m: (m.created_at, m.id))
    merged = await conversations.merge_into_case(
        conn,
        _item(latest),
        unread=moved_unread,
        status_if_new="open" if moved_unread else source.status,
        now=now,
    )
    chosen_ids = {m.id for m in chosen}
    left = [m for m in unfiled if m.id not in chosen_ids]
    remaining_unread = max(0, source.unread - moved_unread) if left else 0
    await conversations.shrink_sender(
        conn,
        source.id,
        _item(max(left, key=lambda m: (m.created_at, m.id))) if left else None,
        unread=remaining_unread,
        now=now,
    )
    filed_ids = [m.id for m in chosen]
    session.add(
        ConversationFiling(
            id=filing_id,
            organization_id=org_id,
            conversation_id=source.id,
            into_conversation_id=uuid.UUID(merged.conversation_id),
            case_id=case.id,
            borrower_id=borrower.id,
            sender_address=source.sender,
            message_ids=filed_ids,
            contact_point_id=cp.id if cp else None,
            contact_point_added=added,
            filed_by_user_id=principal.user_id,
            filed_by_name=principal.name,
            filed_at=now,
        )
    )
    await session.flush()
    await _announce(
        conn, principal, source, merged, case, borrower, filed_ids, remaining_unread, not left, now
    )
    try:
        await session.commit()
    except IntegrityError:  # nothing above should collide; say so rather than a 500
        await session.rollback()
        raise Conflict("the filing conflicts with a concurrent change; try again") from None
    return Filing(
        filing_id=filing_id,
        from_conversation_id=source.id,
        from_conversation_removed=not left,
        conversation_id=uuid.UUID(merged.conversation_id),
        case_id=case.id,
        borrower_id=borrower.id,
        message_ids=filed_ids,
        contact_point=cp,
        contact_point_added=added,
        filed_at=now,
        filed_by=principal.name,
        consent=applied,
    )


async def _lock_source(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID
) -> _Source:
    conn = await raw_connection(session)
    extra, params = visibility(principal)
    cur = await conn.execute(
        "SELECT id, case_id, borrower_id, sender_address, assigned_agent_id, unread_count, "  # noqa: S608
        "last_read_at, status FROM conversations "
        f"WHERE id = %(id)s AND organization_id = %(org)s{extra} FOR UPDATE",
        {"id": conversation_id, "org": principal.organization_id, **params},
    )
    row = await cur.fetchone()
    if row is None:
        earlier = await session.scalar(
            select(ConversationFiling)
            .where(
                ConversationFiling.organization_id == principal.organization_id,
                ConversationFiling.conversation_id == conversation_id,
            )
            .order_by(ConversationFiling.filed_at.desc())
            .limit(1)
        )
        if earlier is not None:
            raise Conflict(
                f"conversation {conversation_id} was filed on case {earlier.case_id} by "
                f"{earlier.filed_by_name} at {earlier.filed_at.isoformat()}; its messages are "
                f"in conversation {earlier.into_conversation_id}",
                [FieldError("conversationId", "is already filed", "already_filed")],
            )
        raise NotFound(f"conversation {conversation_id} not found")
    source = _Source(*row)
    if source.case_id is not None:
        raise Conflict(
            f"conversation {conversation_id} is case {source.case_id}'s: its messages are "
            "filed already",
            [FieldError("conversationId", "is a case's conversation", "already_filed")],
        )
    return source


async def _choose(
    session: AsyncSession,
    org_id: uuid.UUID,
    unfiled: list[Message],
    wanted: list[uuid.UUID] | None,
) -> list[Message]:
    """The messages to file, oldest first: all of `unfiled`, or those of `wanted`."""
    if wanted is None:
        if not unfiled:
            raise Conflict(
                "nothing in this conversation is unfiled",
                [FieldError("conversationId", "has no unfiled messages", "already_filed")],
            )
        if len(unfiled) > MAX_MESSAGES:
            raise Invalid.field(
                "messageIds",
                f"this sender has {len(unfiled)} unfiled messages; file at most "
                f"{MAX_MESSAGES} at a time by listing them (GET /api/inbox/{{id}}/messages)",
                "too_many",
            )
        return unfiled
    by_id = {m.id: m for m in unfiled}
    missing = [(i, mid) for i, mid in enumerate(wanted) if mid not in by_id]
    if missing:
        filed = dict(
            (
                await session.execute(
                    select(Message.id, Message.case_id).where(
                        Message.organization_id == org_id,
                        Message.id.in_([mid for _, mid in missing]),
                        Message.case_id.is_not(None),
                    )
                )
            ).all()
        )
        unknown = [
            FieldError(
                f"messageIds.{i}",
                "is not an unfiled message of this conversation",
                "unknown_message",
            )
            for i, mid in missing
            if mid not in filed
        ]
        if unknown:
            raise Invalid("; ".join(f"{e.field}: {e.message}" for e in unknown), unknown)
        raise Conflict(
            "already filed: "
            + ", ".join(f"message {mid} is on case {filed[mid]}" for _, mid in missing),
            [
                FieldError(f"messageIds.{i}", "is already filed", "already_filed")
                for i, _ in missing
            ],
        )
    return sorted((by_id[mid] for mid in set(wanted)), key=lambda m: (m.created_at, m.id))


async def _target(
    session: AsyncSession, org_id: uuid.UUID, req: FileRequest
) -> tuple[Case, Borrower]:
    # Another organization's ids answer exactly like ids that do not exist (422, as for
    # every reference in a request body: services/cases.py).
    case = await session.scalar(
        select(Case).where(Case.id == req.case_id, Case.organization_id == org_id)
    )
    borrower = await session.scalar(
        select(Borrower).where(Borrower.id == req.borrower_id, Borrower.organization_id == org_id)
    )
    errors: list[FieldError] = []
    if case is None:
        errors.append(FieldError("caseId", "unknown case", "unknown_case"))
    if borrower is None:
        errors.append(FieldError("borrowerId", "unknown borrower", "unknown_borrower"))
    if case is not None and borrower is not None:
        on_case = await session.scalar(
            select(CaseBorrower.role).where(
                CaseBorrower.case_id == case.id, CaseBorrower.borrower_id == borrower.id
            )
        )
        if on_case is None:
            errors.append(FieldError("borrowerId", "is not a borrower on this case", "not_on_case"))
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    assert case is not None and borrower is not None
    return case, borrower


async def _contact_point(
    session: AsyncSession,
    org_id: uuid.UUID,
    borrower: Borrower,
    kind: ContactKind,
    sender: str,
    chosen: list[Message],
    req: FileRequest,
) -> tuple[ContactPoint | None, bool]:
    """The borrower's contact point for the sender's address, added if asked for;
    (contact point or None, whether it was added now)."""
    known = next((m.contact_point_id for m in chosen if m.contact_point_id), None)
    if known is not None:  # a known borrower with no case: matched at receipt
        return await session.get(ContactPoint, known), False
    value = sender
    clean: contacts.ContactPointInput | None = None
    if req.add_contact_point:
        try:
            clean = contacts.validate_input(
                contacts.ContactPointInput(kind.value, sender, source="borrower_provided"),
                contacts.address_region(borrower),
            )
        except Invalid as exc:
            reason = exc.errors[0] if exc.errors else FieldError("value", exc.detail)
            raise Invalid.field(
                "addContactPoint",
                f"the sender's address {sender!r} cannot be a contact point: {reason.message}",
                reason.code,
            ) from None
        value = clean.value
        # Two filings adding one address to two borrowers at once: one waits here.
        await session.execute(select(_address_lock(org_id, kind.value, value)))
    cp = await session.scalar(
        select(ContactPoint).where(
            ContactPoint.borrower_id == borrower.id,
            ContactPoint.kind == kind.value,
            ContactPoint.value == value,
        )
    )
    if cp is not None or not req.add_contact_point:
        return cp, False
    other = await session.scalar(
        select(ContactPoint.borrower_id)
        .where(
            ContactPoint.organization_id == org_id,
            ContactPoint.kind == kind.value,
            ContactPoint.value == value,
            ContactPoint.borrower_id != borrower.id,
        )
        .limit(1)
    )
    if other is not None:
        raise Conflict(
            f"{value} is a contact point of borrower {other}: file the messages on that "
            "borrower, or file them here without addContactPoint",
            [
                FieldError(
                    "addContactPoint",
                    f"{value} belongs to another borrower ({other})",
                    "contact_point_taken",
                )
            ],
        )
    locked = await session.scalar(
        select(Borrower).where(Borrower.id == borrower.id).with_for_update()
    )
    assert locked is not None and clean is not None
    [row] = await contacts.insert_contact_points(session, locked, [clean])
    return row, True


def _address_lock(org_id: uuid.UUID, kind: str, value: str) -> Any:
    key = consent.lock_key(f"address:{org_id}:{kind}:{value}")
    return func.pg_advisory_xact_lock(key)


def _reply_text(m: Message) -> str:
    if m.channel == Channel.EMAIL.value:
        return strip_email_quote(m.body or "")
    return m.body or ""


async def _apply_consent(
    conn: Any,
    principal: Principal,
    borrower: Borrower,
    cp: ContactPoint | None,
    kind: ContactKind,
    chosen: list[Message],
    now: datetime,
) -> list[ConsentApplied]:
    """Record the opt-outs and opt-ins of messages whose sender was nobody at receipt,
    oldest first (the borrower's consent lock is held)."""
    applied: list[ConsentApplied] = []
    for m in chosen:
        if m.borrower_id is not None or "auto_reply" in (m.flags or []):
            continue
        channel = Channel(m.channel)
        intent = optout.classify_reply(_reply_text(m), channel=channel)
        if intent.action not in (optout.ReplyAction.OPT_OUT, optout.ReplyAction.OPT_IN):
            continue
        scope = set(intent.scope) or {channel}
        own = {c for c in scope if kind.serves(c)}
        if intent.action is optout.ReplyAction.OPT_OUT and own and cp is None:
            raise Invalid.field(
                "addContactPoint",
                f"message {m.id} from {m.from_address} revokes consent ({intent.matched!r}); "
                "file it with addContactPoint true so the revocation is recorded on the "
                "borrower's contact point for that address",
                "contact_point_required",
            )
        change = consent.ConsentChange(
            organization_id=str(m.organization_id),
            borrower_id=str(borrower.id),
            contact_point_id=str(cp.id) if cp else None,
            address=cp.value if cp else None,
            channel=channel,
            action="revoke",
            source="reply_keyword" if intent.keyword else "reply_text",
            effective_at=now,
            source_message_id=str(m.id),
            reason=(
                f"borrower replied {intent.matched!r} from an address not on file at the "
                f"time; filed by {principal.name}"
            )[:1000],
            evidence={
                **intent.as_record(),
                "repliedAt": m.created_at.isoformat(),
                "filedBy": principal.name,
            },
            recorded_by_name=principal.name,
        )
        for c in sorted(scope, key=lambda c: c.value):
            mine = c in own
            if mine and cp is None:
                continue  # an opt-in from an address not on file restores nothing
            point = cp.id if mine and cp else None
            state = await consent.latest_action(conn, borrower.id, point, c, now)
            if intent.action is optout.ReplyAction.OPT_OUT:
                if state == "revoke":
                    continue
                await consent.revoke(
                    conn,
                    dataclasses.replace(
                        change,
                        contact_point_id=str(point) if point else None,
                        address=cp.value if point and cp else None,
                    ),
                    [c],
                )
                applied.append(ConsentApplied(m.id, c.value, "revoke", point, intent.matched))
            else:
                if state != "revoke":
                    continue
                await consent.record(
                    conn,
                    dataclasses.replace(
                        change,
                        channel=c,
                        action="grant",
                        contact_point_id=str(point) if point else None,
                        address=cp.value if point and cp else None,
                    ),
                )
                applied.append(ConsentApplied(m.id, c.value, "grant", point, intent.matched))
    return applied


def _moved_unread(source: _Source, unfiled: list[Message], chosen: list[Message]) -> int:
    """How much of the team-queue conversation's unread count the chosen messages take
    along: all of it when every message goes, else those received after it was last read
    (the count is the conversation's, not per message)."""
    if len(chosen) == len(unfiled):
        return source.unread
    unread = sum(
        1 for m in chosen if source.last_read_at is None or m.created_at > source.last_read_at
    )
    return min(unread, source.unread)


def _item(m: Message) -> conversations.Item:
    return conversations.Item(
        organization_id=m.organization_id,
        kind="message",
        item_id=m.id,
        channel=m.channel,
        direction=m.direction,
        at=m.created_at,
        preview=conversations.preview_of(m.subject, m.body),
        case_id=m.case_id,
        borrower_id=m.borrower_id,
        sender_address=m.from_address,
    )


def _str(value: object) -> str | None:
    return None if value is None else str(value)


async def _announce(
    conn: Any,
    principal: Principal,
    source: _Source,
    merged: conversations.Merged,
    case: Case,
    borrower: Borrower,
    filed_ids: list[uuid.UUID],
    remaining_unread: int,
    removed: bool,
    now: datetime,
) -> None:
    """Both conversations: the team queue's shrank or went (its watchers learn where
    to), the case's received the messages, and its agent has them now."""
    org = str(principal.organization_id)
    ids = [str(i) for i in filed_ids]
    await activity.emit(
        conn,
        org,
        "conversation.updated",
        {
            "conversationId": str(source.id),
            "caseId": None,
            "borrowerId": _str(source.borrower_id),
            # Whoever watched it (the team queue, or the agent it was given to) hears.
            "assignedAgentId": _str(source.agent_id),
            "senderAddress": source.sender,
            "removed": removed,
            "unreadCount": remaining_unread,
            "filedIntoConversationId": merged.conversation_id,
            "filedCaseId": str(case.id),
            "filedBorrowerId": str(borrower.id),
            "filedMessageIds": ids,
            "filedBy": principal.name,
            "at": now.isoformat(),
        },
    )
    await activity.emit(
        conn,
        org,
        "conversation.updated",
        {
            "conversationId": merged.conversation_id,
            "caseId": str(case.id),
            "borrowerId": str(borrower.id),
            "assignedAgentId": merged.assigned_agent_id,
            "channel": merged.last_item["channel"],
            "lastItem": merged.last_item,
            "unreadCount": merged.unread_count,
            "status": merged.status,
            "lastActivityAt": merged.last_activity_at.isoformat(),
            "filedFromConversationId": str(source.id),
            "filedMessageIds": ids,
            "filedBy": principal.name,
        },
    )
    if merged.assigned_agent_id != _str(source.agent_id):
        await activity.emit(
            conn,
            org,
            "conversation.assigned",
            {
                "conversationId": merged.conversation_id,
                "caseId": str(case.id),
                "borrowerId": str(borrower.id),
                "assignedAgentId": merged.assigned_agent_id,
                "previousAgentId": _str(source.agent_id),
                "filedFromConversationId": str(source.id),
                "at": now.isoformat(),
            },
        )
