"""Reconciliation: messages that lost their dispatch job get one again.

A message row and its job are written together, so this only matters when a job ends
without finishing its messages: it exhausted Procrastinate's retries (a long database
outage), or someone deleted it. Due `queued`/`scheduled` messages with no waiting or
running job are deferred again; `sending` messages whose claiming job is over (and that
no re-run will resolve) are marked for review — they may have reached the provider.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from parley.dispatch import outbox

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)  # leave room for a job that is about to be picked up

# Both queries say `in_flight` (status is queued, sending or scheduled): the partial
# index over in-flight messages is defined on that column, not on status (migration 0005).
# The ids the live send jobs carry are listed once and anti-joined by hash: a correlated
# `NOT EXISTS (... args->'message_ids' ? m.id)` searched every live job's id list for
# every candidate, and with a backlog of 120k messages queued behind rate limits for
# more than GRACE one run took over a minute of a core (runs overlapped, and inbox reads
# slowed 3-10x while it ran). Now one run costs about a scan of the backlog.
ORPHANS_SQL = """
WITH covered AS MATERIALIZED (
  SELECT jsonb_array_elements_text(j.args->'message_ids') AS id
  FROM procrastinate_jobs j
  WHERE j.task_name = 'parley:send_messages' AND j.status IN ('todo', 'doing')
)
SELECT m.id::text FROM messages m
WHERE m.in_flight AND m.status IN ('queued', 'scheduled')
  AND coalesce(m.scheduled_at, m.created_at) < %(cutoff)s
  AND m.status_changed_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM covered c WHERE c.id = m.id::text)
ORDER BY m.created_at
LIMIT %(limit)s
FOR UPDATE OF m SKIP LOCKED
"""

DEAD_CLAIMS_SQL = """
UPDATE messages m SET status = 'needs_review', status_changed_at = %(now)s,
       error_code = 'claim_lost',
       error_detail = 'the job sending this message ended without recording the outcome'
WHERE m.in_flight AND m.status = 'sending' AND m.status_changed_at < %(cutoff)s
  AND NOT EXISTS (
    SELECT 1 FROM procrastinate_jobs j
    WHERE j.id = m.claim_job_id AND j.status IN ('todo', 'doing'))
RETURNING m.id::text, m.organization_id::text
"""


async def reconcile(
    container: Container, limit: int = 1000, now: datetime | None = None
) -> tuple[int, int]:
    """Re-defer orphaned messages and review dead claims; returns (requeued, reviewed)."""
    now = now or container.clock()
    cutoff = now - GRACE
    async with container.db.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(ORPHANS_SQL, {"cutoff": cutoff, "limit": limit})
        orphans = [r[0] for r in await cur.fetchall()]
        if orphans:
            log.warning("re-deferring %d messages that had no dispatch job", len(orphans))
            await outbox.defer_send(container.jobs, conn, orphans)
        cur = await conn.execute(DEAD_CLAIMS_SQL, {"now": now, "cutoff": cutoff})
        reviewed = await cur.fetchall()
        if reviewed:
            async with conn.cursor() as c2:
                await c2.executemany(
                    "INSERT INTO message_events (organization_id, message_id, event_type, "
                    "status_before, status_after, source, error_code, reason, occurred_at) "
                    "VALUES (%s, %s, 'needs_review', 'sending', 'needs_review', 'parley', "
                    "'claim_lost', 'the job sending it ended without recording the outcome', "
                    "%s)",
                    [(org, mid, now) for mid, org in reviewed],
                )
    return len(orphans), len(reviewed)
