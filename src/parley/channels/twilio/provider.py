"""The Twilio provider: SMS through the Messages REST API, status callbacks and inbound
SMS through signed webhooks.

One `aiohttp.ClientSession` per provider instance (so per account) keeps connections
alive across sends; a semaphore of `max_concurrency` keeps requests from queueing inside
aiohttp's connector, where waiting would count against the connect timeout.

Send outcomes: 201 accepted; 429 and 5xx retryable (429 with the server's Retry-After);
401 retryable (the account's credentials, not the message, are wrong); other 4xx
permanent with Twilio's error code. Network failures are classified by whether
the request had been written: before that nothing can have been sent (retryable); after
it Twilio may have created the message, so the outcome is unknown and a blind retry
could text the borrower twice.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, quote_plus, urlencode, urlsplit

import aiohttp
import orjson

from parley.channels.base import (
    Capabilities,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.http_client import ProviderHttp
from parley.channels.twilio import signature, statuses
from parley.channels.twilio.config import TwilioSettings, parse_settings
from parley.domain.channels import Channel

log = logging.getLogger(__name__)

_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class TwilioProvider:
    """SMS through Twilio's Messages API."""

    name: ClassVar[str] = "twilio"
    channel: Channel = Channel.SMS
    capabilities: Capabilities = Capabilities(max_body_chars=1600, max_segments=10)

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        credentials = f"{settings.account_sid}:{settings.auth_token}".encode()
        self._authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
        self._http = ProviderHttp(
            max_concurrency=settings.max_concurrency,
            timeout=settings.timeout,
            headers={"Authorization": self._authorization, "Accept": "application/json"},
        )
        self._slots = self._http.slots

    def _client(self) -> aiohttp.ClientSession:
        return self._http.client()

    # -- sending -------------------------------------------------------------------

    def form(self, message: OutboundMessage) -> list[tuple[str, str]]:
        """The Messages.json form fields for `message` (what `encoded_form` encodes)."""
        fields = [("To", message.to), ("Body", message.body)]
        sender = message.sender or self.settings.from_number
        if sender:
            fields.append(("From", sender))
        if self.settings.messaging_service_sid:
            fields.append(("MessagingServiceSid", self.settings.messaging_service_sid))
        callback = message.status_callback_url or self.settings.status_callback_url
        if callback:
            fields.append(("StatusCallback", callback))
        return fields

    def encoded_form(self, message: OutboundMessage) -> bytes:
        """The Messages.json form, url-encoded. The fields every message of this account
        shares (sender, service, callback) are encoded once; only To and Body per message."""
        sender = message.sender or self.settings.from_number
        callback = message.status_callback_url or self.settings.status_callback_url
        shared = self._shared_fields(sender, callback)
        # What urlencode() writes for these two pairs, without its per-pair generality.
        to_body = "To=" + form_quote(message.to) + "&Body=" + form_quote(message.body)
        return (to_body + shared).encode("utf-8")

    @functools.lru_cache(maxsize=64)  # noqa: B019 - a few (sender, callback) pairs per account
    def _shared_fields(self, sender: str | None, callback: str | None) -> str:
        fields = []
        if sender:
            fields.append(("From", sender))
        if self.settings.messaging_service_sid:
            fields.append(("MessagingServiceSid", self.settings.messaging_service_sid))
        if callback:
            fields.append(("StatusCallback", callback))
        return "&" + urlencode(fields) if fields else ""

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to:
            return SendResult(accepted=False, error_code="21604", error_detail="'To' is required")
        body = self.encoded_form(message)
        return await self._http.send(
            self.settings.messages_url, body, _FORM, "Twilio", response_result
        )

    # -- webhooks ------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        sig = request.header("X-Twilio-Signature")
        if not sig:
            raise WebhookVerificationError("missing X-Twilio-Signature header")
        token = self.settings.auth_token
        if "bodySHA256" in parse_qs(urlsplit(request.url).query):
            valid = signature.is_valid_json(token, request.url, request.body, sig)
        elif request.method.upper() == "POST":
            try:
                params = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise WebhookVerificationError("malformed form body") from None
            valid = signature.is_valid(token, request.url, params, sig)
        else:  # GET callbacks: everything is in the (signed) URL
            valid = signature.is_valid(token, request.url, (), sig)
        if not valid:
            raise WebhookVerificationError("X-Twilio-Signature does not match")

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        params = webhook_params(request)
        sid = params.get("MessageSid") or params.get("SmsSid") or params.get("SmsMessageSid")
        status = (params.get("MessageStatus") or params.get("SmsStatus") or "").strip().lower()
        if not sid:
            log.warning("twilio webhook without MessageSid ignored (status %r)", status)
            return []
        occurred_at = callback_time(params)
        if status in statuses.INBOUND_STATUSES:
            # `receiving` precedes `received` for the same inbound message; only the
            # final one carries the complete message, so `receiving` yields nothing.
            if status != "received":
                return []
            sender, channel = _strip_channel(params.get("From", ""))
            recipient, _ = _strip_channel(params.get("To", ""))
            return [
                InboundMessage(
                    channel=channel,
                    sender=sender,
                    recipient=recipient,
                    body=params.get("Body", ""),
                    provider_message_id=sid,
                    occurred_at=occurred_at,
                    raw=dict(params),
                )
            ]
        error_code = params.get("ErrorCode") or None
        event_id = request.header("I-Twilio-Idempotency-Token") or f"{sid}:{status}"
        return [
            DeliveryEvent(
                event_type=statuses.event_type(status),
                provider_message_id=sid,
                provider_event_id=event_id,
                occurred_at=occurred_at,
                provider_status=status,
                reason=statuses.reason(status, error_code),
                error_code=error_code,
                raw=dict(params),
            )
        ]

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:  # never shows the auth token
        return f"<TwilioProvider {self.settings.account_sid} via {self.settings.base_url}>"


