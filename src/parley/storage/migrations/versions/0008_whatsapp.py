"""WhatsApp: the template library, the customer-service window, the structured payload.

- whatsapp_templates: each provider account's message templates as synced from the
  WhatsApp Business Account (status kept current by template-status webhooks).
- whatsapp_windows: when each borrower number last wrote to the organization on
  WhatsApp; free-form messages are allowed for 24 hours after that.
- messages.whatsapp: the structured part of a WhatsApp message (template and its
  parameters, media link, quick-reply buttons) that the worker sends. It is content:
  a trigger keeps it as written (invariant 6).

Revision ID: 0008
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

GUARD = """
CREATE FUNCTION parley_message_whatsapp_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  RAISE EXCEPTION 'parley: a message''s content is append-only; record a new message instead'
    USING ERRCODE = 'P0001';
END $$;

CREATE TRIGGER messages_whatsapp_immutable BEFORE UPDATE OF whatsapp ON messages
  FOR EACH ROW WHEN (NEW.whatsapp IS DISTINCT FROM OLD.whatsapp)
  EXECUTE FUNCTION parley_message_whatsapp_immutable();
"""


def upgrade() -> None:
    op.add_column("messages", sa.Column("whatsapp", postgresql.JSONB(), nullable=True))
    op.execute(GUARD)
    op.create_table(
        "whatsapp_templates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("provider_account_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=30), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("provider_template_id", sa.String(length=50), nullable=True),
        sa.Column("components", postgresql.JSONB(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column("body_parameter_count", sa.Integer(), nullable=False),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["provider_account_id"], ["provider_accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider_account_id", "name", "language"),
    )
    op.create_index(
        op.f("ix_whatsapp_templates_organization_id"),
        "whatsapp_templates",
        ["organization_id"],
        unique=False,
    )
    op.create_table(
        "whatsapp_windows",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_provider_message_id", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("organization_id", "phone"),
    )


def downgrade() -> None:
    op.drop_table("whatsapp_windows")
    op.drop_index(op.f("ix_whatsapp_templates_organization_id"), table_name="whatsapp_templates")
    op.drop_table("whatsapp_templates")
    op.execute("DROP TRIGGER IF EXISTS messages_whatsapp_immutable ON messages")
    op.execute("DROP FUNCTION IF EXISTS parley_message_whatsapp_immutable()")
    op.drop_column("messages", "whatsapp")
