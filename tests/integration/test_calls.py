"""Call attempts through the gate: Regulation F's call frequency and post-conversation
rules, unconnected calls, direct consent, the Massachusetts overlay, and the call API's
own rules (a result is recorded once; tenants are isolated).

Every test runs on a fixed clock (``container.clock``) and checks what was stored: the
call rows (placed or blocked, ``placed_at``) and the decision recorded with each call.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from parley.dispatch.pipeline import Dispatcher
from parley.storage.models import Case
from tests.conftest import make_tenant
from tests.support import factories
from tests.support.compliance import Clock, at, ts, us_borrower

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
DAY = timedelta(days=1)


@pytest.fixture
def clock(container: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(at(NY, 2025, 6, 10, 9, 0))
    monkeypatch.setattr(container, "clock", c)
    return c


async def borrower(
    container: Any,
    org_id: uuid.UUID,
    *,
    timezone: str = "America/New_York",
    region: str = "NY",
    phone: str = "+12125550123",
) -> dict[str, Any]:
    return await us_borrower(container, org_id, timezone=timezone, region=region, phone=phone)


async def place(t: Any, case_id: str, **body: Any) -> dict[str, Any]:
    r = await t.client.post(f"/api/cases/{case_id}/calls", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def result(t: Any, call_id: str, outcome: str) -> dict[str, Any]:
    r = await t.client.post(f"/api/calls/{call_id}/result", json={"result": outcome})
    assert r.status_code == 200, r.text
    return r.json()


async def decision(t: Any, call_id: str) -> dict[str, Any]:
    r = await t.client.get(f"/api/calls/{call_id}/compliance")
    assert r.status_code == 200, r.text
    (only,) = r.json()["decisions"]
    return only


def cap(facts: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in facts["frequency"]["caps"] if c["rule"] == name]
    return found


async def call_rows(container: Any, case_id: str) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, placed_at, result, prior_consent FROM calls WHERE case_id = %s "
            "ORDER BY created_at, placed_at NULLS LAST",
            (case_id,),
        )
        return [tuple(r) for r in await cur.fetchall()]


async def test_the_eighth_call_in_seven_days_is_blocked_until_the_first_expires(
    tenant, container, clock
):
    data = await borrower(container, tenant.organization_id)
    case_id = data["case_id"]
    first = at(NY, 2025, 6, 10, 9, 0)
    for i in range(7):
        clock.now = first + i * DAY
        call = await place(tenant, case_id)
        assert call["status"] == "placed" and ts(call["placedAt"]) == clock.now
        assert call["compliance"]["outcome"] == "allow"
        assert (await result(tenant, call["callId"], "no_answer"))["status"] == "completed"

    clock.now = at(NY, 2025, 6, 16, 15, 0)
    blocked = await place(tenant, case_id)
    assert blocked["status"] == "blocked" and blocked["placedAt"] is None
    assert blocked["compliance"]["outcome"] == "block"
    assert "reg_f_call_frequency" in blocked["compliance"]["reasons"]
    # The rolling window: the first call stops counting 7 x 24 h after it was placed.
    expiry = first + 7 * DAY
    assert ts(blocked["compliance"]["nextAllowedAt"]) == expiry

    stored = await decision(tenant, blocked["callId"])
    assert stored["stage"] == "send" and stored["outcome"] == "block"
    reg_f = cap(stored["facts"], "reg_f_call_frequency")
    assert (reg_f["counted"], reg_f["maxAttempts"], reg_f["allowed"]) == (7, 7, False)
    assert len(reg_f["countedAttempts"]) == 7
    assert ts(reg_f["nextAllowedUtc"]) == expiry
    assert [a["result"] for a in stored["facts"]["frequency"]["attempts"]] == ["no_answer"] * 7
    assert (await tenant.client.get(f"/api/calls/{blocked['callId']}")).json()["status"] == (
        "blocked"
    )

    clock.now = expiry - timedelta(seconds=1)
    assert (await place(tenant, case_id))["status"] == "blocked"
    clock.now = expiry
    assert (await place(tenant, case_id))["status"] == "placed"

    rows = await call_rows(container, case_id)
    assert [r[0] for r in rows] == ["completed"] * 7 + ["blocked", "blocked", "placed"]
    assert sum(1 for r in rows if r[1] is not None) == 8
    listed = (await tenant.client.get(f"/api/cases/{case_id}/calls")).json()["calls"]
    assert len(listed) == 10


async def test_seven_consecutive_local_days_hold_across_the_fall_back_change(
    tenant, container, clock
):
    """2 Nov 2025 has 25 hours in New York: 7 x 24 h after 00:30 on 30 Oct is 23:30 on
    5 Nov, still the 7th local day of the first call. The cap holds until 6 Nov begins."""
    data = await borrower(container, tenant.organization_id)
    times = [at(NY, 2025, 10, 30, 0, 30), at(NY, 2025, 10, 31, 12, 0)]
    times += [at(NY, 2025, 11, day, 12, 0) for day in range(1, 6)]
    for when in times:
        clock.now = when
        call = await place(tenant, data["case_id"])
        assert call["status"] == "placed", call["compliance"]
        await result(tenant, call["callId"], "no_answer")
    clock.now = at(NY, 2025, 11, 5, 23, 45)
    late = await place(tenant, data["case_id"])
    assert late["status"] == "blocked"
    assert ts(late["compliance"]["nextAllowedAt"]) == at(NY, 2025, 11, 6, 0, 0)
    clock.now = at(NY, 2025, 11, 6, 0, 0)
    assert (await place(tenant, data["case_id"]))["status"] == "placed"


async def test_calls_that_did_not_connect_are_not_counted(tenant, container, clock):
    data = await borrower(container, tenant.organization_id)
    case_id = data["case_id"]
    start = clock.now
    outcomes = ["busy", "not_in_service", "network_failure"] + ["no_answer"] * 7
    for i, outcome in enumerate(outcomes):
        clock.now = start + i * timedelta(hours=12)
        call = await place(tenant, case_id)
        assert call["status"] == "placed", (i, call["compliance"])
        await result(tenant, call["callId"], outcome)

    clock.now = start + 5 * DAY
    blocked = await place(tenant, case_id)
    assert blocked["status"] == "blocked"
    assert blocked["compliance"]["reasons"] == ["reg_f_call_frequency"]
    facts = (await decision(tenant, blocked["callId"]))["facts"]
    assert cap(facts, "reg_f_call_frequency")["counted"] == 7
    excluded = [a for a in facts["frequency"]["attempts"] if a["excluded"]]
    assert [(a["result"], a["excluded"]) for a in excluded] == [
        (outcome, [{"rule": "reg_f_call_frequency", "why": "did_not_connect"}])
        for outcome in ("busy", "not_in_service", "network_failure")
    ]
    # The first counted call (the 4th placed, 36 h after the first) expires first.
    assert ts(blocked["compliance"]["nextAllowedAt"]) == start + timedelta(hours=36) + 7 * DAY


async def test_a_call_still_without_a_result_counts(tenant, container, clock):
    data = await borrower(container, tenant.organization_id)
    for _ in range(7):
        clock.now += timedelta(hours=3)
        assert (await place(tenant, data["case_id"]))["status"] == "placed"
    clock.now += timedelta(hours=3)
    blocked = await place(tenant, data["case_id"])
    assert blocked["status"] == "blocked"
    facts = (await decision(tenant, blocked["callId"]))["facts"]
    assert {a["result"] for a in facts["frequency"]["attempts"]} == {"pending"}


@pytest.mark.parametrize(
    ("timezone", "until"),
    [
        # Conversation on 10 June: calls are blocked through 16 June, local days.
        ("America/New_York", at(NY, 2025, 6, 17, 0, 0)),
        # Stated zone Los Angeles, address and phone New York: blocked until the 17th has
        # begun in both zones, i.e. midnight in Los Angeles.
        ("America/Los_Angeles", at(LA, 2025, 6, 17, 0, 0)),
    ],
)
async def test_no_call_for_seven_days_after_a_conversation(
    tenant, container, clock, timezone, until
):
    data = await borrower(container, tenant.organization_id, timezone=timezone)
    case_id = data["case_id"]
    clock.now = at(NY, 2025, 6, 10, 14, 0)
    talk = await place(tenant, case_id)
    assert talk["status"] == "placed"
    await result(tenant, talk["callId"], "conversation")

    clock.now = at(NY, 2025, 6, 10, 14, 30)
    blocked = await place(tenant, case_id)
    assert blocked["status"] == "blocked"
    assert blocked["compliance"]["reasons"] == ["reg_f_post_conversation"]
    assert ts(blocked["compliance"]["nextAllowedAt"]) == until
    post = (await decision(tenant, blocked["callId"]))["facts"]["frequency"]["postConversation"]
    assert post["allowed"] is False and ts(post["conversationAt"]) == at(NY, 2025, 6, 10, 14, 0)
    assert ts(post["blockedUntil"]) == until

    clock.now = until - timedelta(seconds=1)
    late = await place(tenant, case_id)
    assert late["status"] == "blocked", late["compliance"]
    clock.now = until
    assert (await place(tenant, case_id))["status"] == "placed"


async def _inbound_call(
    container: Any, tenant: Any, data: dict[str, Any], when, log_result, *, agent: bool = True
):
    """A call the borrower placed to us, ended and logged with `log_result`; answered by
    an agent, or (`agent=False`) taken by voicemail."""
    call_id = uuid.uuid4()
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM contact_points WHERE borrower_id = %s AND kind = 'phone'",
            (data["borrower_id"],),
        )
        contact = (await cur.fetchone())[0]
        await conn.execute(
            "INSERT INTO calls (id, organization_id, case_id, borrower_id, contact_point_id, "
            "to_address, direction, status, prior_consent, purpose, answered_at, ended_at, "
            "created_at) VALUES (%s, %s, %s, %s, %s, '+12125550123', 'inbound', 'completed', "
            "false, 'collection', %s, %s, %s)",
            (
                call_id,
                tenant.organization_id,
                data["case_id"],
                data["borrower_id"],
                contact,
                when,
                when + timedelta(minutes=5),
                when,
            ),
        )
        await conn.execute(
            "INSERT INTO call_legs (organization_id, call_id, call_sid, role, status, "
            "answered_at, ended_at) VALUES (%s, %s, %s, 'customer', 'completed', %s, %s)",
            (
                tenant.organization_id,
                call_id,
                f"CA{call_id.hex}",
                when,
                when + timedelta(minutes=5),
            ),
        )
        if agent:
            await conn.execute(
                "INSERT INTO call_legs (organization_id, call_id, call_sid, role, status, "
                "answered_at, ended_at) VALUES (%s, %s, %s, 'agent', 'completed', %s, %s)",
                (
                    tenant.organization_id,
                    call_id,
                    f"CB{call_id.hex}",
                    when,
                    when + timedelta(minutes=5),
                ),
            )
        if log_result is not None:
            await conn.execute(
                "INSERT INTO call_logs (organization_id, call_id, disposition, result, "
                "created_at) VALUES (%s, %s, 'spoke_to_customer', %s, %s)",
                (tenant.organization_id, call_id, log_result, when + timedelta(minutes=6)),
            )


async def test_a_conversation_on_a_call_the_borrower_placed_starts_the_period(
    tenant, container, clock
):
    """1006.14(b)(2)(i)(B) counts any telephone conversation, whoever dialed: after the
    borrower called in and spoke to an agent, our calls wait 7 local days. The inbound
    call itself is not one of our attempts."""
    data = await borrower(container, tenant.organization_id)
    await _inbound_call(container, tenant, data, at(NY, 2025, 6, 10, 11, 0), "conversation")
    clock.now = at(NY, 2025, 6, 10, 14, 0)
    blocked = await place(tenant, data["case_id"])
    assert blocked["status"] == "blocked"
    assert blocked["compliance"]["reasons"] == ["reg_f_post_conversation"]
    assert ts(blocked["compliance"]["nextAllowedAt"]) == at(NY, 2025, 6, 17, 0, 0)
    facts = (await decision(tenant, blocked["callId"]))["facts"]["frequency"]
    assert ts(facts["postConversation"]["conversationAt"]) == at(NY, 2025, 6, 10, 11, 5)
    [inbound] = facts["attempts"]
    assert inbound["result"] == "inbound_conversation" and inbound["countedBy"] == []
    assert facts["caps"][0]["counted"] == 0


async def test_an_inbound_call_without_a_conversation_neither_blocks_nor_counts(
    tenant, container, clock
):
    data = await borrower(container, tenant.organization_id)
    # Logged as a message left / no conversation, or not logged yet: neither starts the
    # period, and calls the borrower placed never count toward 7 in 7.
    await _inbound_call(container, tenant, data, at(NY, 2025, 6, 9, 11, 0), "left_message")
    await _inbound_call(container, tenant, data, at(NY, 2025, 6, 9, 12, 0), None)
    # A voicemail the agent logged as "callback requested" (a conversation disposition):
    # nobody spoke to the borrower.
    await _inbound_call(
        container, tenant, data, at(NY, 2025, 6, 9, 13, 0), "conversation", agent=False
    )
    for hour in range(9, 16):
        clock.now = at(NY, 2025, 6, 10, hour, 0)
        assert (await place(tenant, data["case_id"]))["status"] == "placed"
    clock.now = at(NY, 2025, 6, 10, 16, 0)
    eighth = await place(tenant, data["case_id"])
    # Blocked by the 7 outbound calls alone (were the inbound ones counted, the cap
    # would have blocked the sixth): allowed again when the first of ours expires.
    assert eighth["status"] == "blocked"
    assert eighth["compliance"]["reasons"] == ["reg_f_call_frequency"]
    assert ts(eighth["compliance"]["nextAllowedAt"]) == at(NY, 2025, 6, 17, 9, 0)
    facts = (await decision(tenant, eighth["callId"]))["facts"]["frequency"]
    assert facts["caps"][0]["counted"] == 7


async def test_direct_consent_lets_a_call_through_the_reg_f_cap(tenant, container, clock):
    data = await borrower(container, tenant.organization_id)
    case_id = data["case_id"]
    for _ in range(7):
        clock.now += timedelta(hours=6)
        call = await place(tenant, case_id)
        await result(tenant, call["callId"], "voicemail")
    clock.now += timedelta(hours=1)
    assert (await place(tenant, case_id))["status"] == "blocked"

    clock.now += timedelta(minutes=1)
    r = await tenant.client.post(
        f"/api/borrowers/{data['borrower_id']}/consents",
        json={"channel": "voice", "action": "direct_consent", "reason": "call me back at 3"},
    )
    assert r.status_code == 201, r.text
    clock.now += timedelta(hours=2)
    allowed = await place(tenant, case_id)
    assert allowed["status"] == "placed" and allowed["priorConsent"] is True
    stored = await decision(tenant, allowed["callId"])
    assert stored["outcome"] == "allow" and stored["facts"]["priorConsent"] is True
    rows = await call_rows(container, case_id)
    assert rows[-1][0] == "placed" and rows[-1][3] is True

    # The consent holds for 7 days only.
    clock.now += 8 * DAY
    for _ in range(7):
        clock.now += timedelta(hours=2)
        assert (await place(tenant, case_id))["status"] == "placed"
    clock.now += timedelta(hours=2)
    assert (await place(tenant, case_id))["status"] == "blocked"


async def test_a_call_outside_contact_hours_is_blocked_with_the_next_allowed_moment(
    container, clock
):
    federal = await make_tenant(container, "Federal Collections", policy=None)
    try:
        data = await borrower(container, federal.organization_id)
        clock.now = at(NY, 2025, 6, 10, 21, 0)
        blocked = await place(federal, data["case_id"])
        assert blocked["status"] == "blocked"
        assert blocked["compliance"]["reasons"] == ["outside_contact_hours"]
        assert ts(blocked["compliance"]["nextAllowedAt"]) == at(NY, 2025, 6, 11, 8, 0)
        clock.now = at(NY, 2025, 6, 11, 8, 0)
        assert (await place(federal, data["case_id"]))["status"] == "placed"
    finally:
        await federal.client.aclose()


async def test_a_blocked_call_names_a_next_moment_inside_contact_hours(container, clock):
    """The first of 7 calls was placed at 20:30 EST; 7 x 24 h later it is 21:30 EDT, too
    late to call: the next allowed moment is 08:00 the next morning, not 21:30."""
    federal = await make_tenant(container, "Federal Collections", policy=None)
    try:
        data = await borrower(container, federal.organization_id)
        clock.now = at(NY, 2025, 3, 3, 20, 30)
        for day in range(7):
            call = await place(federal, data["case_id"])
            assert call["status"] == "placed", call["compliance"]
            await result(federal, call["callId"], "no_answer")
            clock.now = at(NY, 2025, 3, 4 + day, 10, 0)
        clock.now = at(NY, 2025, 3, 10, 15, 0)
        blocked = await place(federal, data["case_id"])
        assert blocked["status"] == "blocked"
        assert blocked["compliance"]["reasons"] == ["reg_f_call_frequency"]
        assert ts(blocked["compliance"]["nextAllowedAt"]) == at(NY, 2025, 3, 11, 8, 0)
        facts = (await decision(federal, blocked["callId"]))["facts"]
        assert ts(cap(facts, "reg_f_call_frequency")["nextAllowedUtc"]) == at(
            NY, 2025, 3, 10, 21, 30
        )
        assert facts["contactHoursWhenCapsAllow"]["reasons"] == ["outside_contact_hours"]
        clock.now = at(NY, 2025, 3, 11, 8, 0)
        assert (await place(federal, data["case_id"]))["status"] == "placed"
    finally:
        await federal.client.aclose()


@pytest.mark.parametrize("region", ["MA", "Massachusetts", "US-MA"])
async def test_massachusetts_allows_two_telephone_communications_in_seven_days(
    tenant, container, clock, region
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id, region=region, phone="+16175550123")
    case_id = data["case_id"]
    sms_at = at(NY, 2025, 6, 10, 10, 0)
    clock.now = sms_at
    r = await tenant.client.post(
        f"/api/cases/{case_id}/messages", json={"messageType": "sms", "body": "Hi Pat"}
    )
    assert r.status_code == 201 and r.json()["status"] == "queued"
    first_sms = r.json()["messageId"]
    await Dispatcher(container).run([first_sms])
    clock.now = at(NY, 2025, 6, 11, 10, 0)
    call = await place(tenant, case_id)
    assert call["status"] == "placed"
    await result(tenant, call["callId"], "busy")  # MA counts it anyway

    # The third telephone communication within 7 days: a text waits, a call is refused.
    clock.now = at(NY, 2025, 6, 12, 10, 0)
    expiry = sms_at + 7 * DAY
    r = await tenant.client.post(
        f"/api/cases/{case_id}/messages", json={"messageType": "sms", "body": "Hi again"}
    )
    assert r.status_code == 201
    text = r.json()
    assert text["status"] == "scheduled" and ts(text["scheduledAt"]) == expiry
    report = (await tenant.client.get(f"/api/messages/{text['messageId']}/compliance")).json()
    (enqueue,) = report["decisions"]
    assert enqueue["outcome"] == "defer"
    caps = {v["rule"]: v for v in enqueue["rules"]}["frequency_caps"]
    assert caps["reason"] == "ma_telephone_personal"
    counted = [
        c for c in enqueue["facts"]["frequency"]["caps"] if c["rule"] == "ma_telephone_personal"
    ]
    assert counted[0]["counted"] == 2 and counted[0]["citation"] == "940 CMR 7.04(1)(f)"

    blocked = await place(tenant, case_id)
    assert blocked["status"] == "blocked"
    assert blocked["compliance"]["reasons"] == ["ma_telephone_personal"]
    assert ts(blocked["compliance"]["nextAllowedAt"]) == expiry

    # Direct consent lifts Reg F's presumption, not the Massachusetts cap.
    r = await tenant.client.post(
        f"/api/borrowers/{data['borrower_id']}/consents",
        json={"channel": "voice", "action": "direct_consent"},
    )
    assert r.status_code == 201
    clock.now += timedelta(minutes=5)
    still = await place(tenant, case_id)
    assert still["status"] == "blocked" and still["compliance"]["reasons"] == [
        "ma_telephone_personal"
    ]
    r = await tenant.client.get(f"/api/cases/{case_id}/contactability", params={"channel": "sms"})
    assert r.json()["outcome"] == "defer" and r.json()["reasons"] == ["ma_telephone_personal"]
    rows = await call_rows(container, case_id)
    assert [r[0] for r in rows] == ["completed", "blocked", "blocked"]

    # When the first text stops counting, the waiting one goes (the send-time gate agrees).
    clock.now = expiry
    await Dispatcher(container).run([text["messageId"]])
    report = (await tenant.client.get(f"/api/messages/{text['messageId']}/compliance")).json()
    assert report["status"] in ("sending", "sent")
    assert [(d["stage"], d["outcome"]) for d in report["decisions"]] == [
        ("enqueue", "defer"),
        ("send", "allow"),
    ]


async def test_the_borrowers_preferences_apply_to_calls(tenant, container, clock):
    data = await borrower(container, tenant.organization_id)
    case_id = data["case_id"]
    url = f"/api/cases/{case_id}/communication-preferences"
    assert (await tenant.client.put(url, json={"allowCalls": False})).status_code == 200
    blocked = await place(tenant, case_id)
    assert blocked["status"] == "blocked"
    assert blocked["compliance"]["reasons"] == ["channel_not_allowed_by_borrower"]
    assert blocked["compliance"]["nextAllowedAt"] is None  # not a matter of waiting

    r = await tenant.client.put(
        url, json={"allowCalls": True, "doNotContact": True, "exceptions": ["legal_notices"]}
    )
    assert r.status_code == 200
    clock.now += timedelta(minutes=1)
    blocked = await place(tenant, case_id)
    assert blocked["status"] == "blocked"
    assert blocked["compliance"]["reasons"] == ["do_not_contact_requested"]
    clock.now += timedelta(minutes=1)
    legal = await place(tenant, case_id, purpose="legal_notice")
    assert legal["status"] == "placed" and legal["purpose"] == "legal_notice"
    rows = await call_rows(container, case_id)
    assert [r[0] for r in rows] == ["blocked", "blocked", "placed"]


async def test_a_result_is_recorded_once_and_only_for_placed_calls(tenant, container, clock):
    data = await borrower(container, tenant.organization_id)
    call = await place(tenant, data["case_id"])
    url = f"/api/calls/{call['callId']}/result"

    r = await tenant.client.post(url, json={"result": "hung_up"})
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["result"]
    r = await tenant.client.post(url, json={"result": "no_answer", "extra": 1})
    assert r.status_code == 422
    r = await tenant.client.post(
        url, json={"result": "no_answer", "endedAt": (clock.now + DAY).isoformat()}
    )
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["endedAt"]
    assert (await call_rows(container, data["case_id"]))[0][:3] == (
        "placed",
        clock.now,
        None,
    )

    clock.now += timedelta(minutes=2)
    done = await result(tenant, call["callId"], "left_message")
    assert done["result"] == "left_message" and ts(done["endedAt"]) == clock.now
    r = await tenant.client.post(url, json={"result": "conversation"})
    assert r.status_code == 409
    assert (await call_rows(container, data["case_id"]))[0][2] == "left_message"

    async with container.db.session() as s:  # put the case into a state that stops calls
        case = await s.get(Case, uuid.UUID(data["case_id"]))
        case.status = "bankruptcy"
        await s.commit()
    blocked = await place(tenant, data["case_id"])
    assert blocked["status"] == "blocked" and blocked["compliance"]["reasons"] == ["bankruptcy"]
    r = await tenant.client.post(
        f"/api/calls/{blocked['callId']}/result", json={"result": "no_answer"}
    )
    assert r.status_code == 409
    assert (await call_rows(container, data["case_id"]))[1][:3] == ("blocked", None, None)


async def test_calls_are_isolated_between_tenants(tenant, other_tenant, container, clock):
    data = await borrower(container, tenant.organization_id)
    call = await place(tenant, data["case_id"])
    cid = call["callId"]
    assert (
        await other_tenant.client.post(f"/api/cases/{data['case_id']}/calls", json={})
    ).status_code == 404
    assert (await other_tenant.client.get(f"/api/cases/{data['case_id']}/calls")).status_code == 404
    assert (await other_tenant.client.get(f"/api/calls/{cid}")).status_code == 404
    assert (await other_tenant.client.get(f"/api/calls/{cid}/compliance")).status_code == 404
    r = await other_tenant.client.post(f"/api/calls/{cid}/result", json={"result": "no_answer"})
    assert r.status_code == 404
    assert (await tenant.client.get(f"/api/calls/{cid}")).json()["result"] is None
    rows = await call_rows(container, data["case_id"])
    assert len(rows) == 1 and rows[0][0] == "placed"
    assert (await tenant.client.get(f"/api/calls/{uuid.uuid4()}")).status_code == 404
