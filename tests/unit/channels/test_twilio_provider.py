"""The Twilio provider: configuration, request shape, response mapping, callback parsing,
and sends against the local Twilio API peer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.channels.base import (
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    WebhookRequest,
)
from parley.channels.twilio import SPEC
from parley.channels.twilio.kit import TO_NUMBER, build, template
from parley.channels.twilio.provider import (
    TwilioProvider,
    callback_time,
    parse_retry_after,
    response_result,
)
from parley.channels.twilio.statuses import STATUS_EVENTS, event_type
from parley.domain.channels import Channel
from parley.domain.status import EventType
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, TwilioApiPeer

SID = "SM1f0e2d3c4b5a69788796a5b4c3d2e1f0"


def provider(**config: Any) -> TwilioProvider:
    context = ProviderContext(
        account_id="acct-9",
        channel=Channel.SMS,
        config={"account_sid": DEFAULT_ACCOUNT_SID, "from_number": "+15005550006", **config},
        secrets={"auth_token": "tok"},
        public_base_url="https://parley.example.com/",
    )
    built = SPEC.factory(context)
    assert isinstance(built, TwilioProvider)
    return built


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "secrets", "named"),
    [
        ({}, {}, ["account_sid", "auth_token", "from_number"]),
        (
            {"account_sid": "XX1", "from_number": "+15005550006"},
            {"auth_token": "t"},
            ["account_sid"],
        ),
        (
            {"account_sid": DEFAULT_ACCOUNT_SID, "from_number": "555"},
            {"auth_token": "t"},
            ["from_number"],
        ),
        (
            {"account_sid": DEFAULT_ACCOUNT_SID, "messaging_service_sid": "MG1"},
            {"auth_token": "t"},
            ["messaging_service_sid"],
        ),
        (
            {
                "account_sid": DEFAULT_ACCOUNT_SID,
                "from_number": "+15005550006",
                "base_url": "ftp://x",
            },
            {"auth_token": "t"},
            ["base_url"],
        ),
        (
            {
                "account_sid": DEFAULT_ACCOUNT_SID,
                "from_number": "+15005550006",
                "max_concurrency": 0,
            },
            {"auth_token": "t"},
            ["max_concurrency"],
        ),
    ],
)
def test_invalid_config_names_the_fields(
    config: dict[str, Any], secrets: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(ProviderConfigError) as caught:
        SPEC.factory(ProviderContext("a", Channel.SMS, config, secrets, ""))
    for field in named:
        assert field in str(caught.value)
    assert "t" * 3 not in str(caught.value)


def test_form_fields() -> None:
    message = replace(template(), sender=None)
    assert dict(provider().form(message)) == {
        "To": TO_NUMBER,
        "Body": message.body,
        "From": "+15005550006",
        "StatusCallback": "https://parley.example.com/webhooks/twilio/acct-9",
    }
    service = "MG" + "a" * 32
    via_service = provider(from_number=None, messaging_service_sid=service)
    fields = dict(via_service.form(replace(message, status_callback_url="https://cb.example/x")))
    assert "From" not in fields
    assert fields["MessagingServiceSid"] == service
    assert fields["StatusCallback"] == "https://cb.example/x"
    assert dict(provider().form(replace(message, sender="+15550001111")))["From"] == "+15550001111"
    assert provider().settings.messages_url == (
        f"https://api.twilio.com/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
    )


# -- response mapping ---------------------------------------------------------------


def _json(**fields: Any) -> bytes:
    return orjson.dumps(fields)


@pytest.mark.parametrize(
    ("status", "payload", "retry_after", "expected"),
    [
        (201, _json(sid=SID, num_segments="2", price="-0.0150"), None, (True, False, None, SID)),
        (429, _json(code=20429, message="Too Many Requests"), "5", (False, True, "20429", None)),
        (500, _json(code=20500, message="Internal"), None, (False, True, "20500", None)),
        (503, b"<html>busy</html>", None, (False, True, "503", None)),
        (
            400,
            _json(code=21211, message="Invalid 'To' Phone Number"),
            None,
            (False, False, "21211", None),
        ),
        (
            400,
            _json(code=21610, message="unsubscribed recipient"),
            None,
            (False, False, "21610", None),
        ),
        (403, _json(code=21408, message="Permission to send"), None, (False, False, "21408", None)),
        (401, _json(code=20003, message="Authenticate"), None, (False, True, "20003", None)),
        (404, b"", None, (False, False, "404", None)),
    ],
)
def test_response_mapping(
    status: int, payload: bytes, retry_after: str | None, expected: tuple[Any, ...]
) -> None:
    result = response_result(status, payload, retry_after)
    assert (
        result.accepted,
        result.retryable,
        result.error_code,
        result.provider_message_id,
    ) == expected
    assert not result.outcome_unknown


def test_accepted_response_details() -> None:
    result = response_result(201, _json(sid=SID, num_segments="2", price="-0.0150"), None)
    assert result.segments == 2 and result.cost == "0.0150"
    assert response_result(429, b"{}", "7").retry_after == 7.0
    assert response_result(400, _json(code=21211, message="bad To"), None).error_detail == "bad To"


def test_retry_after_forms() -> None:
    now = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None


# -- callbacks ----------------------------------------------------------------------


def callback(status: str, *, headers: dict[str, str] | None = None, **extra: str) -> WebhookRequest:
    params = {
        "MessageSid": SID,
        "SmsSid": SID,
        "MessageStatus": status,
        "SmsStatus": status,
        **extra,
    }
    return WebhookRequest(
        "POST",
        "https://parley.example.com/webhooks/twilio/acct-9",
        {"content-type": "application/x-www-form-urlencoded", **(headers or {})},
        urlencode(params).encode(),
    )


STATUS_TABLE = {
    "accepted": EventType.QUEUED,
    "scheduled": EventType.QUEUED,
    "queued": EventType.QUEUED,
    "sending": EventType.QUEUED,
    "sent": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "partially_delivered": EventType.DELIVERED,
    "undelivered": EventType.FAILED,
    "failed": EventType.FAILED,
    "canceled": EventType.FAILED,
    "read": EventType.READ,
    "SENT": EventType.SENT,
    "teleported": EventType.UNKNOWN,
    "": EventType.UNKNOWN,
}


@pytest.mark.parametrize(("status", "expected"), STATUS_TABLE.items())
def test_status_mapping(status: str, expected: EventType) -> None:
    assert event_type(status) is expected
    [event] = provider().parse_webhook(callback(status))
    assert isinstance(event, DeliveryEvent)
    assert event.event_type is expected
    assert event.provider_status == status.lower()


def test_every_documented_outbound_status_is_mapped() -> None:
    documented = {
        "queued", "sending", "sent", "delivered", "undelivered", "failed", "read",
        "accepted", "scheduled", "canceled", "partially_delivered",
    }  # fmt: skip
    assert documented <= set(STATUS_EVENTS)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("30003", "unreachable destination handset"),
        ("30005", "unknown destination handset"),
        ("30006", "landline or unreachable carrier"),
        ("30007", "message filtered by the carrier (spam)"),
        ("21610", "recipient has opted out (replied STOP)"),
        ("39999", "Twilio error 39999"),
    ],
)
def test_error_codes_keep_code_and_reason(code: str, reason: str) -> None:
    [event] = provider().parse_webhook(callback("undelivered", ErrorCode=code))
    assert isinstance(event, DeliveryEvent)
    assert (event.event_type, event.error_code, event.reason) == (EventType.FAILED, code, reason)


def test_event_id_prefers_the_idempotency_token() -> None:
    [plain] = provider().parse_webhook(callback("sent"))
    [tokened] = provider().parse_webhook(
        callback("sent", headers={"i-twilio-idempotency-token": "tok-123"})
    )
    assert plain.provider_event_id == f"{SID}:sent"  # type: ignore[union-attr]
    assert tokened.provider_event_id == "tok-123"  # type: ignore[union-attr]


def test_callback_time_sources() -> None:
    received = datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)
    assert callback_time({"Timestamp": "2024-03-01T11:59:00Z"}, received) == datetime(
        2024, 3, 1, 11, 59, tzinfo=UTC
    )
    assert callback_time({"Timestamp": "Fri, 01 Mar 2024 11:58:00 +0000"}, received).minute == 58
    assert callback_time({"RawDlrDoneDate": "2403011157"}, received) == datetime(
        2024, 3, 1, 11, 57, tzinfo=UTC
    )
    assert callback_time({"RawDlrDoneDate": "garbage"}, received) == received
    assert callback_time({}, received) == received
    before = datetime.now(UTC)
    [event] = provider().parse_webhook(callback("sent"))
    assert before <= event.occurred_at <= datetime.now(UTC)


def test_inbound_sms_and_whatsapp() -> None:
    sms = callback("received", From="+15558675310", To="+15005550006", Body="Pay Friday?")
    [inbound] = provider().parse_webhook(sms)
    assert isinstance(inbound, InboundMessage)
    assert (inbound.channel, inbound.sender, inbound.recipient, inbound.body) == (
        Channel.SMS, "+15558675310", "+15005550006", "Pay Friday?"
    )  # fmt: skip
    assert inbound.provider_message_id == SID
    wa = callback("received", From="whatsapp:+15558675310", To="whatsapp:+15005550006", Body="hi")
    [inbound] = provider().parse_webhook(wa)
    assert isinstance(inbound, InboundMessage)
    assert (inbound.channel, inbound.sender) == (Channel.WHATSAPP, "+15558675310")
    assert provider().parse_webhook(callback("receiving", Body="partial")) == []


def test_callback_without_sid_is_ignored() -> None:
    request = WebhookRequest("POST", "https://x/", {}, b"MessageStatus=delivered")
    assert provider().parse_webhook(request) == []


# -- sends against the peer ---------------------------------------------------------


async def test_request_reaches_the_peer_as_twilio_expects() -> None:
    async with TwilioApiPeer() as peer:
        sender = build(peer.base_url, "https://parley.example.com")
        message: OutboundMessage = replace(template(), body="Zoë, 120 € due 🙂")
        result = await sender.send(message)
        await sender.aclose()
    assert result.accepted and result.segments == 1
    [received] = peer.messages
    assert result.provider_message_id == received.sid
    assert received.sid.startswith("SM") and len(received.sid) == 34
    assert received.form == {
        "To": message.to,
        "Body": "Zoë, 120 € due 🙂",
        "From": "+15005550006",
        "StatusCallback": "https://parley.example.com/webhooks/twilio/kit-twilio",
    }


async def test_wrong_token_is_retryable_not_permanent() -> None:
    async with TwilioApiPeer(accounts={DEFAULT_ACCOUNT_SID: "the-real-token"}) as peer:
        sender = build(peer.base_url, "")
        result = await sender.send(template())
        await sender.aclose()
    assert (result.accepted, result.retryable, result.error_code) == (False, True, "20003")
    assert peer.stats.unauthorized == 1 and not peer.messages


async def test_timeout_after_the_request_was_sent_is_unknown() -> None:
    async with TwilioApiPeer() as peer:
        sender = build(peer.base_url, "", timeout=0.2)
        peer.stall_next(1.0)
        stalled = await sender.send(template())
        after = await sender.send(template())
        await sender.aclose()
    assert stalled.outcome_unknown and not stalled.retryable and stalled.error_code == "timeout"
    assert after.accepted
    assert peer.stats.accepted == 2, "the stalled request did create a message"


async def test_concurrency_is_bounded() -> None:
    async with TwilioApiPeer(latency=0.02) as peer:
        sender = build(peer.base_url, "", max_concurrency=3)
        results = await asyncio.gather(*(sender.send(template()) for _ in range(20)))
        await sender.aclose()
    assert all(r.accepted for r in results)
    assert peer.stats.max_in_flight == 3


@given(st.text())
def test_form_quote_is_quote_plus(text: str) -> None:
    from urllib.parse import quote_plus

    from parley.channels.twilio.provider import form_quote

    assert form_quote(text) == quote_plus(text)
    ascii_text = text.encode("ascii", "replace").decode()
    assert form_quote(ascii_text) == quote_plus(ascii_text)


def test_encoded_form_is_the_url_encoding_of_form():
    from urllib.parse import urlencode

    message = template()
    service = "MG" + "a" * 32
    for p in (provider(), provider(from_number=None, messaging_service_sid=service)):
        for m in (
            message,
            replace(message, body="Ünïcode & = + ? 💸", sender="+15550001111"),
            replace(message, status_callback_url="https://cb.example/x?a=1&b=2"),
            replace(message, sender=None),
        ):
            assert p.encoded_form(m) == urlencode(p.form(m)).encode()
