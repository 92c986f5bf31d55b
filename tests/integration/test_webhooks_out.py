"""Outbound webhooks end to end: API, emit, worker, a real local HTTP receiver.

Receivers listen on 127.0.0.1, so tests that deliver turn the operator setting
`webhooks_allow_private_targets` on; the SSRF tests turn it off again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from parley.api.app import create_app
from parley.channels.sandbox.provider import SIGNATURE_HEADER, sign
from parley.peers.webhook_receiver import WebhookReceiver
from parley.services import activity
from parley.services.auth import Role, issue_token
from parley.webhooks_out import delivery, sender, signing
from tests.support import factories
from tests.support.compliance import Clock
from tests.support.live import drain, live_api, wait_for

STATUS_DATA = {
    "messageId": "6f1c0c8e-0000-4000-8000-000000000001",
    "caseId": "550e8400-e29b-41d4-a716-446655440000",
    "messageType": "sms",
    "status": "delivered",
    "previousStatus": "sent",
    "timestamp": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(status=200) as r:
        yield r


@pytest.fixture
def allow_private(container: Any) -> Any:
    settings = container.settings
    before = settings.webhooks_allow_private_targets
    settings.webhooks_allow_private_targets = True
    yield settings
    settings.webhooks_allow_private_targets = before


async def _endpoint(tenant: Any, url: str, types: list[str] | None = None) -> dict[str, Any]:
    r = await tenant.client.post(
        "/api/webhook-endpoints",
        json={
            "url": url,
            "description": "CRM",
            "eventTypes": types or ["message.status_changed", "message.received"],
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


async def _emit(
    container: Any, org: Any, event_type: str = "message.status_changed", data: Any = None
) -> None:
    async with container.db.pool.connection() as conn, conn.transaction():
        await activity.emit(conn, str(org), event_type, data or STATUS_DATA)


async def _deliveries(tenant: Any, endpoint_id: str, query: str = "") -> list[dict[str, Any]]:
    r = await tenant.client.get(f"/api/webhook-endpoints/{endpoint_id}/deliveries{query}")
    assert r.status_code == 200, r.text
    return r.json()["deliveries"]


async def _detail(tenant: Any, delivery_id: str) -> dict[str, Any]:
    r = await tenant.client.get(f"/api/webhook-deliveries/{delivery_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def _make_due(container: Any) -> None:
    """Bring scheduled retries forward (the schedule's first wait is 5 s)."""
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'"
        )
        await conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'"
        )


def _verify(secret: str, request: Any) -> dict[str, Any]:
    return Webhook(secret).verify(request.body, request.headers)


async def test_delivery_is_signed_and_verifies_with_the_official_library(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hooks/parley")
    assert ep["secret"].startswith("whsec_") and ep["enabled"] is True
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.url.endswith("/hooks/parley")
    body = _verify(ep["secret"], request)
    assert body == {
        "event": "message.status_changed",
        "messageId": STATUS_DATA["messageId"],
        "caseId": STATUS_DATA["caseId"],
        "messageType": "sms",
        "status": "delivered",
        "previousStatus": "sent",
        "timestamp": "2026-01-02T03:04:05Z",
    }
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(request.body, request.headers)

    (listed,) = await _deliveries(tenant, ep["endpointId"])
    assert listed["webhookId"] == request.headers["webhook-id"]
    assert listed["status"] == "succeeded" and listed["attemptCount"] == 1
    detail = await _detail(tenant, listed["deliveryId"])
    assert [(a["attempt"], a["responseStatus"], a["error"]) for a in detail["attempts"]] == [
        (1, 200, None)
    ]
    # The secret is shown once: never again on reads.
    read = (await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}")).json()
    assert "secret" not in read
    listing = (await tenant.client.get("/api/webhook-endpoints")).json()["endpoints"]
    assert [e["endpointId"] for e in listing] == [ep["endpointId"]]
    assert all("secret" not in e for e in listing)


async def test_only_matching_subscriptions_of_the_organization_get_deliveries(
    tenant, other_tenant, container, receiver, allow_private
):
    calls_only = await _endpoint(tenant, f"{receiver.base_url}/calls", ["call.completed"])
    status_ep = await _endpoint(tenant, f"{receiver.base_url}/status")
    await _emit(container, other_tenant.organization_id)  # another org: no subscriptions
    await _emit(container, tenant.organization_id, "conversation.updated", {"caseId": "x"})
    await _emit(container, tenant.organization_id)
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT endpoint_id::text FROM webhook_deliveries")
        assert [r[0] for r in await cur.fetchall()] == [status_ep["endpointId"]]
        cur = await conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'parley:deliver_webhooks'"
        )
        assert (await cur.fetchone())[0] == 1
    await drain(container, ["webhooks"])
    assert [r.url.rsplit("/", 1)[1] for r in receiver.requests] == ["status"]
    assert await _deliveries(tenant, calls_only["endpointId"]) == []


