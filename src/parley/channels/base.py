"""The provider interface every channel adapter implements (DESIGN.md section 5).

A provider is constructed from a provider account's stored configuration and secrets.
`send` is called by the dispatcher after the message was marked `sending` in a committed
transaction; `verify_webhook`/`parse_webhook` turn a provider's callback into normalized
events. Providers never touch the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from parley.domain.channels import Channel
from parley.domain.status import EventType


class WebhookVerificationError(Exception):
    """The webhook request is not authentically from the provider (answer 401/403)."""


class ProviderConfigError(ValueError):
    """A provider account's configuration is incomplete or invalid (answer 422)."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_body_chars: int | None = None  # None: no practical limit
    max_segments: int | None = None  # SMS: the most segments the provider will take
    supports_html: bool = False
    supports_media: bool = False
    templates_only: bool = False  # e.g. WhatsApp outside the customer-service window
    can_query_status: bool = False  # reconciliation can ask the provider about a message


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with an outbound message (email: a MIME part)."""

    filename: str
    content_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """Everything a provider needs to send one message; rendered before it gets here."""

    message_id: str  # Parley's id (UUID string)
    channel: Channel
    to: str  # E.164 phone or email address
    sender: str | None  # From address / number / sender id; None: account default
    body: str  # plain text body (SMS, WhatsApp text, email text part)
    subject: str | None = None
    html: str | None = None
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # extra headers (email)
    status_callback_url: str | None = None
    rfc822_message_id: str | None = None  # email: the Message-ID we assign
    # WhatsApp: the structured part (template, media, quick replies) stored with the
    # message; None for plain text (see parley.channels.whatsapp.payloads).
    whatsapp: Mapping[str, Any] | None = None
    attachments: Sequence[Attachment] = ()


@dataclass(frozen=True, slots=True)
class SendResult:
    accepted: bool
    provider_message_id: str | None = None
    retryable: bool = False
    error_code: str | None = None
    error_detail: str | None = None
    retry_after: float | None = None  # seconds the provider asked us to wait (429)
    # The request may have reached the provider but we never learned the answer (the
    # connection dropped after the body was sent). Retrying could send twice, so the
    # dispatcher reconciles or marks the message for review instead.
    outcome_unknown: bool = False
    segments: int | None = None
    cost: str | None = None  # decimal string, provider currency
    # A message sent as several parts that each get their own provider id and delivery
    # receipt (SMPP concatenation): every part's id in part order, the first being
    # `provider_message_id`. Empty when the provider tracks the message as one.
    part_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A provider callback as received: the raw bytes plus what signature checks need."""

    method: str
    url: str  # the full public URL the provider called (signatures cover it)
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True, slots=True)
class DeliveryEvent:
    event_type: EventType
    provider_message_id: str
    provider_event_id: str  # stable id used to deduplicate repeated callbacks
    occurred_at: datetime  # the provider's own timestamp, tz-aware
    provider_status: str  # the raw status/code as the provider sent it
    reason: str | None = None
    error_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundMedia:
    """A file that came with an inbound message (WhatsApp media, MMS, email attachment).

    Either `content` holds the bytes (email attachments, parsed from the MIME body) or
    `provider_media_id`/`url` say where the provider keeps them (fetched by the inbox).
    """

    content_type: str
    filename: str | None = None
    size: int | None = None
    content: bytes | None = None
    provider_media_id: str | None = None
    url: str | None = None
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    channel: Channel
    sender: str
    recipient: str
    body: str
    provider_message_id: str
    occurred_at: datetime
    subject: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    # What kind of inbound item this is: text, media, button (template button reply),
    # quick_reply (interactive reply), email, voicemail, ...
    kind: str = "text"
    media: Sequence[InboundMedia] = ()
    # A button or quick reply's payload id, as our outbound message defined it.
    reply_payload: str | None = None
    # Email threading (RFC 5322): the Message-IDs this message answers.
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    cc: Sequence[str] = ()
    # WhatsApp: the provider message id the borrower replied to (context.id).
    context_message_id: str | None = None


