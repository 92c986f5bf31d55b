"""The simulated telephone network on its own (callbacks collected in memory): legs ring,
answer or give their outcome, phones hang up by themselves after `talk_seconds` while
softphones stay, a leg hung up before it got going never rings, conferences record, and
requests are refused with Twilio's codes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from parley.voice import twiml
from parley.voice.network import NetworkError, PhoneNetwork, callback_time

ACCOUNT = "acct"
BORROWER = "+12125550123"
CALLER = "+18005550100"
ALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})


class Posted:
    def __init__(self) -> None:
        self.callbacks: list[tuple[str, dict[str, str]]] = []

    async def __call__(
        self, url: str, params: Mapping[str, str], account: str
    ) -> tuple[int, bytes]:
        assert account == ACCOUNT
        self.callbacks.append((url, dict(params)))
        return 200, b""

    def statuses(self, sid: str) -> list[str]:
        return [
            p["CallStatus"]
            for _, p in self.callbacks
            if p.get("CallSid") == sid and "CallStatus" in p
        ]


def conference(name: str = "parley-1", *, record: bool = False) -> str:
    return twiml.conference(
        name,
        status_callback="https://p/conference",
        record_callback="https://p/rec" if record else None,
    )


def dial(network: PhoneNetwork, to: str, document: str) -> Any:
    return network.dial(
        ACCOUNT,
        to=to,
        from_=CALLER,
        twiml=document,
        status_callback="https://p/status",
        status_events=ALL_EVENTS,
    )


async def test_phones_hang_up_after_talk_seconds_and_softphones_stay() -> None:
    posted = Posted()
    network = PhoneNetwork(posted, ring_seconds=0.01, talk_seconds=0.05)
    agent = dial(network, "client:ada", conference(record=True))
    borrower = dial(network, BORROWER, conference())
    async with asyncio.timeout(10):
        while borrower.status != "completed":
            await asyncio.sleep(0.01)
    await network.posted()
    assert posted.statuses(borrower.sid) == ["initiated", "ringing", "in-progress", "completed"]
    assert agent.status == "in-progress" and agent.conference == "parley-1"
    await network.hangup(agent.sid)  # the last one out ends the conference: it is recorded
    await network.posted()
    (recording,) = [p for _, p in posted.callbacks if "RecordingSid" in p]
    assert "RecordingUrl" not in recording and int(recording["RecordingDuration"]) >= 1
    ended = [p for _, p in posted.callbacks if p.get("CallStatus") == "completed"]
    assert all(callback_time(p).tzinfo is not None for p in ended)
    await network.close()


@pytest.mark.parametrize(
    ("outcome", "statuses"),
    [
        ("busy", ["initiated", "ringing", "busy"]),
        ("no-answer", ["initiated", "ringing", "no-answer"]),
        ("failed", ["initiated", "ringing", "failed"]),
        ("hold", ["initiated", "ringing"]),
        ("machine", ["initiated", "ringing", "in-progress", "completed"]),
    ],
)
async def test_outcomes(outcome: str, statuses: list[str]) -> None:
    posted = Posted()
    network = PhoneNetwork(posted, outcomes={BORROWER: outcome})
    call = dial(network, BORROWER, twiml.say_and_hang_up("Hello"))
    await network.settle()
    assert posted.statuses(call.sid) == statuses
    answered = [p for _, p in posted.callbacks if p.get("CallStatus") == "in-progress"]
    assert [p.get("AnsweredBy") for p in answered] == (
        ["machine_end_beep"] if outcome == "machine" else []
    )
    await network.close()


async def test_a_leg_hung_up_before_it_got_going_never_rings() -> None:
    posted = Posted()
    network = PhoneNetwork(posted)
    call = dial(network, BORROWER, twiml.say_and_hang_up("Hello"))
    await network.update(ACCOUNT, call.sid, status="completed")
    await network.settle()
    assert call.status == "canceled" and posted.statuses(call.sid) == ["canceled"]
    with pytest.raises(NetworkError) as ended:
        await network.update(ACCOUNT, call.sid, status="completed")
    assert ended.value.code == 21220


@pytest.mark.parametrize(
    ("to", "from_", "document", "code"),
    [
        ("", CALLER, "<Response/>", 21201),
        ("555-0100", CALLER, "<Response/>", 21211),
        (BORROWER, "", "<Response/>", 21213),
        (BORROWER, "Northwind", "<Response/>", 21212),
        (BORROWER, CALLER, "", 21205),
        (BORROWER, CALLER, "<Response>", 12100),
    ],
)
def test_requests_are_refused_with_twilio_codes(
    to: str, from_: str, document: str, code: int
) -> None:
    network = PhoneNetwork(Posted())
    with pytest.raises(NetworkError) as refused:
        network.dial(ACCOUNT, to=to, from_=from_, twiml=document, status_callback=None)
    assert refused.value.code == code and network.calls == {}
    with pytest.raises(NetworkError) as missing:
        network.find("another-account", "CA0")
    assert missing.value.code == 20404
    with pytest.raises(NetworkError):
        network.participant(ACCOUNT, "CF0", "CA0", muted="true")
