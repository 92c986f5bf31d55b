"""Twilio's voice callbacks: /webhooks/twilio/{account}/voice/... Verified (X-Twilio-
Signature with the account's auth token) before anything is stored.

- ``calls/{callId}/status`` — call progress of every leg of a call;
- ``calls/{callId}/conference`` — conference start/join/leave/end;
- ``calls/{callId}/recording`` — the recording is ready;
- ``inbound`` — the Voice URL of our number: a borrower calls (answers TwiML);
- ``inbound/status`` — the Status Callback URL of our number.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from parley.api.deps import ContainerDep
from parley.api.problems import problem
from parley.api.routes.webhooks import public_url
from parley.channels.base import WebhookRequest, WebhookVerificationError
from parley.channels.twilio.provider import callback_time, webhook_params
from parley.channels.twilio.voice import TwilioVoiceProvider
from parley.services import voice_events
from parley.services.errors import NotFound

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])
_OK = b'{"ok":true}'
_TWIML = "application/xml"


async def _verified(
    request: Request, container: Any, account_id: str
) -> tuple[Any, voice_events.Callback] | Response:
    try:
        uuid.UUID(account_id)
    except ValueError:
        return problem(404, "Not found", "unknown webhook endpoint")
    account = await container.providers.account(account_id)
    if account is None or account.provider != "twilio" or account.channel != "voice":
        return problem(404, "Not found", "unknown webhook endpoint")
    provider = await container.providers.get(account)
    assert isinstance(provider, TwilioVoiceProvider)
    body = await request.body()
    hook = WebhookRequest(
        method="POST",
        url=public_url(request, container.settings.base_url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        query=dict(request.query_params),
    )
    try:
        provider.verify_webhook(hook)
    except WebhookVerificationError as exc:
        log.warning("rejected twilio voice webhook for account %s: %s", account_id, exc)
        return problem(403, "Forbidden", "webhook signature verification failed")
    params = webhook_params(hook)
    key = (
        hook.header("I-Twilio-Idempotency-Token")
        or hashlib.sha256(hook.url.encode() + b"|" + body).hexdigest()
    )
    return account, voice_events.Callback(params, key, callback_time(params))


Handler = Callable[[Any, Any, uuid.UUID, voice_events.Callback], Awaitable[bool]]


async def _apply(
    handler: Handler, request: Request, container: Any, account_id: str, call_id: str
) -> Response:
    verified = await _verified(request, container, account_id)
    if isinstance(verified, Response):
        return verified
    account, callback = verified
    try:
        await handler(container, account, uuid.UUID(call_id), callback)
    except (ValueError, NotFound):
        return problem(404, "Not found", "unknown call")
    return Response(content=_OK, media_type="application/json")


@router.post("/webhooks/twilio/{account_id}/voice/calls/{call_id}/status", include_in_schema=False)
async def call_status(
    account_id: str, call_id: str, request: Request, container: ContainerDep
) -> Response:
    return await _apply(voice_events.on_status, request, container, account_id, call_id)


@router.post(
    "/webhooks/twilio/{account_id}/voice/calls/{call_id}/conference", include_in_schema=False
)
async def conference(
    account_id: str, call_id: str, request: Request, container: ContainerDep
) -> Response:
    return await _apply(voice_events.on_conference, request, container, account_id, call_id)


@router.post(
    "/webhooks/twilio/{account_id}/voice/calls/{call_id}/recording", include_in_schema=False
)
async def recording(
    account_id: str, call_id: str, request: Request, container: ContainerDep
) -> Response:
    return await _apply(voice_events.on_recording, request, container, account_id, call_id)


@router.post("/webhooks/twilio/{account_id}/voice/inbound", include_in_schema=False)
async def inbound(account_id: str, request: Request, container: ContainerDep) -> Response:
    verified = await _verified(request, container, account_id)
    if isinstance(verified, Response):
        return verified
    account, callback = verified
    document = await voice_events.on_inbound(container, account, callback)
    return Response(content=document, media_type=_TWIML)


@router.post("/webhooks/twilio/{account_id}/voice/inbound/status", include_in_schema=False)
async def inbound_status(account_id: str, request: Request, container: ContainerDep) -> Response:
    verified = await _verified(request, container, account_id)
    if isinstance(verified, Response):
        return verified
    account, callback = verified
    try:
        call_id = await voice_events.call_of_leg(
            container, account, callback.params.get("CallSid", "")
        )
    except NotFound:
        return problem(404, "Not found", "unknown call")
    await voice_events.on_status(container, account, call_id, callback)
    return Response(content=_OK, media_type="application/json")
