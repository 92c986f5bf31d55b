"""A local HTTP server speaking the WhatsApp Cloud API (Graph API shape), and Meta's
signed webhooks back to the business.

- `POST /{version}/{phone_number_id}/messages`: bearer auth (401, code 190), payload
  validation like Meta's (100 invalid parameter, 131009 bad recipient, 132001 template
  missing, 132000 parameter count, 131051 unsupported type, 131026 undeliverable for
  `undeliverable_numbers`), answering `{"messaging_product", "contacts", "messages":
  [{"id": "wamid..."}]}`. Errors use Meta's error JSON: `{"error": {"message", "type",
  "code", "error_data": {"messaging_product", "details"}, "fbtrace_id"}}`.
- `GET /{version}/{waba_id}/message_templates?limit=&after=`: the templates in
  `self.templates`, paged with cursors like the Graph API.
- `GET /{version}/{media_id}`: an inbound media item's metadata (`url`, `mime_type`,
  `sha256`, `file_size`); `GET /whatsapp-media/{media_id}` (bearer auth): its bytes.
- `fail_next(status, code)` / `drop_next()`: script exact answers, or accept a message
  and close the connection without answering.
- With `enforce_window=True`, a free-form message to a number that has not written in
  the last 24 hours is accepted and then fails with 131047 in its status webhook, as
  Meta does.

`deliver_callbacks()` posts `sent` and `delivered` (or `failed` with `errors[].code`)
for every accepted message to `webhook_url`, signed `X-Hub-Signature-256: sha256=<hex
HMAC-SHA256(app_secret, raw body)>`. `send_inbound()` simulates a customer's message of
any kind; `send_template_status()` a template review result.

    async with WhatsAppApiPeer(webhook_url=...) as peer:   # peer.base_url
        ...
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from parley.channels.whatsapp.webhooks import signature
from parley.peers.background import Peer

log = logging.getLogger(__name__)

DEFAULT_ACCESS_TOKEN = "parley-test-whatsapp-token"
DEFAULT_APP_SECRET = "parley-test-app-secret"
DEFAULT_PHONE_NUMBER_ID = "106540352242922"
DEFAULT_WABA_ID = "102290129340398"
DEFAULT_DISPLAY_NUMBER = "15550783881"
API_VERSION = "v21.0"
WINDOW = timedelta(hours=24)

_WA_ID = re.compile(r"[1-9]\d{6,14}\Z")
_MEDIA_KINDS = frozenset({"image", "document", "audio", "video", "sticker"})
_SESSION_TYPES = frozenset({"text", "image", "document", "interactive", "audio", "video"})


@dataclass(frozen=True, slots=True)
class PeerTemplate:
    name: str
    language: str
    status: str = "APPROVED"
    category: str = "UTILITY"
    body: str = "Hello {{1}}"
    id: str = field(default_factory=lambda: str(uuid.uuid4().int)[:15])
    rejected_reason: str | None = None

    @property
    def parameter_count(self) -> int:
        return len(set(re.findall(r"\{\{(\d+)\}\}", self.body)))

    def resource(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "id": self.id,
            "rejected_reason": self.rejected_reason or "NONE",
            "components": [{"type": "BODY", "text": self.body}],
        }


@dataclass(frozen=True, slots=True)
class PeerMessage:
    wamid: str
    to: str
    type: str
    payload: dict[str, Any]
    created_at: datetime
    failure: str | None  # the error code its status webhook will carry, if it fails


@dataclass(slots=True)
class PeerStats:
    requests: int = 0
    accepted: int = 0
    unauthorized: int = 0
    invalid: int = 0
    scripted: int = 0
    dropped: int = 0
    callbacks_posted: int = 0
    callbacks_failed: int = 0
    callback_statuses: Counter[int] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Scripted:
    status: int  # 0: drop the connection
    code: int | None = None
    message: str | None = None
    accept: bool = True


class WhatsAppApiPeer(Peer):
    """A Graph API look-alike for WhatsApp on `host:port` (port 0 picks a free one)."""

    thread_name = "whatsapp-api-peer"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        app_secret: str = DEFAULT_APP_SECRET,
        phone_number_id: str = DEFAULT_PHONE_NUMBER_ID,
        waba_id: str = DEFAULT_WABA_ID,
        display_number: str = DEFAULT_DISPLAY_NUMBER,
        webhook_url: str | None = None,
        templates: Iterable[PeerTemplate] = (),
        undeliverable_numbers: Iterable[str] = (),
        enforce_window: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.access_token = access_token
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.display_number = display_number
        self.webhook_url = webhook_url
        self.templates = list(templates)
        self.undeliverable_numbers = {n.lstrip("+") for n in undeliverable_numbers}
        self.enforce_window = enforce_window
        self.last_inbound: dict[str, datetime] = {}  # wa_id -> when the customer last wrote
        self.messages: list[PeerMessage] = []
        self.stats = PeerStats()
        self.template_requests: list[dict[str, str]] = []
        self.media: dict[str, tuple[bytes, str]] = {}  # media id -> (content, mime type)
        self._script: list[_Scripted] = []
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> WhatsAppApiPeer:
        app = web.Application()
        app.router.add_post("/{version}/{phone_number_id}/messages", self._create)
        app.router.add_get("/{version}/{waba_id}/message_templates", self._templates)
        app.router.add_get("/whatsapp-media/{media_id}", self._media_download)
        app.router.add_get("/{version}/{media_id}", self._media_metadata)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- scripting -------------------------------------------------------------------

    def fail_next(self, status: int, code: int, message: str | None = None, times: int = 1) -> None:
        """Answer the next `times` sends with `status` and Meta error `code`."""
        self._script.extend([_Scripted(status, code, message)] * times)

    def drop_next(self, times: int = 1, *, accept: bool = True) -> None:
        """Close the next sends' connections without answering (recording them first)."""
        self._script.extend([_Scripted(0, accept=accept)] * times)

    # -- the API ---------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.access_token}"

    async def _create(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        if not self._authorized(request):
            self.stats.unauthorized += 1
            return _error(401, 190, "Invalid OAuth access token.", "OAuthException")
        if request.match_info["phone_number_id"] != self.phone_number_id:
            return _error(400, 100, "Unsupported post request: unknown phone number id")
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, 100, "Invalid parameter: the body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, 100, "Invalid parameter: the body must be an object")
        if self._script:
            scripted = self._script.pop(0)
            self.stats.scripted += 1
            if scripted.status == 0:
                self.stats.dropped += 1
                if scripted.accept and self._validate(payload) is None:
                    self._accept(payload)
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            return _error(
                scripted.status,
                scripted.code or scripted.status,
                scripted.message or f"scripted error {scripted.code}",
            )
        problem = self._validate(payload)
        if problem is not None:
            self.stats.invalid += 1
            return _error(400, *problem)
        message = self._accept(payload)
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": message.to, "wa_id": message.to}],
                "messages": [{"id": message.wamid}],
            }
        )

    def _validate(self, payload: Mapping[str, Any]) -> tuple[int, str] | None:
        if payload.get("messaging_product") != "whatsapp":
            return 100, "Invalid parameter: messaging_product must be whatsapp"
        to = str(payload.get("to") or "")
        if not _WA_ID.match(to):
            return 131009, f"Parameter value is not valid: 'to' {to!r}"
        kind = payload.get("type")
        part = payload.get(str(kind))
        if not isinstance(part, dict):
            return 100, f"Invalid parameter: missing {kind!r} object"
        if kind == "text":
            body = part.get("body")
            if not isinstance(body, str) or not body or len(body) > 4096:
                return 100, "Invalid parameter: text.body must be 1-4096 characters"
        elif kind == "template":
            return self._validate_template(part)
        elif kind in ("image", "document"):
            if not isinstance(part.get("link"), str) and not part.get("id"):
                return 100, f"Invalid parameter: {kind} needs a link or an id"
            if len(str(part.get("caption") or "")) > 1024:
                return 100, "Invalid parameter: caption longer than 1024 characters"
        elif kind == "interactive":
            buttons = (part.get("action") or {}).get("buttons") or []
            if not 1 <= len(buttons) <= 3:
                return 131009, "Parameter value is not valid: 1 to 3 buttons"
            for button in buttons:
                title = str((button.get("reply") or {}).get("title") or "")
                if not 1 <= len(title) <= 20:
                    return 131009, "Parameter value is not valid: button title 1-20 characters"
        else:
            return 131051, f"Unsupported message type: {kind!r}"
        return None

    def _validate_template(self, part: Mapping[str, Any]) -> tuple[int, str] | None:
        name = part.get("name")
        language = (part.get("language") or {}).get("code")
        template = next(
            (t for t in self.templates if t.name == name and t.language == language), None
        )
        if template is None:
            return 132001, f"Template name does not exist in the translation: {name} ({language})"
        if template.status == "PAUSED":
            return 132015, "Template is paused"
        if template.status != "APPROVED":
            return 132016, f"Template is {template.status.lower()}"
        count = sum(
            len(c.get("parameters") or [])
            for c in part.get("components") or []
            if c.get("type") == "body"
        )
        if count != template.parameter_count:
            return 132000, (
                f"Number of parameters does not match the expected number of params: "
                f"expected {template.parameter_count}, got {count}"
            )
        return None

    def _accept(self, payload: dict[str, Any]) -> PeerMessage:
        to = str(payload["to"])
        kind = str(payload["type"])
        failure = None
        if to in self.undeliverable_numbers:
            failure = "131026"
        elif self.enforce_window and kind in _SESSION_TYPES and not self.window_open(to):
            failure = "131047"
        message = PeerMessage(
            wamid="wamid." + uuid.uuid4().hex.upper(),
            to=to,
            type=kind,
            payload=payload,
            created_at=datetime.now(UTC),
            failure=failure,
        )
        self.stats.accepted += 1
        self.messages.append(message)
        return message

    def window_open(self, wa_id: str) -> bool:
        last = self.last_inbound.get(wa_id.lstrip("+"))
        return last is not None and datetime.now(UTC) - last < WINDOW

    async def _templates(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 190, "Invalid OAuth access token.", "OAuthException")
        if request.match_info["waba_id"] != self.waba_id:
            return _error(400, 100, "Unsupported get request: unknown WhatsApp Business Account")
        self.template_requests.append(dict(request.query))
        try:
            limit = max(1, min(int(request.query.get("limit", "25")), 1000))
            start = int(request.query.get("after", "0"))
        except ValueError:
            return _error(400, 100, "Invalid parameter: limit/after")
        page = self.templates[start : start + limit]
        body: dict[str, Any] = {
            "data": [t.resource() for t in page],
            "paging": {"cursors": {"before": str(start), "after": str(start + len(page))}},
        }
        if start + limit < len(self.templates):
            body["paging"]["next"] = (
                f"{self.base_url}{request.path}?limit={limit}&after={start + len(page)}"
            )
        return web.json_response(body)

    async def _media_metadata(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 190, "Invalid OAuth access token.", "OAuthException")
        media_id = request.match_info["media_id"]
        item = self.media.get(media_id)
        if item is None:
            return _error(404, 100, f"Unsupported get request: unknown media {media_id}")
        content, mime_type = item
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self.base_url}/whatsapp-media/{media_id}",
                "mime_type": mime_type,
                "sha256": hashlib.sha256(content).hexdigest(),
                "file_size": len(content),
                "id": media_id,
            }
        )

    async def _media_download(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _error(401, 190, "Invalid OAuth access token.", "OAuthException")
        item = self.media.get(request.match_info["media_id"])
        if item is None:
            return web.Response(status=404)
        return web.Response(body=item[0], content_type=item[1].split(";")[0])

    # -- webhooks to the business ----------------------------------------------------

    def envelope(self, value: dict[str, Any], field_name: str = "messages") -> dict[str, Any]:
        if field_name == "messages":
            value = {
                "messaging_product": "whatsapp",
                "metadata": {
                    "display_phone_number": self.display_number,
                    "phone_number_id": self.phone_number_id,
                },
                **value,
            }
        return {
            "object": "whatsapp_business_account",
            "entry": [{"id": self.waba_id, "changes": [{"value": value, "field": field_name}]}],
        }

    def signed(self, document: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        body = orjson.dumps(document)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature(self.app_secret, body),
            "User-Agent": "facebookexternalua",
        }
        return headers, body

    async def post(self, document: Mapping[str, Any], url: str | None = None) -> int:
        target = url or self.webhook_url
        if target is None:
            raise RuntimeError("the peer has no webhook_url to post to")
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers, body = self.signed(document)
        try:
            async with self._client.post(target, data=body, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.callbacks_failed += 1
            log.warning("webhook to %s failed: %r", target, exc)
            return 0
        self.stats.callbacks_posted += 1
        self.stats.callback_statuses[status] += 1
        return status

    def status_value(self, message: PeerMessage, status: str) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": message.wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": message.to,
        }
        if status in ("sent", "delivered"):
            item["conversation"] = {
                "id": uuid.uuid4().hex,
                "origin": {"type": "utility" if message.type == "template" else "service"},
            }
            item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
        if status == "failed" and message.failure:
            item["errors"] = [_webhook_error(message.failure)]
        return {"statuses": [item]}

    def outcome_statuses(self, message: PeerMessage) -> list[str]:
        return ["failed"] if message.failure else ["sent", "delivered"]

    async def deliver_callbacks(self, *, read: bool = False) -> int:
        """POST every accepted message's status webhooks, in order; how many were posted."""
        posted = 0
        for message in list(self.messages):
            statuses = self.outcome_statuses(message)
            if read and not message.failure:
                statuses.append("read")
            for status in statuses:
                if await self.post(self.envelope(self.status_value(message, status))):
                    posted += 1
        return posted

    async def send_inbound(
        self,
        from_: str,
        kind: str = "text",
        *,
        text: str = "",
        caption: str | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
        payload: str | None = None,
        context_id: str | None = None,
        name: str = "Pat Doe",
        url: str | None = None,
        content: bytes | None = None,
        part: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """POST a customer's message of `kind`: text, button, interactive, a media kind
        (image, document, audio, video, sticker; `content` is what the media download
        serves), or any other kind with its object given as `part` (location, reaction,
        ...). Returns (wamid, HTTP status). Opens the window."""
        wa_id = from_.lstrip("+")
        wamid = "wamid." + uuid.uuid4().hex.upper()
        message: dict[str, Any] = {
            "from": wa_id,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": kind,
        }
        if kind == "text":
            message["text"] = {"body": text}
        elif kind == "button":
            message["button"] = {"payload": payload or text, "text": text}
        elif kind == "interactive":
            message["interactive"] = {
                "type": "button_reply",
                "button_reply": {"id": payload or "reply", "title": text},
            }
        elif kind not in _MEDIA_KINDS:
            message[kind] = part or {}
        else:
            media_id = str(uuid.uuid4().int)[:16]
            data = content if content is not None else f"{kind} {media_id}".encode()
            media: dict[str, Any] = {
                "id": media_id,
                "mime_type": mime_type or _default_mime(kind),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            self.media[media_id] = (data, media["mime_type"])
            if caption is not None:
                media["caption"] = caption
            if filename is not None:
                media["filename"] = filename
            message[kind] = media
        if context_id is not None:
            message["context"] = {"from": self.display_number, "id": context_id}
        self.last_inbound[wa_id] = datetime.now(UTC)
        value = {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [message]}
        return wamid, await self.post(self.envelope(value), url)

    async def send_template_status(
        self, name: str, language: str, event: str, reason: str | None = None
    ) -> int:
        template = next(
            (t for t in self.templates if t.name == name and t.language == language), None
        )
        value = {
            "event": event,
            "message_template_id": int(template.id) if template else 0,
            "message_template_name": name,
            "message_template_language": language,
            "reason": reason or "NONE",
        }
        return await self.post(self.envelope(value, "message_template_status_update"))


_ERROR_TITLES = {
    "131047": "Re-engagement message",
    "131026": "Message undeliverable",
    "130429": "Rate limit hit",
    "131056": "(Business Account, Consumer Account) pair rate limit hit",
}


def _webhook_error(code: str) -> dict[str, Any]:
    title = _ERROR_TITLES.get(code, "Unknown error")
    return {
        "code": int(code),
        "title": title,
        "message": title,
        "error_data": {"details": title},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }


def _default_mime(kind: str) -> str:
    return {
        "image": "image/jpeg",
        "document": "application/pdf",
        "audio": "audio/ogg; codecs=opus",
        "video": "video/mp4",
        "sticker": "image/webp",
    }.get(kind, "application/octet-stream")


def _error(
    status: int, code: int, message: str, error_type: str = "OAuthException"
) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": error_type,
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": uuid.uuid4().hex[:22],
        }
    }
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


__all__ = [
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_APP_SECRET",
    "DEFAULT_PHONE_NUMBER_ID",
    "DEFAULT_WABA_ID",
    "PeerTemplate",
    "WhatsAppApiPeer",
]
