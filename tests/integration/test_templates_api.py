"""Templates over the API: create, list (seed shape), versioning, preview with SMS encoding."""

from __future__ import annotations

from tests.support import factories


async def test_create_list_update_and_version_pinning(tenant, container):
    r = await tenant.client.post(
        "/api/message-templates",
        json={
            "templateId": "payment-reminder-v1",
            "name": "Standard Payment Reminder",
            "type": "email",
            "subject": "Payment Reminder - Invoice {{invoiceNumber}}",
            "body": "Dear {{debtorName}}, {{amount}} is due on {{dueDate}}. #organization.name",
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["variables"] == [
        "amount",
        "debtorName",
        "dueDate",
        "invoiceNumber",
        "organization.name",
    ]
    listed = (await tenant.client.get("/api/message-templates")).json()
    assert [t["templateId"] for t in listed["templates"]] == ["payment-reminder-v1"]
    assert listed["templates"][0]["type"] == "email"
    dup = await tenant.client.post(
        "/api/message-templates",
        json={"templateId": "payment-reminder-v1", "name": "x", "type": "sms", "body": "x"},
    )
    assert dup.status_code == 409
    up = await tenant.client.patch(
        "/api/message-templates/payment-reminder-v1", json={"body": "New text {{amount}}"}
    )
    assert up.status_code == 200 and up.json()["version"] == 2
    assert up.json()["subject"].startswith("Payment Reminder")
    v1 = await tenant.client.get("/api/message-templates/payment-reminder-v1?version=1")
    assert v1.json()["body"].startswith("Dear")


async def test_invalid_templates_are_refused(tenant):
    for body, field in (
        ({"templateId": "t", "name": "t", "type": "sms", "body": "Hi {{ name "}, "body"),
        ({"templateId": "t", "name": "t", "type": "email", "body": "x"}, "subject"),
        ({"templateId": "t", "name": "t", "type": "sms", "body": "x", "subject": "s"}, "subject"),
        ({"templateId": "bad id!", "name": "t", "type": "sms", "body": "x"}, "templateId"),
        ({"templateId": "t", "name": "t", "type": "voice", "body": "x"}, "type"),
    ):
        r = await tenant.client.post("/api/message-templates", json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(e["field"] == field for e in r.json()["errors"]), r.json()


async def test_preview_renders_against_the_case_with_segments(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await tenant.client.post(
        "/api/message-templates",
        json={
            "templateId": "sms1",
            "name": "SMS",
            "type": "sms",
            "body": "Hi #borrower.first_name, #case.outstanding_amount due #case.due_date "
            "for {{ invoice }}.",
        },
    )
    r = await tenant.client.post(
        "/api/message-templates/sms1/preview",
        json={"caseId": str(data["case_id"]), "variables": {"invoice": "INV-1"}},
    )
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["templateText"] == "Hi Pat, $1,234.50 due Jan 15, 2026 for INV-1."
    # As it would be sent now: with the debt-collector disclosure and the opt-out notice
    # the content rules add (a first communication), counted in characters and segments.
    assert p["text"].startswith(p["templateText"] + "\n")
    assert "from a debt collector" in p["text"] and p["text"].endswith("Reply STOP to opt out.")
    assert [c["status"] for c in p["contentRules"]["checks"]] == ["added", "added"]
    assert (p["encoding"], p["characters"]) == ("GSM-7", len(p["text"]))
    assert p["segments"] == -(-len(p["text"]) // 153) > 1
    ucs = await tenant.client.post(
        "/api/message-templates/sms1/preview",
        json={"caseId": str(data["case_id"]), "variables": {"invoice": "Rechnung 🧾"}},
    )
    u = ucs.json()
    assert u["encoding"] == "UCS-2" and u["nonGsmCharacters"] == ["🧾"] and u["warnings"]
    missing = await tenant.client.post(
        "/api/message-templates/sms1/preview", json={"caseId": str(data["case_id"])}
    )
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["variables.invoice"]
    unknown = await tenant.client.post(
        "/api/message-templates/sms1/preview",
        json={"caseId": str(data["case_id"]), "variables": {"invoice": "1", "bogusVar": "1"}},
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["code"]) for e in unknown.json()["errors"]] == [
        ("variables.bogusVar", "unknown_variable")
    ]


async def test_preview_uses_the_borrowers_locale(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id, locale="de_DE")
    await tenant.client.post(
        "/api/message-templates",
        json={
            "templateId": "de",
            "name": "DE",
            "type": "sms",
            "body": "Offen: #case.outstanding_amount bis #case.due_date",
        },
    )
    p = (
        await tenant.client.post(
            "/api/message-templates/de/preview", json={"caseId": str(data["case_id"])}
        )
    ).json()
    assert p["locale"] == "de_DE"
    assert "1.234,50" in p["text"] and "$" in p["text"]


async def test_agent_tag_falls_back_to_the_acting_user_else_is_named_missing(tenant, container):
    from parley.services.auth import Role, issue_token

    data = await factories.borrower_with_case(container, tenant.organization_id, with_agent=False)
    await tenant.client.post(
        "/api/message-templates",
        json={"templateId": "ag", "name": "A", "type": "sms", "body": "Call #agent.name"},
    )
    r = await tenant.client.post(
        "/api/message-templates/ag/preview", json={"caseId": str(data["case_id"])}
    )
    assert r.status_code == 200 and r.json()["templateText"] == "Call Ada Admin"
    async with container.db.session() as s:  # an integration token with no user behind it
        token = await issue_token(
            s, organization_id=tenant.organization_id, role=Role.AGENT, name="crm-sync"
        )
        await s.commit()
    r = await tenant.client.post(
        "/api/message-templates/ag/preview",
        json={"caseId": str(data["case_id"])},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 422 and "agent.name" in r.json()["detail"]
