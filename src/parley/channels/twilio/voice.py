"""Twilio Voice: calls through the Calls REST API, live-call changes, call callbacks.

- ``create_call``: ``POST /2010-04-01/Accounts/{Sid}/Calls.json`` (To, From, Twiml,
  StatusCallback + StatusCallbackEvent initiated/ringing/answered/completed).
- ``update_call``: ``POST .../Calls/{CallSid}.json`` with new Twiml (DTMF, rejoin) or
  ``Status=completed`` (hang up).
- ``update_participant``: ``POST .../Conferences/{ConfSid}/Participants/{CallSid}.json``
  ``Muted=true|false``.
- ``send``: an automated voice message (the body spoken with ``<Say>``), so a voice
  account also honours the message-provider interface.

``VoiceResponse`` (``parley.channels.base``) is what each request answers.

Webhooks are signed like every Twilio webhook (X-Twilio-Signature; the SMS provider's
verification is inherited). Agents' click-to-call callbacks are handled by
``parley.services.voice_events``; ``parse_webhook`` only normalizes a voice message's
status for the message pipeline.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar
from xml.sax.saxutils import escape

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
    VoiceCallback,
    VoiceResponse,
    WebhookRequest,
)
from parley.channels.twilio.config import TwilioSettings, parse_settings
from parley.channels.twilio.provider import TwilioProvider, callback_time, webhook_params
from parley.domain.channels import Channel
from parley.domain.status import EventType

_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")

_EVENT_TYPES = {
    "queued": EventType.QUEUED,
    "initiated": EventType.QUEUED,
    "ringing": EventType.SENT,
    "in-progress": EventType.SENT,
    "completed": EventType.DELIVERED,
    "busy": EventType.FAILED,
    "no-answer": EventType.FAILED,
    "failed": EventType.FAILED,
    "canceled": EventType.FAILED,
}


class TwilioVoiceProvider(TwilioProvider):
    """Calls through Twilio's Programmable Voice REST API."""

    name: ClassVar[str] = "twilio"
    channel: Channel = Channel.VOICE
    capabilities: Capabilities = Capabilities(max_body_chars=4000)

    def __init__(self, settings: TwilioSettings, public_base_url: str | None, account_id: str):
        super().__init__(settings)
        self.account_id = account_id
        self.public_base_url = (public_base_url or "").rstrip("/")

    @property
    def caller_id(self) -> str:
        assert self.settings.from_number is not None  # checked by create()
        return self.settings.from_number

    def _url(self, path: str) -> str:
        return f"{self.settings.base_url}/2010-04-01/Accounts/{self.settings.account_sid}{path}"

    def callback_url(self, path: str) -> str:
        """Where Twilio reaches Parley about this account's calls (`path` under voice/)."""
        return f"{self.public_base_url}/webhooks/twilio/{self.account_id}/voice/{path}"

    async def _post(self, path: str, form: list[tuple[str, str]]) -> VoiceResponse:
        try:
            async with (
                self._slots,
                self._client().post(self._url(path), data=form, headers=_FORM) as response,
            ):
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return VoiceResponse(False, 0, {}, "connection_error", f"no response: {exc!r}")
        try:
            body = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if 200 <= status < 300:
            return VoiceResponse(True, status, body)
        code = body.get("code")
        return VoiceResponse(
            False,
            status,
            body,
            str(code) if code is not None else str(status),
            str(body.get("message") or f"HTTP {status}"),
        )

    async def create_call(
        self, *, to: str, twiml: str, status_callback: str | None
    ) -> VoiceResponse:
        form = [("To", to), ("From", self.caller_id), ("Twiml", twiml)]
        if status_callback:
            form.append(("StatusCallback", status_callback))
            form.append(("StatusCallbackMethod", "POST"))
            form += [("StatusCallbackEvent", event) for event in STATUS_EVENTS]
        return await self._post("/Calls.json", form)

    async def update_call(
        self, call_sid: str, *, twiml: str | None = None, status: str | None = None
    ) -> VoiceResponse:
        form = []
        if twiml is not None:
            form.append(("Twiml", twiml))
        if status is not None:
            form.append(("Status", status))
        return await self._post(f"/Calls/{call_sid}.json", form)

    async def update_participant(
        self, conference_sid: str, call_sid: str, *, muted: bool
    ) -> VoiceResponse:
        return await self._post(
            f"/Conferences/{conference_sid}/Participants/{call_sid}.json",
            [("Muted", "true" if muted else "false")],
        )

    async def send(self, message: OutboundMessage) -> SendResult:
        """An automated voice message: the body is spoken, then the call hangs up."""
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?><Response>'
            f"<Say>{escape(message.body)}</Say><Hangup/></Response>"
        )
        callback = message.status_callback_url or self.settings.status_callback_url
        response = await self.create_call(to=message.to, twiml=twiml, status_callback=callback)
        if response.ok:
            return SendResult(accepted=True, provider_message_id=response.sid)
        if response.status == 0:
            return SendResult(
                accepted=False,
                outcome_unknown=True,
                error_code=response.error_code,
                error_detail=response.detail,
            )
        retryable = response.status in (401, 429) or response.status >= 500
        return SendResult(
            accepted=False,
            retryable=retryable,
            error_code=response.error_code,
            error_detail=response.detail,
        )

    def voice_callback(self, request: WebhookRequest) -> VoiceCallback:
        """A verified click-to-call callback: deduplicated by Twilio's idempotency token
        (else the URL and body, which a retry repeats)."""
        params = webhook_params(request)
        key = (
            request.header("I-Twilio-Idempotency-Token")
            or hashlib.sha256(request.url.encode() + b"|" + request.body).hexdigest()
        )
        return VoiceCallback(params, key, callback_time(params))

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        params = webhook_params(request)
        sid, status = params.get("CallSid"), params.get("CallStatus", "").strip().lower()
        if not sid or not status:
            return []
        event_id = request.header("I-Twilio-Idempotency-Token") or (
            f"{sid}:{status}:{params.get('SequenceNumber', '')}"
        )
        return [
            DeliveryEvent(
                event_type=_EVENT_TYPES.get(status, EventType.UNKNOWN),
                provider_message_id=sid,
                provider_event_id=event_id,
                occurred_at=callback_time(params),
                provider_status=status,
                reason=None,
                error_code=params.get("ErrorCode") or None,
                raw=dict(params),
            )
        ]

    def __repr__(self) -> str:  # never shows the auth token
        return f"<TwilioVoiceProvider {self.settings.account_sid} via {self.settings.base_url}>"


def create(context: ProviderContext) -> TwilioVoiceProvider:
    settings = parse_settings(context)
    if settings.from_number is None or settings.from_number.startswith("whatsapp:"):
        raise ProviderConfigError(
            "invalid twilio configuration: from_number: a voice account needs an E.164 caller id"
        )
    if not settings.from_number.startswith("+"):
        raise ProviderConfigError(
            "invalid twilio configuration: from_number: a caller id must be E.164"
        )
    return TwilioVoiceProvider(settings, context.public_base_url, context.account_id)
