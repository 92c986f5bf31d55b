"""Graph API request bodies for an outbound WhatsApp message.

`OutboundMessage.whatsapp` carries the structured part Parley stored with the message
(None for plain text):

    {"type": "template", "name", "language", "parameters": [str, ...]}
    {"type": "image" | "document", "url", "filename"}   # caption: the message body
    {"type": "interactive", "buttons": [{"id", "title"}, ...]}  # text: the message body

The message body is always what the borrower reads (the caption, the text above the
buttons); for templates Meta renders the approved text from the parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from parley.channels.base import OutboundMessage


class PayloadError(ValueError):
    """The stored WhatsApp payload cannot be sent (a bug or a hand-edited row)."""


def wa_id(phone: str) -> str:
    """Meta's recipient form: the E.164 number without '+' (or a 'whatsapp:' prefix)."""
    return phone.removeprefix("whatsapp:").strip().lstrip("+")


def request_body(message: OutboundMessage) -> dict[str, Any]:
    base: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": wa_id(message.to),
    }
    spec: Mapping[str, Any] = message.whatsapp or {"type": "text"}
    kind = spec.get("type", "text")
    if kind == "text":
        return {**base, "type": "text", "text": {"preview_url": False, "body": message.body}}
    if kind == "template":
        template: dict[str, Any] = {
            "name": _required(spec, "name"),
            "language": {"code": _required(spec, "language")},
        }
        parameters = spec.get("parameters") or []
        if parameters:
            template["components"] = [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "text": str(p)} for p in parameters],
                }
            ]
        return {**base, "type": "template", "template": template}
    if kind in ("image", "document"):
        media: dict[str, Any] = {"link": _required(spec, "url")}
        if message.body:
            media["caption"] = message.body
        if kind == "document" and spec.get("filename"):
            media["filename"] = spec["filename"]
        return {**base, "type": kind, kind: media}
    if kind == "interactive":
        buttons = spec.get("buttons") or []
        if not buttons:
            raise PayloadError("interactive message without buttons")
        return {
            **base,
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": message.body},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": b["id"], "title": b["title"]}}
                        for b in buttons
                    ]
                },
            },
        }
    raise PayloadError(f"unknown WhatsApp message type {kind!r}")


def _required(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"WhatsApp {spec.get('type')} payload without {key!r}")
    return value
