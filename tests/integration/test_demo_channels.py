"""On the demo, through its sandbox accounts and a real HTTP server: a borrower's reply on
each of the four channels (email, SMS and WhatsApp messages, a phone call) appears in
the assigned agent's inbox and on the borrower's timeline, pushed live over SSE; and a
click-to-call on the sandbox voice account cannot be closed without its log."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from parley.demo import ensure_demo
from parley.services.auth import Role, issue_token
from parley.storage.models import CompliancePolicy
from tests.conftest import ALL_DAY
from tests.integration.test_live_updates import Stream, connect
from tests.support.live import drain, live_app
from tests.support.voice import until

CHANNELS = ("email", "sms", "whatsapp", "voice")

# Four open cases of one agent whose borrowers have nothing on record yet and a phone
# number no other borrower shares; the agent has no call open (the demo's voicemail
# waits for its agent's log, and an open call keeps an agent from placing another).
CASES_SQL = """
SELECT c.assigned_agent_id, c.id, cb.borrower_id, e.value, p.value
FROM cases c
JOIN case_borrowers cb ON cb.case_id = c.id
JOIN contact_points e ON e.borrower_id = cb.borrower_id AND e.kind = 'email'
JOIN contact_points p ON p.borrower_id = cb.borrower_id AND p.kind = 'phone'
WHERE c.organization_id = %s AND c.status = 'open' AND c.assigned_agent_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.case_id = c.id)
  AND NOT EXISTS (SELECT 1 FROM contact_points o
                  WHERE o.value = p.value AND o.borrower_id <> p.borrower_id)
  AND NOT EXISTS (SELECT 1 FROM calls k WHERE k.agent_user_id = c.assigned_agent_id
                  AND k.status NOT IN ('completed', 'blocked', 'canceled', 'failed'))
ORDER BY c.assigned_agent_id, c.case_number
"""


async def _demo_cases(container: Any, org_id: uuid.UUID) -> tuple[uuid.UUID, list[dict[str, Any]]]:
    async with container.db.pool.connection() as conn:
        rows = await (await conn.execute(CASES_SQL, (org_id,))).fetchall()
    by_agent: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for agent_id, case_id, borrower_id, email, phone in rows:
        by_agent.setdefault(agent_id, []).append(
            {
                "case_id": str(case_id),
                "borrower_id": str(borrower_id),
                "email": email,
                "phone": phone,
            }
        )
    agent_id, cases = next((a, c) for a, c in by_agent.items() if len(c) >= len(CHANNELS))
    return agent_id, cases[: len(CHANNELS)]


async def _token(container: Any, org_id: uuid.UUID, user_id: uuid.UUID) -> str:
    async with container.db.session() as session:
        token = await issue_token(
            session, organization_id=org_id, role=Role.AGENT, name="agent", user_id=user_id
        )
        await session.commit()
    return token


class Events:
    """An SSE stream's events, kept until a test looks for them (in any order)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.kept: list[dict[str, Any]] = []

    async def seen(self, kind: str, **match: Any) -> dict[str, Any]:
        """The first `kind` event whose data has the `match` values (taken off the list)."""
        position = 0
        while True:
            while position < len(self.kept):
                event = self.kept[position]
                data = event["data"]["data"]
                if event["event"] == kind and all(data.get(k) == v for k, v in match.items()):
                    del self.kept[position]
                    return dict(data)
                position += 1
            event = await self.stream.next()
            assert event is not None, f"the stream ended before a {kind} event {match}"
            self.kept.append(event)


