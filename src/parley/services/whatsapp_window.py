"""The WhatsApp 24-hour customer-service window, per (organization, borrower number).

WhatsApp lets a business send free-form messages (text, media, interactive buttons)
only within 24 hours of the customer's last message; outside it only approved templates
go through (Meta answers error 131047 otherwise). Parley applies the rule itself, for
every WhatsApp provider including the sandbox: each inbound WhatsApp message opens or
refreshes the window (`record_inbound`), the messages API refuses session messages
outside it, and the dispatcher checks again at send time, since a message created inside
the window may be sent after it closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

WINDOW = timedelta(hours=24)
CLOSED_CODE = "whatsapp_window_closed"


@dataclass(frozen=True, slots=True)
class WindowState:
    last_inbound_at: datetime | None
    now: datetime

    @property
    def closes_at(self) -> datetime | None:
        return None if self.last_inbound_at is None else self.last_inbound_at + WINDOW

    @property
    def is_open(self) -> bool:
        closes = self.closes_at
        return closes is not None and self.now < closes

    def explain(self, phone: str) -> str:
        """Why a free-form message to `phone` cannot go now (for an agent)."""
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


async def state(
    conn: psycopg.AsyncConnection[Any], organization_id: Any, phone: str, now: datetime
) -> WindowState:
    cur = await conn.execute(
        "SELECT last_inbound_at FROM whatsapp_windows WHERE organization_id = %s AND phone = %s",
        (organization_id, phone),
    )
    row = await cur.fetchone()
    return WindowState(row[0] if row else None, now)


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
        "SELECT organization_id::text, phone, last_inbound_at FROM whatsapp_windows "
        "WHERE (organization_id::text, phone) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([org for _, org, _ in pending], [to for _, _, to in pending]),
    )
    last = {(org, phone): at for org, phone, at in await cur.fetchall()}
    closed = {}
    for mid, org, to in pending:
        window = WindowState(last.get((org, to)), now)
        if not window.is_open:
            closed[mid] = window.explain(to) + "; send an approved template instead"
    return closed


def _rfc3339(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")
