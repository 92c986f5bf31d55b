"""Request and response shapes of the compliance gate's API (camelCase)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from parley.api.schemas.common import CamelModel, RequestModel
from parley.api.schemas.voice import CallLogOut, RecordingOut


class RuleVerdictOut(CamelModel):
    rule: str
    outcome: str
    reason: str | None = None
    defer_until: datetime | None = None


class ContactabilityOut(CamelModel):
    case_id: uuid.UUID
    borrower_id: uuid.UUID
    contact_point_id: uuid.UUID
    to: str
    channel: str
    allowed: bool
    outcome: Literal["allow", "defer", "block"]
    next_allowed_at: datetime | None = None
    reasons: list[str]
    rules: list[dict[str, Any]]
    facts: dict[str, Any]
    evaluated_at: datetime


class ContactHoursIn(RequestModel):
    start: str = Field(max_length=8)
    end: str = Field(max_length=8)
    timezone: str | None = Field(default=None, max_length=64)


class InconvenientTimeIn(RequestModel):
    start: str = Field(max_length=8)
    end: str = Field(max_length=8)
    days: list[str] | None = Field(default=None, max_length=7)
    label: str | None = Field(default=None, max_length=100)


class PreferencesIn(RequestModel):
    """Both seed shapes: preferences and the opt-out document; fields merge into the
    stored preferences (absent: unchanged, null: cleared)."""

    preferred_channel: Literal["email", "sms", "whatsapp", "voice"] | None = None
    email_address: str | None = Field(default=None, max_length=320)
    phone_number: str | None = Field(default=None, max_length=40)
    allow_sms: bool | None = None
    allow_email: bool | None = None
    allow_whatsapp: bool | None = None
    allow_calls: bool | None = None
    preferred_language: str | None = Field(default=None, max_length=20)
    do_not_contact: bool | None = None
    reason: str | None = Field(default=None, max_length=1000)
    effective_date: str | None = Field(default=None, max_length=10)
    exceptions: list[Literal["legal_notices", "payment_confirmations"]] | None = Field(
        default=None, max_length=2
    )
    contact_hours: ContactHoursIn | None = None
    inconvenient_times: list[InconvenientTimeIn] | None = Field(default=None, max_length=20)


class PreferencesOut(CamelModel):
    case_id: uuid.UUID
    version: int
    preferences: dict[str, Any]
    changed_by: str | None = None
    changed_at: datetime | None = None


class ConsentIn(RequestModel):
    channel: Literal["email", "sms", "whatsapp", "voice"]
    action: Literal["revoke", "grant", "direct_consent"]
    contact_point_id: uuid.UUID | None = None
    purpose: str = Field(default="all", max_length=30)
    reason: str | None = Field(default=None, max_length=1000)
    effective_at: datetime | None = None
    # A revocation on sms, whatsapp or voice covers all three (TCPA) unless the borrower
    # limited it to the one channel.
    limit_to_channel: bool = False


class ConsentOut(CamelModel):
    consent_id: int
    borrower_id: uuid.UUID
    contact_point_id: uuid.UUID | None
    address: str | None
    channel: str
    purpose: str
    action: str
    source: str
    source_message_id: uuid.UUID | None = None
    reason: str | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    effective_at: datetime
    recorded_by: str | None = None
    recorded_at: datetime


class ConsentList(CamelModel):
    consents: list[ConsentOut]


class PolicyOut(CamelModel):
    settings: dict[str, Any]
    version: int
    effective: dict[str, Any]
    updated_at: datetime | None = None
    updated_by: str | None = None


class CallCreate(RequestModel):
    to: str | None = Field(default=None, max_length=40)
    borrower_id: uuid.UUID | None = None
    purpose: Literal["collection", "legal_notice", "payment_confirmation"] = "collection"


class CallResultIn(RequestModel):
    result: Literal[
        "no_answer",
        "voicemail",
        "left_message",
        "conversation",
        "busy",
        "not_in_service",
        "network_failure",
    ]
    ended_at: datetime | None = None
    notes: str | None = Field(default=None, max_length=5000)


class ComplianceSummary(CamelModel):
    outcome: str
    reasons: list[str]
    next_allowed_at: datetime | None = None


class CallOut(CamelModel):
    call_id: uuid.UUID
    case_id: uuid.UUID
    borrower_id: uuid.UUID
    # Outbound: `to` is the borrower's number (`from` is not recorded). Inbound: the
    # borrower called `to`, our number, from `from`.
    to: str
    from_: str | None = Field(default=None, alias="from")
    status: str
    result: str | None = None
    purpose: str
    prior_consent: bool
    placed_by: str | None = None
    placed_at: datetime | None = None
    ended_at: datetime | None = None
    notes: str | None = None
    created_at: datetime
    compliance: ComplianceSummary | None = None
    # Click-to-call (parley.services.voice_calls).
    direction: str = "outbound"
    agent_id: uuid.UUID | None = None
    awaiting_log: bool = False
    provider_status: str | None = None
    answered_at: datetime | None = None
    muted: bool = False
    recording: RecordingOut | None = None
    log: CallLogOut | None = None


class CallList(CamelModel):
    calls: list[CallOut]


class CallComplianceReport(CamelModel):
    call_id: uuid.UUID
    status: str
    decisions: list[dict[str, Any]]
