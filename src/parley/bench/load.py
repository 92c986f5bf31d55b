"""An HTTP load generator in its own process: posts prepared requests over keep-alive
connections, either as fast as the server answers (closed loop, `concurrency` in flight)
or at a fixed rate (open loop), and reports every request's latency and answer.

Open-loop latency is measured from the moment a request was *due*, not from when it got
a connection: a server that falls behind shows its queueing in the figures instead of
slowing the generator down (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any

# (path, body, headers) of one request, the path relative to the target's base URL.
Prepared = tuple[str, bytes, dict[str, str]]


@dataclass
class LoadResult:
    sent: int
    elapsed_s: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    duplicates: int  # answers saying {"duplicate": true}
    errors: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def percentiles(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return {}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": at(1.0)}

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "elapsed_s": round(self.elapsed_s, 3),
            "req_per_s": round(self.per_s, 1),
            **self.percentiles(),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "duplicate_answers": self.duplicates,
            "errors": self.errors[:5],
        }


async def _run(
    base_url: str, requests: list[Prepared], concurrency: int, rate: float | None
) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    duplicates = 0
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def one(request: Prepared, due: float) -> None:
            nonlocal duplicates
            path, body, headers = request
            try:
                async with session.post(path, data=body, headers=headers) as response:
                    answer = await response.read()
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    if b'"duplicate":true' in answer:
                        duplicates += 1
            except Exception as exc:  # recorded; the bench fails on any
                statuses[0] = statuses.get(0, 0) + 1
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append((time.perf_counter() - due) * 1000)

        started = time.perf_counter()
        if rate is None:
            queue = iter(requests)

            async def client() -> None:
                for request in queue:
                    await one(request, time.perf_counter())

            await asyncio.gather(*(client() for _ in range(concurrency)))
        else:
            tasks = []
            for i, request in enumerate(requests):
                due = started + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(request, due)))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return LoadResult(len(requests), elapsed, latencies, statuses, duplicates, errors)


def _main(
    base_url: str, requests: list[Prepared], concurrency: int, rate: float | None, conn: Any
) -> None:
    try:
        conn.send(asyncio.run(_run(base_url, requests, concurrency, rate)))
    except BaseException as exc:  # the parent reports it
        conn.send(RuntimeError(f"load generator failed: {type(exc).__name__}: {exc}"))


def run_load(
    base_url: str,
    requests: list[Prepared],
    *,
    concurrency: int,
    rate: float | None = None,
    timeout: float = 900.0,
) -> LoadResult:
    """Post `requests` to `base_url` from a separate process; its result."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(
        target=_main,
        args=(base_url, requests, concurrency, rate, child),
        name="parley-bench-load",
        daemon=True,
    )
    process.start()
    try:
        if not parent.poll(timeout):
            raise TimeoutError("the load generator did not finish")
        result = parent.recv()
    finally:
        process.join(10)
        if process.is_alive():
            process.kill()
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, LoadResult)
    return result
