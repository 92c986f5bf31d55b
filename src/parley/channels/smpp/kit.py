"""Contract kit for the SMPP provider: a provider bound to a local `SmppServerPeer` (the
`smpp34` library's SMSC, an implementation independent of our codec).

SMPP has no webhooks: receipts and replies arrive on the bind (`run(sink)`), so the
provider rejects every webhook request and the contract's fixture folder holds no
`*.json`; the stored-receipt fixtures (`tests/fixtures/providers/smpp/received/`) are
checked by `tests/unit/channels/test_smpp_received_fixtures.py`.

    async with wired("throttled_0x58") as harness:
        result = await harness.provider.send(harness.message())
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from parley.channels.base import ChannelProvider, OutboundMessage, WebhookRequest
from parley.channels.smpp import SPEC
from parley.channels.smpp.pdu import Status
from parley.channels.testing import ErrorMode, KitHarness, Outcome, free_port, kit_provider
from parley.domain.channels import Channel

NAME = "smpp"
HAS_WEBHOOKS = False  # receipts and replies arrive on the bind, not by webhook
SECRETS: Mapping[str, str] = {"password": "secret1"}
ACCOUNT_ID = "kit-smpp"
FROM_NUMBER = "+15005550006"
TO_NUMBER = "+15558675310"

# A complete, valid account configuration (nothing is contacted until a send).
CONFIG: Mapping[str, Any] = {
    "host": "127.0.0.1",
    "port": 2775,
    "system_id": "parley",
    "source_addr": FROM_NUMBER,
    "connect_timeout": 5,
    "response_timeout": 5,
}

ERROR_MODES: Mapping[str, ErrorMode] = {
    "throttled_0x58": ErrorMode(Outcome.RETRYABLE, "ESME_RTHROTTLED", retry_after=1.0),
    "queue_full_0x14": ErrorMode(Outcome.RETRYABLE, "ESME_RMSGQFUL"),
    "system_error_0x08": ErrorMode(Outcome.RETRYABLE, "ESME_RSYSERR"),
    "invalid_destination_0x0b": ErrorMode(Outcome.PERMANENT, "ESME_RINVDSTADR"),
    "invalid_source_0x0a": ErrorMode(Outcome.PERMANENT, "ESME_RINVSRCADR"),
    "connection_refused": ErrorMode(Outcome.RETRYABLE, "connect_failed"),
    "dropped_after_submit": ErrorMode(Outcome.UNKNOWN, "connection_lost"),
}
_SCRIPTS: Mapping[str, int | str] = {
    "throttled_0x58": Status.ESME_RTHROTTLED,
    "queue_full_0x14": Status.ESME_RMSGQFUL,
    "system_error_0x08": Status.ESME_RSYSERR,
    "invalid_destination_0x0b": Status.ESME_RINVDSTADR,
    "invalid_source_0x0a": Status.ESME_RINVSRCADR,
    "dropped_after_submit": "drop",
}


def build(port: int, **overrides: Any) -> ChannelProvider:
    return kit_provider(
        SPEC,
        account_id=ACCOUNT_ID,
        channel=Channel.SMS,
        config={**CONFIG, "port": port, **overrides},
        secrets=dict(SECRETS),
    )


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
    """A provider bound to a fresh peer, with `mode` (a key of ERROR_MODES) injected."""
    if mode is not None and mode not in ERROR_MODES:
        raise ValueError(f"unknown smpp kit mode {mode!r}")
    from parley.peers.smpp_server import SmppServerPeer

    async with SmppServerPeer() as peer:
        if mode is not None and mode in _SCRIPTS:
            peer.script(_SCRIPTS[mode])
        port = free_port() if mode == "connection_refused" else peer.port
        provider = build(port, **overrides)
        try:
            yield KitHarness(provider=provider, template=template(), peer=peer)
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
    return request  # no webhooks, nothing to sign
