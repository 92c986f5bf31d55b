"""Cases over the API, against the real database: amounts, borrowers, derived days past due."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from parley.storage.models import Case, CaseBorrower, User

PROBLEM = "application/problem+json"


async def make_borrower(tenant: Any, first: str = "Mette", last: str = "Hansen") -> str:
    r = await tenant.client.post("/api/borrowers", json={"firstName": first, "lastName": last})
    assert r.status_code == 201, r.text
    return str(r.json()["borrowerId"])


async def make_user(container: Any, org_id: Any, role: str = "agent") -> str:
    async with container.db.session() as s:
        user = User(
            organization_id=org_id,
            email=f"{uuid.uuid4().hex[:8]}@agents.test",
            name="Alex Agent",
            role=role,
        )
        s.add(user)
        await s.commit()
        return str(user.id)


def case_body(borrower_ids: list[str], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "caseNumber": "DEB-2024-12345",
        "creditor": "Example Company ApS",
        "originalAmount": "15000.00",
        "outstandingAmount": "1234.50",
        "currency": "DKK",
        "dueDate": "2024-01-15",
        "borrowerIds": borrower_ids,
    }
    body.update(overrides)
    return body


async def create_case(tenant: Any, borrower_ids: list[str], **overrides: Any) -> dict[str, Any]:
    r = await tenant.client.post("/api/cases", json=case_body(borrower_ids, **overrides))
    assert r.status_code == 201, r.text
    return r.json()


def assert_problem(r: Any, status: int, *fields: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    named = {e["field"] for e in body.get("errors", [])}
    for field in fields:
        assert field in named, (field, body)
    return body


async def count(container: Any, model: Any) -> int:
    async with container.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def utc_today() -> date:
    return datetime.now(UTC).date()


# --- create and read ------------------------------------------------------------------------


async def test_create_and_read_case(tenant: Any, container: Any) -> None:
    bid = await make_borrower(tenant)
    agent = await make_user(container, tenant.organization_id)
    c = await create_case(
        tenant,
        [bid],
        currency="dkk",
        assignedAgentId=agent,
        originalAmount="15000",
        status="payment_plan",
    )
    assert uuid.UUID(c["caseId"])
    assert c["caseNumber"] == "DEB-2024-12345"
    assert c["creditor"] == "Example Company ApS"
    assert c["originalAmount"] == "15000.00"
    assert c["outstandingAmount"] == "1234.50"
    assert c["currency"] == "DKK"
    assert c["dueDate"] == "2024-01-15"
    assert c["status"] == "payment_plan"
    assert c["assignedAgentId"] == agent
    assert c["borrowers"] == [
        {"borrowerId": bid, "role": "primary", "firstName": "Mette", "lastName": "Hansen"}
    ]
    assert c["createdAt"].endswith("Z")
    got = await tenant.client.get(f"/api/cases/{c['caseId']}")
    assert got.status_code == 200
    body = got.json()
    assert body == c | {"daysPastDue": body["daysPastDue"]}


async def test_default_status_and_no_due_date(tenant: Any) -> None:
    bid = await make_borrower(tenant)
    body = case_body([bid])
    del body["dueDate"]
    r = await tenant.client.post("/api/cases", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "open"
    assert r.json()["dueDate"] is None and r.json()["daysPastDue"] == 0


async def test_borrowers_with_roles(tenant: Any) -> None:
    a = await make_borrower(tenant, "Ann", "A")
    b = await make_borrower(tenant, "Bo", "B")
    g = await make_borrower(tenant, "Gus", "G")
    c = await create_case(
        tenant,
        [],
        borrowerIds=None,
        borrowers=[
            {"borrowerId": g, "role": "guarantor"},
            {"borrowerId": b, "role": "co_borrower"},
            {"borrowerId": a, "role": "primary"},
        ],
    )
    assert [(x["firstName"], x["role"]) for x in c["borrowers"]] == [
        ("Ann", "primary"),
        ("Bo", "co_borrower"),
        ("Gus", "guarantor"),
    ]


async def test_borrower_ids_first_is_primary(tenant: Any) -> None:
    a = await make_borrower(tenant, "Ann", "A")
    b = await make_borrower(tenant, "Bo", "B")
    c = await create_case(tenant, [b, a])
    assert [(x["firstName"], x["role"]) for x in c["borrowers"]] == [
        ("Bo", "primary"),
        ("Ann", "co_borrower"),
    ]


async def test_case_ids_are_never_caller_chosen(tenant: Any) -> None:
    bid = await make_borrower(tenant)
    c = await create_case(tenant, [bid])
    again = await tenant.client.post(
        "/api/cases", json=case_body([bid], caseId=c["caseId"], caseNumber="OTHER-1")
    )
    assert_problem(again, 422, "caseId")


async def test_duplicate_case_number_is_409_within_org_only(
    tenant: Any, other_tenant: Any, container: Any
) -> None:
    await create_case(tenant, [await make_borrower(tenant)])
    dup = await tenant.client.post("/api/cases", json=case_body([await make_borrower(tenant)]))
    assert_problem(dup, 409, "caseNumber")
    assert await count(container, Case) == 1
    await create_case(other_tenant, [await make_borrower(other_tenant)])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"originalAmount": "-5.00"}, "originalAmount"),
        ({"outstandingAmount": "-0.01"}, "outstandingAmount"),
        ({"outstandingAmount": "10.005"}, "outstandingAmount"),
        ({"outstandingAmount": 10.5}, "outstandingAmount"),  # numbers: floats lose cents
        ({"outstandingAmount": "1e3"}, "outstandingAmount"),
        ({"outstandingAmount": "NaN"}, "outstandingAmount"),
        ({"outstandingAmount": ""}, "outstandingAmount"),
        ({"originalAmount": "12345678901234567.00"}, "originalAmount"),
        ({"currency": "ABC"}, "currency"),
        ({"currency": "XXX"}, "currency"),
        ({"currency": "DK"}, "currency"),
        ({"dueDate": "15/01/2024"}, "dueDate"),
        ({"dueDate": "2024-02-30"}, "dueDate"),
        ({"status": "lost"}, "status"),
        ({"caseNumber": ""}, "caseNumber"),
        ({"caseNumber": "   "}, "caseNumber"),
        ({"creditor": None}, "creditor"),
        ({"priority": "high"}, "priority"),
        ({"borrowerIds": []}, "borrowerIds"),
        ({"borrowerIds": None}, "borrowerIds"),
        ({"borrowerIds": ["nope"]}, "borrowerIds.0"),
        ({"assignedAgentId": "not-a-uuid"}, "assignedAgentId"),
        ({"caseId": "123"}, "caseId"),
        ({"creditor": "Harbor\x00Bank"}, "creditor"),
    ],
)
async def test_create_rejects_bad_input_and_writes_nothing(
    tenant: Any, container: Any, overrides: dict[str, Any], field: str
) -> None:
    bid = await make_borrower(tenant)
    r = await tenant.client.post("/api/cases", json=case_body([bid], **overrides))
    assert_problem(r, 422, field)
    assert await count(container, Case) == 0
    assert await count(container, CaseBorrower) == 0


async def test_every_invalid_field_is_reported_at_once(tenant: Any, container: Any) -> None:
    bid = await make_borrower(tenant)
    bad = {
        "currency": "DOLLARS",
        "outstandingAmount": "-5",
        "dueDate": "2026-13-45",
        "caseNumber": "C" * 65,
        "originalAmount": "1" * 41,
    }
    r = await tenant.client.post("/api/cases", json=case_body([bid], **bad))
    body = assert_problem(r, 422)
    assert sorted(e["field"] for e in body["errors"]) == sorted(bad), body
    assert await count(container, Case) == 0
    c = await create_case(tenant, [bid])
    r = await tenant.client.patch(
        f"/api/cases/{c['caseId']}",
        json={"currency": "EURO", "outstandingAmount": "-1", "dueDate": "15/01/2024x"},
    )
    body = assert_problem(r, 422)
    assert sorted(e["field"] for e in body["errors"]) == [
        "currency",
        "dueDate",
        "outstandingAmount",
    ], body


async def test_negative_amount_says_so(tenant: Any) -> None:
    bid = await make_borrower(tenant)
    r = await tenant.client.post("/api/cases", json=case_body([bid], outstandingAmount="-1"))
    body = assert_problem(r, 422, "outstandingAmount")
    assert body["errors"][0]["message"] == "must not be negative"


async def test_reference_errors_name_each_entry(tenant: Any, container: Any) -> None:
    bid = await make_borrower(tenant)
    unknown = str(uuid.uuid4())
    r = await tenant.client.post(
        "/api/cases", json=case_body([bid, unknown, bid], assignedAgentId=str(uuid.uuid4()))
    )
    body = assert_problem(r, 422, "borrowerIds.1", "borrowerIds.2", "assignedAgentId")
    messages = {e["field"]: e["message"] for e in body["errors"]}
    assert messages["borrowerIds.1"] == "unknown borrower"
    assert messages["assignedAgentId"] == "unknown user"
    assert await count(container, Case) == 0


@pytest.mark.parametrize(
    ("roles", "field"),
    [
        (["primary", "primary"], "borrowers"),
        (["guarantor", "co_borrower"], "borrowers"),
        (["owner", None], "borrowers.0.role"),
    ],
)
async def test_borrower_roles_are_checked(tenant: Any, roles: list[str | None], field: str) -> None:
    ids = [await make_borrower(tenant, f"B{i}") for i in range(len(roles))]
    borrowers = [
        {"borrowerId": i} | ({"role": r} if r else {}) for i, r in zip(ids, roles, strict=True)
    ]
    r = await tenant.client.post(
        "/api/cases", json=case_body([], borrowerIds=None, borrowers=borrowers)
    )
    assert_problem(r, 422, field)


async def test_both_borrower_forms_is_422(tenant: Any) -> None:
    bid = await make_borrower(tenant)
    r = await tenant.client.post(
        "/api/cases", json=case_body([bid], borrowers=[{"borrowerId": bid, "role": "primary"}])
    )
    assert_problem(r, 422, "borrowers")


async def test_malformed_ids_in_path_are_4xx(tenant: Any) -> None:
    client = tenant.client
    bid = await make_borrower(tenant)
    for r in (
        await client.get("/api/cases/not-a-uuid"),
        await client.patch("/api/cases/42", json={"status": "paid"}),
        await client.post("/api/cases/42/borrowers", json={"borrowerId": bid}),
    ):
        assert r.status_code in (404, 422), r.text
        assert r.headers["content-type"].startswith(PROBLEM)
    assert_problem(await client.get(f"/api/cases/{uuid.uuid4()}"), 404)


# --- days past due --------------------------------------------------------------------------


@pytest.mark.parametrize(("offset_days", "expected"), [(-10, 10), (-1, 1), (0, 0), (30, 0)])
async def test_days_past_due_is_derived(tenant: Any, offset_days: int, expected: int) -> None:
    bid = await make_borrower(tenant)
    due = utc_today() + timedelta(days=offset_days)
    c = await create_case(tenant, [bid], dueDate=due.isoformat())
    assert c["daysPastDue"] == expected
    assert (await tenant.client.get(f"/api/cases/{c['caseId']}")).json()["daysPastDue"] == expected


async def test_days_past_due_moves_with_the_clock_not_the_row(
    tenant: Any, container: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bid = await make_borrower(tenant)
    c = await create_case(tenant, [bid], dueDate="2024-01-15")
    monkeypatch.setattr(container, "clock", lambda: datetime(2024, 1, 25, 23, 30, tzinfo=UTC))
    assert (await tenant.client.get(f"/api/cases/{c['caseId']}")).json()["daysPastDue"] == 10
    # 00:30 on Feb 1st in Copenhagen (UTC+1) is still Jan 31st in UTC: 16 days, not 17.
    copenhagen = timezone(timedelta(hours=1))
    monkeypatch.setattr(container, "clock", lambda: datetime(2024, 2, 1, 0, 30, tzinfo=copenhagen))
    listed = (await tenant.client.get("/api/cases")).json()["items"]
    assert listed[0]["daysPastDue"] == 16


# --- list, filters, pagination --------------------------------------------------------------


async def test_pagination_visits_every_case_once(tenant: Any) -> None:
    bid = await make_borrower(tenant)
    created = {(await create_case(tenant, [bid], caseNumber=f"P-{i}"))["caseId"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        r = await tenant.client.get("/api/cases", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [c["caseId"] for c in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7 and set(seen) == created


async def test_filters(tenant: Any, container: Any) -> None:
    ann = await make_borrower(tenant, "Ann")
    bo = await make_borrower(tenant, "Bo")
    agent = await make_user(container, tenant.organization_id)
    await create_case(tenant, [ann], caseNumber="DEB-1", status="disputed")
    await create_case(tenant, [bo], caseNumber="DEB-2", assignedAgentId=agent)
    await create_case(tenant, [bo, ann], caseNumber="INV-3", status="disputed")

    async def numbers(**params: str) -> list[str]:
        r = await tenant.client.get("/api/cases", params=params)
        assert r.status_code == 200, r.text
        return sorted(c["caseNumber"] for c in r.json()["items"])

    assert await numbers(status="disputed") == ["DEB-1", "INV-3"]
    assert await numbers(assignedAgentId=agent) == ["DEB-2"]
    assert await numbers(borrowerId=ann) == ["DEB-1", "INV-3"]
    assert await numbers(q="deb") == ["DEB-1", "DEB-2"]
    assert await numbers(q="DEB-2") == ["DEB-2"]
    assert await numbers(q="_") == []
    assert await numbers(status="disputed", borrowerId=bo) == ["INV-3"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"assignedAgentId": "x"}, "assignedAgentId"),
        ({"borrowerId": "x"}, "borrowerId"),
        ({"limit": 0}, "limit"),
        ({"cursor": "%%"}, "cursor"),
        ({"q": "DEB\x00"}, "q"),
    ],
)
async def test_list_rejects_bad_filters(tenant: Any, params: dict[str, Any], field: str) -> None:
    assert_problem(await tenant.client.get("/api/cases", params=params), 422, field)


# --- change and link ------------------------------------------------------------------------


async def test_patch_case(tenant: Any, container: Any) -> None:
    bid = await make_borrower(tenant)
    agent = await make_user(container, tenant.organization_id)
    c = await create_case(tenant, [bid], assignedAgentId=agent)
    due = (utc_today() - timedelta(days=3)).isoformat()
    r = await tenant.client.patch(
        f"/api/cases/{c['caseId']}",
        json={
            "status": "promise_to_pay",
            "outstandingAmount": "1000.5",
            "dueDate": due,
            "assignedAgentId": None,
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "promise_to_pay"
    assert out["outstandingAmount"] == "1000.50"
    assert out["originalAmount"] == "15000.00"
    assert out["dueDate"] == due and out["daysPastDue"] == 3
    assert out["assignedAgentId"] is None
    assert out["borrowers"] == c["borrowers"]
    assert datetime.fromisoformat(out["updatedAt"].replace("Z", "+00:00")) > datetime.fromisoformat(
        c["updatedAt"].replace("Z", "+00:00")
    )
    assert (await tenant.client.get(f"/api/cases/{c['caseId']}")).json() == out


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"outstandingAmount": "-1.00"}, "outstandingAmount"),
        ({"creditor": None}, "creditor"),
        ({"status": None}, "status"),
        ({"currency": "EUR1"}, "currency"),
        ({"assignedAgentId": str(uuid.uuid4())}, "assignedAgentId"),
        ({"borrowerIds": []}, "borrowerIds"),
        ({"dueDate": "tomorrow"}, "dueDate"),
    ],
)
async def test_patch_rejects_and_changes_nothing(
    tenant: Any, patch: dict[str, Any], field: str
) -> None:
    c = await create_case(tenant, [await make_borrower(tenant)])
    r = await tenant.client.patch(f"/api/cases/{c['caseId']}", json=patch)
    assert_problem(r, 422, field)
    assert (await tenant.client.get(f"/api/cases/{c['caseId']}")).json() == c


async def test_patch_to_a_taken_case_number_is_409(tenant: Any) -> None:
    bid = await make_borrower(tenant)
    await create_case(tenant, [bid], caseNumber="A-1")
    c = await create_case(tenant, [bid], caseNumber="A-2")
    r = await tenant.client.patch(f"/api/cases/{c['caseId']}", json={"caseNumber": "A-1"})
    assert_problem(r, 409, "caseNumber")
    same = await tenant.client.patch(f"/api/cases/{c['caseId']}", json={"caseNumber": "A-2"})
    assert same.status_code == 200, same.text


async def test_link_borrower(tenant: Any) -> None:
    ann = await make_borrower(tenant, "Ann")
    gus = await make_borrower(tenant, "Gus")
    c = await create_case(tenant, [ann])
    url = f"/api/cases/{c['caseId']}/borrowers"
    r = await tenant.client.post(url, json={"borrowerId": gus, "role": "guarantor"})
    assert r.status_code == 201, r.text
    assert [(b["firstName"], b["role"]) for b in r.json()["borrowers"]] == [
        ("Ann", "primary"),
        ("Gus", "guarantor"),
    ]
    assert_problem(await tenant.client.post(url, json={"borrowerId": gus}), 409, "borrowerId")
    third = await make_borrower(tenant, "Third")
    assert_problem(
        await tenant.client.post(url, json={"borrowerId": third, "role": "primary"}), 409, "role"
    )
    assert_problem(
        await tenant.client.post(url, json={"borrowerId": str(uuid.uuid4())}), 422, "borrowerId"
    )
    assert_problem(
        await tenant.client.post(url, json={"borrowerId": third, "role": "owner"}), 422, "role"
    )
    got = (await tenant.client.get(f"/api/cases/{c['caseId']}")).json()
    assert len(got["borrowers"]) == 2


# --- roles and tenancy ----------------------------------------------------------------------


async def test_agents_read_but_supervisors_write(tenant: Any, container: Any) -> None:
    from parley.api.app import create_app
    from parley.services.auth import Role, issue_token

    bid = await make_borrower(tenant)
    c = await create_case(tenant, [bid])
    async with container.db.session() as s:
        token = await issue_token(
            s, organization_id=tenant.organization_id, role=Role.AGENT, name="agent"
        )
        await s.commit()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    ) as agent:
        assert (await agent.get(f"/api/cases/{c['caseId']}")).status_code == 200
        assert (await agent.get("/api/cases")).status_code == 200
        other = await make_borrower(tenant, "Other")
        for r in (
            await agent.post("/api/cases", json=case_body([bid], caseNumber="X-9")),
            await agent.patch(f"/api/cases/{c['caseId']}", json={"status": "paid"}),
            await agent.post(f"/api/cases/{c['caseId']}/borrowers", json={"borrowerId": other}),
        ):
            assert_problem(r, 403)
        # Agents may maintain borrowers.
        r = await agent.post("/api/borrowers", json={"firstName": "A", "lastName": "B"})
        assert r.status_code == 201, r.text
    assert (await tenant.client.get(f"/api/cases/{c['caseId']}")).json() == c


async def test_other_organization_gets_404_everywhere(tenant: Any, other_tenant: Any) -> None:
    bid = await make_borrower(tenant)
    c = await create_case(tenant, [bid])
    other = other_tenant.client
    their_borrower = await make_borrower(other_tenant)
    for r in (
        await other.get(f"/api/cases/{c['caseId']}"),
        await other.patch(f"/api/cases/{c['caseId']}", json={"status": "paid"}),
        await other.post(
            f"/api/cases/{c['caseId']}/borrowers", json={"borrowerId": their_borrower}
        ),
    ):
        assert_problem(r, 404)
    for params in ({}, {"borrowerId": bid}, {"q": "DEB"}):
        assert (await other.get("/api/cases", params=params)).json()["items"] == []
    assert (await tenant.client.get(f"/api/cases/{c['caseId']}")).json() == c


async def test_references_to_another_organization_are_unknown(
    tenant: Any, other_tenant: Any, container: Any
) -> None:
    mine = await make_borrower(tenant)
    theirs = await make_borrower(other_tenant)
    their_agent = await make_user(container, other_tenant.organization_id)
    r = await tenant.client.post("/api/cases", json=case_body([mine, theirs]))
    body = assert_problem(r, 422, "borrowerIds.1")
    assert body["errors"][0]["message"] == "unknown borrower"
    r = await tenant.client.post("/api/cases", json=case_body([mine], assignedAgentId=their_agent))
    assert_problem(r, 422, "assignedAgentId")
    assert await count(container, Case) == 0
    c = await create_case(tenant, [mine])
    r = await tenant.client.post(f"/api/cases/{c['caseId']}/borrowers", json={"borrowerId": theirs})
    assert_problem(r, 422, "borrowerId")
    r = await tenant.client.patch(
        f"/api/cases/{c['caseId']}", json={"assignedAgentId": their_agent}
    )
    assert_problem(r, 422, "assignedAgentId")
