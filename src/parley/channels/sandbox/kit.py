"""Contract kit for the sandbox provider: its "peer" is Parley's own webhook endpoint,
played by a local `WebhookReceiver` that collects the signed callbacks.

The sandbox accepts every message with a recipient, so its only error mode is the one
permanent refusal it has.
"""

from __future__ import annotations

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
from parley.channels.sandbox import SPEC
from parley.channels.sandbox.provider import SIGNATURE_HEADER, SandboxProvider
from parley.channels.sandbox.provider import sign as signature
from parley.channels.testing import ErrorMode, KitHarness, Outcome, kit_provider
from parley.domain.channels import Channel
from parley.peers.webhook_receiver import WebhookReceiver

NAME = "sandbox"
HAS_WEBHOOKS = True
SECRETS: Mapping[str, str] = {"signing_secret": "sandbox-kit-signing-secret"}
ACCOUNT_ID = "kit-sandbox"

# A complete, valid account configuration: callbacks come at once, draws are seeded.
CONFIG: Mapping[str, Any] = {
    "sent_delay_seconds": 0,
    "delivery_delay_seconds": 0,
    "read_delay_seconds": 0,
    "seed": 7,
}

ERROR_MODES: Mapping[str, ErrorMode] = {
    "empty_recipient": ErrorMode(Outcome.PERMANENT, "invalid_recipient"),
}


def build(
    public_base_url: str, channel: Channel = Channel.SMS, **overrides: Any
) -> ChannelProvider:
    context = ProviderContext(
        account_id=ACCOUNT_ID,
        channel=channel,
        config={**CONFIG, **overrides},
        secrets=dict(SECRETS),
        public_base_url=public_base_url,
    )
    provider: ChannelProvider = SPEC.factory(context)
    return provider


def template(channel: Channel = Channel.SMS) -> OutboundMessage:
    return OutboundMessage(
        message_id="00000000-0000-0000-0000-000000000000",
        channel=channel,
        to="borrower@example.com" if channel is Channel.EMAIL else "+15558675310",
        sender=None,
        subject="Your payment reminder" if channel is Channel.EMAIL else None,
        body="Your payment of $120.00 is due on 1 March.",
    )


@asynccontextmanager
async def wired(
    mode: str | None = None, *, channel: Channel = Channel.SMS, **overrides: Any
) -> AsyncIterator[KitHarness]:
    if mode is not None and mode not in ERROR_MODES:
        raise ValueError(f"unknown sandbox kit mode {mode!r}")
    async with WebhookReceiver() as receiver:
        provider = build(receiver.base_url, channel, **overrides)

        async def collect_callbacks() -> list[WebhookRequest]:
            assert isinstance(provider, SandboxProvider)
            await provider.flush_callbacks()
            return list(receiver.requests)

        harness = KitHarness(
            provider=provider,
            template=template(channel),
            peer=receiver,
            collect_callbacks=collect_callbacks,
        )
        if mode == "empty_recipient":
            harness.template = replace(harness.template, to="")
        try:
            yield harness
        finally:
            await provider.aclose()


def provider(secrets: Mapping[str, str] | None = None) -> ChannelProvider:
    return kit_provider(
        SPEC,
        account_id=ACCOUNT_ID,
        channel=Channel.SMS,
        config={**CONFIG, "callbacks": False},
        secrets=secrets if secrets is not None else SECRETS,
    )


def sign(request: WebhookRequest, secrets: Mapping[str, str] | None = None) -> WebhookRequest:
    secret = (secrets if secrets is not None else SECRETS)["signing_secret"]
    headers = dict(request.headers)
    headers[SIGNATURE_HEADER.lower()] = signature(secret, request.body)
    return replace(request, headers=headers)
