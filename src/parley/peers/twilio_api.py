"""A local HTTP server speaking the Twilio Messages API, and its status callbacks.

`POST /2010-04-01/Accounts/{sid}/Messages.json` behaves like Twilio's: basic auth
(401/20003), form validation (21604 missing To, 21211 invalid To, 21603 missing From,
21602 missing Body, 21617 too long, 21610 opted out) and a 201 JSON body shaped like
Twilio's (`sid` "SM" + 32 hex, `status` "queued", `num_segments`...). It can be made to
misbehave:

- `rate_429` / `rate_5xx`: that fraction of requests answered 429 (with Retry-After) or
  503, drawn from a seeded RNG, so a run is reproducible;
- `rate_limit_per_second`: a per-account token bucket; requests over it get 429 and are
  counted in `stats.rate_limited` -- a benchmark asserts we caused none;
- `fail_next()` / `drop_next()`: script exact answers, or accept a message and close
  the connection without answering (the client cannot know it was sent).

Accepted messages are recorded. `deliver_callbacks()` then POSTs signed status callbacks
(`sent`, `delivered`; `undelivered` + ErrorCode for `failing_numbers`) to each message's
StatusCallback, optionally shuffled and duplicated, signed exactly as Twilio signs them
(`parley.channels.twilio.signature`, which tests check against the official
`twilio.request_validator.RequestValidator`). `auto_callbacks=True` sends them by itself
after `callback_delay` seconds. `send_inbound()` posts an inbound-SMS webhook.

    async with TwilioApiPeer() as peer:      # peer.base_url -> "http://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import math
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
from aiohttp import web

from parley.channels.twilio.signature import compute_signature
from parley.peers.background import Peer

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_SID = "AC" + "7e57" * 8
DEFAULT_AUTH_TOKEN = "parley-test-auth-token"
API_VERSION = "2010-04-01"

_E164 = re.compile(r"(whatsapp:)?\+[1-9]\d{6,14}\Z")
_MESSAGES_PATH = "/2010-04-01/Accounts/{account_sid}/Messages.json"
_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def count_segments(body: str) -> int:
    """SMS segments as Twilio bills them: GSM-7 160/153, else UCS-2 70/67 UTF-16 units."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in body):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


# One status callback to post: (StatusCallback URL, form parameters, account SID).
_Callback = tuple[str, dict[str, str], str]


@dataclass(frozen=True, slots=True)
class PeerMessage:
    sid: str
    account_sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    num_segments: int
    created_at: datetime
    form: dict[str, str]


@dataclass(slots=True)
class PeerStats:
    requests: int = 0
    accepted: int = 0
    unauthorized: int = 0
    invalid: int = 0  # 4xx validation errors (21604, 21211, 21610, ...)
    rate_limited: int = 0  # 429s from the token bucket: the client went too fast
    injected_429: int = 0
    injected_5xx: int = 0
    scripted: int = 0
    dropped: int = 0
    callbacks_posted: int = 0
    callbacks_failed: int = 0
    callback_statuses: Counter[int] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0  # most create requests being handled at once


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(frozen=True, slots=True)
class _Scripted:
    status: int  # 0: drop the connection; -1: accept, then answer only after `stall`
    code: int | None = None
    message: str | None = None
    retry_after: float | None = None
    accept: bool = True  # for drops: record the message before dropping
    stall: float = 0.0


