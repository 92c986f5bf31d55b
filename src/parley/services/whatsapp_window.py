"""The WhatsApp 24-hour customer-service window, per (organization, borrower number).

WhatsApp lets a business send free-form messages (text, media, interactive buttons)
only within 24 hours of the customer's last message; outside it only approved templates
go through (Meta answers error 131047 otherwise). Parley applies the rule itself, for
every WhatsApp provider including the sandbox: each inbound WhatsApp message opens or
refreshes the window (`record_inbound`), the messages API refuses session messages
outside it, and the dispatcher checks again at send time, since a message created inside
the window may be sent after it closed.

Meta's view is authoritative: when it refuses a free-form message with 131047 (in a
`failed` status webhook, or synchronously in a 400 Graph error), `record_provider_closed`
notes when, and the window stays closed whatever our own clock says until the number
writes again (an inbound message at or after that time). Meta's timestamps are whole
seconds, so the closing time is kept to the second and an inbound in that same second
reopens: such a message was not yet known to Meta's decision or came with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

WINDOW = timedelta(hours=24)
CLOSED_CODE = "whatsapp_window_closed"
# Meta's "re-engagement message": more than 24 hours since the customer last wrote.
PROVIDER_CLOSED_CODE = "131047"


@dataclass(frozen=True, slots=True)
class WindowState:
    last_inbound_at: datetime | None
    now: datetime
    closed_by_provider_at: datetime | None = None

    @property
    def closed_by_provider(self) -> bool:
        """Meta reported the window closed (131047) and the number has not written since."""
        closed = self.closed_by_provider_at
        return closed is not None and (
            self.last_inbound_at is None or self.last_inbound_at < closed
        )

    @property
    def closes_at(self) -> datetime | None:
        if self.last_inbound_at is None:
            return None
        if self.closed_by_provider:
            return self.closed_by_provider_at
        return self.last_inbound_at + WINDOW

    @property
    def is_open(self) -> bool:
        closes = self.closes_at
        return closes is not None and not self.closed_by_provider and self.now < closes

    def explain(self, phone: str) -> str:
        """Why a free-form message to `phone` cannot go now (for an agent)."""
        if self.closed_by_provider:
            return (
                f"WhatsApp reported the customer-service window with {phone} closed at "
                f"{_rfc3339(self.closed_by_provider_at)} (error {PROVIDER_CLOSED_CODE}, "
                "re-engagement required); it reopens when the borrower writes again"
            )
        if self.last_inbound_at is None:
            return (
                f"the WhatsApp customer-service window with {phone} has never been open: "
                "the borrower has not written to us on WhatsApp"
            )
        return (
            f"the WhatsApp customer-service window with {phone} is closed since "
            f"{_rfc3339(self.closes_at)} (24 hours after the borrower's last message at "
            f"{_rfc3339(self.last_inbound_at)})"
        )


def is_session_message(payload: dict[str, Any] | None) -> bool:
    """Everything but an approved template needs the window (text, media, buttons)."""
    return not payload or payload.get("type") != "template"


async def record_inbound(
    conn: psycopg.AsyncConnection[Any],
    organization_id: Any,
    phone: str,
    at: datetime,
    provider_message_id: str | None,
    now: datetime,
) -> None:
    """Open or refresh the window: the borrower wrote at `at` (never later than now; a
    replayed old message never moves the window back)."""
    at = min(at, now)
    await conn.execute(
        "INSERT INTO whatsapp_windows (organization_id, phone, last_inbound_at, "
        "last_provider_message_id) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (organization_id, phone) DO UPDATE SET "
        "last_inbound_at = EXCLUDED.last_inbound_at, "
        "last_provider_message_id = EXCLUDED.last_provider_message_id "
        "WHERE whatsapp_windows.last_inbound_at < EXCLUDED.last_inbound_at",
        (organization_id, phone, at, provider_message_id),
    )


def closes_window(channel: str | None, error_code: str | None) -> bool:
    """Whether a message's failure with `error_code` means Meta closed the window."""
    return channel == "whatsapp" and error_code == PROVIDER_CLOSED_CODE


# Messages Meta refused with 131047, each with when: their numbers' windows are closed
# from then on (to the second, never later than now, never moved back). A number with
# no window row has never been open: there is nothing to close.
_CLOSE_SQL = """
UPDATE whatsapp_windows w
SET closed_by_provider_at = GREATEST(w.closed_by_provider_at, c.at)
FROM (
  SELECT m.organization_id, m.to_address AS phone,
         max(date_trunc('second', LEAST(u.at, coalesce(%(now)s::timestamptz, now())))) AS at
  FROM unnest(%(ids)s::uuid[], %(ats)s::timestamptz[]) AS u(id, at)
  JOIN messages m ON m.id = u.id
  WHERE m.channel = 'whatsapp'
  GROUP BY m.organization_id, m.to_address
) c
WHERE w.organization_id = c.organization_id AND w.phone = c.phone
"""


async def record_provider_closed(
    conn: psycopg.AsyncConnection[Any],
    refused: Iterable[tuple[str, datetime]],
    now: datetime | None = None,
) -> None:
    """Close the window of each (message id, when Meta refused it with 131047)'s number:
    Meta's word over our clock, until the number writes again. `now` (default: the
    database's clock) caps a refusal time that lies in the future."""
    pairs = list(refused)
    if not pairs:
        return
    await conn.execute(
        _CLOSE_SQL,
        {"ids": [mid for mid, _ in pairs], "ats": [at for _, at in pairs], "now": now},
    )


async def state(
    conn: psycopg.AsyncConnection[Any], organization_id: Any, phone: str, now: datetime
) -> WindowState:
    cur = await conn.execute(
        "SELECT last_inbound_at, closed_by_provider_at FROM whatsapp_windows "
        "WHERE organization_id = %s AND phone = %s",
        (organization_id, phone),
    )
    row = await cur.fetchone()
    return WindowState(row[0], now, row[1]) if row else WindowState(None, now)


async def closed_for(
    conn: psycopg.AsyncConnection[Any],
    messages: Iterable[tuple[str, str, str, dict[str, Any] | None]],
    now: datetime,
) -> dict[str, str]:
    """Of (message id, organization id, to, whatsapp payload) about to be sent, the
    session messages whose window is closed now, with the reason for each."""
    pending = [(mid, org, to) for mid, org, to, payload in messages if is_session_message(payload)]
    if not pending:
        return {}
    cur = await conn.execute(
        "SELECT organization_id::text, phone, last_inbound_at, closed_by_provider_at "
        "FROM whatsapp_windows "
        "WHERE (organization_id::text, phone) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([org for _, org, _ in pending], [to for _, _, to in pending]),
    )
    known = {(org, phone): (at, shut) for org, phone, at, shut in await cur.fetchall()}
    closed = {}
    for mid, org, to in pending:
        last, shut = known.get((org, to), (None, None))
        window = WindowState(last, now, shut)
        if not window.is_open:
            closed[mid] = window.explain(to) + "; send an approved template instead"
    return closed


def _rfc3339(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")
