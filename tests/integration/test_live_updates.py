"""Live updates over Server-Sent Events, through a real HTTP server: a reply recorded by
the inbound job reaches a connected client via PostgreSQL NOTIFY; agents only hear about
their own conversations and the team queue; shutdown ends the streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from parley.api.app import create_app
from parley.inbox import live
from tests.integration.test_inbox import _agent, _reply
from tests.support import factories
from tests.support.live import drain, free_port

# Only so that a broken stream fails the test instead of hanging it; no timing claim.
GENEROUS = 30.0


@contextlib.asynccontextmanager
async def serving(container: Any) -> AsyncIterator[tuple[str, Any]]:
    app = create_app(container)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await live.close_app(app)
        server.should_exit = True
        await task


class Stream:
    """An open SSE response, read event by event."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def _next(self) -> dict[str, Any] | None:
        event: dict[str, Any] = {}
        async for line in self.lines:
            if line.startswith("event:"):
                event["event"] = line[6:].strip()
            elif line.startswith("data:"):
                event["data"] = orjson.loads(line[5:].strip())
            elif line == "" and event:
                return event
        return None  # the stream ended

    async def next(self) -> dict[str, Any] | None:
        return await asyncio.wait_for(self._next(), GENEROUS)

    async def first_of(self, *kinds: str) -> dict[str, dict[str, Any]]:
        """The first event of each kind (in whatever order they come)."""
        found: dict[str, dict[str, Any]] = {}
        while len(found) < len(kinds):
            event = await self.next()
            assert event is not None, f"the stream ended before {kinds}"
            if event["event"] in kinds:
                found.setdefault(event["event"], event)
        return found

    async def next_of(self, kind: str) -> dict[str, Any]:
        while True:
            event = await self.next()
            assert event is not None, f"the stream ended before a {kind} event"
            if event["event"] == kind:
                return event


@contextlib.asynccontextmanager
async def connect(base: str, token: str) -> AsyncIterator[Stream]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=GENEROUS) as client,
        client.stream(
            "GET", "/api/events/stream", headers={"Authorization": f"Bearer {token}"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = Stream(response)
        # The first frame is sent once the server listens: later commits reach us.
        first = await asyncio.wait_for(anext(stream.lines), GENEROUS)
        assert first.startswith("retry:")
        yield stream


async def test_a_reply_is_pushed_to_the_assigned_agent_and_not_to_others(container, tenant):
    pat = await factories.borrower_with_case(container, tenant.organization_id)
    sam = await factories.borrower_with_case(
        container,
        tenant.organization_id,
        email="sam@example.com",
        phone="+12025550199",
        with_agent=False,
    )
    accounts = await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    owner = await _agent(container, tenant, pat["agent_id"])
    other = await _agent(container, tenant)
    tokens = {}
    for name, client in (("owner", owner), ("other", other)):
        tokens[name] = client.headers["Authorization"].removeprefix("Bearer ")
        await client.aclose()
    async with (
        serving(container) as (base, app),
        connect(base, tokens["owner"]) as mine,
        connect(base, tokens["other"]) as theirs,
        connect(base, tenant.token) as supervisor,
    ):
        assert live.hub_for(app).subscribers == 3
        await _reply(tenant, accounts, pat["phone"], "I can pay Friday")
        await drain(container, ["receipts"])
        got = await mine.first_of("message.received", "conversation.updated")
        received = got["message.received"]
        assert received["data"]["type"] == "message.received"
        assert received["data"]["organizationId"] == str(tenant.organization_id)
        data = received["data"]["data"]
        assert data["caseId"] == str(pat["case_id"])
        assert data["assignedAgentId"] == str(pat["agent_id"])
        assert data["messageType"] == "sms"
        assert data["preview"] == "I can pay Friday"
        updated = got["conversation.updated"]["data"]["data"]
        assert updated["unreadCount"] == 1
        assert updated["conversationId"] == data["conversationId"]
        assert (await supervisor.next_of("message.received"))["data"]["data"]["caseId"] == str(
            pat["case_id"]
        )

        # Then a reply to the unassigned case: the other agent's first message.received
        # is this one (Pat's, committed before, never reached them).
        await _reply(tenant, accounts, sam["phone"], "who is this")
        await drain(container, ["receipts"])
        seen = await theirs.next_of("message.received")
        assert seen["data"]["data"]["caseId"] == str(sam["case_id"])
        assert seen["data"]["data"]["assignedAgentId"] is None

        # An outbound message and its status changes reach the owner too.
        r = await tenant.client.post(
            f"/api/cases/{pat['case_id']}/messages", json={"messageType": "sms", "body": "Noted."}
        )
        assert r.status_code == 201, r.text
        created = await mine.next_of("message.created")
        assert created["data"]["data"]["messageId"] == r.json()["messageId"]
        await drain(container, ["dispatch"])
        statuses = []
        while "sent" not in statuses:
            change = await mine.next_of("message.status_changed")
            assert change["data"]["data"]["messageId"] == r.json()["messageId"]
            statuses.append(change["data"]["data"]["status"])
        assert statuses == ["sent"]  # `sending` is transient and not announced

        # Reassignment is announced to the agent who lost the case and the one who got it.
        r = await tenant.client.patch(
            f"/api/cases/{pat['case_id']}",
            json={"assignedAgentId": str(other.user_id)},  # type: ignore[attr-defined]
        )
        assert r.status_code == 200, r.text
        for stream in (mine, theirs):
            assigned = await stream.next_of("conversation.assigned")
            assert assigned["data"]["data"]["previousAgentId"] == str(pat["agent_id"])
            assert assigned["data"]["data"]["assignedAgentId"] == str(other.user_id)  # type: ignore[attr-defined]

        # Shutdown ends every stream (the server would otherwise wait for them).
        await live.close_app(app)
        for stream in (mine, theirs, supervisor):
            for _ in range(100):  # what was already queued, then the end
                if await stream.next() is None:
                    break
            else:
                raise AssertionError("the stream did not end")


async def test_the_stream_needs_a_valid_token(container, tenant):
    async with serving(container) as (base, _), httpx.AsyncClient(base_url=base) as client:
        r = await client.get("/api/events/stream")
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        r = await client.get(
            "/api/events/stream", headers={"Authorization": "Bearer prly_not-a-token"}
        )
        assert r.status_code == 401


@pytest.mark.parametrize("agent", [None, "u1"])
def test_subscription_filter(agent):
    sub = live.Subscription("org", agent)
    assert not sub.wants({"org": "other", "data": {}})
    assert sub.wants({"org": "org", "data": {"messageId": "m", "status": "sent"}})
    assert sub.wants({"org": "org", "data": {"assignedAgentId": None}})
    assert sub.wants({"org": "org", "data": {"assignedAgentId": "u1"}})
    assert sub.wants({"org": "org", "data": {"assignedAgentId": "u2"}}) is (agent is None)
    moved = {"org": "org", "data": {"assignedAgentId": "u2", "previousAgentId": "u1"}}
    assert sub.wants(moved)
