"""WhatsApp end to end against the local Graph API peer: the messages API, the worker,
Meta's signed webhooks back, the template library and the 24-hour window."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from parley.channels.base import WebhookRequest
from parley.channels.whatsapp import webhooks
from parley.domain.channels import Channel
from parley.inbox import receipts
from parley.peers.whatsapp_api import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_APP_SECRET,
    DEFAULT_PHONE_NUMBER_ID,
    DEFAULT_WABA_ID,
    PeerTemplate,
    WhatsAppApiPeer,
)
from tests.support import factories
from tests.support.live import drain, live_api, wait_for

PHONE = "+12025550123"  # factories.borrower_with_case's borrower
VERIFY_TOKEN = "verify-me-please"
COMPLIANT = (
    "Hi {{1}}, your balance of {{2}} is due. This is an attempt to collect a debt and any "
    "information obtained will be used for that purpose. This communication is from a debt "
    "collector. Reply STOP to opt out."
)
TEMPLATES = [
    PeerTemplate("payment_reminder", "en_US", "APPROVED", body=COMPLIANT),
    PeerTemplate("payment_reminder", "es_MX", "APPROVED", body=COMPLIANT),
    PeerTemplate("settlement_offer", "en_US", "PENDING", body=COMPLIANT),
    PeerTemplate("short_nudge", "en_US", "APPROVED", body="Hi {{1}}, please call us."),
    PeerTemplate(
        "old_promo", "en_US", "REJECTED", body="Buy now", rejected_reason="INVALID_FORMAT"
    ),
]


@dataclass
class World:
    tenant: Any
    container: Any
    peer: WhatsAppApiPeer
    account_id: Any
    case_id: Any
    base: str

    async def post(self, **body: Any) -> Any:
        return await self.tenant.client.post(f"/api/cases/{self.case_id}/messages", json=body)

    async def send(self, **body: Any) -> dict[str, Any]:
        r = await self.post(messageType="whatsapp", **body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def sync(self) -> dict[str, Any]:
        r = await self.tenant.client.post(
            f"/api/provider-accounts/{self.account_id}/whatsapp-templates/sync"
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def inbound(self, kind: str = "text", **kwargs: Any) -> str:
        wamid, status = await self.peer.send_inbound(PHONE, kind, **kwargs)
        assert status == 200
        await settle(self.container)
        return wamid

    async def report(self, message_id: str) -> dict[str, Any]:
        r = await self.tenant.client.get(f"/api/messages/{message_id}/delivery-report")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def status_becomes(self, message_id: str, status: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            rep = await self.report(message_id)
            return rep if rep["status"] == status else None

        result: dict[str, Any] = await wait_for(check)
        return result


async def rows(container: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def settle(container: Any) -> None:
    for _ in range(10):
        await drain(container)
        (ready,) = (
            await rows(
                container,
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
                "AND queue_name IN ('dispatch', 'receipts') "
                "AND (scheduled_at IS NULL OR scheduled_at <= now())",
            )
        )[0]
        if not ready:
            return
    raise AssertionError("jobs kept coming")


async def whatsapp_account(container: Any, org_id: Any, peer: WhatsAppApiPeer) -> Any:
    return await factories.account(
        container,
        org_id,
        "whatsapp_cloud",
        Channel.WHATSAPP,
        config={
            "base_url": peer.base_url,
            "phone_number_id": DEFAULT_PHONE_NUMBER_ID,
            "waba_id": DEFAULT_WABA_ID,
            "from_number": "+15550783881",
        },
        secrets_={
            "access_token": DEFAULT_ACCESS_TOKEN,
            "app_secret": DEFAULT_APP_SECRET,
            "verify_token": VERIFY_TOKEN,
        },
    )


@pytest.fixture
async def world(tenant: Any, container: Any) -> AsyncIterator[World]:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with WhatsAppApiPeer(templates=TEMPLATES) as peer:
        account_id = await whatsapp_account(container, tenant.organization_id, peer)
        async with live_api(container) as base:
            peer.webhook_url = f"{base}/webhooks/whatsapp_cloud/{account_id}"
            yield World(tenant, container, peer, account_id, data["case_id"], base)


# -- webhooks: handshake and signatures ---------------------------------------------


async def test_subscription_handshake_echoes_the_challenge(world: World) -> None:
    path = f"/webhooks/whatsapp_cloud/{world.account_id}"
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    r = await world.tenant.client.get(path, params=query)
    assert r.status_code == 200 and r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")
    wrong = await world.tenant.client.get(path, params={**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403
    assert "1158201444" not in wrong.text
    assert (
        await world.tenant.client.get(path, params={**query, "hub.mode": "x"})
    ).status_code == 403
    other = await world.tenant.client.get(f"/webhooks/twilio/{world.account_id}", params=query)
    assert other.status_code == 404


async def test_unsigned_or_forged_posts_are_refused_and_nothing_is_stored(world: World) -> None:
    path = f"/webhooks/whatsapp_cloud/{world.account_id}"
    headers, body = world.peer.signed(world.peer.envelope({"statuses": []}))
    forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
    assert (await world.tenant.client.post(path, content=body, headers=forged)).status_code == 403
    # Same bytes re-serialized (spacing changes): the signature covers the raw bytes.
    loose = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    assert (await world.tenant.client.post(path, content=loose, headers=headers)).status_code == 403
    assert await rows(world.container, "SELECT id FROM webhook_receipts") == []
    ok = await world.tenant.client.post(path, content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert len(await rows(world.container, "SELECT id FROM webhook_receipts")) == 1


# -- inbound and the window -----------------------------------------------------------


async def test_every_inbound_kind_reaches_the_case_and_opens_the_window(world: World) -> None:
    assert await rows(world.container, "SELECT * FROM whatsapp_windows") == []
    await world.inbound("text", text="Can I pay on Friday?")
    await world.inbound("image", caption="my receipt", mime_type="image/png")
    await world.inbound("document", filename="statement.pdf")
    await world.inbound("button", text="Pay now", payload="PAY_NOW")
    await world.inbound("interactive", text="Call me", payload="qr_2")
    r = await world.tenant.client.get(
        f"/api/cases/{world.case_id}/messages", params={"direction": "inbound"}
    )
    assert r.status_code == 200, r.text
    bodies = sorted(m["body"] for m in r.json()["messages"])
    assert bodies == sorted(["Can I pay on Friday?", "my receipt", "", "Pay now", "Call me"])
    assert {m["messageType"] for m in r.json()["messages"]} == {"whatsapp"}
    (window,) = await rows(world.container, "SELECT phone, last_inbound_at FROM whatsapp_windows")
    assert window[0] == PHONE


async def test_free_form_outside_the_window_is_refused_with_the_approved_templates(
    world: World,
) -> None:
    await world.sync()
    r = await world.post(messageType="whatsapp", body="Please call us about your balance.")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    codes = {e["code"]: e for e in problem["errors"]}
    assert "never been open" in codes["whatsapp_window_closed"]["message"]
    suggestion = codes["template_required"]["message"]
    assert "payment_reminder (en_US)" in suggestion and "payment_reminder (es_MX)" in suggestion
    assert "short_nudge (en_US)" in suggestion
    assert "settlement_offer" not in suggestion and "old_promo" not in suggestion
    for extra in ({"quickReplies": ["Pay now"]}, {"media": _document()}):
        again = await world.post(messageType="whatsapp", body="Statement attached.", **extra)
        assert again.status_code == 422, again.text
    assert await rows(world.container, "SELECT id FROM messages") == []
    assert await rows(world.container, "SELECT id FROM procrastinate_jobs") == []

    # Once the window has closed, the error says since when.
    await world.inbound("text", text="hello")
    await _age_window(world, hours=25)
    r = await world.post(messageType="whatsapp", body="Please call us.")
    assert r.status_code == 422
    assert "is closed since" in r.json()["detail"]


async def test_text_inside_the_window_is_sent_and_its_statuses_come_back(world: World) -> None:
    await world.inbound("text", text="Hi, what do I owe?")
    message = await world.send(body="You owe $1,234.50.")
    assert message["status"] == "queued" and message["whatsapp"] is None
    await settle(world.container)
    (sent,) = world.peer.messages
    assert sent.to == PHONE.lstrip("+") and sent.type == "text"
    assert sent.payload["text"]["body"] == message["body"]  # with the compliance footer
    assert message["body"].startswith("You owe $1,234.50.")
    assert await world.peer.deliver_callbacks(read=True) == 3
    report = await world.status_becomes(message["messageId"], "read")
    assert report["providerMessageId"] == sent.wamid
    # Meta's timestamps are whole seconds, so its events may sort before ours.
    provider = [e["event"] for e in report["events"] if e["source"] == "provider"]
    assert sorted(provider) == ["delivered", "read", "sent"]
    assert {"queued", "sending"} <= {e["event"] for e in report["events"]}


async def test_a_message_waiting_past_the_window_fails_at_send_time(world: World) -> None:
    await world.inbound("text", text="hello")
    later = (datetime.now(UTC) + timedelta(hours=25)).isoformat()
    r = await world.post(messageType="whatsapp", body="Later", sendAt=later)
    assert r.status_code == 422 and "whatsapp_window_closed" in r.text
    assert "before sendAt" in r.json()["detail"]
    message = await world.send(body="We got your message.")
    await _age_window(world, hours=24, minutes=1)  # it waited; the window closed meanwhile
    await settle(world.container)
    assert world.peer.messages == []
    r = await world.tenant.client.get(f"/api/messages/{message['messageId']}")
    assert r.json()["status"] == "failed"
    assert r.json()["errorCode"] == "whatsapp_window_closed"
    assert "send an approved template instead" in r.json()["errorDetail"]


# -- Meta's 131047 closes the window ----------------------------------------------------

TEMPLATE = {"name": "payment_reminder", "language": "en_US", "parameters": ["Pat", "$1,234.50"]}


async def _open_here_closed_at_meta(world: World) -> None:
    """Parley's window has an hour left; Meta's (the peer's) closed an hour ago."""
    await world.sync()
    world.peer.enforce_window = True
    await world.inbound("text", text="hi")
    await _age_window(world, hours=23)
    world.peer.last_inbound[PHONE.lstrip("+")] = datetime.now(UTC) - timedelta(hours=25)


async def _refused_free_form(world: World) -> dict[str, Any]:
    r = await world.post(messageType="whatsapp", body="Please call us about your balance.")
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    codes = {e["code"]: e["message"] for e in r.json()["errors"]}
    assert "error 131047" in codes["whatsapp_window_closed"], codes
    assert "reopens when the borrower writes again" in codes["whatsapp_window_closed"]
    assert "payment_reminder (en_US)" in codes["template_required"]
    return dict(r.json())


async def _closed_by_status_webhook(world: World) -> None:
    await _open_here_closed_at_meta(world)
    first = await world.send(body="We tried to reach you.")
    await settle(world.container)
    await world.peer.deliver_callbacks()
    report = await world.status_becomes(first["messageId"], "failed")
    (failed,) = [e for e in report["events"] if e["event"] == "failed"]
    assert failed["errorCode"] == "131047" and failed["reason"].startswith("outside_window:")


async def test_a_131047_status_webhook_closes_the_window_for_free_form(world: World) -> None:
    await _open_here_closed_at_meta(world)
    first = await world.send(body="We tried to reach you.")
    await settle(world.container)
    # Created while our window was open, dispatched after Meta's 131047 came back.
    waiting = await world.send(body="Are you there?")
    await world.peer.deliver_callbacks()
    report = await world.status_becomes(first["messageId"], "failed")
    (failed,) = [e for e in report["events"] if e["event"] == "failed"]
    assert failed["errorCode"] == "131047" and failed["reason"].startswith("outside_window:")

    await _refused_free_form(world)
    await settle(world.container)
    assert len(world.peer.messages) == 1  # neither free-form message reached Meta
    r = await world.tenant.client.get(f"/api/messages/{waiting['messageId']}")
    assert r.json()["status"] == "failed"
    assert r.json()["errorCode"] == "whatsapp_window_closed"
    assert "error 131047" in r.json()["errorDetail"]
    assert "send an approved template instead" in r.json()["errorDetail"]

    template = await world.send(whatsappTemplate=TEMPLATE)
    await settle(world.container)
    assert [m.type for m in world.peer.messages] == ["text", "template"]
    await world.peer.deliver_callbacks()
    await world.status_becomes(template["messageId"], "delivered")


async def test_a_131047_applied_on_its_own_closes_the_window_too(world: World) -> None:
    """The single-receipt path (a receipt re-applied once its message has its id)."""
    await _open_here_closed_at_meta(world)
    first = await world.send(body="We tried to reach you.")
    await settle(world.container)
    (sent,) = world.peer.messages
    body = orjson.dumps(world.peer.envelope(world.peer.status_value(sent, "failed")))
    (event,) = webhooks.parse(WebhookRequest("POST", world.base, {}, body))
    async with world.container.db.pool.connection() as conn, conn.transaction():
        assert await receipts.apply_event(conn, str(world.account_id), event)
    r = await world.tenant.client.get(f"/api/messages/{first['messageId']}")
    assert r.json()["status"] == "failed" and r.json()["errorCode"] == "131047"
    await _refused_free_form(world)


async def test_an_inbound_message_after_131047_reopens_the_window(world: World) -> None:
    await _closed_by_status_webhook(world)
    await _refused_free_form(world)
    await world.inbound("text", text="Sorry, I was away. What do I owe?")
    message = await world.send(body="You owe $1,234.50.")
    await settle(world.container)
    assert world.peer.messages[-1].type == "text"
    await world.peer.deliver_callbacks()
    await world.status_becomes(message["messageId"], "delivered")


async def test_a_synchronous_131047_closes_the_window_until_the_borrower_writes(
    world: World,
) -> None:
    await _open_here_closed_at_meta(world)
    world.peer.fail_next(400, 131047, "Re-engagement message")
    first = await world.send(body="We tried to reach you.")
    await settle(world.container)
    r = await world.tenant.client.get(f"/api/messages/{first['messageId']}")
    assert r.json()["status"] == "failed" and r.json()["errorCode"] == "131047"
    assert world.peer.messages == []  # refused, never accepted

    await _refused_free_form(world)
    await world.send(whatsappTemplate=TEMPLATE)
    await settle(world.container)
    assert [m.type for m in world.peer.messages] == ["template"]

    await world.inbound("text", text="Hi, I'm back.")
    again = await world.send(body="Thanks for writing back.")
    await settle(world.container)
    assert [m.type for m in world.peer.messages] == ["template", "text"]
    await world.peer.deliver_callbacks()
    await world.status_becomes(again["messageId"], "delivered")


# -- templates --------------------------------------------------------------------------


async def test_template_library_sync_pages_and_only_approved_templates_send(
    world: World,
) -> None:
    world.peer.templates = TEMPLATES + [
        PeerTemplate(f"bulk_{i:03}", "en_US", body=COMPLIANT) for i in range(120)
    ]
    library = await world.sync()
    assert len(world.peer.template_requests) == 2  # 100 per page, following the cursor
    by_key = {(t["name"], t["language"]): t for t in library["templates"]}
    assert len(by_key) == 125
    assert by_key[("payment_reminder", "en_US")]["bodyParameterCount"] == 2
    assert by_key[("old_promo", "en_US")]["status"] == "REJECTED"
    assert by_key[("old_promo", "en_US")]["rejectedReason"] == "INVALID_FORMAT"
    pending = await world.tenant.client.get(
        f"/api/provider-accounts/{world.account_id}/whatsapp-templates",
        params={"status": "PENDING"},
    )
    assert [t["name"] for t in pending.json()["templates"]] == ["settlement_offer"]
    closed = await world.post(messageType="whatsapp", body="Hello")
    assert closed.status_code == 422
    assert "bulk_019 (en_US) and 103 more" in closed.json()["detail"]  # 123 approved

    async def refused(template: dict[str, Any], field: str, code: str) -> None:
        r = await world.post(messageType="whatsapp", whatsappTemplate=template)
        assert r.status_code == 422, r.text
        assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [(field, code)]

    ref = {"name": "payment_reminder", "language": "en_US"}
    await refused({**ref, "parameters": ["Pat"]}, "whatsappTemplate.parameters", "parameter_count")
    await refused(
        {"name": "settlement_offer", "language": "en_US", "parameters": ["a", "b"]},
        "whatsappTemplate.name",
        "template_not_approved",
    )
    await refused(
        {"name": "nope", "language": "en_US"}, "whatsappTemplate.name", "unknown_template"
    )
    # An approved template without the disclosure and opt-out notice cannot be sent:
    # Parley cannot add them to an approved text.
    await refused(
        {"name": "short_nudge", "language": "en_US", "parameters": ["Pat"]},
        "whatsappTemplate",
        "template_noncompliant",
    )

    # No inbound message yet: a template is what may be sent outside the window.
    message = await world.send(whatsappTemplate={**ref, "parameters": ["Pat", "$1,234.50"]})
    assert message["body"].startswith("Hi Pat, your balance of $1,234.50 is due.")
    assert message["whatsapp"] == {**ref, "type": "template", "parameters": ["Pat", "$1,234.50"]}
    await settle(world.container)
    (sent,) = world.peer.messages
    assert sent.payload["template"] == {
        "name": "payment_reminder",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Pat"},
                    {"type": "text", "text": "$1,234.50"},
                ],
            }
        ],
    }
    await world.peer.deliver_callbacks()
    await world.status_becomes(message["messageId"], "delivered")


