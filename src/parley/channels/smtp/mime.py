"""Cheap assembly of an outbound email as RFC 5322 / MIME bytes.

Building a stdlib `EmailMessage` per recipient costs ~0.8 ms of CPU, which alone caps a
core near 1,250 messages/s (reference/performance.md). Our messages have one fixed
shape -- a text part, optionally an HTML alternative -- so we write the bytes directly:
CRLF line endings, UTF-8 bodies in 7bit, quoted-printable or base64, non-ASCII header
text as RFC 2047 encoded-words, and every header value checked for CR/LF so that
nothing a borrower or template supplies can inject a header.

The output is not dot-stuffed; SMTP framing is the transport's job.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import quote

from parley.channels.base import Attachment, OutboundMessage

CRLF = "\r\n"
# RFC 5322 2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998.
SOFT_LINE_LIMIT = 78
HARD_LINE_LIMIT = 998

# Headers we write ourselves; callers may not supply or override them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "x-parley-message-id",
    }
)

_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")  # printable ASCII except ':' (RFC 5322 2.2)
# A printable-ASCII value (plus tab) that a mail client won't mistake for encoded-words.
_PLAIN_ASCII = re.compile(r"[\t -~]*\Z")
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*\Z")
_LOCAL_PART = re.compile(r"[^\s<>()\[\]\\,;:@\"]+\Z")
_DOMAIN = re.compile(r"[^\s<>()\[\]\\,;:@\"]+\Z")
_MAILBOX_WITH_NAME = re.compile(r"\s*(.*?)\s*<([^<>]*)>\s*\Z", re.DOTALL)
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>\Z")
# Bytes of UTF-8 per encoded-word: 45 raw bytes -> 60 base64 chars + 12 of framing = 72.
_ENCODED_WORD_BYTES = 45


class InvalidMessageError(ValueError):
    """The message cannot be expressed as safe MIME (CR/LF in a header, bad address...)."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """An email ready for SMTP submission."""

    message_id: str  # with angle brackets, as written in the Message-ID header
    envelope_from: str
    envelope_to: tuple[str, ...]  # to + cc + bcc, deduplicated, in order
    data: bytes  # CRLF line endings, ends with CRLF, not dot-stuffed
    smtputf8: bool  # an address needs the SMTPUTF8 extension (non-ASCII local part)


@dataclass(frozen=True, slots=True)
class Mailbox:
    address: str  # addr-spec, domain in IDNA form
    display_name: str | None = None
    needs_smtputf8: bool = False


# ---------------------------------------------------------------------------------------
# Headers


def check_header_value(name: str, value: str) -> None:
    """Reject values that would end the header line early (header injection)."""
    if "\r" in value or "\n" in value or "\x00" in value:
        raise InvalidMessageError(f"header {name} contains a line break or NUL")


def check_header_name(name: str) -> None:
    if not _HEADER_NAME.match(name):
        raise InvalidMessageError(f"invalid header name {name!r}")


def encoded_words(text: str) -> list[str]:
    """RFC 2047 'B' encoded-words, never splitting a UTF-8 sequence between two words."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > _ENCODED_WORD_BYTES and chunk:
            words.append(_b_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(char)
        size += width
    if chunk or not words:
        words.append(_b_word("".join(chunk)))
    return words


def _b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def fold_plain(name: str, value: str) -> str:
    """Fold an ASCII unstructured value at spaces so lines stay near 78 characters.

    Folding inserts CRLF before an existing space, so unfolding restores the value.
    """
    if len(name) + 2 + len(value) <= SOFT_LINE_LIMIT:
        return value
    words = value.split(" ")
    lines: list[str] = []
    current = words[0]
    budget = SOFT_LINE_LIMIT - len(name) - 2
    for word in words[1:]:
        if current and len(current) + 1 + len(word) > budget:
            lines.append(current)
            current = " " + word if word else " "
            budget = SOFT_LINE_LIMIT
        else:
            current = current + " " + word
    lines.append(current)
    if any(len(line) > HARD_LINE_LIMIT - len(name) - 2 for line in lines):
        raise InvalidMessageError(f"header {name} has a word longer than {HARD_LINE_LIMIT}")
    return CRLF.join(lines)


def unstructured(name: str, value: str) -> str:
    """An unstructured header value (Subject, extras): as-is, folded, or RFC 2047-encoded."""
    check_header_value(name, value)
    # Leading/trailing whitespace would be lost by parsers in a plain value; encoded-words
    # keep it.
    if _PLAIN_ASCII.match(value) and "=?" not in value and value == value.strip(" \t"):
        try:
            return fold_plain(name, value)
        except InvalidMessageError:
            pass  # one enormous word: encoded-words can be folded anywhere
    return (CRLF + " ").join(encoded_words(value))


def phrase(text: str) -> str:
    """A display name: an atom phrase, a quoted-string, or encoded-words."""
    if _ATEXT_PHRASE.match(text):
        return text
    if _PLAIN_ASCII.match(text) and "=?" not in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(encoded_words(text))


def parse_mailbox(value: str, *, field: str) -> Mailbox:
    """Accept `addr@domain` or `Name <addr@domain>`; normalize the domain to IDNA."""
    check_header_value(field, value)
    name: str | None = None
    address = value.strip()
    match = _MAILBOX_WITH_NAME.match(value)
    if match:
        name = _unquote(match.group(1).strip()) or None
        address = match.group(2).strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or not _DOMAIN.match(domain):
        raise InvalidMessageError(f"{field}: {address!r} is not an email address")
    if not _LOCAL_PART.match(local) and not (local.startswith('"') and local.endswith('"')):
        raise InvalidMessageError(f"{field}: {address!r} is not an email address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidMessageError(f"{field}: invalid domain in {address!r}") from None
    return Mailbox(f"{local}@{domain}", name, needs_smtputf8=not local.isascii())


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def format_mailbox(mailbox: Mailbox) -> str:
    if mailbox.display_name:
        return f"{phrase(mailbox.display_name)} <{mailbox.address}>"
    return mailbox.address


def address_list(mailboxes: Iterable[Mailbox]) -> str:
    # One address per line after the first keeps long Cc lists under the line limit.
    return ("," + CRLF + " ").join(format_mailbox(m) for m in mailboxes)


def normalize_message_id(value: str) -> str:
    check_header_value("Message-ID", value)
    value = value.strip()
    if not value.startswith("<"):
        value = f"<{value}>"
    if not _MESSAGE_ID.match(value):
        raise InvalidMessageError(f"invalid Message-ID {value!r}")
    return value


class _DateCache:
    """The Date header changes once a second; formatting it per message is waste."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._value = formatdate(second, usegmt=True)
            self._second = second
        return self._value


_date_cache = _DateCache()


# ---------------------------------------------------------------------------------------
# Bodies


def _normalize_newlines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def encode_body(text: str, *, avoid: bytes | None = None) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, CRLF-terminated bytes) for a UTF-8 text body.

    7bit when the text is short-lined ASCII (and does not contain `avoid`, a multipart
    boundary); base64 when most of it is non-ASCII (Cyrillic, CJK...); otherwise
    quoted-printable, which keeps Latin text readable and lines under 76 characters.
    """
    text = _normalize_newlines(text)
    if not text.endswith("\n"):
        text += "\n"  # every encoding ends the body with a line break, so all decode alike
    raw = text.encode("utf-8")
    if raw.isascii():
        if (
            "\x00" not in text
            and max(map(len, raw.split(b"\n"))) <= HARD_LINE_LIMIT
            and (avoid is None or avoid not in raw)
        ):
            return "7bit", _crlf_terminated(raw.replace(b"\n", b"\r\n"))
        return "quoted-printable", _crlf_terminated(_qp(raw))
    extra_bytes = len(raw) - len(text)  # a rough count of non-ASCII characters
    if extra_bytes * 3 > len(text):
        encoded = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        return "base64", encoded
    return "quoted-printable", _crlf_terminated(_qp(raw))


def _qp(raw: bytes) -> bytes:
    # istext: '\n' is a line break (kept hard); trailing whitespace gets encoded.
    return binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False).replace(b"\n", b"\r\n")


def _crlf_terminated(data: bytes) -> bytes:
    return data if data.endswith(b"\r\n") else data + b"\r\n"


# ---------------------------------------------------------------------------------------
# The message


def render(
    message: OutboundMessage,
    *,
    from_address: str,
    from_name: str | None,
    message_id_domain: str,
) -> RenderedEmail:
    """Assemble `message` into submission-ready bytes.

    `message.sender` (an address or `Name <address>`) overrides the account's From.
    Bcc recipients go to the envelope only, never into a header.
    """
    if message.sender:
        sender = parse_mailbox(message.sender, field="From")
        if sender.display_name is None and from_name:
            sender = Mailbox(sender.address, from_name, sender.needs_smtputf8)
    else:
        sender = parse_mailbox(from_address, field="From")
        if from_name:
            sender = Mailbox(sender.address, from_name, sender.needs_smtputf8)
    to = [parse_mailbox(message.to, field="To")]
    cc = [parse_mailbox(a, field="Cc") for a in message.cc]
    bcc = [parse_mailbox(a, field="Bcc") for a in message.bcc]

    if message.rfc822_message_id:
        message_id = normalize_message_id(message.rfc822_message_id)
    else:
        message_id = normalize_message_id(f"<{message.message_id}@{message_id_domain}>")

    lines = [
        "From: " + format_mailbox(sender),
        "To: " + address_list(to),
    ]
    if cc:
        lines.append("Cc: " + address_list(cc))
    if message.subject is not None:
        lines.append("Subject: " + unstructured("Subject", message.subject))
    lines.append("Date: " + _date_cache.now())
    lines.append("Message-ID: " + message_id)
    # Our id again, in a header of our own: some relays rewrite Message-ID, and a DSN
    # that returns only the headers still names the message (channels/smtp/inbound.py).
    lines.append("X-Parley-Message-Id: " + message_id)
    lines.append("MIME-Version: 1.0")
    lines.extend(_extra_headers(message.headers))

    if message.attachments:
        # multipart/mixed: the body (text, or text+HTML alternative) then each file.
        body_lines: list[str] = []
        body_part = _body(message, body_lines)
        boundary = new_boundary()
        marker = b"--" + boundary.encode("ascii")
        lines.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        chunks = [_head(lines), marker, b"\r\n", _head(body_lines), body_part, b"\r\n"]
        for attachment in message.attachments:
            chunks += [marker, b"\r\n", _attachment_part(attachment), b"\r\n"]
        chunks += [marker, b"--\r\n"]
        data = b"".join(chunks)
    else:
        body = _body(message, lines)  # adds the Content-Type header lines first
        data = _head(lines) + body

    envelope_to = tuple(dict.fromkeys(m.address for m in (*to, *cc, *bcc)))
    smtputf8 = any(m.needs_smtputf8 for m in (sender, *to, *cc, *bcc))
    return RenderedEmail(message_id, sender.address, envelope_to, data, smtputf8)


def _body(message: OutboundMessage, lines: list[str]) -> bytes:
    """The body's bytes; its Content-Type/Transfer-Encoding headers go onto `lines`."""
    if message.html is None:
        cte, body = encode_body(message.body)
        lines.append('Content-Type: text/plain; charset="utf-8"')
        lines.append("Content-Transfer-Encoding: " + cte)
        return body
    # "=_" cannot occur in quoted-printable or base64 output, and 7bit parts are
    # checked for it, so the boundary never collides with content.
    boundary = new_boundary()
    marker = b"--" + boundary.encode("ascii")
    text_cte, text_body = encode_body(message.body, avoid=marker)
    html_cte, html_body = encode_body(message.html, avoid=marker)
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    return b"".join(
        (
            marker,
            b'\r\nContent-Type: text/plain; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: " + text_cte.encode("ascii") + b"\r\n\r\n",
            # The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1),
            # so one more keeps each part's own final line break.
            text_body,
            b"\r\n",
            marker,
            b'\r\nContent-Type: text/html; charset="utf-8"\r\n',
            b"Content-Transfer-Encoding: " + html_cte.encode("ascii") + b"\r\n\r\n",
            html_body,
            b"\r\n",
            marker,
            b"--\r\n",
        )
    )


def _attachment_part(attachment: Attachment) -> bytes:
    content_type = attachment.content_type.strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", content_type):
        raise InvalidMessageError(f"invalid attachment content type {content_type!r}")
    check_header_value("filename", attachment.filename)
    name = attachment.filename.replace("\\", "_").replace('"', "_")
    if name.isascii() and _PLAIN_ASCII.match(name):
        param = f'filename="{name}"'
    else:  # RFC 2231 extended parameter for non-ASCII names
        param = "filename*=utf-8''" + quote(attachment.filename, safe="")
    head = (
        f"Content-Type: {content_type}\r\n"
        f"Content-Disposition: attachment; {param}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode("ascii")
    return head + base64.encodebytes(attachment.content).replace(b"\n", b"\r\n")


def new_boundary() -> str:
    return "=_parley_" + os.urandom(12).hex()


def _head(lines: list[str]) -> bytes:
    # Everything but an internationalized address is ASCII by now (text was RFC 2047
    # encoded); such an address travels as raw UTF-8 (RFC 6532), which the transport
    # only sends over SMTPUTF8.
    return (CRLF.join(lines) + CRLF + CRLF).encode("utf-8")


def _extra_headers(headers: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in headers.items():
        check_header_name(name)
        if name.lower() in RESERVED_HEADERS:
            raise InvalidMessageError(f"header {name} is set by the provider, not the caller")
        lines.append(f"{name}: {unstructured(name, value)}")
    return lines