async def test_an_event_rolled_back_sends_nothing(tenant, container, receiver, allow_private):
    await _endpoint(tenant, f"{receiver.base_url}/hook")

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with container.db.pool.connection() as conn, conn.transaction():
            await activity.emit(conn, str(tenant.organization_id), "message.received", {})
            raise Abort
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM webhook_deliveries), (SELECT count(*) FROM "
            "procrastinate_jobs WHERE task_name = 'parley:deliver_webhooks')"
        )
        assert await cur.fetchone() == (0, 0)


async def test_a_failure_is_retried_with_the_same_webhook_id_until_it_succeeds(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    receiver.status, receiver.reply = 500, b"boom " * 1000
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])
    (pending,) = await _deliveries(tenant, ep["endpointId"])
    assert pending["status"] == "pending" and pending["attemptCount"] == 1
    assert pending["lastResponseStatus"] == 500 and pending["lastError"] == "HTTP 500"
    # The answer's body is kept, truncated.
    assert len(pending["lastResponseBody"]) == sender.EXCERPT_BYTES
    wait = datetime.fromisoformat(pending["nextAttemptAt"]) - datetime.fromisoformat(
        pending["lastAttemptAt"]
    )
    assert 4 <= wait.total_seconds() <= 6  # the schedule's first step: 5 s
    r = await tenant.client.post(f"/api/webhook-deliveries/{pending['deliveryId']}/redeliver")
    assert r.status_code == 409  # still being tried
    # Not due yet: a worker pass sends nothing.
    await drain(container, ["webhooks"])
    assert len(receiver.requests) == 1

    receiver.status, receiver.reply = 200, b""
    await _make_due(container)
    await drain(container, ["webhooks"])
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert _verify(ep["secret"], second)["event"] == "message.status_changed"
    detail = await _detail(tenant, pending["deliveryId"])
    assert detail["status"] == "succeeded" and detail["attemptCount"] == 2
    assert detail["nextAttemptAt"] is None
    assert [(a["attempt"], a["responseStatus"]) for a in detail["attempts"]] == [
        (1, 500),
        (2, 200),
    ]
    assert detail["attempts"][0]["error"] == "HTTP 500"
    assert detail["attempts"][1]["error"] is None

    ok = await _deliveries(tenant, ep["endpointId"], "?status=succeeded")
    assert [d["deliveryId"] for d in ok] == [pending["deliveryId"]]
    assert await _deliveries(tenant, ep["endpointId"], "?status=pending") == []


async def test_redirects_are_not_followed_and_count_as_failures(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    receiver.status = 302
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])
    (d,) = await _deliveries(tenant, ep["endpointId"])
    assert d["status"] == "pending" and d["lastResponseStatus"] == 302
    assert "redirects are not followed" in d["lastError"]
    assert len(receiver.requests) == 1


async def test_exhausted_schedule_ends_failed(tenant, container, receiver, allow_private):
    from parley.webhooks_out import schedule

    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    receiver.status = 503
    await _emit(container, tenant.organization_id)
    for _ in range(schedule.MAX_ATTEMPTS):
        await _make_due(container)
        await drain(container, ["webhooks"])
    (d,) = await _deliveries(tenant, ep["endpointId"])
    assert d["status"] == "failed" and d["attemptCount"] == schedule.MAX_ATTEMPTS
    assert len(receiver.requests) == schedule.MAX_ATTEMPTS
    await _make_due(container)
    await drain(container, ["webhooks"])
    assert len(receiver.requests) == schedule.MAX_ATTEMPTS


