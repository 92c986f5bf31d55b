"""Every part of a multi-part SMS: message_parts, and the part an event is about.

A long SMS over SMPP is several submit_sm, each answered with its own SMSC message id and
each getting its own delivery receipt. Only the first id was kept (as the message's
provider_message_id), so the other parts' receipts matched no message. message_parts
holds every part's id (unique per provider account: what a receipt is resolved by) and
the part's own status, from which the message's follows (inbox/message_parts.py).

message_events.part says which part a provider event was about (NULL for messages
tracked as one). Adding a nullable column without a default changes only the catalog.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_parts",
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("part", sa.SmallInteger(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("provider_account_id", sa.Uuid(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="sent", nullable=False),
        sa.Column("error_code", sa.String(length=50), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column(
            "status_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["provider_account_id"], ["provider_accounts.id"]),
        sa.PrimaryKeyConstraint("message_id", "part"),
        sa.UniqueConstraint(
            "provider_account_id", "provider_message_id", name="ux_message_parts_provider_id"
        ),
    )
    op.add_column("message_events", sa.Column("part", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("message_events", "part")
    op.drop_table("message_parts")
