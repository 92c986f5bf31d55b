"""FakeProvider is a real provider implementation (in memory): it must honour the same
protocol as the others, or dispatcher tests built on it prove nothing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from parley.channels.base import (
    ChannelProvider,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderContext,
    SendResult,
    WebhookVerificationError,
)
from parley.channels.testing import FakeProvider, Outcome, outcome_of
from parley.domain.channels import Channel
from parley.domain.status import EventType


def message(n: int = 0) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"m{n}", channel=Channel.SMS, to="+15558675310", sender=None, body="hi"
    )


def test_is_a_channel_provider() -> None:
    assert isinstance(FakeProvider(), ChannelProvider)


async def test_accepts_by_default_and_records() -> None:
    fake = FakeProvider()
    results = [await fake.send(message(n)) for n in range(3)]
    assert [r.provider_message_id for r in results] == ["fake_1", "fake_2", "fake_3"]
    assert [m.message_id for m in fake.sent] == ["m0", "m1", "m2"]
    assert fake.results == results


async def test_scripted_results_then_default() -> None:
    fake = FakeProvider()
    fake.fail_next(retryable=True, error_code="429", retry_after=2.0)
    fake.fail_next(retryable=False, error_code="21211")
    fake.unknown_next()
    fake.script(lambda m: SendResult(accepted=True, provider_message_id="id-" + m.message_id))
    fake.raise_next(ConnectionError("boom"))
    outcomes = [outcome_of(await fake.send(message(n))) for n in range(4)]
    assert outcomes == [Outcome.RETRYABLE, Outcome.PERMANENT, Outcome.UNKNOWN, Outcome.ACCEPTED]
    assert fake.results[0].retry_after == 2.0
    assert fake.results[3].provider_message_id == "id-m3"
    with pytest.raises(ConnectionError):
        await fake.send(message(4))
    assert (await fake.send(message(5))).accepted
    assert len(fake.sent) == 6


async def test_hold_parks_sends_until_released() -> None:
    fake = FakeProvider()
    fake.hold()
    pending = [asyncio.ensure_future(fake.send(message(n))) for n in range(3)]
    await asyncio.sleep(0.01)
    assert fake.in_flight == 3 and not any(p.done() for p in pending)
    fake.release()
    results = await asyncio.gather(*pending)
    assert all(r.accepted for r in results) and fake.in_flight == 0


async def test_closed_fake_refuses_sends() -> None:
    fake = FakeProvider()
    await fake.aclose()
    with pytest.raises(RuntimeError):
        await fake.send(message())


def test_webhooks_round_trip_and_are_verified() -> None:
    fake = FakeProvider(Channel.EMAIL)
    request = fake.webhook("fake_1", "delivered", event_id="e1", error_code=None)
    fake.verify_webhook(request)
    [event] = fake.parse_webhook(request)
    assert isinstance(event, DeliveryEvent)
    assert (event.event_type, event.provider_message_id, event.provider_event_id) == (
        EventType.DELIVERED,
        "fake_1",
        "e1",
    )
    [unknown] = fake.parse_webhook(fake.webhook("fake_1", "teleported"))
    assert unknown.event_type is EventType.UNKNOWN  # type: ignore[union-attr]
    with pytest.raises(WebhookVerificationError):
        fake.verify_webhook(fake.webhook("fake_1", "delivered", signed=False))
    with pytest.raises(WebhookVerificationError):
        fake.verify_webhook(replace(request, body=request.body.replace(b"delivered", b"read")))
    inbound = fake.inbound_webhook("b@example.com", "paid")
    fake.verify_webhook(inbound)
    [reply] = fake.parse_webhook(inbound)
    assert isinstance(reply, InboundMessage) and reply.body == "paid"
    assert fake.parse_webhook(replace(request, body=b"garbage")) == []


async def test_spec_builds_fakes_from_a_context() -> None:
    spec = FakeProvider.spec()
    built = spec.factory(
        ProviderContext(
            "acct", Channel.VOICE, {"latency": 0.0}, {"signing_secret": "k"}, "http://p"
        )
    )
    assert isinstance(built, FakeProvider)
    assert (built.channel, built.secret, built.webhook_url) == (
        Channel.VOICE,
        "k",
        "http://p/webhooks/fake/acct",
    )
    await built.aclose()
