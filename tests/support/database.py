"""Provision a throw-away PostgreSQL database for the test session.

`PARLEY_TEST_DATABASE_URL` (a server we may create databases on) is used when set;
otherwise an embedded PostgreSQL is started in a temporary directory.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from parley.storage import embedded
from parley.storage.migrate import upgrade

APP_TABLES = [
    "conversation_filings",
    "webhook_delivery_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "agent_presence",
    "call_logs",
    "call_events",
    "call_legs",
    "consent_events",
    "communication_preferences",
    "calls",
    "compliance_policies",
    "message_events",
    "message_parts",
    "compliance_decisions",
    "webhook_receipts",
    "message_attachments",
    "document_contents",
    "documents",
    "imap_cursors",
    "messages",
    "threads",
    "message_template_versions",
    "message_templates",
    "rate_buckets",
    "provider_accounts",
    "case_borrowers",
    "cases",
    "contact_points",
    "borrowers",
    "idempotency_keys",
    "api_tokens",
    "users",
    "organizations",
    "procrastinate_events",
    "procrastinate_periodic_defers",
    "procrastinate_jobs",
    "procrastinate_workers",
]


def _swap_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


@contextmanager
def provision() -> Iterator[str]:
    base = os.environ.get("PARLEY_TEST_DATABASE_URL")
    if base:
        name = f"parley_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(_swap_db(base, "postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = _swap_db(base, name)
        try:
            upgrade(url)
            yield url
        finally:
            with psycopg.connect(_swap_db(base, "postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    tmp = Path(tempfile.mkdtemp(prefix="parley-test-pg-"))
    server = embedded.start(tmp)
    try:
        url = server.url()
        upgrade(url)
        yield url
    finally:
        server.stop()


def truncate_sql() -> str:
    return "TRUNCATE " + ", ".join(APP_TABLES) + " RESTART IDENTITY CASCADE"
