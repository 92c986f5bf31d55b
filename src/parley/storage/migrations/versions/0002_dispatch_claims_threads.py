"""Dispatch claims, one active thread per conversation, a wider content guard.

- messages.claim_job_id: the dispatch job that marked the message `sending`, so a job
  that finds a message `sending` can tell a dead claim (review it) from a live one
  (leave it alone).
- A unique active thread per (organization, case, borrower, channel), so concurrent
  first messages join one thread.
- The content guard also covers who sent it and how (from, provider, Message-ID,
  priority, encoding).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GUARD = """
CREATE OR REPLACE FUNCTION parley_message_content_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  IF (NEW.organization_id, NEW.case_id, NEW.borrower_id, NEW.contact_point_id, NEW.channel,
      NEW.direction, NEW.to_address, NEW.cc, NEW.bcc, NEW.subject, NEW.body, NEW.html_body,
      NEW.template_id, NEW.template_version, NEW.template_variables, NEW.created_at,
      NEW.sent_by_user_id, NEW.sent_by_name, NEW.thread_id, NEW.from_address,
      NEW.provider_account_id, NEW.provider, NEW.rfc822_message_id, NEW.priority,
      NEW.encoding)
     IS DISTINCT FROM
     (OLD.organization_id, OLD.case_id, OLD.borrower_id, OLD.contact_point_id, OLD.channel,
      OLD.direction, OLD.to_address, OLD.cc, OLD.bcc, OLD.subject, OLD.body, OLD.html_body,
      OLD.template_id, OLD.template_version, OLD.template_variables, OLD.created_at,
      OLD.sent_by_user_id, OLD.sent_by_name, OLD.thread_id, OLD.from_address,
      OLD.provider_account_id, OLD.provider, OLD.rfc822_message_id, OLD.priority,
      OLD.encoding) THEN
    RAISE EXCEPTION 'parley: a message''s content is append-only; record a new message instead'
      USING ERRCODE = 'P0001';
  END IF;
  RETURN NEW;
END $$;
"""


def upgrade() -> None:
    op.add_column("messages", sa.Column("claim_job_id", sa.BigInteger(), nullable=True))
    op.create_index(
        "ux_threads_active",
        "threads",
        ["organization_id", "case_id", "borrower_id", "channel"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.execute(GUARD)


def downgrade() -> None:
    op.drop_index("ux_threads_active", table_name="threads")
    op.drop_column("messages", "claim_job_id")
