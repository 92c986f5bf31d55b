"""Email unsubscribe links and RFC 8058 one-click unsubscribe.

Each email carries a link ``{base}/unsubscribe/{token}`` (in its body and in the
``List-Unsubscribe`` header, with ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``).
The token is the message id plus an HMAC of it, so it cannot be guessed or altered and
needs no table; the key is generated once per installation and kept in the database
(``instance_secrets``), so every API process of a scaled-out deployment verifies it.

Using it revokes email for that contact point in the consent ledger and cancels emails
still waiting for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from typing import TYPE_CHECKING

import psycopg

from parley.domain.channels import Channel
from parley.services import consent

if TYPE_CHECKING:
    from parley.bootstrap import Container

SECRET_NAME = "unsubscribe_links"
_MAC_BYTES = 12


async def secret(container: Container, conn: psycopg.AsyncConnection) -> bytes:
    cached: bytes | None = getattr(container, "_unsubscribe_secret", None)
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
    container._unsubscribe_secret = value  # type: ignore[attr-defined]
    return value


def make_token(secret: bytes, message_id: uuid.UUID) -> str:
    mac = hmac.new(secret, message_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(message_id.bytes + mac).decode().rstrip("=")


def read_token(secret: bytes, token: str) -> uuid.UUID | None:
    """The message id of a valid token, else None."""
    if not 20 <= len(token) <= 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != 16 + _MAC_BYTES:
        return None
    message_id = uuid.UUID(bytes=raw[:16])
    expected = hmac.new(secret, raw[:16], hashlib.sha256).digest()[:_MAC_BYTES]
    return message_id if hmac.compare_digest(expected, raw[16:]) else None


async def url_for(
    container: Container, conn: psycopg.AsyncConnection, message_id: uuid.UUID
) -> str:
    token = make_token(await secret(container, conn), message_id)
    return f"{container.settings.base_url.rstrip('/')}/unsubscribe/{token}"


async def unsubscribe(
    container: Container, conn: psycopg.AsyncConnection, token: str, source: str
) -> bool:
    """Revoke email for the contact point the tokened message went to. False: bad token.

    Idempotent: a second use records nothing new while the revocation stands. Call it
    inside a transaction on `conn`: the per-borrower consent lock lasts until it ends.
    """
    message_id = read_token(await secret(container, conn), token)
    if message_id is None:
        return False
    cur = await conn.execute(
        "SELECT organization_id::text, borrower_id::text, contact_point_id::text, to_address "
        "FROM messages WHERE id = %s AND channel = 'email'",
        (message_id,),
    )
    row = await cur.fetchone()
    if row is None or row[1] is None:
        return False
    org, borrower, cp, address = row
    # Clicks and one-click POSTs for one borrower arrive together: one revocation.
    await consent.lock_borrower(conn, borrower)
    latest = await consent.latest_action(conn, borrower, cp, Channel.EMAIL, container.clock())
    if latest == "revoke":
        return True
    await consent.revoke(
        conn,
        consent.ConsentChange(
            organization_id=org,
            borrower_id=borrower,
            contact_point_id=cp,
            address=address,
            channel=Channel.EMAIL,
            action="revoke",
            source=source,
            effective_at=container.clock(),
            source_message_id=str(message_id),
            reason="unsubscribed from email",
        ),
        [Channel.EMAIL],
    )
    return True
