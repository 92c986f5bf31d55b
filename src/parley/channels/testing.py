"""Test support for channel providers, shipped with the package (as Procrastinate ships
its in-memory connector):

- `FakeProvider`: a complete in-memory provider for dispatcher and webhook-pipeline
  tests. It records every send, answers from a script (accepted by default), can hold
  sends until released (to test concurrency and crashes mid-send), and signs/parses its
  own webhooks.
- The contract-kit vocabulary (`Outcome`, `ErrorMode`, `KitHarness`, `ContractKit`,
  `load_kit`) and the webhook fixture format (`WebhookFixture`). Every provider package
  has a `kit` module that wires the provider to its protocol peer with an injected error
  mode; `tests/contract/` runs the same checks over every registered provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import itertools
import json
import socket
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast
from urllib.parse import urlencode

from parley.channels.base import (
    Capabilities,
    ChannelProvider,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderContext,
    ProviderSpec,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.domain.channels import Channel
from parley.domain.status import EventType

# ---------------------------------------------------------------------------------------
# FakeProvider

FAKE_SIGNING_SECRET = "fake-signing-secret"  # test-only key

Scripted = SendResult | BaseException | Callable[[OutboundMessage], SendResult]


class FakeProvider:
    """An in-memory provider: records sends, returns scripted results, signs webhooks.

        fake = FakeProvider(Channel.SMS)
        fake.fail_next(retryable=True, error_code="429", retry_after=2.0)
        fake.unknown_next()               # the connection dropped after sending
        fake.raise_next(RuntimeError())   # the provider call itself blew up
        await fake.send(message)          # -> scripted results, then accepted
        fake.sent                         # every OutboundMessage passed to send()
        fake.hold(); ...; fake.release()  # park sends mid-call

    Webhooks: JSON `{"id", "message_id", "status", "timestamp", "error_code"}` (or
    `"type": "inbound"` with from/to/body), signed with `X-Fake-Signature: sha256=<hex
    HMAC-SHA256(secret, body)>`; `fake.webhook(...)` builds such a request.
    """

    name: ClassVar[str] = "fake"
    SIGNATURE_HEADER: ClassVar[str] = "X-Fake-Signature"

    def __init__(
        self,
        channel: Channel = Channel.SMS,
        *,
        capabilities: Capabilities | None = None,
        secret: str = FAKE_SIGNING_SECRET,
        latency: float = 0.0,
        account_id: str = "fake-account",
        public_base_url: str = "http://parley.test",
    ) -> None:
        self.channel = channel
        self.capabilities = capabilities or Capabilities()
        self.secret = secret
        self.latency = latency
        self.account_id = account_id
        self.public_base_url = public_base_url
        self.sent: list[OutboundMessage] = []
        self.results: list[SendResult] = []  # what each completed send returned
        self.in_flight = 0
        self.closed = False
        self._script: deque[Scripted] = deque()
        self._ids = itertools.count(1)
        self._gate: asyncio.Event | None = None

    # -- scripting -------------------------------------------------------------------

    def script(self, *outcomes: Scripted) -> None:
        """Queue what the next sends do: a SendResult, an exception to raise, or a
        callable computing the result from the message."""
        self._script.extend(outcomes)

    def fail_next(
        self,
        *,
        retryable: bool = True,
        error_code: str = "fake_error",
        error_detail: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        result = SendResult(
            accepted=False,
            retryable=retryable,
            error_code=error_code,
            error_detail=error_detail or ("temporary" if retryable else "permanent") + " failure",
            retry_after=retry_after,
        )
        self._script.extend([result] * times)

    def unknown_next(self, times: int = 1) -> None:
        result = SendResult(
            accepted=False,
            outcome_unknown=True,
            error_code="connection_lost",
            error_detail="no reply after the request was sent",
        )
        self._script.extend([result] * times)

    def raise_next(self, exc: BaseException, times: int = 1) -> None:
        self._script.extend([exc] * times)

    def hold(self) -> None:
        """Make sends wait (after being recorded) until `release()`."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    # -- the protocol ----------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.closed:
            raise RuntimeError("FakeProvider used after aclose()")
        self.sent.append(message)
        self.in_flight += 1
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            if self._gate is not None:
                await self._gate.wait()
            outcome = self._script.popleft() if self._script else None
            if isinstance(outcome, BaseException):
                raise outcome
            if callable(outcome):
                result = outcome(message)
            elif outcome is None:
                result = SendResult(
                    accepted=True, provider_message_id=f"fake_{next(self._ids)}", segments=1
                )
            else:
                result = outcome
            if result.accepted and result.provider_message_id is None:
                result = replace(result, provider_message_id=f"fake_{next(self._ids)}")
            self.results.append(result)
            return result
        finally:
            self.in_flight -= 1

    def verify_webhook(self, request: WebhookRequest) -> None:
        given = request.header(self.SIGNATURE_HEADER)
        if not given:
            raise WebhookVerificationError(f"missing {self.SIGNATURE_HEADER} header")
        if not hmac.compare_digest(self._sign(request.body).encode(), given.encode()):
            raise WebhookVerificationError(f"{self.SIGNATURE_HEADER} does not match")

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        try:
            data = json.loads(request.body)
        except ValueError:
            return []
        if not isinstance(data, dict) or not isinstance(data.get("message_id"), str):
            return []
        occurred_at = _parse_time(data.get("timestamp"))
        if data.get("type") == "inbound":
            return [
                InboundMessage(
                    channel=self.channel,
                    sender=str(data.get("from", "")),
                    recipient=str(data.get("to", "")),
                    body=str(data.get("body", "")),
                    provider_message_id=data["message_id"],
                    occurred_at=occurred_at,
                    subject=data.get("subject"),
                    raw=data,
                )
            ]
        status = str(data.get("status", ""))
        try:
            event_type = EventType(status)
        except ValueError:
            event_type = EventType.UNKNOWN
        error_code = data.get("error_code")
        return [
            DeliveryEvent(
                event_type=event_type,
                provider_message_id=data["message_id"],
                provider_event_id=str(data.get("id") or f"{data['message_id']}:{status}"),
                occurred_at=occurred_at,
                provider_status=status,
                reason=data.get("reason"),
                error_code=None if error_code is None else str(error_code),
                raw=data,
            )
        ]

    async def aclose(self) -> None:
        self.release()
        self.closed = True

    # -- helpers for tests -----------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        return f"{self.public_base_url}/webhooks/{self.name}/{self.account_id}"

    def _sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    def webhook(
        self,
        provider_message_id: str,
        status: str,
        *,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
        error_code: str | None = None,
        signed: bool = True,
    ) -> WebhookRequest:
        """A status callback for `provider_message_id`, as this provider would send it."""
        payload = {
            "id": event_id or str(uuid.uuid4()),
            "message_id": provider_message_id,
            "status": status,
            "timestamp": (occurred_at or datetime.now(UTC)).isoformat(),
            "error_code": error_code,
        }
        return self._request(payload, signed)

    def inbound_webhook(
        self, sender: str, body: str, *, recipient: str = "", signed: bool = True
    ) -> WebhookRequest:
        payload = {
            "id": str(uuid.uuid4()),
            "type": "inbound",
            "message_id": f"fake_in_{uuid.uuid4().hex}",
            "from": sender,
            "to": recipient,
            "body": body,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        return self._request(payload, signed)

    def _request(self, payload: Mapping[str, Any], signed: bool) -> WebhookRequest:
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        if signed:
            headers[self.SIGNATURE_HEADER.lower()] = self._sign(body)
        return WebhookRequest(method="POST", url=self.webhook_url, headers=headers, body=body)

    @classmethod
    def spec(cls) -> ProviderSpec:
        """A ProviderSpec building FakeProviders, for tests that go through a registry."""

        def factory(context: ProviderContext) -> FakeProvider:
            return cls(
                Channel(context.channel),
                secret=str(context.secrets.get("signing_secret", FAKE_SIGNING_SECRET)),
                latency=float(context.config.get("latency", 0.0)),
                account_id=context.account_id,
                public_base_url=context.public_base_url,
            )

        return ProviderSpec(
            name=cls.name,
            channels=frozenset(Channel),
            factory=factory,
            config_fields={"latency": "seconds each send takes (default 0)"},
            secret_fields={"signing_secret": "HMAC key for X-Fake-Signature"},
        )


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------
# Contract kits


class Outcome(StrEnum):
    """What a send came to, from the dispatcher's point of view."""

    ACCEPTED = "accepted"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"  # may or may not have been sent: reconcile, never blindly retry


def outcome_of(result: SendResult) -> Outcome:
    if result.accepted:
        return Outcome.ACCEPTED
    if result.outcome_unknown:
        return Outcome.UNKNOWN
    return Outcome.RETRYABLE if result.retryable else Outcome.PERMANENT


@dataclass(frozen=True, slots=True)
class ErrorMode:
    """What a kit's injected error must come to."""

    expect: Outcome
    error_code: str | None = None  # the exact error_code, when the mode pins one
    retry_after: float | None = None  # the retry_after the provider must pass on


@dataclass(slots=True)
class KitHarness:
    """A provider wired to its protocol peer, as yielded by a kit's `wired()`."""

    provider: ChannelProvider
    template: OutboundMessage  # a message this provider can send successfully
    peer: Any = None
    # Make the peer send its status callbacks for everything accepted so far and
    # return the webhook requests that arrived; None for providers without webhooks.
    collect_callbacks: Callable[[], Awaitable[list[WebhookRequest]]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def message(self, **changes: Any) -> OutboundMessage:
        changes.setdefault("message_id", str(uuid.uuid4()))
        return replace(self.template, **changes)


class ContractKit(Protocol):
    """What `parley.channels.<name>.kit` provides (a module satisfies this)."""

    NAME: str
    HAS_WEBHOOKS: bool
    CONFIG: Mapping[str, Any]  # a complete, valid account configuration
    SECRETS: Mapping[str, str]  # secrets that go with CONFIG
    ERROR_MODES: Mapping[str, ErrorMode]

    def wired(self, mode: str | None = None) -> AbstractAsyncContextManager[KitHarness]:
        """Start the peer, inject `mode` (None: behave), yield the wired provider."""
        ...

    def provider(self, secrets: Mapping[str, str] | None = None) -> ChannelProvider:
        """A provider not connected to anything, for webhook checks."""
        ...

    def sign(
        self, request: WebhookRequest, secrets: Mapping[str, str] | None = None
    ) -> WebhookRequest:
        """`request` with the provider's signature headers set (unchanged without webhooks)."""
        ...


def kit_provider(
    spec: ProviderSpec,
    *,
    account_id: str,
    channel: Channel,
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    public_base_url: str = "https://parley.example.com",
) -> ChannelProvider:
    """Build a provider from its spec the way the registry does, for contract kits."""
    provider: ChannelProvider = spec.factory(
        ProviderContext(
            account_id=account_id,
            channel=channel,
            config=dict(config),
            secrets=dict(secrets),
            public_base_url=public_base_url,
        )
    )
    return provider


def load_kit(name: str) -> ContractKit:
    """The contract kit of registered provider `name`."""
    from parley.channels.registry import PROVIDERS

    return cast(ContractKit, importlib.import_module(PROVIDERS[name] + ".kit"))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for 'connection refused' modes)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------------------------------
# Webhook fixtures


@dataclass(frozen=True, slots=True)
class WebhookFixture:
    """A captured-style provider callback from `tests/fixtures/providers/<name>/*.json`.

    File shape: {"description", "method", "url", "headers", one of "form" (an object or
    [name, value] pairs), "json" or "body" (the raw text, when a signature covers the
    exact bytes), "secrets", "expected": [{"type": an EventType value or "inbound", plus
    any attribute of the parsed item to compare, e.g. "provider_message_id",
    "error_code", "reason", "provider_event_id", "body", "occurred_at" (ISO 8601)}]}.
    """

    path: Path
    description: str
    request: WebhookRequest
    secrets: Mapping[str, str]
    expected: list[dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> WebhookFixture:
        data = json.loads(path.read_text(encoding="utf-8"))
        headers = {k.lower(): v for k, v in data.get("headers", {}).items()}
        if "form" in data:
            form = data["form"]
            pairs = form.items() if isinstance(form, dict) else [tuple(p) for p in form]
            body = urlencode(list(pairs)).encode()
            headers.setdefault("content-type", "application/x-www-form-urlencoded")
        elif "json" in data:
            body = json.dumps(data["json"], separators=(",", ":")).encode()
            headers.setdefault("content-type", "application/json")
        else:
            body = str(data.get("body", "")).encode()
        request = WebhookRequest(
            method=data.get("method", "POST"), url=data["url"], headers=headers, body=body
        )
        expected = [e if isinstance(e, dict) else {"type": e} for e in data["expected"]]
        return cls(path, data.get("description", path.stem), request, data["secrets"], expected)


def load_fixtures(directory: Path) -> list[WebhookFixture]:
    return [WebhookFixture.load(p) for p in sorted(directory.glob("*.json"))]


def kinds(items: Iterable[DeliveryEvent | InboundMessage]) -> list[str]:
    """Each parsed item's kind: its EventType value, or "inbound"."""
    return [i.event_type.value if isinstance(i, DeliveryEvent) else "inbound" for i in items]
