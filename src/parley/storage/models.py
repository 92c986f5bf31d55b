"""SQLAlchemy table models. Every row belongs to an organization (DESIGN.md invariant 5).

Messages, message events, webhook receipts and compliance decisions are append-only
(invariant 6): database triggers installed by the first migration refuse DELETE and any
UPDATE of a message's content columns; only its delivery-state columns move.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


def _pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _org() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("organizations.id"), index=True)


def _org_unindexed() -> Mapped[uuid.UUID]:
    # For tables always read through an already-scoped parent (events, decisions).
    return mapped_column(ForeignKey("organizations.id"))


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[uuid.UUID] = _pk()
    name: Mapped[str] = mapped_column(String(200))
    default_locale: Mapped[str] = mapped_column(String(20), default="en_US")
    default_timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # admin | supervisor | agent
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = _created()


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    # SHA-256 of the token: tokens are 256-bit random, so a fast hash is enough.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Borrower(Base):
    __tablename__ = "borrowers"
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    external_ref: Mapped[str | None] = mapped_column(String(100))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    preferred_language: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    do_not_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class ContactPoint(Base):
    __tablename__ = "contact_points"
    __table_args__ = (
        UniqueConstraint("borrower_id", "kind", "value"),
        Index("ix_contact_points_org_value", "organization_id", "kind", "value"),
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    borrower_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("borrowers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # email | phone
    value: Mapped[str] = mapped_column(String(320))  # E.164 or normalized address
    label: Mapped[str | None] = mapped_column(String(30))  # mobile, home, work, personal
    # Where the address came from (Reg F 1006.6(d)(4): employer-provided emails).
    source: Mapped[str] = mapped_column(String(30), default="borrower_provided")
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    # Phones: the time zones (and countries) the number points to, computed once when the
    # number is stored (compliance.zones.PhoneSignal) — the gate reads it on every send.
    phone_tz: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("organization_id", "case_number"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    case_number: Mapped[str] = mapped_column(String(64))
    creditor: Mapped[str] = mapped_column(String(200))
    original_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    outstanding_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    currency: Mapped[str] = mapped_column(String(3))
    due_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(30), default="open")
    assigned_agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class CaseBorrower(Base):
    __tablename__ = "case_borrowers"
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    borrower_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("borrowers.id"), primary_key=True, index=True
    )
    organization_id: Mapped[uuid.UUID] = _org()
    role: Mapped[str] = mapped_column(String(20), default="primary")


class MessageTemplate(Base):
    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    key: Mapped[str] = mapped_column(String(100))  # the API's templateId
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class MessageTemplateVersion(Base):
    """One immutable version of a template; editing a template adds a version."""

    __tablename__ = "message_template_versions"
    __table_args__ = (UniqueConstraint("template_id", "version"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("message_templates.id"))
    version: Mapped[int] = mapped_column(Integer)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    # Limited-content voicemail templates: the allowed elements the script is made of.
    elements: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()


class ProviderAccount(Base):
    __tablename__ = "provider_accounts"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    name: Mapped[str] = mapped_column(String(100))
    provider: Mapped[str] = mapped_column(String(50))
    channel: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Never serialized by the API nor logged; see services/provider_accounts.py.
    secrets: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _created()


class RateBucket(Base):
    """Token bucket per provider account, shared by every worker process."""

    __tablename__ = "rate_buckets"
    provider_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("provider_accounts.id"), primary_key=True
    )
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Thread(Base):
    __tablename__ = "threads"
    __table_args__ = (
        Index("ix_threads_case_last", "case_id", "last_message_at"),
        Index(
            "ux_threads_active",
            "organization_id",
            "case_id",
            "borrower_id",
            "channel",
            unique=True,
            postgresql_where=text("status = 'active'"),
        ),
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    borrower_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("borrowers.id"))
    channel: Mapped[str] = mapped_column(String(20))
    subject: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="active")
    participants: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_case_created", "case_id", "created_at"),
        Index("ix_messages_thread_created", "thread_id", "created_at"),
        Index("ix_messages_borrower_created", "borrower_id", "created_at"),
        Index(
            "ux_messages_provider_id",
            "provider_account_id",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
        # Keyed and filtered on the generated `in_flight`, never on `status`, so that a
        # claim (queued -> sending) changes no indexed value and can be a HOT update
        # (migration 0005); new pages are filled to 70% to leave it room.
        Index("ix_messages_in_flight", "created_at", postgresql_where=text("in_flight")),
        # The team queue's unfiled inbound messages, by sender (migration 0007).
        Index(
            "ix_messages_unfiled_sender",
            "organization_id",
            "from_address",
            "created_at",
            postgresql_where=text("case_id IS NULL"),
        ),
        CheckConstraint(
            "case_id IS NOT NULL OR direction = 'inbound'", name="ck_messages_case_or_inbound"
        ),
        {"postgresql_with": {"fillfactor": 70}},
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    # NULL only for an inbound message from a sender matching no case (the inbox's team
    # queue, migration 0007); every outbound message belongs to a case.
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"))
    borrower_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("borrowers.id"))
    contact_point_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contact_points.id"))
    thread_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("threads.id"))
    channel: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    in_flight: Mapped[bool | None] = mapped_column(
        Boolean, Computed("status IN ('queued', 'sending', 'scheduled')", persisted=True)
    )
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    to_address: Mapped[str] = mapped_column(String(320))
    from_address: Mapped[str | None] = mapped_column(String(320))
    cc: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    bcc: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("message_templates.id"))
    template_version: Mapped[int | None] = mapped_column(Integer)
    template_variables: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    provider_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("provider_accounts.id")
    )
    provider: Mapped[str | None] = mapped_column(String(50))
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    rfc822_message_id: Mapped[str | None] = mapped_column(String(300))
    encoding: Mapped[str | None] = mapped_column(String(10))
    segments: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[Decimal | None] = mapped_column(Numeric(12, 5))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The dispatch job that marked the message `sending` (see dispatch/pipeline.py).
    claim_job_id: Mapped[int | None] = mapped_column(BigInteger)
    # Why it is sent (collection, legal_notice, payment_confirmation, opt_out_confirmation,
    # help_reply): some rules allow exceptions by purpose.
    purpose: Mapped[str] = mapped_column(
        String(30), default="collection", server_default="collection"
    )
    # When a worker first claimed it for sending: the contact attempt frequency caps count.
    attempted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Markers for an agent, set when the message is recorded (e.g. an inbound reply that
    # revoked consent in free text: ["opt_out_detected"]).
    flags: Mapped[list[Any]] = mapped_column(JSONB, default=list, server_default=text("'[]'"))
    # WhatsApp: template + parameters, media link or quick replies (channels/whatsapp).
    whatsapp: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_detail: Mapped[str | None] = mapped_column(Text)
    sent_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    sent_by_name: Mapped[str | None] = mapped_column(String(200))
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created_at: Mapped[datetime] = _created()


class MessageEvent(Base):
    """Every status change and provider event, with the provider's time and raw payload."""

    __tablename__ = "message_events"
    __table_args__ = (
        UniqueConstraint("message_id", "provider_event_id"),
        Index("ix_message_events_message", "message_id", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id"))
    event_type: Mapped[str] = mapped_column(String(20))
    status_before: Mapped[str | None] = mapped_column(String(20))
    status_after: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))  # parley | provider
    provider_event_id: Mapped[str | None] = mapped_column(String(200))
    provider_status: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(50))
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = _created()
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The part a provider event is about, for a message sent as separately receipted
    # parts (see MessagePart); NULL otherwise.
    part: Mapped[int | None] = mapped_column(SmallInteger)


