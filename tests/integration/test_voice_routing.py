"""Click-to-call around the happy path: transfers, inbound calls reaching the case's agent,
presence rules, forward-only and deduplicated callbacks, signatures, tenant isolation,
and the activity events a call emits."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import psycopg
import pytest
from twilio.request_validator import RequestValidator

from parley.peers.twilio_api import DEFAULT_AUTH_TOKEN
from parley.peers.twilio_voice import TwilioVoicePeer
from parley.storage.models import Case
from tests.support.compliance import us_borrower
from tests.support.live import live_api
from tests.support.voice import (
    CALLER_ID,
    agent_client,
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
    async with live_api(container) as base:
        account_id = await voice_account(container, tenant.organization_id, peer)
        data = await us_borrower(container, tenant.organization_id, phone=BORROWER)
        yield {"base": base, "account": str(account_id), "case_id": data["case_id"]}


def hook(wired: dict[str, Any], path: str) -> str:
    return f"{wired['base']}/webhooks/twilio/{wired['account']}/voice/{path}"


async def place(client: Any, case_id: str) -> dict[str, Any]:
    r = await client.post(f"/api/cases/{case_id}/calls", json={})
    assert r.status_code == 201, r.text
    return dict(r.json())


def leg_to(peer: TwilioVoicePeer, to: str) -> Any:
    (leg,) = [c for c in peer.calls.values() if c.to == to]
    return leg


async def test_presence_rules_for_placing_a_call(tenant, container, peer, wired):
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 409 and "presence is offline" in r.json()["detail"]
    r = await tenant.client.put("/api/agents/me/presence", json={"status": "available"})
    assert r.status_code == 200
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 409 and "endpoint" in r.json()["detail"]
    for bad in (
        {"status": "sleeping"},
        {"status": "available", "endpoint": "ada"},
        {"status": "available", "endpoint": "client:a b"},
        {"status": "available", "extra": 1},
    ):
        r = await tenant.client.put("/api/agents/me/presence", json=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("application/problem+json")
    await available(tenant.client, "sip:ada@pbx.example.com")
    r = await tenant.client.put("/api/agents/me/presence", json={"status": "away"})
    assert r.json()["endpoint"] == "sip:ada@pbx.example.com"
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 409 and "presence is away" in r.json()["detail"]
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM calls")
        assert (await cur.fetchone())[0] == 0, "a refused call leaves nothing behind"
    assert peer.calls == {}


async def test_blind_transfer_hands_the_call_and_its_log_to_the_other_agent(
    tenant, container, peer, wired
):
    me = await available(tenant.client, "client:ada")
    bob_id, bob = await agent_client(container, tenant, "Bob")
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "in_progress")

    r = await tenant.client.post(
        f"/api/calls/{call_id}/transfer", json={"toAgentId": str(bob_id), "mode": "blind"}
    )
    assert r.status_code == 409 and "must be available" in r.json()["detail"]
    await available(bob, "client:bob")
    for bad in ({"toAgentId": "nope"}, {"toAgentId": str(bob_id), "mode": "sideways"}):
        r = await tenant.client.post(f"/api/calls/{call_id}/transfer", json=bad)
        assert r.status_code == 422
    r = await tenant.client.post(
        f"/api/calls/{call_id}/transfer", json={"toAgentId": str(uuid.uuid4())}
    )
    assert r.status_code == 404
    r = await tenant.client.post(
        f"/api/calls/{call_id}/transfer", json={"toAgentId": str(bob_id), "mode": "blind"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["agentId"] == str(bob_id)
    ada_leg, bob_leg = leg_to(peer, "client:ada"), leg_to(peer, "client:bob")
    await eventually(lambda: _status(peer, ada_leg.sid, "completed"))
    await eventually(lambda: _status(peer, bob_leg.sid, "in-progress"))
    assert await presence_of(tenant.client, me["agentId"]) == "available"
    assert await presence_of(tenant.client, bob_id) == "busy"
    # The borrower is still on the line, now with Bob.
    borrower_leg = leg_to(peer, BORROWER)
    assert (await call_json(tenant.client, call_id))["status"] == "in_progress"
    assert peer.conferences[f"parley-{call_id}"].participants.keys() == {
        borrower_leg.sid,
        bob_leg.sid,
    }

    await peer.hangup(borrower_leg.sid)
    await until(tenant.client, call_id, "awaiting_log")
    mine = (await bob.get("/api/calls", params={"awaitingLog": "true", "agent": "me"})).json()
    assert [c["callId"] for c in mine["calls"]] == [call_id]
    r = await bob.post(f"/api/calls/{call_id}/log", json={"disposition": "callback_requested"})
    assert r.status_code == 200, r.text
    assert await presence_of(tenant.client, bob_id) == "available"
    await bob.aclose()


async def test_warm_transfer_keeps_the_first_agent_until_they_leave(tenant, container, peer, wired):
    me = await available(tenant.client, "client:ada")
    bob_id, bob = await agent_client(container, tenant, "Bob")
    await available(bob, "client:bob")
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "in_progress")
    r = await tenant.client.post(f"/api/calls/{call_id}/leave")
    assert r.status_code == 409 and "hang up instead" in r.json()["detail"]

    r = await tenant.client.post(
        f"/api/calls/{call_id}/transfer", json={"toAgentId": str(bob_id), "mode": "warm"}
    )
    assert r.status_code == 200 and r.json()["agentId"] == me["agentId"]
    bob_leg = leg_to(peer, "client:bob")
    await eventually(lambda: _status(peer, bob_leg.sid, "in-progress"))
    await eventually(lambda: _legs_answered(container, call_id, 2))
    conference = peer.conferences[f"parley-{call_id}"]
    assert len(conference.participants) == 3  # borrower, Ada and Bob talk together

    r = await tenant.client.post(f"/api/calls/{call_id}/leave")
    assert r.status_code == 200, r.text
    after = await until(tenant.client, call_id, "in_progress", agentId=lambda a: a == str(bob_id))
    assert after["status"] == "in_progress"
    assert await presence_of(tenant.client, me["agentId"]) == "available"
    assert await presence_of(tenant.client, bob_id) == "busy"
    await bob.aclose()


async def _status(peer: TwilioVoicePeer, sid: str, status: str) -> bool:
    return peer.calls[sid].status == status


async def _legs_answered(container: Any, call_id: str, count: int) -> bool:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM call_legs WHERE call_id = %s AND role = 'agent' "
            "AND answered_at IS NOT NULL",
            (call_id,),
        )
        return (await cur.fetchone())[0] == count


async def test_inbound_call_reaches_the_assigned_agent(tenant, container, peer, wired):
    ada = await available(tenant.client, "client:ada")
    bob_id, bob = await agent_client(container, tenant, "Bob")
    await available(bob, "client:bob")
    async with container.db.session() as s:
        case = await s.get(Case, uuid.UUID(wired["case_id"]))
        case.assigned_agent_id = bob_id
        await s.commit()

    inbound = await peer.place_inbound(
        hook(wired, "inbound"),
        from_=BORROWER,
        to=CALLER_ID,
        status_callback=hook(wired, "inbound/status"),
    )
    assert "<Conference" in inbound.twiml
    bob_leg = leg_to(peer, "client:bob")
    (call,) = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert call["direction"] == "inbound" and call["agentId"] == str(bob_id)
    assert call["placedAt"] is None  # the borrower's call is no attempt of ours
    live = await until(tenant.client, call["callId"], "in_progress")
    assert live["answeredAt"] is not None
    assert await presence_of(tenant.client, bob_id) == "busy"
    assert await presence_of(tenant.client, ada["agentId"]) == "available"
    assert set(peer.conferences[f"parley-{call['callId']}"].participants) == {
        inbound.sid,
        bob_leg.sid,
    }

    await peer.hangup(inbound.sid)
    ended = await until(tenant.client, call["callId"], "awaiting_log")
    assert ended["awaitingLog"] is True
    r = await bob.post(f"/api/calls/{call['callId']}/log", json={"disposition": "dispute"})
    assert r.status_code == 200, r.text
    await bob.aclose()


async def test_inbound_call_is_from_the_borrower_to_our_number(tenant, container, peer, wired):
    """Regression: an inbound call's `to` was the caller's own number (the webhook's
    `From`), on the calls API and the borrower's timeline alike."""
    await available(tenant.client, "client:ada")
    # A second number of ours (not the account's caller id), so the test tells the
    # webhook's `To` from the account fallback.
    dialed = "+18005550111"
    inbound = await peer.place_inbound(
        hook(wired, "inbound"),
        from_=BORROWER,
        to=dialed,
        status_callback=hook(wired, "inbound/status"),
    )
    (call,) = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert (call["from"], call["to"]) == (BORROWER, dialed)
    one = await call_json(tenant.client, call["callId"])
    assert (one["direction"], one["from"], one["to"]) == ("inbound", BORROWER, dialed)
    r = await tenant.client.get(f"/api/borrowers/{call['borrowerId']}/timeline")
    assert r.status_code == 200, r.text
    (item,) = [i for i in r.json()["items"] if i["type"] == "call"]
    assert (item["from"], item["to"]) == (BORROWER, dialed)
    await peer.hangup(inbound.sid)
    await until(tenant.client, call["callId"], "awaiting_log")


