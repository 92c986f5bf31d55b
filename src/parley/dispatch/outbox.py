"""Deferring dispatch jobs inside the caller's transaction (the transactional outbox).

A message row and the job that will send it are written by the same transaction on the
same connection: both exist or neither does (invariant 1). Bulk sends put many message
ids in one job, because the job framework (not PostgreSQL) is the per-job bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import procrastinate
import psycopg

PRIORITIES = {"high": 10, "normal": 0, "low": -10}
SEND_TASK = "parley:send_messages"


def chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


async def defer_send(
    app: procrastinate.App,
    conn: psycopg.AsyncConnection,
    message_ids: Sequence[str],
    *,
    batch_size: int = 200,
    schedule_at: datetime | None = None,
    priority: str = "normal",
) -> list[int]:
    """Defer send jobs for `message_ids` on `conn`; the caller commits."""
    task = app.tasks[SEND_TASK]
    deferrer = task.configure(
        connection=conn, schedule_at=schedule_at, priority=PRIORITIES.get(priority, 0)
    )
    payloads = [{"message_ids": batch} for batch in chunks(message_ids, batch_size)]
    if not payloads:
        return []
    return await deferrer.batch_defer_async(*payloads)