class MessagePart(Base):
    """One part of a message sent as several separately receipted parts (a long SMS over
    SMPP: each submit_sm gets its own SMSC message id and its own delivery receipt).

    Written by the dispatcher with the `sent` update, for every part (part 1's id is also
    the message's provider_message_id), or with the `needs_review` update for the parts
    the SMSC accepted before a later one failed (they never move that message); the
    receipts of any part find the message through the unique (provider_account_id,
    provider_message_id). `status` is the part's own
    forward-only status; the message's follows from all of them (domain.status.parts_event,
    inbox/message_parts.py). Messages tracked as one (every other provider, a one-part SMS)
    have no rows here.
    """

    __tablename__ = "message_parts"
    __table_args__ = (
        UniqueConstraint(
            "provider_account_id", "provider_message_id", name="ux_message_parts_provider_id"
        ),
    )
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    part: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 1-based
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    provider_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("provider_accounts.id"))
    provider_message_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), server_default="sent")
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_detail: Mapped[str | None] = mapped_column(Text)
    status_changed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class WebhookReceipt(Base):
    """A provider callback exactly as received (after its signature verified)."""

    __tablename__ = "webhook_receipts"
    __table_args__ = (UniqueConstraint("provider_account_id", "dedupe_key"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org()
    provider_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("provider_accounts.id"))
    provider: Mapped[str] = mapped_column(String(50))
    dedupe_key: Mapped[str] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = _created()


class ComplianceDecision(Base):
    """The gate's verdict for one contact attempt, with every rule and the facts it used."""

    __tablename__ = "compliance_decisions"
    __table_args__ = (
        Index("ix_compliance_decisions_message", "message_id", "id"),
        Index(
            "ix_compliance_decisions_call",
            "call_id",
            "id",
            postgresql_where=text("call_id IS NOT NULL"),
        ),
        CheckConstraint(
            "num_nonnulls(message_id, call_id) = 1", name="ck_compliance_decisions_subject"
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    # Exactly one of: the message or the call attempt this decision is about.
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id"))
    call_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("calls.id"))
    stage: Mapped[str] = mapped_column(String(10))  # enqueue | send
    outcome: Mapped[str] = mapped_column(String(10))  # allow | defer | block
    defer_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rules: Mapped[list[Any]] = mapped_column(JSONB)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    decided_at: Mapped[datetime] = _created()


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))  # running | done
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CompliancePolicy(Base):
    """An organization's compliance configuration (contact hours, caps, content rules).

    Absent: the US federal defaults. Each decision stores the values it applied, so a
    later change of policy never changes what the evidence says.
    """

    __tablename__ = "compliance_policies"
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_by_name: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = _created()


