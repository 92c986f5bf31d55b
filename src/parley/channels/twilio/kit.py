"""Contract kit for the Twilio provider: a provider wired to a local `TwilioApiPeer`,
with its status callbacks landing on a local `WebhookReceiver`.

    async with wired("rate_limited") as harness:
        result = await harness.provider.send(harness.message())
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from parley.channels.base import (
    ChannelProvider,
    OutboundMessage,
    ProviderContext,
    WebhookRequest,
)
from parley.channels.testing import ErrorMode, KitHarness, Outcome, free_port, kit_provider
from parley.channels.twilio import SPEC
from parley.channels.twilio.signature import compute_signature
from parley.domain.channels import Channel
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioApiPeer
from parley.peers.webhook_receiver import WebhookReceiver

NAME = "twilio"
HAS_WEBHOOKS = True
SECRETS: Mapping[str, str] = {"auth_token": DEFAULT_AUTH_TOKEN}
ACCOUNT_ID = "kit-twilio"
FROM_NUMBER = "+15005550006"
TO_NUMBER = "+15558675310"

# A complete, valid account configuration (nothing is contacted until a send).
CONFIG: Mapping[str, Any] = {
    "account_sid": DEFAULT_ACCOUNT_SID,
    "from_number": FROM_NUMBER,
    "timeout": 5,
}

ERROR_MODES: Mapping[str, ErrorMode] = {
    "rate_limited_429": ErrorMode(Outcome.RETRYABLE, "20429", retry_after=3.0),
    "server_error_500": ErrorMode(Outcome.RETRYABLE, "20500"),
    "unavailable_503": ErrorMode(Outcome.RETRYABLE, "503"),
    "invalid_to_21211": ErrorMode(Outcome.PERMANENT, "21211"),
    "opted_out_21610": ErrorMode(Outcome.PERMANENT, "21610"),
    "connection_refused": ErrorMode(Outcome.RETRYABLE, "connect_failed"),
    "dropped_after_request": ErrorMode(Outcome.UNKNOWN),
}


def build(base_url: str, public_base_url: str, **overrides: Any) -> ChannelProvider:
    context = ProviderContext(
        account_id=ACCOUNT_ID,
        channel=Channel.SMS,
        config={**CONFIG, "base_url": base_url, **overrides},
        secrets=dict(SECRETS),
        public_base_url=public_base_url,
    )
    provider: ChannelProvider = SPEC.factory(context)
    return provider


def template() -> OutboundMessage:
    return OutboundMessage(
        message_id="00000000-0000-0000-0000-000000000000",
        channel=Channel.SMS,
        to=TO_NUMBER,
        sender=None,
        body="Lender: your payment of $120.00 is due on 1 March. Reply STOP to opt out.",
    )


@asynccontextmanager
async def wired(mode: str | None = None, **overrides: Any) -> AsyncIterator[KitHarness]:
    """A provider talking to a fresh peer, with `mode` (a key of ERROR_MODES) injected."""
    if mode is not None and mode not in ERROR_MODES:
        raise ValueError(f"unknown twilio kit mode {mode!r}")
    opted_out = [TO_NUMBER] if mode == "opted_out_21610" else []
    async with (
        TwilioApiPeer(opted_out=opted_out) as peer,
        WebhookReceiver() as receiver,
    ):
        if mode == "rate_limited_429":
            peer.fail_next(429, code=20429, message="Too Many Requests", retry_after=3)
        elif mode == "server_error_500":
            peer.fail_next(500, code=20500, message="Internal Server Error")
        elif mode == "unavailable_503":
            peer.fail_next(503, code=503, message="Service Unavailable")
        elif mode == "dropped_after_request":
            peer.drop_next()
        base_url = (
            f"http://127.0.0.1:{free_port()}" if mode == "connection_refused" else peer.base_url
        )
        provider = build(base_url, receiver.base_url, **overrides)

        async def collect_callbacks() -> list[WebhookRequest]:
            count = await peer.deliver_callbacks()
            async with asyncio.timeout(10):
                return await receiver.wait_for(count)

        harness = KitHarness(
            provider=provider,
            template=template(),
            peer=peer,
            collect_callbacks=collect_callbacks,
            extras={"receiver": receiver},
        )
        if mode == "invalid_to_21211":
            harness.template = replace(harness.template, to="555-0100")
        try:
            yield harness
        finally:
            await provider.aclose()


def provider(secrets: Mapping[str, str] | None = None) -> ChannelProvider:
    return kit_provider(
        SPEC,
        account_id=ACCOUNT_ID,
        channel=Channel.SMS,
        config=CONFIG,
        secrets=secrets if secrets is not None else SECRETS,
    )


def sign(request: WebhookRequest, secrets: Mapping[str, str] | None = None) -> WebhookRequest:
    """`request` with X-Twilio-Signature computed over its URL and form parameters."""
    from urllib.parse import parse_qsl

    token = (secrets if secrets is not None else SECRETS)["auth_token"]
    params = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    headers = dict(request.headers)
    headers["x-twilio-signature"] = compute_signature(token, request.url, params)
    return replace(request, headers=headers)
