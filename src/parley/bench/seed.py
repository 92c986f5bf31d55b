"""Bulk set-up for benchmarks and the crash test: an organization, borrowers, cases and N
queued messages with their dispatch jobs, written in one transaction like the API does
(message rows and their jobs together), but with set-based SQL so 20k rows take a second.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from parley.dispatch import outbox
from parley.domain.channels import Channel

if TYPE_CHECKING:
    from parley.bootstrap import Container


ALL_DAY_POLICY = {"contactHours": {"start": "00:00", "end": "00:00"}}


@dataclass
class Seeded:
    organization_id: str
    account_id: str
    message_ids: list[str]


SEED_SQL = """
WITH b AS (
  INSERT INTO borrowers (id, organization_id, first_name, last_name, timezone,
                         preferred_language, do_not_contact)
  SELECT gen_random_uuid(), %(org)s, 'Bench', 'Borrower ' || g, 'America/New_York', 'en_US',
         false
  FROM generate_series(1, %(borrowers)s) g
  RETURNING id
), numbered AS (
  SELECT id, row_number() OVER () AS n FROM b
), cp AS (
  INSERT INTO contact_points (id, organization_id, borrower_id, kind, value, is_primary, source)
  SELECT gen_random_uuid(), %(org)s, id, %(kind)s::text,
         CASE WHEN %(kind)s::text = 'email' THEN 'borrower' || n || '@example.com'
              ELSE '+1202555' || lpad((n %% 10000)::text, 4, '0') END, true,
         'borrower_provided'
  FROM numbered RETURNING id, borrower_id, value
), c AS (
  INSERT INTO cases (id, organization_id, case_number, creditor, original_amount,
                     outstanding_amount, currency, status)
  SELECT gen_random_uuid(), %(org)s, 'BENCH-' || n || '-' || %(tag)s::text, 'Harbor Bank', 500, 250,
         'USD', 'open'
  FROM numbered RETURNING id, case_number
)
INSERT INTO case_borrowers (case_id, borrower_id, organization_id, role)
SELECT c.id, numbered.id, %(org)s, 'primary'
FROM c JOIN numbered ON c.case_number = 'BENCH-' || numbered.n || '-' || %(tag)s::text
"""

MESSAGES_SQL = """
INSERT INTO messages (id, organization_id, case_id, borrower_id, contact_point_id, channel,
  direction, status, priority, to_address, from_address, cc, bcc, subject, body,
  provider_account_id, provider, rfc822_message_id, attempts, status_changed_at, created_at)
SELECT x.id, %(org)s, cb.case_id, cb.borrower_id, cp.id, %(channel)s, 'outbound',
  'queued', 'normal', cp.value, %(sender)s, '[]', '[]', %(subject)s,
  %(body)s || ' (' || x.g || ')', %(account)s, %(provider)s,
  CASE WHEN %(domain)s::text IS NULL THEN NULL ELSE '<' || x.id || '@' || %(domain)s || '>' END,
  0, now(), now()
