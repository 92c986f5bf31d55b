"""The listener supervisor: runs `provider.run(sink)` for every enabled provider account
whose provider receives over a connection of its own (`ListeningProvider`: an SMPP bind,
an IMAP mailbox), in each worker process.

- The provider instance is the one the dispatcher sends with (`container.providers`), so
  an SMPP account's sends and receipts share one bind per process.
- Accounts are re-read every `poll_seconds`: a new or re-enabled account starts
  listening, a disabled or deleted one stops, an edited one (the cache rebuilds its
  provider) restarts on the new instance.
- A `run` that fails or returns is started again after an exponential back-off with
  jitter (reset once it has run for a while); shutdown cancels every listener.
- Several worker processes: by default each process listens (SMSCs deliver to any of an
  account's binds, so every bind must pass on what it gets). A provider that sets
  `listen_exclusively = True` (an IMAP mailbox: one poller at a time) is run by one
  process only: the one holding a PostgreSQL session advisory lock for the account, on
  a connection of its own kept for as long as it listens; the others try again at each
  poll, so one takes over within `poll_seconds` when the holder dies.
- The sink stores each batch as a receipt and processes it like a webhook
  (`receipts.ingest_received`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from parley.channels.base import (
    ChannelProvider,
    DeliveryEvent,
    EventSink,
    InboundMessage,
    ListeningProvider,
    ProviderConfigError,
)
from parley.inbox import imap_cursor, receipts

if TYPE_CHECKING:
    from parley.bootstrap import Container
    from parley.dispatch.providers import AccountRow

log = logging.getLogger(__name__)

_LOCK_NAMESPACE = "parley.listener"
_STABLE_AFTER = 60.0  # a run that lasted this long resets the restart back-off


def lock_key(account_id: str) -> int:
    """The advisory lock (bigint) that makes one process the listener of an account."""
    digest = hashlib.sha256(f"{_LOCK_NAMESPACE}:{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass
class _Listener:
    account: AccountRow
    provider: Any
    task: asyncio.Task[None]
    lock_conn: psycopg.AsyncConnection | None = None
    restarts: int = 0
    received: int = 0


@dataclass
class ListenerSupervisor:
    container: Container
    poll_seconds: float = 15.0
    restart_min: float = 1.0
    restart_max: float = 60.0
    _listeners: dict[str, _Listener] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _unbuildable: set[tuple[str, str]] = field(default_factory=set)

    # -- running --------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile the running listeners with the accounts table until cancelled."""
        try:
            while True:
                try:
                    await self.reconcile()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("listener supervisor: reconciling accounts failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            await self.stop()

    def poke(self) -> None:
        """Re-read the accounts now (tests; an API could call it after an edit)."""
        self._wake.set()

    @property
    def listening(self) -> dict[str, Any]:
        """account id -> the provider instance listening for it in this process."""
        return {k: v.provider for k, v in self._listeners.items() if not v.task.done()}

    async def reconcile(self) -> None:
        accounts = await self._enabled_accounts()
        for account_id in list(self._listeners):
            if account_id not in accounts:
                log.info("listener for account %s stopped (disabled or removed)", account_id)
                await self._stop_one(account_id)
                # Its connection (an SMPP bind) closes too: nothing sends on it any more.
                await self.container.providers.discard(account_id)
        for account in accounts.values():
            try:
                provider = await self.container.providers.get(account)
            except Exception as exc:  # a bad account must not stop the others
                if (account.id, account.fingerprint) not in self._unbuildable:
                    self._unbuildable.add((account.id, account.fingerprint))  # warn once
                    level = (
                        logging.WARNING if isinstance(exc, ProviderConfigError) else logging.ERROR
                    )
                    log.log(level, "account %s: provider not built: %s", account.id, exc)
                await self._stop_one(account.id)
                continue
            if not isinstance(provider, ListeningProvider) or not getattr(
                provider, "listening", True
            ):
                continue  # e.g. an smtp account without a mailbox to read
            current = self._listeners.get(account.id)
            if (
                current is not None
                and current.provider is provider
                and not current.task.done()
                and await _lock_held(current)
            ):
                continue
            if current is not None:
                await self._stop_one(account.id)  # rebuilt after an edit: restart on it
            lock_conn = None
            if getattr(provider, "listen_exclusively", False):
                lock_conn = await self._try_lock(account.id)
                if lock_conn is None:
                    continue  # another process listens for this account
            task = asyncio.create_task(
                self._keep_running(account, provider), name=f"listener-{account.id}"
            )
            self._listeners[account.id] = _Listener(account, provider, task, lock_conn)
            log.info("listening for %s account %s", account.provider, account.id)

    async def stop(self) -> None:
        for account_id in list(self._listeners):
            await self._stop_one(account_id)

    async def _stop_one(self, account_id: str) -> None:
        listener = self._listeners.pop(account_id, None)
        if listener is None:
            return
        listener.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener.task
        if listener.lock_conn is not None:
            with contextlib.suppress(Exception):
                await listener.lock_conn.close()  # ends the session: the lock is released

    async def _keep_running(self, account: AccountRow, provider: ChannelProvider) -> None:
        sink = self.sink_for(account, provider)
        # A mailbox listener resumes from its stored read position (imap_cursors).
        imap_cursor.attach(self.container.db, account, provider)
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            started = loop.time()
            try:
                await provider.run(sink)  # type: ignore[attr-defined]
                log.warning("listener for account %s returned; restarting", account.id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("listener for account %s failed; restarting", account.id)
            failures = 1 if loop.time() - started > _STABLE_AFTER else failures + 1
            listener = self._listeners.get(account.id)
            if listener is not None:
                listener.restarts += 1
            step = min(self.restart_max, self.restart_min * 2 ** (failures - 1))
            await asyncio.sleep(step * random.uniform(0.5, 1.0))

    def sink_for(self, account: AccountRow, provider: Any) -> EventSink:
        container = self.container

        async def sink(items: Sequence[DeliveryEvent | InboundMessage], raw: bytes) -> None:
            await receipts.ingest_received(container, account, raw, items, provider=provider)
            listener = self._listeners.get(account.id)
            if listener is not None:
                listener.received += 1

        return sink

    # -- the database ---------------------------------------------------------------

    async def _enabled_accounts(self) -> dict[str, AccountRow]:
        async with self.container.db.pool.connection() as conn:
            cur = await conn.execute("SELECT id::text FROM provider_accounts WHERE enabled")
            ids = [r[0] for r in await cur.fetchall()]
            return await self.container.providers.accounts(ids, conn=conn)

    async def _try_lock(self, account_id: str) -> psycopg.AsyncConnection | None:
        """A connection holding the account's listener lock, or None if another has it.
        Its own connection, not the pool's: it is held for as long as the listener runs."""
        conn = await psycopg.AsyncConnection.connect(self.container.db.url, autocommit=True)
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(account_id),))
            row = await cur.fetchone()
        except BaseException:
            await conn.close()
            raise
        if row is not None and row[0]:
            return conn
        await conn.close()
        return None


async def _lock_held(listener: _Listener) -> bool:
    """Whether an exclusive listener still holds its lock (its connection is alive)."""
    if listener.lock_conn is None:
        return True
    try:
        await listener.lock_conn.execute("SELECT 1")
    except Exception:
        log.warning("account %s: listener lock connection lost", listener.account.id)
        return False
    return True
