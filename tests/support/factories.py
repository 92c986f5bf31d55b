"""Direct-to-database builders for test data (borrowers, cases, accounts, templates)."""

from __future__ import annotations

import secrets
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from parley.domain.channels import Channel
from parley.services import provider_accounts
from parley.services import templates as template_svc
from parley.storage.models import Borrower, Case, CaseBorrower, ContactPoint, User


async def borrower_with_case(
    container: Any,
    org_id: uuid.UUID,
    *,
    email: str = "pat.doe@example.com",
    phone: str = "+12025550123",
    first_name: str = "Pat",
    case_status: str = "open",
    do_not_contact: bool = False,
    with_agent: bool = True,
    locale: str = "en_US",
) -> dict[str, Any]:
    async with container.db.session() as s:
        agent = None
        if with_agent:
            agent = User(
                organization_id=org_id,
                email=f"agent-{uuid.uuid4().hex[:6]}@x.test",
                name="Alex Agent",
                role="agent",
            )
            s.add(agent)
            await s.flush()
        b = Borrower(
            organization_id=org_id,
            first_name=first_name,
            last_name="Doe",
            timezone="America/New_York",
            preferred_language=locale,
            address={"country": "US"},
            do_not_contact=do_not_contact,
        )
        s.add(b)
        await s.flush()
        cps = [
            ContactPoint(
                organization_id=org_id, borrower_id=b.id, kind="email", value=email, is_primary=True
            ),
            ContactPoint(
                organization_id=org_id, borrower_id=b.id, kind="phone", value=phone, is_primary=True
            ),
        ]
        s.add_all(cps)
        case = Case(
            organization_id=org_id,
            case_number=f"C-{uuid.uuid4().hex[:8]}",
            creditor="Harbor Bank",
            original_amount=Decimal("1500.00"),
            outstanding_amount=Decimal("1234.50"),
            currency="USD",
            due_date=date(2026, 1, 15),
            status=case_status,
            assigned_agent_id=agent.id if agent else None,
        )
        s.add(case)
        await s.flush()
        s.add(CaseBorrower(case_id=case.id, borrower_id=b.id, organization_id=org_id))
        await s.commit()
        return {
            "borrower_id": b.id,
            "case_id": case.id,
            "email": email,
            "phone": phone,
            "agent_id": agent.id if agent else None,
        }


async def account(
    container: Any,
    org_id: uuid.UUID,
    provider: str,
    channel: Channel,
    *,
    config: dict[str, Any] | None = None,
    secrets_: dict[str, Any] | None = None,
    rate: float | None = None,
    burst: int | None = None,
    name: str | None = None,
) -> uuid.UUID:
    async with container.db.session() as s:
        acc = await provider_accounts.create(
            s,
            org_id,
            name=name or f"{provider}-{channel.value}-{uuid.uuid4().hex[:4]}",
            provider=provider,
            channel=channel,
            config=config or {},
            secrets=secrets_ or {},
            is_default=True,
            rate_per_second=rate,
            burst=burst,
        )
        return acc.id


async def sandbox_accounts(container: Any, org_id: uuid.UUID, **config: Any) -> dict[str, Any]:
    secret = secrets.token_urlsafe(16)
    out = {}
    for ch in (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP):
        out[ch.value] = await account(
            container,
            org_id,
            "sandbox",
            ch,
            config={
                **(
                    {"from_address": "c@example.org"}
                    if ch is Channel.EMAIL
                    else {"from_number": "+18005550100"}
                ),
                **config,
            },
            secrets_={"signing_secret": secret},
        )
    out["secret"] = secret
    return out


async def template(
    container: Any,
    org_id: uuid.UUID,
    key: str,
    channel: Channel,
    body: str,
    subject: str | None = None,
    html: str | None = None,
) -> None:
    async with container.db.session() as s:
        await template_svc.create(
            s,
            org_id,
            key=key,
            name=key,
            channel=channel,
            parts=template_svc.TemplateParts(subject, body, html),
        )


async def twilio_account(container: Any, org_id: uuid.UUID, peer: Any) -> uuid.UUID:
    """A Twilio SMS account wired to a local `TwilioApiPeer` (its default credentials)."""
    from parley.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

    return await account(
        container,
        org_id,
        "twilio",
        Channel.SMS,
        config={
            "base_url": peer.base_url,
            "account_sid": DEFAULT_ACCOUNT_SID,
            "from_number": "+18005550100",
        },
        secrets_={"auth_token": DEFAULT_AUTH_TOKEN},
    )


async def open_whatsapp_window(container: Any, org_id: uuid.UUID, phone: str) -> None:
    """The borrower at `phone` wrote on WhatsApp just now (free-form replies allowed)."""
    from parley.services import whatsapp_window

    now = container.clock()
    async with container.db.pool.connection() as conn:
        await whatsapp_window.record_inbound(conn, org_id, phone, now, None, now)
