"""The webhook route's contract, for every registered provider and every captured fixture.

`tests/contract/test_provider_contract.py` holds each provider to the contract in
isolation; this suite posts the same fixtures through `POST /webhooks/{provider}/{account}`
against a real database, the way the provider would call us:

- signed as the provider signs (the kit's `sign`, over the URL the route reconstructs):
  200, one stored receipt, every parsed status event stored once on the message carrying
  its provider id; the same body posted again is a duplicate (still one receipt, no new
  event, no second inbound job);
- unsigned, or signed with another secret: 401/403 with a problem body that does not
  echo the payload, nothing stored, and a log line holding neither payload nor secret;
- a provider that receives no webhooks rejects every request the same way.

No per-provider code: the registry names the providers, the kit signs, the fixture folder
supplies the requests.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from parley.channels import registry
from parley.channels.base import DeliveryEvent, InboundMessage, WebhookRequest
from parley.channels.testing import WebhookFixture, load_kit
from parley.domain.channels import Channel
from tests.support import factories

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"
NAMES = registry.names()
# Headers a client sets for itself; the rest of a captured request is replayed as is.
_TRANSPORT_HEADERS = {"host", "content-length", "connection", "accept-encoding"}


def _fixture_cases() -> list[Any]:
    return [
        pytest.param(name, path, id=f"{name}-{path.stem}")
        for name in NAMES
        for path in sorted((FIXTURES / name).glob("*.json"))
    ]


async def _account(container: Any, tenant: Any, name: str, secrets: dict[str, str]) -> str:
    kit = load_kit(name)
    channel = sorted(registry.spec(name).channels)[0]
    account = await factories.account(
        container,
        tenant.organization_id,
        name,
        Channel(channel),
        config=dict(kit.CONFIG),
        # The fixture names the secrets its signature needs; the kit completes the rest
        # an account of that provider requires.
        secrets_={**kit.SECRETS, **secrets},
    )
    return str(account)


def _addressed(request: WebhookRequest, base_url: str, name: str, account: str) -> WebhookRequest:
    """The captured request as it would reach this account's endpoint on this server."""
    query = urlsplit(request.url).query
    path = f"/webhooks/{name}/{account}" + (f"?{query}" if query else "")
    headers = {k: v for k, v in request.headers.items() if k not in _TRANSPORT_HEADERS}
    return replace(request, url=base_url.rstrip("/") + path, headers=headers)


async def _post(tenant: Any, request: WebhookRequest) -> Any:
    split = urlsplit(request.url)
    target = split.path + (f"?{split.query}" if split.query else "")
    # The provider calls without our API token.
    headers = {**request.headers, "authorization": ""}
    return await tenant.client.post(target, content=request.body, headers=headers)


async def _count(container: Any, sql: str, *params: Any) -> int:
    async with container.db.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _messages_for(
    container: Any, tenant: Any, account: str, channel: Channel, provider_ids: set[str], name: str
) -> dict[str, str]:
    """A sent message per provider id, so the fixture's status events have a target."""
    data = await factories.borrower_with_case(container, tenant.organization_id)
    out: dict[str, str] = {}
    async with container.db.pool.connection() as conn:
        for provider_id in sorted(provider_ids):
            message_id = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO messages (id, organization_id, case_id, borrower_id, channel, "
                "direction, status, priority, to_address, cc, bcc, body, provider_account_id, "
                "provider, provider_message_id, attempts, status_changed_at, created_at) "
                "VALUES (%s, %s, %s, %s, %s, 'outbound', 'sent', 'normal', '+15558675310', "
                "'[]', '[]', 'Hello', %s, %s, %s, 1, now(), now())",
                (
                    message_id,
                    tenant.organization_id,
                    data["case_id"],
                    data["borrower_id"],
                    channel.value,
                    account,
                    name,
                    provider_id,
                ),
            )
            out[provider_id] = message_id
    return out


def _payload_markers(fixture: WebhookFixture) -> list[str]:
    """Strings from the payload that a rejection must not repeat back or log."""
    markers = [
        str(e["provider_message_id"]) for e in fixture.expected if "provider_message_id" in e
    ]
    markers += [str(e["body"]) for e in fixture.expected if e.get("body")]
    text = fixture.request.body.decode("utf-8", "replace")
    if len(text) >= 16:
        markers.append(text)
    return [m for m in markers if len(m) >= 6]


