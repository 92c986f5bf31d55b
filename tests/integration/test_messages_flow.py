"""Sending through the API and a worker to the sandbox, with its callbacks coming back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from parley.domain.channels import Channel
from tests.support import factories
from tests.support.live import drain, live_api, wait_for


async def _setup(tenant, container, **sandbox_config):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    await factories.sandbox_accounts(
        container,
        tenant.organization_id,
        sent_delay_seconds=0.05,
        delivery_delay_seconds=0.1,
        read_delay_seconds=None,
        **sandbox_config,
    )
    return data


async def _report(tenant, message_id):
    r = await tenant.client.get(f"/api/messages/{message_id}/delivery-report")
    assert r.status_code == 200, r.text
    return r.json()


async def test_sms_and_email_reach_delivered_through_the_sandbox(tenant, container):
    data = await _setup(tenant, container)
    await factories.template(
        container,
        tenant.organization_id,
        "remind",
        Channel.SMS,
        "Hi #borrower.first_name, #case.outstanding_amount is due "
        "#case.due_date. Reply STOP to opt out.",
    )
    await factories.template(
        container,
        tenant.organization_id,
        "remind-mail",
        Channel.EMAIL,
        "Dear {{ name }}, you owe #case.outstanding_amount.",
        subject="Case #case.number",
    )
    async with live_api(container):
        sms = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "sms", "templateId": "remind"},
        )
        mail = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={
                "messageType": "email",
                "templateId": "remind-mail",
                "variables": {"name": "Pat"},
            },
        )
        assert sms.status_code == 201, sms.text
        assert mail.status_code == 201, mail.text
        sms, mail = sms.json(), mail.json()
        assert sms["status"] == "queued" and sms["to"] == [data["phone"]]
        # The first communication on the debt gets the full debt-collector disclosure
        # (FDCPA 807(11)); the template already carries the opt-out notice.
        assert sms["body"] == (
            "Hi Pat, $1,234.50 is due Jan 15, 2026. Reply STOP to opt out.\n"
            "This is an attempt to collect a debt and any information obtained will be used "
            "for that purpose. This communication is from a debt collector."
        )
        assert sms["encoding"] == "GSM-7" and sms["segments"] == 2
        assert mail["subject"].startswith("Case C-")
        assert mail["templateId"] == "remind-mail" and mail["templateVersion"] == 1
        await drain(container)

        async def delivered(mid):
            rep = await _report(tenant, mid)
            return rep if rep["status"] == "delivered" else None

        for mid in (sms["messageId"], mail["messageId"]):
            rep = await wait_for(lambda mid=mid: delivered(mid))
            kinds = [e["event"] for e in rep["events"]]
            assert kinds[:3] == ["queued", "sending", "sent"], kinds
            assert "delivered" in kinds
            assert rep["providerMessageId"].startswith("sbx_")


async def test_provider_failure_is_recorded_with_its_code(tenant, container):
    data = await _setup(tenant, container, failure_rate=1.0, seed=1)
    async with live_api(container):
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "sms", "body": "Hello. Reply STOP to opt out."},
        )
        mid = r.json()["messageId"]
        await drain(container)

        async def failed():
            rep = await _report(tenant, mid)
            return rep if rep["status"] == "failed" else None

        rep = await wait_for(failed)
        assert rep["events"][-1]["errorCode"]


async def test_cancel_a_scheduled_message_and_it_is_never_sent(tenant, container):
    data = await _setup(tenant, container)
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages",
        json={"messageType": "sms", "body": "Later", "sendAt": later},
    )
    assert r.status_code == 201
    msg = r.json()
    assert msg["status"] == "scheduled" and msg["scheduledAt"]
    c = await tenant.client.post(f"/api/messages/{msg['messageId']}/cancel")
    assert c.status_code == 200 and c.json()["status"] == "cancelled"
    again = await tenant.client.post(f"/api/messages/{msg['messageId']}/cancel")
    assert again.status_code == 409
    # Even when its job runs, the message stays cancelled and nothing is sent.
    async with container.db.pool.connection() as conn:
        await conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now()")
    await drain(container)
    rep = await _report(tenant, msg["messageId"])
    assert rep["status"] == "cancelled"
    assert [e["event"] for e in rep["events"]] == ["scheduled", "cancelled"]


async def test_sent_message_cannot_be_cancelled(tenant, container):
    data = await _setup(tenant, container, callbacks=False)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Now"}
    )
    await drain(container)
    mid = r.json()["messageId"]
    assert (await tenant.client.get(f"/api/messages/{mid}")).json()["status"] == "sent"
    assert (await tenant.client.post(f"/api/messages/{mid}/cancel")).status_code == 409


async def test_do_not_contact_borrower_is_blocked_and_never_sent(tenant, container):
    data = await factories.borrower_with_case(
        container, tenant.organization_id, do_not_contact=True
    )
    await factories.sandbox_accounts(container, tenant.organization_id, callbacks=False)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Pay now"}
    )
    assert r.status_code == 201 and r.json()["status"] == "blocked"
    comp = await tenant.client.get(f"/api/messages/{r.json()['messageId']}/compliance")
    decision = comp.json()["decisions"][0]
    assert decision["outcome"] == "block"
    assert any(v["reason"] == "borrower_do_not_contact" for v in decision["rules"])
    async with container.db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs")
        assert (await cur.fetchone())[0] == 0


async def test_gate_runs_again_at_send_time(tenant, container):
    """Allowed at enqueue, the borrower says stop before the worker runs: blocked."""
    data = await _setup(tenant, container, callbacks=False)
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Pay now"}
    )
    mid = r.json()["messageId"]
    async with container.db.pool.connection() as conn:
        await conn.execute("UPDATE borrowers SET do_not_contact = true")
    await drain(container)
    msg = (await tenant.client.get(f"/api/messages/{mid}")).json()
    assert msg["status"] == "blocked"
    stages = [
        d["stage"] + ":" + d["outcome"]
        for d in (await tenant.client.get(f"/api/messages/{mid}/compliance")).json()["decisions"]
    ]
    assert stages == ["enqueue:allow", "send:block"]


async def test_threads_and_listing(tenant, container):
    data = await _setup(tenant, container, callbacks=False)
    ids = []
    for i in range(3):
        r = await tenant.client.post(
            f"/api/cases/{data['case_id']}/messages",
            json={"messageType": "email", "subject": f"Re: Payment {i}", "body": "Hello"},
        )
        ids.append(r.json()["messageId"])
    await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hello"}
    )
    threads = (await tenant.client.get(f"/api/cases/{data['case_id']}/threads")).json()
    by_channel = {t["channel"]: t for t in threads["threads"]}
    assert by_channel["email"]["messageCount"] == 3
    assert by_channel["email"]["subject"] == "Payment 0"
    tm = (
        await tenant.client.get(f"/api/threads/{by_channel['email']['threadId']}/messages")
    ).json()
    assert [m["messageId"] for m in tm["messages"]] == ids
    page1 = (
        await tenant.client.get(f"/api/cases/{data['case_id']}/messages?type=email&limit=2")
    ).json()
    assert page1["totalCount"] == 3 and len(page1["messages"]) == 2
    page2 = (
        await tenant.client.get(
            f"/api/cases/{data['case_id']}/messages?type=email&limit=2&cursor={page1['nextCursor']}"
        )
    ).json()
    seen = [m["messageId"] for m in page1["messages"] + page2["messages"]]
    assert sorted(seen) == sorted(ids) and page2["nextCursor"] is None
    inbound = (
        await tenant.client.get(f"/api/cases/{data['case_id']}/messages?direction=inbound")
    ).json()
    assert inbound["totalCount"] == 0


async def test_list_filters_refuse_unknown_values(tenant, container):
    data = await _setup(tenant, container)
    url = f"/api/cases/{data['case_id']}/messages"
    await tenant.client.post(url, json={"messageType": "sms", "body": "Hello"})
    for query, field in (("status=bogus", "status"), ("status=queued,nope", "status")):
        r = await tenant.client.get(f"{url}?{query}")
        assert r.status_code == 422, (query, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        (error,) = r.json()["errors"]
        assert error["field"] == field and "queued" in error["message"], error
    for query in ("type=fax", "direction=sideways"):
        r = await tenant.client.get(f"{url}?{query}")
        assert r.status_code == 422, (query, r.text)
    ok = (await tenant.client.get(f"{url}?status=queued,sent")).json()
    assert ok["totalCount"] == 1
