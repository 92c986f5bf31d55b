"""Rotating a webhook endpoint's signing secret with a grace period.

- webhook_endpoints.previous_secret: the secret a rotation replaced, stored like
  ``secret`` (plain ``whsec_<base64>``, never returned by the API). Until
  ``previous_secret_expires_at`` every delivery attempt is signed with both secrets
  (Standard Webhooks: ``webhook-signature: v1,<new> v1,<old>``), so receivers still
  holding the old one keep verifying; after it only the new one signs.
- The two columns are set and cleared together (a check constraint).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CHECK = "ck_webhook_endpoints_previous_secret"


def upgrade() -> None:
    op.add_column(
        "webhook_endpoints", sa.Column("previous_secret", sa.String(length=120), nullable=True)
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_check_constraint(
        CHECK,
        "webhook_endpoints",
        "(previous_secret IS NULL) = (previous_secret_expires_at IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(CHECK, "webhook_endpoints", type_="check")
    op.drop_column("webhook_endpoints", "previous_secret_expires_at")
    op.drop_column("webhook_endpoints", "previous_secret")
