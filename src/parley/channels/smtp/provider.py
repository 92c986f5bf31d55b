"""The SMTP submission provider: renders each message to MIME bytes and submits it
over a pool of reused SMTP sessions; receives replies and bounces (DSNs) from the
account's IMAP mailbox (`run`) or from an inbound-parse webhook.

SMTP has no status callbacks. The only webhook this provider accepts is inbound parse:
a raw RFC 5322 message POSTed to /webhooks/smtp/{account} (``Content-Type:
message/rfc822``, or a multipart form with an ``email`` field as SendGrid's inbound
parse sends it), authenticated with the account's ``inbound_secret`` either as
``X-Parley-Signature: sha256=<hex HMAC-SHA256 of the body>`` or as the password of HTTP
Basic auth (any user name). Without an ``inbound_secret`` every webhook is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from email import message_from_bytes, policy
from email.message import Message
from typing import ClassVar

from parley.channels.base import (
    Capabilities,
    DeliveryEvent,
    EventSink,
    InboundMessage,
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.smtp.config import SmtpSettings, parse_settings
from parley.channels.smtp.imap import ImapListener, MemoryCursor, UidCursor
from parley.channels.smtp.inbound import UnparseableEmail, parse_email
from parley.channels.smtp.mime import InvalidMessageError, render
from parley.channels.smtp.pool import SmtpPool
from parley.domain.channels import Channel

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-parley-signature"
# Bodies taken as the raw message itself (a stored IMAP receipt has no content type).
_RAW_TYPES = frozenset({"", "message/rfc822", "application/octet-stream", "text/plain"})


class SmtpProvider:
    """Email over SMTP submission (RFC 6409) to the account's relay."""

    name: ClassVar[str] = "smtp"
    channel: Channel = Channel.EMAIL
    capabilities: Capabilities = Capabilities(supports_html=True)

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._pool = SmtpPool(settings)
        # Where the IMAP listener remembers its position; the listener supervisor gives
        # it a database-backed one (parley.inbox.imap_cursor) before calling `run`.
        self.cursor: UidCursor = MemoryCursor()

    # A mailbox is read by one process at a time (the listener supervisor takes an
    # advisory lock per account); an account without IMAP settings only sends.
    listen_exclusively: ClassVar[bool] = True

    @property
    def listening(self) -> bool:
        return self.settings.imap is not None

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            email = render(
                message,
                from_address=self.settings.from_address,
                from_name=self.settings.from_name,
                message_id_domain=self.settings.message_id_domain,
            )
        except InvalidMessageError as exc:
            # Sending again would build the same invalid message: permanent.
            return SendResult(accepted=False, error_code="invalid_message", error_detail=str(exc))
        return await self._pool.send(email)

    def verify_webhook(self, request: WebhookRequest) -> None:
        secret = self.settings.inbound_secret
        if not secret:
            raise WebhookVerificationError("inbound parse is not enabled (no inbound_secret)")
        key = secret.encode()
        signature = request.header(SIGNATURE_HEADER)
        if signature:
            expected = "sha256=" + hmac.new(key, request.body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(signature.strip().encode(), expected.encode()):
                return
            raise WebhookVerificationError("inbound parse signature mismatch")
        authorization = request.header("authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise WebhookVerificationError("malformed basic credentials") from None
            password = decoded.partition(b":")[2]
            if hmac.compare_digest(password, key):
                return
            raise WebhookVerificationError("inbound parse credentials mismatch")
        raise WebhookVerificationError("inbound parse request carries no signature or credentials")

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        """An inbound-parse POST, or a stored receipt (IMAP or webhook) being replayed."""
        raw = inbound_email_bytes(request)
        if raw is None:
            return []
        try:
            return parse_email(raw)
        except UnparseableEmail as exc:
            log.info("smtp inbound payload is not an email: %s", exc)
            return []

    async def run(self, sink: EventSink) -> None:
        """Listen to the account's IMAP folder until cancelled (nothing to do without
        imap_host: the account only sends)."""
        if self.settings.imap is None:
            log.info("smtp account %s has no imap_host: not listening", self.settings.host)
            return
        await ImapListener(self.settings.imap, self.cursor).run(sink)

    async def aclose(self) -> None:
        await self._pool.aclose()

    def __repr__(self) -> str:  # never shows the password
        s = self.settings
        return f"<SmtpProvider {s.host}:{s.port} from={s.from_address} pool={s.pool_size}>"


def inbound_email_bytes(request: WebhookRequest) -> bytes | None:
    """The RFC 5322 message in an inbound-parse request (raw body or form field `email`)."""
    content_type = (request.header("content-type") or "").strip()
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in _RAW_TYPES:
        return request.body
    if kind != "multipart/form-data":
        return None
    form = message_from_bytes(
        b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n" + request.body,
        policy=policy.compat32,
    )
    if not form.is_multipart():
        return None
    for part in form.get_payload():
        if not isinstance(part, Message):
            continue
        if part.get_param("name", header="content-disposition") == "email":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


def create(context: ProviderContext) -> SmtpProvider:
    if context.channel != Channel.EMAIL:
        raise ProviderConfigError(f"channel: smtp serves email, not {context.channel}")
    return SmtpProvider(parse_settings(context))