async def test_inbound_call_rings_another_agent_or_takes_a_voicemail(
    tenant, container, peer, wired
):
    # The case's agent (Bob) is away: Ada, available, takes the call.
    ada = await available(tenant.client, "client:ada")
    bob_id, bob = await agent_client(container, tenant, "Bob")
    async with container.db.session() as s:
        case = await s.get(Case, uuid.UUID(wired["case_id"]))
        case.assigned_agent_id = bob_id
        await s.commit()
    first = await peer.place_inbound(
        hook(wired, "inbound"),
        from_=BORROWER,
        to=CALLER_ID,
        status_callback=hook(wired, "inbound/status"),
    )
    leg_to(peer, "client:ada")
    calls = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert calls[0]["agentId"] == ada["agentId"]
    await until(tenant.client, calls[0]["callId"], "in_progress")

    # Nobody is available now (Ada is on the call): the next caller leaves a voicemail,
    # and the case's agent logs it.
    second = await peer.place_inbound(
        hook(wired, "inbound"),
        from_=BORROWER,
        to=CALLER_ID,
        status_callback=hook(wired, "inbound/status"),
    )
    assert "<Record" in second.twiml and second.status == "completed"
    calls = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    voicemail = calls[0]  # newest first
    assert voicemail["direction"] == "inbound" and len(calls) == 2
    ended = await until(
        tenant.client, voicemail["callId"], "awaiting_log", recording=lambda r: r is not None
    )
    assert ended["agentId"] == str(bob_id)
    await peer.hangup(first.sid)

    # An unknown number hears a message; nothing is recorded.
    stranger = await peer.place_inbound(hook(wired, "inbound"), from_="+14155550199", to=CALLER_ID)
    assert "<Say>" in stranger.twiml and "<Hangup/>" in stranger.twiml
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM calls")
        assert (await cur.fetchone())[0] == 2
    await bob.aclose()


