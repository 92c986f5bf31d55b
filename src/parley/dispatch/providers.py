"""Provider instances per provider account, built on first use and rebuilt when changed.

Workers keep one instance per account (and so one SMTP connection pool or HTTP session);
an account edited through the API is noticed by its fingerprint and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
import psycopg

from parley.channels import registry
from parley.channels.base import ChannelProvider, ProviderContext
from parley.domain.channels import Channel
from parley.storage.db import Database

log = logging.getLogger(__name__)


@dataclass
class AccountRow:
    id: str
    organization_id: str
    provider: str
    channel: str
    config: dict[str, Any]
    secrets: dict[str, Any]
    rate_per_second: float | None
    burst: int | None
    enabled: bool

    @cached_property
    def fingerprint(self) -> str:
        blob = orjson.dumps(
            [self.provider, self.channel, self.config, self.secrets], option=orjson.OPT_SORT_KEYS
        )
        return hashlib.sha256(blob).hexdigest()


# How long a webhook may use an account row it read (see ProviderCache.recent_account).
RECENT_SECONDS = 5.0

ACCOUNTS_SQL = (
    "SELECT id::text, organization_id::text, provider, channel, config, secrets, "
    "rate_per_second, burst, enabled FROM provider_accounts WHERE id = ANY(%s::uuid[])"
)


class ProviderCache:
    def __init__(self, *, db: Database, public_base_url: str) -> None:
        self._db = db
        self._public_base_url = public_base_url
        self._instances: dict[str, tuple[str, ChannelProvider]] = {}
        self._recent: dict[str, tuple[float, AccountRow]] = {}

    async def accounts(
        self, ids: list[str], conn: psycopg.AsyncConnection | None = None
    ) -> dict[str, AccountRow]:
        """Account rows by id, on `conn` when given (never a second pooled connection
        while the caller holds one: that can exhaust the pool)."""
        if not ids:
            return {}
        if conn is not None:
            cur = await conn.execute(ACCOUNTS_SQL, (ids,))
            rows = await cur.fetchall()
        else:
            async with self._db.pool.connection() as own:
                cur = await own.execute(ACCOUNTS_SQL, (ids,))
                rows = await cur.fetchall()
        return {r[0]: AccountRow(*r) for r in rows}

    async def account(self, account_id: str) -> AccountRow | None:
        return (await self.accounts([account_id])).get(account_id)

    def cached_account(self, account_id: str) -> AccountRow | None:
        """The account row if it was read less than `RECENT_SECONDS` ago, else None."""
        cached = self._recent.get(account_id)
        if cached is not None and time.monotonic() - cached[0] < RECENT_SECONDS:
            return cached[1]
        return None

    async def recent_account(
        self, account_id: str, conn: psycopg.AsyncConnection, *, fresh: bool = False
    ) -> AccountRow | None:
        """An account row read at most `RECENT_SECONDS` ago (or now, with `fresh`).

        For webhooks: every status callback names its account, and re-reading it per
        callback was one query in five on that path. A caller that finds the row stale
        (a signature that fails with it: the secret may have been rotated) asks again
        with `fresh=True`.
        """
        cached = None if fresh else self.cached_account(account_id)
        if cached is not None:
            return cached
        now = time.monotonic()
        account = (await self.accounts([account_id], conn=conn)).get(account_id)
        if account is None:
            self._recent.pop(account_id, None)
        else:
            self._recent[account_id] = (now, account)
        return account

    async def get(self, account: AccountRow) -> ChannelProvider:
        cached = self._instances.get(account.id)
        if cached and cached[0] == account.fingerprint:
            return cached[1]
        if cached:
            await _close_quietly(cached[1])
        provider = registry.build(
            account.provider,
            ProviderContext(
                account_id=account.id,
                channel=Channel(account.channel),
                config=account.config,
                secrets=account.secrets,
                public_base_url=self._public_base_url,
            ),
        )
        self._instances[account.id] = (account.fingerprint, provider)
        return provider

    async def discard(self, account_id: str) -> None:
        """Close and forget an account's instance (the account was disabled or removed)."""
        cached = self._instances.pop(account_id, None)
        if cached:
            await _close_quietly(cached[1])

    async def aclose(self) -> None:
        self._recent.clear()
        for _, provider in self._instances.values():
            await _close_quietly(provider)
        self._instances.clear()


async def _close_quietly(provider: ChannelProvider) -> None:
    try:
        await provider.aclose()
    except Exception:  # closing must never take the worker down
        log.exception("error closing provider %s", provider.name)
