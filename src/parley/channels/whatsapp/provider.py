"""The WhatsApp Cloud API provider: sends through the Graph API, verifies and parses
Meta's webhooks, lists the account's message templates.

One `aiohttp.ClientSession` per provider instance (so per account) keeps connections
alive; a semaphore of `max_concurrency` keeps requests from queueing inside aiohttp's
connector, where waiting would count against the connect timeout.

Send outcomes: 2xx with `messages[0].id` accepted; otherwise Meta's error JSON decides
(`errors.classify`): rate limits (130429, 131056) and 5xx retryable, re-engagement
(131047) and undeliverable (131026) permanent, unknown codes permanent unless 5xx.
A network failure before the request was written is retryable; after it Meta may have
the message, so the outcome is unknown (a blind retry could message the borrower twice).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import orjson

from parley.channels.base import (
    Capabilities,
    DeliveryEvent,
    InboundMessage,
    OutboundMessage,
    ProviderConfigError,
    ProviderContext,
    SendResult,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.http_client import ProviderHttp
from parley.channels.whatsapp import errors, payloads, webhooks
from parley.channels.whatsapp.config import WhatsAppSettings, parse_settings
from parley.domain.channels import Channel

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
TEMPLATE_PAGE_SIZE = 100
MAX_TEMPLATE_PAGES = 100  # 10,000 templates: far beyond Meta's per-account limit


class MediaFetchError(Exception):
    """An inbound media item could not be downloaded from Meta."""


@dataclass(frozen=True, slots=True)
class MediaContent:
    content: bytes
    content_type: str


class TemplateListError(Exception):
    """The template listing failed (network, credentials, or Meta's error)."""


@dataclass(frozen=True, slots=True)
class RemoteTemplate:
    """One message template as the Graph API lists it."""

    provider_template_id: str | None
    name: str
    language: str
    category: str | None
    status: str
    components: list[dict[str, Any]]
    rejected_reason: str | None


class WhatsAppCloudProvider:
    """WhatsApp messages through Meta's Cloud API."""

    name: ClassVar[str] = "whatsapp_cloud"
    channel: Channel = Channel.WHATSAPP
    capabilities: Capabilities = Capabilities(max_body_chars=4096, supports_media=True)

    def __init__(self, settings: WhatsAppSettings) -> None:
        self.settings = settings
        self._http = ProviderHttp(
            max_concurrency=settings.max_concurrency,
            timeout=settings.timeout,
            headers={
                "Authorization": f"Bearer {settings.access_token}",
                "Accept": "application/json",
            },
        )
        self._slots = self._http.slots

    def _client(self) -> aiohttp.ClientSession:
        return self._http.client()

    # -- sending -------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        if not payloads.wa_id(message.to):
            return SendResult(accepted=False, error_code="invalid_recipient", error_detail="empty")
        try:
            body = orjson.dumps(payloads.request_body(message))
        except payloads.PayloadError as exc:
            return SendResult(accepted=False, error_code="invalid_payload", error_detail=str(exc))
        return await self._http.send(
            self.settings.messages_url,
            body,
            _JSON,
            "the Graph API",
            lambda status, payload, _retry_after: response_result(status, payload),
        )

    # -- inbound media -------------------------------------------------------------

    async def fetch_media(self, media_id: str, max_bytes: int = 100 * 1024 * 1024) -> MediaContent:
        """Download an inbound media item by Meta's media id: its metadata gives a
        short-lived URL (bearer auth too) and the SHA-256 the bytes must match."""
        if not media_id.isdigit():
            raise MediaFetchError("media ids are numeric")
        session = self._client()
        url = f"{self.settings.base_url}/{self.settings.api_version}/{media_id}"
        try:
            async with session.get(url) as response:
                meta = _json_object(await response.read())
                if response.status >= 300:
                    error = _obj(meta.get("error"))
                    raise MediaFetchError(
                        f"Graph API answered {response.status}: {error.get('message')}"
                    )
            link, digest = meta.get("url"), meta.get("sha256")
            if not isinstance(link, str) or not link:
                raise MediaFetchError("the media metadata carried no url")
            async with session.get(link) as response:
                if response.status >= 300:
                    raise MediaFetchError(f"media download answered {response.status}")
                if (response.content_length or 0) > max_bytes:
                    raise MediaFetchError(f"media larger than {max_bytes} bytes")
                content = await response.content.read(max_bytes + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaFetchError(f"cannot download media {media_id}: {exc!r}") from None
        if len(content) > max_bytes:
            raise MediaFetchError(f"media larger than {max_bytes} bytes")
        if isinstance(digest, str) and hashlib.sha256(content).hexdigest() != digest.lower():
            raise MediaFetchError("downloaded media does not match its SHA-256")
        mime = meta.get("mime_type")
        return MediaContent(content, mime if isinstance(mime, str) else "application/octet-stream")

    # -- templates -----------------------------------------------------------------

    async def list_templates(self) -> list[RemoteTemplate]:
        """Every template of the WhatsApp Business Account, following the paging cursors."""
        url = self.settings.templates_url
        if url is None:
            raise TemplateListError("waba_id is not configured on this account")
        params: dict[str, str] | None = {"limit": str(TEMPLATE_PAGE_SIZE)}
        out: list[RemoteTemplate] = []
        session = self._client()
        for _ in range(MAX_TEMPLATE_PAGES):
            try:
                async with session.get(url, params=params) as response:
                    status, payload = response.status, await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TemplateListError(f"cannot reach the Graph API: {exc!r}") from None
            data = _json_object(payload)
            if status >= 300:
                error = _obj(data.get("error"))
                raise TemplateListError(
                    f"Graph API answered {status}: {error.get('message') or 'no message'} "
                    f"(code {error.get('code')})"
                )
            for item in data.get("data") or []:
                template = _remote_template(item)
                if template is not None:
                    out.append(template)
            paging = _obj(data.get("paging"))
            cursors = _obj(paging.get("cursors"))
            after = cursors.get("after")
            if not paging.get("next") or not after:
                return out
            params = {"limit": str(TEMPLATE_PAGE_SIZE), "after": str(after)}
        raise TemplateListError(f"more than {MAX_TEMPLATE_PAGES} pages of templates")

    # -- webhooks ------------------------------------------------------------------

    def verify_webhook(self, request: WebhookRequest) -> None:
        webhooks.verify(self.settings.app_secret, request)

    def parse_webhook(self, request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
        return webhooks.parse(request)

    def subscription_challenge(self, query: Mapping[str, str]) -> str:
        """Meta's subscription handshake: the challenge to echo, if the token matches."""
        expected = self.settings.verify_token
        if query.get("hub.mode") != "subscribe":
            raise WebhookVerificationError("hub.mode must be subscribe")
        given = query.get("hub.verify_token") or ""
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookVerificationError("hub.verify_token does not match")
        challenge = query.get("hub.challenge")
        if not challenge:
            raise WebhookVerificationError("hub.challenge is missing")
        return challenge

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:  # never shows the token or the app secret
        number, base = self.settings.phone_number_id, self.settings.base_url
        return f"<WhatsAppCloudProvider {number} via {base}>"


# -- pure helpers (unit-tested directly) ---------------------------------------------


def response_result(status: int, payload: bytes) -> SendResult:
    """Map a /messages response to a SendResult."""
    data = _json_object(payload)
    if 200 <= status < 300:
        messages = data.get("messages")
        first = messages[0] if isinstance(messages, list) and messages else {}
        wamid = first.get("id") if isinstance(first, dict) else None
        if isinstance(wamid, str) and wamid:
            return SendResult(accepted=True, provider_message_id=wamid, segments=1)
        # Accepted without an id: we cannot match its webhooks; a person must look.
        return SendResult(
            accepted=False,
            outcome_unknown=True,
            error_code="no_message_id",
            error_detail="the Graph API accepted the request but returned no message id",
        )
    error = _obj(data.get("error"))
    code = error.get("code")
    error_code = str(code) if code is not None else str(status)
    kind = errors.classify(str(code) if code is not None else None, status)
    message = error.get("message") if isinstance(error.get("message"), str) else None
    details = _obj(error.get("error_data"))
    extra = details.get("details") if isinstance(details.get("details"), str) else None
    detail = f"{kind.category}: {message or kind.description}" + (f" ({extra})" if extra else "")
    return SendResult(
        accepted=False,
        retryable=kind.retryable or status >= 500 or status == 429,
        error_code=error_code,
        error_detail=detail[:1000],
        retry_after=kind.retry_after,
    )


def _remote_template(item: Any) -> RemoteTemplate | None:
    if not isinstance(item, dict):
        return None
    name, language, status = item.get("name"), item.get("language"), item.get("status")
    if not (isinstance(name, str) and isinstance(language, str) and isinstance(status, str)):
        return None
    components = [c for c in item.get("components") or [] if isinstance(c, dict)]
    reason = item.get("rejected_reason")
    return RemoteTemplate(
        provider_template_id=str(item["id"]) if item.get("id") is not None else None,
        name=name,
        language=language,
        category=item.get("category") if isinstance(item.get("category"), str) else None,
        status=status.upper(),
        components=components,
        rejected_reason=reason if isinstance(reason, str) and reason != "NONE" else None,
    )


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def create(context: ProviderContext) -> WhatsAppCloudProvider:
    if context.channel != Channel.WHATSAPP:
        raise ProviderConfigError(f"channel: whatsapp_cloud serves whatsapp, not {context.channel}")
    return WhatsAppCloudProvider(parse_settings(context))


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
