"""Group commit: requests that arrive while the database is busy are written together.

A status callback's own work is small; what it costs is the transaction around it (a
connection, several statements, a commit). Under load, :class:`GroupCommit` gathers the
items submitted while earlier batches are being written and hands them to one
``process(batch)`` call -- one transaction, multi-row statements -- and each submitter
is answered only when its batch's outcome is known (for ingestion: after the commit, so
"stored before answered" still holds).

Nothing waits for a batch to fill: an item submitted to an idle batcher is processed at
once, alone, so a quiet system answers as fast as before. Batches only grow when items
arrive faster than they are written, which is when writing them together pays.

At most ``max_in_flight`` batches run at once, each of at most ``max_size`` items. While
one is in flight, another starts only once ``overlap_at`` items wait: fewer wait for the
batch in flight and then go together (every batch has a fixed cost, so a second batch
of two costs more than one more round of waiting saves), more start at once so that a
backlog is worked off by two batches side by side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# `process` answers each item with its result or the exception to raise for it.
Process = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[T, R]):
    """Submit items one by one; they are processed in batches. Bound to the event loop
    it was created in (see :meth:`for_loop`)."""

    def __init__(
        self,
        process: Process[T, R],
        *,
        max_size: int = 200,
        max_in_flight: int = 2,
        overlap_at: int = 1,
    ):
        if max_size < 1 or max_in_flight < 1 or overlap_at < 1:
            raise ValueError("max_size, max_in_flight and overlap_at must be at least 1")
        self._process = process
        self.max_size = max_size
        self.max_in_flight = max_in_flight
        self.overlap_at = overlap_at
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()
        # Observability (and tests): how many batches ran and the largest one.
        self.batches = 0
        self.largest = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = self.loop.create_future()
        self._waiting.append((item, future))
        self._start_batches()
        return await future

    def _start_batches(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            if self._in_flight and len(self._waiting) < self.overlap_at:
                return  # few waiting: they go together once the batch in flight is done
            batch = self._waiting[: self.max_size]
            del self._waiting[: self.max_size]
            self._in_flight += 1
            task = self.loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.largest = max(self.largest, len(batch))
        try:
            outcomes = await self._process([item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except BaseException as exc:  # every submitter must be answered
            if not isinstance(exc, Exception):
                log.warning("batch of %d interrupted: %r", len(batch), exc)
            outcomes = [exc] * len(batch)
        finally:
            self._in_flight -= 1
            # Items that arrived meanwhile go next (also after a failed batch).
            self._start_batches()
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the submitter was cancelled (its client went away)
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def drain(self) -> None:
        """Wait until everything submitted so far has been processed."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
