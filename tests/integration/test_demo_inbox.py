"""The demo's inbox is populated: borrowers' replies on each channel -- and a voicemail
left on the sandbox voice account -- are unread in their agents' conversations, an
unknown number waits in the team queue, and the demo has calls its agents have logged."""

from __future__ import annotations

from typing import Any

import httpx

from parley.demo import ensure_demo


async def test_demo_inbox_has_unread_replies_on_every_channel(container: Any) -> None:
    from parley.api.app import create_app

    info = await ensure_demo(container, reset_token=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://demo",
        headers={"Authorization": f"Bearer {info.token}"},
    ) as client:
        r = await client.get("/api/inbox", params={"unread": "true", "limit": 200})
        assert r.status_code == 200, r.text
        unread = r.json()["conversations"]
        assert {c["channel"] for c in unread} == {"email", "sms", "whatsapp", "voice"}
        assert all(c["unreadCount"] == 1 for c in unread)
        assert sum(1 for c in unread if c["assignedAgentId"]) >= 7
        team = [c for c in unread if c["caseId"] is None]
        assert [c["senderAddress"] for c in team] == ["+13125550142"]
        # Each one is on the borrower's timeline too, newest first.
        for conversation in unread:
            if conversation["borrowerId"] is None or conversation["caseId"] is None:
                continue
            r = await client.get(f"/api/borrowers/{conversation['borrowerId']}/timeline")
            assert r.status_code == 200, r.text
            latest, first = conversation["lastMessage"], r.json()["items"][0]
            if latest["kind"] == "call":
                assert first["type"] == "call" and first["callId"] == latest["callId"]
            else:
                assert first["messageId"] == latest["messageId"]
        # Each reply is addressed to the number or address it answers (ours).
        for conversation in unread:
            latest = conversation["lastMessage"]
            if latest["kind"] != "call":
                r = await client.get(f"/api/messages/{latest['messageId']}")
                assert r.status_code == 200 and all(r.json()["to"]), r.json()

        # The voicemail: an inbound call with its recording, waiting for its agent's log.
        (voice,) = [c for c in unread if c["channel"] == "voice"]
        assert voice["lastMessage"]["direction"] == "inbound"
        r = await client.get(f"/api/calls/{voice['lastMessage']['callId']}")
        call = r.json()
        assert call["direction"] == "inbound" and call["status"] == "awaiting_log"
        assert call["recording"] is not None and call["agentId"] == voice["assignedAgentId"]

        # Call history: calls the agents took or returned, closed by their logs.
        r = await client.get("/api/calls", params={"awaitingLog": "false", "limit": 200})
        logged = [c for c in r.json()["calls"] if c["log"] is not None]
        assert {c["log"]["disposition"] for c in logged} == {
            "callback_requested",
            "promise_to_pay",
        }
        assert all(c["status"] == "completed" and c["recording"] for c in logged)
        promise = next(c for c in logged if c["log"]["disposition"] == "promise_to_pay")
        assert promise["answeredAt"] is not None and promise["log"]["promiseAmount"]
        events = (await client.get(f"/api/calls/{promise['callId']}/events")).json()["events"]
        assert {e["kind"] for e in events} == {"status", "conference", "recording"}
        # Nobody is left on a call or marked busy by one.
        r = await client.get("/api/agents/presence")
        assert {a["status"] for a in r.json()["agents"]} == {"offline"}