FROM (SELECT gen_random_uuid() AS id, g FROM generate_series(1, %(count)s) g) x
JOIN LATERAL (
  SELECT case_id, borrower_id FROM case_borrowers WHERE organization_id = %(org)s
  OFFSET ((x.g - 1) %% %(borrowers)s) LIMIT 1
) cb ON true
JOIN contact_points cp ON cp.borrower_id = cb.borrower_id
RETURNING id::text
"""


async def seed(
    container: Container,
    *,
    count: int,
    channel: Channel,
    provider: str,
    config: dict[str, Any],
    secrets: dict[str, Any],
    borrowers: int = 500,
    rate_per_second: float | None = None,
    burst: int | None = None,
    batch_size: int | None = None,
    account_name: str = "bench",
    hold: bool = False,
) -> Seeded:
    """Seed `count` queued messages with their jobs. With `hold`, the jobs are scheduled a
    day ahead so a benchmark can start its workers first and then `release` them."""
    org = str(uuid.uuid4())
    account = str(uuid.uuid4())
    kind = "email" if channel is Channel.EMAIL else "phone"
    sender = config.get("from_address") or config.get("from_number")
    async with container.db.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO organizations (id, name, default_locale, default_timezone) "
            "VALUES (%s, %s, 'en_US', 'UTC')",
            (org, f"bench {org[:8]}"),
        )
        # The gate runs every rule at send time; its contact-hours window is open all day
        # so a result does not depend on the hour the benchmark (or crash test) runs.
        await conn.execute(
            "INSERT INTO compliance_policies (organization_id, settings, version) "
            "VALUES (%s, %s, 1)",
            (org, orjson.dumps(ALL_DAY_POLICY).decode()),
        )
        await conn.execute(
            "INSERT INTO provider_accounts (id, organization_id, name, provider, channel, "
            "config, secrets, is_default, rate_per_second, burst, enabled) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, true, %s, %s, true)",
            (
                account,
                org,
                account_name,
                provider,
                channel.value,
                orjson.dumps(config).decode(),
                orjson.dumps(secrets).decode(),
                rate_per_second,
                burst,
            ),
        )
        await conn.execute(
            SEED_SQL, {"org": org, "borrowers": borrowers, "kind": kind, "tag": org[:8]}
        )
        await _store_phone_signals(conn, org)
        cur = await conn.execute(
            MESSAGES_SQL,
            {
                "org": org,
                "channel": channel.value,
                "sender": sender,
                "subject": "Your account" if channel is Channel.EMAIL else None,
                "body": "Hello, this is a reminder about your balance. Reply STOP to opt out.",
                "account": account,
                "provider": provider,
                "count": count,
                "borrowers": borrowers,
                "domain": str(sender or "bench.local").rpartition("@")[2]
                if channel is Channel.EMAIL
                else None,
            },
        )
        ids = [r[0] for r in await cur.fetchall()]
        async with conn.cursor() as cur2:
            await cur2.executemany(
                "INSERT INTO message_events (organization_id, message_id, event_type, "
                "status_before, status_after, source, occurred_at) "
                "VALUES (%s, %s, 'queued', NULL, 'queued', 'parley', now())",
                [(org, i) for i in ids],
            )
        await outbox.defer_send(
            container.jobs,
            conn,
            ids,
            batch_size=batch_size or container.settings.dispatch_batch_size,
            schedule_at=datetime.now(UTC) + timedelta(days=1) if hold else None,
        )
    return Seeded(organization_id=org, account_id=account, message_ids=ids)


RELEASE_SQL = """
UPDATE procrastinate_jobs SET scheduled_at = NULL
WHERE status = 'todo' AND task_name = 'parley:send_messages'
  AND scheduled_at > now() + interval '1 hour'
"""


async def release(conn: Any) -> int:
    """Make held jobs due now and wake the workers, as a fresh enqueue would (an insert's
    trigger notifies them; an update of scheduled_at does not)."""
    cur = await conn.execute(RELEASE_SQL)
    await conn.execute(
        "SELECT pg_notify('procrastinate_any_queue_v1', '{\"type\": \"job_inserted\"}')"
    )
    return int(cur.rowcount)


async def _store_phone_signals(conn: psycopg.AsyncConnection, org: str) -> None:
    """What storing a phone through Parley does (models: ContactPoint before_insert): keep
    the number's time-zone signal with it, so the gate does not parse it on every send.
    Set-up work, outside any measured window."""
    from parley.compliance.zones import phone_signal

    cur = await conn.execute(
        "SELECT DISTINCT value FROM contact_points WHERE organization_id = %s AND kind = 'phone'",
        (org,),
    )
    values = [row[0] for row in await cur.fetchall()]
    if not values:
        return
    records = [orjson.dumps(phone_signal(v).as_record()).decode() for v in values]
    await conn.execute(
        "UPDATE contact_points c SET phone_tz = u.tz::jsonb FROM unnest(%s::text[], %s::text[]) "
        "AS u(value, tz) WHERE c.organization_id = %s AND c.kind = 'phone' AND c.value = u.value",
        (values, records, org),
    )
