"""Queueing deliveries for a domain event, in the transaction that made the change.

``services.activity.emit`` calls :func:`enqueue`: one statement inserts a delivery for
each of the organization's enabled endpoints subscribed to the event type (none for an
organization without subscriptions: one probe of a small partial index) and, only when
some matched, a delivery job is deferred on the same connection. The event and its
webhooks therefore commit or roll back together.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import procrastinate
import psycopg

from parley.webhooks_out import payloads

DELIVER_TASK = "parley:deliver_webhooks"
QUEUE = "webhooks"

_ENQUEUE_SQL = """
INSERT INTO webhook_deliveries (id, organization_id, endpoint_id, event_id, event_type,
                                payload, status, attempts, next_attempt_at)
SELECT gen_random_uuid(), e.organization_id, e.id, %(event_id)s, %(event_type)s::text,
       %(payload)s::jsonb, 'pending', 0, now()
FROM webhook_endpoints e
WHERE e.organization_id = %(org)s::uuid AND e.enabled
  AND %(event_type)s::text = ANY(e.event_types)
RETURNING id::text
"""

# Deferring needs only the task's name and the caller's connection (never this App's
# own pool, which is never opened): so `emit`, which is handed a bare connection, can
# defer without reaching for the process's composition root.
_deferrer = procrastinate.App(connector=procrastinate.PsycopgConnector())


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


async def enqueue(
    conn: psycopg.AsyncConnection[Any],
    organization_id: str,
    event_type: str,
    data: dict[str, Any],
) -> list[str]:
    """Queue `event_type` for the organization's subscribers; the new delivery ids."""
    if event_type not in payloads.SUBSCRIBABLE:
        return []
    payload = payloads.build(event_type, data, datetime.now(UTC))
    cur = await conn.execute(
        _ENQUEUE_SQL,
        {
            "event_id": new_event_id(),
            "event_type": event_type,
            "payload": orjson.dumps(payload).decode(),
            "org": organization_id,
        },
    )
    ids = [row[0] for row in await cur.fetchall()]
    if ids:
        await defer(conn, ids)
    return ids


# The events as one JSON array: orjson writes it in C, where psycopg would adapt (and
# escape) every payload of a text[] in Python -- this runs per batch on hot paths.
ENQUEUE_MANY_SQL = """
INSERT INTO webhook_deliveries (id, organization_id, endpoint_id, event_id, event_type,
                                payload, status, attempts, next_attempt_at)
SELECT gen_random_uuid(), e.organization_id, e.id, u.event_id, u.event_type,
       u.payload, 'pending', 0, now()
FROM jsonb_to_recordset(%(events)s::jsonb)
     AS u(org uuid, event_type text, event_id text, payload jsonb)
JOIN webhook_endpoints e
  ON e.organization_id = u.org AND e.enabled AND u.event_type = ANY(e.event_types)
RETURNING id::text
"""


def delivery_rows(events: Sequence[tuple[str, str, dict[str, Any]]]) -> str | None:
    """The `%(events)s` parameter of :data:`ENQUEUE_MANY_SQL` for (organization id, event
    type, data) events: one JSON array; None when no event is of a subscribable type."""
    wanted = [(org, t, data) for org, t, data in events if t in payloads.SUBSCRIBABLE]
    if not wanted:
        return None
    now = datetime.now(UTC)
    return orjson.dumps(
        [
            {
                "org": org,
                "event_type": t,
                "event_id": new_event_id(),
                "payload": payloads.build(t, data, now),
            }
            for org, t, data in wanted
        ]
    ).decode()


async def enqueue_many(
    conn: psycopg.AsyncConnection[Any],
    events: Sequence[tuple[str, str, dict[str, Any]]],
) -> list[str]:
    """:func:`enqueue` for several (organization id, event type, data) events in one
    statement (the dispatcher's batches); the new delivery ids."""
    rows = delivery_rows(events)
    if rows is None:
        return []
    cur = await conn.execute(ENQUEUE_MANY_SQL, {"events": rows})
    ids = [row[0] for row in await cur.fetchall()]
    if ids:
        await defer(conn, ids)
    return ids


async def defer(
    conn: psycopg.AsyncConnection[Any],
    delivery_ids: Sequence[str],
    schedule_at: datetime | None = None,
) -> None:
    """Defer a delivery job for `delivery_ids` on `conn` (the caller commits)."""
    deferrer = _deferrer.configure_task(
        DELIVER_TASK, queue=QUEUE, connection=conn, schedule_at=schedule_at
    )
    await deferrer.defer_async(delivery_ids=list(delivery_ids))
