"""Limited-content voicemail templates accept only the allowed elements (Reg F 1006.2(j))."""

from __future__ import annotations

VOICEMAIL = {
    "businessName": "Northwind Services",
    "requestToReply": True,
    "contactNames": ["Jane Doe"],
    "callbackNumbers": ["+1 800 555 0199"],
    "salutation": "Pat",
    "anyRepresentative": True,
}


async def test_a_voicemail_template_is_composed_only_from_its_elements(tenant):
    r = await tenant.client.post(
        "/api/message-templates",
        json={
            "templateId": "vm-1",
            "name": "Callback",
            "type": "voicemail",
            "voicemail": VOICEMAIL,
        },
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["type"] == "voicemail" and out["voicemail"] == VOICEMAIL
    script = out["body"]
    assert "Jane Doe" in script and "Northwind Services" in script and "555 0199" in script
    for forbidden in ("debt", "collect", "balance", "$"):
        assert forbidden not in script.lower()
    listed = await tenant.client.get("/api/message-templates", params={"type": "voicemail"})
    assert [t["templateId"] for t in listed.json()["templates"]] == ["vm-1"]


async def test_anything_beyond_the_allowed_elements_is_refused_field_by_field(tenant):
    bad = {
        **VOICEMAIL,
        "businessName": "Northwind Debt Collection",
        "callbackNumbers": ["call me"],
        "balance": "$1,250.00",
    }
    r = await tenant.client.post(
        "/api/message-templates",
        json={"templateId": "vm-2", "name": "Bad", "type": "voicemail", "voicemail": bad},
    )
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert "voicemail.businessName" in fields
    assert any(f.startswith("voicemail.callbackNumbers") for f in fields)
    assert "voicemail.balance" in fields
    missing = await tenant.client.get("/api/message-templates/vm-2")
    assert missing.status_code == 404  # nothing half-written


async def test_a_voicemail_template_takes_no_body_and_others_take_no_voicemail(tenant):
    r = await tenant.client.post(
        "/api/message-templates",
        json={
            "templateId": "vm-3",
            "name": "Mixed",
            "type": "voicemail",
            "voicemail": VOICEMAIL,
            "body": "Call us about your debt",
        },
    )
    assert r.status_code == 422
    r = await tenant.client.post(
        "/api/message-templates",
        json={"templateId": "s-1", "name": "Sms", "type": "sms", "voicemail": VOICEMAIL},
    )
    assert r.status_code == 422
    r = await tenant.client.post(
        "/api/message-templates", json={"templateId": "s-2", "name": "Sms", "type": "sms"}
    )
    assert r.status_code == 422


async def test_a_new_version_replaces_the_elements(tenant):
    await tenant.client.post(
        "/api/message-templates",
        json={
            "templateId": "vm-4",
            "name": "Callback",
            "type": "voicemail",
            "voicemail": VOICEMAIL,
        },
    )
    r = await tenant.client.patch(
        "/api/message-templates/vm-4",
        json={"voicemail": {**VOICEMAIL, "contactNames": ["Sam Lee"]}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and "Sam Lee" in r.json()["body"]
    r = await tenant.client.patch("/api/message-templates/vm-4", json={"body": "anything"})
    assert r.status_code == 422