# Where a long-lived provider connection (SMPP bind, IMAP mailbox) hands what it received:
# the listener supervisor stores each batch as a receipt and processes it like a webhook.
EventSink = Callable[[Sequence["DeliveryEvent | InboundMessage"], bytes], Awaitable[None]]


@runtime_checkable
class ListeningProvider(Protocol):
    """A provider that also receives over a connection it keeps open (DESIGN.md section 5).

    `run` keeps the connection up (reconnecting with backoff) until cancelled and calls
    `sink(items, raw)` for everything received, `raw` being the bytes as received (a PDU,
    an RFC 5322 message) so that the receipt can be stored and replayed.

    Optional class attributes the listener supervisor and `receipts.ingest_received` read
    (not protocol members, so providers without them still match):
    `listen_exclusively: bool` (default False; True: one process at a time, under a
    PostgreSQL advisory lock per account), `received_content_type: str` (stored with
    the receipt), `receipt_key(raw) -> bytes` (what deduplicates a stored receipt).
    """

    async def run(self, sink: EventSink) -> None: ...


@runtime_checkable
class ChannelProvider(Protocol):
    name: ClassVar[str]
    channel: Channel  # a class constant for single-channel providers; per instance for sandbox
    capabilities: Capabilities

    async def send(self, message: OutboundMessage) -> SendResult: ...

    def verify_webhook(self, request: WebhookRequest) -> None: ...

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class VoiceResponse:
    """What a voice provider answered a call request: ok with the resource, or its error
    (Twilio's error codes: ``21220`` the leg is no longer in progress, ...)."""

    ok: bool
    status: int  # HTTP status; 0 when no response arrived
    resource: dict[str, Any]
    error_code: str | None = None
    detail: str | None = None

    @property
    def sid(self) -> str | None:
        sid = self.resource.get("sid")
        return sid if isinstance(sid, str) else None


@dataclass(frozen=True, slots=True)
class VoiceCallback:
    """A verified callback about a call: Twilio's parameters (``CallSid``, ``CallStatus``,
    ``ConferenceSid``, ``RecordingSid``, ...), what deduplicates it, and when it happened."""

    params: dict[str, str]
    dedupe_key: str
    occurred_at: datetime


@runtime_checkable
class VoiceProvider(Protocol):
    """A voice account that places live calls (click-to-call, ``services.voice_calls``).

    Calls are driven with TwiML documents (``parley.voice.twiml``): every party meets in
    a conference. The provider's callbacks reach
    ``/webhooks/{provider}/{account}/voice/...`` (``callback_url``), are verified with
    ``verify_webhook`` and read with ``voice_callback``. Twilio implements it over its
    Voice API; the sandbox over a simulated network (``parley.voice.network``).
    """

    @property
    def caller_id(self) -> str:
        """The number every call is placed from (the ``From`` of each leg it creates):
        what the borrower sees, recorded as an outbound call's ``from``."""
        ...

    def callback_url(self, path: str) -> str: ...

    async def create_call(
        self, *, to: str, twiml: str, status_callback: str | None
    ) -> VoiceResponse: ...

    async def update_call(
        self, call_sid: str, *, twiml: str | None = None, status: str | None = None
    ) -> VoiceResponse: ...

    async def update_participant(
        self, conference_sid: str, call_sid: str, *, muted: bool
    ) -> VoiceResponse: ...

    def verify_webhook(self, request: WebhookRequest) -> None: ...

    def voice_callback(self, request: WebhookRequest) -> VoiceCallback: ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """How a provider is registered: its factory and the shape of its account settings.

    `config_fields` are non-secret settings returned by the API; `secret_fields` are
    accepted on create/update, stored, and never returned or logged.
    """

    name: str
    channels: frozenset[Channel]
    factory: Any  # Callable[[ProviderContext], ChannelProvider]
    config_fields: Mapping[str, str]  # field name -> human description
    secret_fields: Mapping[str, str]
    required: frozenset[str] = frozenset()
    # Its voice accounts place live calls (their instances are `VoiceProvider`s).
    live_calls: bool = False


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider instance is built from."""

    account_id: str
    channel: Channel
    config: Mapping[str, Any]
    secrets: Mapping[str, str]
    public_base_url: str  # where provider callbacks reach us, e.g. http://127.0.0.1:8000
