"""Click-to-call against the local Twilio Voice peer over real HTTP: the agent's leg, the
borrower dialed into the conference when the agent answers, signed callbacks, the live
controls reaching the peer, and the mandatory interaction log that closes the call."""

from __future__ import annotations

from typing import Any

import pytest

from parley.peers.twilio_voice import TwilioVoicePeer
from tests.support.compliance import us_borrower
from tests.support.live import live_api
from tests.support.voice import (
    CALLER_ID,
    available,
    call_json,
    eventually,
    presence_of,
    until,
    voice_account,
)

BORROWER = "+12125550123"


@pytest.fixture
async def peer():
    async with TwilioVoicePeer() as p:
        yield p


@pytest.fixture
async def wired(tenant, container, peer):
    """A voice account on the peer, the API served over HTTP, Ada available."""
    async with live_api(container) as base:
        account_id = await voice_account(container, tenant.organization_id, peer)
        data = await us_borrower(container, tenant.organization_id, phone=BORROWER)
        me = await available(tenant.client, "client:ada")
        yield {"base": base, "account": account_id, "case_id": data["case_id"], "me": me}


async def place(tenant: Any, case_id: str) -> dict[str, Any]:
    r = await tenant.client.post(f"/api/cases/{case_id}/calls", json={})
    assert r.status_code == 201, r.text
    return dict(r.json())


def legs(peer: TwilioVoicePeer, to: str) -> list[Any]:
    return [c for c in peer.calls.values() if c.to == to]


async def test_click_to_call_bridges_records_and_waits_for_its_log(tenant, container, peer, wired):
    call = await place(tenant, wired["case_id"])
    assert call["status"] == "connecting" and call["agentId"] == wired["me"]["agentId"]
    assert call["compliance"]["outcome"] == "allow"
    live = await until(tenant.client, call["callId"], "in_progress")
    assert live["answeredAt"] is not None and live["awaitingLog"] is False

    (agent_leg,) = legs(peer, "client:ada")
    (borrower_leg,) = legs(peer, BORROWER)
    assert agent_leg.from_ == borrower_leg.from_ == "+18005550100"
    conference = f"parley-{call['callId']}"
    assert conference in agent_leg.twiml and 'record="record-from-start"' in agent_leg.twiml
    assert conference in borrower_leg.twiml
    assert set(agent_leg.form["StatusCallbackEvent"]) == {
        "initiated",
        "ringing",
        "answered",
        "completed",
    }
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "busy"

    # The borrower hangs up: the agent's leg is hung up too, the call awaits its log.
    await peer.hangup(borrower_leg.sid)
    ended = await until(
        tenant.client, call["callId"], "awaiting_log", recording=lambda r: r is not None
    )
    assert ended["awaitingLog"] is True and ended["result"] == "conversation"
    assert ended["recording"]["recordingSid"].startswith("RE")
    assert ended["recording"]["url"].startswith(peer.base_url)
    await eventually(lambda: _ended(peer, agent_leg.sid))
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "busy"

    r = await tenant.client.get("/api/calls", params={"awaitingLog": "true", "agent": "me"})
    assert [c["callId"] for c in r.json()["calls"]] == [call["callId"]]

    # A call cannot be closed without its log, and blocks the agent's next call.
    r = await tenant.client.post(f"/api/calls/{call['callId']}/result", json={"result": "busy"})
    assert r.status_code == 409 and "/log" in r.json()["detail"]
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 409 and call["callId"] in r.json()["detail"]

    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log", json={"disposition": "promise_to_pay"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "promiseAmount"
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log",
        json={
            "disposition": "promise_to_pay",
            "notes": "Will pay on Friday",
            "followUpDate": "2099-01-05",
            "promiseAmount": "120.00",
            "promiseDate": "2099-01-03",
        },
    )
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["status"] == "completed" and closed["awaitingLog"] is False
    assert closed["log"]["disposition"] == "promise_to_pay"
    assert closed["log"]["promiseAmount"] == "120.00" and closed["log"]["promiseCurrency"] == "USD"
    assert closed["result"] == "conversation"
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"

    # Written once; a correction is a new log superseding it.
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log", json={"disposition": "spoke_to_customer"}
    )
    assert r.status_code == 409
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log",
        json={"disposition": "wrong_number", "correction": True},
    )
    assert r.status_code == 200, r.text
    corrected = r.json()
    assert corrected["log"]["supersedes"] == closed["log"]["logId"]
    assert corrected["result"] == "no_answer"
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT disposition FROM call_logs WHERE call_id = %s ORDER BY id", (call["callId"],)
        )
        assert [r[0] for r in await cur.fetchall()] == ["promise_to_pay", "wrong_number"]

    events = (await tenant.client.get(f"/api/calls/{call['callId']}/events")).json()["events"]
    statuses = [
        e["providerStatus"]
        for e in events
        if e["callSid"] == borrower_leg.sid and e["kind"] == "status"
    ]
    assert statuses[:3] == ["initiated", "ringing", "in-progress"]
    assert statuses[-1] == "completed"
    assert {e["kind"] for e in events} >= {"status", "conference", "recording"}
    assert all(e["raw"] for e in events)


