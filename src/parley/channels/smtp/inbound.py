"""Parse a received email (RFC 5322 bytes) into normalized inbound items.

One parser serves every way an email reaches us -- the IMAP listener, the inbound-parse
webhook, and replay of a stored receipt -- so they cannot disagree:

- a delivery status notification (RFC 3464 ``multipart/report;
  report-type=delivery-status``) becomes one `DeliveryEvent` per recipient block:
  ``Action: failed`` -> bounced, ``delayed`` -> deferred, ``delivered`` -> delivered,
  matched to our outbound message by the Message-ID we gave it (found in the returned
  headers, or our ``X-Parley-Message-Id`` header, or the DSN's Original-Envelope-Id);
- anything else becomes an `InboundMessage` (kind ``email``, or ``auto_reply`` for
  out-of-office and other automatic answers, which must never count as the borrower's
  own words, e.g. for opt-out), with its threading headers and attachments as bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from parley.channels.base import DeliveryEvent, InboundMedia, InboundMessage
from parley.channels.smtp.html_text import html_to_text
from parley.domain.channels import Channel
from parley.domain.status import EventType

# Header we add to every outbound email so that a DSN returning only some headers, or a
# relay that rewrote the Message-ID, still names the message (see mime.render).
PARLEY_ID_HEADER = "X-Parley-Message-Id"

_MSGID = re.compile(r"<[^<>\s]+>")
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|"
    r"autoreply|abwesenheitsnotiz|r[ée]ponse automatique)\b",
    re.IGNORECASE,
)
_ACTIONS = {
    "failed": EventType.BOUNCED,
    "delayed": EventType.DEFERRED,
    "delivered": EventType.DELIVERED,
}


class UnparseableEmail(ValueError):
    """The bytes are not an email we can read (no headers at all)."""


def parse_email(raw: bytes, *, now: datetime | None = None) -> list[DeliveryEvent | InboundMessage]:
    """Everything one received email means for us (see the module docstring)."""
    if not raw.strip():
        raise UnparseableEmail("empty message")
    msg = message_from_bytes(raw, policy=policy.default)
    if not isinstance(msg, EmailMessage) or not msg.keys():
        raise UnparseableEmail("no headers")
    received = _date(msg) or now or datetime.now(UTC)
    if _is_dsn(msg):
        return list(_dsn_events(msg, received))
    if not _addresses(msg.get_all("From") or []):
        # Without a sender there is nobody to file it under; most likely not an email.
        raise UnparseableEmail("no From address")
    return [_inbound(msg, raw, received)]


# -- delivery status notifications ------------------------------------------------------


def _is_dsn(msg: EmailMessage) -> bool:
    return (
        msg.get_content_type() == "multipart/report"
        and (msg.get_param("report-type") or "").lower() == "delivery-status"  # type: ignore[union-attr]
    )


def _dsn_events(msg: EmailMessage, received: datetime) -> Iterable[DeliveryEvent]:
    status_part = original = None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status" and status_part is None:
            status_part = part
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = part
    if status_part is None:
        return
    blocks = _status_blocks(status_part)
    if not blocks:
        return
    per_message, recipients = blocks[0], blocks[1:]
    ours = _original_message_id(original, per_message)
    if ours is None:
        return
    dsn_id = _first_msgid(str(msg.get("Message-ID") or "")) or _digest(msg.as_bytes())
    for block in recipients:
        action = (block.get("Action") or "").strip().lower()
        event_type = _ACTIONS.get(action)
        if event_type is None:  # relayed, expanded: nothing to say about delivery
            continue
        status = (block.get("Status") or "").strip()
        diagnostic = _unfold(block.get("Diagnostic-Code") or "")
        recipient = _after_type(block.get("Final-Recipient") or block.get("Original-Recipient"))
        reason = " ".join(p for p in (status, _after_type(diagnostic)) if p) or None
        yield DeliveryEvent(
            event_type=event_type,
            provider_message_id=ours,
            provider_event_id=f"dsn:{dsn_id}:{recipient}:{action}"[:200],
            occurred_at=_arrival(block, per_message) or received,
            provider_status=f"{action} {status}".strip(),
            reason=reason[:1000] if reason else None,
            error_code=status or None,
            raw={
                "dsnMessageId": dsn_id,
                "action": action,
                "status": status,
                "diagnosticCode": diagnostic or None,
                "finalRecipient": recipient or None,
                "reportingMta": _after_type(per_message.get("Reporting-MTA")) or None,
            },
        )


def _status_blocks(part: Message) -> list[Message]:
    """The per-message block and the per-recipient blocks of a message/delivery-status."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and all(isinstance(p, Message) for p in payload):
        return list(payload)
    # Some parsers leave it as text: blocks are separated by blank lines.
    text = payload if isinstance(payload, str) else ""
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", "replace")
    blocks = [b for b in re.split(r"\r?\n\s*\r?\n", text.strip()) if b.strip()]
    return [HeaderParser().parsestr(b + "\n") for b in blocks]


