"""API conventions: auth, tenancy (invariant 5), idempotency, problem+json (invariant 7)."""

from __future__ import annotations

import re
import uuid

from tests.support import factories


async def _case(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    return data


async def _count(container, table):
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        return (await cur.fetchone())[0]


async def test_missing_and_bad_tokens_answer_401(tenant):
    r = await tenant.client.get("/api/message-templates", headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await tenant.client.get(
        "/api/message-templates", headers={"Authorization": "Bearer prly_nope"}
    )
    assert r.status_code == 401


async def test_tokens_are_stored_hashed(tenant, container):
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT token_hash FROM api_tokens")
        hashes = [r[0] for r in await cur.fetchall()]
    assert tenant.token not in hashes and all(len(h) == 64 for h in hashes)


async def test_other_tenants_objects_answer_404(tenant, other_tenant, container):
    data = await _case(tenant, container)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hi"}
    )
    mid = r.json()["messageId"]
    thread = r.json()["threadId"]
    for path in (
        f"/api/messages/{mid}",
        f"/api/messages/{mid}/delivery-report",
        f"/api/messages/{mid}/compliance",
        f"/api/cases/{data['case_id']}/messages",
        f"/api/cases/{data['case_id']}/threads",
        f"/api/threads/{thread}/messages",
    ):
        assert (await other_tenant.client.get(path)).status_code == 404, path
    assert (await other_tenant.client.post(f"/api/messages/{mid}/cancel")).status_code == 404
    r = await other_tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hi"}
    )
    assert r.status_code == 404
    assert (await tenant.client.get(f"/api/messages/{mid}")).status_code == 200


