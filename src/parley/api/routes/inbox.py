"""/api/inbox: the agent's conversations across channels, and marking them read."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path

from parley.api import pagination
from parley.api.deps import ContainerDep, PrincipalDep, SupervisorDep
from parley.api.schemas.common import RequestModel
from parley.api.schemas.inbox import ConversationList, ConversationOut, LastItemOut
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
