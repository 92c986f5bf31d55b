"""The unified inbox, the borrower timeline (response shapes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import Field

from parley.api.schemas.common import CamelModel


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
