"""WhatsApp: the customer-service window closed by Meta (error 131047).

- whatsapp_windows.closed_by_provider_at: the latest time Meta refused a free-form
  message to the number with error 131047 ("re-engagement message": more than 24 hours
  since the customer last wrote). Meta's view is authoritative: the window is closed
  from then on until the number writes again (an inbound message at or after it).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "whatsapp_windows",
        sa.Column("closed_by_provider_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("whatsapp_windows", "closed_by_provider_at")
