"""The sandbox provider: accepts sends, posts realistic signed callbacks, parses them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest

from parley.channels.base import (
    DeliveryEvent,
    InboundMessage,
    ProviderConfigError,
    ProviderContext,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.sandbox import SPEC
from parley.channels.sandbox.kit import template
from parley.channels.sandbox.provider import SandboxProvider, sign
from parley.domain.channels import Channel
from parley.domain.status import EventType
from parley.peers.webhook_receiver import WebhookReceiver

SECRET = "sandbox-test-secret"


def build(base_url: str, channel: Channel = Channel.SMS, **config: Any) -> SandboxProvider:
    context = ProviderContext(
        account_id="acct-5",
        channel=channel,
        config={
            "sent_delay_seconds": 0,
            "delivery_delay_seconds": 0,
            "read_delay_seconds": 0,
            **config,
        },
        secrets={"signing_secret": SECRET},
        public_base_url=base_url,
    )
    provider = SPEC.factory(context)
    assert isinstance(provider, SandboxProvider)
    return provider


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as running:
        yield running


def statuses(provider: SandboxProvider, requests: list[WebhookRequest]) -> dict[str, list[str]]:
    by_message: dict[str, list[str]] = {}
    for request in requests:
        provider.verify_webhook(request)
        for event in provider.parse_webhook(request):
            assert isinstance(event, DeliveryEvent)
            by_message.setdefault(event.provider_message_id, []).append(event.provider_status)
    return by_message


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":"1","message_id":"sbx_1","status":"sent"}'
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == expected
    provider = build("")
    good = WebhookRequest("POST", "https://x/", {"x-sandbox-signature": expected}, body)
    provider.verify_webhook(good)
    for forged in (
        replace(good, body=body.replace(b"sent", b"read")),
        replace(good, headers={}),
        replace(good, headers={"x-sandbox-signature": expected.upper()}),
        replace(good, headers={"x-sandbox-signature": sign("other", body)}),
        replace(good, headers={"x-sandbox-signature": expected[7:]}),
    ):
        with pytest.raises(WebhookVerificationError) as caught:
            provider.verify_webhook(forged)
        assert SECRET not in str(caught.value)


def test_config_validation() -> None:
    with pytest.raises(ProviderConfigError, match="signing_secret"):
        SPEC.factory(ProviderContext("a", Channel.SMS, {}, {}, ""))
    with pytest.raises(ProviderConfigError) as caught:
        SPEC.factory(
            ProviderContext(
                "a",
                Channel.SMS,
                {"failure_rate": 2, "delivery_delay_seconds": "soon", "seed": "x"},
                {"signing_secret": "s"},
                "",
            )
        )
    for field in ("failure_rate", "delivery_delay_seconds", "seed"):
        assert field in str(caught.value)


def test_serves_every_channel() -> None:
    assert SPEC.channels == frozenset(Channel)
    for channel in Channel:
        assert build("", channel).channel is channel
    assert build("", Channel.EMAIL).capabilities.supports_html


async def test_sms_lifecycle(receiver: WebhookReceiver) -> None:
    provider = build(receiver.base_url)
    result = await provider.send(template())
    await provider.flush_callbacks()
    await provider.aclose()
    assert result.accepted and result.provider_message_id
    assert result.provider_message_id.startswith("sbx_") and len(result.provider_message_id) == 36
    assert statuses(provider, receiver.requests) == {
        result.provider_message_id: ["sent", "delivered", "read"]
    }
    assert {r.url for r in receiver.requests} == {receiver.base_url + "/webhooks/sandbox/acct-5"}
    payload = orjson.loads(receiver.requests[0].body)
    assert set(payload) == {"id", "message_id", "status", "timestamp", "error_code", "channel"}
    assert payload["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (Channel.EMAIL, ["sent", "delivered", "opened"]),
        (Channel.WHATSAPP, ["sent", "delivered", "read"]),
        (Channel.VOICE, ["sent", "delivered"]),
    ],
)
async def test_channel_specific_events(
    receiver: WebhookReceiver, channel: Channel, expected: list[str]
) -> None:
    provider = build(receiver.base_url, channel)
    result = await provider.send(template(channel))
    await provider.flush_callbacks()
    await provider.aclose()
    assert statuses(provider, receiver.requests)[result.provider_message_id or ""] == expected


async def test_failures_are_seeded_and_reported(receiver: WebhookReceiver) -> None:
    async def failed_positions(seed: int) -> list[int]:
        provider = build(receiver.base_url, failure_rate=0.5, seed=seed, read_delay_seconds=None)
        ids = [(await provider.send(template())).provider_message_id for _ in range(20)]
        await provider.flush_callbacks()
        await provider.aclose()
        seen = statuses(provider, receiver.requests)
        receiver.requests.clear()
        for message_id in ids:
            assert seen[message_id or ""][0] == "sent"
            assert seen[message_id or ""][1] in ("delivered", "failed")
        return [n for n, mid in enumerate(ids) if seen[mid or ""][-1] == "failed"]

    first, again, other = (
        await failed_positions(3),
        await failed_positions(3),
        await failed_positions(4),
    )
    assert first == again, "the same seed fails the same messages"
    assert first != other
    assert 0 < len(first) < 20


async def test_failed_event_carries_error_code(receiver: WebhookReceiver) -> None:
    provider = build(receiver.base_url, failure_rate=1.0)
    await provider.send(template())
    await provider.flush_callbacks()
    await provider.aclose()
    events = [e for r in receiver.requests for e in provider.parse_webhook(r)]
    assert [e.event_type for e in events] == [EventType.SENT, EventType.FAILED]  # type: ignore[union-attr]
    failed = events[1]
    assert isinstance(failed, DeliveryEvent)
    assert (failed.error_code, failed.reason) == ("unreachable", "destination handset unreachable")


async def test_read_delay_none_and_read_rate(receiver: WebhookReceiver) -> None:
    provider = build(receiver.base_url, read_delay_seconds=None)
    await provider.send(template())
    await provider.flush_callbacks()
    await provider.aclose()
    assert list(statuses(provider, receiver.requests).values()) == [["sent", "delivered"]]


async def test_callbacks_can_be_switched_off(receiver: WebhookReceiver) -> None:
    provider = build(receiver.base_url, callbacks=False)
    assert (await provider.send(template())).accepted
    await provider.flush_callbacks()
    await provider.aclose()
    assert receiver.requests == []


async def test_empty_recipient_is_refused() -> None:
    provider = build("")
    for to in ("", "   "):
        result = await provider.send(replace(template(), to=to))
        assert (result.accepted, result.retryable, result.error_code) == (
            False,
            False,
            "invalid_recipient",
        )
    await provider.aclose()


async def test_aclose_cancels_pending_callbacks(receiver: WebhookReceiver) -> None:
    provider = build(receiver.base_url, sent_delay_seconds=0.3, delivery_delay_seconds=0.3)
    await provider.send(template())
    await provider.aclose()
    await asyncio.sleep(0.4)
    assert receiver.requests == []
    assert not provider._tasks


async def test_unreachable_webhook_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with WebhookReceiver() as gone:
        url = gone.base_url
    provider = build(url)
    with caplog.at_level(logging.WARNING):
        assert (await provider.send(template())).accepted
        await provider.flush_callbacks()
    await provider.aclose()
    assert "dropped" in caplog.text


async def test_simulated_inbound_reply(receiver: WebhookReceiver) -> None:
    provider = build(receiver.base_url)
    message_id = await provider.simulate_inbound(sender="+15558675310", body="Can I pay Friday?")
    await provider.aclose()
    [request] = receiver.requests
    provider.verify_webhook(request)
    [inbound] = provider.parse_webhook(request)
    assert isinstance(inbound, InboundMessage)
    assert (inbound.provider_message_id, inbound.sender, inbound.body, inbound.channel) == (
        message_id,
        "+15558675310",
        "Can I pay Friday?",
        Channel.SMS,
    )
