"""Stored webhook receipts can be replayed: an event that arrived before we knew the
provider's id is applied once the id is known, and replays never duplicate events."""

from __future__ import annotations

from twilio.request_validator import RequestValidator

from parley.domain.channels import Channel
from parley.inbox.receipts import replay
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.support import factories


async def test_replay_applies_late_matching_events_once(tenant, container):
    data = await factories.borrower_with_case(container, tenant.organization_id)
    account = await factories.account(
        container,
        tenant.organization_id,
        "twilio",
        Channel.SMS,
        config={
            "base_url": "http://127.0.0.1:9",
            "account_sid": DEFAULT_ACCOUNT_SID,
            "from_number": "+18005550100",
        },
        secrets_={"auth_token": DEFAULT_AUTH_TOKEN},
    )
    r = await tenant.client.post(
        f"/api/cases/{data['case_id']}/messages", json={"messageType": "sms", "body": "Hi"}
    )
    mid = r.json()["messageId"]
    sid = "SM" + "ab" * 16
    path = f"/webhooks/twilio/{account}"
    url = container.settings.base_url + path
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": DEFAULT_ACCOUNT_SID}
    signature = RequestValidator(DEFAULT_AUTH_TOKEN).compute_signature(url, params)
    hook = await tenant.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
    assert hook.status_code == 200
    # The callback beat our bookkeeping: no message carries that id yet.
    assert (await tenant.client.get(f"/api/messages/{mid}")).json()["status"] == "queued"
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "UPDATE messages SET status = 'sent', provider_message_id = %s WHERE id = %s",
            (sid, mid),
        )
    assert await replay(container, account_id=str(account)) == (1, 0)
    assert await replay(container) == (1, 0)  # again: nothing new, nothing duplicated
    report = (await tenant.client.get(f"/api/messages/{mid}/delivery-report")).json()
    assert report["status"] == "delivered"
    assert [e["event"] for e in report["events"] if e["source"] == "provider"] == ["delivered"]
    assert await replay(container, account_id=str(account), since=container.clock()) == (0, 0)
