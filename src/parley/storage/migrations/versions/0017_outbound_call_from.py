"""Calls: the number an outbound click-to-call was placed from.

Outbound calls placed through a voice account now record the account's caller id in
``calls.from_address`` when they are created. Those placed before are filled in only
where the number they were actually placed with is on record: the ``From`` of a provider
callback about one of the call's legs (Twilio and the sandbox network send it with every
call-progress callback; every leg of a call is placed from the same caller id), the
borrower's leg preferred. The account's current ``from_number`` is not used: it may have
been edited since the call was placed. Calls with no such callback (the provider refused
the agent's leg, or no callback ever arrived), calls dialed by hand and blocked calls keep
a null ``from_address``.

The downgrade leaves the numbers: ``from_address`` exists at 0016 and a number there is
true of the call.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

BACKFILL = r"""
UPDATE calls c SET from_address = (
    SELECT e.raw->>'From' FROM call_events e
      JOIN call_legs l ON l.call_id = e.call_id AND l.call_sid = e.call_sid
     WHERE e.call_id = c.id AND l.role IN ('customer', 'agent')
       AND e.raw->>'From' ~ '^\+[1-9][0-9]{6,14}$'
     ORDER BY (l.role = 'customer') DESC, e.id
     LIMIT 1)
WHERE c.direction = 'outbound' AND c.from_address IS NULL
  AND c.provider_account_id IS NOT NULL
"""


def upgrade() -> None:
    # from_address is part of a call's append-only identity (0016's record guard).
    op.execute("ALTER TABLE calls DISABLE TRIGGER calls_record_guard")
    op.execute(BACKFILL)
    op.execute("ALTER TABLE calls ENABLE TRIGGER calls_record_guard")


def downgrade() -> None:
    pass
