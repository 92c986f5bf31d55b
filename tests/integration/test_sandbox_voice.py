"""Click-to-call and inbound calls on a sandbox voice account, over real HTTP: its
simulated network places the legs, runs the TwiML Parley hands it and posts signed
callbacks to the voice webhook route Twilio's take, so a call is bridged, recorded,
controlled and ends awaiting its log exactly as a Twilio call does."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text

from parley.channels.sandbox.provider import SIGNATURE_HEADER, sign
from parley.channels.sandbox.voice import EVENT_HEADER
from parley.domain.channels import Channel
from parley.storage.models import Case
from tests.support import factories
from tests.support.compliance import us_borrower
from tests.support.live import live_api
from tests.support.voice import (
    CALLER_ID,
    agent_client,
    available,
    call_json,
    eventually,
    presence_of,
    sandbox_network,
    sandbox_voice_account,
    until,
)

BORROWER = "+12125550123"
SECRET = "sandbox-voice-test-secret"


@pytest.fixture
async def wired(tenant, container):
    """A sandbox voice account, the API served over HTTP, Ada available."""
    async with live_api(container) as base:
        account_id = await sandbox_voice_account(container, tenant.organization_id)
        data = await us_borrower(container, tenant.organization_id, phone=BORROWER)
        me = await available(tenant.client, "client:ada")
        yield {
            "base": base,
            "account": account_id,
            "case_id": data["case_id"],
            "borrower_id": data["borrower_id"],
            "me": me,
        }


async def place(client: httpx.AsyncClient, case_id: str) -> dict[str, Any]:
    r = await client.post(f"/api/cases/{case_id}/calls", json={})
    assert r.status_code == 201, r.text
    return dict(r.json())


def legs(network: Any, to: str) -> list[Any]:
    return [c for c in network.calls.values() if c.to == to]


async def configure(tenant: Any, account_id: uuid.UUID, **config: Any) -> None:
    r = await tenant.client.patch(f"/api/provider-accounts/{account_id}", json={"config": config})
    assert r.status_code == 200, r.text


async def test_click_to_call_is_bridged_controlled_recorded_and_closed_by_its_log(
    tenant, container, wired
):
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    assert call["status"] == "connecting" and call["agentId"] == wired["me"]["agentId"]
    live = await until(tenant.client, call_id, "in_progress")
    assert live["answeredAt"] is not None and live["awaitingLog"] is False
    network = await sandbox_network(container, wired["account"])
    (agent_leg,) = legs(network, "client:ada")
    (borrower_leg,) = legs(network, BORROWER)
    assert agent_leg.from_ == borrower_leg.from_ == CALLER_ID
    conference = network.conferences[f"parley-{call_id}"]
    assert set(conference.participants) == {agent_leg.sid, borrower_leg.sid}
    assert conference.record_callback is not None
    await eventually(lambda: _conference_known(container, call_id))

    # The live controls act on the simulated conference and legs.
    r = await tenant.client.post(f"/api/calls/{call_id}/mute", json={"muted": True})
    assert r.status_code == 200 and r.json()["muted"] is True
    assert conference.participants[agent_leg.sid] is True
    assert conference.participants[borrower_leg.sid] is False
    r = await tenant.client.post(f"/api/calls/{call_id}/mute", json={"muted": False})
    assert r.status_code == 200 and conference.participants[agent_leg.sid] is False
    r = await tenant.client.post(f"/api/calls/{call_id}/dtmf", json={"digits": "12w3#"})
    assert r.status_code == 200, r.text
    await eventually(lambda: _true(borrower_leg.digits == ["12w3#"]))
    await eventually(lambda: _true(borrower_leg.conference == f"parley-{call_id}"))

    r = await tenant.client.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 200, r.text
    ended = await until(tenant.client, call_id, "awaiting_log", recording=lambda r: r is not None)
    assert ended["awaitingLog"] is True and ended["result"] == "conversation"
    assert ended["recording"]["recordingSid"].startswith("RE")
    assert ended["recording"]["url"] is None  # a simulated call has no audio
    assert ended["recording"]["durationSeconds"] >= 1
    assert agent_leg.status == borrower_leg.status == "completed"
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "busy"

    # It cannot be closed without its log, and blocks the agent's next call.
    r = await tenant.client.post(f"/api/calls/{call_id}/result", json={"result": "busy"})
    assert r.status_code == 409 and "/log" in r.json()["detail"]
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 409 and call_id in r.json()["detail"]
    r = await tenant.client.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 409
    r = await tenant.client.post(f"/api/calls/{call_id}/log", json={"disposition": "dispute"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed" and r.json()["log"]["disposition"] == "dispute"
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"

    events = (await tenant.client.get(f"/api/calls/{call_id}/events")).json()["events"]
    statuses = [
        e["providerStatus"]
        for e in events
        if e["callSid"] == borrower_leg.sid and e["kind"] == "status"
    ]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert {e["kind"] for e in events} == {"status", "conference", "recording"}
    assert all(e["raw"]["AccountSid"] == str(wired["account"]) for e in events)


async def test_an_outbound_call_is_from_the_accounts_caller_id_to_the_borrower(
    tenant, container, wired
):
    """Regression: a click-to-call recorded no `from`. It is the caller id the network
    places the legs from -- the account's, as configured when the call is placed -- on
    the calls API and the timeline; a call the gate blocks was placed from nowhere."""
    prefs = f"/api/cases/{wired['case_id']}/communication-preferences"
    assert (await tenant.client.put(prefs, json={"allowCalls": False})).status_code == 200
    blocked = await place(tenant.client, wired["case_id"])
    assert (blocked["status"], blocked["from"], blocked["to"]) == ("blocked", None, BORROWER)
    assert (await tenant.client.put(prefs, json={"allowCalls": True})).status_code == 200

    ours = "+18005550177"
    await configure(tenant, wired["account"], from_number=ours)
    call = await place(tenant.client, wired["case_id"])
    assert (call["direction"], call["from"], call["to"]) == ("outbound", ours, BORROWER)
    await until(tenant.client, call["callId"], "in_progress")
    network = await sandbox_network(container, wired["account"])
    (borrower_leg,) = legs(network, BORROWER)
    assert borrower_leg.from_ == ours
    one = await call_json(tenant.client, call["callId"])
    assert (one["from"], one["to"]) == (ours, BORROWER)
    r = await tenant.client.get(f"/api/borrowers/{wired['borrower_id']}/timeline")
    assert r.status_code == 200, r.text
    items = {i["callId"]: i for i in r.json()["items"] if i["type"] == "call"}
    assert (items[call["callId"]]["from"], items[call["callId"]]["to"]) == (ours, BORROWER)
    assert (items[blocked["callId"]]["from"], items[blocked["callId"]]["to"]) == (None, BORROWER)
    r = await tenant.client.post(f"/api/calls/{call['callId']}/hangup")
    assert r.status_code == 200, r.text
    await until(tenant.client, call["callId"], "awaiting_log")


async def _conference_known(container: Any, call_id: str) -> bool:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT conference_sid FROM calls WHERE id = %s", (call_id,))
        row = await cur.fetchone()
        return row is not None and row[0] is not None


async def _true(value: bool) -> bool:
    return value


async def test_configured_outcomes_end_the_call_as_the_provider_reports_them(
    tenant, container, wired
):
    expected = {
        "busy": ("busy", "no_answer"),
        "failed": ("network_failure", "no_answer"),
        "no-answer": ("no_answer", "no_answer"),
        "machine": ("voicemail", "left_message"),
    }
    for outcome, (result, disposition) in expected.items():
        await configure(tenant, wired["account"], call_outcomes={BORROWER: outcome})
        call = await place(tenant.client, wired["case_id"])
        if outcome == "machine":  # the machine records until the agent hangs up
            await until(tenant.client, call["callId"], "in_progress")
            r = await tenant.client.post(f"/api/calls/{call['callId']}/hangup")
            assert r.status_code == 200, r.text
        ended = await until(tenant.client, call["callId"], "awaiting_log")
        assert ended["result"] == result, outcome
        assert (ended["answeredAt"] is not None) is (outcome == "machine"), outcome
        if outcome == "busy":  # it never connected: only no_answer can be logged
            r = await tenant.client.post(
                f"/api/calls/{call['callId']}/log", json={"disposition": "spoke_to_customer"}
            )
            assert r.status_code == 422 and "never connected" in r.json()["detail"]
        r = await tenant.client.post(
            f"/api/calls/{call['callId']}/log", json={"disposition": disposition}
        )
        assert r.status_code == 200, (outcome, r.text)

    # The agent's own softphone does not answer: nothing is dialed.
    await configure(tenant, wired["account"], call_outcomes={"client:ada": "no-answer"})
    call = await place(tenant.client, wired["case_id"])
    canceled = await until(tenant.client, call["callId"], "canceled")
    assert canceled["result"] == "not_dialed" and canceled["awaitingLog"] is False
    network = await sandbox_network(container, wired["account"])
    assert legs(network, BORROWER) == []
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"


async def test_the_borrower_hangs_up_after_talk_seconds(tenant, container, wired):
    await configure(tenant, wired["account"], talk_seconds=0.3)
    call = await place(tenant.client, wired["case_id"])
    ended = await until(tenant.client, call["callId"], "awaiting_log")
    assert ended["result"] == "conversation" and ended["answeredAt"] is not None
    network = await sandbox_network(container, wired["account"])
    (agent_leg,) = legs(network, "client:ada")
    await eventually(lambda: _true(agent_leg.status == "completed"))  # Parley hung it up


async def test_a_blind_transfer_hands_the_sandbox_call_to_another_agent(tenant, container, wired):
    bob_id, bob = await agent_client(container, tenant, "Bob")
    await available(bob, "client:bob")
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "in_progress")
    r = await tenant.client.post(
        f"/api/calls/{call_id}/transfer", json={"toAgentId": str(bob_id), "mode": "blind"}
    )
    assert r.status_code == 200, r.text
    network = await sandbox_network(container, wired["account"])
    (ada_leg,) = legs(network, "client:ada")
    (bob_leg,) = legs(network, "client:bob")
    (borrower_leg,) = legs(network, BORROWER)
    await eventually(lambda: _true(ada_leg.status == "completed"))
    await eventually(lambda: _true(bob_leg.status == "in-progress"))
    await eventually(lambda: _true(bob_leg.conference == f"parley-{call_id}"))
    assert set(network.conferences[f"parley-{call_id}"].participants) == {
        borrower_leg.sid,
        bob_leg.sid,
    }
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"
    r = await bob.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 200, r.text
    await until(tenant.client, call_id, "awaiting_log")
    r = await bob.post(f"/api/calls/{call_id}/log", json={"disposition": "callback_requested"})
    assert r.status_code == 200, r.text
    await bob.aclose()


async def test_a_call_the_network_lost_ends_when_the_agent_hangs_up(tenant, container, wired):
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "in_progress")
    network = await sandbox_network(container, wired["account"])
    # The process that placed the call stopped: the network no longer knows its legs.
    await network.close()
    network.calls.clear()
    network.conferences.clear()
    r = await tenant.client.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 200, r.text
    ended = await until(tenant.client, call_id, "awaiting_log")
    assert ended["result"] == "conversation"
    r = await tenant.client.post(f"/api/calls/{call_id}/log", json={"disposition": "no_answer"})
    assert r.status_code == 200, r.text


async def test_an_account_without_callbacks_refuses_to_dial(tenant, container, wired):
    await configure(tenant, wired["account"], callbacks=False)
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 502, r.text
    assert "callbacks_disabled" in r.json()["detail"]
    (call,) = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert call["status"] == "failed" and call["result"] == "not_dialed"
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"


async def test_an_account_with_unusable_stored_settings_is_a_409_and_writes_nothing(
    tenant, container, wired
):
    """Settings the API would refuse, written some other way (a restore, a hand edit):
    placing a call answers 409 naming the problem, never a 500, and records no call."""
    async with container.db.session() as session, session.begin():
        await session.execute(
            text(
                "UPDATE provider_accounts SET config = jsonb_set(config, '{talk_seconds}', "
                "'\"soon\"') WHERE id = :id"
            ),
            {"id": wired["account"]},
        )
    r = await tenant.client.post(f"/api/cases/{wired['case_id']}/calls", json={})
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "talk_seconds" in r.json()["detail"]
    calls = (await tenant.client.get(f"/api/cases/{wired['case_id']}/calls")).json()["calls"]
    assert calls == []
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "available"


async def test_callbacks_are_signed_deduplicated_and_only_move_forward(tenant, container, wired):
    await configure(tenant, wired["account"], call_outcomes={BORROWER: "hold"})
    call = await place(tenant.client, wired["case_id"])
    call_id = call["callId"]
    await until(tenant.client, call_id, "ringing")
    network = await sandbox_network(container, wired["account"])
    (borrower_leg,) = legs(network, BORROWER)
    url = f"{wired['base']}/webhooks/sandbox/{wired['account']}/voice/calls/{call_id}/status"

    def signed(status: str, second: int, event: str) -> tuple[bytes, dict[str, str]]:
        body = urlencode(
            {
                "AccountSid": str(wired["account"]),
                "CallSid": borrower_leg.sid,
                "CallStatus": status,
                "Timestamp": f"Tue, 10 Jun 2025 13:00:0{second} +0000",
            }
        ).encode()
        return body, {
            "Content-Type": "application/x-www-form-urlencoded",
            SIGNATURE_HEADER: sign(SECRET, body),
            EVENT_HEADER: event,
        }

    async with httpx.AsyncClient() as raw:
        body, headers = signed("no-answer", 7, "event-7")
        for _ in range(2):  # a repeated callback is stored once
            assert (await raw.post(url, content=body, headers=headers)).status_code == 200
        body, headers = signed("ringing", 1, "event-1")  # late: kept, changes nothing
        assert (await raw.post(url, content=body, headers=headers)).status_code == 200
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

        # Unsigned, tampered, wrongly signed, or at another provider's or account's path.
        body, headers = signed("completed", 9, "event-9")
        unsigned = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
        assert (await raw.post(url, content=body, headers=unsigned)).status_code == 403
        tampered = body + b"&CallStatus=busy"
        assert (await raw.post(url, content=tampered, headers=headers)).status_code == 403
        wrong = {**headers, SIGNATURE_HEADER: sign("another-secret", body)}
        r = await raw.post(url, content=body, headers=wrong)
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
        twilio = url.replace("/webhooks/sandbox/", "/webhooks/twilio/")
        assert (await raw.post(twilio, content=body, headers=headers)).status_code == 404
        other = url.replace(str(wired["account"]), str(uuid.uuid4()))
        assert (await raw.post(other, content=body, headers=headers)).status_code == 404
        nowhere = url.replace("/status", "/elsewhere")
        assert (await raw.post(nowhere, content=body, headers=headers)).status_code == 404
    after = (await tenant.client.get(f"/api/calls/{call_id}/events")).json()["events"]
    assert len(after) == len(events)


async def test_a_simulated_inbound_call_rings_the_cases_agent_and_lands_in_the_inbox(
    tenant, container, wired
):
    async with container.db.session() as s:
        case = await s.get(Case, uuid.UUID(wired["case_id"]))
        case.assigned_agent_id = uuid.UUID(wired["me"]["agentId"])
        await s.commit()
    account = wired["account"]
    r = await tenant.client.post(
        f"/api/provider-accounts/{account}/simulate-inbound-call", json={"from": BORROWER}
    )
    assert r.status_code == 202, r.text
    call_id = r.json()["callId"]
    call = await call_json(tenant.client, call_id)
    assert call["direction"] == "inbound" and call["agentId"] == wired["me"]["agentId"]
    assert call["placedAt"] is None  # the borrower's call is no attempt of ours
    await until(tenant.client, call_id, "in_progress")
    network = await sandbox_network(container, account)
    caller = network.calls[r.json()["providerCallId"]]
    (agent_leg,) = legs(network, "client:ada")
    assert set(network.conferences[f"parley-{call_id}"].participants) == {
        caller.sid,
        agent_leg.sid,
    }
    assert await presence_of(tenant.client, wired["me"]["agentId"]) == "busy"

    # The agent's inbox: the borrower's conversation, unread, latest item the call.
    (conv,) = (await tenant.client.get("/api/inbox", params={"unread": "true"})).json()[
        "conversations"
    ]
    assert conv["caseId"] == wired["case_id"] and conv["channel"] == "voice"
    assert conv["unreadCount"] == 1 and conv["assignedAgentId"] == wired["me"]["agentId"]
    assert conv["lastMessage"]["kind"] == "call" and conv["lastMessage"]["callId"] == call_id
    assert conv["lastMessage"]["direction"] == "inbound"
    timeline = await tenant.client.get(f"/api/borrowers/{wired['borrower_id']}/timeline")
    assert timeline.json()["items"][0]["callId"] == call_id

    r = await tenant.client.post(f"/api/calls/{call_id}/hangup")
    assert r.status_code == 200, r.text
    await until(tenant.client, call_id, "awaiting_log")
    assert caller.status == "completed"
    r = await tenant.client.post(f"/api/calls/{call_id}/result", json={"result": "conversation"})
    assert r.status_code == 409
    r = await tenant.client.post(f"/api/calls/{call_id}/log", json={"disposition": "dispute"})
    assert r.status_code == 200, r.text


async def test_a_simulated_inbound_call_nobody_takes_leaves_a_voicemail(tenant, container, wired):
    r = await tenant.client.put("/api/agents/me/presence", json={"status": "away"})
    assert r.status_code == 200
    async with container.db.session() as s:
        case = await s.get(Case, uuid.UUID(wired["case_id"]))
        case.assigned_agent_id = uuid.UUID(wired["me"]["agentId"])
        await s.commit()
    account = wired["account"]
    r = await tenant.client.post(
        f"/api/provider-accounts/{account}/simulate-inbound-call", json={"from": BORROWER}
    )
    assert r.status_code == 202, r.text
    call_id = r.json()["callId"]
    ended = await until(tenant.client, call_id, "awaiting_log", recording=lambda r: r is not None)
    assert ended["agentId"] == wired["me"]["agentId"] and ended["answeredAt"] is not None
    network = await sandbox_network(container, account)
    caller = network.calls[r.json()["providerCallId"]]
    assert caller.said and "leave a message" in caller.said[0]
    r = await tenant.client.post(
        f"/api/calls/{call_id}/log",
        json={"disposition": "callback_requested", "followUpDate": "2099-01-02"},
    )
    assert r.status_code == 200, r.text

    # A number that matches no borrower hears a short message; nothing is recorded.
    r = await tenant.client.post(
        f"/api/provider-accounts/{account}/simulate-inbound-call", json={"from": "+14155550199"}
    )
    assert r.status_code == 202 and r.json()["callId"] is None
    stranger = network.calls[r.json()["providerCallId"]]
    await eventually(lambda: _true(stranger.status == "completed"))
    assert "could not find your account" in stranger.said[0]
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM calls")
        assert (await cur.fetchone())[0] == 1


async def test_simulating_a_call_needs_a_sandbox_voice_account_and_a_number(
    tenant, other_tenant, container, wired
):
    sms = await factories.account(
        container,
        tenant.organization_id,
        "sandbox",
        Channel.SMS,
        secrets_={"signing_secret": SECRET},
    )
    path = "/api/provider-accounts/{}/simulate-inbound-call"
    r = await tenant.client.post(path.format(sms), json={"from": BORROWER})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "accountId"
    for bad in ({"from": "12125550123"}, {"from": "call me"}, {}, {"from": BORROWER, "x": 1}):
        r = await tenant.client.post(path.format(wired["account"]), json=bad)
        assert r.status_code == 422, bad
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await other_tenant.client.post(path.format(wired["account"]), json={"from": BORROWER})
    assert r.status_code == 404
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM calls")
        assert (await cur.fetchone())[0] == 0
