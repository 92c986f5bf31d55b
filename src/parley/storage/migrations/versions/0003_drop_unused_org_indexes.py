"""Drop organization indexes nobody reads on the two busiest append-only tables.

Events and compliance decisions are always read through their message (which is scoped
to the organization); an index on organization_id only cost every insert.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_message_events_organization_id", table_name="message_events")
    op.drop_index("ix_compliance_decisions_organization_id", table_name="compliance_decisions")


def downgrade() -> None:
    op.create_index(
        "ix_compliance_decisions_organization_id", "compliance_decisions", ["organization_id"]
    )
    op.create_index("ix_message_events_organization_id", "message_events", ["organization_id"])
