"""Email open and click tracking: signed pixel and redirect links, recorded as events.

Off unless the sending account enables it (``track_opens`` / ``track_clicks``): a pixel
tells the sender when and from where a borrower read a message, which is personal data
(GDPR/ePrivacy) and, since mail clients preload images (Apple Mail Privacy Protection),
an unreliable signal of reading. See docs/api.md.

At send time (never in the stored message) an HTML body gets a 1x1 image
``{base}/t/o/{token}.gif`` and each http(s) link, except the unsubscribe link, becomes
``{base}/t/c/{token}``. A token is the message id (and, for a click, the original URL)
plus an HMAC under a per-installation key kept in ``instance_secrets``, so a link
cannot be forged or pointed elsewhere: a bad token is a 404, never a redirect.

Recording goes through the status machine: an open moves a delivered message to
``opened``, a click to ``clicked``; each is a message event with source ``tracking``,
deduplicated per minute (clients and scanners fetch the same pixel or link repeatedly).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from html import escape, unescape
from typing import TYPE_CHECKING, Any

import psycopg

from parley.domain.status import EventType, MessageStatus, status_after_event
from parley.services import activity

if TYPE_CHECKING:
    from parley.bootstrap import Container

SECRET_NAME = "tracking_links"
_MAC_BYTES = 16
_OPEN, _CLICK = b"o", b"c"
_MAX_URL = 4000
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Tracked:
    message_id: uuid.UUID
    url: str | None  # clicks: where to send the reader


async def secret(container: Container, conn: psycopg.AsyncConnection[Any]) -> bytes:
    cached: bytes | None = getattr(container, "_tracking_secret", None)
    if cached is not None:
        return cached
    await conn.execute(
        "INSERT INTO instance_secrets (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (SECRET_NAME, os.urandom(32)),
    )
    cur = await conn.execute("SELECT value FROM instance_secrets WHERE name = %s", (SECRET_NAME,))
    row = await cur.fetchone()
    assert row is not None
    value = bytes(row[0])
    container._tracking_secret = value  # type: ignore[attr-defined]
    return value


def make_token(key: bytes, message_id: uuid.UUID, url: str | None = None) -> str:
    payload = (_CLICK if url is not None else _OPEN) + message_id.bytes
    if url is not None:
        payload += url.encode("utf-8")
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return _b64(payload) + "." + _b64(mac)


def read_token(key: bytes, token: str, *, click: bool) -> Tracked | None:
    """What a valid token tracks, else None (forged, altered, or the wrong kind)."""
    if len(token) > 2 * _MAX_URL or token.count(".") != 1:
        return None
    body, mac_text = token.split(".")
    try:
        payload, mac = _unb64(body), _unb64(mac_text)
    except ValueError:
        return None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if len(payload) < 17 or not hmac.compare_digest(mac, expected):
        return None
    kind, message_id = payload[:1], uuid.UUID(bytes=payload[1:17])
    if kind != (_CLICK if click else _OPEN):
        return None
    if not click:
        return Tracked(message_id, None) if len(payload) == 17 else None
    url = payload[17:].decode("utf-8", "replace")
    return Tracked(message_id, url) if _trackable(url) else None


def instrument(
    html: str,
    *,
    key: bytes,
    base_url: str,
    message_id: uuid.UUID,
    opens: bool,
    clicks: bool,
) -> str:
    """The HTML to send: links rewritten (not the unsubscribe link) and/or a pixel added."""
    base = base_url.rstrip("/")
    if clicks:

        def rewrite(match: re.Match[str]) -> str:
            url = unescape(match.group(3)).strip()
            if not _trackable(url) or url.startswith(f"{base}/unsubscribe/"):
                return match.group(0)
            tracked = f"{base}/t/c/{make_token(key, message_id, url)}"
            return f"{match.group(1)}{match.group(2)}{escape(tracked)}{match.group(2)}"

        html = _HREF.sub(rewrite, html)
    if opens:
        pixel = (
            f'<img src="{base}/t/o/{make_token(key, message_id)}.gif" width="1" height="1" '
            'alt="" style="display:none;border:0">'
        )
        ends = list(_BODY_END.finditer(html))
        if ends:
            at = ends[-1].start()
            html = html[:at] + pixel + html[at:]
        else:
            html = html + pixel
    return html


async def record(
    container: Container,
    conn: psycopg.AsyncConnection[Any],
    tracked: Tracked,
    *,
    click: bool,
    now: datetime,
    user_agent: str | None,
) -> bool:
    """Record an open or a click on `conn` (in the caller's transaction); False when the
    message is not an outbound email (left untouched)."""
    cur = await conn.execute(
        "SELECT organization_id::text, status FROM messages WHERE id = %s "
        "AND channel = 'email' AND direction = 'outbound' FOR UPDATE",
        (tracked.message_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return False
    org_id, status = row
    event = EventType.CLICKED if click else EventType.OPENED
    before = MessageStatus(status)
    after = status_after_event(before, event)
    minute = now.strftime("%Y%m%dT%H%M")
    target = hashlib.sha256((tracked.url or "").encode()).hexdigest()[:16] if click else ""
    cur = await conn.execute(
        "INSERT INTO message_events (organization_id, message_id, event_type, status_before, "
        "status_after, source, provider_event_id, reason, occurred_at, raw) "
        "VALUES (%s, %s, %s, %s, %s, 'tracking', %s, %s, %s, %s) "
        "ON CONFLICT (message_id, provider_event_id) DO NOTHING RETURNING id",
        (
            org_id,
            tracked.message_id,
            event.value,
            before.value,
            after.value,
            f"tracking:{event.value}:{target}:{minute}",
            tracked.url[:1000] if tracked.url else None,
            now,
            psycopg.types.json.Jsonb({"userAgent": (user_agent or "")[:300], "url": tracked.url}),
        ),
    )
    inserted = await cur.fetchone()
    if inserted is not None and after is not before:
        await conn.execute(
            "UPDATE messages SET status = %s, status_changed_at = %s WHERE id = %s",
            (after.value, now, tracked.message_id),
        )
        await activity.emit(
            conn,
            org_id,
            "message.status_changed",
            {
                "messageId": str(tracked.message_id),
                "status": after.value,
                "previousStatus": before.value,
                "source": "tracking",
            },
        )
    return True


def _trackable(url: str) -> bool:
    return len(url) <= _MAX_URL and url.lower().startswith(("http://", "https://"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