async def test_a_reply_on_every_channel_reaches_the_agent_live_and_a_call_needs_its_log(
    container: Any,
) -> None:
    async with live_app(container) as (base, _app):
        info = await ensure_demo(container, reset_token=True)
        org_id = info.organization_id
        # Calls are gated by the borrower's contact hours: open the day, so the test does
        # not depend on the hour it runs (as for every test tenant).
        async with container.db.session() as session:
            session.add(CompliancePolicy(organization_id=org_id, settings=ALL_DAY, version=1))
            await session.commit()
        agent_id, cases = await _demo_cases(container, org_id)
        token = await _token(container, org_id, agent_id)
        async with (
            httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {info.token}"}
            ) as admin,
            httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as me,
            connect(base, token) as sse,
        ):
            stream = Events(sse)
            accounts = {
                a["channel"]: a["providerAccountId"]
                for a in (await admin.get("/api/provider-accounts")).json()
                if a["provider"] == "sandbox"
            }
            assert set(accounts) == set(CHANNELS)
            r = await me.put(
                "/api/agents/me/presence", json={"status": "available", "endpoint": "client:me"}
            )
            assert r.status_code == 200, r.text

            calls: dict[str, str] = {}
            for channel, case in zip(CHANNELS, cases, strict=True):
                account = accounts[channel]
                if channel == "voice":
                    r = await admin.post(
                        f"/api/provider-accounts/{account}/simulate-inbound-call",
                        json={"from": case["phone"]},
                    )
                    assert r.status_code == 202, r.text
                    call_id = calls[channel] = r.json()["callId"]
                    announced = await stream.seen("call.status_changed", callId=call_id)
                    assert announced["direction"] == "inbound"
                    assert announced["agentId"] == str(agent_id)
                    updated = await stream.seen("conversation.updated", caseId=case["case_id"])
                    assert updated["lastItem"] == {
                        **updated["lastItem"],
                        "kind": "call",
                        "id": call_id,
                        "direction": "inbound",
                    }
                else:
                    sender = case["email"] if channel == "email" else case["phone"]
                    r = await admin.post(
                        f"/api/provider-accounts/{account}/simulate-inbound",
                        json={
                            "from": sender,
                            "body": f"Replying by {channel}: I can pay on Friday.",
                            "subject": "Re: your account" if channel == "email" else None,
                        },
                    )
                    assert r.status_code == 202, r.text
                    await drain(container, ["receipts"])
                    received = await stream.seen("message.received", caseId=case["case_id"])
                    assert received["messageType"] == channel
                    assert received["assignedAgentId"] == str(agent_id)
                    assert f"Replying by {channel}" in received["preview"]
                    updated = await stream.seen("conversation.updated", caseId=case["case_id"])
                    assert updated["lastItem"]["kind"] == "message"
                assert updated["unreadCount"] == 1
                assert updated["assignedAgentId"] == str(agent_id)

                # In the agent's own inbox, unread, on this channel ...
                inbox = await me.get("/api/inbox", params={"agent": "me", "unread": "true"})
                mine = [c for c in inbox.json()["conversations"] if c["caseId"] == case["case_id"]]
                assert len(mine) == 1, channel
                assert mine[0]["channel"] == channel and mine[0]["unreadCount"] == 1
                assert mine[0]["lastMessage"]["direction"] == "inbound"
                # ... and first on the borrower's timeline.
                r = await me.get(f"/api/borrowers/{case['borrower_id']}/timeline")
                first = r.json()["items"][0]
                if channel == "voice":
                    assert first["type"] == "call" and first["callId"] == calls[channel]
                else:
                    assert first["type"] == "message" and first["channel"] == channel
                    assert first["direction"] == "inbound"
                    assert first["messageId"] == mine[0]["lastMessage"]["messageId"]

            # The borrower's call rang the agent (the sandbox answers their softphone); the
            # agent hangs up and the call waits for its log.
            call_id = calls["voice"]
            await until(me, call_id, "in_progress")
            r = await me.post(f"/api/calls/{call_id}/hangup")
            assert r.status_code == 200, r.text
            ended = await until(me, call_id, "awaiting_log")
            assert ended["awaitingLog"] is True
            completed = await stream.seen("call.completed", callId=call_id)
            assert completed["status"] == "awaiting_log"
            # From the borrower to our number, as the calls API says.
            assert ended["from"] and ended["to"] and ended["from"] != ended["to"]
            assert (completed["from"], completed["to"]) == (ended["from"], ended["to"])
            r = await me.post(f"/api/calls/{call_id}/log", json={"disposition": "dispute"})
            assert r.status_code == 200, r.text

            # Click-to-call on the sandbox voice account: bridged, then closed only by a log.
            case = cases[0]
            r = await me.post(f"/api/cases/{case['case_id']}/calls", json={})
            assert r.status_code == 201, r.text
            placed = r.json()
            assert placed["status"] == "connecting", placed
            await until(me, placed["callId"], "in_progress")
            r = await me.post(f"/api/calls/{placed['callId']}/hangup")
            assert r.status_code == 200, r.text
            ended = await until(
                me, placed["callId"], "awaiting_log", recording=lambda rec: rec is not None
            )
            assert ended["result"] == "conversation"
            r = await me.post(
                f"/api/calls/{placed['callId']}/result", json={"result": "conversation"}
            )
            assert r.status_code == 409 and "/log" in r.json()["detail"]
            r = await me.post(f"/api/cases/{cases[1]['case_id']}/calls", json={})
            assert r.status_code == 409 and placed["callId"] in r.json()["detail"]
            r = await me.post(
                f"/api/calls/{placed['callId']}/log", json={"disposition": "promise_to_pay"}
            )
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "promiseAmount"
            r = await me.post(
                f"/api/calls/{placed['callId']}/log",
                json={"disposition": "spoke_to_customer", "notes": "Agreed to pay Friday."},
            )
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "completed" and r.json()["awaitingLog"] is False
            closed = await stream.seen("call.status_changed", callId=placed["callId"])
            while closed["status"] != "completed":
                closed = await stream.seen("call.status_changed", callId=placed["callId"])
            assert closed["disposition"] == "spoke_to_customer"
