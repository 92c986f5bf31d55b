"""Database handles: the SQLAlchemy async engine for services and a psycopg pool for hot paths.

Both use psycopg 3, the driver Procrastinate takes too, so a service can hand the raw
connection of its SQLAlchemy session to Procrastinate and defer a job in the same
transaction that writes the message (the transactional outbox, DESIGN.md section 2).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from parley.storage import priority


def sqlalchemy_url(url: str) -> str:
    """`postgresql://...` (libpq form) -> `postgresql+psycopg://...` for SQLAlchemy."""
    parts = urlsplit(url)
    scheme = "postgresql+psycopg"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def libpq_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


async def _configure(conn: psycopg.AsyncConnection) -> None:
    await conn.set_autocommit(True)
    # json/jsonb columns parsed by orjson (in C) rather than the stdlib decoder: the
    # dispatcher reads several per message it claims.
    set_json_loads(orjson.loads, conn)


def _configure_placed(
    placement: priority.Placement,
) -> Callable[[psycopg.AsyncConnection], Awaitable[None]]:
    """`_configure`, then the backend lowered and confined like its worker
    (storage/priority.py)."""

    async def configure(conn: psycopg.AsyncConnection) -> None:
        await _configure(conn)
        priority.place_backend(conn, placement)

    return configure


# A pooled connection is checked (one round trip) before it is handed out only when it
# has been idle this long: a connection returned a moment ago is known to work, and
# checking every checkout was one round trip in eight on the webhook path. A connection
# that broke meanwhile fails its first statement and is discarded by the pool.
CHECK_IDLE_SECONDS = 2.0
_returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = (
    weakref.WeakKeyDictionary()
)


async def _mark_returned(conn: psycopg.AsyncConnection) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: psycopg.AsyncConnection) -> None:
    returned = _returned_at.get(conn)
    if returned is None or time.monotonic() - returned >= CHECK_IDLE_SECONDS:
        await AsyncConnectionPool.check_connection(conn)


@dataclass
class Database:
    url: str  # libpq form
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    pool: AsyncConnectionPool
    # What every psycopg connection of this process runs when it opens (the pool's, and
    # the job queue's LISTEN connection: bootstrap.build_job_app).
    configure: Callable[[psycopg.AsyncConnection], Awaitable[None]] = _configure

    @classmethod
    def create(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        backend_nice: int = 0,
        backend_idle: bool = False,
        backend_cpus: frozenset[int] | None = None,
        application_name: str = "parley",
    ) -> Database:
        """`backend_nice` / `backend_idle` / `backend_cpus` (a standalone worker's): the
        pooled connections' backends are lowered (and confined) like the worker when
        PostgreSQL runs on this host (storage/priority.py). `application_name` is what
        `pg_stat_activity` shows for every connection (unless the URL names one)."""
        url = libpq_url(url)
        placement = priority.Placement(backend_nice, backend_idle, backend_cpus)
        named = "application_name" in conninfo_to_dict(url)
        extra = {} if named else {"application_name": application_name}
        engine = create_async_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args=extra,
        )
        if placement:
            # The engine's connections (services a worker runs through the ORM) are
            # placed like the pool's: on connect, by the backend pid libpq reports.
            @event.listens_for(engine.sync_engine, "connect")
            def _place(dbapi_connection: Any, _record: Any) -> None:
                priority.place_backend(dbapi_connection.driver_connection, placement)

        configure = _configure_placed(placement) if placement else _configure
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            open=False,
            # Autocommit set per connection rather than in `kwargs`: Procrastinate opens
            # its LISTEN connection with the pool's kwargs plus its own autocommit=True.
            configure=configure,
            kwargs=extra,
            check=_check_if_idle,
            reset=_mark_returned,
        )
        return cls(url=url, engine=engine, sessions=sessions, pool=pool, configure=configure)

    async def open(self) -> None:
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session


async def raw_connection(session: AsyncSession | AsyncConnection) -> psycopg.AsyncConnection:
    """The psycopg connection under a session, inside the session's transaction."""
    conn = await session.connection() if isinstance(session, AsyncSession) else session
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    return driver
