"""/api/inbox: the agent's conversations across channels, marking them read, and filing
an unknown sender's messages on a borrower and case."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path

from parley.api import pagination
from parley.api.deps import ContainerDep, PrincipalDep, SessionDep, SupervisorDep
from parley.api.schemas.common import RequestModel
from parley.api.schemas.inbox import (
    ConsentChangeOut,
    ConversationList,
    ConversationOut,
    FileConversationIn,
    FiledContactPointOut,
    FilingOut,
    LastItemOut,
)
from parley.services import filing as filing_svc
from parley.services import inbox as svc

router = APIRouter(tags=["inbox"])

ConversationId = Annotated[uuid.UUID, Path(alias="conversationId")]


def conversation_out(row: dict[str, Any]) -> ConversationOut:
    name = " ".join(p for p in (row["first_name"], row["last_name"]) if p) or None
    is_message = row["last_item_kind"] == "message"
    return ConversationOut(
        conversation_id=row["id"],
        case_id=row["case_id"],
        case_number=row["case_number"],
        borrower_id=row["borrower_id"],
        borrower_name=name,
        sender_address=row["sender_address"],
        assigned_agent_id=row["assigned_agent_id"],
        queue="agent" if row["assigned_agent_id"] else "team",
        channel=row["last_channel"],
        last_message=LastItemOut(
            kind=row["last_item_kind"],
            message_id=row["last_item_id"] if is_message else None,
            call_id=None if is_message else row["last_item_id"],
            channel=row["last_channel"],
            direction=row["last_direction"],
            preview=row["last_preview"],
            at=row["last_activity_at"],
        ),
        unread_count=row["unread_count"],
        last_read_at=row["last_read_at"],
        last_activity_at=row["last_activity_at"],
        status=row["status"],
    )


@router.get("/api/inbox", response_model=ConversationList)
async def list_inbox(
    principal: PrincipalDep,
    container: ContainerDep,
    channel: str | None = None,
    status: str = "open",
    agent: str | None = None,
    queue: str | None = None,
    unread: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> ConversationList:
    """Conversations, latest activity first. Agents: their own and the team queue
    (`agent=me` or `queue=team` narrows it); supervisors and admins: everyone's, or one
    agent's with `agent=<userId>`."""
    query = svc.InboxQuery(
        channel=channel,
        status=status,
        agent=agent,
        queue=queue,
        unread=unread,
        limit=pagination.clamp_limit(limit),
        after=pagination.decode(cursor),
    )
    async with container.db.pool.connection() as conn:
        rows, more = await svc.list_conversations(conn, principal, query)
    next_cursor = pagination.encode(rows[-1]["last_activity_at"], rows[-1]["id"]) if more else None
    return ConversationList(
        conversations=[conversation_out(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/api/inbox/{conversationId}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: ConversationId, principal: PrincipalDep, container: ContainerDep
) -> ConversationOut:
    async with container.db.pool.connection() as conn:
        return conversation_out(await svc.get(conn, principal, conversation_id))


@router.post("/api/inbox/{conversationId}/read", response_model=ConversationOut)
async def mark_read(
    conversation_id: ConversationId, principal: PrincipalDep, container: ContainerDep
) -> ConversationOut:
    """Mark everything in the conversation read (its unread count drops to 0)."""
    async with container.db.pool.connection() as conn:
        row = await svc.mark_read(conn, principal, conversation_id, container.clock())
    return conversation_out(row)


class AssignIn(RequestModel):
    agent_id: uuid.UUID | None


@router.post("/api/inbox/{conversationId}/close", response_model=ConversationOut)
async def close(
    conversation_id: ConversationId, principal: PrincipalDep, container: ContainerDep
) -> ConversationOut:
    """Done for now: out of the default (`status=open`) list until the borrower writes."""
    async with container.db.pool.connection() as conn:
        row = await svc.set_status(conn, principal, conversation_id, "closed", container.clock())
    return conversation_out(row)


@router.post("/api/inbox/{conversationId}/reopen", response_model=ConversationOut)
async def reopen(
    conversation_id: ConversationId, principal: PrincipalDep, container: ContainerDep
) -> ConversationOut:
    async with container.db.pool.connection() as conn:
        row = await svc.set_status(conn, principal, conversation_id, "open", container.clock())
    return conversation_out(row)


@router.post("/api/inbox/{conversationId}/assign", response_model=ConversationOut)
async def assign(
    conversation_id: ConversationId,
    body: AssignIn,
    principal: SupervisorDep,
    container: ContainerDep,
) -> ConversationOut:
    """Supervisors: give an unknown sender's conversation (team queue, no case) to an
    agent (`agentId`), or back to the team (`null`). A case's conversations follow the
    case: assign the case instead (422 says so)."""
    async with container.db.pool.connection() as conn:
        row = await svc.assign_unfiled(
            conn, principal, conversation_id, body.agent_id, container.clock()
        )
    return conversation_out(row)


@router.post("/api/inbox/{conversationId}/file", response_model=FilingOut)
async def file_conversation(
    conversation_id: ConversationId,
    body: FileConversationIn,
    session: SessionDep,
    principal: PrincipalDep,
    container: ContainerDep,
) -> FilingOut:
    """File a team-queue sender's messages (all unfiled ones, or `messageIds`) on a
    borrower and case: they join the case's conversation with that borrower and its
    agent. `addContactPoint` makes the sender's address the borrower's contact point
    (409 if it is another borrower's). An opt-out among the messages is recorded on the
    borrower's consent (422 `contact_point_required` unless the address is on file or
    added). An already filed conversation or message answers 409."""
    filing = await filing_svc.file(
        container,
        session,
        principal,
        conversation_id,
        filing_svc.FileRequest(
            case_id=body.case_id,
            borrower_id=body.borrower_id,
            add_contact_point=body.add_contact_point,
            message_ids=body.message_ids,
        ),
    )
    async with container.db.pool.connection() as conn:
        # The case's conversation may be another agent's now: the filer still sees
        # where the messages went.
        row = await svc.get_in_organization(conn, principal.organization_id, filing.conversation_id)
    cp = filing.contact_point
    return FilingOut(
        filing_id=filing.filing_id,
        conversation=conversation_out(row),
        from_conversation_id=filing.from_conversation_id,
        from_conversation_removed=filing.from_conversation_removed,
        case_id=filing.case_id,
        borrower_id=filing.borrower_id,
        message_ids=filing.message_ids,
        contact_point=None
        if cp is None
        else FiledContactPointOut(
            contact_point_id=cp.id, type=cp.kind, value=cp.value, added=filing.contact_point_added
        ),
        consent_changes=[
            ConsentChangeOut(
                message_id=c.message_id,
                channel=c.channel,
                action=c.action,
                contact_point_id=c.contact_point_id,
                matched=c.matched,
            )
            for c in filing.consent
        ],
        filed_at=filing.filed_at,
        filed_by=filing.filed_by,
    )