async def test_template_status_webhook_updates_the_library(world: World) -> None:
    await world.sync()
    assert await world.peer.send_template_status("payment_reminder", "en_US", "PAUSED") == 200
    assert await world.peer.send_template_status("settlement_offer", "en_US", "APPROVED") == 200
    library = await world.tenant.client.get(
        f"/api/provider-accounts/{world.account_id}/whatsapp-templates"
    )
    status = {(t["name"], t["language"]): t["status"] for t in library.json()["templates"]}
    assert status[("payment_reminder", "en_US")] == "PAUSED"
    assert status[("payment_reminder", "es_MX")] == "APPROVED"
    assert status[("settlement_offer", "en_US")] == "APPROVED"
    r = await world.post(
        messageType="whatsapp",
        whatsappTemplate={
            "name": "payment_reminder",
            "language": "en_US",
            "parameters": ["a", "b"],
        },
    )
    assert r.status_code == 422 and "PAUSED" in r.text
    await world.send(
        whatsappTemplate={"name": "settlement_offer", "language": "en_US", "parameters": ["a", "b"]}
    )


async def test_template_library_belongs_to_its_organization(
    world: World, other_tenant: Any
) -> None:
    await world.sync()
    path = f"/api/provider-accounts/{world.account_id}/whatsapp-templates"
    assert (await other_tenant.client.get(path)).status_code == 404
    assert (await other_tenant.client.post(path + "/sync")).status_code == 404


