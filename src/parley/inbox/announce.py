"""The `message.status_changed` announcement, the same from every path that moves a
message's status (provider receipts, the dispatcher, cancel, review)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg

from parley.services import activity

EVENT = "message.status_changed"


def status_change_data(
    message_id: str,
    case_id: str | None,
    channel: str | None,
    status: str,
    previous: str | None,
    at: datetime,
    error_code: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messageId": message_id,
        "caseId": case_id,
        "messageType": channel,
        "status": status,
        "previousStatus": previous,
        "timestamp": at.isoformat(),
    }
    if error_code:
        data["errorCode"] = error_code
    return data


async def status_changes(
    conn: psycopg.AsyncConnection[Any], changes: Iterable[tuple[str, dict[str, Any]]]
) -> None:
    """Announce many (organization id, data) status changes in one statement: one
    notification per changed message, no query per message (the dispatch path)."""
    await activity.emit_many(conn, [(org, EVENT, data) for org, data in changes])
