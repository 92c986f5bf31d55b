"""A real HTTP server for the app (for provider callbacks) and an in-process worker drain."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def worker_process(database_url: str, env: dict[str, str], log: Any = None) -> Any:
    """A `parley worker` process on `database_url` (output to `log`, a path, or dropped)."""
    import os
    import subprocess
    import sys

    out = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "parley.cli", "worker"],
        env={**os.environ, "PARLEY_DATABASE_URL": database_url, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def live_api(container: Any) -> AsyncIterator[str]:
    """Serve the API on a free port and point provider callbacks at it."""
    async with live_app(container) as (base, _app):
        yield base


@contextlib.asynccontextmanager
async def live_app(container: Any) -> AsyncIterator[tuple[str, Any]]:
    """`live_api`, also yielding the app (its SSE streams are ended on the way out)."""
    from parley.api.app import create_app
    from parley.inbox import live

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    old = container.settings.public_base_url
    container.settings.public_base_url = base
    container.providers._public_base_url = base
    await container.providers.aclose()
    app = create_app(container)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield base, app
    finally:
        await live.close_app(app)
        server.should_exit = True
        await task
        container.settings.public_base_url = old
        container.providers._public_base_url = old or "http://127.0.0.1:8000"
        await container.providers.aclose()


async def drain(container: Any, queues: list[str] | None = None) -> None:
    """Run a worker until no job is ready, then return."""
    await container.jobs.run_worker_async(
        queues=queues or ["dispatch", "receipts"],
        wait=False,
        concurrency=4,
        additional_context={"container": container},
        install_signal_handlers=False,
        listen_notify=False,
        delete_jobs="never",
    )


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy (or fail loudly)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