class TwilioApiPeer(Peer):
    """A Twilio Messages API look-alike on `host:port` (port 0 picks a free one)."""

    thread_name = "twilio-api-peer"

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_429: float = 0.0,
        rate_5xx: float = 0.0,
        retry_after: float = 1,
        seed: int = 0,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: float | None = None,
        opted_out: Iterable[str] = (),
        failing_numbers: Mapping[str, str] | None = None,
        auto_callbacks: bool = False,
        callback_delay: float = 0.0,
        keep_messages: bool = True,
        latency: float = 0.0,
    ) -> None:
        self.accounts = dict(accounts or {DEFAULT_ACCOUNT_SID: DEFAULT_AUTH_TOKEN})
        self.host = host
        self.port = port
        self.rate_429 = rate_429
        self.rate_5xx = rate_5xx
        self.retry_after = retry_after
        self.rate_limit_per_second = rate_limit_per_second
        self.rate_limit_burst = rate_limit_burst or rate_limit_per_second
        self.opted_out = set(opted_out)
        self.failing_numbers = dict(failing_numbers or {})
        self.auto_callbacks = auto_callbacks
        self.callback_delay = callback_delay
        self.keep_messages = keep_messages
        self.latency = latency  # seconds every create request takes, like a remote API
        self.messages: list[PeerMessage] = []
        self.by_sid: dict[str, PeerMessage] = {}
        self.status_by_sid: dict[str, str] = {}
        self.stats = PeerStats()
        self._rng = random.Random(seed)
        self._buckets: dict[str, _Bucket] = {}
        self._script: list[_Scripted] = []
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def messages_url(self, account_sid: str = DEFAULT_ACCOUNT_SID) -> str:
        return self.base_url + _MESSAGES_PATH.format(account_sid=account_sid)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> TwilioApiPeer:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json", self._fetch)
        # A short shutdown_timeout: stalled handlers must not hold up stop().
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the port picked when 0 was asked
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting -------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `times` create requests with `status` and Twilio error `code`."""
        self._script.extend([_Scripted(status, code, message, retry_after)] * times)

    def drop_next(self, times: int = 1, *, accept: bool = True) -> None:
        """Close the next `times` create requests' connections without answering;
        with `accept`, the message is recorded (and will get callbacks) first."""
        self._script.extend([_Scripted(0, accept=accept)] * times)

    def stall_next(self, seconds: float, times: int = 1) -> None:
        """Accept the next `times` messages but answer only after `seconds` (so a client
        with a shorter timeout gives up after its request was processed)."""
        self._script.extend([_Scripted(-1, stall=seconds)] * times)

    # -- the API ---------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return await self._handle_create(request)
        finally:
            self.stats.in_flight -= 1

    async def _handle_create(self, request: web.Request) -> web.StreamResponse:
        account_sid = request.match_info["account_sid"]
        if not self._authorized(request, account_sid):
            self.stats.unauthorized += 1
            return _error(401, 20003, "Authenticate")
        form = dict(parse_qsl(await request.text(), keep_blank_values=True))

        if self._script:
            scripted = self._script.pop(0)
            self.stats.scripted += 1
            if scripted.status == -1:
                problem = self._validate(form)
                if problem is not None:
                    return _error(400, *problem)
                message = self._accept(account_sid, form)
                await asyncio.sleep(scripted.stall)
                return web.Response(
                    status=201,
                    body=orjson.dumps(self._resource(message)),
                    content_type="application/json",
                )
            if scripted.status == 0:
                self.stats.dropped += 1
                if scripted.accept and self._validate(form) is None:
                    self._accept(account_sid, form)
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            return _error(
                scripted.status,
                scripted.code or scripted.status,
                scripted.message or f"scripted {scripted.status}",
                retry_after=scripted.retry_after,
            )

        if self.rate_limit_per_second and not self._take_token(account_sid):
            self.stats.rate_limited += 1
            bucket = self._buckets[account_sid]
            wait = (1 - bucket.tokens) / self.rate_limit_per_second
            return _error(429, 20429, "Too Many Requests", retry_after=max(1, math.ceil(wait)))
        if self.rate_429 and self._rng.random() < self.rate_429:
            self.stats.injected_429 += 1
            return _error(429, 20429, "Too Many Requests", retry_after=self.retry_after)
        if self.rate_5xx and self._rng.random() < self.rate_5xx:
            self.stats.injected_5xx += 1
            return _error(503, 20503, "Service Unavailable")

        problem = self._validate(form)
        if problem is not None:
            self.stats.invalid += 1
            return _error(400, *problem)
        message = self._accept(account_sid, form)
        return web.Response(
            status=201, body=orjson.dumps(self._resource(message)), content_type="application/json"
        )

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        account_sid = request.match_info["account_sid"]
        if not self._authorized(request, account_sid):
            return _error(401, 20003, "Authenticate")
        message = self.by_sid.get(request.match_info["sid"])
        if message is None or message.account_sid != account_sid:
            return _error(404, 20404, "The requested resource was not found")
        return web.Response(
            body=orjson.dumps(self._resource(message)), content_type="application/json"
        )

    def _authorized(self, request: web.Request, account_sid: str) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        token = self.accounts.get(user)
        return user == account_sid and token is not None and token == password

    def _take_token(self, account_sid: str) -> bool:
        rate = self.rate_limit_per_second or 0.0
        burst = self.rate_limit_burst or rate
        now = time.monotonic()
        bucket = self._buckets.setdefault(account_sid, _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    def _validate(self, form: Mapping[str, str]) -> tuple[int, str] | None:
        to = form.get("To", "")
        if not to:
            return 21604, "A 'To' phone number is required."
        if not _E164.match(to):
            return 21211, f"Invalid 'To' Phone Number: {to}"
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return 21603, "A 'From' phone number is required."
        body = form.get("Body", "")
        if not body and not form.get("MediaUrl"):
            return 21602, "Message body is required."
        if len(body) > 1600:
            return 21617, "The concatenated message body exceeds the 1600 character limit."
        if to in self.opted_out:
            return 21610, "Attempt to send to unsubscribed recipient"
        return None

    def _accept(self, account_sid: str, form: Mapping[str, str]) -> PeerMessage:
        message = PeerMessage(
            sid="SM" + uuid.uuid4().hex,
            account_sid=account_sid,
            to=form["To"],
            from_=form.get("From"),
            messaging_service_sid=form.get("MessagingServiceSid"),
            body=form.get("Body", ""),
            status_callback=form.get("StatusCallback"),
            num_segments=count_segments(form.get("Body", "")),
            created_at=datetime.now(UTC),
            form=dict(form),
        )
        self.stats.accepted += 1
        self.status_by_sid[message.sid] = "accepted" if message.from_ is None else "queued"
        if self.keep_messages or self.auto_callbacks:
            self.messages.append(message)
            self.by_sid[message.sid] = message
        if self.auto_callbacks and message.status_callback:
            task = asyncio.get_running_loop().create_task(self._auto_callbacks(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return message

    def _resource(self, message: PeerMessage) -> dict[str, Any]:
        created = format_datetime(message.created_at)
        path = f"/2010-04-01/Accounts/{message.account_sid}/Messages/{message.sid}"
        return {
            "account_sid": message.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": message.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(message.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": self.status_by_sid.get(message.sid, "queued"),
            "subresource_uris": {"media": path + "/Media.json"},
            "to": message.to,
            "uri": path + ".json",
        }

    # -- callbacks -------------------------------------------------------------------

    def outcome_statuses(self, message: PeerMessage) -> list[tuple[str, str | None]]:
        """The (status, ErrorCode) callbacks this message gets, in the order they happen."""
        error = self.failing_numbers.get(message.to)
        if error is not None:
            return [("sent", None), ("undelivered", error)]
        return [("sent", None), ("delivered", None)]

    def callback_params(
        self, message: PeerMessage, status: str, error_code: str | None = None
    ) -> dict[str, str]:
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_ or "",
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if message.messaging_service_sid:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if error_code:
            params["ErrorCode"] = error_code
        if status in ("delivered", "undelivered"):
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        return params

    def signed_request(
        self, url: str, params: Mapping[str, str], account_sid: str = DEFAULT_ACCOUNT_SID
    ) -> tuple[dict[str, str], bytes]:
        """Headers and form body of a webhook POST to `url`, signed as Twilio signs."""
        token = self.accounts[account_sid]
        body = urlencode(list(params.items())).encode()
        idempotency = hashlib.sha256(
            (url + "|" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))).encode()
        ).hexdigest()[:32]
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": compute_signature(token, url, params),
            # The same callback re-sent carries the same token, as Twilio's retries do.
            "I-Twilio-Idempotency-Token": idempotency,
            "User-Agent": "TwilioProxy/1.1",
        }
        return headers, body

    async def _post(self, url: str, params: Mapping[str, str], account_sid: str) -> int:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        headers, body = self.signed_request(url, params, account_sid)
        try:
            async with self._client.post(url, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.callbacks_failed += 1
            log.warning("status callback to %s failed: %r", url, exc)
            return 0
        self.stats.callbacks_posted += 1
        self.stats.callback_statuses[status] += 1
        return status

    async def _auto_callbacks(self, message: PeerMessage) -> None:
        assert message.status_callback is not None
        for status, error in self.outcome_statuses(message):
            if self.callback_delay:
                await asyncio.sleep(self.callback_delay)
            self.status_by_sid[message.sid] = status
            params = self.callback_params(message, status, error)
            await self._post(message.status_callback, params, message.account_sid)

    async def deliver_callbacks(
        self,
        *,
        messages: Sequence[PeerMessage] | None = None,
        shuffle: bool = False,
        duplicate_rate: float = 0.0,
        seed: int = 0,
        concurrency: int = 16,
    ) -> int:
        """POST every recorded message's status callbacks; returns how many were posted.

        `shuffle` sends all callbacks in random order (a `delivered` may precede its
        `sent`); `duplicate_rate` re-sends that fraction of callbacks a second time.
        """
        rng = random.Random(seed)
        jobs: list[_Callback] = []
        for message in self.messages if messages is None else messages:
            if not message.status_callback:
                continue
            for status, error in self.outcome_statuses(message):
                params = self.callback_params(message, status, error)
                jobs.append((message.status_callback, params, message.account_sid))
                self.status_by_sid[message.sid] = status
        if duplicate_rate:
            jobs += [job for job in jobs if rng.random() < duplicate_rate]
        if shuffle:
            rng.shuffle(jobs)
        if not shuffle:
            # Keep each message's callbacks in order while still sending concurrently.
            return await self._post_ordered(jobs, concurrency)
        slots = asyncio.Semaphore(concurrency)

        async def post(job: _Callback) -> int:
            async with slots:
                return await self._post(*job)

        statuses = await asyncio.gather(*(post(job) for job in jobs))
        return sum(1 for status in statuses if status)

    async def _post_ordered(self, jobs: list[_Callback], concurrency: int) -> int:
        per_message: dict[str, list[_Callback]] = {}
        for job in jobs:
            per_message.setdefault(job[1]["MessageSid"], []).append(job)
        queue: asyncio.Queue[list[_Callback]] = asyncio.Queue()
        for chain in per_message.values():
            queue.put_nowait(chain)
        posted = 0

        async def worker() -> None:
            nonlocal posted
            while not queue.empty():
                for job in queue.get_nowait():
                    if await self._post(*job):
                        posted += 1

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return posted

    async def send_inbound(
        self,
        url: str,
        *,
        from_: str,
        to: str,
        body: str,
        account_sid: str = DEFAULT_ACCOUNT_SID,
    ) -> tuple[str, int]:
        """POST an inbound-SMS webhook to `url`; returns (MessageSid, HTTP status)."""
        sid = "SM" + uuid.uuid4().hex
        params = {
            "AccountSid": account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(count_segments(body)),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
        }
        return sid, await self._post(url, params, account_sid)


def _error(
    status: int, code: int, message: str, *, retry_after: float | None = None
) -> web.Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )
