"""Running the processes: the API server, the worker, or both in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

import uvicorn

from parley.bootstrap import Container

log = logging.getLogger(__name__)


async def run_worker(
    container: Container, *, concurrency: int | None = None, queues: list[str] | None = None
) -> None:
    concurrency = concurrency or container.settings.worker_concurrency
    _warm_up_gate()
    from parley.services import unsubscribe

    async with container.db.pool.connection() as conn:
        await unsubscribe.secret(container, conn)  # created once, outside any claim
    await _prepare_worker(container, concurrency)
    collect_less_often()
    listeners = await _start_listeners(container)
    try:
        await _run_jobs(container, concurrency, queues)
    finally:
        if listeners is not None:
            listeners.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listeners


async def _start_listeners(container: Container) -> asyncio.Task[None] | None:
    """The listener supervisor (SMPP binds, IMAP mailboxes) beside the job worker, on the
    same provider instances the dispatcher sends with. Its first pass runs before any job:
    building the accounts' providers imports their modules (a few hundred ms of CPU),
    which in the middle of a paced send would bunch the sends after it."""
    if not container.settings.listeners_enabled:
        return None
    from parley.inbox.listeners import ListenerSupervisor

    supervisor = ListenerSupervisor(
        container, poll_seconds=container.settings.listener_poll_seconds
    )
    try:
        await supervisor.reconcile()
    except Exception:  # the supervisor's loop tries again; jobs must not wait for it
        log.exception("listener supervisor: first pass failed")
    return asyncio.create_task(supervisor.run(), name="listeners")


async def _run_jobs(container: Container, concurrency: int, queues: list[str] | None) -> None:
    await container.jobs.run_worker_async(
        queues=queues,
        concurrency=concurrency,
        additional_context={"container": container},
        install_signal_handlers=False,
        update_heartbeat_interval=max(1.0, container.settings.stalled_worker_seconds / 6),
        stalled_worker_timeout=container.settings.stalled_worker_seconds,
        listen_notify=True,
        # Jobs scheduled a moment ahead (retries) get no notification when they come
        # due; poll often enough that a retry isn't held back by the poll interval.
        fetch_job_polling_interval=container.settings.job_poll_seconds,
        # Finished jobs are kept (which job sent a message stays answerable) and pruned
        # after `job_retention_hours` by a periodic task.
        delete_jobs="never",
    )


def _warm_up_gate() -> None:
    """Load the time-zone and phone-number tables the compliance gate reads before the
    first job does: otherwise the first batch a worker claims waits for them (~0.1-0.3 s)
    while its rate-limit slots pass."""
    from datetime import UTC, datetime

    from parley.compliance import hours, zones

    zone_set = zones.plausible_zones(
        stated=None, country="US", region="NY", phone_e164="+12125550100"
    )
    hours.evaluate_hours(
        datetime.now(UTC), zone_set, hours.ContactWindow(), country="US", subdivision="NY"
    )


async def _prepare_worker(container: Container, concurrency: int) -> None:
    """Before taking jobs: import what a dispatch job runs (the pipeline and every
    registered provider) and open the database connections that `concurrency` jobs hold
    at once. Otherwise the first batches after a start wait on ~0.3 s of imports and on
    connections opened one at a time."""
    import parley.dispatch.pipeline  # noqa: F401
    from parley.channels import registry

    for name in registry.names():
        registry.spec(name)
    pool = container.db.pool
    wanted = min(pool.max_size, concurrency + 1)
    all_held = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with pool.connection():
            held += 1
            if held == wanted:
                all_held.set()
            await all_held.wait()  # keep it until every one is open

    try:
        await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(wanted))), timeout=5)
    except TimeoutError:  # a busy server: the pool still grows on demand
        log.warning("opened %d of %d database connections before starting", held, wanted)


def _server(container: Container) -> uvicorn.Server:
    from parley.api.app import create_app

    config = uvicorn.Config(
        create_app(container),
        host=container.settings.host,
        port=container.settings.port,
        log_level=container.settings.log_level.lower(),
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


# The youngest generation is collected after this many allocations (CPython's default
# is 700). A worker allocates a task, a future, a request and a few dicts per message it
# sends; with the default the collector ran every few messages and took ~10% of a
# dispatching worker's CPU (perf, dispatch-sms). Cyclic garbage waits a little longer
# to be freed; the memory it holds meanwhile is a few MB at most.
YOUNG_COLLECTION_THRESHOLD = 10_000


def collect_less_often() -> None:
    """Run the cyclic garbage collector's young collections less often (see above)."""
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 20, 20)


def settle_heap() -> None:
    """Keep what start-up made (modules, routes, the container) out of garbage collection.

    Those objects live as long as the process, yet every full collection walks them
    again; frozen, a collection only walks what requests allocate. (Measured on the
    webhook route: collections were a visible share of the API process's CPU.)
    """
    gc.collect()
    gc.freeze()


async def serve(container: Container, *, api: bool = True, worker: bool = True) -> None:
    """Run until SIGINT/SIGTERM, then stop accepting work and close everything."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    tasks: dict[str, asyncio.Task[Any]] = {}
    server = _server(container) if api else None
    settle_heap()
    if server is not None:
        tasks["api"] = asyncio.create_task(server.serve(), name="api")
    if worker:
        tasks["worker"] = asyncio.create_task(run_worker(container), name="worker")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([stopper, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stopper and task.exception():
            log.error("%s stopped with an error", task.get_name(), exc_info=task.exception())
    log.info("shutting down")
    if server is not None:
        from parley.inbox import live

        await live.close_app(server.config.app)  # end SSE streams, or the server waits
        server.should_exit = True
    if "worker" in tasks:
        tasks["worker"].cancel()  # Procrastinate finishes running jobs gracefully
    for task in tasks.values():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=30)
    stopper.cancel()
