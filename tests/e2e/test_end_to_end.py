"""API -> worker -> real protocol peers -> signed callbacks -> delivery report.

Email goes to a real SMTP server (aiosmtpd); SMS goes to a local server speaking the
Twilio Messages API, and its status callbacks are signed with the official `twilio`
package's RequestValidator and posted (shuffled, duplicated) to our webhook endpoint.
"""

from __future__ import annotations

import email
import random
from email import policy

import aiohttp
from twilio.request_validator import RequestValidator

from parley.domain.channels import Channel
from parley.peers.smtp_sink import PERMFAIL, TEMPFAIL, SmtpSink
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, TwilioApiPeer
from tests.support import factories
from tests.support.live import drain, live_api, wait_for


async def _message(tenant, mid):
    return (await tenant.client.get(f"/api/messages/{mid}")).json()


async def test_email_through_a_real_smtp_server(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.template(
        container,
        tenant.organization_id,
        "notice",
        Channel.EMAIL,
        "Dear #borrower.first_name, you owe #case.outstanding_amount.",
        subject="Notice for case #case.number",
        html="<p>Dear #borrower.first_name &amp; co</p>",
    )
    async with SmtpSink() as sink:
        await factories.account(
            container,
            tenant.organization_id,
            "smtp",
            Channel.EMAIL,
            config={
                "host": "127.0.0.1",
                "port": sink.port,
                "from_address": "collections@acme.test",
                "from_name": "Acme Collections",
            },
        )
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "email", "templateId": "notice", "cc": ["Creditor@Example.com"]},
        )
        assert r.status_code == 201, r.text
        mid = r.json()["messageId"]
        await drain(container)
        msg = await _message(tenant, mid)
        assert msg["status"] == "sent", msg
        received = sink.messages
        assert len(received) == 1
        got = received[0]
        assert got.message_id == msg["providerMessageId"] == f"<{mid}@acme.test>"
        # The domain is lower-cased; the local part is kept as given (RFC 5321).
        assert set(got.rcpt_tos) == {data["email"], "Creditor@example.com"}
        parsed = email.message_from_bytes(got.data, policy=policy.default)
        assert parsed["Subject"].startswith("Notice for case C-")
        assert parsed["From"] == "Acme Collections <collections@acme.test>"
        text = parsed.get_body(("plain",)).get_content()
        assert "Dear Pat, you owe $1,234.50." in text
        assert "Dear Pat &amp; co" in parsed.get_body(("html",)).get_content()


async def test_smtp_tempfail_is_retried_and_permfail_is_terminal(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with SmtpSink() as sink:
        await factories.account(
            container,
            tenant.organization_id,
            "smtp",
            Channel.EMAIL,
            config={"host": "127.0.0.1", "port": sink.port, "from_address": "c@acme.test"},
        )
        sink.fail_next(TEMPFAIL)
        r1 = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "email", "subject": "One", "body": "Hello"},
        )
        await drain(container)
        first = await _message(tenant, r1.json()["messageId"])
        assert first["status"] == "queued" and first["errorCode"] == "451"

        async def retried():
            await drain(container)
            m = await _message(tenant, first["messageId"])
            return m if m["status"] == "sent" else None

        done = await wait_for(retried, timeout=15)
        sink.fail_next(PERMFAIL)
        r2 = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "email", "subject": "Two", "body": "Hello"},
        )
        await drain(container)
        second = await _message(tenant, r2.json()["messageId"])
        assert second["status"] == "failed" and second["errorCode"] == "550"
        report = (
            await tenant.client.get(f"/api/messages/{first['messageId']}/delivery-report")
        ).json()
        assert [e["event"] for e in report["events"]] == [
            "queued",
            "sending",
            "deferred",
            "sending",
            "sent",
        ]
        assert sink.accepted_count(done["providerMessageId"]) == 1


def _signed(url: str, params: dict[str, str]) -> dict[str, str]:
    return {
        "X-Twilio-Signature": RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(url, params)
    }


async def test_sms_through_twilio_api_with_signed_shuffled_callbacks(tenant, container):
    cases = [
        await factories.borrower_with_case(
            container, tenant.organization_id, email=f"b{i}@example.com", phone=f"+1202555{i:04d}"
        )
        for i in range(5)
    ]
    async with TwilioApiPeer() as peer, live_api(container) as base:
        account_id = await factories.twilio_account(container, tenant.organization_id, peer)
        ids = []
        for data in cases:
            r = await tenant.client.post(
                f"/api/cases/{data['case_id']}/messages",
                json={"messageType": "sms", "body": "Your balance is due. Reply STOP to opt out."},
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["messageId"])
        await drain(container)
        msgs = [await _message(tenant, mid) for mid in ids]
        assert all(
            m["status"] == "sent" and m["providerMessageId"].startswith("SM") for m in msgs
        ), msgs
        callback_url = f"{base}/webhooks/twilio/{account_id}"
        assert {m.status_callback for m in peer.messages} == {callback_url}
        # Each message: sent then delivered, posted shuffled with every callback twice.
        callbacks = []
        for m in msgs:
            for status in ("sent", "delivered"):
                callbacks.append(
                    {
                        "MessageSid": m["providerMessageId"],
                        "MessageStatus": status,
                        "AccountSid": DEFAULT_ACCOUNT_SID,
                        "To": m["to"][0],
                        "From": "+18005550100",
                        "ApiVersion": "2010-04-01",
                    }
                )
        callbacks = callbacks * 2
        random.Random(3).shuffle(callbacks)
        async with aiohttp.ClientSession() as http:
            for params in callbacks:
                async with http.post(
                    callback_url, data=params, headers=_signed(callback_url, params)
                ) as resp:
                    assert resp.status == 200, await resp.text()
            forged = dict(callbacks[0], MessageStatus="failed")
            async with http.post(
                callback_url, data=forged, headers=_signed(callback_url, callbacks[0])
            ) as resp:
                assert resp.status == 403
        for mid in ids:
            report = (await tenant.client.get(f"/api/messages/{mid}/delivery-report")).json()
            assert report["status"] == "delivered"
            provider_events = [e["event"] for e in report["events"] if e["source"] == "provider"]
            assert sorted(provider_events) == ["delivered", "sent"]  # duplicates absorbed
        async with container.db.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM webhook_receipts")
            assert (await cur.fetchone())[0] == 10  # 20 posts, 10 distinct, forged not kept


async def test_twilio_transient_and_permanent_errors(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    async with TwilioApiPeer() as peer:
        await factories.twilio_account(container, tenant.organization_id, peer)
        peer.fail_next(429, retry_after=0.2)
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hello"}
        )
        await drain(container)
        mid = r.json()["messageId"]
        assert (await _message(tenant, mid))["status"] == "queued"

        async def sent():
            await drain(container)
            m = await _message(tenant, mid)
            return m if m["status"] == "sent" else None

        await wait_for(sent, timeout=15)
        peer.fail_next(400, code=21610, message="Attempt to send to unsubscribed recipient")
        r2 = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "sms", "body": "Hello again"},
        )
        await drain(container)
        m2 = await _message(tenant, r2.json()["messageId"])
        assert m2["status"] == "failed" and m2["errorCode"] == "21610"
        assert len(peer.messages) == 1
