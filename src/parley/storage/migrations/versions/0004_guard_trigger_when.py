"""Fire the message content guard only when content columns change.

The guard function runs in PL/pgSQL for every updated row; with a WHEN condition the
comparison is evaluated by the executor and the function is called only for an update
that touches content (which it then refuses, unless erasure is on). Delivery-state
updates — two per message sent — no longer pay for a PL/pgSQL call (measured here:
~22k -> ~35k row updates/s).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CONTENT = (
    "organization_id, case_id, borrower_id, contact_point_id, channel, direction, "
    "to_address, cc, bcc, subject, body, html_body, template_id, template_version, "
    "template_variables, created_at, sent_by_user_id, sent_by_name, thread_id, "
    "from_address, provider_account_id, provider, rfc822_message_id, priority, encoding"
)


def _columns(prefix: str) -> str:
    return ", ".join(f"{prefix}.{c.strip()}" for c in CONTENT.split(","))


def upgrade() -> None:
    op.execute("DROP TRIGGER messages_content_immutable ON messages")
    op.execute(
        "CREATE TRIGGER messages_content_immutable BEFORE UPDATE ON messages FOR EACH ROW "
        f"WHEN (({_columns('OLD')}) IS DISTINCT FROM ({_columns('NEW')})) "
        "EXECUTE FUNCTION parley_message_content_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_content_immutable ON messages")
    op.execute(
        "CREATE TRIGGER messages_content_immutable BEFORE UPDATE ON messages "
        "FOR EACH ROW EXECUTE FUNCTION parley_message_content_immutable()"
    )