def _original_message_id(original: Message | None, per_message: Message) -> str | None:
    headers: Message | None = None
    if original is not None:
        if original.get_content_type() == "message/rfc822":
            inner = original.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                headers = inner[0]
        else:
            body = original.get_payload(decode=True)
            if isinstance(body, bytes):
                headers = BytesHeaderParser().parsebytes(body)
    if headers is not None:
        for name in (PARLEY_ID_HEADER, "Message-ID"):
            found = _first_msgid(str(headers.get(name) or ""))
            if found:
                return found
    envelope = (per_message.get("Original-Envelope-Id") or "").strip()
    return _first_msgid(envelope) or (f"<{envelope}>" if "@" in envelope else None)


def _arrival(block: Message, per_message: Message) -> datetime | None:
    for source in (block.get("Last-Attempt-Date"), per_message.get("Arrival-Date")):
        if source:
            try:
                value = parsedate_to_datetime(str(source))
            except (TypeError, ValueError):
                continue
            return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def _after_type(value: Any) -> str:
    """`rfc822; pat@example.com` -> `pat@example.com` (address-type/diagnostic-type)."""
    if not value:
        return ""
    text = _unfold(str(value))
    kind, sep, rest = text.partition(";")
    return rest.strip() if sep and len(kind) < 20 and " " not in kind.strip() else text


# -- everything else: a borrower's email (or an automatic answer) -----------------------


def _inbound(msg: EmailMessage, raw: bytes, received: datetime) -> InboundMessage:
    sender = _first_address(msg.get_all("From") or [])
    reply_to = _first_address(msg.get_all("Reply-To") or [])
    to = _addresses(msg.get_all("To") or [])
    cc = _addresses(msg.get_all("Cc") or [])
    message_id = (
        _first_msgid(str(msg.get("Message-ID") or "")) or f"<{_digest(raw)}@parley.invalid>"
    )
    in_reply_to = _first_msgid(str(msg.get("In-Reply-To") or ""))
    references = _MSGID.findall(_unfold(str(msg.get("References") or "")))
    subject = _unfold(str(msg.get("Subject") or "")) or None
    auto = _automatic(msg, subject)
    media = tuple(_attachments(msg))
    return InboundMessage(
        channel=Channel.EMAIL,
        sender=sender or "",
        recipient=(to[0] if to else _first_address(msg.get_all("Delivered-To") or [])) or "",
        body=_text_body(msg),
        provider_message_id=message_id[:200],
        occurred_at=received,
        subject=subject,
        kind="auto_reply" if auto else "email",
        media=media,
        in_reply_to=in_reply_to,
        references=tuple(references),
        cc=tuple(cc),
        raw={
            "messageId": message_id,
            "from": sender,
            "replyTo": reply_to,
            "to": to,
            "autoReply": auto,
            "attachments": [
                {"fileName": m.filename, "contentType": m.content_type, "size": m.size}
                for m in media
            ],
        },
    )


def _automatic(msg: EmailMessage, subject: str | None) -> str | None:
    """Why this is an automatic message (RFC 3834 and common vendor headers), or None."""
    auto_submitted = str(msg.get("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if msg.get(name) is not None:
            return name
    precedence = str(msg.get("Precedence") or "").strip().lower()
    if precedence in ("auto_reply", "bulk", "junk"):
        return f"Precedence: {precedence}"
    if subject and _AUTO_SUBJECT.match(subject):
        return "subject"
    return None


def _text_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return _content(part)
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        return html_to_text(_content(part))
    return ""


def _content(part: Message) -> str:
    try:
        value = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        value = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\r\n", "\n")


def _attachments(msg: EmailMessage) -> Iterable[InboundMedia]:
    for part in msg.iter_attachments():
        if part.is_multipart():
            continue
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            continue
        yield InboundMedia(
            content_type=part.get_content_type(),
            filename=_safe_name(part.get_filename()),
            size=len(content),
            content=content,
        )


def _safe_name(name: str | None) -> str | None:
    if not name:
        return None
    # Whatever the sender wrote: no directories, no control characters.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:255] or None


# -- small helpers ----------------------------------------------------------------------


def _addresses(values: list[Any]) -> list[str]:
    out = []
    for value in values:
        groups = getattr(value, "addresses", None)
        if groups is not None:
            out += [a.addr_spec for a in groups if isinstance(a, Address) and a.addr_spec]
        else:
            out += [addr for _, addr in getaddresses([str(value)]) if addr]
    return out


def _first_address(values: list[Any]) -> str | None:
    found = _addresses(values)
    if found:
        return found[0]
    if not values:
        return None
    return parseaddr(str(values[0]))[1] or None


def _first_msgid(value: str) -> str | None:
    match = _MSGID.search(value)
    return match.group(0) if match else None


def _unfold(value: str) -> str:
    # Folding whitespace and the indentation of continuation lines read as one space.
    return re.sub(r"\s+", " ", value).strip()


def _date(msg: EmailMessage) -> datetime | None:
    value = msg.get("Date")
    if value is None:
        return None
    dt = getattr(value, "datetime", None)
    if dt is None:
        try:
            dt = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _digest(raw: bytes) -> str:
    return "sha256-" + hashlib.sha256(raw).hexdigest()[:40]
