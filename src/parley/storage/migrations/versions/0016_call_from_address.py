"""Calls: who called whom on an inbound call.

- calls.from_address: the caller's number on an inbound call (the webhook's ``From``).
  Until now an inbound call stored the caller in ``to_address``; ``to_address`` is now
  our number (the webhook's ``To``), as on any call it is the number that was dialed.
  Outbound calls leave it null.
- Existing inbound calls are rewritten: the caller moves to ``from_address`` and
  ``to_address`` becomes our number -- the ``To`` of a callback about the caller's leg
  when one was received, else the voice account's ``from_number``, else it stays as it
  was.
- The call record guard counts ``from_address`` as part of a call's identity.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_IDENTITY = (
    "organization_id, case_id, borrower_id, contact_point_id, to_address, {extra}"
    "direction, prior_consent, purpose, placed_by_user_id, placed_by_name, created_at"
)


def _guard(identity: str) -> str:
    """parley_call_record_guard (migration 0005) over the columns of `identity`."""
    old = ", ".join("OLD." + c.strip() for c in identity.split(","))
    new = ", ".join("NEW." + c.strip() for c in identity.split(","))
    return f"""
CREATE OR REPLACE FUNCTION parley_call_record_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  IF ({new}) IS DISTINCT FROM ({old})
     OR (OLD.placed_at IS NOT NULL AND NEW.placed_at IS DISTINCT FROM OLD.placed_at)
     OR (OLD.result IS NOT NULL AND (NEW.result, NEW.ended_at, NEW.notes)
         IS DISTINCT FROM (OLD.result, OLD.ended_at, OLD.notes)) THEN
    RAISE EXCEPTION 'parley: a call attempt''s record is append-only'
      USING ERRCODE = 'P0001';
  END IF;
  RETURN NEW;
END $$;
"""


# Our number for an inbound call: a callback about the caller's leg names it as `To`.
BACKFILL = """
UPDATE calls c SET
  from_address = c.to_address,
  to_address = COALESCE(
    (SELECT e.raw->>'To' FROM call_events e
       JOIN call_legs l ON l.call_id = e.call_id AND l.call_sid = e.call_sid
      WHERE e.call_id = c.id AND l.role = 'customer'
        AND length(e.raw->>'To') BETWEEN 1 AND 32 AND e.raw->>'To' <> c.to_address
      ORDER BY e.id LIMIT 1),
    (SELECT left(a.config->>'from_number', 32) FROM provider_accounts a
      WHERE a.id = c.provider_account_id AND a.config->>'from_number' <> ''),
    c.to_address)
WHERE c.direction = 'inbound' AND c.from_address IS NULL
"""


def upgrade() -> None:
    op.add_column("calls", sa.Column("from_address", sa.String(length=32), nullable=True))
    op.execute("ALTER TABLE calls DISABLE TRIGGER calls_record_guard")
    op.execute(BACKFILL)
    op.execute("ALTER TABLE calls ENABLE TRIGGER calls_record_guard")
    op.execute(_guard(_IDENTITY.format(extra="from_address, ")))


def downgrade() -> None:
    op.execute(_guard(_IDENTITY.format(extra="")))
    op.execute("ALTER TABLE calls DISABLE TRIGGER calls_record_guard")
    op.execute(
        "UPDATE calls SET to_address = from_address "
        "WHERE direction = 'inbound' AND from_address IS NOT NULL"
    )
    op.execute("ALTER TABLE calls ENABLE TRIGGER calls_record_guard")
    op.drop_column("calls", "from_address")