class CommunicationPreferences(Base):
    """One version of a case's communication preferences (append-only; latest wins)."""

    __tablename__ = "communication_preferences"
    __table_args__ = (UniqueConstraint("case_id", "version"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    changed_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    changed_by_name: Mapped[str | None] = mapped_column(String(200))
    changed_at: Mapped[datetime] = _created()


class ConsentEvent(Base):
    """The consent ledger: one row per grant or revocation, never edited.

    Scope: a borrower's contact point (or all of them when ``contact_point_id`` is null)
    on one channel, for a purpose (``all`` or one purpose). The state at any time is the
    latest row by ``effective_at``. ``direct_consent`` records a borrower's direct
    permission to be called (Reg F excludes such calls from the 7-in-7 count for 7 days).
    """

    __tablename__ = "consent_events"
    __table_args__ = (
        Index("ix_consent_events_borrower", "borrower_id", "channel", "effective_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    borrower_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("borrowers.id"))
    contact_point_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contact_points.id"))
    address: Mapped[str | None] = mapped_column(String(320))
    channel: Mapped[str] = mapped_column(String(20))
    purpose: Mapped[str] = mapped_column(String(30), default="all")
    action: Mapped[str] = mapped_column(String(20))  # revoke | grant | direct_consent
    source: Mapped[str] = mapped_column(String(40))
    source_message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by_name: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = _created()


class Call(Base):
    """One call attempt to a borrower, gated like a message; its result is set once."""

    __tablename__ = "calls"
    __table_args__ = (
        Index(
            "ix_calls_attempts",
            "borrower_id",
            "case_id",
            "placed_at",
            postgresql_where=text("placed_at IS NOT NULL"),
        ),
        Index("ix_calls_case_created", "case_id", "created_at"),
        Index(
            "ix_calls_awaiting_log",
            "organization_id",
            "agent_user_id",
            postgresql_where=text("status = 'awaiting_log'"),
        ),
        # A borrower's timeline (migration 0007).
        Index("ix_calls_borrower_created", "borrower_id", "created_at"),
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    borrower_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("borrowers.id"))
    contact_point_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contact_points.id"))
    # Who was called: the borrower's number on an outbound call, our number (the voice
    # account's) on an inbound one, whose caller is `from_address` (migration 0016). An
    # outbound call placed through a voice account is from that account's caller id
    # (migration 0017); one dialed by hand, or blocked, has no `from_address`.
    to_address: Mapped[str] = mapped_column(String(32))
    from_address: Mapped[str | None] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(10), default="outbound")
    status: Mapped[str] = mapped_column(String(20))  # blocked | placed | completed
    result: Mapped[str | None] = mapped_column(String(30))
    prior_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    purpose: Mapped[str] = mapped_column(String(30), default="collection")
    placed_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    placed_by_name: Mapped[str | None] = mapped_column(String(200))
    placed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    result_recorded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    # Voice (click-to-call through a provider; migration 0010).
    provider_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("provider_accounts.id", name="fk_calls_provider_account")
    )
    agent_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", name="fk_calls_agent_user")
    )
    conference_name: Mapped[str | None] = mapped_column(String(64))
    conference_sid: Mapped[str | None] = mapped_column(String(64))
    provider_status: Mapped[str | None] = mapped_column(String(20))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recording_sid: Mapped[str | None] = mapped_column(String(64))
    recording_url: Mapped[str | None] = mapped_column(Text)
    recording_duration: Mapped[int | None] = mapped_column(Integer)
    muted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class InstanceSecret(Base):
    """Secrets this installation generates for itself (e.g. unsubscribe-link signing),
    kept in the database so every API process of a scaled-out deployment shares them."""

    __tablename__ = "instance_secrets"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created()


# --- Outbound webhooks to the customer's systems (parley.webhooks_out) ---


class WebhookEndpoint(Base):
    """A customer URL subscribed to some event types, with the secret we sign with.

    The secret (``whsec_<base64>``) is stored unencrypted, like provider secrets, and is
    shown only in the responses that create or rotate it. A rotation keeps the replaced
    secret in ``previous_secret`` (stored the same way, never shown again) until
    ``previous_secret_expires_at``: until then deliveries carry both signatures.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        # The one query every emit runs: an organization's enabled subscriptions.
        Index(
            "ix_webhook_endpoints_subscribed",
            "organization_id",
            postgresql_where=text("enabled"),
            postgresql_include=["id", "event_types"],
        ),
        CheckConstraint(
            "(previous_secret IS NULL) = (previous_secret_expires_at IS NULL)",
            name="ck_webhook_endpoints_previous_secret",
        ),
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(50)))
    secret: Mapped[str] = mapped_column(String(120))
    previous_secret: Mapped[str | None] = mapped_column(String(120))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(30))  # gone_410 | manual | deleted
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class WebhookDelivery(Base):
    """One event on its way to one endpoint: a chain of attempts under one webhook-id.

    A redelivery is a new row with the same `event_id` (the receiver dedupes on it).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at", "id"),
        # The sweeper's look for deliveries whose job was lost.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20))  # pending|succeeded|failed|abandoned
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_response_status: Mapped[int | None] = mapped_column(Integer)
    last_response_body: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    redelivery_of: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_deliveries.id"))
    created_at: Mapped[datetime] = _created()


class WebhookDeliveryAttempt(Base):
    """The delivery log: one row per HTTP attempt (append-only)."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


@event.listens_for(ContactPoint, "before_insert")
def _phone_signal_on_insert(mapper: Any, connection: Any, target: ContactPoint) -> None:
    if target.kind == "phone" and target.phone_tz is None and target.value:
        from parley.compliance.zones import phone_signal

        target.phone_tz = phone_signal(target.value).as_record()


# -- WhatsApp (channels/whatsapp, services/whatsapp*.py) -----------------------------


class WhatsAppTemplate(Base):
    """A message template of a WhatsApp provider account, as synced from Meta."""

    __tablename__ = "whatsapp_templates"
    __table_args__ = (UniqueConstraint("provider_account_id", "name", "language"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org()
    provider_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("provider_accounts.id"))
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(30))
    # APPROVED, PENDING, REJECTED, PAUSED, DISABLED: only APPROVED ones can be sent.
    status: Mapped[str] = mapped_column(String(20))
    provider_template_id: Mapped[str | None] = mapped_column(String(50))
    components: Mapped[list[Any]] = mapped_column(JSONB)
    body_text: Mapped[str | None] = mapped_column(Text)
    body_parameter_count: Mapped[int] = mapped_column(Integer)
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WhatsAppWindow(Base):
    """When a borrower number last wrote on WhatsApp: the 24-hour window runs from it,
    unless Meta has reported it closed (error 131047) since (migration 0014)."""

    __tablename__ = "whatsapp_windows"
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id"), primary_key=True
    )
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_inbound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_provider_message_id: Mapped[str | None] = mapped_column(String(200))
    closed_by_provider_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------------------------------
# Email two-way and case documents (migration 0009)


class Document(Base):
    """A file on a case: uploaded through the API, or an inbound email's attachment.

    The bytes live in `document_contents` (one row per document), so that listing a
    case's documents never reads them.
    """

    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_case_created", "case_id", "created_at"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    file_name: Mapped[str] = mapped_column(String(255))
    document_type: Mapped[str] = mapped_column(String(30))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20))  # upload | email
    # The inbound email it came with (documents of type correspondence).
    message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("messages.id"))
    uploaded_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    uploaded_by_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()


class DocumentContent(Base):
    __tablename__ = "document_contents"
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MessageAttachment(Base):
    """A document attached to a message: sent with an outbound email, or received."""

    __tablename__ = "message_attachments"
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id"), primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    position: Mapped[int] = mapped_column(Integer, default=0)


# Email threading looks messages up by the Message-ID a reply names (inbox/email_replies).
Index(
    "ix_messages_rfc822_id",
    Message.organization_id,
    Message.rfc822_message_id,
    postgresql_where=text("rfc822_message_id IS NOT NULL"),
)


class ImapCursor(Base):
    """How far an account's IMAP listener has read a folder (per UIDVALIDITY)."""

    __tablename__ = "imap_cursors"
    provider_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("provider_accounts.id"), primary_key=True
    )
    folder: Mapped[str] = mapped_column(String(200), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = _created()


# --- Voice: call legs, provider events, interaction logs, agent presence (0010) -------


class CallLeg(Base):
    """One provider call of a call: the borrower's leg or an agent's leg."""

    __tablename__ = "call_legs"
    __table_args__ = (
        UniqueConstraint("call_id", "call_sid"),
        Index("ix_call_legs_sid", "call_sid"),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calls.id"))
    call_sid: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(10))  # customer | agent
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class CallEvent(Base):
    """A provider callback about a call, as received (append-only, deduplicated)."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "dedupe_key"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calls.id"))
    kind: Mapped[str] = mapped_column(String(20))  # status | conference | recording
    call_sid: Mapped[str | None] = mapped_column(String(64))
    provider_status: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dedupe_key: Mapped[str] = mapped_column(String(128))
    applied: Mapped[bool] = mapped_column(Boolean)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CallLog(Base):
    """The interaction log of a call (append-only; a correction supersedes a log)."""

    __tablename__ = "call_logs"
    __table_args__ = (
        UniqueConstraint("supersedes_id"),
        Index("ix_call_logs_call", "call_id", "id"),
        Index(
            "ux_call_logs_first",
            "call_id",
            unique=True,
            postgresql_where=text("supersedes_id IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    call_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("calls.id"))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("call_logs.id"))
    disposition: Mapped[str] = mapped_column(String(30))
    result: Mapped[str] = mapped_column(String(30))
    notes: Mapped[str | None] = mapped_column(Text)
    follow_up_on: Mapped[date | None] = mapped_column(Date)
    promise_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    promise_currency: Mapped[str | None] = mapped_column(String(3))
    promise_date: Mapped[date | None] = mapped_column(Date)
    logged_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    logged_by_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()


class AgentPresence(Base):
    """An agent's presence and the voice endpoint their calls ring."""

    __tablename__ = "agent_presence"
    __table_args__ = (
        CheckConstraint(
            "status IN ('available', 'busy', 'away', 'offline')", name="ck_agent_presence_status"
        ),
        Index("ix_agent_presence_org", "organization_id", "status"),
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    status: Mapped[str] = mapped_column(String(10))
    endpoint: Mapped[str | None] = mapped_column(String(200))
    busy_call_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("calls.id"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# -- Unified inbox (issue 3 section 5): conversations ------------------------------------


class Conversation(Base):
    """One row per conversation an agent works: see `parley.inbox.conversations`."""

    __tablename__ = "conversations"
    __table_args__ = (
        # A case's conversation with one borrower, across channels.
        Index(
            "ux_conversations_case_borrower",
            "organization_id",
            "case_id",
            "borrower_id",
            unique=True,
            postgresql_where=text("case_id IS NOT NULL"),
        ),
        # An inbound sender filed on no case (the team queue), by address.
        Index(
            "ux_conversations_sender",
            "organization_id",
            "sender_address",
            unique=True,
            postgresql_where=text("case_id IS NULL"),
        ),
        # GET /api/inbox: per agent (NULL = the team queue) and status, newest first.
        Index(
            "ix_conversations_agent_activity",
            "organization_id",
            "assigned_agent_id",
            "status",
            "last_activity_at",
            "id",
        ),
        # The team queue (no agent), by status: its own index, so that the planner never
        # walks everyone's conversations filtering for the unassigned ones.
        Index(
            "ix_conversations_team_activity",
            "organization_id",
            "status",
            "last_activity_at",
            "id",
            postgresql_where=text("assigned_agent_id IS NULL"),
        ),
        # Supervisors' view of everything, by status.
        Index(
            "ix_conversations_org_activity",
            "organization_id",
            "status",
            "last_activity_at",
            "id",
        ),
        # unread=true: only the conversations with something unread.
        Index(
            "ix_conversations_unread",
            "organization_id",
            "assigned_agent_id",
            "last_activity_at",
            "id",
            postgresql_where=text("unread_count > 0"),
        ),
        Index("ix_conversations_borrower", "borrower_id"),
        CheckConstraint(
            "case_id IS NOT NULL OR sender_address IS NOT NULL", name="ck_conversations_key"
        ),
        CheckConstraint("status IN ('open', 'closed')", name="ck_conversations_status"),
    )
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    case_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("cases.id"))
    borrower_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("borrowers.id"))
    # For the team queue's unfiled senders: the normalized address (E.164 or email).
    sender_address: Mapped[str | None] = mapped_column(String(320))
    assigned_agent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(10), default="open", server_default="open")
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The latest item (a message or a call); no foreign key: it is written before the row.
    last_item_kind: Mapped[str] = mapped_column(String(10))  # message | call
    last_item_id: Mapped[uuid.UUID] = mapped_column()
    last_channel: Mapped[str] = mapped_column(String(20))
    last_direction: Mapped[str] = mapped_column(String(10))
    last_preview: Mapped[str | None] = mapped_column(String(200))
    unread_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_read_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class ConversationFiling(Base):
    """A person filed a team-queue sender's messages on a borrower and case (append-only:
    who filed what, when; see `parley.services.filing`). The team-queue conversation it
    names may be gone (merged into the case's conversation): this row still answers for
    it."""

    __tablename__ = "conversation_filings"
    __table_args__ = (Index("ix_conversation_filings_from", "organization_id", "conversation_id"),)
    id: Mapped[uuid.UUID] = _pk()
    organization_id: Mapped[uuid.UUID] = _org_unindexed()
    # The team-queue conversation the messages came from (no foreign key: it is deleted
    # once nothing unfiled is left in it).
    conversation_id: Mapped[uuid.UUID] = mapped_column()
    into_conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id"))
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id"))
    borrower_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("borrowers.id"))
    sender_address: Mapped[str] = mapped_column(String(320))
    message_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))
    contact_point_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contact_points.id"))
    contact_point_added: Mapped[bool] = mapped_column(Boolean, default=False)
    filed_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    filed_by_name: Mapped[str] = mapped_column(String(200))
    filed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
