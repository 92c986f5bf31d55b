"""The unified inbox: replies routed to the case's agent or the team queue, unread counts,
reassignment, visibility by role and tenant, and the borrower timeline.

Replies arrive as signed sandbox webhooks and are handled by the `process_inbound` job
(run with `drain`); what the tests read back is the API.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from parley.channels.sandbox.provider import SIGNATURE_HEADER, sign
from tests.conftest import Tenant
from tests.support import factories
from tests.support.live import drain

OUR_NUMBER = "+18005550100"


async def _agent(container: Any, tenant: Tenant, user_id: Any = None) -> httpx.AsyncClient:
    """An API client for an agent (a new user unless `user_id` is given)."""
    from parley.services.auth import Role, issue_token
    from parley.storage.models import User

    async with container.db.session() as s:
        if user_id is None:
            user = User(
                organization_id=tenant.organization_id,
                email=f"agent-{uuid.uuid4().hex[:6]}@x.test",
                name="Another Agent",
                role="agent",
            )
            s.add(user)
            await s.flush()
            user_id = user.id
        token = await issue_token(
            s, organization_id=tenant.organization_id, role=Role.AGENT, name="a", user_id=user_id
        )
        await s.commit()
    from parley.api.app import create_app

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )
    client.user_id = user_id  # type: ignore[attr-defined]
    return client


async def _reply(
    tenant: Tenant, accounts: dict[str, Any], sender: str, body: str, channel: str = "sms"
) -> None:
    """A signed sandbox inbound message (the borrower writing in)."""
    raw = orjson.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "inbound",
            "message_id": "sbx_" + uuid.uuid4().hex,
            "channel": channel,
            "from": sender,
            "to": "c@example.org" if channel == "email" else OUR_NUMBER,
            "body": body,
            **({"subject": "Re: your balance"} if channel == "email" else {}),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
    )
    r = await tenant.client.post(
        f"/webhooks/sandbox/{accounts[channel]}",
        content=raw,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(accounts["secret"], raw),
        },
    )
    assert r.status_code == 200, r.text


async def _inbox(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/api/inbox", params=params)
    assert r.status_code == 200, r.text
    return list(r.json()["conversations"])


@pytest.fixture
async def world(container: Any, tenant: Tenant) -> dict[str, Any]:
    """Two borrowers (Pat's case assigned to an agent, Sam's unassigned) and the sandbox
    accounts they reply through."""
    w = await inbox_world(container, tenant)
    yield w
    await w["owner"].aclose()
    await w["other"].aclose()


async def inbox_world(container: Any, tenant: Tenant) -> dict[str, Any]:
    """Pat's case assigned to an agent (`owner`, an API client), Sam's unassigned,
    another agent (`other`), and the sandbox accounts replies come through. The caller
    closes the two clients."""
    pat = await factories.borrower_with_case(container, tenant.organization_id)
    sam = await factories.borrower_with_case(
        container,
        tenant.organization_id,
        email="sam@example.com",
        phone="+12025550199",
        first_name="Sam",
        with_agent=False,
    )
    accounts = await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    owner = await _agent(container, tenant, pat["agent_id"])
    other = await _agent(container, tenant)
    return {"pat": pat, "sam": sam, "accounts": accounts, "owner": owner, "other": other}


async def test_replies_reach_the_assigned_agent_or_the_team_queue(container, tenant, world):
    acc = world["accounts"]
    await _reply(tenant, acc, world["pat"]["phone"], "I can pay Friday")
    await _reply(tenant, acc, world["sam"]["email"], "Who is this?", channel="email")
    await _reply(tenant, acc, "+13125550142", "wrong number?")  # nobody we know
    await drain(container, ["receipts"])

    mine = await _inbox(world["owner"], agent="me")
    assert [c["caseId"] for c in mine] == [str(world["pat"]["case_id"])]
    pat = mine[0]
    assert pat["assignedAgentId"] == str(world["pat"]["agent_id"])
    assert pat["queue"] == "agent"
    assert pat["borrowerName"] == "Pat Doe"
    assert pat["channel"] == "sms"
    assert pat["unreadCount"] == 1
    assert pat["lastMessage"]["direction"] == "inbound"
    assert pat["lastMessage"]["preview"] == "I can pay Friday"
    assert pat["caseNumber"].startswith("C-")

    team = await _inbox(world["owner"], queue="team")
    assert {(c["caseId"], c["senderAddress"]) for c in team} == {
        (str(world["sam"]["case_id"]), None),
        (None, "+13125550142"),
    }
    assert all(c["assignedAgentId"] is None and c["queue"] == "team" for c in team)
    # The unknown sender's message is recorded (it used to be dropped), with no case.
    unknown = next(c for c in team if c["caseId"] is None)
    r = await tenant.client.get(f"/api/messages/{unknown['lastMessage']['messageId']}")
    assert r.status_code == 200, r.text
    assert r.json()["caseId"] is None
    assert r.json()["direction"] == "inbound"
    assert r.json()["body"] == "wrong number?"

    # An agent's default view: their own conversations and the team queue, newest first.
    default = await _inbox(world["owner"])
    assert [c["conversationId"] for c in default] == [
        c["conversationId"]
        for c in sorted(mine + team, key=lambda c: c["lastActivityAt"], reverse=True)
    ]
    # Another agent sees the team queue only; a supervisor sees everything.
    assert {c["conversationId"] for c in await _inbox(world["other"])} == {
        c["conversationId"] for c in team
    }
    assert len(await _inbox(tenant.client)) == 3
    assert [c["caseId"] for c in await _inbox(tenant.client, channel="email")] == [
        str(world["sam"]["case_id"])
    ]


async def test_unread_counts_and_mark_read(container, tenant, world):
    acc, owner = world["accounts"], world["owner"]
    await _reply(tenant, acc, world["pat"]["phone"], "hello")
    await _reply(tenant, acc, world["pat"]["email"], "and by email", channel="email")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(owner, agent="me")
    assert conv["unreadCount"] == 2
    assert conv["channel"] == "email"  # the latest message's channel
    assert [c["conversationId"] for c in await _inbox(owner, agent="me", unread="true")] == [
        conv["conversationId"]
    ]

    # The agent answers: the conversation moves, nothing new to read.
    r = await owner.post(
        f"/api/cases/{world['pat']['case_id']}/messages",
        json={"messageType": "sms", "body": "Thanks, noted."},
    )
    assert r.status_code == 201, r.text
    (conv,) = await _inbox(owner, agent="me")
    assert conv["unreadCount"] == 2
    assert conv["lastMessage"]["direction"] == "outbound"
    assert conv["lastMessage"]["messageId"] == r.json()["messageId"]

    r = await owner.post(f"/api/inbox/{conv['conversationId']}/read")
    assert r.status_code == 200, r.text
    assert r.json()["unreadCount"] == 0
    assert r.json()["lastReadAt"] is not None
    assert await _inbox(owner, agent="me", unread="true") == []

    await _reply(tenant, acc, world["pat"]["phone"], "one more thing")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(owner, agent="me")
    assert conv["unreadCount"] == 1


async def test_reassigning_the_case_moves_its_conversations(container, tenant, world):
    acc, owner, other = world["accounts"], world["owner"], world["other"]
    await _reply(tenant, acc, world["pat"]["phone"], "hi")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(owner, agent="me")
    cid = conv["conversationId"]

    r = await tenant.client.patch(
        f"/api/cases/{world['pat']['case_id']}",
        json={"assignedAgentId": str(other.user_id)},  # type: ignore[attr-defined]
    )
    assert r.status_code == 200, r.text
    assert await _inbox(owner, agent="me") == []
    assert (await owner.get(f"/api/inbox/{cid}")).status_code == 404
    assert (await owner.post(f"/api/inbox/{cid}/read")).status_code == 404
    moved = await _inbox(other, agent="me")
    assert [c["conversationId"] for c in moved] == [cid]
    assert moved[0]["assignedAgentId"] == str(other.user_id)  # type: ignore[attr-defined]
    # A supervisor filters by agent.
    assert [c["conversationId"] for c in await _inbox(tenant.client, agent=str(other.user_id))] == [  # type: ignore[attr-defined]
        cid
    ]

    # Unassigned: to the team queue, which both agents see.
    r = await tenant.client.patch(
        f"/api/cases/{world['pat']['case_id']}", json={"assignedAgentId": None}
    )
    assert r.status_code == 200, r.text
    assert cid in {c["conversationId"] for c in await _inbox(owner, queue="team")}
    assert (await owner.get(f"/api/inbox/{cid}")).status_code == 200


async def test_agents_see_only_their_own_and_tenants_nothing_of_each_other(
    container, tenant, other_tenant, world
):
    acc, owner, other = world["accounts"], world["owner"], world["other"]
    await _reply(tenant, acc, world["pat"]["phone"], "private")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(owner, agent="me")
    cid = conv["conversationId"]

    assert (await other.get(f"/api/inbox/{cid}")).status_code == 404
    assert (await other.post(f"/api/inbox/{cid}/read")).status_code == 404
    r = await other.get("/api/inbox", params={"agent": str(world["pat"]["agent_id"])})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"

    assert (await other_tenant.client.get(f"/api/inbox/{cid}")).status_code == 404
    assert (await other_tenant.client.post(f"/api/inbox/{cid}/read")).status_code == 404
    assert await _inbox(other_tenant.client) == []
    timeline = f"/api/borrowers/{world['pat']['borrower_id']}/timeline"
    assert (await other_tenant.client.get(timeline)).status_code == 404
    # Still unread: nothing above changed it.
    assert (await owner.get(f"/api/inbox/{cid}")).json()["unreadCount"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "snoozed"}, "status"),
        ({"channel": "fax"}, "channel"),
        ({"queue": "mine"}, "queue"),
        ({"agent": "not-a-uuid"}, "agent"),
        ({"agent": "me", "queue": "team"}, "queue"),
        ({"cursor": "garbage"}, "cursor"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_bad_inbox_filters_are_422(tenant, params, field):
    r = await tenant.client.get("/api/inbox", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_timeline_merges_channels_calls_and_events_newest_first(container, tenant, world):
    acc, owner = world["accounts"], world["owner"]
    case_id = world["pat"]["case_id"]
    r = await owner.post(
        f"/api/cases/{case_id}/messages",
        json={"messageType": "email", "subject": "Your balance", "body": "Please call us."},
    )
    assert r.status_code == 201, r.text
    email_id = r.json()["messageId"]
    await drain(container, ["dispatch"])  # sent: a status event
    await _reply(tenant, acc, world["pat"]["phone"], "Call me tomorrow")
    await drain(container, ["receipts"])
    r = await owner.post(f"/api/cases/{case_id}/calls", json={})
    assert r.status_code == 201, r.text
    call_id = r.json()["callId"]
    r = await owner.post(f"/api/calls/{call_id}/result", json={"result": "no_answer"})
    assert r.status_code == 200, r.text

    url = f"/api/borrowers/{world['pat']['borrower_id']}/timeline"
    everything = (await owner.get(url, params={"limit": 200})).json()
    items = everything["items"]
    assert everything["nextCursor"] is None
    ats = [datetime.fromisoformat(i["at"]) for i in items]
    assert ats == sorted(ats, reverse=True)
    kinds = {i["type"] for i in items}
    assert {"message", "message_event", "call"} <= kinds
    messages = [i for i in items if i["type"] == "message"]
    assert {(m["channel"], m["direction"]) for m in messages} >= {
        ("email", "outbound"),
        ("sms", "inbound"),
    }
    events = [i for i in items if i["type"] == "message_event" and i["messageId"] == email_id]
    assert [e["status"] for e in events][:1] == ["sent"]  # newest first
    (call,) = [i for i in items if i["type"] == "call"]
    assert call["callId"] == call_id
    assert call["result"] == "no_answer"
    assert call["channel"] == "voice"

    # Page by page, the same items in the same order, none twice.
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await owner.get(url, params=params)).json()
        assert len(page["items"]) <= 2
        paged += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [(i["type"], i["id"]) for i in paged] == [(i["type"], i["id"]) for i in items]

    # The call moved the conversation too.
    (conv,) = await _inbox(owner, agent="me")
    assert conv["lastMessage"]["kind"] == "call"
    assert conv["lastMessage"]["callId"] == call_id
    assert conv["channel"] == "voice"

    bad = await owner.get(url, params={"cursor": "nope"})
    assert bad.status_code == 422
    missing = await owner.get(f"/api/borrowers/{uuid.uuid4()}/timeline")
    assert missing.status_code == 404


async def test_close_reopen_and_a_new_reply_reopens(container, tenant, world):
    acc, owner = world["accounts"], world["owner"]
    await _reply(tenant, acc, world["pat"]["phone"], "thanks, all sorted")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(owner, agent="me")
    cid = conv["conversationId"]
    r = await owner.post(f"/api/inbox/{cid}/close")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    assert await _inbox(owner, agent="me") == []
    assert [c["conversationId"] for c in await _inbox(owner, agent="me", status="closed")] == [cid]
    assert (await owner.post(f"/api/inbox/{cid}/reopen")).json()["status"] == "open"
    await owner.post(f"/api/inbox/{cid}/close")
    await _reply(tenant, acc, world["pat"]["phone"], "actually, one question")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(owner, agent="me")
    assert conv["conversationId"] == cid
    assert conv["status"] == "open"
    assert (await world["other"].post(f"/api/inbox/{cid}/close")).status_code == 404


async def test_a_supervisor_gives_an_unknown_sender_to_an_agent(container, tenant, world):
    acc, other = world["accounts"], world["other"]
    await _reply(tenant, acc, "+13125550142", "hello?")
    await _reply(tenant, acc, world["pat"]["phone"], "hi")
    await drain(container, ["receipts"])
    (unknown,) = await _inbox(tenant.client, queue="team")
    cid = unknown["conversationId"]
    agent_id = str(other.user_id)  # type: ignore[attr-defined]

    r = await other.post(f"/api/inbox/{cid}/assign", json={"agentId": agent_id})
    assert r.status_code == 403  # agents don't assign
    r = await tenant.client.post(f"/api/inbox/{cid}/assign", json={"agentId": str(uuid.uuid4())})
    assert r.status_code == 422
    assert r.json()["errors"][0]["code"] == "unknown_user"
    (pat,) = await _inbox(world["owner"], agent="me")
    r = await tenant.client.post(
        f"/api/inbox/{pat['conversationId']}/assign", json={"agentId": agent_id}
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["code"] == "assign_the_case"

    r = await tenant.client.post(f"/api/inbox/{cid}/assign", json={"agentId": agent_id})
    assert r.status_code == 200, r.text
    assert r.json()["assignedAgentId"] == agent_id
    assert [c["conversationId"] for c in await _inbox(other, agent="me")] == [cid]
    assert await _inbox(world["owner"], queue="team") == []
    # The sender writes again: still theirs.
    await _reply(tenant, acc, "+13125550142", "anyone there?")
    await drain(container, ["receipts"])
    (conv,) = await _inbox(other, agent="me")
    assert conv["unreadCount"] == 2
