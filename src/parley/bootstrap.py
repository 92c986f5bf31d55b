"""Composition root: builds the database, job app, provider cache and clock from settings.

Everything with a lifetime (pools, the embedded server, provider connections) is created
here and closed by `Container.close()`; nothing is built at import time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import procrastinate

from parley.config import Settings
from parley.dispatch.providers import ProviderCache
from parley.storage import embedded
from parley.storage.db import Database
from parley.storage.priority import Placement

if TYPE_CHECKING:
    from parley.dispatch.ratelimit import Pacers
    from parley.inbox.group_commit import GroupCommit
    from parley.webhooks_out.sender import WebhookSender

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Container:
    settings: Settings
    db: Database
    jobs: procrastinate.App
    providers: ProviderCache
    clock: Callable[[], datetime] = utcnow
    embedded_server: embedded.EmbeddedPostgres | None = None
    # Outbound webhooks' HTTP client, made on first use in a worker (webhooks_out.sender).
    webhook_sender: WebhookSender | None = None
    # Group commit of provider status callbacks, made on first use in an API process
    # (inbox.receipts.ingest).
    receipt_batcher: GroupCommit[Any, Any] | None = None
    # Send pacing of rate-limited provider accounts, made on first use in a worker
    # (dispatch.ratelimit).
    pacers: Pacers | None = None
    _closed: bool = field(default=False, repr=False)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.receipt_batcher is not None:
            await self.receipt_batcher.drain()
        await self.providers.aclose()
        if self.webhook_sender is not None:
            await self.webhook_sender.aclose()
        await self.jobs.close_async()
        await self.db.close()


def resolve_database_url(settings: Settings) -> tuple[str, embedded.EmbeddedPostgres | None]:
    if settings.database_url:
        return settings.database_url, None
    server = embedded.start(settings.data_dir)
    return server.url(), server


def build_job_app(db: Database) -> procrastinate.App:
    from parley.dispatch.jobs import make_blueprint

    app = procrastinate.App(
        # `configure` reaches the LISTEN connection Procrastinate opens beside the pool:
        # a worker's is placed like the pool's (storage/priority.py).
        connector=procrastinate.PsycopgConnector(configure=db.configure),
        import_paths=["parley.dispatch.jobs"],
    )
    app.add_tasks_from(make_blueprint(), namespace="parley")
    return app


def worker_placement(settings: Settings) -> Placement:
    """A standalone worker's niceness, scheduling class and CPUs (`PARLEY_WORKER_NICE`,
    `PARLEY_WORKER_PRIORITY`, `PARLEY_WORKER_CPUS`). Raises ValueError for CPUs this
    process may not use."""
    from parley.storage.priority import usable_cpus

    lowered = settings.worker_priority != "normal"
    return Placement(
        nice=settings.worker_nice if lowered else 0,
        idle=settings.worker_priority == "idle",
        cpus=usable_cpus(settings.worker_cpus) if settings.worker_cpus else None,
    )


async def create_container(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
    clock: Callable[[], datetime] = utcnow,
    placement: Placement | None = None,
) -> Container:
    """`placement`: a standalone worker's (`worker_placement`), whose backends on a
    local PostgreSQL are lowered and confined like it (storage/priority.py)."""
    settings = settings or Settings()
    url, server = resolve_database_url(settings)
    if migrate:
        from parley.storage.migrate import upgrade

        upgrade(url)  # a no-op (one query) when the schema is current
    db = Database.create(
        url,
        pool_size=settings.db_pool_size,
        backend_nice=placement.nice if placement else 0,
        backend_idle=bool(placement and placement.idle),
        backend_cpus=placement.cpus if placement else None,
        # A standalone worker's connections are told apart in pg_stat_activity (the
        # inbox benchmark checks where they run by it; so can an operator).
        application_name=f"parley worker {os.getpid()}" if placement is not None else "parley",
    )
    await db.open()
    jobs = build_job_app(db)
    await jobs.open_async(pool=db.pool)
    providers = ProviderCache(db=db, public_base_url=settings.base_url)
    return Container(
        settings=settings,
        db=db,
        jobs=jobs,
        providers=providers,
        clock=clock,
        embedded_server=server,
    )