async def test_idempotency_key_replays_conflicts_and_rejects_reuse(tenant, container):
    data = await _case(tenant, container)
    url = f"/api/cases/{data['case_id']}/messages"
    body = {"messageType": "sms", "body": "Pay by Friday"}
    key = {"Idempotency-Key": "abc-123"}
    first = await tenant.client.post(url, json=body, headers=key)
    again = await tenant.client.post(url, json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await _count(container, "messages") == 1
    other = await tenant.client.post(url, json={**body, "body": "Different"}, headers=key)
    assert other.status_code == 422
    assert await _count(container, "messages") == 1
    # A first request still in flight (same body): 409, not a second message.
    import hashlib
    import json

    raw = json.dumps(body).encode()
    digest = hashlib.sha256(b"POST" + url.encode() + b"\0" + raw).hexdigest()
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO idempotency_keys (organization_id, key, method, path, request_hash, "
            "state, expires_at) VALUES (%s, 'running-key', 'POST', %s, %s, 'running', "
            "now() + interval '1 day')",
            (tenant.organization_id, url, digest),
        )
    running = await tenant.client.post(
        url,
        content=raw,
        headers={"Idempotency-Key": "running-key", "content-type": "application/json"},
    )
    assert running.status_code == 409, running.text
    assert await _count(container, "messages") == 1


async def test_idempotent_replay_of_a_4xx_does_not_write(tenant, container):
    data = await _case(tenant, container)
    url = f"/api/cases/{data['case_id']}/messages"
    key = {"Idempotency-Key": "bad-1"}
    body = {"messageType": "sms", "to": "not a phone", "body": "x"}
    a = await tenant.client.post(url, json=body, headers=key)
    b = await tenant.client.post(url, json=body, headers=key)
    assert a.status_code == b.status_code == 422 and a.json() == b.json()


async def test_bad_input_is_a_clear_4xx_and_writes_nothing(tenant, container):
    data = await _case(tenant, container)
    url = f"/api/cases/{data['case_id']}/messages"
    cases = [
        ({"messageType": "sms", "to": "12", "body": "x"}, 422, "to"),
        ({"messageType": "email", "to": "not-an-email", "subject": "s", "body": "x"}, 422, "to"),
        (
            {"messageType": "email", "to": "someone@else.com", "subject": "s", "body": "x"},
            422,
            "to",
        ),
        ({"messageType": "sms", "body": "x" * 2000}, 422, "body"),
        ({"messageType": "sms", "body": "€" * 1000}, 422, "body"),
        ({"messageType": "sms", "templateId": "nope"}, 422, "templateId"),
        ({"messageType": "sms"}, 422, "body"),
        ({"messageType": "email", "body": "no subject"}, 422, "subject"),
        (
            {"messageType": "sms", "body": "x", "providerAccountId": str(uuid.uuid4())},
            422,
            "providerAccountId",
        ),
        ({"messageType": "fax", "body": "x"}, 422, "messageType"),
        ({"messageType": "sms", "body": "x", "unknownField": 1}, 422, "unknownField"),
        ({"messageType": "sms", "body": "x", "sendAt": "tomorrow"}, 422, "sendAt"),
        ({"messageType": "sms", "body": "x", "cc": ["a@b.com"]}, 422, "cc"),
        ({"messageType": "email", "subject": "a\r\nBcc: x@y.z", "body": "x"}, 422, "subject"),
    ]
    for body, status, field in cases:
        r = await tenant.client.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["status"] == status and problem["detail"]
        assert any(e["field"].startswith(field) for e in problem.get("errors", [])), (body, problem)
    nul = await tenant.client.post(url, json={"messageType": "sms", "body": "a\x00b"})
    assert nul.status_code == 422
    nul_var = await tenant.client.post(
        url, json={"messageType": "sms", "body": "x", "variables": {"k": ["\x00"]}}
    )
    assert nul_var.status_code == 422
    nul_query = await tenant.client.get(f"{url}?status=%00")
    assert nul_query.status_code == 422
    assert nul_query.json()["errors"][0]["field"] == "status"
    unknown_case = await tenant.client.post(
        f"/api/cases/{uuid.uuid4()}/messages", json={"messageType": "sms", "body": "x"}
    )
    assert unknown_case.status_code == 404
    bad_uuid = await tenant.client.post(
        "/api/cases/not-a-uuid/messages", json={"messageType": "sms", "body": "x"}
    )
    assert bad_uuid.status_code == 422
    malformed = await tenant.client.post(
        url, content=b'{"messageType": "sms",', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400 and "JSON" in malformed.json()["title"]
    huge = await tenant.client.post(
        url, content=b"{" + b" " * 2_000_000 + b"}", headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413
    for table in ("messages", "procrastinate_jobs", "message_events", "threads"):
        assert await _count(container, table) == 0, table


async def test_provider_account_secrets_are_never_returned(tenant):
    r = await tenant.client.post(
        "/api/provider-accounts",
        json={
            "name": "twilio-main",
            "provider": "twilio",
            "channel": "sms",
            "config": {"account_sid": "AC" + "0" * 32, "from_number": "+18005550100"},
            "secrets": {"auth_token": "super-secret-token"},
        },
    )
    assert r.status_code == 201, r.text
    assert "super-secret-token" not in r.text and r.json()["secretsSet"] == ["auth_token"]
    listed = await tenant.client.get("/api/provider-accounts")
    assert "super-secret-token" not in listed.text
    bad = await tenant.client.post(
        "/api/provider-accounts", json={"name": "x", "provider": "carrier-pigeon", "channel": "sms"}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "provider"
    missing = await tenant.client.post(
        "/api/provider-accounts",
        json={"name": "y", "provider": "twilio", "channel": "sms", "config": {}},
    )
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json()["errors"]} >= {"account_sid", "auth_token"}
    wrong_channel = await tenant.client.post(
        "/api/provider-accounts",
        json={"name": "z", "provider": "smtp", "channel": "sms", "config": {}},
    )
    assert wrong_channel.status_code == 422


async def test_openapi_is_served(tenant):
    r = await tenant.client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in (
        "/api/cases/{case_id}/messages",
        "/api/messages/{message_id}/delivery-report",
        "/api/message-templates",
        "/api/message-templates/{template_id}/preview",
        "/api/cases/{case_id}/threads",
        "/api/threads/{thread_id}/messages",
    ):
        assert p in paths, p


async def test_api_docs_pages_need_no_internet(tenant):
    """/docs and /redoc load Swagger UI and ReDoc from Parley itself, not from a CDN (an
    offline machine got a blank page), and the files they name are served."""
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        r = await tenant.client.get(page)
        assert r.status_code == 200
        assert "cdn." not in r.text and "https://" not in r.text, r.text
        urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert any(u.endswith(asset) for u in urls), urls
        for url in urls:
            if url.startswith("/"):
                served = await tenant.client.get(url)
                assert served.status_code == 200, url
                assert len(served.content) > 1000, url


async def test_values_that_could_not_be_stored_or_read_back_are_refused(tenant, container):
    data = await _case(tenant, container)
    url = f"/api/cases/{data['case_id']}/messages"
    far = await tenant.client.post(
        url, json={"messageType": "sms", "body": "x", "sendAt": "9999-12-31T23:59:59-14:00"}
    )
    assert far.status_code == 422 and far.json()["errors"][0]["field"] == "sendAt"
    deep: object = "leaf"
    for _ in range(300):
        deep = {"k": deep}
    nested = await tenant.client.post(
        url, json={"messageType": "sms", "body": "x", "variables": {"v": deep}}
    )
    assert nested.status_code == 422 and nested.json()["errors"][0]["field"] == "variables"
    nan = await tenant.client.post(
        url,
        content=b'{"messageType": "sms", "body": "x", "variables": {"n": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422
    for rate, burst in ((float("nan"), None), (1e-300, None), (None, 10**12), (-1, None)):
        body = {
            "name": f"a{rate}{burst}",
            "provider": "sandbox",
            "channel": "sms",
            "secrets": {"signing_secret": "s"},
            "ratePerSecond": rate,
            "burst": burst,
        }
        raw = __import__("json").dumps(body).encode()  # allows NaN on purpose
        r = await tenant.client.post(
            "/api/provider-accounts", content=raw, headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, (rate, burst, r.text)
    assert await _count(container, "messages") == 0
    assert await _count(container, "provider_accounts") == 3  # only _case's sandbox accounts


async def test_odd_header_bytes_and_chunked_oversize_are_4xx(tenant, container):
    data = await _case(tenant, container)
    url = f"/api/cases/{data['case_id']}/messages"
    odd = await tenant.client.post(
        url,
        json={"messageType": "sms", "body": "x"},
        headers=[("X-Note", "caf\xe9".encode("latin-1")), ("Idempotency-Key", "k-odd")],
    )
    assert odd.status_code == 201

    async def chunks():
        for _ in range(40):
            yield b" " * 50_000

    big = await tenant.client.post(
        url, content=chunks(), headers={"content-type": "application/json"}
    )
    assert big.status_code == 413
    assert await _count(container, "messages") == 1


async def test_send_time_allow_decisions_are_recorded(tenant, container):
    from tests.support.live import drain

    data = await _case(tenant, container)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "x"}
    )
    await drain(container)
    decisions = (
        await tenant.client.get(f"/api/messages/{r.json()['messageId']}/compliance")
    ).json()["decisions"]
    assert [(d["stage"], d["outcome"]) for d in decisions] == [
        ("enqueue", "allow"),
        ("send", "allow"),
    ]
