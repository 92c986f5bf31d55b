"""A local HTTP endpoint that records the webhooks posted to it.

Stands in for Parley's own `/webhooks/{provider}/{account}` route when a test wants to
see exactly what a provider (or a protocol peer) sent: each request is kept as a
`WebhookRequest` -- the same object the provider's `verify_webhook`/`parse_webhook` take.

    async with WebhookReceiver() as receiver:
        provider = build(..., public_base_url=receiver.base_url)
        ...
        requests = await receiver.wait_for(3)
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from parley.channels.base import WebhookRequest
from parley.peers.background import Peer


class WebhookReceiver(Peer):
    """Answers every POST/GET with `status` (and `reply` as its body) and records it."""

    thread_name = "webhook-receiver"

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, status: int = 204, reply: bytes = b""
    ) -> None:
        self.host = host
        self.port = port
        self.status = status
        self.reply = reply  # the answer's body (both may be changed between requests)
        self.requests: list[WebhookRequest] = []
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _record(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            WebhookRequest(
                method=request.method,
                url=f"{self.base_url}{request.rel_url}",
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                query=dict(request.query),
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        return web.Response(status=self.status, body=self.reply or None)

    async def wait_for(self, count: int) -> list[WebhookRequest]:
        """Wait until at least `count` requests arrived; returns all of them.

        Wrap in `asyncio.timeout()` to bound the wait.
        """
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port picked when 0 was asked
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
