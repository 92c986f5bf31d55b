"""Borrowers and contact points over the API, against the real database."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from parley.storage.models import Borrower, ContactPoint, Message

PROBLEM = "application/problem+json"


def borrower_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "externalRef": "CRM-1001",
        "firstName": "Mette",
        "lastName": "Hansen",
        "timezone": "Europe/Copenhagen",
        "preferredLanguage": "da-DK",
        "address": {
            "line1": "Nørregade 1",
            "city": "København",
            "postalCode": "1165",
            "country": "dk",
        },
        "contactPoints": [
            {"type": "phone", "value": "20 12 34 56", "label": "mobile"},
            {"type": "email", "value": "Mette.Hansen@Example.DK", "label": "personal"},
        ],
    }
    body.update(overrides)
    return body


async def create_borrower(tenant: Any, **overrides: Any) -> dict[str, Any]:
    r = await tenant.client.post("/api/borrowers", json=borrower_body(**overrides))
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


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def count(container: Any, model: Any) -> int:
    async with container.db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def add_message(
    container: Any,
    tenant: Any,
    borrower_id: str,
    contact_point_id: str | None = None,
    *,
    link: bool = True,
) -> None:
    """A message exchanged with the borrower (written directly: its own API is elsewhere)."""
    case = await tenant.client.post(
        "/api/cases",
        json={
            "caseNumber": f"M-{uuid.uuid4().hex[:6]}",
            "creditor": "Harbor Bank",
            "originalAmount": "10.00",
            "outstandingAmount": "10.00",
            "currency": "DKK",
            "borrowerIds": [borrower_id],
        },
    )
    assert case.status_code == 201, case.text
    async with container.db.session() as s:
        s.add(
            Message(
                organization_id=tenant.organization_id,
                case_id=case.json()["caseId"],
                borrower_id=borrower_id if link else None,
                contact_point_id=contact_point_id,
                channel="sms",
                direction="outbound",
                status="sent",
                to_address="+4520123456",
                body="Hello",
            )
        )
        await s.commit()


# --- create and read ------------------------------------------------------------------------


async def test_create_normalizes_and_embeds_contact_points(tenant: Any) -> None:
    b = await create_borrower(tenant)
    assert b["firstName"] == "Mette" and b["lastName"] == "Hansen"
    assert b["externalRef"] == "CRM-1001"
    assert b["preferredLanguage"] == "da_DK"
    assert b["timezone"] == "Europe/Copenhagen"
    assert b["address"] == {
        "line1": "Nørregade 1",
        "line2": None,
        "city": "København",
        "region": None,
        "postalCode": "1165",
        "country": "DK",
    }
    assert b["doNotContact"] is False
    assert b["createdAt"].endswith("Z") and b["updatedAt"].endswith("Z")
    points = {cp["type"]: cp for cp in b["contactPoints"]}
    # The local number is read in the address country and stored as E.164.
    assert points["phone"]["value"] == "+4520123456"
    assert points["email"]["value"] == "Mette.Hansen@example.dk"
    assert points["phone"]["source"] == "borrower_provided"
    # The first of each type becomes primary.
    assert points["phone"]["isPrimary"] and points["email"]["isPrimary"]

    got = await tenant.client.get(f"/api/borrowers/{b['borrowerId']}")
    assert got.status_code == 200
    assert got.json() == b


async def test_create_minimal_and_ids_are_never_caller_chosen(tenant: Any) -> None:
    r = await tenant.client.post(
        "/api/borrowers",
        json={"firstName": "Pat", "lastName": "Doe", "preferredLanguage": "en"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["preferredLanguage"] == "en"
    assert body["contactPoints"] == [] and body["address"] is None and body["timezone"] is None
    # A chosen id could probe ids of other organizations: the field does not exist.
    chosen = await tenant.client.post(
        "/api/borrowers",
        json={"borrowerId": body["borrowerId"], "firstName": "Pat", "lastName": "Doe"},
    )
    assert_problem(chosen, 422, "borrowerId")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"timezone": "europe/copenhagen"}, "timezone"),
        ({"preferredLanguage": "xx-YY"}, "preferredLanguage"),
        ({"preferredLanguage": "en-ZZ"}, "preferredLanguage"),
        ({"address": {"city": "Nowhere", "country": "QQ"}}, "address.country"),
        ({"address": {"city": "Brussels", "country": "EU"}}, "address.country"),
        ({"address": {"city": "No country"}}, "address.country"),
        ({"firstName": ""}, "firstName"),
        ({"lastName": "   "}, "lastName"),
        ({"firstName": None}, "firstName"),
        ({"nickname": "Mette"}, "nickname"),
        ({"contactPoints": [{"type": "phone", "value": "not a phone"}]}, "contactPoints.0.value"),
        (
            {"contactPoints": [{"type": "email", "value": "Mette <m@example.dk>"}]},
            "contactPoints.0.value",
        ),
        ({"contactPoints": [{"type": "fax", "value": "+4520123456"}]}, "contactPoints.0.type"),
        (
            {"contactPoints": [{"type": "phone", "value": "+4520123456", "label": "pager"}]},
            "contactPoints.0.label",
        ),
        (
            {"contactPoints": [{"type": "phone", "value": "+4520123456", "source": "rumour"}]},
            "contactPoints.0.source",
        ),
        ({"doNotContact": "maybe"}, "doNotContact"),
        # PostgreSQL text cannot hold NUL: refused up front, not a 500 from the driver.
        ({"firstName": "Me\x00tte"}, "firstName"),
        ({"address": {"city": "K\x00", "country": "DK"}}, "address.city"),
    ],
)
async def test_create_rejects_bad_input_and_writes_nothing(
    tenant: Any, container: Any, overrides: dict[str, Any], field: str
) -> None:
    r = await tenant.client.post("/api/borrowers", json=borrower_body(**overrides))
    assert_problem(r, 422, field)
    assert await count(container, Borrower) == 0
    assert await count(container, ContactPoint) == 0


async def test_missing_last_name_is_named(tenant: Any) -> None:
    body = borrower_body()
    del body["lastName"]
    assert_problem(await tenant.client.post("/api/borrowers", json=body), 422, "lastName")


async def test_malformed_json_is_400(tenant: Any) -> None:
    r = await tenant.client.post(
        "/api/borrowers", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(r, 400)


async def test_one_bad_contact_point_writes_nothing_at_all(tenant: Any, container: Any) -> None:
    r = await tenant.client.post(
        "/api/borrowers",
        json=borrower_body(
            contactPoints=[
                {"type": "email", "value": "ok@example.com"},
                {"type": "phone", "value": "+4520123456"},
                {"type": "phone", "value": "12345678"},  # not a valid Danish number
            ]
        ),
    )
    body = assert_problem(r, 422, "contactPoints.2.value")
    assert "region DK" in body["errors"][0]["message"]
    assert await count(container, Borrower) == 0
    assert await count(container, ContactPoint) == 0
    listed = await tenant.client.get("/api/borrowers")
    assert listed.json()["items"] == []


async def test_every_error_is_reported_at_once(tenant: Any) -> None:
    r = await tenant.client.post(
        "/api/borrowers",
        json=borrower_body(
            timezone="Nowhere/City",
            preferredLanguage="zz",
            contactPoints=[{"type": "email", "value": "bad@"}],
        ),
    )
    assert_problem(r, 422, "timezone", "preferredLanguage", "contactPoints.0.value")


async def test_duplicate_and_double_primary_in_one_request(tenant: Any) -> None:
    r = await tenant.client.post(
        "/api/borrowers",
        json=borrower_body(
            contactPoints=[
                {"type": "phone", "value": "+45 20 12 34 56", "isPrimary": True},
                {"type": "phone", "value": "20123456", "isPrimary": True},
            ]
        ),
    )
    assert_problem(r, 422, "contactPoints.1.value", "contactPoints.1.isPrimary")


async def test_malformed_ids_in_path_are_4xx(tenant: Any) -> None:
    client = tenant.client
    for r in (
        await client.get("/api/borrowers/not-a-uuid"),
        await client.patch("/api/borrowers/123", json={"firstName": "X"}),
        await client.delete("/api/borrowers/123"),
        await client.get("/api/borrowers/123/contact-points"),
        await client.post(
            "/api/borrowers/123/contact-points", json={"type": "phone", "value": "+4520123456"}
        ),
        await client.patch("/api/contact-points/xyz", json={"label": "home"}),
        await client.delete("/api/contact-points/xyz"),
    ):
        assert r.status_code in (404, 422), r.text
        assert r.headers["content-type"].startswith(PROBLEM)


async def test_unknown_borrower_is_404(tenant: Any) -> None:
    r = await tenant.client.get(f"/api/borrowers/{uuid.uuid4()}")
    assert_problem(r, 404)


# --- list, search, pagination ---------------------------------------------------------------


async def test_pagination_visits_every_borrower_once(tenant: Any) -> None:
    created = set()
    for i in range(7):
        b = await create_borrower(tenant, firstName=f"P{i}", contactPoints=[])
        created.add(b["borrowerId"])
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        r = await tenant.client.get("/api/borrowers", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 3
        seen += [b["borrowerId"] for b in page["items"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created


async def test_list_is_newest_first_and_embeds_contact_points(tenant: Any) -> None:
    first = await create_borrower(tenant, firstName="Old")
    second = await create_borrower(tenant, firstName="New", contactPoints=[])
    items = (await tenant.client.get("/api/borrowers")).json()["items"]
    assert [b["borrowerId"] for b in items] == [second["borrowerId"], first["borrowerId"]]
    assert len(items[1]["contactPoints"]) == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"q": "Me\x00"}, "q"),
        ({"externalRef": "CRM\x00"}, "externalRef"),
    ],
)
async def test_list_rejects_bad_paging_and_filters(
    tenant: Any, params: dict[str, Any], field: str
) -> None:
    assert_problem(await tenant.client.get("/api/borrowers", params=params), 422, field)


async def test_search_by_name_prefix_contact_value_and_external_ref(tenant: Any) -> None:
    mette = await create_borrower(tenant)
    await create_borrower(
        tenant,
        firstName="Lars",
        lastName="Jensen",
        externalRef="CRM-2",
        contactPoints=[{"type": "email", "value": "lars@example.dk"}],
    )

    async def ids(**params: str) -> list[str]:
        r = await tenant.client.get("/api/borrowers", params=params)
        assert r.status_code == 200, r.text
        return [b["firstName"] for b in r.json()["items"]]

    assert await ids(q="met") == ["Mette"]
    assert await ids(q="JENS") == ["Lars"]
    assert await ids(q="Mette Han") == ["Mette"]
    assert await ids(q="mette.hansen@example.dk") == ["Mette"]  # exact, case-insensitive
    assert await ids(q="+45 20 12 34 56") == ["Mette"]  # any way of writing the number
    assert await ids(q="example.dk") == []  # contact values match exactly, not by part
    assert await ids(q="%") == []  # wildcards are literal
    assert await ids(externalRef="CRM-2") == ["Lars"]
    assert await ids(externalRef="CRM-") == []
    assert mette["borrowerId"]


# --- change and delete ----------------------------------------------------------------------


async def test_patch_changes_only_what_is_sent(tenant: Any) -> None:
    b = await create_borrower(tenant)
    r = await tenant.client.patch(
        f"/api/borrowers/{b['borrowerId']}",
        json={
            "timezone": "America/New_York",
            "preferredLanguage": "en_US.UTF-8",
            "address": None,
            "doNotContact": True,
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["timezone"] == "America/New_York"
    assert out["preferredLanguage"] == "en_US"
    assert out["address"] is None
    assert out["doNotContact"] is True
    assert out["firstName"] == "Mette" and out["externalRef"] == "CRM-1001"
    assert len(out["contactPoints"]) == 2
    assert parse_ts(out["updatedAt"]) > parse_ts(b["updatedAt"])
    again = await tenant.client.get(f"/api/borrowers/{b['borrowerId']}")
    assert again.json() == out


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"firstName": None}, "firstName"),
        ({"lastName": ""}, "lastName"),
        ({"doNotContact": None}, "doNotContact"),
        ({"timezone": "UTC+2"}, "timezone"),
        ({"preferredLanguage": "english"}, "preferredLanguage"),
        ({"address": {"country": "DNK"}}, "address.country"),
        ({"contactPoints": []}, "contactPoints"),
        ({"borrowerId": str(uuid.uuid4())}, "borrowerId"),
    ],
)
async def test_patch_rejects_bad_input_and_changes_nothing(
    tenant: Any, patch: dict[str, Any], field: str
) -> None:
    b = await create_borrower(tenant)
    r = await tenant.client.patch(f"/api/borrowers/{b['borrowerId']}", json=patch)
    assert_problem(r, 422, field)
    assert (await tenant.client.get(f"/api/borrowers/{b['borrowerId']}")).json() == b


async def test_delete_plain_borrower(tenant: Any, container: Any) -> None:
    b = await create_borrower(tenant)
    r = await tenant.client.delete(f"/api/borrowers/{b['borrowerId']}")
    assert r.status_code == 204
    assert (await tenant.client.get(f"/api/borrowers/{b['borrowerId']}")).status_code == 404
    assert await count(container, ContactPoint) == 0


async def test_delete_borrower_on_a_case_is_409(tenant: Any) -> None:
    b = await create_borrower(tenant)
    await tenant.client.post(
        "/api/cases",
        json={
            "caseNumber": "D-1",
            "creditor": "Harbor Bank",
            "originalAmount": "1.00",
            "outstandingAmount": "1.00",
            "currency": "DKK",
            "borrowerIds": [b["borrowerId"]],
        },
    )
    assert_problem(await tenant.client.delete(f"/api/borrowers/{b['borrowerId']}"), 409)
    assert (await tenant.client.get(f"/api/borrowers/{b['borrowerId']}")).status_code == 200


@pytest.mark.parametrize("via", ["borrower", "contact_point"])
async def test_delete_borrower_with_messages_is_409(tenant: Any, container: Any, via: str) -> None:
    b = await create_borrower(tenant)
    phone = next(cp for cp in b["contactPoints"] if cp["type"] == "phone")
    await add_message(
        container, tenant, b["borrowerId"], phone["contactPointId"], link=via == "borrower"
    )
    body = assert_problem(await tenant.client.delete(f"/api/borrowers/{b['borrowerId']}"), 409)
    assert "message" in body["detail"]
    assert await count(container, Borrower) == 1


# --- contact points -------------------------------------------------------------------------


async def test_contact_point_lifecycle(tenant: Any) -> None:
    b = await create_borrower(tenant, contactPoints=[])
    url = f"/api/borrowers/{b['borrowerId']}/contact-points"
    first = await tenant.client.post(
        url, json={"type": "phone", "value": "20 12 34 56", "label": "mobile"}
    )
    assert first.status_code == 201, first.text
    one = first.json()
    assert one["value"] == "+4520123456" and one["isPrimary"] is True
    assert one["borrowerId"] == b["borrowerId"] and one["label"] == "mobile"
    second = await tenant.client.post(
        url,
        json={
            "type": "phone",
            "value": "+45 31 23 45 67",
            "label": "work",
            "source": "employer",
            "isPrimary": True,
        },
    )
    assert second.status_code == 201, second.text
    two = second.json()
    assert two["isPrimary"] is True and two["source"] == "employer"

    listed = (await tenant.client.get(url)).json()["items"]
    primary = {cp["contactPointId"]: cp["isPrimary"] for cp in listed}
    assert primary == {one["contactPointId"]: False, two["contactPointId"]: True}

    back = await tenant.client.patch(
        f"/api/contact-points/{one['contactPointId']}", json={"isPrimary": True, "label": "home"}
    )
    assert back.status_code == 200, back.text
    assert back.json()["isPrimary"] is True and back.json()["label"] == "home"
    listed = (await tenant.client.get(url)).json()["items"]
    assert [cp["isPrimary"] for cp in listed if cp["contactPointId"] == two["contactPointId"]] == [
        False
    ]

    # Deleting the primary promotes the remaining one of its type.
    gone = await tenant.client.delete(f"/api/contact-points/{one['contactPointId']}")
    assert gone.status_code == 204
    listed = (await tenant.client.get(url)).json()["items"]
    assert [(cp["contactPointId"], cp["isPrimary"]) for cp in listed] == [
        (two["contactPointId"], True)
    ]


async def test_duplicate_contact_point_is_409_however_written(tenant: Any) -> None:
    b = await create_borrower(tenant)
    url = f"/api/borrowers/{b['borrowerId']}/contact-points"
    r = await tenant.client.post(url, json={"type": "phone", "value": "+45 20-12-34-56"})
    assert_problem(r, 409, "value")
    r = await tenant.client.post(url, json={"type": "email", "value": "Mette.Hansen@EXAMPLE.dk"})
    assert_problem(r, 409, "value")
    assert len((await tenant.client.get(url)).json()["items"]) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "phone", "value": "12345678"}, "value"),
        ({"type": "phone", "value": "call me"}, "value"),
        ({"type": "email", "value": "a@b"}, "value"),
        ({"type": "email", "value": "x@example.com\r\nBcc: y@example.com"}, "value"),
        ({"type": "sms", "value": "+4520123456"}, "type"),
        ({"type": "phone", "value": "+4520123456", "label": "beeper"}, "label"),
        ({"type": "phone", "value": "+4520123456", "primary": True}, "primary"),
        ({"type": "phone"}, "value"),
    ],
)
async def test_add_contact_point_rejects_bad_input(
    tenant: Any, container: Any, body: dict[str, Any], field: str
) -> None:
    b = await create_borrower(tenant, contactPoints=[])
    r = await tenant.client.post(f"/api/borrowers/{b['borrowerId']}/contact-points", json=body)
    assert_problem(r, 422, field)
    assert await count(container, ContactPoint) == 0


async def test_local_number_without_address_country_says_why(tenant: Any) -> None:
    b = await create_borrower(tenant, address=None, contactPoints=[])
    r = await tenant.client.post(
        f"/api/borrowers/{b['borrowerId']}/contact-points",
        json={"type": "phone", "value": "20123456"},
    )
    body = assert_problem(r, 422, "value")
    assert body["errors"][0]["code"] == "missing_country_code"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"value": "+4531234567"}, "value"),
        ({"type": "email"}, "type"),
        ({"source": None}, "source"),
        ({"isPrimary": None}, "isPrimary"),
        ({"label": "pager"}, "label"),
    ],
)
async def test_patch_contact_point_rejects(tenant: Any, patch: dict[str, Any], field: str) -> None:
    b = await create_borrower(tenant)
    cp = b["contactPoints"][0]
    r = await tenant.client.patch(f"/api/contact-points/{cp['contactPointId']}", json=patch)
    assert_problem(r, 422, field)


async def test_delete_contact_point_with_messages_is_409(tenant: Any, container: Any) -> None:
    b = await create_borrower(tenant)
    phone = next(cp for cp in b["contactPoints"] if cp["type"] == "phone")
    await add_message(container, tenant, b["borrowerId"], phone["contactPointId"])
    r = await tenant.client.delete(f"/api/contact-points/{phone['contactPointId']}")
    assert_problem(r, 409)
    assert await count(container, ContactPoint) == 2


# --- tenancy --------------------------------------------------------------------------------


async def test_other_organization_gets_404_everywhere(tenant: Any, other_tenant: Any) -> None:
    b = await create_borrower(tenant)
    bid, cp_id = b["borrowerId"], b["contactPoints"][0]["contactPointId"]
    other = other_tenant.client
    responses = [
        await other.get(f"/api/borrowers/{bid}"),
        await other.patch(f"/api/borrowers/{bid}", json={"firstName": "Hijack"}),
        await other.delete(f"/api/borrowers/{bid}"),
        await other.get(f"/api/borrowers/{bid}/contact-points"),
        await other.post(
            f"/api/borrowers/{bid}/contact-points", json={"type": "phone", "value": "+4531234567"}
        ),
        await other.patch(f"/api/contact-points/{cp_id}", json={"label": "work"}),
        await other.delete(f"/api/contact-points/{cp_id}"),
    ]
    for r in responses:
        assert_problem(r, 404)
    for params in ({}, {"q": "Mette"}, {"q": "+4520123456"}, {"externalRef": "CRM-1001"}):
        assert (await other.get("/api/borrowers", params=params)).json()["items"] == []
    # Nothing changed for the owner.
    assert (await tenant.client.get(f"/api/borrowers/{bid}")).json() == b


async def test_same_contact_value_in_two_organizations_is_allowed(
    tenant: Any, other_tenant: Any
) -> None:
    await create_borrower(tenant)
    r = await other_tenant.client.post("/api/borrowers", json=borrower_body())
    assert r.status_code == 201, r.text
    assert len((await tenant.client.get("/api/borrowers")).json()["items"]) == 1


async def test_requests_without_a_token_are_401(tenant: Any) -> None:
    r = await tenant.client.get("/api/borrowers", headers={"Authorization": ""})
    assert_problem(r, 401)
