"""The consent ledger: record grants and revocations, and act on a revocation at once.

Every change is a new `consent_events` row (history is never overwritten; a trigger
refuses UPDATE and DELETE). A revocation also cancels the messages still waiting to go
to that contact point on the revoked channels, in the same transaction: "messages still
queued to a revoked contact point are cancelled, not sent" — the send-time gate would
block them anyway, but cancelling says so on each message's own timeline at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from parley.domain.channels import Channel

ACTIONS = frozenset({"revoke", "grant", "direct_consent"})
SOURCES = frozenset(
    {
        "reply_keyword",
        "reply_text",
        "agent",
        "api",
        "preferences",
        "unsubscribe_link",
        "list_unsubscribe",
    }
)


@dataclass(frozen=True, slots=True)
class ConsentChange:
    organization_id: str
    borrower_id: str
    contact_point_id: str | None
    address: str | None
    channel: Channel
    action: str
    source: str
    effective_at: datetime
    purpose: str = "all"
    source_message_id: str | None = None
    reason: str | None = None
    evidence: dict[str, Any] | None = None
    recorded_by_name: str | None = None


INSERT_SQL = """
INSERT INTO consent_events (organization_id, borrower_id, contact_point_id, address, channel,
  purpose, action, source, source_message_id, reason, evidence, effective_at, recorded_by_name)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id
"""

CANCEL_SQL = """
WITH waiting AS (
  SELECT id, status FROM messages
  WHERE organization_id = %(org)s AND borrower_id = %(borrower)s
    AND (%(cp)s::uuid IS NULL OR contact_point_id = %(cp)s::uuid)
    AND channel = ANY(%(channels)s) AND direction = 'outbound'
    AND status IN ('queued', 'scheduled')
    AND purpose NOT IN ('opt_out_confirmation', 'opt_in_confirmation', 'help_reply')
  FOR UPDATE
)
UPDATE messages m SET status = 'cancelled', status_changed_at = %(now)s
FROM waiting w WHERE m.id = w.id AND m.status IN ('queued', 'scheduled')
RETURNING m.id::text, w.status
"""


def lock_key(borrower_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for one borrower's consent changes."""
    digest = hashlib.blake2b(f"consent:{borrower_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_borrower(conn: psycopg.AsyncConnection, borrower_id: str) -> None:
    """Serialize consent changes for a borrower until the transaction ends.

    Acting on an opt-out is read-then-write (is the latest entry already a revocation?
    then record nothing and confirm nothing): two replies or unsubscribe clicks handled at
    once must not both read "not revoked" and both record and confirm (TCPA: one
    confirmation). Take it before reading the ledger, inside the writing transaction.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(str(borrower_id)),))


async def record(conn: psycopg.AsyncConnection, change: ConsentChange) -> int:
    if change.action not in ACTIONS:
        raise ValueError(f"unknown consent action {change.action!r}")
    cur = await conn.execute(
        INSERT_SQL,
        (
            change.organization_id,
            change.borrower_id,
            change.contact_point_id,
            change.address,
            change.channel.value,
            change.purpose,
            change.action,
            change.source,
            change.source_message_id,
            change.reason,
            orjson.dumps(change.evidence or {}).decode(),
            change.effective_at,
            change.recorded_by_name,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def cancel_waiting(
    conn: psycopg.AsyncConnection,
    *,
    organization_id: str,
    borrower_id: str,
    contact_point_id: str | None,
    channels: Iterable[Channel],
    now: datetime,
    reason: str,
) -> list[str]:
    """Cancel queued/scheduled outbound messages on those channels; returns their ids."""
    cur = await conn.execute(
        CANCEL_SQL,
        {
            "now": now,
            "org": organization_id,
            "borrower": borrower_id,
            "cp": contact_point_id,
            "channels": [c.value for c in channels],
        },
    )
    rows = await cur.fetchall()
    ids = [row[0] for row in rows]
    if rows:
        async with conn.cursor().copy(
            "COPY message_events (organization_id, message_id, event_type, status_before, "
            "status_after, reason, occurred_at, source) FROM STDIN"
        ) as copy:
            for mid, before in rows:
                await copy.write_row(
                    (organization_id, mid, "cancelled", before, "cancelled", reason, now, "parley")
                )
    return ids


async def revoke(
    conn: psycopg.AsyncConnection,
    change: ConsentChange,
    channels: Iterable[Channel],
) -> tuple[list[int], list[str]]:
    """Record a revocation for each channel and cancel what is waiting; returns
    (ledger ids, cancelled message ids)."""
    ids: list[int] = []
    scope = sorted(set(channels), key=lambda c: c.value)
    for channel in scope:
        ids.append(
            await record(
                conn,
                dataclasses.replace(change, channel=channel, action="revoke"),
            )
        )
    cancelled = await cancel_waiting(
        conn,
        organization_id=change.organization_id,
        borrower_id=change.borrower_id,
        contact_point_id=change.contact_point_id,
        channels=scope,
        now=change.effective_at,
        reason=f"consent revoked ({change.source})",
    )
    return ids, cancelled


LATEST_SQL = """
SELECT action FROM consent_events
WHERE borrower_id = %s AND channel = %s AND (contact_point_id = %s OR contact_point_id IS NULL)
  AND purpose = 'all' AND action IN ('revoke', 'grant') AND effective_at <= %s
ORDER BY effective_at DESC, id DESC LIMIT 1
"""


async def latest_action(
    conn: psycopg.AsyncConnection,
    borrower_id: Any,
    contact_point_id: Any,
    channel: Channel,
    now: datetime,
) -> str:
    """The ledger's state for a contact point and channel at `now`: revoke, grant or none
    (the same entry the gate consults; take `lock_borrower` first when acting on it)."""
    cur = await conn.execute(LATEST_SQL, (borrower_id, channel.value, contact_point_id, now))
    row = await cur.fetchone()
    return str(row[0]) if row else "none"
