"""The client side of providers spoken to over HTTP (Twilio, WhatsApp Cloud API).

One pooled aiohttp session per provider instance (built on first use: a session belongs
to the running event loop), a bound on requests in flight, and the one rule that keeps a
network failure from sending twice: a failure before the request was written to the
connection is retryable (nothing can have reached the provider); after it, the outcome
is unknown (the body may be on the wire) and the dispatcher reconciles instead of
resending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import aiohttp

from parley.channels.base import SendResult


class _Progress:
    """Set once the request was handed to the connection (it may reach the provider)."""

    __slots__ = ("written",)

    def __init__(self) -> None:
        self.written = False


# The progress of the send running in the current task: aiohttp sends a request in the
# task that awaits it, so the request class below finds it here.
_PROGRESS: ContextVar[_Progress | None] = ContextVar("provider_send_progress", default=None)


class _TrackedRequest(aiohttp.ClientRequest):
    """Marks the current send's progress once aiohttp has the request line, headers and
    body queued on the connection.

    This replaces an aiohttp TraceConfig, which costs six signal dispatches and their
    parameter objects per request (~5% of a worker's CPU at thousands of sends/s)."""

    async def send(self, conn: Any) -> aiohttp.ClientResponse:
        response = await super().send(conn)
        progress = _PROGRESS.get()
        if progress is not None:
            progress.written = True
        return response


# What a provider makes of the answer: (status, body, Retry-After header) -> result.
Answer = Callable[[int, bytes, str | None], SendResult]


class ProviderHttp:
    """A provider instance's HTTP client: pooled, bounded, write-aware."""

    def __init__(self, *, max_concurrency: int, timeout: float, headers: Mapping[str, str]):
        self.slots = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._timeout = timeout
        self._headers = dict(headers)
        self._session: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_concurrency, keepalive_timeout=15),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=self._timeout
                ),
                headers=self._headers,
                request_class=_TrackedRequest,
                raise_for_status=False,
            )
        return self._session

    async def send(
        self, url: str, body: bytes, headers: Mapping[str, str], service: str, answer: Answer
    ) -> SendResult:
        """POST `body` and map the answer with `answer`, or a transport failure to a
        retryable result (nothing written) or an unknown outcome (written)."""
        progress = _Progress()
        async with self.slots:
            session = self.client()
            token = _PROGRESS.set(progress)
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    return answer(response.status, payload, response.headers.get("Retry-After"))
            except aiohttp.ClientConnectorError as exc:
                return SendResult(
                    accepted=False,
                    retryable=True,
                    error_code="connect_failed",
                    error_detail=f"cannot connect to {service}: {exc}",
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                kind = "timeout" if isinstance(exc, TimeoutError) else "connection_error"
                if not progress.written:
                    return SendResult(
                        accepted=False,
                        retryable=True,
                        error_code=kind,
                        error_detail=f"request not sent: {exc!r}",
                    )
                return SendResult(
                    accepted=False,
                    outcome_unknown=True,
                    error_code=kind,
                    error_detail=f"no response after the request was sent: {exc!r}",
                )
            finally:
                _PROGRESS.reset(token)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
