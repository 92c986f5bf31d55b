"""The Twilio voice account's contract: its callbacks (captured-style fixtures in
`tests/fixtures/providers/twilio_voice/`) verify as signed and are refused otherwise,
parse to the normalized events and call lifecycle they stand for, and the Voice API
peer's own callbacks verify and parse back to the calls that were created."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from parley.channels import registry
from parley.channels.base import ProviderConfigError, ProviderContext, WebhookVerificationError
from parley.channels.testing import WebhookFixture, kinds
from parley.channels.twilio.provider import webhook_params
from parley.channels.twilio.voice import TwilioVoiceProvider
from parley.domain.channels import Channel
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from parley.peers.twilio_voice import TwilioVoicePeer
from parley.peers.webhook_receiver import WebhookReceiver
from parley.voice.lifecycle import attempt_result, borrower_call_status

FIXTURES = sorted(
    (Path(__file__).resolve().parents[1] / "fixtures/providers/twilio_voice").glob("*.json")
)


def provider(
    secrets: dict[str, str], *, base_url: str = "https://api.twilio.com", public: str = ""
) -> TwilioVoiceProvider:
    built = registry.build(
        "twilio",
        ProviderContext(
            account_id="kit-voice",
            channel=Channel.VOICE,
            config={
                "account_sid": DEFAULT_ACCOUNT_SID,
                "from_number": "+18005550100",
                "base_url": base_url,
            },
            secrets=secrets,
            public_base_url=public or "https://parley.example.com",
        ),
    )
    assert isinstance(built, TwilioVoiceProvider)
    return built


def _voice(path: Path) -> dict[str, Any]:
    import json

    return dict(json.loads(path.read_text())["voice"])


def test_fixtures_cover_every_call_status_twilio_reports() -> None:
    covered = {WebhookFixture.load(p).request.body.decode() for p in FIXTURES}
    for status in (
        "initiated",
        "ringing",
        "in-progress",
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
    ):
        assert any(f"CallStatus={status}&" in body for body in covered), status
    assert any("RecordingSid=" in body for body in covered)
    assert any("ConferenceSid=" in body for body in covered)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_verifies_parses_and_maps_to_the_call_lifecycle(path: Path) -> None:
    fixture = WebhookFixture.load(path)
    voice = provider(dict(fixture.secrets))
    voice.verify_webhook(fixture.request)
    items = voice.parse_webhook(fixture.request)
    assert kinds(items) == [e["type"] for e in fixture.expected]
    for item, expected in zip(items, fixture.expected, strict=True):
        for key, value in expected.items():
            actual = getattr(item, key) if key != "type" else item.event_type.value
            if key == "occurred_at":
                actual = actual.isoformat()
            assert actual == value, key
        assert item.raw
    params = webhook_params(fixture.request)
    expected = _voice(path)
    if "callStatus" in expected:
        status = params["CallStatus"]
        call_status = borrower_call_status(status)
        assert (call_status.value if call_status else None) == expected["callStatus"]
        if expected["result"] is not None:
            assert (
                attempt_result(
                    status, answered=status == "completed", answered_by=params.get("AnsweredBy")
                )
                == expected["result"]
            )
    if "conferenceSid" in expected:
        assert params["ConferenceSid"] == expected["conferenceSid"]
    if "recordingSid" in expected:
        assert params["RecordingSid"] == expected["recordingSid"]
        assert params["RecordingDuration"] == expected["recordingDuration"]


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_is_refused_unsigned_tampered_or_with_another_token(path: Path) -> None:
    fixture = WebhookFixture.load(path)
    voice = provider(dict(fixture.secrets))
    unsigned = replace(
        fixture.request,
        headers={k: v for k, v in fixture.request.headers.items() if k != "x-twilio-signature"},
    )
    forged = [
        unsigned,
        replace(fixture.request, body=fixture.request.body + b"&CallStatus=forged"),
        replace(fixture.request, body=fixture.request.body.replace(b"1", b"2", 1)),
        # The URL is signed: a callback for one call cannot be replayed at another.
        replace(fixture.request, url=fixture.request.url.replace("/calls/0", "/calls/1")),
    ]
    for request in forged:
        with pytest.raises(WebhookVerificationError):
            voice.verify_webhook(request)
    with pytest.raises(WebhookVerificationError):
        provider({"auth_token": "another-token"}).verify_webhook(fixture.request)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"from_number": None}, "from_number"),
        ({"from_number": "whatsapp:+18005550100"}, "caller id"),
        ({"from_number": "Parley"}, "E.164"),
    ],
)
def test_a_voice_account_needs_an_e164_caller_id(config: dict[str, Any], problem: str) -> None:
    base = {"account_sid": DEFAULT_ACCOUNT_SID, "from_number": "+18005550100"}
    merged = {k: v for k, v in {**base, **config}.items() if v is not None}
    with pytest.raises(ProviderConfigError, match=problem):
        registry.build(
            "twilio",
            ProviderContext(
                account_id="x",
                channel=Channel.VOICE,
                config=merged,
                secrets={"auth_token": "t"},
                public_base_url="https://parley.example.com",
            ),
        )


async def test_peer_callbacks_verify_and_parse_back_to_the_created_call() -> None:
    async with TwilioVoicePeer() as peer, WebhookReceiver() as receiver:
        voice = provider({"auth_token": DEFAULT_AUTH_TOKEN}, base_url=peer.base_url)
        twiml = '<?xml version="1.0"?><Response><Say>Hello</Say><Hangup/></Response>'
        response = await voice.create_call(
            to="+12125550123", twiml=twiml, status_callback=f"{receiver.base_url}/status"
        )
        assert response.ok and response.sid and response.sid.startswith("CA")
        async with asyncio.timeout(10):
            requests = await receiver.wait_for(4)
        statuses = []
        for request in requests:
            voice.verify_webhook(request)
            (event,) = voice.parse_webhook(request)
            assert event.provider_message_id == response.sid
            statuses.append(event.provider_status)
        assert statuses == ["initiated", "ringing", "in-progress", "completed"]
        assert peer.calls[response.sid].said == ["Hello"]
        await voice.aclose()


async def test_voice_api_errors_come_back_with_twilio_codes() -> None:
    async with TwilioVoicePeer() as peer:
        voice = provider({"auth_token": DEFAULT_AUTH_TOKEN}, base_url=peer.base_url)
        twiml = "<Response><Hangup/></Response>"
        bad_to = await voice.create_call(to="555-0100", twiml=twiml, status_callback=None)
        assert (bad_to.ok, bad_to.status, bad_to.error_code) == (False, 400, "21211")
        bad_twiml = await voice.create_call(
            to="+12125550123", twiml="<Response>", status_callback=None
        )
        assert bad_twiml.error_code == "12100"
        missing = await voice.update_call("CA" + "0" * 32, status="completed")
        assert (missing.status, missing.error_code) == (404, "20404")
        wrong = provider({"auth_token": "wrong"}, base_url=peer.base_url)
        denied = await wrong.create_call(to="+12125550123", twiml=twiml, status_callback=None)
        assert (denied.status, denied.error_code) == (401, "20003")
        await voice.aclose()
        await wrong.aclose()
    gone = await voice.create_call(to="+12125550123", twiml=twiml, status_callback=None)
    assert (gone.ok, gone.status, gone.error_code) == (False, 0, "connection_error")
    await voice.aclose()