async def test_an_outbound_call_is_from_our_number_to_the_borrower(tenant, container, peer, wired):
    """Regression: a click-to-call recorded no `from`. It is the caller id the peer was
    asked to place the borrower's leg from, on the calls API and the timeline alike."""
    call = await place(tenant, wired["case_id"])
    assert (call["direction"], call["from"], call["to"]) == ("outbound", CALLER_ID, BORROWER)
    await until(tenant.client, call["callId"], "in_progress")
    (borrower_leg,) = legs(peer, BORROWER)
    assert borrower_leg.from_ == CALLER_ID
    one = await call_json(tenant.client, call["callId"])
    assert (one["from"], one["to"]) == (CALLER_ID, BORROWER)
    (listed,) = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert (listed["from"], listed["to"]) == (CALLER_ID, BORROWER)
    (mine,) = (await tenant.client.get("/api/calls", params={"agent": "me"})).json()["calls"]
    assert (mine["from"], mine["to"]) == (CALLER_ID, BORROWER)
    r = await tenant.client.get(f"/api/borrowers/{call['borrowerId']}/timeline")
    assert r.status_code == 200, r.text
    (item,) = [i for i in r.json()["items"] if i["type"] == "call"]
    assert (item["direction"], item["from"], item["to"]) == ("outbound", CALLER_ID, BORROWER)
    await peer.hangup(borrower_leg.sid)
    await until(tenant.client, call["callId"], "awaiting_log")


async def _ended(peer: TwilioVoicePeer, sid: str) -> bool:
    return peer.calls[sid].status == "completed"


async def test_busy_borrower_ends_unconnected_and_only_no_answer_can_be_logged(
    tenant, container, peer, wired
):
    peer.outcomes[BORROWER] = "busy"
    call = await place(tenant, wired["case_id"])
    ended = await until(tenant.client, call["callId"], "awaiting_log")
    assert ended["result"] == "busy" and ended["answeredAt"] is None
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log", json={"disposition": "spoke_to_customer"}
    )
    assert r.status_code == 422 and "never connected" in r.json()["detail"]
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log", json={"disposition": "no_answer"}
    )
    assert r.status_code == 200 and r.json()["result"] == "busy"

    # The busy call does not count toward Reg F's 7-in-7: the next call's evidence says so.
    nxt = await place(tenant, wired["case_id"])
    r = await tenant.client.get(f"/api/calls/{nxt['callId']}/compliance")
    (decision,) = r.json()["decisions"]
    (attempt,) = [a for a in decision["facts"]["frequency"]["attempts"] if a["result"] == "busy"]
    assert {"rule": "reg_f_call_frequency", "why": "did_not_connect"} in attempt["excluded"]


async def test_no_answer_counts_and_an_agent_who_never_answers_dials_nobody(
    tenant, container, peer, wired
):
    peer.outcomes["client:ada"] = "no-answer"
    call = await place(tenant, wired["case_id"])
    canceled = await until(tenant.client, call["callId"], "canceled")
    assert canceled["result"] == "not_dialed" and canceled["awaitingLog"] is False
    assert legs(peer, BORROWER) == []
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"

    peer.outcomes.pop("client:ada")
    peer.outcomes[BORROWER] = "no-answer"
    call = await place(tenant, wired["case_id"])
    ended = await until(tenant.client, call["callId"], "awaiting_log")
    assert ended["result"] == "no_answer"


async def test_live_controls_reach_the_peer(tenant, container, peer, wired):
    call = await place(tenant, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "in_progress")
    await eventually(lambda: _conference_known(container, call_id))
    (agent_leg,) = legs(peer, "client:ada")
    (borrower_leg,) = legs(peer, BORROWER)

    r = await tenant.client.post(f"/api/calls/{call_id}/mute", json={"muted": True})
    assert r.status_code == 200 and r.json()["muted"] is True
    (conference,) = peer.conferences.values()
    assert conference.participants[agent_leg.sid] is True
    assert conference.participants[borrower_leg.sid] is False

    for bad in ({"digits": "12a"}, {"digits": ""}, {"digits": "1" * 33}, {}):
        r = await tenant.client.post(f"/api/calls/{call_id}/dtmf", json=bad)
        assert r.status_code == 422, bad
    r = await tenant.client.post(f"/api/calls/{call_id}/dtmf", json={"digits": "12w3#"})
    assert r.status_code == 200, r.text
    await eventually(lambda: _has_digits(peer, borrower_leg.sid))
    assert peer.calls[borrower_leg.sid].digits == ["12w3#"]
    # After the tones the borrower is back in the conference.
    await eventually(lambda: _in_conference(peer, borrower_leg.sid))

    r = await tenant.client.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 200
    hangups = [
        q for q in peer.requests if q.form.get("Status") == "completed" and q.path.endswith(".json")
    ]
    assert hangups
    await until(tenant.client, call_id, "awaiting_log")
    r = await tenant.client.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 409
    r = await tenant.client.post(f"/api/calls/{call_id}/mute", json={"muted": "maybe"})
    assert r.status_code == 422


async def _conference_known(container: Any, call_id: str) -> bool:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT conference_sid FROM calls WHERE id = %s", (call_id,))
        row = await cur.fetchone()
        return row is not None and row[0] is not None


async def _has_digits(peer: TwilioVoicePeer, sid: str) -> bool:
    return bool(peer.calls[sid].digits)


async def _in_conference(peer: TwilioVoicePeer, sid: str) -> bool:
    return peer.calls[sid].conference is not None
