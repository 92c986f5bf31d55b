"""The sandbox voice account's contract as a `VoiceProvider` (no database): its settings
are checked, its simulated network answers Voice API requests as Twilio does (codes
included), its callbacks verify with the account's secret, are refused otherwise, and
read back to the calls that were created; closing it ends its live calls, and a leg it
no longer has is reported ended."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from parley.channels import registry
from parley.channels.base import (
    ProviderConfigError,
    ProviderContext,
    VoiceProvider,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.sandbox.provider import SandboxProvider
from parley.channels.sandbox.voice import EVENT_HEADER, SandboxVoiceProvider
from parley.domain.channels import Channel
from parley.peers.webhook_receiver import WebhookReceiver
from parley.voice import twiml

SECRET = "sandbox-voice-contract-secret"
BORROWER = "+12125550123"
SAY_AND_HANG_UP = twiml.say_and_hang_up("Hello")


def build(public: str, **config: Any) -> SandboxVoiceProvider:
    provider = registry.build(
        "sandbox",
        ProviderContext(
            account_id="acct-voice",
            channel=Channel.VOICE,
            config={"ring_seconds": 0, "talk_seconds": None, "voicemail_seconds": 0, **config},
            secrets={"signing_secret": SECRET},
            public_base_url=public,
        ),
    )
    assert isinstance(provider, SandboxVoiceProvider)
    return provider


async def collected(receiver: WebhookReceiver, count: int) -> list[WebhookRequest]:
    async with asyncio.timeout(10):
        return await receiver.wait_for(count)


def test_the_sandbox_places_live_calls_on_voice_only() -> None:
    assert "sandbox" in registry.call_providers() and "twilio" in registry.call_providers()
    voice = build("https://parley.example.com")
    assert isinstance(voice, VoiceProvider)
    assert voice.callback_url("inbound") == (
        "https://parley.example.com/webhooks/sandbox/acct-voice/voice/inbound"
    )
    sms = registry.build(
        "sandbox",
        ProviderContext(
            account_id="acct-sms",
            channel=Channel.SMS,
            config={"from_number": "Northwind"},  # a sender id, not a caller id: fine
            secrets={"signing_secret": SECRET},
            public_base_url="https://parley.example.com",
        ),
    )
    assert isinstance(sms, SandboxProvider) and not isinstance(sms, VoiceProvider)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"from_number": "Northwind"}, "caller id must be E.164"),
        ({"call_outcomes": {BORROWER: "maybe"}}, "must be one of"),
        ({"call_outcomes": {BORROWER: ["busy"]}}, "must be one of"),
        ({"call_outcomes": {"555-0100": "busy"}}, "not an E.164 number or endpoint"),
        ({"call_outcomes": ["busy"]}, "call_outcomes: must be an object"),
        ({"ring_seconds": -1}, "ring_seconds: must be between"),
        ({"talk_seconds": "long"}, "talk_seconds: must be a number"),
        ({"voicemail_seconds": 10_000}, "voicemail_seconds: must be between"),
    ],
)
def test_voice_settings_are_checked(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(ProviderConfigError, match=problem):
        build("https://parley.example.com", **config)


async def test_callbacks_verify_and_read_back_to_the_created_call() -> None:
    async with WebhookReceiver() as receiver:
        voice = build(receiver.base_url, from_number="+18005550100")
        response = await voice.create_call(
            to=BORROWER, twiml=SAY_AND_HANG_UP, status_callback=f"{receiver.base_url}/status"
        )
        assert response.ok and response.sid and response.sid.startswith("CA")
        statuses = []
        for request in await collected(receiver, 4):
            voice.verify_webhook(request)
            callback = voice.voice_callback(request)
            assert callback.params["CallSid"] == response.sid
            assert callback.params["From"] == "+18005550100"
            assert callback.dedupe_key == request.header(EVENT_HEADER)
            assert callback.occurred_at.tzinfo is not None
            statuses.append(callback.params["CallStatus"])
        assert statuses == ["initiated", "ringing", "in-progress", "completed"]
        assert len({r.header(EVENT_HEADER) for r in receiver.requests}) == 4
        assert voice.network.calls[response.sid].said == ["Hello"]

        signed = receiver.requests[0]
        unsigned = replace(
            signed, headers={k: v for k, v in signed.headers.items() if k != "x-sandbox-signature"}
        )
        for forged in (
            unsigned,
            replace(signed, body=signed.body + b"&CallStatus=busy"),
            replace(signed, body=signed.body.replace(b"initiated", b"completed")),
        ):
            with pytest.raises(WebhookVerificationError):
                voice.verify_webhook(forged)
        other = build(receiver.base_url)
        other.settings = replace(other.settings, signing_secret="another-secret")
        with pytest.raises(WebhookVerificationError):
            other.verify_webhook(signed)
        await voice.aclose()
        await other.aclose()


async def test_outcomes_answering_machines_and_twilio_error_codes() -> None:
    async with WebhookReceiver() as receiver:
        voice = build(
            receiver.base_url,
            call_outcomes={BORROWER: "busy", "+12125550199": "machine"},
        )
        busy = await voice.create_call(
            to=BORROWER, twiml=SAY_AND_HANG_UP, status_callback=f"{receiver.base_url}/a"
        )
        machine = await voice.create_call(
            to="+12125550199", twiml=SAY_AND_HANG_UP, status_callback=f"{receiver.base_url}/b"
        )
        requests = await collected(receiver, 7)
        by_sid: dict[str, list[dict[str, str]]] = {}
        for request in requests:
            params = voice.voice_callback(request).params
            by_sid.setdefault(params["CallSid"], []).append(params)
        assert [p["CallStatus"] for p in by_sid[str(busy.sid)]] == ["initiated", "ringing", "busy"]
        answered = [p for p in by_sid[str(machine.sid)] if p["CallStatus"] == "in-progress"]
        assert answered[0]["AnsweredBy"] == "machine_end_beep"

        bad_to = await voice.create_call(to="555-0100", twiml=SAY_AND_HANG_UP, status_callback=None)
        assert (bad_to.ok, bad_to.status, bad_to.error_code) == (False, 400, "21211")
        bad_twiml = await voice.create_call(to=BORROWER, twiml="<Response>", status_callback=None)
        assert bad_twiml.error_code == "12100"
        ended = await voice.update_call(str(busy.sid), status="completed")
        assert (ended.ok, ended.error_code) == (False, "21220")
        unknown = await voice.update_participant("CF0", str(busy.sid), muted=True)
        assert (unknown.status, unknown.error_code) == (404, "20404")
        await voice.aclose()
        gone = await voice.create_call(to=BORROWER, twiml=SAY_AND_HANG_UP, status_callback=None)
        assert (gone.ok, gone.error_code) == (False, "closed")


async def test_without_callbacks_no_call_is_placed() -> None:
    voice = build("https://parley.example.com", callbacks=False)
    refused = await voice.create_call(to=BORROWER, twiml=SAY_AND_HANG_UP, status_callback=None)
    assert (refused.ok, refused.error_code) == (False, "callbacks_disabled")
    assert voice.network.calls == {}
    await voice.aclose()


async def test_closing_ends_live_calls_and_a_lost_leg_is_reported_ended() -> None:
    async with WebhookReceiver() as receiver:
        voice = build(receiver.base_url, call_outcomes={BORROWER: "hold"})
        ringing = await voice.create_call(
            to=BORROWER, twiml=SAY_AND_HANG_UP, status_callback=f"{receiver.base_url}/status"
        )
        await collected(receiver, 2)  # initiated, ringing: it rings until hung up
        await voice.aclose()
        last = voice.voice_callback((await collected(receiver, 3))[-1]).params
        assert (last["CallSid"], last["CallStatus"]) == (ringing.sid, "canceled")

        # A new instance (the process restarted) does not know the leg: it reports it
        # ended to the number's status URL, which finds a call by its leg.
        fresh = build(receiver.base_url)
        answer = await fresh.update_call(str(ringing.sid), status="completed")
        assert (answer.ok, answer.error_code) == (False, "21220")
        request = (await collected(receiver, 4))[-1]
        fresh.verify_webhook(request)
        assert request.url.endswith("/webhooks/sandbox/acct-voice/voice/inbound/status")
        params = fresh.voice_callback(request).params
        assert (params["CallSid"], params["CallStatus"]) == (ringing.sid, "completed")
        await fresh.aclose()


async def test_a_simulated_inbound_call_asks_the_voice_url_and_runs_its_answer() -> None:
    async with WebhookReceiver(status=200, reply=SAY_AND_HANG_UP.encode()) as receiver:
        voice = build(receiver.base_url, from_number="+18005550100")
        leg = await voice.simulate_inbound_call(caller=BORROWER)
        (asked,) = await collected(receiver, 1)
        voice.verify_webhook(asked)
        assert asked.url.endswith("/voice/inbound")
        params = voice.voice_callback(asked).params
        assert (params["From"], params["To"], params["CallSid"]) == (
            BORROWER,
            "+18005550100",
            leg.sid,
        )
        completed = voice.voice_callback((await collected(receiver, 2))[-1]).params
        assert completed["CallStatus"] == "completed" and leg.said == ["Hello"]

        # Handed to a function instead of HTTP while `delivered_by` is in force.
        seen: list[str] = []

        async def deliver(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
            seen.append(url)
            return 200, SAY_AND_HANG_UP.encode()

        with voice.delivered_by(deliver):
            await voice.simulate_inbound_call(caller=BORROWER)
            await voice.network.settle()
        assert seen[0].endswith("/voice/inbound") and len(receiver.requests) == 2
        receiver.status = 503
        refused = await voice.simulate_inbound_call(caller=BORROWER)
        assert refused.status == "failed"
        await voice.aclose()
