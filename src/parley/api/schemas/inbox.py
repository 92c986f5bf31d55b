"""The unified inbox, the borrower timeline (response shapes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from parley.api.schemas.common import CamelModel, RequestModel


class LastItemOut(CamelModel):
    kind: str  # message | call
    message_id: uuid.UUID | None = None
    call_id: uuid.UUID | None = None
    channel: str
    direction: str
    preview: str | None
    at: datetime


class ConversationOut(CamelModel):
    conversation_id: uuid.UUID
    case_id: uuid.UUID | None
    case_number: str | None
    borrower_id: uuid.UUID | None
    borrower_name: str | None
    # The team queue's unfiled senders: the address they wrote from.
    sender_address: str | None = None
    assigned_agent_id: uuid.UUID | None
    queue: str  # agent | team
    channel: str  # of the latest item
    last_message: LastItemOut
    unread_count: int
    last_read_at: datetime | None
    last_activity_at: datetime
    status: str


class ConversationList(CamelModel):
    conversations: list[ConversationOut]
    next_cursor: str | None = None


class TimelineItemOut(CamelModel):
    type: str  # message | message_event | call | consent
    at: datetime
    id: str
    case_id: uuid.UUID | None = None
    channel: str | None = None
    direction: str | None = None
    status: str | None = None
    message_id: uuid.UUID | None = None
    call_id: uuid.UUID | None = None
    # message: subject and body (first 500 characters); call: notes
    subject: str | None = None
    body: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    # message_event: the event and the status it moved from; call: result;
    # consent: action (revoke | grant | direct_consent)
    event: str | None = None
    previous_status: str | None = None
    result: str | None = None
    action: str | None = None
    reason: str | None = None
    flags: list[Any] | None = None


class Timeline(CamelModel):
    borrower_id: uuid.UUID
    items: list[TimelineItemOut]
    next_cursor: str | None = None


class FileConversationIn(RequestModel):
    """POST /api/inbox/{conversationId}/file: whose messages these are."""

    borrower_id: uuid.UUID
    case_id: uuid.UUID
    # Make the sender's address a contact point of the borrower (refused if it is
    # another borrower's).
    add_contact_point: bool = False
    # Only these messages of the conversation (default: every unfiled one).
    message_ids: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=500)


class FiledContactPointOut(CamelModel):
    contact_point_id: uuid.UUID
    type: str
    value: str
    added: bool  # false: it was on file already


class ConsentChangeOut(CamelModel):
    message_id: uuid.UUID
    channel: str
    action: str  # revoke | grant
    contact_point_id: uuid.UUID | None  # None: every contact point of the borrower
    matched: str


class FilingOut(CamelModel):
    filing_id: uuid.UUID
    # The case's conversation the messages are in now.
    conversation: ConversationOut
    from_conversation_id: uuid.UUID
    # True when nothing unfiled was left: the team-queue conversation is gone.
    from_conversation_removed: bool
    case_id: uuid.UUID
    borrower_id: uuid.UUID
    message_ids: list[uuid.UUID]
    contact_point: FiledContactPointOut | None
    consent_changes: list[ConsentChangeOut]
    filed_at: datetime
    filed_by: str
