"""Message shapes (seed: Communication Center API)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from parley.api.schemas.common import CamelModel, RequestModel


class WhatsAppTemplateRef(RequestModel):
    """An approved template of the sending WhatsApp account's library."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=20)
    parameters: list[str] = Field(default_factory=list, max_length=100)


class MediaLink(RequestModel):
    """A WhatsApp image or document sent by link (Meta fetches it)."""

    type: Literal["image", "document"]
    url: str = Field(min_length=8, max_length=2000)
    caption: str | None = Field(default=None, min_length=1, max_length=1024)
    filename: str | None = Field(default=None, min_length=1, max_length=240)


class MessageCreate(RequestModel):
    message_type: Literal["email", "sms", "whatsapp"]
    to: str | list[str] | None = None
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, max_length=2_000_000)
    html_body: str | None = Field(default=None, max_length=2_000_000)
    cc: list[str] = Field(default_factory=list, max_length=50)
    bcc: list[str] = Field(default_factory=list, max_length=50)
    # Email: ids of this case's documents to attach (POST /api/cases/{caseId}/documents).
    attachments: list[uuid.UUID] = Field(default_factory=list, max_length=10)
    priority: Literal["low", "normal", "high"] = "normal"
    template_id: str | None = Field(default=None, max_length=100)
    variables: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = None
    provider_account_id: uuid.UUID | None = None
    borrower_id: uuid.UUID | None = None
    # Why it is sent: some rules allow exceptions (a legal notice despite do-not-contact).
    purpose: Literal["collection", "legal_notice", "payment_confirmation"] = "collection"
    # WhatsApp only: at most one of these (see docs/api.md).
    whatsapp_template: WhatsAppTemplateRef | None = None
    media: MediaLink | None = None
    quick_replies: list[str] | None = Field(default=None, max_length=10)

    @field_validator("to")
    @classmethod
    def one_recipient(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("give exactly one recipient; use cc/bcc for copies")
        return value

    def recipient(self) -> str | None:
        return self.to[0] if isinstance(self.to, list) else self.to


class ComplianceSummary(CamelModel):
    stage: str
    outcome: str
    reasons: list[str]
    defer_until: datetime | None = None


class MessageOut(CamelModel):
    message_id: uuid.UUID
    case_id: uuid.UUID | None  # None: an inbound message from an unknown sender
    borrower_id: uuid.UUID | None
    thread_id: uuid.UUID | None
    message_type: str
    direction: str
    status: str
    priority: str
    from_: str | None = Field(default=None, alias="from")
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    # Blind copies: shown to the sending organization only, never written in a header.
    bcc: list[str] = Field(default_factory=list)
    subject: str | None
    body: str
    html_body: str | None = None
    template_id: str | None = None
    template_version: int | None = None
    provider: str | None = None
    provider_account_id: uuid.UUID | None = None
    provider_message_id: str | None = None
    encoding: str | None = None
    segments: int | None = None
    error_code: str | None = None
    error_detail: str | None = None
    scheduled_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    received_at: datetime | None = None
    sent_by: str | None = None
    has_attachments: bool = False
    attachments: list[uuid.UUID] = Field(default_factory=list)  # document ids
    purpose: str = "collection"
    # Markers for an agent, e.g. "opt_out_detected" on a reply that revoked consent.
    flags: list[str] = Field(default_factory=list)
    # WhatsApp: the template, media link or quick replies sent with the message.
    whatsapp: dict[str, Any] | None = None
    created_at: datetime
    # The latest compliance decision, in short (single-message responses only).
    compliance: ComplianceSummary | None = None


class MessageList(CamelModel):
    messages: list[MessageOut]
    total_count: int
    next_cursor: str | None = None


class DeliveryEventOut(CamelModel):
    event: str
    timestamp: datetime
    status: str
    source: str
    provider_status: str | None = None
    error_code: str | None = None
    reason: str | None = None
    part: int | None = None  # the part a provider event was about (see `parts`)


class DeliveryPartOut(CamelModel):
    """One part of a message sent as separately receipted parts (a long SMS over SMPP)."""

    part: int
    provider_message_id: str
    status: str  # sent | delivered | failed: the part's own, forward-only status
    error_code: str | None = None
    error_detail: str | None = None
    status_changed_at: datetime


class DeliveryReport(CamelModel):
    message_id: uuid.UUID
    status: str
    message_type: str
    to: list[str]
    provider: str | None
    provider_message_id: str | None
    events: list[DeliveryEventOut]
    # Empty unless the message went out as several separately receipted parts: then the
    # message is delivered once every part is, and failed as soon as one part failed.
    parts: list[DeliveryPartOut] = Field(default_factory=list)


class ThreadOut(CamelModel):
    thread_id: uuid.UUID
    subject: str | None
    channel: str
    participants: list[str]
    message_count: int
    last_message_at: datetime | None
    status: str


class ThreadList(CamelModel):
    threads: list[ThreadOut]


class ThreadMessageOut(CamelModel):
    message_id: uuid.UUID
    message_type: str
    direction: str
    status: str
    from_: str | None = Field(default=None, alias="from")
    to: list[str]
    subject: str | None
    body: str
    timestamp: datetime


class ThreadMessages(CamelModel):
    thread_id: uuid.UUID
    messages: list[ThreadMessageOut]


class ComplianceDecisionOut(CamelModel):
    stage: str
    outcome: str
    defer_until: datetime | None
    rules: list[dict[str, Any]]
    facts: dict[str, Any]
    decided_at: datetime


class ComplianceReport(CamelModel):
    message_id: uuid.UUID
    status: str
    decisions: list[ComplianceDecisionOut]


class ReviewResolution(RequestModel):
    """How a person settles a `needs_review` message."""

    resolution: Literal["sent", "not_sent"]
    note: str | None = Field(default=None, max_length=2000)
