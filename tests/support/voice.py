"""Helpers for click-to-call tests: a Twilio voice account on a local `TwilioVoicePeer`
or a sandbox voice account (its simulated network), agents with tokens and presence,
and waiting for a call's status."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from parley.domain.channels import Channel
from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.support import factories
from tests.support.live import wait_for

CALLER_ID = "+18005550100"


async def voice_account(container: Any, org_id: uuid.UUID, peer: Any) -> uuid.UUID:
    return await factories.account(
        container,
        org_id,
        "twilio",
        Channel.VOICE,
        config={
            "base_url": peer.base_url,
            "account_sid": DEFAULT_ACCOUNT_SID,
            "from_number": CALLER_ID,
        },
        secrets_={"auth_token": DEFAULT_AUTH_TOKEN},
    )


async def sandbox_voice_account(container: Any, org_id: uuid.UUID, **config: Any) -> uuid.UUID:
    """A sandbox voice account; phones ring briefly and stay until hung up unless
    `config` says otherwise."""
    return await factories.account(
        container,
        org_id,
        "sandbox",
        Channel.VOICE,
        config={
            "from_number": CALLER_ID,
            "ring_seconds": 0.05,
            "talk_seconds": None,
            "voicemail_seconds": 0.05,
            **config,
        },
        secrets_={"signing_secret": "sandbox-voice-test-secret"},
    )


async def sandbox_network(container: Any, account_id: uuid.UUID) -> Any:
    """The account's simulated network (its calls and conferences), as the API uses it."""
    row = await container.providers.account(str(account_id))
    provider = await container.providers.get(row)
    return provider.network


async def agent_client(
    container: Any, tenant: Any, name: str, role: str = "agent"
) -> tuple[uuid.UUID, httpx.AsyncClient]:
    """Another user of the tenant's organization, with a client using their token."""
    from parley.services.auth import Role, issue_token
    from parley.storage.models import User

    async with container.db.session() as session:
        user = User(
            organization_id=tenant.organization_id,
            email=f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.test",
            name=name,
            role=role,
        )
        session.add(user)
        await session.flush()
        token = await issue_token(
            session,
            organization_id=tenant.organization_id,
            role=Role(role),
            name=name,
            user_id=user.id,
        )
        await session.commit()
    from parley.api.app import create_app

    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {token}"},
    )
    return user.id, client


async def available(client: httpx.AsyncClient, endpoint: str) -> dict[str, Any]:
    r = await client.put(
        "/api/agents/me/presence", json={"status": "available", "endpoint": endpoint}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def presence_of(client: httpx.AsyncClient, agent_id: uuid.UUID | str) -> str:
    r = await client.get("/api/agents/presence")
    assert r.status_code == 200, r.text
    (found,) = [a for a in r.json()["agents"] if a["agentId"] == str(agent_id)]
    return str(found["status"])


async def call_json(client: httpx.AsyncClient, call_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/calls/{call_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def until(
    client: httpx.AsyncClient, call_id: str, status: str, **fields: Any
) -> dict[str, Any]:
    """Wait until the call has `status` (and the given field predicates hold)."""

    async def check() -> dict[str, Any] | None:
        call = await call_json(client, call_id)
        if call["status"] != status:
            return None
        for name, predicate in fields.items():
            if not predicate(call[name]):
                return None
        return call

    result: dict[str, Any] = await eventually(check)
    return result


async def eventually(predicate: Any) -> Any:
    """`wait_for` with room for a loaded machine (a bound on waiting, not a timing claim)."""
    return await wait_for(predicate, timeout=45.0)