async def test_callbacks_are_signed_deduplicated_and_only_move_forward(
    tenant, container, peer, wired
):
    await available(tenant.client, "client:ada")
    peer.outcomes[BORROWER] = "hold"  # the borrower's phone keeps ringing
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "ringing")
    borrower_leg = leg_to(peer, BORROWER)
    url = hook(wired, f"calls/{call_id}/status")

    def params(status: str, seq: int) -> dict[str, str]:
        return {
            "AccountSid": borrower_leg.account_sid,
            "CallSid": borrower_leg.sid,
            "CallStatus": status,
            "SequenceNumber": str(seq),
            "Timestamp": f"Tue, 10 Jun 2025 13:00:0{seq} +0000",
        }

    # The peer signs as Twilio does: the official validator agrees.
    headers, body = peer.signed_request(url, params("no-answer", 7))
    assert RequestValidator(DEFAULT_AUTH_TOKEN).validate(
        url, params("no-answer", 7), headers["X-Twilio-Signature"]
    )

    # A terminal status, twice (a retried callback), then a late "ringing".
    assert (await peer.post_signed(url, params("no-answer", 7)))[0] == 200
    assert (await peer.post_signed(url, params("no-answer", 7)))[0] == 200
    assert (await peer.post_signed(url, params("ringing", 1)))[0] == 200
    ended = await call_json(tenant.client, call_id)
    assert ended["status"] == "awaiting_log" and ended["result"] == "no_answer"
    events = (await tenant.client.get(f"/api/calls/{call_id}/events")).json()["events"]
    mine = [e for e in events if e["callSid"] == borrower_leg.sid and e["kind"] == "status"]
    assert [(e["providerStatus"], e["applied"]) for e in mine][-2:] == [
        ("no-answer", True),
        ("ringing", False),
    ]
    assert sum(1 for e in mine if e["providerStatus"] == "no-answer") == 1
    assert mine[-2]["occurredAt"].startswith("2025-06-10T13:00:07")

    # Unsigned, wrongly signed, another account's or a tampered callback: 403, nothing stored.
    import httpx

    async with httpx.AsyncClient() as raw:
        form = params("completed", 9)
        r = await raw.post(url, data=form)
        assert r.status_code == 403
        headers, body = peer.signed_request(url, form)
        r = await raw.post(url, content=body + b"&CallStatus=busy", headers=headers)
        assert r.status_code == 403
        headers["X-Twilio-Signature"] = "AAAA" + headers["X-Twilio-Signature"][4:]
        r = await raw.post(url, content=body, headers=headers)
        assert r.status_code == 403
        bogus = f"{wired['base']}/webhooks/twilio/{uuid.uuid4()}/voice/calls/{call_id}/status"
        headers, body = peer.signed_request(bogus, form)
        assert (await raw.post(bogus, content=body, headers=headers)).status_code == 404
    after = (await tenant.client.get(f"/api/calls/{call_id}/events")).json()["events"]
    assert len(after) == len(events)


