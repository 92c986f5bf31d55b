"""Contract kit for the SMTP provider: a provider wired to a local `SmtpSink`.

async with wired("tempfail") as harness:
    result = await harness.provider.send(harness.message())
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from parley.channels.base import (
    ChannelProvider,
    OutboundMessage,
    WebhookRequest,
)
from parley.channels.smtp import SPEC
from parley.channels.testing import ErrorMode, KitHarness, Outcome, free_port, kit_provider
from parley.domain.channels import Channel
from parley.peers.smtp_sink import (
    DROP_AFTER_DATA,
    DROP_BEFORE_DATA,
    PERMFAIL,
    TEMPFAIL,
    Implementation,
    SmtpSink,
)

NAME = "smtp"
# No status callbacks: bounces come back as DSN emails. The one webhook, inbound parse,
# carries raw emails (fixtures: tests/fixtures/providers/smtp/*.eml).
HAS_WEBHOOKS = False
SECRETS: Mapping[str, str] = {"inbound_secret": "kit-inbound-secret"}

ERROR_MODES: Mapping[str, ErrorMode] = {
    "tempfail_451": ErrorMode(Outcome.RETRYABLE, "451"),
    "permfail_550": ErrorMode(Outcome.PERMANENT, "550"),
    "connection_refused": ErrorMode(Outcome.RETRYABLE, "connect_failed"),
    "dropped_before_data": ErrorMode(Outcome.RETRYABLE, "connection_lost"),
    "dropped_after_data": ErrorMode(Outcome.UNKNOWN),
    "header_injection": ErrorMode(Outcome.PERMANENT, "invalid_message"),
}

_SINK_ACTIONS = {
    "tempfail_451": TEMPFAIL,
    "permfail_550": PERMFAIL,
    "dropped_before_data": DROP_BEFORE_DATA,
    "dropped_after_data": DROP_AFTER_DATA,
}


# A complete, valid account configuration (nothing is contacted until a send).
CONFIG: Mapping[str, Any] = {
    "host": "127.0.0.1",
    "port": 2525,
    "from_address": "billing@lender.example",
    "from_name": "Lender Billing",
    "timeout": 5,
    "pool_size": 4,
}


def config(port: int, **overrides: Any) -> dict[str, Any]:
    return {**CONFIG, "port": port, **overrides}


def build(port: int, secrets: Mapping[str, str] | None = None, **overrides: Any) -> ChannelProvider:
    return kit_provider(
        SPEC,
        account_id="kit-smtp",
        channel=Channel.EMAIL,
        config=config(port, **overrides),
        secrets=dict(secrets or {}),
        public_base_url="http://parley.test",
    )


def template() -> OutboundMessage:
    return OutboundMessage(
        message_id="00000000-0000-0000-0000-000000000000",
        channel=Channel.EMAIL,
        to="borrower@example.com",
        sender=None,
        subject="Your payment reminder",
        body="Hello,\nyour payment of $120.00 is due on 1 March.\n",
    )


@asynccontextmanager
async def wired(
    mode: str | None = None, *, implementation: Implementation = "aiosmtpd", **overrides: Any
) -> AsyncIterator[KitHarness]:
    """A provider talking to a fresh sink, with `mode` (a key of ERROR_MODES) injected."""
    if mode is not None and mode not in ERROR_MODES:
        raise ValueError(f"unknown smtp kit mode {mode!r}")
    async with SmtpSink(implementation=implementation) as sink:
        port = free_port() if mode == "connection_refused" else sink.port
        if mode in _SINK_ACTIONS:
            sink.fail_next(_SINK_ACTIONS[mode])
        provider = build(port, **overrides)
        harness = KitHarness(provider=provider, template=template(), peer=sink)
        if mode == "header_injection":
            harness.template = harness.message(subject="Hi\r\nBcc: everyone@example.com")
        try:
            yield harness
        finally:
            await provider.aclose()


def provider(secrets: Mapping[str, str] | None = None) -> ChannelProvider:
    return build(free_port(), SECRETS if secrets is None else secrets)


def sign(request: WebhookRequest, secrets: Mapping[str, str] | None = None) -> WebhookRequest:
    """Sign an inbound-parse request the way a configured sender does (X-Parley-Signature)."""
    key = (SECRETS if secrets is None else secrets).get("inbound_secret", "").encode()
    signature = "sha256=" + hmac.new(key, request.body, hashlib.sha256).hexdigest()
    return replace(request, headers={**request.headers, "x-parley-signature": signature})