# -- media, quick replies, errors -------------------------------------------------------


def _document() -> dict[str, Any]:
    return {
        "type": "document",
        "url": "https://files.example.com/statements/2026-01.pdf",
        "filename": "statement.pdf",
    }


async def test_media_and_quick_replies_inside_the_window(world: World) -> None:
    await world.inbound("text", text="Send me my statement")
    doc = await world.send(body="Your January statement.", media=_document())
    buttons = await world.send(
        body="How would you like to proceed?", quickReplies=["Pay now", "Call me"]
    )
    image = await world.send(
        media={"type": "image", "url": "https://files.example.com/qr.png", "caption": "Scan to pay"}
    )
    await settle(world.container)
    sent = {m.type: m.payload for m in world.peer.messages}
    assert sent["document"]["document"]["link"] == _document()["url"]
    assert sent["document"]["document"]["filename"] == "statement.pdf"
    assert sent["document"]["document"]["caption"] == doc["body"]
    assert sent["image"]["image"]["caption"] == image["body"]
    assert image["body"].startswith("Scan to pay")
    interactive = sent["interactive"]["interactive"]
    assert interactive["body"]["text"] == buttons["body"]
    assert [b["reply"] for b in interactive["action"]["buttons"]] == [
        {"id": "qr_1", "title": "Pay now"},
        {"id": "qr_2", "title": "Call me"},
    ]

    async def refused(field: str, **body: Any) -> None:
        r = await world.post(**{"messageType": "whatsapp", **body})
        assert r.status_code == 422, r.text
        assert field in {e["field"] for e in r.json()["errors"]}, r.text

    await refused("quickReplies", body="Pick", quickReplies=["a", "b", "c", "d"])
    await refused("quickReplies.0", body="Pick", quickReplies=["This title is far too long"])
    await refused("quickReplies.1", body="Pick", quickReplies=["Yes", "yes"])
    for url in ("ftp://files/x.pdf", "https://[::1/x.pdf", "https://files/a b.pdf"):
        await refused("media.url", body="x", media={**_document(), "url": url})
    await refused("media.filename", body="x", media={**_document(), "type": "image"})
    await refused("quickReplies", body="x", media=_document(), quickReplies=["Pay now"])
    await refused("quickReplies", messageType="sms", body="Pick", quickReplies=["Yes"])
    assert (
        len(await rows(world.container, "SELECT id FROM messages WHERE direction = 'outbound'"))
        == 3
    )