async def test_410_disables_the_endpoint_and_abandons_what_was_pending(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    receiver.status = 410
    await _emit(container, tenant.organization_id)
    await _emit(container, tenant.organization_id)
    first, second = sorted(
        await _deliveries(tenant, ep["endpointId"]), key=lambda d: d["createdAt"]
    )
    outcome = await delivery.deliver_one(container, first["deliveryId"])
    assert outcome is not None and outcome.status == 410
    await drain(container, ["webhooks"])  # the second's job finds it abandoned
    assert len(receiver.requests) == 1

    endpoint = (await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}")).json()
    assert endpoint["enabled"] is False and endpoint["disabledReason"] == "gone_410"
    assert (await _detail(tenant, first["deliveryId"]))["status"] == "failed"
    abandoned = await _detail(tenant, second["deliveryId"])
    assert abandoned["status"] == "abandoned" and abandoned["attempts"] == []
    assert "gone_410" in abandoned["lastError"]
    # Nothing further is queued for it, and redelivery waits until it is enabled again.
    await _emit(container, tenant.organization_id)
    assert len(await _deliveries(tenant, ep["endpointId"])) == 2
    r = await tenant.client.post(f"/api/webhook-deliveries/{second['deliveryId']}/redeliver")
    assert r.status_code == 409
    receiver.status = 200
    r = await tenant.client.patch(
        f"/api/webhook-endpoints/{ep['endpointId']}", json={"enabled": True}
    )
    assert r.json()["enabled"] is True and r.json()["disabledReason"] is None
    r = await tenant.client.post(f"/api/webhook-deliveries/{second['deliveryId']}/redeliver")
    assert r.status_code == 202, r.text
    await drain(container, ["webhooks"])
    assert receiver.requests[-1].headers["webhook-id"] == second["webhookId"]


async def test_private_targets_are_refused_unless_the_operator_allows_them(
    tenant, container, receiver, allow_private
):
    allow_private.webhooks_allow_private_targets = False
    for url in (f"{receiver.base_url}/hook", "http://10.0.0.8/hook", "http://[::1]:9/x"):
        r = await tenant.client.post(
            "/api/webhook-endpoints", json={"url": url, "eventTypes": ["call.completed"]}
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        (error,) = r.json()["errors"]
        assert error["field"] == "url" and error["code"] == "target_refused"
        assert "PARLEY_WEBHOOKS_ALLOW_PRIVATE_TARGETS" in error["message"]
    assert (await tenant.client.get("/api/webhook-endpoints")).json()["endpoints"] == []

    # Allowed when created; the operator withdraws the permission: refused at delivery,
    # also for a host name (checked in the client's resolver) -- and nothing is sent.
    allow_private.webhooks_allow_private_targets = True
    by_ip = await _endpoint(tenant, f"{receiver.base_url}/hook")
    by_name = await _endpoint(tenant, f"http://localhost:{receiver.port}/hook")
    allow_private.webhooks_allow_private_targets = False
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])
    assert receiver.requests == []
    (ip_d,) = await _deliveries(tenant, by_ip["endpointId"])
    (name_d,) = await _deliveries(tenant, by_name["endpointId"])
    for d in (ip_d, name_d):
        assert d["status"] == "pending" and d["lastResponseStatus"] is None
        assert d["lastError"].startswith("target refused: ")
    assert "loopback" in ip_d["lastError"]
    assert "resolves only to refused addresses" in name_d["lastError"]

    allow_private.webhooks_allow_private_targets = True
    await _make_due(container)
    await drain(container, ["webhooks"])
    assert len(receiver.requests) == 2


async def test_redeliver_is_a_new_attempt_chain_for_the_same_webhook_id(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])
    (original,) = await _deliveries(tenant, ep["endpointId"])
    r = await tenant.client.post(f"/api/webhook-deliveries/{original['deliveryId']}/redeliver")
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["deliveryId"] != original["deliveryId"]
    assert again["webhookId"] == original["webhookId"]
    assert again["redeliveryOf"] == original["deliveryId"]
    assert again["status"] == "pending" and again["attemptCount"] == 0
    await drain(container, ["webhooks"])
    assert [q.headers["webhook-id"] for q in receiver.requests] == [original["webhookId"]] * 2
    assert _verify(ep["secret"], receiver.requests[1]) == _verify(
        ep["secret"], receiver.requests[0]
    )
    assert (await _detail(tenant, again["deliveryId"]))["status"] == "succeeded"
    assert (await _detail(tenant, original["deliveryId"]))["attemptCount"] == 1


async def _rotate(tenant: Any, endpoint_id: str, **kwargs: Any) -> dict[str, Any]:
    r = await tenant.client.post(f"/api/webhook-endpoints/{endpoint_id}/rotate-secret", **kwargs)
    assert r.status_code == 200, r.text
    return r.json()


