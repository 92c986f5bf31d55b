"""Voice: click-to-call through a provider, call legs and events, presence, call logs.

- calls: the provider account, the agent on the call, the conference, the recording and
  the provider's latest status; a call now ends "awaiting_log" until its log is written.
- call_legs: each provider call (the borrower's leg, every agent's leg) of one call.
- call_events: every provider callback about a call, with the provider's timestamp and
  raw payload, deduplicated (append-only).
- call_logs: the mandatory interaction log of a call (append-only; corrections are new
  rows that supersede the previous one).
- agent_presence: each agent's presence (available, busy, away, offline) and the voice
  endpoint their calls ring (client identity, SIP URI or phone number).

Revision ID: 0010
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

APPEND_ONLY = """
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
  FOR EACH ROW EXECUTE FUNCTION parley_forbid_delete();
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION parley_forbid_update();
"""


def _created() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.add_column("calls", sa.Column("provider_account_id", sa.Uuid(), nullable=True))
    op.add_column("calls", sa.Column("agent_user_id", sa.Uuid(), nullable=True))
    op.add_column("calls", sa.Column("conference_name", sa.String(64), nullable=True))
    op.add_column("calls", sa.Column("conference_sid", sa.String(64), nullable=True))
    op.add_column("calls", sa.Column("provider_status", sa.String(20), nullable=True))
    op.add_column("calls", sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("calls", sa.Column("recording_sid", sa.String(64), nullable=True))
    op.add_column("calls", sa.Column("recording_url", sa.Text(), nullable=True))
    op.add_column("calls", sa.Column("recording_duration", sa.Integer(), nullable=True))
    op.add_column(
        "calls", sa.Column("muted", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.create_foreign_key(
        "fk_calls_provider_account", "calls", "provider_accounts", ["provider_account_id"], ["id"]
    )
    op.create_foreign_key("fk_calls_agent_user", "calls", "users", ["agent_user_id"], ["id"])
    # An agent's open logs: GET /api/calls?awaitingLog=true&agent=me, and the check
    # before an agent places another call.
    op.create_index(
        "ix_calls_awaiting_log",
        "calls",
        ["organization_id", "agent_user_id"],
        postgresql_where=sa.text("status = 'awaiting_log'"),
    )

    op.create_table(
        "call_legs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("call_id", sa.Uuid(), sa.ForeignKey("calls.id"), nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("role", sa.String(10), nullable=False),  # customer | agent
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        _created(),
        sa.UniqueConstraint("call_id", "call_sid"),
    )
    op.create_index("ix_call_legs_sid", "call_legs", ["call_sid"])

    op.create_table(
        "call_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("call_id", sa.Uuid(), sa.ForeignKey("calls.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),  # status | conference | recording
        sa.Column("call_sid", sa.String(64), nullable=True),
        sa.Column("provider_status", sa.String(40), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.UniqueConstraint("call_id", "dedupe_key"),
    )

    op.create_table(
        "call_logs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("call_id", sa.Uuid(), sa.ForeignKey("calls.id"), nullable=False),
        sa.Column("supersedes_id", sa.BigInteger(), sa.ForeignKey("call_logs.id"), nullable=True),
        sa.Column("disposition", sa.String(30), nullable=False),
        sa.Column("result", sa.String(30), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("follow_up_on", sa.Date(), nullable=True),
        sa.Column("promise_amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("promise_currency", sa.String(3), nullable=True),
        sa.Column("promise_date", sa.Date(), nullable=True),
        sa.Column("logged_by_user_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("logged_by_name", sa.String(200), nullable=True),
        _created(),
        # A log is written once: a correction supersedes exactly one earlier log.
        sa.UniqueConstraint("supersedes_id"),
    )
    op.create_index("ix_call_logs_call", "call_logs", ["call_id", "id"])
    # The first log of a call is unique: two agents submitting at once cannot both win.
    op.create_index(
        "ux_call_logs_first",
        "call_logs",
        ["call_id"],
        unique=True,
        postgresql_where=sa.text("supersedes_id IS NULL"),
    )

    op.create_table(
        "agent_presence",
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("organization_id", sa.Uuid(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("endpoint", sa.String(200), nullable=True),
        # Set when a call made the agent busy: submitting that call's log frees them.
        sa.Column("busy_call_id", sa.Uuid(), sa.ForeignKey("calls.id"), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('available', 'busy', 'away', 'offline')", name="ck_agent_presence_status"
        ),
    )
    op.create_index("ix_agent_presence_org", "agent_presence", ["organization_id", "status"])
    for table in ("call_events", "call_logs"):
        op.execute(APPEND_ONLY.format(table=table))


def downgrade() -> None:
    op.drop_table("agent_presence")
    op.drop_table("call_logs")
    op.drop_table("call_events")
    op.drop_table("call_legs")
    op.drop_index("ix_calls_awaiting_log", table_name="calls")
    op.drop_constraint("fk_calls_agent_user", "calls", type_="foreignkey")
    op.drop_constraint("fk_calls_provider_account", "calls", type_="foreignkey")
    for column in (
        "muted",
        "recording_duration",
        "recording_url",
        "recording_sid",
        "answered_at",
        "provider_status",
        "conference_sid",
        "conference_name",
        "agent_user_id",
        "provider_account_id",
    ):
        op.drop_column("calls", column)