async def test_calls_of_another_organization_answer_404(
    tenant, other_tenant, container, peer, wired
):
    await available(tenant.client, "client:ada")
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "in_progress")
    for method, path, body in (
        ("GET", f"/api/calls/{call_id}", None),
        ("GET", f"/api/calls/{call_id}/events", None),
        ("POST", f"/api/calls/{call_id}/hangup", None),
        ("POST", f"/api/calls/{call_id}/mute", {"muted": True}),
        ("POST", f"/api/calls/{call_id}/dtmf", {"digits": "1"}),
        ("POST", f"/api/calls/{call_id}/log", {"disposition": "no_answer"}),
    ):
        r = await other_tenant.client.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
    listed = (await other_tenant.client.get("/api/calls")).json()["calls"]
    assert listed == []
    r = await tenant.client.post(f"/api/calls/{call_id}/log", json={"disposition": "no_answer"})
    assert r.status_code == 409 and "still in progress" in r.json()["detail"]
    r = await tenant.client.get("/api/calls", params={"agent": "someone"})
    assert r.status_code == 422


async def test_a_call_announces_its_changes(tenant, container, peer, wired, database_url):
    await available(tenant.client, "client:ada")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listen:
        await listen.execute("LISTEN parley_activity")
        call = await place(tenant.client, wired["case_id"])
        await until(tenant.client, call["callId"], "in_progress")
        await peer.hangup(leg_to(peer, BORROWER).sid)
        await until(tenant.client, call["callId"], "awaiting_log")
        r = await tenant.client.post(
            f"/api/calls/{call['callId']}/log", json={"disposition": "left_message"}
        )
        assert r.status_code == 200
        seen = []
        async for note in listen.notifies(timeout=2.0):
            payload = orjson.loads(note.payload)
            if payload["data"].get("callId") == call["callId"]:
                assert payload["org"] == str(tenant.organization_id)
                seen.append((payload["type"], payload["data"]["status"], payload["data"]))
    types = [(t, s) for t, s, _ in seen]
    assert types[0] == ("call.status_changed", "connecting")
    assert ("call.status_changed", "in_progress") in types
    assert ("call.completed", "awaiting_log") in types
    assert types[-1] == ("call.status_changed", "completed")
    last = seen[-1][2]
    assert last["disposition"] == "left_message" and last["caseId"] == wired["case_id"]
    assert last["direction"] == "outbound" and last["agentId"] is not None
    assert all(d["borrowerId"] for _, _, d in seen)


