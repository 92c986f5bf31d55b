"""The sandbox's voice channel: live calls on a simulated telephone network, with no
telephony account at all -- so click-to-call, inbound calls and voicemail work in the
demo as they do with Twilio.

A sandbox voice account is a ``VoiceProvider`` (``parley.channels.base``), driven by the
same services as a Twilio one (``services.voice_calls``, ``services.voice_events``): the
TwiML Parley gives it runs on ``parley.voice.network`` (the network the Twilio Voice test
peer runs on), and its call, conference and recording callbacks -- Twilio's parameters,
form-encoded, signed ``X-Sandbox-Signature: sha256=<hex HMAC-SHA256(signing_secret,
body)>``, each with an ``X-Sandbox-Event-Id`` -- are posted to
``/webhooks/sandbox/{account}/voice/...``, the route Twilio's voice callbacks take.

What the network does (``ring_seconds``, ``talk_seconds``, ``voicemail_seconds``,
``call_outcomes``): a called phone rings, then answers -- or is busy, does not answer,
fails, or an answering machine picks up, per ``call_outcomes`` -- and hangs up by itself
``talk_seconds`` later; agents' softphones (``client:``, ``sip:``) answer after
``ring_seconds`` and stay until Parley hangs them up. Hang-up, mute, DTMF and transfers
act on the simulated legs and conference. ``simulate_inbound_call`` plays a borrower
calling the account's number. A call's conference is recorded (the recording has a sid
and a duration but no audio: its URL is null).

Calls live in the memory of the process that placed them (``parley run`` is one
process): a live call is hung up when its provider instance closes (the account was
edited, or the process stops -- then its end is reported only if the API still
listens). A leg the network no longer has (after a restart) is reported ended when
Parley next acts on it, e.g. the agent's hang-up, so no call stays live forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import urlencode

from parley.channels.base import VoiceCallback, VoiceResponse, WebhookRequest
from parley.channels.sandbox.config import SandboxSettings
from parley.channels.sandbox.provider import SIGNATURE_HEADER, SandboxProvider, sign
from parley.domain.channels import Channel
from parley.voice.network import (
    NetworkCall,
    NetworkError,
    PhoneNetwork,
    callback_params,
    callback_time,
)

EVENT_HEADER = "X-Sandbox-Event-Id"
STATUS_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
# How long closing waits for the end of its live calls to be posted.
CLOSE_SECONDS = 3.0


class SandboxVoiceProvider(SandboxProvider):
    """Automated voice messages like any sandbox message, and live calls."""

    def __init__(
        self,
        settings: SandboxSettings,
        *,
        webhook_url: str | None,
        account_id: str,
        public_base_url: str,
    ) -> None:
        super().__init__(settings, channel=Channel.VOICE, webhook_url=webhook_url)
        self.account_id = account_id
        self.public_base_url = (public_base_url or "").rstrip("/")
        self.network = PhoneNetwork(
            self._post_callback,
            outcomes=settings.call_outcomes,
            ring_seconds=settings.ring_seconds,
            talk_seconds=settings.talk_seconds,
            voicemail_seconds=settings.voicemail_seconds,
        )

    @property
    def caller_id(self) -> str:
        return self.settings.caller_id

    def callback_url(self, path: str) -> str:
        """Where the network reaches Parley about this account's calls (`path` under voice/)."""
        return f"{self.public_base_url}/webhooks/sandbox/{self.account_id}/voice/{path}"

    # -- the Voice API -------------------------------------------------------------

    async def create_call(
        self, *, to: str, twiml: str, status_callback: str | None
    ) -> VoiceResponse:
        if self._closed:
            return VoiceResponse(False, 0, {}, "closed", "provider closed")
        if not self.settings.callbacks:
            # A call nobody reports on could never end: refuse it rather than pretend.
            return VoiceResponse(
                False,
                400,
                {},
                "callbacks_disabled",
                "this sandbox account posts no callbacks (config callbacks: false)",
            )
        try:
            call = self.network.dial(
                self.account_id,
                to=to,
                from_=self.caller_id,
                twiml=twiml,
                status_callback=status_callback,
                status_events=STATUS_EVENTS,
            )
        except NetworkError as exc:
            return _refused(exc)
        return VoiceResponse(True, 201, self.network.resource(call))

    async def update_call(
        self, call_sid: str, *, twiml: str | None = None, status: str | None = None
    ) -> VoiceResponse:
        try:
            call = await self.network.update(self.account_id, call_sid, status=status, twiml=twiml)
        except NetworkError as exc:
            if exc.code == 20404 and call_sid not in self.network.calls:
                return self._lost(call_sid)
            return _refused(exc)
        return VoiceResponse(True, 200, self.network.resource(call))

    def _lost(self, call_sid: str) -> VoiceResponse:
        """A leg this network does not have: the process that placed it stopped (or the
        account was rebuilt) and its calls went down with it. Report the leg ended -- to
        the number's status URL, which finds a call by its leg -- and answer as Twilio
        answers for an ended leg (21220), so a hang-up completes instead of failing."""
        self.network.queue_callback(
            self.callback_url("inbound/status"),
            {
                "AccountSid": self.account_id,
                "CallSid": call_sid,
                "CallStatus": "completed",
                "CallbackSource": "call-progress-events",
                "Timestamp": format_datetime(datetime.now(UTC), usegmt=True),
            },
            self.account_id,
            key=call_sid,
        )
        return VoiceResponse(
            False, 400, {}, "21220", "Call is not in-progress: the sandbox network lost it"
        )

    async def update_participant(
        self, conference_sid: str, call_sid: str, *, muted: bool
    ) -> VoiceResponse:
        try:
            body = self.network.participant(
                self.account_id, conference_sid, call_sid, muted="true" if muted else "false"
            )
        except NetworkError as exc:
            return _refused(exc)
        return VoiceResponse(True, 200, body)

    def voice_callback(self, request: WebhookRequest) -> VoiceCallback:
        params = callback_params(request.body)
        key = (
            request.header(EVENT_HEADER)
            or hashlib.sha256(request.url.encode() + b"|" + request.body).hexdigest()
        )
        return VoiceCallback(params, key, callback_time(params))

    async def simulate_inbound_call(self, *, caller: str) -> NetworkCall:
        """Play a borrower calling the account's number from `caller`: our voice webhook
        answers with TwiML (ring an agent, take a voicemail, or a short message), which
        then runs in the background. Returns the caller's leg (its ``status`` is
        ``failed`` if the webhook refused the call)."""
        return await self.network.place_inbound(
            self.callback_url("inbound"),
            account_sid=self.account_id,
            from_=caller,
            to=self.caller_id,
            status_callback=self.callback_url("inbound/status"),
            wait=False,
        )

    async def _post_callback(
        self, url: str, params: Mapping[str, str], _account: str
    ) -> tuple[int, bytes]:
        body = urlencode(list(params.items())).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign(self.settings.signing_secret, body),
            EVENT_HEADER: str(uuid.uuid4()),
        }
        return await self._deliver(url, body, headers)

    async def aclose(self) -> None:
        if not self._closed:
            # The network goes down with the provider: its live calls end, and their end
            # is reported while it can be.
            for call in self.network.live():
                with contextlib.suppress(NetworkError):
                    await self.network.hangup(call.sid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.network.posted(), CLOSE_SECONDS)
        await self.network.close()
        await super().aclose()

    def __repr__(self) -> str:
        return f"<SandboxVoiceProvider {self.account_id} -> {self.public_base_url}>"


def _refused(exc: NetworkError) -> VoiceResponse:
    return VoiceResponse(False, exc.status, {}, str(exc.code), exc.message)