async def test_undeliverable_number_fails_with_metas_code(world: World) -> None:
    world.peer.undeliverable_numbers = {PHONE.lstrip("+")}
    await world.inbound("text", text="hi")
    message = await world.send(body="Hello")
    await settle(world.container)
    await world.peer.deliver_callbacks()
    report = await world.status_becomes(message["messageId"], "failed")
    (failed,) = [e for e in report["events"] if e["event"] == "failed"]
    assert failed["errorCode"] == "131026" and failed["reason"].startswith("undeliverable:")


async def test_rate_limited_send_is_retried(world: World) -> None:
    await world.inbound("text", text="hi")
    world.peer.fail_next(429, 130429, "Rate limit hit")
    message = await world.send(body="Hello")

    async def sent() -> bool:
        await drain(world.container)
        r = await world.tenant.client.get(f"/api/messages/{message['messageId']}")
        return bool(r.json()["status"] == "sent")

    await wait_for(sent, timeout=15)
    report = await world.report(message["messageId"])
    deferred = [e for e in report["events"] if e["event"] == "deferred"]
    assert deferred and deferred[0]["errorCode"] == "130429"
    assert len(world.peer.messages) == 1


# -- sandbox parity -----------------------------------------------------------------------


async def test_window_applies_to_sandbox_whatsapp_accounts(tenant: Any, container: Any) -> None:
    data = await factories.borrower_with_case(container, tenant.organization_id)
    accounts = await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    case = data["case_id"]
    r = await tenant.client.post(
        f"/api/cases/{case}/messages", json={"messageType": "whatsapp", "body": "Hello"}
    )
    assert r.status_code == 422, r.text
    assert "has none synced" in r.text
    raw = orjson.dumps(
        {
            "id": "evt-1",
            "type": "inbound",
            "message_id": "sbx_in_1",
            "channel": "whatsapp",
            "from": PHONE,
            "to": "+18005550100",
            "body": "hi there",
        }
    )
    signature = "sha256=" + hmac.new(accounts["secret"].encode(), raw, hashlib.sha256).hexdigest()
    posted = await tenant.client.post(
        f"/webhooks/sandbox/{accounts['whatsapp']}",
        content=raw,
        headers={"Content-Type": "application/json", "X-Sandbox-Signature": signature},
    )
    assert posted.status_code == 200, posted.text
    await settle(container)
    r = await tenant.client.post(
        f"/api/cases/{case}/messages", json={"messageType": "whatsapp", "body": "Hello"}
    )
    assert r.status_code == 201, r.text


async def _age_window(world: World, *, hours: int, minutes: int = 0) -> None:
    async with world.container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE whatsapp_windows SET last_inbound_at = now() - make_interval("
            "hours => %s, mins => %s)",
            (hours, minutes),
        )


async def test_the_stored_whatsapp_payload_is_append_only(world: World) -> None:
    await world.inbound("text", text="hi")
    message = await world.send(body="Pick one", quickReplies=["Pay now"])
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        async with world.container.db.pool.connection() as conn:
            await conn.execute(
                'UPDATE messages SET whatsapp = \'{"type": "text"}\' WHERE id = %s',
                (message["messageId"],),
            )
    await settle(world.container)  # delivery-state updates still go through
    assert len(world.peer.messages) == 1