# -- pure helpers (unit-tested directly) ---------------------------------------------

# What quote_plus() escapes in ASCII text: everything but letters, digits and "_.-~"
# (a space, which becomes "+", is handled apart).
_FORM_UNSAFE = re.compile(r"[^A-Za-z0-9_.~ -]")
_FORM_ESCAPES = {chr(c): f"%{c:02X}" for c in range(128)}


def _form_escape(match: re.Match[str]) -> str:
    return _FORM_ESCAPES[match.group()]


def form_quote(text: str) -> str:
    """`quote_plus(text)`, for ASCII text (bodies usually are) with one regex pass and a
    Python call per escaped character only: quote_plus looks every byte up in a dict
    from Python (~4 us for a 70-character SMS, ~1 us this way)."""
    if not text.isascii():
        return quote_plus(text)
    return _FORM_UNSAFE.sub(_form_escape, text).replace(" ", "+")


def response_result(status: int, payload: bytes, retry_after: str | None) -> SendResult:
    """Map a Messages.json response to a SendResult."""
    data = _json_object(payload)
    if 200 <= status < 300:
        sid = data.get("sid")
        segments = _int_or_none(data.get("num_segments"))
        return SendResult(
            accepted=True,
            provider_message_id=sid if isinstance(sid, str) else None,
            segments=segments,
            cost=_cost(data.get("price")),
            error_detail=None if isinstance(sid, str) else "response carried no message sid",
        )
    code = data.get("code")
    error_code = str(code) if code is not None else str(status)
    detail = data.get("message") if isinstance(data.get("message"), str) else None
    if status == 429:
        return SendResult(
            accepted=False,
            retryable=True,
            error_code=error_code,
            error_detail=detail or "rate limited",
            retry_after=parse_retry_after(retry_after),
        )
    if status == 401:
        # Bad credentials are the account's problem, not the message's: retry once an
        # operator fixes the token rather than failing a whole campaign permanently.
        return SendResult(
            accepted=False,
            retryable=True,
            error_code=error_code,
            error_detail=detail or "authentication failed",
        )
    if status >= 500:
        return SendResult(
            accepted=False,
            retryable=True,
            error_code=error_code,
            error_detail=detail or f"Twilio answered {status}",
            retry_after=parse_retry_after(retry_after),
        )
    return SendResult(
        accepted=False,
        retryable=False,
        error_code=error_code,
        error_detail=detail or f"Twilio answered {status}",
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN guard


def webhook_params(request: WebhookRequest) -> dict[str, str]:
    """The callback's parameters: form body, JSON body, or query string (GET)."""
    content_type = (request.header("Content-Type") or "").lower()
    if request.body and "json" in content_type:
        data = _json_object(request.body)
        return {str(k): str(v) for k, v in data.items() if v is not None}
    if request.body:
        return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    if request.query:
        return dict(request.query)
    return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))


def callback_time(params: Mapping[str, str], received_at: datetime | None = None) -> datetime:
    """When the status happened.

    Twilio's status callbacks carry no timestamp of their own. We use, in order: a
    `Timestamp` parameter (ISO 8601 or RFC 2822, sent by some Twilio products), the
    carrier's `RawDlrDoneDate` (YYMMDDhhmm, taken as UTC), else the time we parse the
    callback -- close to its receipt because webhooks are parsed as they arrive.
    """
    stamp = params.get("Timestamp")
    if stamp:
        parsed = _parse_time(stamp)
        if parsed is not None:
            return parsed
    done = params.get("RawDlrDoneDate", "")
    if len(done) in (10, 12) and done.isdigit():
        try:
            fmt = "%y%m%d%H%M%S" if len(done) == 12 else "%y%m%d%H%M"
            return datetime.strptime(done, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    return received_at or datetime.now(UTC)


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _strip_channel(address: str) -> tuple[str, Channel]:
    if address.startswith("whatsapp:"):
        return address[len("whatsapp:") :], Channel.WHATSAPP
    return address, Channel.SMS


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _cost(price: Any) -> str | None:
    # Twilio reports prices as negative decimal strings ("-0.00750"); cost is positive.
    if price is None:
        return None
    try:
        return str(abs(Decimal(str(price))))
    except InvalidOperation:
        return None


def create(context: ProviderContext) -> TwilioProvider:
    if context.channel != Channel.SMS:
        raise ProviderConfigError(f"channel: twilio serves sms, not {context.channel}")
    return TwilioProvider(parse_settings(context))
