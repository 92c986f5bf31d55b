"""Meta webhooks for WhatsApp: the signature, and the payload turned into Parley's items.

Meta posts one JSON document per delivery:

    {"object": "whatsapp_business_account",
     "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": {
         "metadata": {"display_phone_number", "phone_number_id"},
         "statuses": [...],    # sent / delivered / read / failed (+ errors[].code)
         "messages": [...],    # inbound text, image, document, button, interactive, ...
         "contacts": [...]}}]}]}

Template reviews arrive as `"field": "message_template_status_update"`; they are not
message items, so `template_updates()` reads them separately (applied to the template
library by `parley.services.whatsapp_templates`).

Parsing never raises on a malformed document: what cannot be understood is skipped
(or, for a status we do not know, reported as EventType.UNKNOWN).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from parley.channels.base import (
    DeliveryEvent,
    InboundMedia,
    InboundMessage,
    WebhookRequest,
    WebhookVerificationError,
)
from parley.channels.whatsapp import errors
from parley.domain.channels import Channel
from parley.domain.status import EventType

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"

STATUS_EVENTS: dict[str, EventType] = {
    "sent": EventType.SENT,
    "delivered": EventType.DELIVERED,
    "read": EventType.READ,
    "failed": EventType.FAILED,
}

MEDIA_TYPES = frozenset({"image", "document", "audio", "video", "sticker"})
TEMPLATE_STATUSES = frozenset({"APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"})


def signature(app_secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta sends for `body`."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(app_secret: str, request: WebhookRequest) -> None:
    """Check X-Hub-Signature-256 over the raw body bytes (never re-serialized JSON)."""
    given = request.header(SIGNATURE_HEADER)
    if not given:
        raise WebhookVerificationError(f"missing {SIGNATURE_HEADER} header")
    expected = signature(app_secret, request.body)
    if not hmac.compare_digest(expected.encode(), given.strip().encode("utf-8", "replace")):
        raise WebhookVerificationError(f"{SIGNATURE_HEADER} does not match")


def document(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _changes(data: Mapping[str, Any], field: str) -> Iterator[dict[str, Any]]:
    entries = data.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            continue
        for change in changes:
            if not isinstance(change, dict) or change.get("field") != field:
                continue
            value = change.get("value")
            if isinstance(value, dict):
                yield value


def parse(request: WebhookRequest) -> list[DeliveryEvent | InboundMessage]:
    data = document(request.body)
    items: list[DeliveryEvent | InboundMessage] = []
    for value in _changes(data, "messages"):
        metadata = _obj(value.get("metadata"))
        business = _e164(str(metadata.get("display_phone_number") or ""))
        for status in _dicts(value.get("statuses")):
            event = _status(status)
            if event is not None:
                items.append(event)
        for message in _dicts(value.get("messages")):
            inbound = _inbound(message, business)
            if inbound is not None:
                items.append(inbound)
    return items


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _status(status: dict[str, Any]) -> DeliveryEvent | None:
    wamid = status.get("id")
    raw_status = status.get("status")
    if not isinstance(wamid, str) or not wamid or not isinstance(raw_status, str):
        return None
    name = raw_status.strip().lower()
    error_code = reason = None
    failures = _dicts(status.get("errors"))
    if failures:
        first = failures[0]
        code = first.get("code")
        error_code = str(code) if code is not None else None
        title = first.get("title") or first.get("message")
        reason = errors.reason(error_code, title if isinstance(title, str) else None)
    elif name == "failed":
        reason = errors.reason(None)
    return DeliveryEvent(
        event_type=STATUS_EVENTS.get(name, EventType.UNKNOWN),
        provider_message_id=wamid,
        # Meta resends a status until we answer 2xx; the same (message, status) is one event.
        provider_event_id=f"{wamid}:{name}",
        occurred_at=_time(status.get("timestamp")),
        provider_status=name,
        reason=reason,
        error_code=error_code,
        raw=status,
    )


def _inbound(message: dict[str, Any], business: str) -> InboundMessage | None:
    wamid = message.get("id")
    sender = message.get("from")
    if not isinstance(wamid, str) or not wamid or not isinstance(sender, str) or not sender:
        return None
    kind = str(message.get("type") or "unknown")
    body = ""
    media: list[InboundMedia] = []
    reply_payload = None
    if kind == "text":
        text = message.get("text")
        body = str(text.get("body") or "") if isinstance(text, dict) else ""
    elif kind in MEDIA_TYPES:
        part = _obj(message.get(kind))
        caption = part.get("caption") if isinstance(part.get("caption"), str) else None
        body = caption or ""
        media.append(
            InboundMedia(
                content_type=str(part.get("mime_type") or "application/octet-stream"),
                filename=part.get("filename") if isinstance(part.get("filename"), str) else None,
                provider_media_id=str(part["id"]) if part.get("id") is not None else None,
                caption=caption,
            )
        )
        if kind not in ("image", "document"):
            kind = "media"  # audio, video, sticker: kept as media for an agent to open
    elif kind == "button":  # a template's quick-reply button
        button = _obj(message.get("button"))
        body = str(button.get("text") or "")
        reply_payload = str(button["payload"]) if button.get("payload") is not None else None
    elif kind == "interactive":  # a reply to our interactive buttons or list
        interactive = _obj(message.get("interactive"))
        reply = _obj(interactive.get(str(interactive.get("type") or "")))
        body = str(reply.get("title") or "")
        reply_payload = str(reply["id"]) if reply.get("id") is not None else None
    else:
        body = f"[unsupported WhatsApp message type: {kind}]"
        kind = "unsupported"
    context = _obj(message.get("context"))
    context_id = context.get("id") if isinstance(context.get("id"), str) else None
    return InboundMessage(
        channel=Channel.WHATSAPP,
        sender=_e164(sender),
        recipient=business,
        body=body,
        provider_message_id=wamid,
        occurred_at=_time(message.get("timestamp")),
        raw=message,
        kind=kind,
        media=tuple(media),
        reply_payload=reply_payload,
        context_message_id=context_id,
    )


@dataclass(frozen=True, slots=True)
class TemplateStatusUpdate:
    """A template review result (`message_template_status_update`)."""

    name: str
    language: str
    status: str  # APPROVED, PENDING, REJECTED, PAUSED, DISABLED (others kept as sent)
    provider_template_id: str | None
    reason: str | None
    raw: dict[str, Any]


def template_updates(body: bytes) -> list[TemplateStatusUpdate]:
    out = []
    for value in _changes(document(body), "message_template_status_update"):
        name = value.get("message_template_name")
        language = value.get("message_template_language")
        event = value.get("event")
        if not (isinstance(name, str) and isinstance(language, str) and isinstance(event, str)):
            continue
        reason = value.get("reason")
        template_id = value.get("message_template_id")
        out.append(
            TemplateStatusUpdate(
                name=name,
                language=language,
                status=event.strip().upper(),
                provider_template_id=str(template_id) if template_id is not None else None,
                # Meta sends "NONE" when there is no reason.
                reason=reason if isinstance(reason, str) and reason != "NONE" else None,
                raw=value,
            )
        )
    return out


def _e164(digits: str) -> str:
    digits = digits.strip().replace(" ", "")
    if not digits:
        return ""
    return digits if digits.startswith("+") else "+" + digits


def _time(value: Any) -> datetime:
    """Meta's timestamps are Unix seconds as strings."""
    try:
        return datetime.fromtimestamp(int(str(value)), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
