"""Twilio status callbacks for the webhook ingestion tests: an account, a message already
`sent` with a provider id, a signed callback for it, and posting it through the API."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from parley.channels.base import WebhookRequest
from parley.channels.twilio import kit
from parley.domain.channels import Channel
from tests.support import factories


async def twilio_account(container: Any, tenant: Any, token: str) -> str:
    account = await factories.account(
        container,
        tenant.organization_id,
        "twilio",
        Channel.SMS,
        config={**kit.CONFIG, "base_url": "http://127.0.0.1:9"},
        secrets_={"auth_token": token},
    )
    return str(account)


async def sent_message(container: Any, tenant: Any, account: str, provider_id: str) -> str:
    """A new borrower and case with an outbound SMS `sent` as `provider_id`; its id."""
    data = await factories.borrower_with_case(
        container, tenant.organization_id, email=f"{uuid.uuid4().hex[:12]}@example.com"
    )
    message_id = str(uuid.uuid4())
    async with container.db.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO messages (id, organization_id, case_id, borrower_id, channel, "
            "direction, status, priority, to_address, cc, bcc, body, provider_account_id, "
            "provider, provider_message_id, attempts, status_changed_at, created_at) "
            "VALUES (%s, %s, %s, %s, 'sms', 'outbound', 'sent', 'normal', '+12025550123', "
            "'[]', '[]', 'Hello', %s, 'twilio', %s, 1, now(), now())",
            (
                message_id,
                tenant.organization_id,
                data["case_id"],
                data["borrower_id"],
                account,
                provider_id,
            ),
        )
    return message_id


def status_callback(
    container: Any, account: str, sid: str, status: str, token: str
) -> WebhookRequest:
    body = urlencode(
        {"MessageSid": sid, "MessageStatus": status, "AccountSid": kit.CONFIG["account_sid"]}
    ).encode()
    request = WebhookRequest(
        method="POST",
        url=f"{container.settings.base_url}/webhooks/twilio/{account}",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=body,
    )
    return kit.sign(request, {"auth_token": token})


async def post(tenant: Any, request: WebhookRequest) -> Any:
    """POST `request` to our webhook route through the tenant's API client."""
    path = request.url.split("://", 1)[1].split("/", 1)[1]
    return await tenant.client.post("/" + path, content=request.body, headers=dict(request.headers))
