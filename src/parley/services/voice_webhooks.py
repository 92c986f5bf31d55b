"""A voice provider's callbacks as they arrive: the account looked up, the request
verified with its provider (before anything is stored), read into a ``VoiceCallback``
and handed to ``services.voice_events``.

Paths under ``/webhooks/{provider}/{account}/voice/`` (Twilio's and the sandbox's alike):

- ``calls/{callId}/status`` -- call progress of every leg of a call;
- ``calls/{callId}/conference`` -- conference start/join/leave/end;
- ``calls/{callId}/recording`` -- the recording is ready;
- ``inbound`` -- the Voice URL of our number: a borrower calls (answered with TwiML);
- ``inbound/status`` -- the Status Callback URL of our number.

:func:`receive` is the one way in: the HTTP route calls it, and :func:`local_delivery`
hands it the sandbox's callbacks in-process (the demo loader plays calls before any
server listens).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from parley.channels.base import VoiceProvider, WebhookRequest, WebhookVerificationError
from parley.services import voice_events
from parley.services.errors import NotFound

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)

_OK = b'{"ok":true}'
_CALL_PATHS = {
    "status": voice_events.on_status,
    "conference": voice_events.on_conference,
    "recording": voice_events.on_recording,
}
_VOICE_URL = re.compile(r"/webhooks/([^/]+)/([^/]+)/voice/(.+)\Z")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the provider is answered: 200 with JSON or TwiML, or a problem (`detail`)."""

    status: int
    body: bytes = _OK
    media_type: str = "application/json"
    detail: str | None = None

    @classmethod
    def problem(cls, status: int, detail: str) -> Answer:
        return cls(status, detail.encode(), "text/plain", detail)


async def receive(
    container: Container, provider: str, account_id: str, path: str, hook: WebhookRequest
) -> Answer:
    try:
        uuid.UUID(account_id)
    except ValueError:
        return Answer.problem(404, "unknown webhook endpoint")
    account = await container.providers.account(account_id)
    if account is None or account.provider != provider or account.channel != "voice":
        return Answer.problem(404, "unknown webhook endpoint")
    voice = await container.providers.get(account)
    if not isinstance(voice, VoiceProvider):
        return Answer.problem(404, "unknown webhook endpoint")
    try:
        voice.verify_webhook(hook)
    except WebhookVerificationError as exc:
        # Who and why, never the payload (it names borrowers' numbers).
        log.warning("rejected %s voice webhook for account %s: %s", provider, account_id, exc)
        return Answer.problem(403, "webhook signature verification failed")
    callback = voice.voice_callback(hook)
    parts = path.strip("/").split("/")
    try:
        if parts == ["inbound"]:
            document = await voice_events.on_inbound(container, account, callback)
            return Answer(200, document.encode(), "application/xml")
        if parts == ["inbound", "status"]:
            sid = callback.params.get("CallSid", "")
            call_id = await voice_events.call_of_leg(container, account, sid)
            await voice_events.on_status(container, account, call_id, callback)
            return Answer(200)
        if len(parts) == 3 and parts[0] == "calls" and parts[2] in _CALL_PATHS:
            await _CALL_PATHS[parts[2]](container, account, uuid.UUID(parts[1]), callback)
            return Answer(200)
    except (ValueError, NotFound):
        return Answer.problem(404, "unknown call")
    return Answer.problem(404, "unknown webhook endpoint")


Deliver = Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]]


def local_delivery(container: Container) -> Deliver:
    """A sandbox `Deliver` that hands voice callbacks to :func:`receive` in this process,
    exactly as the route would (verified, deduplicated, applied)."""

    async def deliver(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        parts = urlsplit(url)
        match = _VOICE_URL.match(parts.path)
        if match is None:
            return 404, b"not a voice callback"
        hook = WebhookRequest(
            method="POST",
            url=url,
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
            query=dict(parse_qsl(parts.query)),
        )
        provider, account_id, path = match.groups()
        answer = await receive(container, provider, account_id, path, hook)
        return answer.status, answer.body

    return deliver
