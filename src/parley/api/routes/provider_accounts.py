"""/api/provider-accounts: configure how an organization reaches each provider; on
sandbox accounts, play the borrower (``simulate-inbound``, ``simulate-inbound-call``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import Field

from parley.api.deps import AdminDep, ContainerDep, SessionDep, SupervisorDep
from parley.api.schemas.common import CamelModel, RequestModel
from parley.domain.channels import Channel
from parley.services import provider_accounts as svc
from parley.services import voice_calls, voice_events
from parley.services.errors import Invalid, NotFound
from parley.voice.network import E164

router = APIRouter(prefix="/api/provider-accounts", tags=["provider accounts"])


class AccountCreate(RequestModel):
    name: str = Field(min_length=1, max_length=100)
    provider: str = Field(min_length=1, max_length=50)
    channel: Literal["email", "sms", "whatsapp", "voice"]
    config: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    is_default: bool = False
    rate_per_second: float | None = Field(default=None, ge=0.001, le=100_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)


class AccountUpdate(RequestModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    config: dict[str, Any] | None = None
    secrets: dict[str, str] | None = None
    is_default: bool | None = None
    rate_per_second: float | None = Field(default=None, ge=0.001, le=100_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)
    enabled: bool | None = None


class AccountOut(CamelModel):
    provider_account_id: uuid.UUID
    name: str
    provider: str
    channel: str
    config: dict[str, Any]
    secrets_set: list[str]
    is_default: bool
    rate_per_second: float | None
    burst: int | None
    enabled: bool
    webhook_path: str
    created_at: datetime


def _out(account: Any) -> AccountOut:
    return AccountOut.model_validate(svc.public_view(account))


@router.post("", response_model=AccountOut, status_code=status.HTTP_201_CREATED)
async def create_account(
    body: AccountCreate, session: SessionDep, principal: AdminDep
) -> AccountOut:
    account = await svc.create(
        session,
        principal.organization_id,
        name=body.name,
        provider=body.provider,
        channel=Channel(body.channel),
        config=body.config,
        secrets=body.secrets,
        is_default=body.is_default,
        rate_per_second=body.rate_per_second,
        burst=body.burst,
    )
    return _out(account)


@router.get("", response_model=list[AccountOut])
async def list_accounts(session: SessionDep, principal: AdminDep) -> list[AccountOut]:
    return [_out(a) for a in await svc.list_all(session, principal.organization_id)]


@router.get("/{account_id}", response_model=AccountOut)
async def get_account(
    account_id: uuid.UUID, session: SessionDep, principal: AdminDep
) -> AccountOut:
    return _out(await svc.get(session, principal.organization_id, account_id))


@router.patch("/{account_id}", response_model=AccountOut)
async def update_account(
    account_id: uuid.UUID, body: AccountUpdate, session: SessionDep, principal: AdminDep
) -> AccountOut:
    changes = {k: getattr(body, k) for k in body.model_fields_set}
    return _out(await svc.update_account(session, principal.organization_id, account_id, changes))


class SimulatedInbound(RequestModel):
    from_: str = Field(alias="from", min_length=3, max_length=320)
    body: str = Field(min_length=1, max_length=5000)
    subject: str | None = Field(default=None, max_length=200)


class SimulatedInboundOut(CamelModel):
    provider_message_id: str
    status: str = "posted"


@router.post("/{account_id}/simulate-inbound", response_model=SimulatedInboundOut, status_code=202)
async def simulate_inbound(
    account_id: uuid.UUID,
    body: SimulatedInbound,
    session: SessionDep,
    principal: SupervisorDep,
    container: ContainerDep,
) -> SimulatedInboundOut:
    """Sandbox accounts only: play the borrower. The sandbox posts a signed inbound message
    to this installation's own webhook, exactly as a provider would (so opt-out replies,
    threading and the inbox can be tried in the demo)."""
    account = await svc.get(session, principal.organization_id, account_id)
    if account.provider != "sandbox":
        raise Invalid.field("accountId", "only sandbox accounts can simulate inbound messages")
    row = await container.providers.account(str(account.id))
    if row is None or not row.enabled:
        raise Invalid.field("accountId", "the account is disabled")
    provider = await container.providers.get(row)
    sender = getattr(provider, "simulate_inbound", None)
    if sender is None:
        raise Invalid.field("accountId", "this provider cannot simulate inbound messages")
    message_id = await sender(
        sender=body.from_,
        body=body.body,
        recipient=str((account.config or {}).get("from_number") or ""),
        subject=body.subject,
    )
    return SimulatedInboundOut(provider_message_id=message_id)


class SimulatedCall(RequestModel):
    from_: str = Field(alias="from", min_length=3, max_length=32)


class SimulatedCallOut(CamelModel):
    provider_call_id: str
    # The call Parley recorded; null when the number matched no borrower (the caller
    # heard a short message, nothing was recorded).
    call_id: uuid.UUID | None


@router.post(
    "/{account_id}/simulate-inbound-call", response_model=SimulatedCallOut, status_code=202
)
async def simulate_inbound_call(
    account_id: uuid.UUID,
    body: SimulatedCall,
    session: SessionDep,
    principal: SupervisorDep,
    container: ContainerDep,
) -> SimulatedCallOut:
    """Sandbox voice accounts only: play a borrower calling the account's number. The
    sandbox's network rings this installation's voice webhook exactly as Twilio would; the
    call is routed like any inbound call (the case's agent if available, else another
    available agent, else voicemail) and the rest of it runs in the background."""
    account = await svc.get(session, principal.organization_id, account_id)
    if account.provider != "sandbox" or account.channel != Channel.VOICE.value:
        raise Invalid.field("accountId", "only sandbox voice accounts can simulate calls")
    if not E164.match(body.from_):
        raise Invalid.field("from", "must be an E.164 number, e.g. +12125550147")
    row = await container.providers.account(str(account.id))
    if row is None or not row.enabled:
        raise Invalid.field("accountId", "the account is disabled")
    from parley.channels.sandbox.voice import SandboxVoiceProvider  # loads with the account

    provider = await container.providers.get(row)
    assert isinstance(provider, SandboxVoiceProvider)
    await session.rollback()  # hold no transaction while our own webhook is called
    leg = await provider.simulate_inbound_call(caller=body.from_)
    if leg.status == "failed":
        raise voice_calls.ProviderFailed(
            f"the sandbox could not reach this installation's voice webhook at "
            f"{provider.callback_url('inbound')} (is PARLEY_PUBLIC_BASE_URL right?)"
        )
    try:
        call_id = await voice_events.call_of_leg(container, row, leg.sid)
    except NotFound:
        call_id = None
    return SimulatedCallOut(provider_call_id=leg.sid, call_id=call_id)
