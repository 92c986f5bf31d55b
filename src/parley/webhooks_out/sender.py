"""The HTTP side of a delivery: one aiohttp client per worker process, SSRF-guarded.

- The client's resolver (:class:`GuardedResolver`) checks every address a host name
  resolves to and hands aiohttp only the public ones, so the connection goes to an
  address that passed the check (no window for DNS rebinding). The DNS cache is off:
  each attempt resolves and checks afresh. aiohttp does not consult the resolver for a
  URL whose host is a literal IP, so those are checked before the request.
- Redirects are not followed (a 3xx is a failed attempt), proxies from the environment
  are ignored, the whole attempt has a short timeout, and only the first
  :data:`EXCERPT_BYTES` of the answer are read and kept.
- Nothing here logs a header: the signature must not end up in logs.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from parley.webhooks_out import targets

EXCERPT_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int | None
    body_excerpt: str | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops non-public addresses (unless the
    operator allows them); raises TargetRefused when none is left."""

    def __init__(self, allow_private: Callable[[], bool]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private():
            return results
        allowed = []
        reasons = []
        for result in results:
            address = targets.literal_address(result["host"])
            why = targets.refusal(address) if address is not None else "is not an address"
            if why is None:
                allowed.append(result)
            else:
                reasons.append(f"{result['host']} {why}")
        if not allowed:
            raise targets.TargetRefused(
                f"{host} resolves only to refused addresses ({'; '.join(reasons)}); "
                + targets.ALLOW_HINT
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class WebhookSender:
    """Posts signed bodies; created lazily in the worker's event loop, closed with it."""

    def __init__(self, allow_private: Callable[[], bool], timeout_seconds: float) -> None:
        self._allow_private = allow_private
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self._allow_private),
                use_dns_cache=False,
                limit=100,
                limit_per_host=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        started = time.monotonic()

        def outcome(status: int | None, excerpt: str | None, error: str | None) -> Outcome:
            return Outcome(status, excerpt, error, int((time.monotonic() - started) * 1000))

        try:
            _, host, _ = targets.split(url)
            literal = targets.literal_address(host)
            if literal is not None and not self._allow_private():
                targets.check_address(host, literal)
            async with self._client().post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(EXCERPT_BYTES)
                excerpt = raw.decode("utf-8", errors="replace")
                error = None
                if 300 <= response.status < 400:
                    error = "redirects are not followed (answer the webhook URL itself)"
                elif not 200 <= response.status < 300:
                    error = f"HTTP {response.status}"
                return outcome(response.status, excerpt, error)
        except targets.TargetRefused as exc:
            return outcome(None, None, f"target refused: {exc}")
        except TimeoutError:
            return outcome(None, None, f"timed out after {self._timeout:g} s")
        except aiohttp.ClientError as exc:
            return outcome(None, None, f"{type(exc).__name__}: {exc}"[:500])
        except OSError as exc:
            return outcome(None, None, f"connection failed: {exc}"[:500])

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def for_container(container: Any) -> WebhookSender:
    """The worker process's one sender (it reads the operator setting on every use)."""
    sender: WebhookSender | None = container.webhook_sender
    if sender is None:
        settings = container.settings
        sender = WebhookSender(
            lambda: bool(settings.webhooks_allow_private_targets),
            settings.webhooks_timeout_seconds,
        )
        container.webhook_sender = sender
    return sender


__all__ = ["GuardedResolver", "Outcome", "WebhookSender", "for_container"]
