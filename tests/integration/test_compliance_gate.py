"""The compliance gate end to end: contact hours, contactability, preferences, the consent
ledger, case states, employer email and the organization's policy.

Every test runs on a fixed clock (``container.clock``) and asserts on what was stored: the
message's status and schedule, its dispatch job, and the compliance decisions recorded at
enqueue and at send time (GET /api/messages/{id}/compliance).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from parley.dispatch.pipeline import Dispatcher
from parley.storage.models import Borrower
from tests.conftest import make_tenant
from tests.support import factories
from tests.support.compliance import Clock, at, ts, us_borrower

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture
def clock(container: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(datetime(2025, 6, 10, 18, 0, tzinfo=UTC))
    monkeypatch.setattr(container, "clock", c)
    return c


@pytest.fixture
async def federal(container: Any) -> Any:
    """A tenant on the US federal defaults (contact hours 08:00-21:00)."""
    t = await make_tenant(container, "Federal Collections", policy=None)
    await factories.sandbox_accounts(container, t.organization_id, callbacks=False)
    yield t
    await t.client.aclose()


async def borrower(
    container: Any,
    org_id: uuid.UUID,
    *,
    timezone: str | None = "America/New_York",
    region: str = "NY",
    phone: str = "+12125550123",
    email: str = "pat@example.com",
    case_status: str = "open",
) -> dict[str, Any]:
    """A US borrower with an explicit time zone, one email and one mobile number, and a case."""
    return await us_borrower(
        container,
        org_id,
        timezone=timezone,
        region=region,
        phone=phone,
        email=email,
        case_status=case_status,
        amount="1500.00",
    )


async def send(t: Any, case_id: str, **body: Any) -> dict[str, Any]:
    body.setdefault("messageType", "sms")
    if body["messageType"] == "email":
        body.setdefault("subject", "Your account")
    body.setdefault("body", "Hi Pat, please call us about your account.")
    r = await t.client.post(f"/api/cases/{case_id}/messages", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def decisions(t: Any, message_id: str) -> list[dict[str, Any]]:
    r = await t.client.get(f"/api/messages/{message_id}/compliance")
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


async def contactability(t: Any, case_id: str, channel: str, **params: str) -> dict[str, Any]:
    r = await t.client.get(
        f"/api/cases/{case_id}/contactability", params={"channel": channel, **params}
    )
    assert r.status_code == 200, r.text
    return r.json()


def rule(record: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [v for v in record if v["rule"] == name]
    return found


async def scalar(container: Any, sql: str, *args: Any) -> Any:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
        return row[0] if row else None


async def jobs_for(container: Any, message_id: str) -> list[datetime | None]:
    """The scheduled_at of every dispatch job carrying this message id, oldest first."""
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT scheduled_at FROM procrastinate_jobs "
            "WHERE args->'message_ids' ? %s ORDER BY id",
            (message_id,),
        )
        return [row[0] for row in await cur.fetchall()]


async def message_row(container: Any, message_id: str) -> tuple[Any, ...]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, scheduled_at, attempted_at FROM messages WHERE id = %s",
            (message_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)


# --- contact hours ----------------------------------------------------------------------


async def test_sms_at_22_local_is_deferred_to_08_local_and_sent_after(federal, container, clock):
    data = await borrower(container, federal.organization_id)
    clock.now = at(NY, 2025, 6, 10, 22, 0)  # 02:00Z on 11 June
    eight = at(NY, 2025, 6, 11, 8, 0)
    assert eight == datetime(2025, 6, 11, 12, 0, tzinfo=UTC)

    msg = await send(federal, data["case_id"])
    assert msg["status"] == "scheduled"
    assert ts(msg["scheduledAt"]) == eight
    assert await jobs_for(container, msg["messageId"]) == [eight]

    (enqueue,) = await decisions(federal, msg["messageId"])
    assert enqueue["stage"] == "enqueue" and enqueue["outcome"] == "defer"
    assert ts(enqueue["deferUntil"]) == eight
    hours = rule(enqueue["rules"], "contact_hours")
    assert hours["outcome"] == "defer" and hours["reason"] == "outside_contact_hours"
    assert ts(hours["deferUntil"]) == eight
    facts = enqueue["facts"]["contactHours"]
    assert facts["zones"]["zones"] == ["America/New_York"]
    (zone,) = facts["perZone"]
    assert zone["zone"] == "America/New_York" and zone["allowed"] is False
    assert datetime.fromisoformat(zone["localTime"]) == datetime(2025, 6, 10, 22, 0, tzinfo=NY)
    assert zone["localTime"].startswith("2025-06-10T22:00:00")

    # The job runs at 08:00:01 local: the send-time gate allows it and it is claimed.
    clock.now = eight + timedelta(seconds=1)
    await Dispatcher(container).run([msg["messageId"]])
    status, _, attempted_at = await message_row(container, msg["messageId"])
    assert status in ("sending", "sent")
    assert attempted_at == clock.now
    enqueue_again, send_stage = await decisions(federal, msg["messageId"])
    assert enqueue_again == enqueue
    assert send_stage["stage"] == "send" and send_stage["outcome"] == "allow"
    assert rule(send_stage["rules"], "contact_hours")["outcome"] == "allow"
    (zone,) = send_stage["facts"]["contactHours"]["perZone"]
    assert zone["allowed"] is True and zone["localTime"].startswith("2025-06-11T08:00:01")


async def test_a_deferred_message_still_outside_hours_at_send_time_is_deferred_again(
    federal, container, clock
):
    data = await borrower(container, federal.organization_id)
    clock.now = at(NY, 2025, 6, 10, 23, 30)
    msg = await send(federal, data["case_id"])
    eight = at(NY, 2025, 6, 11, 8, 0)
    assert msg["status"] == "scheduled" and ts(msg["scheduledAt"]) == eight

    # The job runs early (e.g. a worker's clock, or an operator re-queued it) at 06:00.
    clock.now = at(NY, 2025, 6, 11, 6, 0)
    await Dispatcher(container).run([msg["messageId"]])
    status, scheduled_at, attempted_at = await message_row(container, msg["messageId"])
    assert (status, scheduled_at, attempted_at) == ("scheduled", eight, None)
    assert await jobs_for(container, msg["messageId"]) == [eight, eight]  # a new job
    _, send_stage = await decisions(federal, msg["messageId"])
    assert send_stage["stage"] == "send" and send_stage["outcome"] == "defer"
    assert ts(send_stage["deferUntil"]) == eight
    assert rule(send_stage["rules"], "contact_hours")["reason"] == "outside_contact_hours"
    report = (await federal.client.get(f"/api/messages/{msg['messageId']}/delivery-report")).json()
    assert report["events"][-1]["event"] == "scheduled"


async def test_disagreeing_location_signals_need_convenient_hours_in_every_zone(
    federal, container, clock
):
    # Stated zone Los Angeles; address and phone (212) say New York.
    data = await borrower(container, federal.organization_id, timezone="America/Los_Angeles")
    case_id = data["case_id"]

    clock.now = at(NY, 2025, 6, 10, 9, 0)  # 09:00 in New York, 06:00 in Los Angeles
    msg = await send(federal, case_id)
    eight_la = at(LA, 2025, 6, 10, 8, 0)  # = 11:00 New York
    assert msg["status"] == "scheduled" and ts(msg["scheduledAt"]) == eight_la
    (enqueue,) = await decisions(federal, msg["messageId"])
    facts = enqueue["facts"]["contactHours"]
    assert facts["zones"]["zones"] == ["America/Los_Angeles", "America/New_York"]
    assert facts["zones"]["disagree"] is True
    per_zone = {z["zone"]: z for z in facts["perZone"]}
    assert per_zone["America/New_York"]["allowed"] is True
    assert per_zone["America/Los_Angeles"]["allowed"] is False
    assert per_zone["America/Los_Angeles"]["localTime"].startswith("2025-06-10T06:00:00")

    # 21:30 in New York is 18:30 in Los Angeles: refused until 08:00 LA the next day
    # (08:00 New York would still be 05:00 in Los Angeles).
    clock.now = at(NY, 2025, 6, 10, 21, 30)
    answer = await contactability(federal, case_id, "sms")
    assert answer["outcome"] == "defer" and answer["allowed"] is False
    assert ts(answer["nextAllowedAt"]) == at(LA, 2025, 6, 11, 8, 0)

    # 14:00 New York / 11:00 Los Angeles: allowed in both.
    clock.now = at(NY, 2025, 6, 10, 14, 0)
    assert (await contactability(federal, case_id, "sms"))["allowed"] is True
    assert (await send(federal, case_id))["status"] == "queued"


async def test_borrower_stated_contact_hours_narrow_the_window(federal, container, clock):
    data = await borrower(container, federal.organization_id)
    case_id = data["case_id"]
    r = await federal.client.put(
        f"/api/cases/{case_id}/communication-preferences",
        json={"contactHours": {"start": "18:00", "end": "20:00"}},
    )
    assert r.status_code == 200, r.text

    clock.now = at(NY, 2025, 6, 10, 14, 0)  # inside Reg F hours, outside the borrower's
    msg = await send(federal, case_id)
    six_pm = at(NY, 2025, 6, 10, 18, 0)
    assert msg["status"] == "scheduled" and ts(msg["scheduledAt"]) == six_pm
    (enqueue,) = await decisions(federal, msg["messageId"])
    hours = rule(enqueue["rules"], "contact_hours")
    assert hours["reason"] == "borrower_inconvenient_time"
    assert enqueue["facts"]["preferences"]["contactHours"] == ["18:00:00", "20:00:00"]

    clock.now = at(NY, 2025, 6, 10, 20, 30)  # Reg F still allows 20:30; the borrower not
    answer = await contactability(federal, case_id, "email")
    assert answer["outcome"] == "defer"
    assert ts(answer["nextAllowedAt"]) == at(NY, 2025, 6, 11, 18, 0)

    clock.now = at(NY, 2025, 6, 10, 19, 0)
    assert (await send(federal, case_id))["status"] == "queued"


async def test_a_text_waiting_for_a_cap_is_scheduled_inside_the_borrowers_hours(
    tenant, container, clock
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id, region="MA", phone="+16175550123")
    case_id = data["case_id"]
    for minute in (0, 5):  # two texts: the Massachusetts cap for 7 days
        clock.now = at(NY, 2025, 6, 10, 10, minute)
        msg = await send(tenant, case_id)
        await Dispatcher(container).run([msg["messageId"]])
        assert (await message_row(container, msg["messageId"]))[2] == clock.now
    r = await tenant.client.put(
        f"/api/cases/{case_id}/communication-preferences",
        json={"contactHours": {"start": "18:00", "end": "20:00"}},
    )
    assert r.status_code == 200

    clock.now = at(NY, 2025, 6, 11, 19, 0)
    third = await send(tenant, case_id)
    # The cap frees up at 10:00 on the 17th, outside the borrower's hours: 18:00 it is.
    assert third["status"] == "scheduled"
    assert ts(third["scheduledAt"]) == at(NY, 2025, 6, 17, 18, 0)
    (enqueue,) = await decisions(tenant, third["messageId"])
    assert rule(enqueue["rules"], "frequency_caps")["reason"] == "ma_telephone_personal"
    assert ts(rule(enqueue["rules"], "frequency_caps")["deferUntil"]) == at(NY, 2025, 6, 17, 10)
    assert ts(enqueue["deferUntil"]) == at(NY, 2025, 6, 17, 18, 0)
    assert await jobs_for(container, third["messageId"]) == [at(NY, 2025, 6, 17, 18, 0)]

    clock.now = at(NY, 2025, 6, 17, 18, 0)
    await Dispatcher(container).run([third["messageId"]])
    assert (await message_row(container, third["messageId"]))[0] in ("sending", "sent")


async def test_contact_hours_across_spring_forward(federal, container, clock):
    data = await borrower(container, federal.organization_id)
    # 2025-03-09: clocks go from 02:00 EST to 03:00 EDT. The day after, 07:30 EDT is
    # 11:30Z and 08:00 EDT is 12:00Z (an EST offset would answer 13:00Z).
    clock.now = datetime(2025, 3, 10, 11, 30, tzinfo=UTC)
    msg = await send(federal, data["case_id"])
    assert msg["status"] == "scheduled"
    assert ts(msg["scheduledAt"]) == datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    (enqueue,) = await decisions(federal, msg["messageId"])
    (zone,) = enqueue["facts"]["contactHours"]["perZone"]
    assert zone["localTime"] == "2025-03-10T07:30:00-04:00"

    # During the night of the change itself: 01:30 EST (06:30Z) -> 08:00 EDT (12:00Z).
    clock.now = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)
    answer = await contactability(federal, data["case_id"], "sms")
    assert answer["outcome"] == "defer"
    assert ts(answer["nextAllowedAt"]) == datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


# --- contactability ---------------------------------------------------------------------

COUNTS = (
    "SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM compliance_decisions), "
    "(SELECT count(*) FROM message_events), (SELECT count(*) FROM procrastinate_jobs), "
    "(SELECT count(*) FROM calls), (SELECT count(*) FROM consent_events)"
)


async def _counts(container: Any) -> tuple[int, ...]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(COUNTS)
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)


async def test_contactability_answers_why_and_when_without_writing(federal, container, clock):
    data = await borrower(container, federal.organization_id)
    clock.now = at(NY, 2025, 6, 10, 22, 0)
    await send(federal, data["case_id"])  # something on record already
    before = await _counts(container)
    assert before[0] == 1 and before[1] == 1

    answer = await contactability(federal, data["case_id"], "sms")
    assert answer["allowed"] is False and answer["outcome"] == "defer"
    assert ts(answer["nextAllowedAt"]) == at(NY, 2025, 6, 11, 8, 0)
    assert answer["reasons"] == ["outside_contact_hours"]
    assert rule(answer["rules"], "contact_hours")["reason"] == "outside_contact_hours"
    assert answer["facts"]["contactHours"]["perZone"][0]["zone"] == "America/New_York"
    assert answer["to"] == data["phone"] and answer["contactPointId"] == data["phone_id"]
    assert ts(answer["evaluatedAt"]) == clock.now

    voice = await contactability(federal, data["case_id"], "voice")
    # A call cannot wait: it is refused now, with the next allowed moment.
    assert voice["outcome"] == "block" and ts(voice["nextAllowedAt"]) == at(NY, 2025, 6, 11, 8)
    assert voice["facts"]["frequency"]["caps"][0]["rule"] == "reg_f_call_frequency"

    clock.now = at(NY, 2025, 6, 11, 10, 0)
    answer = await contactability(federal, data["case_id"], "email")
    assert answer["allowed"] is True and answer["outcome"] == "allow"
    assert answer["reasons"] == [] and answer["nextAllowedAt"] is None
    assert answer["to"] == data["email"]
    assert await _counts(container) == before


async def test_contactability_refuses_unknown_channels_and_other_tenants_cases(
    federal, other_tenant, container, clock
):
    data = await borrower(container, federal.organization_id)
    r = await federal.client.get(
        f"/api/cases/{data['case_id']}/contactability", params={"channel": "pigeon"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["channel"]
    r = await federal.client.get(f"/api/cases/{data['case_id']}/contactability")
    assert r.status_code == 422
    r = await other_tenant.client.get(
        f"/api/cases/{data['case_id']}/contactability", params={"channel": "sms"}
    )
    assert r.status_code == 404


# --- preferences ------------------------------------------------------------------------


async def test_the_seed_preference_documents_merge_into_new_versions(tenant, container, clock):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(
        container,
        tenant.organization_id,
        timezone="Europe/Copenhagen",
        email="debtor@example.com",
        phone="+4512345678",
    )
    url = f"/api/cases/{data['case_id']}/communication-preferences"
    first = {
        "preferredChannel": "email",
        "emailAddress": "debtor@example.com",
        "phoneNumber": "+4512345678",
        "allowSms": True,
        "allowEmail": True,
        "preferredLanguage": "da",
        "doNotContact": False,
        "contactHours": {"start": "09:00", "end": "17:00", "timezone": "Europe/Copenhagen"},
    }
    r = await tenant.client.put(url, json=first)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    opt_out = {
        "doNotContact": True,
        "reason": "Debtor requested no contact",
        "effectiveDate": "2024-01-15",
        "exceptions": ["legal_notices", "payment_confirmations"],
    }
    r = await tenant.client.put(url, json=opt_out)
    assert r.status_code == 200, r.text
    merged = r.json()
    assert merged["version"] == 2
    assert merged["preferences"] == {**first, **opt_out}
    assert (await tenant.client.get(url)).json()["preferences"] == merged["preferences"]

    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT version, document FROM communication_preferences WHERE case_id = %s "
            "ORDER BY version",
            (data["case_id"],),
        )
        rows = await cur.fetchall()
    assert [v for v, _ in rows] == [1, 2]
    assert rows[0][1] == first  # the old version is kept as it was
    assert rows[1][1] == {**first, **opt_out}

    other = await make_tenant(container, "Other Org")
    try:
        assert (await other.client.get(url)).status_code == 404
        assert (await other.client.put(url, json={"allowSms": False})).status_code == 404
    finally:
        await other.client.aclose()
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM communication_preferences WHERE case_id = %s",
            (data["case_id"],),
        )
        assert (await cur.fetchone())[0] == 2


async def test_allow_sms_false_blocks_sms_but_not_email_even_when_already_queued(
    tenant, container, clock
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id)
    queued = await send(tenant, data["case_id"])
    assert queued["status"] == "queued"
    r = await tenant.client.put(
        f"/api/cases/{data['case_id']}/communication-preferences", json={"allowSms": False}
    )
    assert r.status_code == 200, r.text

    blocked = await send(tenant, data["case_id"])
    assert blocked["status"] == "blocked"
    (enqueue,) = await decisions(tenant, blocked["messageId"])
    assert enqueue["outcome"] == "block"
    medium = rule(enqueue["rules"], "medium_preference")
    assert medium["outcome"] == "block" and medium["reason"] == "channel_not_allowed_by_borrower"
    assert await jobs_for(container, blocked["messageId"]) == []

    email = await send(tenant, data["case_id"], messageType="email")
    assert email["status"] == "queued"
    answer = await contactability(tenant, data["case_id"], "sms")
    assert answer["outcome"] == "block" and answer["reasons"] == ["channel_not_allowed_by_borrower"]

    # The SMS queued before the change is stopped by the send-time gate (invariant 3).
    await Dispatcher(container).run([queued["messageId"], email["messageId"]])
    assert (await message_row(container, queued["messageId"]))[0] == "blocked"
    assert (await message_row(container, email["messageId"]))[0] in ("sending", "sent")
    _, send_stage = await decisions(tenant, queued["messageId"])
    assert send_stage["stage"] == "send" and send_stage["outcome"] == "block"
    assert rule(send_stage["rules"], "medium_preference")["reason"] == (
        "channel_not_allowed_by_borrower"
    )


async def test_do_not_contact_blocks_collection_allows_legal_notices_and_cancels_waiting(
    tenant, container, clock
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id)
    case_id = data["case_id"]
    later = (clock.now + timedelta(hours=2)).isoformat()
    waiting = await send(tenant, case_id, sendAt=later)
    queued = await send(tenant, case_id, messageType="email")
    notice = await send(tenant, case_id, purpose="legal_notice", sendAt=later)
    assert [m["status"] for m in (waiting, queued, notice)] == ["scheduled", "queued", "scheduled"]

    r = await tenant.client.put(
        f"/api/cases/{case_id}/communication-preferences",
        json={"doNotContact": True, "reason": "asked us to stop", "exceptions": ["legal_notices"]},
    )
    assert r.status_code == 200, r.text

    for m in (waiting, queued):
        status, _, _ = await message_row(container, m["messageId"])
        assert status == "cancelled"
        report = await tenant.client.get(f"/api/messages/{m['messageId']}/delivery-report")
        last = report.json()["events"][-1]
        assert last["event"] == "cancelled" and last["reason"] == "do not contact requested"
    assert (await message_row(container, notice["messageId"]))[0] == "scheduled"

    blocked = await send(tenant, case_id)
    assert blocked["status"] == "blocked"
    (enqueue,) = await decisions(tenant, blocked["messageId"])
    dnc = rule(enqueue["rules"], "do_not_contact")
    assert dnc["outcome"] == "block" and dnc["reason"] == "do_not_contact_requested"
    assert enqueue["facts"]["preferences"]["doNotContact"] is True

    legal = await send(tenant, case_id, purpose="legal_notice")
    assert legal["status"] == "queued"
    (enqueue,) = await decisions(tenant, legal["messageId"])
    assert enqueue["outcome"] == "allow" and enqueue["facts"]["purpose"] == "legal_notice"
    # payment confirmations were not listed as an exception this time
    confirmation = await send(tenant, case_id, purpose="payment_confirmation")
    assert confirmation["status"] == "blocked"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"contactHours": {"start": "25:00", "end": "17:00"}}, ["contactHours.start"]),
        ({"contactHours": {"start": "9am", "end": "17:00"}}, ["contactHours.start"]),
        (
            {"contactHours": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}},
            ["contactHours.timezone"],
        ),
        ({"allowSms": False, "favouriteColour": "blue"}, ["favouriteColour"]),
        ({"exceptions": ["birthdays"]}, ["exceptions.0"]),
        ({"effectiveDate": "15/01/2024"}, ["effectiveDate"]),
        ({"inconvenientTimes": [{"start": "09:00", "end": "nope"}]}, ["inconvenientTimes.0.end"]),
    ],
)
async def test_invalid_preferences_are_refused_with_field_errors_and_nothing_written(
    tenant, container, body, fields
):
    data = await borrower(container, tenant.organization_id)
    url = f"/api/cases/{data['case_id']}/communication-preferences"
    r = await tenant.client.put(url, json={"allowEmail": True})
    assert r.status_code == 200
    r = await tenant.client.put(url, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == fields
    versions = await scalar(
        container,
        "SELECT array_agg(version ORDER BY version) FROM communication_preferences "
        "WHERE case_id = %s",
        data["case_id"],
    )
    assert versions == [1]
    assert (await tenant.client.get(url)).json()["preferences"] == {"allowEmail": True}


# --- the consent ledger -----------------------------------------------------------------


async def test_revoking_sms_consent_blocks_and_cancels_and_a_grant_restores(
    tenant, container, clock
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id)
    case_id, borrower_id = data["case_id"], data["borrower_id"]
    waiting = await send(tenant, case_id, sendAt=(clock.now + timedelta(hours=1)).isoformat())
    queued = await send(tenant, case_id)
    email = await send(tenant, case_id, messageType="email")

    clock.now += timedelta(minutes=5)
    r = await tenant.client.post(
        f"/api/borrowers/{borrower_id}/consents",
        json={
            "channel": "sms",
            "action": "revoke",
            "contactPointId": data["phone_id"],
            "reason": "said 'stop texting me' on a call",
            "limitToChannel": True,  # texts only, as the borrower said
        },
    )
    assert r.status_code == 201, r.text
    revocation = r.json()
    assert revocation["action"] == "revoke" and revocation["address"] == data["phone"]
    assert ts(revocation["effectiveAt"]) == clock.now

    for m in (waiting, queued):
        assert (await message_row(container, m["messageId"]))[0] == "cancelled"
        report = await tenant.client.get(f"/api/messages/{m['messageId']}/delivery-report")
        last = report.json()["events"][-1]
        assert last["event"] == "cancelled"
        assert "consent revoked" in last["reason"]
    assert (await message_row(container, email["messageId"]))[0] == "queued"

    blocked = await send(tenant, case_id)
    assert blocked["status"] == "blocked"
    (enqueue,) = await decisions(tenant, blocked["messageId"])
    consent = rule(enqueue["rules"], "channel_consent")
    assert consent["outcome"] == "block" and consent["reason"] == "consent_revoked"
    assert enqueue["facts"]["consent"]["state"] == "revoked"
    assert enqueue["facts"]["consent"]["eventId"] == revocation["consentId"]
    assert (await contactability(tenant, case_id, "email"))["allowed"] is True

    clock.now += timedelta(days=1)
    r = await tenant.client.post(
        f"/api/borrowers/{borrower_id}/consents",
        json={"channel": "sms", "action": "grant", "contactPointId": data["phone_id"]},
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    again = await send(tenant, case_id)
    assert again["status"] == "queued"
    (enqueue,) = await decisions(tenant, again["messageId"])
    assert enqueue["facts"]["consent"]["state"] == "granted"
    assert enqueue["facts"]["consent"]["eventId"] == grant["consentId"]

    history = (await tenant.client.get(f"/api/borrowers/{borrower_id}/consents")).json()
    assert [(c["consentId"], c["action"]) for c in history["consents"]] == [
        (revocation["consentId"], "revoke"),
        (grant["consentId"], "grant"),
    ]


async def test_the_consent_ledger_is_append_only(tenant, container, other_tenant, clock):
    data = await borrower(container, tenant.organization_id)
    url = f"/api/borrowers/{data['borrower_id']}/consents"
    r = await tenant.client.post(url, json={"channel": "email", "action": "revoke"})
    assert r.status_code == 201
    consent_id = r.json()["consentId"]
    async with container.db.pool.connection() as conn:
        for sql in (
            "UPDATE consent_events SET action = 'grant' WHERE id = %s",
            "DELETE FROM consent_events WHERE id = %s",
        ):
            with pytest.raises(psycopg.errors.RaiseException):
                await conn.execute(sql, (consent_id,))
    (only,) = (await tenant.client.get(url)).json()["consents"]
    assert only["action"] == "revoke"

    r = await tenant.client.post(url, json={"channel": "sms", "action": "sometimes"})
    assert r.status_code == 422
    r = await tenant.client.post(url, json={"channel": "sms", "action": "direct_consent"})
    assert r.status_code == 422
    assert (await other_tenant.client.get(url)).status_code == 404
    assert (
        await other_tenant.client.post(url, json={"channel": "sms", "action": "revoke"})
    ).status_code == 404
    assert await scalar(container, "SELECT count(*) FROM consent_events") == 1


# --- case states ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("disputed", "case_disputed"),
        ("bankruptcy", "bankruptcy"),
        ("cease_communication", "cease_communication_requested"),
        ("attorney_represented", "attorney_represented"),
        ("deceased", "borrower_deceased"),
    ],
)
async def test_case_states_stop_contact_except_legal_notices(
    tenant, container, clock, status, reason
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id, case_status=status)
    answer = await contactability(tenant, data["case_id"], "email")
    assert answer["outcome"] == "block" and answer["reasons"] == [reason]
    assert answer["facts"]["caseStatus"] == status

    blocked = await send(tenant, data["case_id"])
    assert blocked["status"] == "blocked"
    (enqueue,) = await decisions(tenant, blocked["messageId"])
    assert rule(enqueue["rules"], "case_state") == {
        "rule": "case_state",
        "outcome": "block",
        "reason": reason,
        "deferUntil": None,
    }
    r = await tenant.client.post(f"/api/cases/{data['case_id']}/calls", json={})
    assert r.status_code == 201 and r.json()["status"] == "blocked"
    assert reason in r.json()["compliance"]["reasons"]

    legal = await send(tenant, data["case_id"], purpose="legal_notice")
    assert legal["status"] == "queued"
    (enqueue,) = await decisions(tenant, legal["messageId"])
    assert rule(enqueue["rules"], "case_state")["outcome"] == "allow"
    await Dispatcher(container).run([legal["messageId"]])
    assert (await message_row(container, legal["messageId"]))[0] in ("sending", "sent")


# --- employer email ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "contact", [{"source": "employer"}, {"label": "work", "source": "borrower_provided"}]
)
async def test_an_employer_email_address_needs_the_borrowers_consent(
    tenant, container, clock, contact
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    data = await borrower(container, tenant.organization_id)
    r = await tenant.client.post(
        f"/api/borrowers/{data['borrower_id']}/contact-points",
        json={"type": "email", "value": "pat.doe@harbor-logistics.example", **contact},
    )
    assert r.status_code == 201, r.text
    work = r.json()

    answer = await contactability(tenant, data["case_id"], "email", to=work["value"])
    assert answer["outcome"] == "block" and answer["reasons"] == ["employer_email_address"]
    blocked = await send(tenant, data["case_id"], messageType="email", to=work["value"])
    assert blocked["status"] == "blocked"
    (enqueue,) = await decisions(tenant, blocked["messageId"])
    assert rule(enqueue["rules"], "employer_email")["reason"] == "employer_email_address"
    assert enqueue["facts"]["contactPoint"]["source"] == contact["source"]
    # The personal address is fine.
    assert (await send(tenant, data["case_id"], messageType="email"))["status"] == "queued"

    clock.now += timedelta(minutes=1)
    r = await tenant.client.post(
        f"/api/borrowers/{data['borrower_id']}/consents",
        json={"channel": "email", "action": "grant", "contactPointId": work["contactPointId"]},
    )
    assert r.status_code == 201, r.text
    allowed = await send(tenant, data["case_id"], messageType="email", to=work["value"])
    assert allowed["status"] == "queued"
    (enqueue,) = await decisions(tenant, allowed["messageId"])
    assert rule(enqueue["rules"], "employer_email")["outcome"] == "allow"
    assert enqueue["facts"]["consent"]["state"] == "granted"


# --- the organization's policy ----------------------------------------------------------


async def _agent_client(container: Any, t: Any) -> Any:
    import httpx

    from parley.api.app import create_app
    from parley.services.auth import Role, issue_token

    async with container.db.session() as s:
        token = await issue_token(
            s, organization_id=t.organization_id, role=Role.AGENT, name="agent token"
        )
        await s.commit()
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_policy_is_validated_and_only_admins_change_it(federal, container, clock):
    url = "/api/compliance/policy"
    before = (await federal.client.get(url)).json()
    assert before["version"] == 0 and before["effective"]["contactHours"]["start"] == "08:00:00"

    bad = {
        "contactHours": {"start": "25:00", "end": "17:00", "bedtime": "22:00"},
        "frequency": {"postConversationDays": 0, "federal": "yes"},
        "employerEmailRule": "sometimes",
        "colour": "blue",
    }
    r = await federal.client.put(url, json=bad)
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {
        "colour",
        "contactHours.bedtime",
        "contactHours.start",
        "frequency.postConversationDays",
        "frequency.federal",
        "employerEmailRule",
    }
    r = await federal.client.put(
        url, json={"frequency": {"additionalCaps": [{"name": "x", "channels": ["fax"]}]}}
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {
        "frequency.additionalCaps[0].channels",
        "frequency.additionalCaps[0].maxAttempts",
        "frequency.additionalCaps[0].windowDays",
    }
    # A cap named like a built-in rule (or two caps with one name) would make the gate
    # unable to combine the rules: every later attempt would fail. Refused up front.
    for caps in (
        [
            {
                "name": "reg_f_call_frequency",
                "channels": ["voice"],
                "maxAttempts": 3,
                "windowDays": 7,
            }
        ],
        [{"name": "ma_telephone_personal", "channels": ["sms"], "maxAttempts": 1, "windowDays": 7}],
        [
            {
                "name": "reg_f_post_conversation",
                "channels": ["sms"],
                "maxAttempts": 1,
                "windowDays": 7,
            }
        ],
        [
            {"name": "texts", "channels": ["sms"], "maxAttempts": 3, "windowDays": 7},
            {"name": "texts", "channels": ["sms"], "maxAttempts": 5, "windowDays": 30},
        ],
    ):
        r = await federal.client.put(url, json={"frequency": {"additionalCaps": caps}})
        assert r.status_code == 422, (caps, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [
            f"frequency.additionalCaps[{len(caps) - 1}].name"
        ]
    r = await federal.client.put(url, json=["not", "an", "object"])
    assert r.status_code == 422
    assert await scalar(container, "SELECT count(*) FROM compliance_policies") == 0

    agent = await _agent_client(container, federal)
    try:
        r = await agent.put(url, json={"contactHours": {"start": "09:00", "end": "17:00"}})
        assert r.status_code == 403
    finally:
        await agent.aclose()
    assert await scalar(container, "SELECT count(*) FROM compliance_policies") == 0


async def test_policy_contact_hours_take_effect(federal, container, clock):
    data = await borrower(container, federal.organization_id)
    case_id = data["case_id"]
    clock.now = at(NY, 2025, 6, 10, 8, 30)
    assert (await contactability(federal, case_id, "sms"))["allowed"] is True

    r = await federal.client.put(
        "/api/compliance/policy", json={"contactHours": {"start": "09:00", "end": "17:00"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    assert r.json()["effective"]["contactHours"]["end"] == "17:00:00"

    msg = await send(federal, case_id)
    assert msg["status"] == "scheduled" and ts(msg["scheduledAt"]) == at(NY, 2025, 6, 10, 9, 0)
    (enqueue,) = await decisions(federal, msg["messageId"])
    assert enqueue["facts"]["policy"]["contactHours"]["start"] == "09:00:00"

    clock.now = at(NY, 2025, 6, 10, 17, 0)
    answer = await contactability(federal, case_id, "email")
    assert answer["outcome"] == "defer"
    assert ts(answer["nextAllowedAt"]) == at(NY, 2025, 6, 11, 9, 0)

    # An organization's own cap applies to borrowers in its jurisdiction.
    clock.now = at(NY, 2025, 6, 10, 12, 0)
    r = await federal.client.put(
        "/api/compliance/policy",
        json={
            "contactHours": {"start": "09:00", "end": "17:00"},
            "frequency": {
                "additionalCaps": [
                    {
                        "name": "ny_texts",
                        "jurisdiction": "US-NY",
                        "channels": ["sms"],
                        "maxAttempts": 2,
                        "windowDays": 7,
                    }
                ]
            },
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["effective"]["additionalCaps"] == [
        {"jurisdiction": "US-NY", "name": "ny_texts"}
    ]
    await Dispatcher(container).run([msg["messageId"]])  # the text deferred to 09:00
    second = await send(federal, case_id)
    assert second["status"] == "queued"
    await Dispatcher(container).run([second["messageId"]])
    answer = await contactability(federal, case_id, "sms")
    assert answer["outcome"] == "defer" and answer["reasons"] == ["ny_texts"]
    # the first of the two (sent at 12:00 today) stops counting 7 days later
    assert ts(answer["nextAllowedAt"]) == at(NY, 2025, 6, 17, 12, 0)
    assert (await contactability(federal, case_id, "email"))["allowed"] is True

    # A later change takes effect too (a new version, not a stale cached policy).
    r = await federal.client.put(
        "/api/compliance/policy", json={"contactHours": {"start": "08:00", "end": "18:00"}}
    )
    assert r.status_code == 200 and r.json()["version"] == 3
    clock.now = at(NY, 2025, 6, 10, 17, 30)
    assert (await contactability(federal, case_id, "sms"))["allowed"] is True


async def test_preferred_addresses_are_the_default_recipients(tenant, container, clock):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    b = await borrower(container, tenant.organization_id)
    r = await tenant.client.post(
        f"/api/borrowers/{b['borrower_id']}/contact-points",
        json={"type": "email", "value": "pat.home@example.com", "label": "personal"},
    )
    assert r.status_code == 201, r.text
    before = await send(tenant, b["case_id"], messageType="email")
    assert before["to"] == [b["email"]]  # the primary address
    r = await tenant.client.put(
        f"/api/cases/{b['case_id']}/communication-preferences",
        json={"emailAddress": "pat.home@EXAMPLE.com", "preferredChannel": "email"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["preferences"]["emailAddress"] == "pat.home@example.com"
    after = await send(tenant, b["case_id"], messageType="email")
    assert after["to"] == ["pat.home@example.com"]
    # An explicit `to` still wins.
    explicit = await send(tenant, b["case_id"], messageType="email", to=b["email"])
    assert explicit["to"] == [b["email"]]


async def test_an_empty_list_is_not_a_contact_hours_setting(federal, container, clock):
    r = await federal.client.put("/api/compliance/policy", json={"contactHours": []})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["contactHours"]


async def test_a_contact_point_or_borrower_with_consent_records_is_kept(tenant, container, clock):
    b = await borrower(container, tenant.organization_id)
    r = await tenant.client.post(
        f"/api/borrowers/{b['borrower_id']}/consents",
        json={"channel": "sms", "action": "revoke", "contactPointId": b["phone_id"]},
    )
    assert r.status_code == 201, r.text
    gone = await tenant.client.delete(f"/api/contact-points/{b['phone_id']}")
    assert gone.status_code == 409, gone.text
    assert "consent" in gone.json()["detail"]
    # A borrower on no case with only a ledger entry: kept too (409, not a 500).
    async with container.db.session() as s:
        lone = Borrower(organization_id=tenant.organization_id, first_name="Lee", last_name="Ray")
        s.add(lone)
        await s.commit()
        lone_id = lone.id
    r = await tenant.client.post(
        f"/api/borrowers/{lone_id}/consents", json={"channel": "email", "action": "revoke"}
    )
    assert r.status_code == 201, r.text
    gone = await tenant.client.delete(f"/api/borrowers/{lone_id}")
    assert gone.status_code == 409, gone.text


async def test_an_agent_revocation_covers_every_phone_channel_unless_limited(
    tenant, container, clock
):
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    b = await borrower(container, tenant.organization_id)
    r = await tenant.client.post(
        f"/api/borrowers/{b['borrower_id']}/consents",
        json={"channel": "voice", "action": "revoke", "contactPointId": b["phone_id"]},
    )
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "voice"
    history = (await tenant.client.get(f"/api/borrowers/{b['borrower_id']}/consents")).json()
    assert sorted(c["channel"] for c in history["consents"]) == ["sms", "voice", "whatsapp"]
    assert (await send(tenant, b["case_id"], messageType="sms"))["status"] == "blocked"
    # Limited to one channel: only that one.
    other = await borrower(container, tenant.organization_id, phone="+12125550177")
    r = await tenant.client.post(
        f"/api/borrowers/{other['borrower_id']}/consents",
        json={"channel": "voice", "action": "revoke", "limitToChannel": True},
    )
    assert r.status_code == 201, r.text
    history = (await tenant.client.get(f"/api/borrowers/{other['borrower_id']}/consents")).json()
    assert [c["channel"] for c in history["consents"]] == ["voice"]
    assert (await send(tenant, other["case_id"], messageType="sms"))["status"] == "queued"


async def test_a_consent_change_cannot_be_dated_in_the_future(tenant, container, clock):
    b = await borrower(container, tenant.organization_id)
    later = (clock.now + timedelta(days=3)).isoformat()
    r = await tenant.client.post(
        f"/api/borrowers/{b['borrower_id']}/consents",
        json={"channel": "sms", "action": "revoke", "effectiveAt": later},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "effectiveAt"
    rows = (await tenant.client.get(f"/api/borrowers/{b['borrower_id']}/consents")).json()
    assert rows["consents"] == []