async def test_a_refused_agent_leg_fails_the_call_and_frees_the_agent(
    tenant, container, peer, wired
):
    me = await available(tenant.client, "client:ada")
    peer.fail_next(503, 20503, "Service Unavailable")
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 502, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "20503" in r.json()["detail"]
    (call,) = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert call["status"] == "failed" and call["result"] == "not_dialed"
    assert call["awaitingLog"] is False
    events = (await tenant.client.get(f"/api/calls/{call['callId']}/events")).json()["events"]
    assert [(e["kind"], e["providerStatus"]) for e in events] == [("error", "20503")]
    assert await presence_of(tenant.client, me["agentId"]) == "available"
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log", json={"disposition": "no_answer"}
    )
    assert r.status_code == 409
    # The agent can call again straight away.
    again = await place(tenant.client, wired["case_id"])
    assert again["status"] == "connecting"


async def test_only_the_calls_agent_or_a_supervisor_logs_it(tenant, container, peer, wired):
    await available(tenant.client, "client:ada")
    _, carl = await agent_client(container, tenant, "Carl")
    _, sue = await agent_client(container, tenant, "Sue", role="supervisor")
    peer.outcomes[BORROWER] = "no-answer"
    call = await place(tenant.client, wired["case_id"])
    await until(tenant.client, call["callId"], "awaiting_log")
    r = await carl.post(f"/api/calls/{call['callId']}/log", json={"disposition": "no_answer"})
    assert r.status_code == 403
    r = await sue.post(f"/api/calls/{call['callId']}/log", json={"disposition": "nonsense"})
    assert r.status_code == 422
    r = await sue.post(
        f"/api/calls/{call['callId']}/log",
        json={"disposition": "no_answer", "promiseAmount": "10.00"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "promiseAmount"
    r = await sue.post(f"/api/calls/{call['callId']}/log", json={"disposition": "no_answer"})
    assert r.status_code == 200 and r.json()["log"]["loggedBy"] == "Sue"
    await carl.aclose()
    await sue.aclose()


async def test_an_inbound_call_the_agent_misses_goes_to_voicemail(tenant, container, peer, wired):
    ada = await available(tenant.client, "client:ada")
    peer.outcomes["client:ada"] = "no-answer"
    inbound = await peer.place_inbound(
        hook(wired, "inbound"),
        from_=BORROWER,
        to=CALLER_ID,
        status_callback=hook(wired, "inbound/status"),
    )
    (call,) = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    ended = await until(
        tenant.client, call["callId"], "awaiting_log", recording=lambda r: r is not None
    )
    assert ended["agentId"] == ada["agentId"] and ended["answeredAt"] is None
    assert peer.calls[inbound.sid].status == "completed"
    r = await tenant.client.post(
        f"/api/calls/{call['callId']}/log",
        json={"disposition": "callback_requested", "followUpDate": "2099-01-02"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["log"]["followUpDate"] == "2099-01-02"
    assert await presence_of(tenant.client, ada["agentId"]) == "available"
