"""Delivering queued webhooks: claim, post, record the attempt, decide what comes next.

Each attempt is claimed in a short transaction first (the attempt is counted and the
delivery's ``next_attempt_at`` pushed out by a lease), then posted with no database
connection held, then recorded in a second transaction: the attempt row, the
delivery's new state and, for a retry, the job that will make it. A duplicate job for
the same delivery finds it not due and does nothing.

Outcomes: 2xx succeeds; 410 Gone disables the endpoint (reason ``gone_410``) and
abandons its other pending deliveries; anything else (3xx, 4xx, 5xx, a timeout, a
refused target) is retried on the schedule in ``schedule`` and ends ``failed`` when
that runs out. A job lost with a dead worker is found by :func:`sweep`.

A rotated-out secret whose grace period has ended signs nothing more and is not kept
either: the claim of the endpoint's next delivery clears it from the endpoint's row, and
so does :func:`sweep` (every minute) for endpoints with nothing to deliver.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from parley.webhooks_out import payloads, queue, schedule, signing
from parley.webhooks_out.sender import Outcome, for_container

if TYPE_CHECKING:
    from parley.bootstrap import Container

log = logging.getLogger(__name__)

# How long a claimed attempt may take before the sweeper may give it to another job.
LEASE = timedelta(minutes=2)
# A pending delivery this overdue with no job waiting has lost its job.
SWEEP_GRACE = timedelta(minutes=2)

_CLAIM_SQL = """
SELECT d.status, d.next_attempt_at <= now(), d.attempts, d.event_id, d.payload,
       e.id::text, e.url, e.secret, e.enabled, e.disabled_reason,
       e.previous_secret, e.previous_secret_expires_at
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.id = %s
FOR UPDATE OF d SKIP LOCKED
"""

# Forget a rotated-out secret once its grace period is over (on the container's clock,
# like the rotation that set it). A row another transaction holds (a rotation, a
# concurrent claim) is skipped, not waited for: the next claim or sweep gets it.
_FORGET_SQL = """
UPDATE webhook_endpoints SET previous_secret = NULL, previous_secret_expires_at = NULL
WHERE id IN (
  SELECT id FROM webhook_endpoints
  WHERE previous_secret_expires_at <= %(now)s AND (%(id)s::uuid IS NULL OR id = %(id)s::uuid)
  FOR UPDATE SKIP LOCKED
)
"""

# The live jobs' delivery ids listed once and anti-joined by hash (as in
# dispatch/reconcile.py: a correlated search of every job's list per delivery grew as
# deliveries x jobs).
_SWEEP_SQL = """
WITH covered AS MATERIALIZED (
  SELECT jsonb_array_elements_text(j.args->'delivery_ids') AS id
  FROM procrastinate_jobs j
  WHERE j.task_name = %(task)s AND j.status IN ('todo', 'doing')
)
SELECT d.id::text FROM webhook_deliveries d
WHERE d.status = 'pending' AND d.next_attempt_at < now() - %(grace)s
  AND NOT EXISTS (SELECT 1 FROM covered c WHERE c.id = d.id::text)
ORDER BY d.next_attempt_at
LIMIT %(limit)s
FOR UPDATE OF d SKIP LOCKED
"""


async def deliver(container: Container, delivery_ids: list[str]) -> None:
    """Make the due attempt of each delivery (one job may carry several endpoints')."""
    await asyncio.gather(*(deliver_one(container, d) for d in delivery_ids))


@dataclass(frozen=True, slots=True)
class _Claim:
    """A claimed attempt: what to post where, and the secrets to sign it with."""

    attempt: int
    event_id: str
    payload: dict[str, Any]
    endpoint_id: str
    url: str
    secret: str
    previous_secret: str | None  # a rotated-out secret still in its grace period

    def __repr__(self) -> str:  # never show the secrets (tracebacks, debuggers)
        return f"_Claim(attempt={self.attempt}, endpoint_id={self.endpoint_id})"


def _in_grace(container: Container, secret: str | None, expires_at: datetime | None) -> bool:
    """Whether a rotated-out secret still signs (its grace period runs on the container's
    clock, like the rotation that set it)."""
    return secret is not None and expires_at is not None and container.clock() < expires_at


async def deliver_one(container: Container, delivery_id: str) -> Outcome | None:
    claim = await _claim(container, delivery_id)
    if claim is None:
        return None
    body = payloads.encode(claim.payload)
    # Wall-clock time, not the container's clock: receivers compare the signed timestamp
    # with their own clocks.
    requested_at = datetime.now(UTC)
    headers = signing.headers(
        claim.secret,
        claim.event_id,
        int(requested_at.timestamp()),
        body,
        previous=claim.previous_secret,
    )
    outcome = await for_container(container).post(claim.url, body, headers)
    await _record(container, delivery_id, claim.endpoint_id, claim.attempt, requested_at, outcome)
    return outcome


async def _claim(container: Container, delivery_id: str) -> _Claim | None:
    async with container.db.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_CLAIM_SQL, (delivery_id,))
        row = await cur.fetchone()
        if row is None:
            return None  # gone, or another job holds it right now
        status, due, attempts, event_id, payload, endpoint_id, url, secret, enabled, why = row[:10]
        previous, previous_expires_at = row[10:]
        if status != "pending" or not due:
            return None
        if previous is not None and not _in_grace(container, previous, previous_expires_at):
            await forget_expired_secrets(conn, container.clock(), endpoint_id)
            previous = None
        if not enabled:
            await conn.execute(
                "UPDATE webhook_deliveries SET status = 'abandoned', next_attempt_at = NULL, "
                "last_error = %s WHERE id = %s",
                (f"endpoint disabled ({why})", delivery_id),
            )
            return None
        attempt = attempts + 1
        await conn.execute(
            "UPDATE webhook_deliveries SET attempts = %s, last_attempt_at = now(), "
            "next_attempt_at = now() + %s WHERE id = %s",
            (attempt, LEASE, delivery_id),
        )
    return _Claim(attempt, event_id, payload, endpoint_id, url, secret, previous)


