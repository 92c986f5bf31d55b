"""Unified inbox: the conversations table, unfiled inbound messages, timeline indexes.

- `conversations`: one row per (organization, case, borrower) across channels, plus one
  per inbound sender filed on no case (the team queue); see parley.inbox.conversations.
  Existing messages are summarized into it once here (nothing unread).
- `messages.case_id` becomes nullable for inbound messages only (a CHECK keeps every
  outbound message on a case), so a reply from an unknown sender is recorded instead of
  being left in its raw receipt; a partial index finds a sender's unfiled messages.
- `ix_calls_borrower_created`: a borrower's calls, newest first, for the timeline.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BACKFILL = """
INSERT INTO conversations (id, organization_id, case_id, borrower_id, assigned_agent_id,
    status, last_activity_at, last_item_kind, last_item_id, last_channel, last_direction,
    last_preview, unread_count, created_at, updated_at)
SELECT gen_random_uuid(), m.organization_id, m.case_id, m.borrower_id, c.assigned_agent_id,
       'open', m.created_at, 'message', m.id, m.channel, m.direction,
       left(regexp_replace(m.body, '\\s+', ' ', 'g'), 200), 0, now(), now()
FROM (SELECT DISTINCT ON (organization_id, case_id, borrower_id) *
      FROM messages WHERE case_id IS NOT NULL AND borrower_id IS NOT NULL
      ORDER BY organization_id, case_id, borrower_id, created_at DESC, id DESC) m
JOIN cases c ON c.id = m.case_id
"""


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("case_id", sa.UUID(), nullable=True),
        sa.Column("borrower_id", sa.UUID(), nullable=True),
        sa.Column("sender_address", sa.String(length=320), nullable=True),
        sa.Column("assigned_agent_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="open", nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_item_kind", sa.String(length=10), nullable=False),
        sa.Column("last_item_id", sa.UUID(), nullable=False),
        sa.Column("last_channel", sa.String(length=20), nullable=False),
        sa.Column("last_direction", sa.String(length=10), nullable=False),
        sa.Column("last_preview", sa.String(length=200), nullable=True),
        sa.Column("unread_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_read_by_user_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint(
            "case_id IS NOT NULL OR sender_address IS NOT NULL", name="ck_conversations_key"
        ),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_conversations_status"),
        sa.ForeignKeyConstraint(["assigned_agent_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["borrower_id"], ["borrowers.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["last_read_by_user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_conversations_case_borrower",
        "conversations",
        ["organization_id", "case_id", "borrower_id"],
        unique=True,
        postgresql_where=sa.text("case_id IS NOT NULL"),
    )
    op.create_index(
        "ux_conversations_sender",
        "conversations",
        ["organization_id", "sender_address"],
        unique=True,
        postgresql_where=sa.text("case_id IS NULL"),
    )
    op.create_index(
        "ix_conversations_agent_activity",
        "conversations",
        ["organization_id", "assigned_agent_id", "status", "last_activity_at", "id"],
    )
    op.create_index(
        "ix_conversations_team_activity",
        "conversations",
        ["organization_id", "status", "last_activity_at", "id"],
        postgresql_where=sa.text("assigned_agent_id IS NULL"),
    )
    op.create_index(
        "ix_conversations_org_activity",
        "conversations",
        ["organization_id", "status", "last_activity_at", "id"],
    )
    op.create_index(
        "ix_conversations_unread",
        "conversations",
        ["organization_id", "assigned_agent_id", "last_activity_at", "id"],
        postgresql_where=sa.text("unread_count > 0"),
    )
    op.create_index("ix_conversations_borrower", "conversations", ["borrower_id"])

    op.alter_column("messages", "case_id", existing_type=sa.UUID(), nullable=True)
    op.create_check_constraint(
        "ck_messages_case_or_inbound", "messages", "case_id IS NOT NULL OR direction = 'inbound'"
    )
    op.create_index(
        "ix_messages_unfiled_sender",
        "messages",
        ["organization_id", "from_address", "created_at"],
        postgresql_where=sa.text("case_id IS NULL"),
    )
    op.create_index("ix_calls_borrower_created", "calls", ["borrower_id", "created_at"])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index("ix_calls_borrower_created", table_name="calls")
    op.drop_index("ix_messages_unfiled_sender", table_name="messages")
    op.drop_constraint("ck_messages_case_or_inbound", "messages", type_="check")
    # Unfiled inbound messages have no case to go back to; they stay in their receipts.
    op.execute("SET LOCAL parley.erasure = 'on'")
    op.execute("DELETE FROM message_events WHERE message_id IN "
               "(SELECT id FROM messages WHERE case_id IS NULL)")
    op.execute("DELETE FROM messages WHERE case_id IS NULL")
    op.alter_column("messages", "case_id", existing_type=sa.UUID(), nullable=False)
    op.drop_table("conversations")

