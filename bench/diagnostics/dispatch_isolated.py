"""Where PostgreSQL's time goes in SMS dispatch, measured without contention.

Not a gate (see `parley bench dispatch-sms` for that): a diagnostic behind the figures in
docs/benchmarks.md, "dispatch-sms: the ceiling". It creates a database, seeds `--count`
queued SMS with their jobs (as the benchmark does), starts a Twilio API peer in this
process (no injected failures), then runs the real `Dispatcher` on every job one after
another. It prints PostgreSQL's CPU per message (the backends' own /proc figures) and
each statement's execution time per message (pg_stat_statements, which the server must
preload: `shared_preload_libraries = 'pg_stat_statements'`).

`--variant` changes one thing, to price it (each run uses a fresh database):
  no-reference-fks      drop the four foreign keys of message_events and
                        compliance_decisions (message and organization)
  set-reference-checks  ... and check them with one statement-level trigger per insert
  no-evidence           store empty rules/facts in each decision row
  no-notify             leave out the record statement's pg_notify per message

Run: `.venv/bin/python bench/diagnostics/dispatch_isolated.py --count 20000`
(`PARLEY_TEST_DATABASE_URL` names the server; default 127.0.0.1:5432, user postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from parley.bench.dispatch_sms import AUTH_TOKEN, FROM_NUMBER, account_sid
from parley.bench.processes import CpuWindow
from parley.bench.seed import seed
from parley.bootstrap import create_container
from parley.config import Settings
from parley.dispatch import pipeline, statements
from parley.domain.channels import Channel
from parley.peers.twilio_api import TwilioApiPeer

DROP_FKS = """
ALTER TABLE message_events DROP CONSTRAINT message_events_message_id_fkey;
ALTER TABLE message_events DROP CONSTRAINT message_events_organization_id_fkey;
ALTER TABLE compliance_decisions DROP CONSTRAINT compliance_decisions_message_id_fkey;
ALTER TABLE compliance_decisions DROP CONSTRAINT compliance_decisions_organization_id_fkey;
"""

SET_CHECKS = """
CREATE FUNCTION bench_check_message_refs() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF EXISTS (SELECT 1 FROM new_rows n LEFT JOIN messages m ON m.id = n.message_id
             WHERE n.message_id IS NOT NULL
               AND m.organization_id IS DISTINCT FROM n.organization_id) THEN
    RAISE EXCEPTION 'unknown message' USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $f$;
CREATE TRIGGER message_events_refs AFTER INSERT ON message_events
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION bench_check_message_refs();
CREATE TRIGGER compliance_decisions_refs AFTER INSERT ON compliance_decisions
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
  EXECUTE FUNCTION bench_check_message_refs();
"""

STATEMENTS_SQL = """
SELECT calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 80)
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = %s)
ORDER BY total_exec_time DESC LIMIT 8
"""

VARIANTS = ("none", "no-reference-fks", "set-reference-checks", "no-evidence", "no-notify")


def apply_statement_variant(variant: str) -> None:
    """Swap the dispatcher's SQL for the variants that change a statement."""
    if variant == "no-evidence":
        old = "SELECT u.org, u.id, u.outcome, u.until, ev.rules, ev.facts, 'send'"
        new = "SELECT u.org, u.id, u.outcome, u.until, '[]'::jsonb, '{}'::jsonb, 'send'"
        assert old in statements.CLAIM_BATCH_SQL
        pipeline.CLAIM_BATCH_SQL = statements.CLAIM_BATCH_SQL.replace(old, new)  # type: ignore[attr-defined]
    elif variant == "no-notify":
        sql = statements.RECORD_SQL
        pipeline.RECORD_SQL = sql[: sql.index("pg_notify(")] + "1\nFROM m, subscribed\n"  # type: ignore[attr-defined]


def _reset_statement_stats(admin_url: str) -> bool:
    """Reset pg_stat_statements; False (figures per statement left out) without it."""
    with psycopg.connect(admin_url, autocommit=True) as c:
        try:
            c.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error as exc:
            print(f"per-statement figures left out: {exc}".splitlines()[0])
            return False
    return True


def schema_variant(variant: str) -> str | None:
    if variant == "no-reference-fks":
        return DROP_FKS
    if variant == "set-reference-checks":
        return DROP_FKS + SET_CHECKS
    return None


async def run(admin_url: str, count: int, variant: str, parallelism: int) -> dict[str, Any]:
    name = "parley_iso_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(admin_url)._replace(path="/" + name))
    peer = TwilioApiPeer(accounts={account_sid(1): AUTH_TOKEN})
    await peer.start()
    container = None
    try:
        settings = Settings(database_url=url, dispatch_parallelism=parallelism)
        container = await create_container(settings, migrate=True)
        extra = schema_variant(variant)
        async with container.db.pool.connection() as conn:
            if extra:
                await conn.execute(extra)
        apply_statement_variant(variant)
        await seed(
            container,
            count=count,
            channel=Channel.SMS,
            provider="twilio",
            config={
                "base_url": peer.base_url,
                "account_sid": account_sid(1),
                "from_number": FROM_NUMBER,
                "max_concurrency": 32,
            },
            secrets={"auth_token": AUTH_TOKEN},
            batch_size=400,
            hold=True,
        )
        async with container.db.pool.connection() as conn:
            await conn.execute("ANALYZE")
            cur = await conn.execute(
                "SELECT id, args->'message_ids' FROM procrastinate_jobs "
                "WHERE task_name = 'parley:send_messages' ORDER BY id"
            )
            jobs = await cur.fetchall()
        # The first job warms caches and plans; it is left out of the figures.
        await pipeline.Dispatcher(container, job_id=jobs[0][0]).run(jobs[0][1])
        statements_on = _reset_statement_stats(admin_url)
        window, started = CpuWindow(url).start(), time.perf_counter()
        sent = 0
        for job_id, ids in jobs[1:]:
            await pipeline.Dispatcher(container, job_id=job_id).run(ids)
            sent += len(ids)
        wall = time.perf_counter() - started
        pg = window.stop()["postgres_cpu_s"]
        rows: list[Any] = []
        if statements_on:
            with psycopg.connect(admin_url, autocommit=True) as c:
                rows = c.execute(STATEMENTS_SQL, (name,)).fetchall()
        async with container.db.pool.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) FROM messages GROUP BY 1")
            statuses = await cur.fetchall()
        return {
            "variant": variant,
            "messages": sent,
            "wall_s": round(wall, 2),
            "postgres_us_per_msg": round(1e6 * pg / sent),
            "statements": [(round(1000 * t / sent, 1), calls, q) for calls, t, q in rows],
            "statuses": dict(statuses),
        }
    finally:
        if container is not None:
            await container.close()
        await peer.stop()
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--variant", choices=VARIANTS, default="none")
    parser.add_argument("--parallelism", type=int, default=200, help="messages per claim")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "PARLEY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.database_url, args.count, args.variant, args.parallelism))
    print(
        f"{result['variant']}: {result['messages']} messages in {result['wall_s']} s; "
        f"PostgreSQL CPU {result['postgres_us_per_msg']} us/message; {result['statuses']}"
    )
    for per_msg, calls, query in result["statements"]:
        print(f"  {per_msg:6.1f} us/message  {calls:5d} calls  {query}")


if __name__ == "__main__":
    main()