async def _record(
    container: Container,
    delivery_id: str,
    endpoint_id: str,
    attempt: int,
    requested_at: datetime,
    outcome: Outcome,
) -> None:
    gone = outcome.status == 410
    if outcome.succeeded:
        status, delay = "succeeded", None
    elif gone:
        status, delay = "failed", None
    else:
        delay = schedule.delay_after(attempt)
        status = "pending" if delay is not None else "failed"
    next_at = requested_at + timedelta(seconds=delay) if delay is not None else None
    async with container.db.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO webhook_delivery_attempts (organization_id, delivery_id, attempt, "
            "requested_at, response_status, response_body, duration_ms, error) "
            "SELECT organization_id, id, %s, %s, %s, %s, %s, %s FROM webhook_deliveries "
            "WHERE id = %s",
            (
                attempt,
                requested_at,
                outcome.status,
                outcome.body_excerpt,
                outcome.duration_ms,
                outcome.error,
                delivery_id,
            ),
        )
        # Only the claimed attempt may move the delivery (an admin may have disabled the
        # endpoint meanwhile, which abandoned it).
        cur = await conn.execute(
            "UPDATE webhook_deliveries SET status = %s, next_attempt_at = %s, "
            "last_response_status = %s, last_response_body = %s, last_error = %s "
            "WHERE id = %s AND status = 'pending' AND attempts = %s",
            (
                status,
                next_at,
                outcome.status,
                outcome.body_excerpt,
                outcome.error,
                delivery_id,
                attempt,
            ),
        )
        if cur.rowcount and status == "pending":
            await queue.defer(conn, [delivery_id], schedule_at=next_at)
        if gone:
            await disable_endpoint(conn, endpoint_id, "gone_410")
            log.warning("webhook endpoint %s answered 410 Gone: disabled", endpoint_id)
        elif status == "failed":
            log.warning("webhook delivery %s failed after %d attempts", delivery_id, attempt)


async def disable_endpoint(
    conn: psycopg.AsyncConnection[Any], endpoint_id: str, reason: str
) -> int:
    """Disable an endpoint and abandon its pending deliveries; how many were abandoned."""
    await conn.execute(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = %s, "
        "disabled_at = now(), updated_at = now() WHERE id = %s AND enabled",
        (reason, endpoint_id),
    )
    cur = await conn.execute(
        "UPDATE webhook_deliveries SET status = 'abandoned', next_attempt_at = NULL, "
        "last_error = %s WHERE endpoint_id = %s AND status = 'pending'",
        (f"endpoint disabled ({reason})", endpoint_id),
    )
    return cur.rowcount


async def forget_expired_secrets(
    conn: psycopg.AsyncConnection[Any], now: datetime, endpoint_id: str | None = None
) -> int:
    """Clear the rotated-out secrets whose grace period ended by `now` (of one endpoint,
    or of all); how many endpoints were cleared."""
    cur = await conn.execute(_FORGET_SQL, {"now": now, "id": endpoint_id})
    return cur.rowcount


async def sweep(container: Container, limit: int = 500) -> int:
    """Give pending deliveries whose job was lost (a dead worker) a new one (how many),
    and forget the rotated-out secrets whose grace period is over."""
    async with container.db.pool.connection() as conn, conn.transaction():
        await forget_expired_secrets(conn, container.clock())
    async with container.db.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            _SWEEP_SQL, {"grace": SWEEP_GRACE, "task": queue.DELIVER_TASK, "limit": limit}
        )
        ids = [r[0] for r in await cur.fetchall()]
        if ids:
            log.warning("re-deferring %d webhook deliveries that had no job", len(ids))
            await queue.defer(conn, ids)
    return len(ids)