# -- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "path"), _fixture_cases())
async def test_signed_fixture_is_stored_once_and_its_events_applied_once(
    name: str, path: Path, container: Any, tenant: Any
) -> None:
    kit = load_kit(name)
    fixture = WebhookFixture.load(path)
    secrets = dict(fixture.secrets)
    account = await _account(container, tenant, name, secrets)
    addressed = _addressed(fixture.request, container.settings.base_url, name, account)
    request = kit.sign(addressed, secrets)
    items = kit.provider(secrets).parse_webhook(request)
    events = [i for i in items if isinstance(i, DeliveryEvent)]
    channel = Channel(sorted(registry.spec(name).channels)[0])
    messages = await _messages_for(
        container, tenant, account, channel, {e.provider_message_id for e in events}, name
    )

    first = await _post(tenant, request)
    assert first.status_code == 200, first.text
    assert first.json() == {"ok": True, "duplicate": False}
    again = await _post(tenant, request)
    assert again.status_code == 200, again.text
    assert again.json() == {"ok": True, "duplicate": True}

    receipts = "SELECT count(*) FROM webhook_receipts WHERE provider_account_id = %s"
    assert await _count(container, receipts, account) == 1
    for provider_id, message_id in messages.items():
        expected = {e.provider_event_id for e in events if e.provider_message_id == provider_id}
        stored = await _count(
            container,
            "SELECT count(*) FROM message_events WHERE message_id = %s AND source = 'provider'",
            message_id,
        )
        assert stored == len(expected), f"{path.name}: events for {provider_id}"
    inbound_jobs = await _count(
        container,
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'parley:process_inbound'",
    )
    assert inbound_jobs == (1 if any(isinstance(i, InboundMessage) for i in items) else 0)


# -- rejected --------------------------------------------------------------------------------


def _rejection_cases() -> list[Any]:
    cases = []
    for name in NAMES:
        paths = sorted((FIXTURES / name).glob("*.json"))
        if not paths:
            # A provider without webhooks must reject even a well-formed request.
            cases.append(pytest.param(name, None, "unsigned", id=f"{name}-generic-unsigned"))
        for path in paths:
            for how in ("unsigned", "wrong_secret"):
                cases.append(pytest.param(name, path, how, id=f"{name}-{path.stem}-{how}"))
    return cases


def _generic(name: str) -> WebhookFixture:
    body = b'{"message_id":"generic-provider-id-123","status":"delivered"}'
    request = WebhookRequest(
        method="POST",
        url=f"https://parley.example.com/webhooks/{name}/acct",
        headers={"content-type": "application/json"},
        body=body,
    )
    secrets = dict(load_kit(name).SECRETS)
    expected = [{"type": "delivered", "provider_message_id": "generic-provider-id-123"}]
    return WebhookFixture(Path("generic.json"), "generic", request, secrets, expected)


@pytest.mark.parametrize(("name", "path", "how"), _rejection_cases())
async def test_bad_signature_is_refused_without_echo_or_log_of_the_payload(
    name: str,
    path: Path | None,
    how: str,
    container: Any,
    tenant: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit = load_kit(name)
    fixture = WebhookFixture.load(path) if path else _generic(name)
    secrets = dict(fixture.secrets)
    account = await _account(container, tenant, name, secrets)
    addressed = _addressed(fixture.request, container.settings.base_url, name, account)
    wrong = {key: value + "-wrong" for key, value in secrets.items()}
    if how == "unsigned":
        keep = {"content-type", "user-agent"}
        request = replace(
            addressed, headers={k: v for k, v in addressed.headers.items() if k in keep}
        )
    else:
        request = kit.sign(addressed, wrong)

    with caplog.at_level(logging.DEBUG):
        response = await _post(tenant, request)

    assert response.status_code in (401, 403), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == response.status_code
    for marker in _payload_markers(fixture):
        assert marker not in response.text, "the problem body echoes the payload"
        assert marker not in caplog.text, "the log holds the payload"
    for secret in (*secrets.values(), *wrong.values()):
        assert secret not in response.text
        assert secret not in caplog.text, "the log holds a secret"
    rejected = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert rejected, "a refused webhook is logged"
    assert account in rejected[0].getMessage()
    assert await _count(container, "SELECT count(*) FROM webhook_receipts") == 0
    # Control: the same request signed with the account's secret is accepted (providers
    # that receive webhooks) -- the refusal above was the signature's doing.
    if kit.HAS_WEBHOOKS:
        accepted = await _post(tenant, kit.sign(addressed, secrets))
        assert accepted.status_code == 200, accepted.text
