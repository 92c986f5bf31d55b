"""Live updates for one API process: one LISTEN connection, fanned out to every client.

`parley.services.activity.emit` NOTIFYs on one channel inside the transaction that makes
a change; PostgreSQL delivers it at commit to every process LISTENing, so an event
raised by a worker or by another API process reaches the clients of this one. The hub
holds a single dedicated connection (not one per client, and not a pooled one: a
LISTEN connection is never handed back), reconnects with backoff when it drops, and
puts each event on the queue of every subscriber that may see it.

Who sees what (mirrors the inbox, services/inbox.py): everything of the subscriber's
organization for supervisors and admins; for an agent, events naming an assigned agent
(conversations, messages) only when it is them or nobody (the team queue), or when a
conversation was just taken from them. Status changes carry no agent (the dispatch path
announces them without reading the case) and reach every client of the organization:
ids and a status, no content.

A subscriber that falls `QUEUE_SIZE` events behind is disconnected (its stream ends; an
EventSource reconnects and refetches) rather than holding memory for a stalled reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg

from parley.services.activity import CHANNEL

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000
RECONNECT_MAX_SECONDS = 10.0


@dataclass(eq=False)
class Subscription:
    organization_id: str
    agent_id: str | None  # set for agents: filter to their conversations + team queue
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    closed: bool = False

    def wants(self, event: dict[str, Any]) -> bool:
        if event.get("org") != self.organization_id:
            return False
        if self.agent_id is None:
            return True
        data = event.get("data") or {}
        if "assignedAgentId" not in data:
            return True
        owners = {data.get("assignedAgentId"), data.get("previousAgentId")}
        return data.get("assignedAgentId") is None or self.agent_id in owners

    def offer(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.end()

    def end(self) -> None:
        """End the stream: the reader gets None after what is already queued."""
        if self.closed:
            return
        self.closed = True
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:  # make room for the end marker
                self.queue.get_nowait()


class ActivityHub:
    """The process's LISTEN connection and its subscribers."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(
        self, organization_id: str, agent_id: str | None, wait_seconds: float = 10.0
    ) -> Subscription:
        """A new subscription, once the hub is LISTENing (so nothing committed after this
        returns is missed). Raises RuntimeError when the hub is closed or can't listen."""
        if self._closed:
            raise RuntimeError("the server is shutting down")
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="activity-hub")
        sub = Subscription(organization_id, agent_id)
        self._subscribers.add(sub)
        try:
            await asyncio.wait_for(self._listening.wait(), wait_seconds)
        except TimeoutError:
            self._subscribers.discard(sub)
            raise RuntimeError("live updates are unavailable (no database connection)") from None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.closed = True

    async def close(self) -> None:
        """End every stream and stop listening (server shutdown)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.end()
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def publish(self, payload: str) -> None:
        """Fan one NOTIFY payload out to the subscribers that may see it."""
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed activity notification")
            return
        if not isinstance(event, dict):
            return
        for sub in list(self._subscribers):
            if sub.wants(event):
                sub.offer(event)

    async def _run(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    delay = 0.5
                    async for notify in conn.notifies():
                        self.publish(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection dropped: reconnect
                log.warning("activity LISTEN connection lost (%s); reconnecting", exc)
            self._listening.clear()
            # Events committed while we were away are lost to live clients: end their
            # streams so they reconnect and refetch, instead of silently missing some.
            for sub in list(self._subscribers):
                sub.end()
            self._subscribers.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)


def hub_for(app: Any) -> ActivityHub:
    """The app's hub, created on first use (one per API process)."""
    hub = getattr(app.state, "activity_hub", None)
    if hub is None:
        hub = ActivityHub(app.state.container.db.url)
        app.state.activity_hub = hub
    assert isinstance(hub, ActivityHub)
    return hub


async def close_app(app: Any) -> None:
    """End the app's live streams (before the server waits for its connections)."""
    hub = getattr(app.state, "activity_hub", None)
    if isinstance(hub, ActivityHub):
        await hub.close()
