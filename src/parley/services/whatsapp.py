"""WhatsApp's rules for a message sent through the messages API.

- the request's WhatsApp part (`whatsappTemplate`, `media`, `quickReplies`) becomes the
  payload stored on the message (`messages.whatsapp`), from which the worker builds
  the Graph API request;
- only APPROVED templates of the sending account's library can be sent, with exactly
  the number of body parameters the template has;
- session messages (text, media, quick replies) need the 24-hour customer-service window
  to be open (`services.whatsapp_window`); outside it the request is refused with the
  approved templates that could be sent instead;
- an approved template's text cannot be changed by Parley, so a template that lacks what
  the compliance content rules require (disclosure, opt-out notice) is refused rather
  than sent without it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from parley.services import whatsapp_templates, whatsapp_window
from parley.services.errors import FieldError, Invalid
from parley.storage.db import raw_connection
from parley.storage.models import ProviderAccount

if TYPE_CHECKING:
    from parley.services.messages import SendRequest

MAX_QUICK_REPLIES = 3
MAX_BUTTON_TITLE = 20
MAX_CAPTION = 1024  # image/document captions and interactive body text
MAX_TEMPLATE_PARAMETER = 1024
MAX_LISTED = 20  # approved templates named in a window-closed error
FIELDS = ("whatsappTemplate", "media", "quickReplies")


@dataclass(frozen=True, slots=True)
class WhatsAppContent:
    payload: dict[str, Any] | None  # stored on the message; None: plain text
    body: str | None  # the text the borrower reads, when the WhatsApp part defines it

    @property
    def kind(self) -> str:
        return "text" if self.payload is None else str(self.payload["type"])

    @property
    def is_session(self) -> bool:
        return whatsapp_window.is_session_message(self.payload)


def given_fields(req: SendRequest) -> list[str]:
    return [
        name
        for name, value in (
            ("whatsappTemplate", req.whatsapp_template),
            ("media", req.media),
            ("quickReplies", req.quick_replies),
        )
        if value is not None
    ]


def reject_outside_whatsapp(req: SendRequest, channel: str) -> None:
    given = given_fields(req)
    if given:
        raise Invalid.field(given[0], f"applies to whatsapp messages only, not {channel}")


async def prepare(
    session: AsyncSession, account: ProviderAccount, req: SendRequest
) -> WhatsAppContent:
    """Validate the request's WhatsApp part against the sending account."""
    given = given_fields(req)
    if len(given) > 1:
        raise Invalid.field(given[1], f"cannot be combined with {given[0]}")
    if req.whatsapp_template is not None:
        return await _template(session, account, req)
    if req.media is not None:
        return _media(req)
    if req.quick_replies is not None:
        return _quick_replies(req.quick_replies)
    return WhatsAppContent(None, None)


async def _template(
    session: AsyncSession, account: ProviderAccount, req: SendRequest
) -> WhatsAppContent:
    spec = req.whatsapp_template or {}
    for name in ("body", "templateId"):
        if (req.body if name == "body" else req.template_id) is not None:
            raise Invalid.field(
                name, "a WhatsApp template message takes its text from the approved template"
            )
    name, language = str(spec["name"]), str(spec["language"])
    parameters = [str(p) for p in spec.get("parameters") or []]
    template = await whatsapp_templates.find(session, account.id, name, language)
    if template is None:
        raise Invalid.field(
            "whatsappTemplate.name",
            f"no template {name!r} in language {language!r} in the library of account "
            f"{account.name!r}; sync it with POST /api/provider-accounts/{account.id}"
            "/whatsapp-templates/sync",
            "unknown_template",
        )
    if template.status != "APPROVED":
        why = f" ({template.rejected_reason})" if template.rejected_reason else ""
        raise Invalid.field(
            "whatsappTemplate.name",
            f"template {name!r} ({language}) is {template.status}{why}; "
            "only APPROVED templates can be sent",
            "template_not_approved",
        )
    if len(parameters) != template.body_parameter_count:
        raise Invalid.field(
            "whatsappTemplate.parameters",
            f"template {name!r} ({language}) has {template.body_parameter_count} body "
            f"parameter(s); {len(parameters)} given",
            "parameter_count",
        )
    for i, value in enumerate(parameters):
        if not value.strip() or len(value) > MAX_TEMPLATE_PARAMETER or "\n" in value:
            raise Invalid.field(
                f"whatsappTemplate.parameters.{i}",
                f"must be 1-{MAX_TEMPLATE_PARAMETER} characters on one line",
            )
    text = whatsapp_templates.render(template.body_text or "", parameters)
    payload = {"type": "template", "name": name, "language": language, "parameters": parameters}
    return WhatsAppContent(payload, text or f"[WhatsApp template {name} ({language})]")


