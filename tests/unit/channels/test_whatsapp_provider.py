"""The WhatsApp Cloud provider's parts: request bodies, response and error-code mapping,
webhook parsing details the contract fixtures do not compare, settings, the handshake,
and sends/template listing against the local Graph API peer."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from parley.channels.base import (
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.testing import WebhookFixture
from parley.channels.whatsapp import errors, kit, payloads, webhooks
from parley.channels.whatsapp.config import parse_settings
from parley.channels.whatsapp.provider import (
    MediaContent,
    MediaFetchError,
    TemplateListError,
    WhatsAppCloudProvider,
    response_result,
)
from parley.domain.channels import Channel
from parley.domain.status import EventType
from parley.peers.webhook_receiver import WebhookReceiver
from parley.peers.whatsapp_api import PeerTemplate, WhatsAppApiPeer
from parley.services import whatsapp_templates, whatsapp_window

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers" / "whatsapp_cloud"


def _message(**changes: Any) -> OutboundMessage:
    return replace(kit.template(), **changes)


# -- request bodies -----------------------------------------------------------------


def test_text_body() -> None:
    body = payloads.request_body(_message(to="+12025550123", body="Hello"))
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "12025550123",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
    }


def test_template_body_carries_language_and_body_parameters() -> None:
    spec = {"type": "template", "name": "due", "language": "es_MX", "parameters": ["Ana", "$5"]}
    body = payloads.request_body(_message(whatsapp=spec))
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "due",
        "language": {"code": "es_MX"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "$5"}],
            }
        ],
    }
    bare = payloads.request_body(_message(whatsapp={**spec, "parameters": []}))
    assert "components" not in bare["template"]


def test_media_bodies_use_the_message_body_as_caption() -> None:
    doc = {"type": "document", "url": "https://x.test/a.pdf", "filename": "a.pdf"}
    body = payloads.request_body(_message(body="Your statement", whatsapp=doc))
    assert body["document"] == {
        "link": "https://x.test/a.pdf",
        "caption": "Your statement",
        "filename": "a.pdf",
    }
    image = {"type": "image", "url": "https://x.test/a.png", "filename": None}
    assert payloads.request_body(_message(body="", whatsapp=image))["image"] == {
        "link": "https://x.test/a.png"
    }


def test_quick_replies_become_interactive_reply_buttons() -> None:
    spec = {"type": "interactive", "buttons": [{"id": "qr_1", "title": "Pay now"}]}
    body = payloads.request_body(_message(body="Choose", whatsapp=spec))
    assert body["interactive"] == {
        "type": "button",
        "body": {"text": "Choose"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "qr_1", "title": "Pay now"}}]},
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "sticker"},
        {"type": "template", "language": "en_US"},
        {"type": "image"},
        {"type": "interactive", "buttons": []},
    ],
)
def test_unsendable_payloads_raise(spec: dict[str, Any]) -> None:
    with pytest.raises(payloads.PayloadError):
        payloads.request_body(_message(whatsapp=spec))


# -- responses and error codes -------------------------------------------------------


def _error_body(code: int) -> bytes:
    return orjson.dumps({"error": {"message": "m", "type": "OAuthException", "code": code}})


def test_accepted_response_yields_the_wamid() -> None:
    ok = response_result(200, b'{"messages":[{"id":"wamid.X"}]}')
    assert ok.accepted and ok.provider_message_id == "wamid.X"
    no_id = response_result(200, b'{"messages":[]}')
    assert not no_id.accepted and no_id.outcome_unknown and not no_id.retryable


@pytest.mark.parametrize(
    ("status", "code", "retryable", "retry_after"),
    [
        (400, 131047, False, None),
        (400, 131026, False, None),
        (429, 130429, True, None),
        (400, 131056, True, 6.0),
        (400, 135000, False, None),  # unknown code, 4xx: permanent
        (500, 135000, True, None),  # unknown code, 5xx: Meta's trouble, retry
        (401, 190, True, None),  # the account's token, not the message
    ],
)
def test_error_codes_map_to_retry_decisions(
    status: int, code: int, retryable: bool, retry_after: float | None
) -> None:
    result = response_result(status, _error_body(code))
    assert not result.accepted and not result.outcome_unknown
    assert result.error_code == str(code)
    assert result.retryable is retryable
    assert result.retry_after == retry_after


def test_unknown_codes_are_categorized_unknown() -> None:
    assert errors.reason("999") == "unknown: WhatsApp error 999"
    assert errors.reason("131047").startswith("outside_window:")
    assert errors.classify(None, 503).retryable
    assert not errors.classify(None, 400).retryable
    garbage = response_result(502, b"<html>bad gateway</html>")
    assert garbage.retryable and garbage.error_code == "502"


# -- webhooks ----------------------------------------------------------------------


def _parsed(name: str) -> list[Any]:
    fixture = WebhookFixture.load(FIXTURES / f"{name}.json")
    return webhooks.parse(fixture.request)


def test_inbound_media_keeps_what_the_inbox_needs_to_fetch_it() -> None:
    (image,) = _parsed("inbound_image")
    (media,) = image.media
    assert media.content_type == "image/jpeg" and media.provider_media_id == "1203948576102938"
    assert media.caption == "Here is my receipt" and media.url is None
    (document,) = _parsed("inbound_document")
    assert document.media[0].filename == "bank-statement.pdf"
    assert document.media[0].content_type == "application/pdf"
    assert document.channel is Channel.WHATSAPP and document.sender == "+12025550123"


def _request(value: dict[str, Any]) -> WebhookRequest:
    doc = {"entry": [{"changes": [{"field": "messages", "value": value}]}]}
    return WebhookRequest("POST", "https://x.test/hook", {}, orjson.dumps(doc))


def test_other_media_and_unsupported_types_are_kept_for_an_agent() -> None:
    audio, other, broken = webhooks.parse(
        _request(
            {
                "messages": [
                    {"from": "1555", "id": "w1", "timestamp": "1", "type": "audio", "audio": {}},
                    {"from": "1555", "id": "w2", "timestamp": "1", "type": "location"},
                    {"from": "1555", "id": "w3", "type": "text", "text": "not an object"},
                    {"id": "no-sender", "type": "text"},
                ]
            }
        )
    )
    assert audio.kind == "media" and audio.media[0].content_type == "application/octet-stream"
    assert other.kind == "unsupported" and "location" in other.body
    assert broken.body == "" and broken.occurred_at.tzinfo is not None


def test_status_without_errors_and_failed_without_code() -> None:
    (failed,) = webhooks.parse(
        _request({"statuses": [{"id": "wamid.1", "status": "FAILED", "timestamp": "x"}]})
    )
    assert failed.event_type is EventType.FAILED
    assert failed.reason == "unknown: WhatsApp error without a code"
    assert failed.provider_event_id == "wamid.1:failed" and failed.error_code is None


def test_template_status_updates_are_read_separately() -> None:
    fixture = WebhookFixture.load(FIXTURES / "template_status_update.json")
    (update,) = webhooks.template_updates(fixture.request.body)
    assert (update.name, update.language, update.status) == (
        "payment_reminder",
        "en_US",
        "REJECTED",
    )
    assert update.reason == "INCORRECT_CATEGORY"
    assert update.provider_template_id == "594425479261596"
    assert webhooks.template_updates(b"[]") == []
    assert webhooks.parse(fixture.request) == []


def test_signature_is_over_the_raw_bytes() -> None:
    body = b'{"entry": []}'
    request = WebhookRequest(
        "POST",
        "https://x.test",
        {"x-hub-signature-256": webhooks.signature("s3cret", body)},
        body,
    )
    webhooks.verify("s3cret", request)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify("s3cret", replace(request, body=b'{"entry":[]}'))
    with pytest.raises(WebhookVerificationError):
        webhooks.verify("other", request)


# -- settings and handshake ---------------------------------------------------------


def _context(config: dict[str, Any], secrets: dict[str, str] | None = None) -> ProviderContext:
    return ProviderContext(
        account_id="a",
        channel=Channel.WHATSAPP,
        config=config,
        secrets=dict(kit.SECRETS) if secrets is None else secrets,
        public_base_url="https://parley.test",
    )


def test_settings_name_every_problem() -> None:
    with pytest.raises(ProviderConfigError) as caught:
        parse_settings(
            _context(
                {"phone_number_id": "abc", "api_version": "21", "base_url": "ftp://x"},
                {"access_token": "t"},
            )
        )
    message = str(caught.value)
    for name in ("phone_number_id", "api_version", "base_url", "app_secret"):
        assert name in message
    settings = parse_settings(_context({"phone_number_id": 123, "waba_id": "456"}))
    assert settings.messages_url == "https://graph.facebook.com/v21.0/123/messages"
    assert settings.templates_url == "https://graph.facebook.com/v21.0/456/message_templates"


def test_subscription_challenge() -> None:
    provider = WhatsAppCloudProvider(parse_settings(_context(dict(kit.CONFIG))))
    query = {"hub.mode": "subscribe", "hub.verify_token": "kit-verify-token", "hub.challenge": "42"}
    assert provider.subscription_challenge(query) == "42"
    for bad in ({"hub.verify_token": "nope"}, {"hub.mode": "unsubscribe"}, {"hub.challenge": ""}):
        with pytest.raises(WebhookVerificationError):
            provider.subscription_challenge({**query, **bad})
    secrets = {k: v for k, v in kit.SECRETS.items() if k != "verify_token"}
    unset = WhatsAppCloudProvider(parse_settings(_context(dict(kit.CONFIG), secrets)))
    with pytest.raises(WebhookVerificationError):
        unset.subscription_challenge(query)


# -- against the peer ---------------------------------------------------------------


async def test_peer_enforces_the_window_like_meta() -> None:
    """Meta accepts a free-form message outside the window and fails it later (131047);
    templates go through. (Parley refuses such messages before they get here.)"""
    async with (
        WebhookReceiver() as receiver,
        WhatsAppApiPeer(
            webhook_url=receiver.base_url + "/hook",
            enforce_window=True,
            templates=[PeerTemplate("hello", "en_US", body="Hi {{1}}")],
        ) as peer,
    ):
        provider = kit.build(peer.base_url, receiver.base_url)
        try:
            text = await provider.send(_message())
            spec = {"type": "template", "name": "hello", "language": "en_US"}
            template = await provider.send(_message(whatsapp={**spec, "parameters": ["A"]}))
            wrong = await provider.send(_message(whatsapp={**spec, "parameters": []}))
            assert text.accepted and template.accepted
            assert wrong.error_code == "132000" and not wrong.retryable
            count = await peer.deliver_callbacks()
            async with asyncio.timeout(10):
                requests = await receiver.wait_for(count)
            events = [e for r in requests for e in provider.parse_webhook(r)]
            by_message = {(e.provider_message_id, e.event_type) for e in events}
            assert (text.provider_message_id, EventType.FAILED) in by_message
            assert (template.provider_message_id, EventType.DELIVERED) in by_message
            (failed,) = [e for e in events if e.event_type is EventType.FAILED]
            assert failed.error_code == "131047"
        finally:
            await provider.aclose()


async def test_template_listing_follows_cursors_and_reports_errors() -> None:
    templates = [PeerTemplate(f"t{i:03}", "en_US") for i in range(230)]
    async with WhatsAppApiPeer(templates=templates) as peer:
        provider = kit.build(peer.base_url, "https://parley.test")
        assert isinstance(provider, WhatsAppCloudProvider)
        try:
            listed = await provider.list_templates()
            assert [t.name for t in listed] == [t.name for t in templates]
            assert [r.get("after") for r in peer.template_requests] == [None, "100", "200"]
            peer.access_token = "rotated"
            with pytest.raises(TemplateListError, match="401"):
                await provider.list_templates()
        finally:
            await provider.aclose()


# -- template text and the window ---------------------------------------------------


def test_template_placeholders() -> None:
    text = "Hi {{1}}, {{2}} is due; {{1}} again"
    assert whatsapp_templates.parameter_count(text) == 2
    assert whatsapp_templates.render(text, ["Pat", "$5"]) == "Hi Pat, $5 is due; Pat again"
    assert whatsapp_templates.parameter_count(None) == 0
    components = [{"type": "HEADER", "text": "x"}, {"type": "BODY", "text": text}]
    assert whatsapp_templates.body_text(components) == text


def test_window_is_open_for_24_hours_after_the_last_inbound_message() -> None:
    last = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert whatsapp_window.WindowState(last, last + timedelta(hours=23, minutes=59)).is_open
    closed = whatsapp_window.WindowState(last, last + timedelta(hours=24))
    assert not closed.is_open
    assert "closed since 2026-03-02T12:00:00Z" in closed.explain("+12025550123")
    assert not whatsapp_window.WindowState(None, last).is_open
    assert whatsapp_window.is_session_message(None)
    assert whatsapp_window.is_session_message({"type": "image"})
    assert not whatsapp_window.is_session_message({"type": "template"})


async def test_inbound_media_is_downloaded_by_its_media_id() -> None:
    async with (
        WebhookReceiver() as receiver,
        WhatsAppApiPeer(webhook_url=receiver.base_url + "/hook") as peer,
    ):
        provider = kit.build(peer.base_url, receiver.base_url)
        assert isinstance(provider, WhatsAppCloudProvider)
        try:
            pdf = b"%PDF-1.7 statement"
            await peer.send_inbound("+12025550123", "document", filename="s.pdf", content=pdf)
            (request,) = receiver.requests
            (item,) = provider.parse_webhook(request)
            (media,) = item.media
            assert media.provider_media_id is not None
            fetched = await provider.fetch_media(media.provider_media_id)
            assert fetched == MediaContent(pdf, "application/pdf")
            with pytest.raises(MediaFetchError, match="404"):
                await provider.fetch_media("999")
            with pytest.raises(MediaFetchError, match="numeric"):
                await provider.fetch_media("../messages")
            with pytest.raises(MediaFetchError, match="larger"):
                await provider.fetch_media(media.provider_media_id, max_bytes=4)
            location = {"latitude": 38.9, "longitude": -77.0, "name": "Branch office"}
            await peer.send_inbound("+12025550123", "location", part=location)
            (unsupported,) = provider.parse_webhook(receiver.requests[-1])
            assert unsupported.kind == "unsupported" and unsupported.raw["location"] == location
        finally:
            await provider.aclose()
