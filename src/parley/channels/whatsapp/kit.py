"""Contract kit for the WhatsApp Cloud provider: a provider wired to a local
`WhatsAppApiPeer`, with Meta's signed webhooks landing on a local `WebhookReceiver`.

    async with wired("outside_window_131047") as harness:
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
from parley.channels.whatsapp import SPEC
from parley.channels.whatsapp.webhooks import SIGNATURE_HEADER, signature
from parley.domain.channels import Channel
from parley.peers.webhook_receiver import WebhookReceiver
from parley.peers.whatsapp_api import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_APP_SECRET,
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_WABA_ID,
    WhatsAppApiPeer,
)

NAME = "whatsapp_cloud"
HAS_WEBHOOKS = True
ACCOUNT_ID = "kit-whatsapp"
TO_NUMBER = "+15558675310"
SECRETS: Mapping[str, str] = {
    "access_token": DEFAULT_ACCESS_TOKEN,
    "app_secret": DEFAULT_APP_SECRET,
    "verify_token": "kit-verify-token",
}
CONFIG: Mapping[str, Any] = {
    "phone_number_id": DEFAULT_PHONE_NUMBER_ID,
    "waba_id": DEFAULT_WABA_ID,
    "from_number": "+15550783881",
    "timeout": 5,
}

ERROR_MODES: Mapping[str, ErrorMode] = {
    "rate_limited_130429": ErrorMode(Outcome.RETRYABLE, "130429"),
    "pair_rate_limited_131056": ErrorMode(Outcome.RETRYABLE, "131056", retry_after=6.0),
    "outside_window_131047": ErrorMode(Outcome.PERMANENT, "131047"),
    "undeliverable_131026": ErrorMode(Outcome.PERMANENT, "131026"),
    "unknown_code_400": ErrorMode(Outcome.PERMANENT, "135999"),
    "unknown_code_500": ErrorMode(Outcome.RETRYABLE, "135998"),
    "bad_token_190": ErrorMode(Outcome.RETRYABLE, "190"),
    "invalid_recipient_131009": ErrorMode(Outcome.PERMANENT, "131009"),
    "connection_refused": ErrorMode(Outcome.RETRYABLE, "connect_failed"),
    "dropped_after_request": ErrorMode(Outcome.UNKNOWN),
}

_SCRIPTED: Mapping[str, tuple[int, int]] = {
    "rate_limited_130429": (429, 130429),
    "pair_rate_limited_131056": (400, 131056),
    "outside_window_131047": (400, 131047),
    "undeliverable_131026": (400, 131026),
    "unknown_code_400": (400, 135999),
    "unknown_code_500": (500, 135998),
}


def build(base_url: str, public_base_url: str, **overrides: Any) -> ChannelProvider:
    context = ProviderContext(
        account_id=ACCOUNT_ID,
        channel=Channel.WHATSAPP,
        config={**CONFIG, "base_url": base_url, **overrides},
        secrets=dict(SECRETS),
        public_base_url=public_base_url,
    )
    provider: ChannelProvider = SPEC.factory(context)
    return provider


def template() -> OutboundMessage:
    return OutboundMessage(
        message_id="00000000-0000-0000-0000-000000000000",
        channel=Channel.WHATSAPP,
        to=TO_NUMBER,
        sender=None,
        body="Lender: your payment of $120.00 is due on 1 March. Reply STOP to opt out.",
    )


@asynccontextmanager
async def wired(mode: str | None = None, **overrides: Any) -> AsyncIterator[KitHarness]:
    """A provider talking to a fresh peer, with `mode` (a key of ERROR_MODES) injected."""
    if mode is not None and mode not in ERROR_MODES:
        raise ValueError(f"unknown whatsapp kit mode {mode!r}")
    async with WebhookReceiver() as receiver:
        webhook_url = f"{receiver.base_url}/webhooks/{NAME}/{ACCOUNT_ID}"
        async with WhatsAppApiPeer(webhook_url=webhook_url) as peer:
            if mode is not None and mode in _SCRIPTED:
                status, code = _SCRIPTED[mode]
                peer.fail_next(status, code)
            elif mode == "dropped_after_request":
                peer.drop_next()
            base_url = (
                f"http://127.0.0.1:{free_port()}" if mode == "connection_refused" else peer.base_url
            )
            provider = build(base_url, receiver.base_url, **overrides)
            if mode == "bad_token_190":
                peer.access_token = "rotated-token"

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
            if mode == "invalid_recipient_131009":
                harness.template = replace(harness.template, to="555-0100")
            try:
                yield harness
            finally:
                await provider.aclose()


def provider(secrets: Mapping[str, str] | None = None) -> ChannelProvider:
    return kit_provider(
        SPEC,
        account_id=ACCOUNT_ID,
        channel=Channel.WHATSAPP,
        config=CONFIG,
        secrets={**SECRETS, **(secrets or {})},
    )


def sign(request: WebhookRequest, secrets: Mapping[str, str] | None = None) -> WebhookRequest:
    """`request` with X-Hub-Signature-256 computed over its raw body."""
    app_secret = (secrets if secrets is not None else SECRETS)["app_secret"]
    headers = dict(request.headers)
    headers[SIGNATURE_HEADER.lower()] = signature(app_secret, request.body)
    return replace(request, headers=headers)
