"""Provider accounts per organization: credentials, sender ids, rate limits.

Secrets are write-only: stored, handed to the provider factory, never returned by the
API (responses list which secret fields are set) and never logged.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.channels import registry
from parley.channels.base import ProviderConfigError, ProviderContext
from parley.domain.channels import Channel
from parley.services.errors import Conflict, FieldError, Invalid, NotFound
from parley.storage.models import ProviderAccount


def _validate(
    provider: str, channel: Channel, config: dict[str, Any], secrets: dict[str, Any]
) -> None:
    try:
        spec = registry.spec(provider)
    except registry.UnknownProvider as exc:
        raise Invalid.field("provider", str(exc)) from None
    if channel not in spec.channels:
        allowed = ", ".join(sorted(c.value for c in spec.channels))
        raise Invalid.field("channel", f"{provider} serves {allowed}")
    errors = [
        FieldError(f"config.{k}", "unknown setting for this provider")
        for k in config
        if k not in spec.config_fields
    ]
    errors += [
        FieldError(f"secrets.{k}", "unknown secret for this provider")
        for k in secrets
        if k not in spec.secret_fields
    ]
    given = set(config) | set(secrets)
    errors += [
        FieldError(name, "is required", "required") for name in sorted(spec.required - given)
    ]
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    try:
        spec.factory(
            ProviderContext(
                account_id="validation",
                channel=channel,
                config=config,
                secrets=secrets,
                public_base_url="http://localhost",
            )
        )
    except ProviderConfigError as exc:
        raise Invalid.field("config", str(exc)) from None


def _validate_rate(rate: float | None, burst: int | None) -> None:
    if rate is not None and rate <= 0:
        raise Invalid.field("ratePerSecond", "must be positive (omit it for no limit)")
    if burst is not None and burst < 1:
        raise Invalid.field("burst", "must be at least 1")


async def create(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    name: str,
    provider: str,
    channel: Channel,
    config: dict[str, Any],
    secrets: dict[str, Any],
    is_default: bool,
    rate_per_second: float | None,
    burst: int | None,
) -> ProviderAccount:
    _validate(provider, channel, config, secrets)
    _validate_rate(rate_per_second, burst)
    if is_default:
        await _clear_default(session, org_id, channel)
    account = ProviderAccount(
        organization_id=org_id,
        name=name,
        provider=provider,
        channel=channel.value,
        config=config,
        secrets=secrets,
        is_default=is_default,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    session.add(account)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"a provider account named {name!r} already exists") from None
    return account


async def update_account(
    session: AsyncSession, org_id: uuid.UUID, account_id: uuid.UUID, changes: dict[str, Any]
) -> ProviderAccount:
    account = await get(session, org_id, account_id)
    config = {**account.config, **changes.get("config", {})}
    secrets = {**account.secrets, **changes.get("secrets", {})}
    if "config" in changes or "secrets" in changes:
        _validate(account.provider, Channel(account.channel), config, secrets)
    account.config, account.secrets = config, secrets
    if "rate_per_second" in changes or "burst" in changes:
        _validate_rate(changes.get("rate_per_second"), changes.get("burst"))
    for key in ("name", "rate_per_second", "burst", "enabled"):
        if key in changes:
            setattr(account, key, changes[key])
    if changes.get("is_default"):
        await _clear_default(session, org_id, Channel(account.channel))
        account.is_default = True
    elif changes.get("is_default") is False:
        account.is_default = False
    await session.commit()
    return account


async def _clear_default(session: AsyncSession, org_id: uuid.UUID, channel: Channel) -> None:
    await session.execute(
        update(ProviderAccount)
        .where(ProviderAccount.organization_id == org_id, ProviderAccount.channel == channel.value)
        .values(is_default=False)
    )


async def get(session: AsyncSession, org_id: uuid.UUID, account_id: uuid.UUID) -> ProviderAccount:
    account = await session.scalar(
        select(ProviderAccount).where(
            ProviderAccount.id == account_id, ProviderAccount.organization_id == org_id
        )
    )
    if account is None:
        raise NotFound(f"provider account {account_id} not found")
    return account


async def list_all(session: AsyncSession, org_id: uuid.UUID) -> list[ProviderAccount]:
    rows = await session.scalars(
        select(ProviderAccount)
        .where(ProviderAccount.organization_id == org_id)
        .order_by(ProviderAccount.created_at)
    )
    return list(rows)


async def resolve_for_send(
    session: AsyncSession, org_id: uuid.UUID, channel: Channel, account_id: uuid.UUID | None
) -> ProviderAccount:
    """The account a new message goes through: the one asked for, else the channel default."""
    if account_id is not None:
        account = await session.scalar(
            select(ProviderAccount).where(
                ProviderAccount.id == account_id, ProviderAccount.organization_id == org_id
            )
        )
        if account is None:
            raise Invalid.field("providerAccountId", "unknown provider account")
        if account.channel != channel.value:
            raise Invalid.field(
                "providerAccountId", f"is a {account.channel} account, not {channel.value}"
            )
    else:
        account = await session.scalar(
            select(ProviderAccount)
            .where(
                ProviderAccount.organization_id == org_id,
                ProviderAccount.channel == channel.value,
                ProviderAccount.enabled.is_(True),
            )
            .order_by(ProviderAccount.is_default.desc(), ProviderAccount.created_at)
            .limit(1)
        )
        if account is None:
            raise Invalid.field(
                "messageType",
                f"no {channel.value} provider account is "
                "configured; create one with POST /api/provider-accounts",
            )
    if not account.enabled:
        raise Invalid.field("providerAccountId", "the provider account is disabled")
    return account


def public_view(account: ProviderAccount) -> dict[str, Any]:
    return {
        "providerAccountId": account.id,
        "name": account.name,
        "provider": account.provider,
        "channel": account.channel,
        "config": account.config,
        "secretsSet": sorted(account.secrets),
        "isDefault": account.is_default,
        "ratePerSecond": account.rate_per_second,
        "burst": account.burst,
        "enabled": account.enabled,
        "webhookPath": f"/webhooks/{account.provider}/{account.id}",
        "createdAt": account.created_at,
    }
