"""Domain activity: the one place a committed change tells the outside world about itself.

Call :func:`emit` on the connection of the transaction that makes the change (a message
received, a status change, a conversation assigned, a call completed). Because it runs
inside that transaction, nothing is announced that is later rolled back, and nothing
committed goes unannounced:

- live updates: ``pg_notify`` on :data:`CHANNEL`, which PostgreSQL delivers at commit
  to every API process LISTENing (the SSE stream, ``GET /api/events/stream``);
- outbound webhooks to the customer's systems: deliveries are queued for the
  organization's subscriptions to the event type (``parley.webhooks_out``).

The dispatcher's record statement (``dispatch.statements.RECORD_SQL``) builds the
``message.status_changed`` payload of :func:`emit` in SQL for a whole batch; a test
(tests/integration/test_dispatch_claims.py) holds the two to the same payload.

Event types: ``message.created``, ``message.received``, ``message.status_changed``,
``conversation.updated``, ``conversation.assigned``, ``call.status_changed``,
``call.completed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg

from parley.webhooks_out import queue as webhooks_out_queue

CHANNEL = "parley_activity"
# NOTIFY payloads are limited to 8000 bytes; a live update carries ids and a summary,
# clients fetch the rest.
MAX_NOTIFY_BYTES = 7900


async def emit(
    conn: psycopg.AsyncConnection[Any],
    organization_id: str,
    event_type: str,
    data: dict[str, Any],
) -> None:
    """Announce `event_type` for one organization, within the caller's transaction."""
    payload = _payload(organization_id, event_type, data)
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
    await webhooks_out_queue.enqueue(conn, organization_id, event_type, data)


async def emit_many(
    conn: psycopg.AsyncConnection[Any], events: Sequence[tuple[str, str, dict[str, Any]]]
) -> None:
    """Announce several (organization id, event type, data) events in one statement, as
    :func:`emit` would one by one: for batch paths (the dispatcher's status changes,
    webhook receipts' group commits), which must not pay a round trip per message. (A
    second statement defers the delivery job only when some subscription matched.)"""
    if events:
        # One array literal (each payload double-quoted, backslash and quote escaped)
        # rather than a list psycopg adapts element by element: this runs per batch on
        # the dispatch path.
        payloads = (
            "{"
            + ",".join(
                '"'
                + _payload(org, event_type, data).replace("\\", "\\\\").replace('"', '\\"')
                + '"'
                for org, event_type, data in events
            )
            + "}"
        )
        rows = webhooks_out_queue.delivery_rows(events)
        if rows is None:
            await conn.execute(_NOTIFY_MANY_SQL, {"channel": CHANNEL, "payloads": payloads})
            return
        # The notifications and the customer webhooks' deliveries in one statement.
        cur = await conn.execute(
            _EMIT_MANY_SQL, {"channel": CHANNEL, "payloads": payloads, "events": rows}
        )
        row = await cur.fetchone()
        if row and row[0]:
            await webhooks_out_queue.defer(conn, row[0])


_NOTIFY_MANY_SQL = (
    "SELECT pg_notify(%(channel)s, p) "
    "FROM unnest(%(payloads)s::text[]) WITH ORDINALITY AS u(p, n) ORDER BY n"
)
# pg_notify is volatile, so `n` is evaluated once and in full (the count reads it all).
_EMIT_MANY_SQL = (
    f"WITH n AS ({_NOTIFY_MANY_SQL}), "  # noqa: S608 - two constant statements, no input
    f"d AS ({webhooks_out_queue.ENQUEUE_MANY_SQL.strip()}) "
    "SELECT ARRAY(SELECT id FROM d), (SELECT count(*) FROM n)"
)


def _payload(organization_id: str, event_type: str, data: dict[str, Any]) -> str:
    payload = orjson.dumps({"org": organization_id, "type": event_type, "data": data})
    if len(payload) > MAX_NOTIFY_BYTES:
        payload = orjson.dumps(
            {"org": organization_id, "type": event_type, "data": _ids_only(data)}
        )
    return payload.decode()


def _ids_only(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k.endswith("Id") or k in ("status", "channel")}
