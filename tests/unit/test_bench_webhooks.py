"""Smoke test of `parley bench webhooks`, and proof that its verification can fail.

The workload runs tiny (`--quick`, one bare run) as a `parley` subprocess against this
session's test database. Its record must carry every figure and pass every correctness
check (timings and gate verdicts depend on the machine: present, never asserted). Then
the database is damaged the way a lost or doubled transition would look, and the
benchmark's own verification, rebuilt from the same seed, must say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg

from parley.bench.webhooks import build_plan, verify


def _run(database_url: str, results: Path, log: Path) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k != "PARLEY_BENCH_DATABASE_URL"}
    command = [sys.executable, "-m", "parley.cli", "bench", "webhooks", "--quick"]
    command += ["--raw-runs", "1", "--database-url", database_url, "--results", str(results)]
    with log.open("wb") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    output = log.read_text(errors="replace")
    assert results.exists(), f"no record written:\n{output[-3000:]}"
    lines = results.read_text().splitlines()
    assert len(lines) == 1
    return code.returncode, json.loads(lines[0]), output


def _checks(conn: psycopg.Connection[Any], record: dict[str, Any]) -> dict[str, bool]:
    org, account = record["seeded"]["organization_id"], record["seeded"]["account_id"]
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT provider_message_id FROM messages WHERE organization_id = %s", (org,)
        ).fetchall()
    ]
    plan = build_plan(ids, seed=7)
    return {c["check"]: c["passed"] for c in verify(conn, org, account, plan)}


def test_quick_run_passes_its_checks_and_catches_lost_or_doubled_transitions(
    container: Any, database_url: str, tmp_path: Path
) -> None:
    code, record, output = _run(database_url, tmp_path / "webhooks.jsonl", tmp_path / "log")

    assert record["workload"] == "webhooks"
    assert not record.get("error"), output[-3000:]
    assert record["quick"] is True
    assert record["machine"]["loadavg_at_start"] and record["machine"]["loadavg_at_end"]
    for key in ("raw_figure", "parley_figure", "ratio", "settings", "raw_runs", "latency"):
        assert key in record, key
    for key in ("p50_ms", "p95_ms", "p99_ms", "offered_req_per_s"):
        assert key in record["latency"], key
    assert {g["gate"] for g in record["gates"]} == {
        "parley >= 0.5x raw",
        "p99 <= 250 ms at 80% load",
    }
    assert code == (0 if record["passed"] else 1), output[-3000:]
    failed = [c for c in record["checks"] if not c["passed"]]
    assert not failed, json.dumps(failed, indent=1)
    assert record["settings"]["duplicates"] > 0
    assert record["settings"]["callbacks"] > record["settings"]["distinct_callbacks"]

    with psycopg.connect(database_url, autocommit=True) as conn:
        assert all(_checks(conn, record).values())  # rebuilt from the seed: the same plan

        # A lost transition: the `delivered` event of one message vanishes, and the
        # message's status with it (as if that callback had never been applied).
        org = record["seeded"]["organization_id"]
        row = conn.execute(
            "SELECT e.id, e.message_id FROM message_events e JOIN messages m "
            "ON m.id = e.message_id WHERE m.organization_id = %s AND e.source = 'provider' "
            "AND e.status_after <> e.status_before LIMIT 1",
            (org,),
        ).fetchone()
        assert row is not None
        with conn.transaction():
            conn.execute("SET LOCAL parley.erasure = 'on'")  # past the append-only guard
            conn.execute("DELETE FROM message_events WHERE id = %s", (row[0],))
        checks = _checks(conn, record)
        assert checks["no lost transition"] is False
        assert checks["no duplicated transition"] is True

        # A doubled transition on another message: the same move recorded twice.
        other = conn.execute(
            "SELECT e.message_id, e.organization_id, e.event_type, e.status_before, "
            "e.status_after FROM message_events e JOIN messages m ON m.id = e.message_id "
            "WHERE m.organization_id = %s AND e.source = 'provider' AND e.message_id <> %s "
            "AND e.status_after <> e.status_before LIMIT 1",
            (org, row[1]),
        ).fetchone()
        assert other is not None
        conn.execute(
            "INSERT INTO message_events (message_id, organization_id, event_type, "
            "status_before, status_after, source, provider_event_id, occurred_at) "
            "VALUES (%s, %s, %s, %s, %s, 'provider', %s, now())",
            (*other, f"forged-{uuid.uuid4()}"),
        )
        assert _checks(conn, record)["no duplicated transition"] is False