def _media(req: SendRequest) -> WhatsAppContent:
    media = req.media or {}
    kind = media["type"]
    url = str(media["url"])
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        valid = False
    if not valid or any(c.isspace() for c in url):
        raise Invalid.field("media.url", "must be a public http(s) link Meta can fetch")
    filename = media.get("filename")
    if filename is not None and kind != "document":
        raise Invalid.field("media.filename", "applies to documents only")
    caption = media.get("caption")
    if caption is not None and req.body is not None:
        raise Invalid.field("media.caption", "give the caption here or as body, not both")
    payload = {"type": kind, "url": url, "filename": filename}
    return WhatsAppContent(payload, caption)


def _quick_replies(titles: list[str]) -> WhatsAppContent:
    errors = []
    if not 1 <= len(titles) <= MAX_QUICK_REPLIES:
        errors.append(FieldError("quickReplies", f"give 1 to {MAX_QUICK_REPLIES} quick replies"))
    seen: set[str] = set()
    for i, title in enumerate(titles):
        title = title.strip()
        if not 1 <= len(title) <= MAX_BUTTON_TITLE:
            errors.append(
                FieldError(
                    f"quickReplies.{i}",
                    f"button titles are 1-{MAX_BUTTON_TITLE} characters, got {len(title)}",
                    "too_long",
                )
            )
        elif title.casefold() in seen:
            errors.append(FieldError(f"quickReplies.{i}", "duplicate button title"))
        seen.add(title.casefold())
    if errors:
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors)
    buttons = [{"id": f"qr_{i + 1}", "title": t.strip()} for i, t in enumerate(titles)]
    return WhatsAppContent({"type": "interactive", "buttons": buttons}, None)


async def check_window(
    session: AsyncSession,
    account: ProviderAccount,
    organization_id: uuid.UUID,
    phone: str,
    content: WhatsAppContent,
    now: datetime,
    send_at: datetime | None = None,
) -> None:
    """Refuse a session message outside the 24-hour window (now, or at its `sendAt`),
    naming the approved templates that could be sent instead."""
    if not content.is_session:
        return
    conn = await raw_connection(session)
    window = await whatsapp_window.state(conn, organization_id, phone, now)
    if window.is_open and (send_at is None or send_at < (window.closes_at or now)):
        return
    problem = window.explain(phone)
    if window.is_open:
        problem = (
            f"the WhatsApp customer-service window with {phone} closes at "
            f"{_rfc3339(window.closes_at)}, before sendAt {_rfc3339(send_at)}"
        )
    templates = await whatsapp_templates.approved(session, account.id)
    if templates:
        listed = ", ".join(f"{name} ({language})" for name, language in templates[:MAX_LISTED])
        if len(templates) > MAX_LISTED:
            listed += (
                f" and {len(templates) - MAX_LISTED} more (GET /api/provider-accounts/"
                f"{account.id}/whatsapp-templates?status=APPROVED)"
            )
        suggestion = f"send one of the approved templates instead: {listed}"
    else:
        suggestion = f"send an approved template instead; account {account.name!r} has none synced"
    errors = [
        FieldError(_REQUEST_FIELD[content.kind], problem, whatsapp_window.CLOSED_CODE),
        FieldError("whatsappTemplate", suggestion, "template_required"),
    ]
    raise Invalid(f"{problem}; {suggestion}", errors)


def _rfc3339(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


# The request field that made a message a session message, for the error.
_REQUEST_FIELD = {
    "text": "body",
    "image": "media",
    "document": "media",
    "interactive": "quickReplies",
}


def check_content(content: WhatsAppContent, before: str, after: str) -> None:
    """After the compliance content rules ran: what they added must be sendable."""
    if content.kind == "template" and after != before:
        added = after[len(before) :].strip() if after.startswith(before) else after
        raise Invalid.field(
            "whatsappTemplate",
            "the approved template lacks text compliance requires in this message and "
            f"WhatsApp sends only the approved text; add it to the template: {added!r}",
            "template_noncompliant",
        )
    if content.kind in ("image", "document", "interactive") and len(after) > MAX_CAPTION:
        raise Invalid.field(
            "body",
            f"WhatsApp limits {content.kind} text to {MAX_CAPTION} characters, got {len(after)} "
            "(with the compliance notices)",
            "too_long",
        )
