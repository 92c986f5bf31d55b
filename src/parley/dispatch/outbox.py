"""Deferring dispatch jobs inside the caller's transaction (the transactional outbox).

A message row and the job that will send it are written by the same transaction on the
same connection: both exist or neither does (invariant 1). Bulk sends put many message
ids in one job, because the job framework (not PostgreSQL) is the per-job bottleneck.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
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


# A retry joins a job that is still waiting and due at the very same time (retries are
# scheduled on a 100 ms grid, pipeline._retry_slot_after): the retries of every batch
# that failed around the same moment then share one job, instead of each batch's few
# retries paying for a job of their own (fetch, peek, finish: more round trips than the
# retries themselves). The job's row is locked for the rest of the caller's transaction
# (a worker fetching jobs skips it meanwhile); a job already taken is not joined.
JOIN_WAITING_SQL = """
UPDATE procrastinate_jobs j
SET args = jsonb_set(j.args, '{message_ids}', (j.args->'message_ids') || %(ids)s::jsonb)
WHERE j.id = (
  SELECT id FROM procrastinate_jobs
  WHERE status = 'todo' AND task_name = %(task)s AND scheduled_at = %(at)s
    AND priority = %(priority)s
    AND jsonb_array_length(args->'message_ids') + %(n)s <= %(most)s
  ORDER BY id LIMIT 1
  FOR UPDATE SKIP LOCKED)
RETURNING j.id
"""


async def defer_retry(
    app: procrastinate.App,
    conn: psycopg.AsyncConnection,
    message_ids: Sequence[str],
    *,
    schedule_at: datetime,
    batch_size: int = 200,
) -> None:
    """Give `message_ids` a job due at `schedule_at` on `conn` (the caller commits): a
    waiting job due then, when there is one with room, else a new one."""
    if len(message_ids) < batch_size:
        cur = await conn.execute(
            JOIN_WAITING_SQL,
            {
                "ids": orjson.dumps(list(message_ids)).decode(),
                "task": SEND_TASK,
                "at": schedule_at,
                "priority": PRIORITIES["normal"],
                "n": len(message_ids),
                "most": batch_size,
            },
        )
        if await cur.fetchone() is not None:
            return
    await defer_send(app, conn, message_ids, batch_size=batch_size, schedule_at=schedule_at)
