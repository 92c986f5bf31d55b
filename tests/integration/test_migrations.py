"""The migrations produce exactly the schema the models describe (no drift), and
migrations 0016 and 0017 rewrite the calls recorded before them."""

from __future__ import annotations

import uuid

import psycopg
import pytest
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


# An organization, a borrower with a phone, a case and a Twilio voice account.
OLD_WORLD = """
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
"""

OLD_INBOUND = (
    OLD_WORLD
    + """
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
)


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
        # The call record guard is back on and covers the new column.
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.RaiseException):
            conn.execute(
                "UPDATE calls SET from_address = '+15550000000' WHERE id = %s", (ids["heard"],)
            )
        command.downgrade(alembic_config(url), "0015")
        assert calls() == dict.fromkeys(("heard", "quiet", "out"), ("+12125550123", None))
    finally:
        with psycopg.connect(_swap_db(database_url, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


OLD_OUTBOUND = (
    OLD_WORLD
    + """
INSERT INTO calls (id, organization_id, case_id, borrower_id, contact_point_id, to_address,
                   from_address, direction, status, prior_consent, purpose,
                   provider_account_id)
  VALUES (%(bridged)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', NULL, 'outbound',
          'completed', false, 'collection', %(pa)s),
         (%(agent_only)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', NULL,
          'outbound', 'canceled', false, 'collection', %(pa)s),
         (%(silent)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', NULL, 'outbound',
          'failed', false, 'collection', %(pa)s),
         (%(by_hand)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+12125550123', NULL, 'outbound',
          'completed', false, 'collection', NULL),
         (%(inbound)s, %(org)s, %(case)s, %(b)s, %(cp)s, '+18005550100', '+12125550123',
          'inbound', 'completed', false, 'collection', %(pa)s);
INSERT INTO call_legs (organization_id, call_id, call_sid, role, status)
  VALUES (%(org)s, %(bridged)s, 'CA1', 'agent', 'completed'),
         (%(org)s, %(bridged)s, 'CA2', 'customer', 'completed'),
         (%(org)s, %(agent_only)s, 'CA3', 'agent', 'no-answer'),
         (%(org)s, %(inbound)s, 'CA4', 'customer', 'completed');
INSERT INTO call_events (organization_id, call_id, kind, call_sid, occurred_at, dedupe_key,
                         applied, raw)
  VALUES (%(org)s, %(bridged)s, 'status', 'CA1', now(), 'k1', true,
          '{"CallSid": "CA1", "From": "+18005550111", "To": "client:ada"}'),
         (%(org)s, %(bridged)s, 'status', 'CA2', now(), 'k2', true,
          '{"CallSid": "CA2", "From": "+18005550122", "To": "+12125550123"}'),
         (%(org)s, %(agent_only)s, 'status', 'CA3', now(), 'k3', true,
          '{"CallSid": "CA3", "From": "+18005550133", "To": "client:ada"}'),
         (%(org)s, %(agent_only)s, 'error', NULL, now(), 'k4', false,
          '{"From": "+18005550144"}'),
         (%(org)s, %(inbound)s, 'status', 'CA4', now(), 'k5', true,
          '{"CallSid": "CA4", "From": "+12125550123", "To": "+18005550100"}');
"""
)


def test_0017_fills_an_outbound_calls_from_with_the_number_it_was_placed_from(database_url):
    """Outbound calls placed through a voice account before 0017 have no from_address: it
    becomes the `From` of a callback about one of their legs (the borrower's first), and
    stays null where none was received -- never the account's current number, which may
    have changed since. Hand-dialed and inbound calls are left alone."""
    name = f"parley_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_swap_db(database_url, "postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _swap_db(database_url, name)
    keys = ("org", "b", "cp", "case", "pa", "bridged", "agent_only", "silent", "by_hand")
    ids = {k: uuid.uuid4() for k in (*keys, "inbound")}
    by_id = {str(v): k for k, v in ids.items()}

    def calls() -> dict[str, tuple[str, str | None]]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id, to_address, from_address FROM calls").fetchall()
        return {by_id[str(r[0])]: (r[1], r[2]) for r in rows}

    try:
        upgrade(url, "0016")
        with psycopg.connect(url) as conn:
            for statement in OLD_OUTBOUND.split(";")[:-1]:
                conn.execute(statement, ids)
        upgrade(url, "0017")
        borrower, ours = "+12125550123", "+18005550100"
        assert calls() == {
            "bridged": (borrower, "+18005550122"),
            "agent_only": (borrower, "+18005550133"),
            "silent": (borrower, None),
            "by_hand": (borrower, None),
            "inbound": (ours, borrower),
        }
        # The record guard is back on.
        with (
            psycopg.connect(url) as conn,
            pytest.raises(psycopg.errors.RaiseException, match="append-only"),
        ):
            conn.execute("UPDATE calls SET from_address = '+1999' WHERE id = %s", (ids["bridged"],))
        command.downgrade(alembic_config(url), "0016")
        assert calls()["bridged"] == (borrower, "+18005550122")
    finally:
        with psycopg.connect(_swap_db(database_url, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