async def _deliver_one(container: Any, tenant: Any, receiver: WebhookReceiver) -> Any:
    """Emit one event, run the worker, and return the request the receiver got."""
    before = len(receiver.requests)
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])
    assert len(receiver.requests) == before + 1
    return receiver.requests[-1]


async def _stored_secrets(container: Any, endpoint_id: str) -> tuple[Any, ...]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT secret, previous_secret, previous_secret_expires_at "
            "FROM webhook_endpoints WHERE id = %s",
            (endpoint_id,),
        )
        return await cur.fetchone()


async def test_rotation_signs_with_both_secrets_during_grace_then_only_the_new_one(
    tenant, container, receiver, allow_private, monkeypatch
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    now = datetime.now(UTC)
    monkeypatch.setattr(container, "clock", Clock(now))
    rotated = await _rotate(tenant, ep["endpointId"])  # no body: the default 24 hours
    new, old = rotated["secret"], ep["secret"]
    assert new.startswith("whsec_") and new != old
    expires = datetime.fromisoformat(rotated["previousSecretExpiresAt"])
    assert expires == now + timedelta(hours=24)
    read = (await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}")).json()
    assert "secret" not in read and "previousSecret" not in read
    assert read["previousSecretExpiresAt"] == rotated["previousSecretExpiresAt"]

    # During the grace period: receivers holding either secret verify every attempt.
    request = await _deliver_one(container, tenant, receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert _verify(new, request)["status"] == "delivered"
    assert _verify(old, request)["status"] == "delivered"
    with pytest.raises(WebhookVerificationError):
        _verify(signing.new_secret(), request)
    # ... and the endpoint keeps the old secret while it is in its grace period.
    assert await _stored_secrets(container, ep["endpointId"]) == (new, old, expires)

    # A retry inside the grace period is signed with both too.
    receiver.status = 500
    await _emit(container, tenant.organization_id)
    await drain(container, ["webhooks"])
    receiver.status = 200
    await _make_due(container)
    await drain(container, ["webhooks"])
    failed, retried = receiver.requests[-2:]
    assert failed.headers["webhook-id"] == retried.headers["webhook-id"]
    assert _verify(old, retried) == _verify(new, retried)

    # After it (the container's clock moved on): only the new secret signs.
    monkeypatch.setattr(container, "clock", Clock(expires + timedelta(seconds=1)))
    request = await _deliver_one(container, tenant, receiver)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert _verify(new, request)["status"] == "delivered"
    with pytest.raises(WebhookVerificationError):
        _verify(old, request)
    # The claim of that delivery forgot the expired secret.
    assert await _stored_secrets(container, ep["endpointId"]) == (new, None, None)
    read = (await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}")).json()
    assert read["previousSecretExpiresAt"] is None and "previousSecret" not in read


async def test_the_sweep_forgets_expired_previous_secrets_and_keeps_those_in_grace(
    tenant, container, receiver, allow_private, monkeypatch
):
    expired = await _endpoint(tenant, f"{receiver.base_url}/a")
    in_grace = await _endpoint(tenant, f"{receiver.base_url}/b")
    now = datetime.now(UTC)
    monkeypatch.setattr(container, "clock", Clock(now))
    one = await _rotate(tenant, expired["endpointId"], json={"graceHours": 1})
    two = await _rotate(tenant, in_grace["endpointId"], json={"graceHours": 3})
    kept = (two["secret"], in_grace["secret"], now + timedelta(hours=3))

    # Two hours on: the first endpoint's old secret has expired, the second's has not.
    monkeypatch.setattr(container, "clock", Clock(now + timedelta(hours=2)))
    assert await delivery.sweep(container) == 0  # nothing to re-defer
    assert await _stored_secrets(container, expired["endpointId"]) == (one["secret"], None, None)
    assert await _stored_secrets(container, in_grace["endpointId"]) == kept
    # Secrets are never returned, old or new.
    for ep in (expired, in_grace):
        r = await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}")
        assert "secret" not in r.json() and "previousSecret" not in r.json()
        assert ep["secret"] not in r.text


async def test_an_expiry_in_the_past_stops_the_old_signature(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    new = (await _rotate(tenant, ep["endpointId"], json={"graceHours": 168}))["secret"]
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 s' "
            "WHERE id = %s",
            (ep["endpointId"],),
        )
    request = await _deliver_one(container, tenant, receiver)
    assert _verify(new, request)["status"] == "delivered"
    with pytest.raises(WebhookVerificationError):
        _verify(ep["secret"], request)


async def test_zero_grace_stops_the_old_secret_at_once(tenant, container, receiver, allow_private):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    rotated = await _rotate(tenant, ep["endpointId"], json={"graceHours": 0})
    assert rotated["previousSecretExpiresAt"] is None
    assert await _stored_secrets(container, ep["endpointId"]) == (rotated["secret"], None, None)
    request = await _deliver_one(container, tenant, receiver)
    assert _verify(rotated["secret"], request)["status"] == "delivered"
    with pytest.raises(WebhookVerificationError):
        _verify(ep["secret"], request)


async def test_rotating_again_keeps_only_the_secret_it_replaced(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    second = (await _rotate(tenant, ep["endpointId"], json={"graceHours": 48}))["secret"]
    third = await _rotate(tenant, ep["endpointId"], json={"graceHours": 2})
    request = await _deliver_one(container, tenant, receiver)
    assert _verify(third["secret"], request) == _verify(second, request)
    with pytest.raises(WebhookVerificationError):
        _verify(ep["secret"], request)
    secret, previous, expires = await _stored_secrets(container, ep["endpointId"])
    assert (secret, previous) == (third["secret"], second)
    assert expires == datetime.fromisoformat(third["previousSecretExpiresAt"])


async def test_rotation_with_an_idempotency_key_rotates_once(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    key = {"Idempotency-Key": f"rotate-{uuid.uuid4().hex}"}
    first = await tenant.client.post(
        f"/api/webhook-endpoints/{ep['endpointId']}/rotate-secret", json={}, headers=key
    )
    again = await tenant.client.post(
        f"/api/webhook-endpoints/{ep['endpointId']}/rotate-secret", json={}, headers=key
    )
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["secret"] == first.json()["secret"]
    secret, previous, _ = await _stored_secrets(container, ep["endpointId"])
    assert (secret, previous) == (first.json()["secret"], ep["secret"])
    other = await tenant.client.post(
        f"/api/webhook-endpoints/{ep['endpointId']}/rotate-secret",
        json={"graceHours": 1},
        headers=key,
    )
    assert other.status_code == 422  # the same key with a different request


async def test_bad_rotation_input_is_a_422_and_changes_nothing(
    tenant, other_tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    path = f"/api/webhook-endpoints/{ep['endpointId']}/rotate-secret"
    for body in (
        {"graceHours": -1},
        {"graceHours": 169},
        {"graceHours": "24"},
        {"graceHours": 1.5},
        {"graceHours": True},
        {"graceHours": None},
        {"grace": 24},
        [24],
    ):
        r = await tenant.client.post(path, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"], body
    r = await tenant.client.post(
        path, content=b'{"graceHours": ', headers={"content-type": "application/json"}
    )
    assert 400 <= r.status_code < 500
    r = await other_tenant.client.post(path, json={"graceHours": 1})
    assert r.status_code == 404
    r = await tenant.client.post(f"/api/webhook-endpoints/{uuid.uuid4()}/rotate-secret")
    assert r.status_code == 404
    assert await _stored_secrets(container, ep["endpointId"]) == (ep["secret"], None, None)
    await tenant.client.delete(f"/api/webhook-endpoints/{ep['endpointId']}")
    assert (await tenant.client.post(path)).status_code == 409


async def test_test_event_and_deleting_an_endpoint_keeps_its_log(
    tenant, container, receiver, allow_private
):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook", ["call.completed"])
    r = await tenant.client.post(f"/api/webhook-endpoints/{ep['endpointId']}/test")
    assert r.status_code == 202, r.text
    await drain(container, ["webhooks"])
    (request,) = receiver.requests
    body = _verify(ep["secret"], request)
    assert body["event"] == "webhook.test" and body["endpointId"] == ep["endpointId"]

    receiver.status = 500
    await _emit(container, tenant.organization_id, "call.completed", {"callId": "c1"})
    await drain(container, ["webhooks"])
    r = await tenant.client.delete(f"/api/webhook-endpoints/{ep['endpointId']}")
    assert r.status_code == 204
    assert (await tenant.client.get("/api/webhook-endpoints")).json()["endpoints"] == []
    gone = (await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}")).json()
    assert gone["deleted"] is True and gone["disabledReason"] == "deleted"
    log = await _deliveries(tenant, ep["endpointId"])
    assert sorted(d["status"] for d in log) == ["abandoned", "succeeded"]
    r = await tenant.client.patch(
        f"/api/webhook-endpoints/{ep['endpointId']}", json={"enabled": True}
    )
    assert r.status_code == 409
    assert (
        await tenant.client.delete(f"/api/webhook-endpoints/{ep['endpointId']}")
    ).status_code == 204


async def test_a_delivery_whose_job_was_lost_is_swept_up(
    tenant, container, receiver, allow_private
):
    await _endpoint(tenant, f"{receiver.base_url}/hook")
    await _emit(container, tenant.organization_id)
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM procrastinate_jobs WHERE task_name = 'parley:deliver_webhooks'"
        )
        await conn.execute(
            "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '10 minutes'"
        )
    assert await delivery.sweep(container) == 1
    assert await delivery.sweep(container) == 0  # a job is waiting now
    await drain(container, ["webhooks"])
    assert len(receiver.requests) == 1


async def test_secrets_never_reach_the_logs(tenant, container, receiver, allow_private, caplog):
    with caplog.at_level(logging.DEBUG):
        ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
        rotated = (
            await tenant.client.post(f"/api/webhook-endpoints/{ep['endpointId']}/rotate-secret")
        ).json()["secret"]
        for status in (500, 410):
            receiver.status = status
            await _emit(container, tenant.organization_id)
            await _make_due(container)
            await drain(container, ["webhooks"])
    # 500, then the retry and the second event both answered 410.
    assert len(receiver.requests) == 3
    assert "410 Gone: disabled" in caplog.text  # the logs were captured
    signatures = [
        part for r in receiver.requests for part in r.headers["webhook-signature"].split(" ")
    ]
    assert len(signatures) == 6  # each attempt was signed with both secrets (grace)
    for secret in (ep["secret"], rotated, *signatures):
        assert secret not in caplog.text
        assert secret.split(",")[-1].removeprefix("whsec_") not in caplog.text


async def test_bad_input_is_a_422_and_other_organizations_get_404(
    tenant, other_tenant, container, receiver, allow_private
):
    bad = [
        {"url": "https://8.8.8.8/h", "eventTypes": []},
        {"url": "https://8.8.8.8/h", "eventTypes": ["message.deleted"]},
        {"url": "ftp://8.8.8.8/hook", "eventTypes": ["call.completed"]},
        {"eventTypes": ["call.completed"]},
        {"url": "https://8.8.8.8/h", "eventTypes": ["call.completed"], "secret": "mine"},
    ]
    for body in bad:
        r = await tenant.client.post("/api/webhook-endpoints", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"]
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    r = await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}/deliveries?status=x")
    assert r.status_code == 422
    r = await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}/deliveries?cursor=zz")
    assert r.status_code == 422
    allow_private.webhooks_allow_private_targets = False
    r = await tenant.client.patch(
        f"/api/webhook-endpoints/{ep['endpointId']}", json={"url": "http://169.254.169.254/"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "url"
    allow_private.webhooks_allow_private_targets = True

    await _emit(container, tenant.organization_id)
    (d,) = await _deliveries(tenant, ep["endpointId"])
    other = other_tenant.client
    eid, did = ep["endpointId"], d["deliveryId"]
    for method, path in [
        ("GET", f"/api/webhook-endpoints/{eid}"),
        ("PATCH", f"/api/webhook-endpoints/{eid}"),
        ("DELETE", f"/api/webhook-endpoints/{eid}"),
        ("POST", f"/api/webhook-endpoints/{eid}/rotate-secret"),
        ("POST", f"/api/webhook-endpoints/{eid}/test"),
        ("GET", f"/api/webhook-endpoints/{eid}/deliveries"),
        ("GET", f"/api/webhook-deliveries/{did}"),
        ("POST", f"/api/webhook-deliveries/{did}/redeliver"),
        ("GET", f"/api/webhook-deliveries/{uuid.uuid4()}"),
    ]:
        kwargs = {"json": {"enabled": False}} if method == "PATCH" else {}
        r = await other.request(method, path, **kwargs)
        assert r.status_code == 404, (method, path, r.text)
    assert (await other.get("/api/webhook-endpoints")).json()["endpoints"] == []
    # Nothing the other organization tried changed the endpoint.
    still = (await tenant.client.get(f"/api/webhook-endpoints/{eid}")).json()
    assert still["enabled"] is True and still["deleted"] is False


async def test_delivery_log_pages_with_a_cursor(tenant, container, receiver, allow_private):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    for _ in range(5):
        await _emit(container, tenant.organization_id)
    seen: list[str] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = await tenant.client.get(f"/api/webhook-endpoints/{ep['endpointId']}/deliveries{query}")
        page = r.json()
        assert len(page["deliveries"]) <= 2
        seen += [d["deliveryId"] for d in page["deliveries"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


async def test_status_callbacks_reach_the_customer_as_message_status_changed(
    tenant, container, receiver, allow_private
):
    """A real flow: an SMS through the sandbox, whose status callbacks come back over
    HTTP, become signed `message.status_changed` webhooks."""
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(
        container,
        tenant.organization_id,
        sent_delay_seconds=0.05,
        delivery_delay_seconds=0.1,
        read_delay_seconds=None,
    )
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    async with live_api(container):
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "sms", "body": "Hello. Reply STOP to opt out."},
        )
        assert r.status_code == 201, r.text
        message_id = r.json()["messageId"]
        await drain(container)

        async def delivered() -> bool:
            m = (await tenant.client.get(f"/api/messages/{message_id}")).json()
            return m["status"] == "delivered"

        await wait_for(delivered)
    await drain(container, ["webhooks"])
    bodies = [_verify(ep["secret"], q) for q in receiver.requests]
    assert bodies, "no webhook arrived"
    assert {b["messageId"] for b in bodies} == {message_id}
    assert all(b["caseId"] == str(data["case_id"]) for b in bodies)
    assert all(b["messageType"] == "sms" for b in bodies)
    assert ("sent", "delivered") in {(b["previousStatus"], b["status"]) for b in bodies}


async def test_an_inbound_reply_reaches_the_customer_as_message_received(
    tenant, container, receiver, allow_private
):
    """A real flow: a signed sandbox webhook carrying the borrower's text, handled by the
    inbound job, becomes a signed `message.received` in the API guide's shape."""
    data = await factories.borrower_with_case(container, tenant.organization_id)
    accounts = await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook", ["message.received"])
    raw = orjson.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "inbound",
            "message_id": "sbx_" + uuid.uuid4().hex,
            "channel": "sms",
            "from": "+12025550123",
            "to": "+18005550100",
            "body": "I can pay on Friday",
            "timestamp": "2026-01-05T10:00:00Z",
        }
    )
    r = await tenant.client.post(
        f"/webhooks/sandbox/{accounts['sms']}",
        content=raw,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(accounts["secret"], raw),
        },
    )
    assert r.status_code == 200, r.text
    await drain(container, ["receipts"])
    await drain(container, ["webhooks"])
    (request,) = receiver.requests
    body = _verify(ep["secret"], request)
    case = (await tenant.client.get(f"/api/cases/{data['case_id']}")).json()
    assert body.pop("messageId")
    assert body == {
        "event": "message.received",
        "caseId": str(data["case_id"]),
        "caseNumber": case["caseNumber"],
        "messageType": "sms",
        "from": "+12025550123",
        "subject": None,
        "hasAttachments": False,
        "timestamp": "2026-01-05T10:00:00Z",
    }


async def test_changes_need_the_admin_role(tenant, container, receiver, allow_private):
    ep = await _endpoint(tenant, f"{receiver.base_url}/hook")
    async with container.db.session() as session:
        token = await issue_token(
            session, organization_id=tenant.organization_id, role=Role.SUPERVISOR, name="sup"
        )
        await session.commit()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    ) as supervisor:
        assert (await supervisor.get("/api/webhook-endpoints")).status_code == 200
        eid = ep["endpointId"]
        assert (await supervisor.get(f"/api/webhook-endpoints/{eid}/deliveries")).status_code == 200
        r = await supervisor.post(
            "/api/webhook-endpoints",
            json={"url": f"{receiver.base_url}/x", "eventTypes": ["call.completed"]},
        )
        assert r.status_code == 403
        assert (
            await supervisor.post(f"/api/webhook-endpoints/{eid}/rotate-secret")
        ).status_code == 403
        assert (await supervisor.delete(f"/api/webhook-endpoints/{eid}")).status_code == 403
