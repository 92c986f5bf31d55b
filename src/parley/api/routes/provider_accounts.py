"""/api/provider-accounts: configure how an organization reaches each provider."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, status
from pydantic import Field

from parley.api.deps import AdminDep, SessionDep
from parley.api.schemas.common import CamelModel, RequestModel
from parley.domain.channels import Channel
from parley.services import provider_accounts as svc

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
