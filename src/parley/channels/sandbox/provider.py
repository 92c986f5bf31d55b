"""The sandbox provider: accepts every message on any channel and reports realistic,
signed status callbacks to Parley's own webhook endpoint, so a fresh install (and the
demo) shows the full lifecycle without real provider accounts.

For each accepted message, background tasks POST to
`{public_base_url}/webhooks/sandbox/{account_id}`:

- `sent` after `sent_delay_seconds` (default 0.2: long enough for the dispatcher to
  record the provider id first, as with a real provider);
- `delivered` after `delivery_delay_seconds` (default 1.0) -- or `failed` for a
  `failure_rate` fraction of messages, drawn from an RNG seeded with `seed`;
- `read` (`opened` for email) after `read_delay_seconds` (default 2.0; null disables),
  for a `read_rate` fraction of delivered messages. Voice gets no read event.

Body: `{"id", "message_id", "status", "timestamp" (RFC 3339), "error_code", "channel"}`,
signed `X-Sandbox-Signature: sha256=<hex HMAC-SHA256(signing_secret, raw body)>`.
A callback that cannot be posted is logged and dropped: this is a sandbox.

A voice account also places live calls on a simulated telephone network
(`parley.channels.sandbox.voice`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
import orjson

from parley.channels.base import (
    Capabilities,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderContext,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.sandbox.config import SandboxSettings, parse_settings
from parley.domain.channels import Channel
from parley.domain.status import EventType

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sandbox-Signature"

# (url, body, headers) -> (status, body) of the answer: how a callback reaches Parley.
Deliver = Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]]

STATUS_EVENTS: dict[str, EventType] = {
    "queued": EventType.QUEUED,
    "sent": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "read": EventType.READ,
    "opened": EventType.OPENED,
    "clicked": EventType.CLICKED,
    "failed": EventType.FAILED,
    "bounced": EventType.BOUNCED,
}

# What a failed sandbox message reports, keyed by channel.
FAILURE_CODES: dict[Channel, tuple[str, str]] = {
    Channel.EMAIL: ("5.1.1", "mailbox does not exist"),
    Channel.SMS: ("unreachable", "destination handset unreachable"),
    Channel.WHATSAPP: ("undeliverable", "message undeliverable"),
    Channel.VOICE: ("no-answer", "call was not answered"),
}

CAPABILITIES: dict[Channel, Capabilities] = {
    Channel.EMAIL: Capabilities(supports_html=True),
    Channel.SMS: Capabilities(max_body_chars=1600, max_segments=10),
    Channel.WHATSAPP: Capabilities(max_body_chars=4096, supports_media=True),
    Channel.VOICE: Capabilities(),
}


def sign(secret: str, body: bytes) -> str:
    """The X-Sandbox-Signature header value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class SandboxProvider:
    """Accepts everything; reports sent/delivered/read via signed callbacks."""

    name: ClassVar[str] = "sandbox"

    def __init__(
        self, settings: SandboxSettings, *, channel: Channel, webhook_url: str | None
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.capabilities = CAPABILITIES[channel]
        self.webhook_url = webhook_url
        self._rng = random.Random(settings.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._local: Deliver | None = None
        self._closed = False

    async def send(self, message: OutboundMessage) -> SendResult:
        if not message.to or not message.to.strip():
            return SendResult(
                accepted=False, error_code="invalid_recipient", error_detail="recipient is empty"
            )
        if self._closed:
            return SendResult(
                accepted=False, retryable=True, error_code="closed", error_detail="provider closed"
            )
        sandbox_id = "sbx_" + uuid.uuid4().hex
        if self.settings.callbacks and self.webhook_url:
            plan = self._plan()
            task = asyncio.get_running_loop().create_task(self._report(sandbox_id, plan))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return SendResult(accepted=True, provider_message_id=sandbox_id, segments=1)

    def _plan(self) -> list[tuple[float, str, str | None]]:
        """(delay from send, status, error code) callbacks for one message."""
        s = self.settings
        plan: list[tuple[float, str, str | None]] = [(s.sent_delay, "sent", None)]
        if s.failure_rate and self._rng.random() < s.failure_rate:
            plan.append((s.delivery_delay, "failed", FAILURE_CODES[self.channel][0]))
            return plan
        plan.append((s.delivery_delay, "delivered", None))
        if (
            s.read_delay is not None
            and self.channel is not Channel.VOICE
            and (s.read_rate >= 1 or self._rng.random() < s.read_rate)
        ):
            plan.append((s.read_delay, "opened" if self.channel is Channel.EMAIL else "read", None))
        return plan

    async def _report(self, sandbox_id: str, plan: list[tuple[float, str, str | None]]) -> None:
        elapsed = 0.0
        for delay, status, error_code in plan:
            if delay > elapsed:
                await asyncio.sleep(delay - elapsed)
                elapsed = delay
            payload = {
                "id": str(uuid.uuid4()),
                "message_id": sandbox_id,
                "status": status,
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "error_code": error_code,
                "channel": str(self.channel),
            }
            await self._post(orjson.dumps(payload))

    async def _post(self, body: bytes) -> None:
        assert self.webhook_url is not None
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.settings.signing_secret, body),
        }
        await self._deliver(self.webhook_url, body, headers)

    async def _deliver(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST a signed callback; the answer's status and body (0: it could not be posted,
        logged and dropped -- this is a sandbox)."""
        if self._local is not None:
            return await self._local(url, body, headers)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status >= 300:
                    log.warning("sandbox callback answered %s (dropped)", resp.status)
                return resp.status, payload
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("sandbox callback to %s failed (dropped): %r", url, exc)
            return 0, b""

    @contextlib.contextmanager
    def delivered_by(self, deliver: Deliver) -> Iterator[None]:
        """Hand callbacks to `deliver` instead of posting them over HTTP, while the block
        runs: for the demo loader, which plays calls before any server listens."""
        previous, self._local = self._local, deliver
        try:
            yield
        finally:
            self._local = previous

    # -- webhooks ------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        given = request.header(SIGNATURE_HEADER)
        if not given:
            raise WebhookVerificationError(f"missing {SIGNATURE_HEADER} header")
        expected = sign(self.settings.signing_secret, request.body)
        if not hmac.compare_digest(expected.encode(), given.strip().encode("ascii", "replace")):
            raise WebhookVerificationError(f"{SIGNATURE_HEADER} does not match")

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        try:
            data = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            log.warning("sandbox webhook with a non-JSON body ignored")
            return []
        if not isinstance(data, dict) or not isinstance(data.get("message_id"), str):
            log.warning("sandbox webhook without message_id ignored")
            return []
        occurred_at = _timestamp(data.get("timestamp"))
        if data.get("type") == "inbound":
            return [self._inbound(data, occurred_at)]
        status = str(data.get("status") or "")
        error_code = data.get("error_code")
        return [
            DeliveryEvent(
                event_type=STATUS_EVENTS.get(status, EventType.UNKNOWN),
                provider_message_id=data["message_id"],
                provider_event_id=str(data.get("id") or f"{data['message_id']}:{status}"),
                occurred_at=occurred_at,
                provider_status=status,
                reason=_failure_reason(error_code),
                error_code=str(error_code) if error_code is not None else None,
                raw=data,
            )
        ]

    def _inbound(self, data: Mapping[str, Any], occurred_at: datetime) -> InboundMessage:
        try:
            channel = Channel(data.get("channel") or self.channel)
        except ValueError:
            channel = self.channel
        return InboundMessage(
            channel=channel,
            sender=str(data.get("from") or ""),
            recipient=str(data.get("to") or ""),
            body=str(data.get("body") or ""),
            provider_message_id=str(data["message_id"]),
            occurred_at=occurred_at,
            subject=data.get("subject") if isinstance(data.get("subject"), str) else None,
            raw=dict(data),
        )

    async def simulate_inbound(
        self, *, sender: str, body: str, recipient: str = "", subject: str | None = None
    ) -> str:
        """POST a signed inbound message (a borrower's reply) to our webhook; returns its id.

        The demo and tests use this to play the borrower.
        """
        sandbox_id = "sbx_" + uuid.uuid4().hex
        payload = {
            "id": str(uuid.uuid4()),
            "type": "inbound",
            "message_id": sandbox_id,
            "channel": str(self.channel),
            "from": sender,
            "to": recipient,
            "body": body,
            "subject": subject,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.webhook_url:
            await self._post(orjson.dumps(payload))
        return sandbox_id

    async def flush_callbacks(self) -> None:
        """Wait until every scheduled callback was posted (or dropped). For tests."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        return f"<SandboxProvider {self.channel} -> {self.webhook_url}>"


def _timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)


def _failure_reason(error_code: Any) -> str | None:
    if error_code is None:
        return None
    for code, reason in FAILURE_CODES.values():
        if code == error_code:
            return reason
    return f"sandbox error {error_code}"


def create(context: ProviderContext) -> SandboxProvider:
    settings = parse_settings(context)
    webhook_url = None
    if context.public_base_url:
        webhook_url = f"{context.public_base_url.rstrip('/')}/webhooks/sandbox/{context.account_id}"
    if Channel(context.channel) is Channel.VOICE:
        from parley.channels.sandbox.voice import SandboxVoiceProvider

        return SandboxVoiceProvider(
            settings,
            webhook_url=webhook_url,
            account_id=context.account_id,
            public_base_url=context.public_base_url,
        )
    return SandboxProvider(settings, channel=Channel(context.channel), webhook_url=webhook_url)
