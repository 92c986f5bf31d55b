"""Filing unfiled inbound messages on a borrower and case.

- The message content guard lets exactly one transition through: an inbound message
  recorded on no case (the team queue, migration 0007) gets its case, its borrower (if it
  had none, else the same one), a contact point of that borrower (if it had none) and a
  thread of that case, once. The borrower must be on the case and every other content
  column must stay as it was. Everything else stays refused: moving a filed message to
  another case, un-filing it, changing its borrower, editing its text on the way.
- conversation_filings: who filed which messages of which team-queue conversation on
  which case, and when (append-only, like the rest of the communication record).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The content columns of migration 0005, and those filing may set (from NULL).
CONTENT = (
    "organization_id, case_id, borrower_id, contact_point_id, channel, direction, "
    "to_address, cc, bcc, subject, body, html_body, template_id, template_version, "
    "template_variables, created_at, sent_by_user_id, sent_by_name, thread_id, "
    "from_address, provider_account_id, provider, rfc822_message_id, priority, encoding, "
    "purpose, flags"
)
FILED = ("case_id", "borrower_id", "contact_point_id", "thread_id")


def _columns(prefix: str, names: list[str]) -> str:
    return ", ".join(f"{prefix}.{c}" for c in names)


_ALL = [c.strip() for c in CONTENT.split(",")]
_KEPT = [c for c in _ALL if c not in FILED]

GUARD = f"""
CREATE OR REPLACE FUNCTION parley_message_content_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  -- Filing (parley.services.filing): an unfiled inbound message is put on a case once.
  IF OLD.case_id IS NULL AND NEW.case_id IS NOT NULL AND OLD.direction = 'inbound'
     AND NEW.borrower_id IS NOT NULL
     AND (OLD.borrower_id IS NULL OR OLD.borrower_id = NEW.borrower_id)
     AND (OLD.contact_point_id IS NULL OR OLD.contact_point_id = NEW.contact_point_id)
     AND OLD.thread_id IS NULL
     AND ({_columns("NEW", _KEPT)}) IS NOT DISTINCT FROM ({_columns("OLD", _KEPT)})
     AND EXISTS (SELECT 1 FROM case_borrowers cb
                 WHERE cb.case_id = NEW.case_id AND cb.borrower_id = NEW.borrower_id
                   AND cb.organization_id = NEW.organization_id)
     AND (NEW.contact_point_id IS NULL OR EXISTS (
            SELECT 1 FROM contact_points p
            WHERE p.id = NEW.contact_point_id AND p.borrower_id = NEW.borrower_id))
     AND (NEW.thread_id IS NULL OR EXISTS (
            SELECT 1 FROM threads t WHERE t.id = NEW.thread_id AND t.case_id = NEW.case_id))
  THEN
    RETURN NEW;
  END IF;
  IF ({_columns("NEW", _ALL)})
     IS DISTINCT FROM
     ({_columns("OLD", _ALL)}) THEN
    RAISE EXCEPTION 'parley: a message''s content is append-only; record a new message instead'
      USING ERRCODE = 'P0001';
  END IF;
  RETURN NEW;
END $$;
"""

# The guard as migration 0005 left it.
PREVIOUS_GUARD = f"""
CREATE OR REPLACE FUNCTION parley_message_content_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  IF ({_columns("NEW", _ALL)})
     IS DISTINCT FROM
     ({_columns("OLD", _ALL)}) THEN
    RAISE EXCEPTION 'parley: a message''s content is append-only; record a new message instead'
      USING ERRCODE = 'P0001';
  END IF;
  RETURN NEW;
END $$;
"""


def upgrade() -> None:
    # The trigger (and its WHEN over the content columns) stays; only its function
    # learns the filing transition.
    op.execute(GUARD)
    op.create_table(
        "conversation_filings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("into_conversation_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("borrower_id", sa.Uuid(), nullable=False),
        sa.Column("sender_address", sa.String(length=320), nullable=False),
        sa.Column("message_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("contact_point_id", sa.Uuid(), nullable=True),
        sa.Column("contact_point_added", sa.Boolean(), nullable=False),
        sa.Column("filed_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("filed_by_name", sa.String(length=200), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["into_conversation_id"], ["conversations.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["borrower_id"], ["borrowers.id"]),
        sa.ForeignKeyConstraint(["contact_point_id"], ["contact_points.id"]),
        sa.ForeignKeyConstraint(["filed_by_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_conversation_filings_from",
        "conversation_filings",
        ["organization_id", "conversation_id"],
    )
    for op_name, fn in (("delete", "parley_forbid_delete"), ("update", "parley_forbid_update")):
        op.execute(
            f"CREATE TRIGGER conversation_filings_no_{op_name} BEFORE {op_name.upper()} "
            f"ON conversation_filings FOR EACH ROW EXECUTE FUNCTION {fn}()"
        )


def downgrade() -> None:
    op.drop_table("conversation_filings")
    # Messages filed meanwhile keep their case: that is the record, not a schema detail.
    op.execute(PREVIOUS_GUARD)
