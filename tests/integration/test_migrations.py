"""The migrations produce exactly the schema the models describe (no drift), and
migration 0016 rewrites the inbound calls recorded before it."""

from __future__ import annotations

import uuid

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from parley.storage.db import sqlalchemy_url
from parley.storage.migrate import alembic_config, upgrade
from parley.storage.models import Base
from tests.support.database import _swap_db


def test_models_and_migrations_agree(database_url):
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    # Procrastinate's own tables are installed by migration 0001 and are not modelled.
    ours = [d for d in diff if "procrastinate" not in str(d)]
    assert ours == []


OLD_INBOUND = """
INSERT INTO organizations (id, name, default_locale, default_timezone)
  VALUES (%(org)s, 'Org', 'en_US', 'UTC');
INSERT INTO borrowers (id, organization_id, first_name, last_name, do_not_contact)
  VALUES (%(b)s, %(org)s, 'Pat', 'Doe', false);
INSERT INTO contact_points (id, organization_id, borrower_id, kind, value, source, is_primary)
  VALUES (%(cp)s, %(org)s, %(b)s, 'phone', '+12125550123', 'import', true);
INSERT INTO cases (id, organization_id, case_number, creditor, original_amount,
                   outstanding_amount, currency, status)
  VALUES (%(case)s, %(org)s, 'C-1', 'Bank', 10, 10, 'USD', 'open');
INSERT INTO provider_accounts (id, organization_id, name, provider, channel, config, secrets,
                               is_default, enabled)
  VALUES (%(pa)s, %(org)s, 'voice', 'twilio', 'voice', '{"from_number": "+18005550100"}',
          '{}', true, true);
INSERT INTO calls (id, organization_id, case_id, borrower_id, contact_point_id, to_address,
                   direction, status, prior_consent, purpose, provider_account_id)
  VALUES (%(heard)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', 'inbound',
          'completed', false, 'collection', %(pa)s),
         (%(quiet)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', 'inbound',
          'completed', false, 'collection', %(pa)s),
         (%(out)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', 'outbound',
          'completed', false, 'collection', NULL);
INSERT INTO call_legs (organization_id, call_id, call_sid, role, status)
  VALUES (%(org)s, %(heard)s, 'CA1', 'customer', 'completed');
INSERT INTO call_events (organization_id, call_id, kind, call_sid, occurred_at, dedupe_key,
                         applied, raw)
  VALUES (%(org)s, %(heard)s, 'status', 'CA1', now(), 'k1', true,
          '{"CallSid": "CA1", "From": "+12125550123", "To": "+18005550199"}');
"""


def test_0016_moves_an_inbound_callers_number_to_from_address(database_url):
    """Inbound calls recorded before 0016 kept the caller in to_address: the caller moves
    to from_address and to_address becomes our number (a callback's `To`, else the
    account's from_number); outbound calls are left alone. The downgrade undoes it."""
    name = f"parley_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_swap_db(database_url, "postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _swap_db(database_url, name)
    ids = {k: uuid.uuid4() for k in ("org", "b", "cp", "case", "pa", "heard", "quiet", "out")}

    def calls() -> dict[str, tuple[str, str | None]]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT * FROM calls").fetchall()
            names = [c.name for c in conn.execute("SELECT * FROM calls LIMIT 0").description]
        by_id = {str(v): k for k, v in ids.items()}
        out = {}
        for row in rows:
            r = dict(zip(names, row, strict=True))
            out[by_id[str(r["id"])]] = (r["to_address"], r.get("from_address"))
        return out

    try:
        upgrade(url, "0015")
        with psycopg.connect(url) as conn:
            for statement in OLD_INBOUND.split(";")[:-1]:
                conn.execute(statement, ids)
        upgrade(url, "0016")
        assert calls() == {
            "heard": ("+18005550199", "+12125550123"),
            "quiet": ("+18005550100", "+12125550123"),
            "out": ("+12125550123", None),
        }
        command.downgrade(alembic_config(url), "0015")
        assert calls() == dict.fromkeys(("heard", "quiet", "out"), ("+12125550123", None))
    finally:
        with psycopg.connect(_swap_db(database_url, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
