"""Frequency caps under concurrency: a cap check is read-then-write, so many agents (or
workers) contacting one borrower about one debt at the same moment must together stay
within the cap (reference/compliance.md, "What enforced means")."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from parley.dispatch.pipeline import Dispatcher
from tests.support import factories
from tests.support.compliance import Clock, us_borrower
from tests.support.live import live_api

NY = ZoneInfo("America/New_York")
NOW = datetime(2025, 6, 12, 10, 0, tzinfo=NY).astimezone(UTC)
CONCURRENT_CALLS = 50


@pytest.fixture
def clock(container: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(NOW)
    monkeypatch.setattr(container, "clock", c)
    return c


async def borrower(container: Any, org_id: uuid.UUID, *, region: str, phone: str) -> dict[str, str]:
    return await us_borrower(container, org_id, region=region, phone=phone)


async def _counted_calls(container: Any, case_id: str, since: datetime) -> int:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM calls WHERE case_id = %s AND placed_at > %s "
            "AND coalesce(result, 'pending') NOT IN ('busy', 'not_in_service', 'network_failure')",
            (case_id, since),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("transport", ["asgi", "http"])
async def test_fifty_simultaneous_calls_place_exactly_the_two_left_under_the_cap(
    tenant, container, clock, transport
):
    data = await borrower(container, tenant.organization_id, region="NY", phone="+12125550123")
    case_id = data["case_id"]
    # Five attempts in the last four days: two still without a result, three unanswered.
    for i in range(5):
        clock.now = NOW - timedelta(days=4) + i * timedelta(hours=15)
        r = await tenant.client.post(f"/api/cases/{case_id}/calls", json={})
        assert r.status_code == 201 and r.json()["status"] == "placed"
        if i < 3:
            r = await tenant.client.post(
                f"/api/calls/{r.json()['callId']}/result", json={"result": "no_answer"}
            )
            assert r.status_code == 200
    clock.now = NOW

    async def fire(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        responses = await asyncio.gather(
            *(client.post(f"/api/cases/{case_id}/calls", json={}) for _ in range(CONCURRENT_CALLS))
        )
        assert [r.status_code for r in responses] == [201] * CONCURRENT_CALLS
        return [r.json() for r in responses]

    if transport == "asgi":
        calls = await fire(tenant.client)
    else:
        async with (
            live_api(container) as base,
            httpx.AsyncClient(
                base_url=base,
                headers=tenant.headers,
                timeout=60,
                limits=httpx.Limits(max_connections=CONCURRENT_CALLS),
            ) as client,
        ):
            calls = await fire(client)

    assert Counter(c["status"] for c in calls) == {"placed": 2, "blocked": 48}
    for c in calls:
        if c["status"] == "blocked":
            assert c["compliance"]["reasons"] == ["reg_f_call_frequency"]
            assert c["placedAt"] is None and c["compliance"]["nextAllowedAt"] is not None
    window_start = NOW - timedelta(days=7)
    assert await _counted_calls(container, case_id, window_start) == 7

    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT k.status, d.outcome, (SELECT (c->>'counted')::int "
            "  FROM jsonb_array_elements(d.facts->'frequency'->'caps') c "
            "  WHERE c->>'rule' = 'reg_f_call_frequency') "
            "FROM calls k JOIN compliance_decisions d ON d.call_id = k.id "
            "WHERE k.case_id = %s AND k.created_at = %s",
            (case_id, NOW),
        )
        rows = await cur.fetchall()
    assert len(rows) == CONCURRENT_CALLS  # one decision per attempt, none lost
    # The two that went saw 5 and then 6 earlier attempts; every refused one saw 7.
    assert sorted(counted for status, _, counted in rows if status == "placed") == [5, 6]
    assert {(outcome, counted) for status, outcome, counted in rows if status == "blocked"} == {
        ("block", 7)
    }


@pytest.mark.parametrize("prior_call", [False, True])
async def test_parallel_dispatchers_never_send_more_than_the_massachusetts_cap(
    tenant, container, clock, prior_call
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id, region="MA", phone="+16175550123")
    case_id = data["case_id"]
    allowed = 2
    if prior_call:
        clock.now = NOW - timedelta(days=2)
        r = await tenant.client.post(f"/api/cases/{case_id}/calls", json={})
        assert r.json()["status"] == "placed"
        allowed = 1
    clock.now = NOW - timedelta(minutes=10)
    ids = []
    for i in range(10):
        r = await tenant.client.post(
            f"/api/cases/{case_id}/messages", json={"messageType": "sms", "body": f"Text {i}"}
        )
        assert r.status_code == 201 and r.json()["status"] == "queued", r.text
        ids.append(r.json()["messageId"])

    clock.now = NOW
    await asyncio.gather(*(Dispatcher(container).run([mid]) for mid in ids))

    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m.status, m.attempted_at, m.scheduled_at, d.outcome, d.rules "
            "FROM messages m JOIN compliance_decisions d "
            "  ON d.message_id = m.id AND d.stage = 'send' "
            "WHERE m.id = ANY(%s::uuid[])",
            (ids,),
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT count(*) FROM messages WHERE case_id = %s AND attempted_at IS NOT NULL",
            (case_id,),
        )
        attempted = (await cur.fetchone())[0]
    assert len(rows) == len(ids)  # every message got exactly one send-time decision
    assert attempted == allowed
    sent = [r for r in rows if r[1] is not None]
    assert len(sent) == allowed
    assert all(r[0] in ("sending", "sent") and r[3] == "allow" for r in sent)
    waiting = [r for r in rows if r[1] is None]
    assert len(waiting) == len(ids) - allowed
    for status, _, scheduled_at, outcome, rules in waiting:
        caps = next(v for v in rules if v["rule"] == "frequency_caps")
        assert (status, outcome, caps["reason"]) == ("scheduled", "defer", "ma_telephone_personal")
        assert scheduled_at > NOW + timedelta(days=4)
