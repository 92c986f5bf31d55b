"""The compliance gate's records: policies, preferences, the consent ledger, call attempts.

- compliance_policies: an organization's rule configuration (absent: US federal defaults).
- communication_preferences: every version of a case's preferences (append-only).
- consent_events: the consent ledger per contact point, channel and purpose
  (append-only: history is never overwritten).
- calls: call attempts, gated like messages; the result is set once.
- messages.purpose / attempted_at / flags; compliance decisions about calls.
- message_template_versions.elements: limited-content voicemail templates.
- contact_points.phone_tz: a phone's time-zone signal, computed when it is stored.
- instance_secrets: signing keys shared by every process (unsubscribe links).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CONTENT = (
    "organization_id, case_id, borrower_id, contact_point_id, channel, direction, "
    "to_address, cc, bcc, subject, body, html_body, template_id, template_version, "
    "template_variables, created_at, sent_by_user_id, sent_by_name, thread_id, "
    "from_address, provider_account_id, provider, rfc822_message_id, priority, encoding, "
    "purpose, flags"
)

GUARD = f"""
CREATE OR REPLACE FUNCTION parley_message_content_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  IF ({", ".join("NEW." + c.strip() for c in CONTENT.split(","))})
     IS DISTINCT FROM
     ({", ".join("OLD." + c.strip() for c in CONTENT.split(","))}) THEN
    RAISE EXCEPTION 'parley: a message''s content is append-only; record a new message instead'
      USING ERRCODE = 'P0001';
  END IF;
  RETURN NEW;
END $$;
"""

# A call's identity never changes; its outcome (result, ended_at) is written once.
CALL_GUARD = """
CREATE FUNCTION parley_call_record_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('parley.erasure', true) = 'on' THEN RETURN NEW; END IF;
  IF (NEW.organization_id, NEW.case_id, NEW.borrower_id, NEW.contact_point_id,
      NEW.to_address, NEW.direction, NEW.prior_consent, NEW.purpose, NEW.placed_by_user_id,
      NEW.placed_by_name, NEW.created_at)
     IS DISTINCT FROM
     (OLD.organization_id, OLD.case_id, OLD.borrower_id, OLD.contact_point_id,
      OLD.to_address, OLD.direction, OLD.prior_consent, OLD.purpose, OLD.placed_by_user_id,
      OLD.placed_by_name, OLD.created_at)
     OR (OLD.placed_at IS NOT NULL AND NEW.placed_at IS DISTINCT FROM OLD.placed_at)
     OR (OLD.result IS NOT NULL AND (NEW.result, NEW.ended_at, NEW.notes)
         IS DISTINCT FROM (OLD.result, OLD.ended_at, OLD.notes)) THEN
    RAISE EXCEPTION 'parley: a call attempt''s record is append-only'
      USING ERRCODE = 'P0001';
  END IF;
  RETURN NEW;
END $$;
"""


def _content(prefix: str) -> str:
    return ", ".join(f"{prefix}.{c.strip()}" for c in CONTENT.split(","))


def _append_only(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION parley_forbid_delete()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION parley_forbid_update()"
    )


def upgrade() -> None:
    op.create_table(
        "compliance_policies",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by_name", sa.String(length=200), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("organization_id"),
    )
    op.create_table(
        "communication_preferences",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("changed_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("changed_by_name", sa.String(length=200), nullable=True),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["changed_by_user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "version"),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("borrower_id", sa.Uuid(), nullable=False),
        sa.Column("contact_point_id", sa.Uuid(), nullable=True),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("source_message_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by_name", sa.String(length=200), nullable=True),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["borrower_id"], ["borrowers.id"]),
        sa.ForeignKeyConstraint(["contact_point_id"], ["contact_points.id"]),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["source_message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_consent_events_borrower",
        "consent_events",
        ["borrower_id", "channel", "effective_at"],
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("borrower_id", sa.Uuid(), nullable=False),
        sa.Column("contact_point_id", sa.Uuid(), nullable=False),
        sa.Column("to_address", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result", sa.String(length=30), nullable=True),
        sa.Column("prior_consent", sa.Boolean(), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("placed_by_user_id", sa.Uuid(), nullable=True),
        sa.Column("placed_by_name", sa.String(length=200), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["borrower_id"], ["borrowers.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["contact_point_id"], ["contact_points.id"]),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["placed_by_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_calls_attempts",
        "calls",
        ["borrower_id", "case_id", "placed_at"],
        postgresql_where=sa.text("placed_at IS NOT NULL"),
    )
    op.create_index("ix_calls_case_created", "calls", ["case_id", "created_at"])
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name"),
    )

    op.add_column(
        "messages",
        sa.Column(
            "purpose", sa.String(length=30), server_default="collection", nullable=False
        ),
    )
    op.add_column("messages", sa.Column("attempted_at", sa.DateTime(timezone=True)))
    # Messages that already went out are attempts the caps must see from day one.
    op.execute(
        "UPDATE messages SET attempted_at = coalesce(sent_at, status_changed_at) "
        "WHERE direction = 'outbound' AND attempts > 0"
    )
    op.add_column(
        "message_template_versions",
        sa.Column("elements", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "contact_points",
        sa.Column("phone_tz", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "messages",
        sa.Column(
            "flags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    # No index on attempted_at: setting it is part of the claim, which must stay a HOT
    # update (0006). The caps read a borrower's few messages through
    # ix_messages_borrower_created.

    op.add_column("compliance_decisions", sa.Column("call_id", sa.Uuid(), nullable=True))
    op.alter_column("compliance_decisions", "message_id", nullable=True)
    op.create_foreign_key(None, "compliance_decisions", "calls", ["call_id"], ["id"])
    op.create_check_constraint(
        "ck_compliance_decisions_subject",
        "compliance_decisions",
        "num_nonnulls(message_id, call_id) = 1",
    )
    op.create_index(
        "ix_compliance_decisions_call",
        "compliance_decisions",
        ["call_id", "id"],
        postgresql_where=sa.text("call_id IS NOT NULL"),
    )

    # Invariant 6 for the new records.
    _append_only("communication_preferences")
    _append_only("consent_events")
    op.execute(CALL_GUARD)
    op.execute(
        "CREATE TRIGGER calls_no_delete BEFORE DELETE ON calls "
        "FOR EACH ROW EXECUTE FUNCTION parley_forbid_delete()"
    )
    op.execute(
        "CREATE TRIGGER calls_record_guard BEFORE UPDATE ON calls "
        "FOR EACH ROW EXECUTE FUNCTION parley_call_record_guard()"
    )
    # The message content guard now covers purpose and flags too.
    op.execute(GUARD)
    op.execute("DROP TRIGGER messages_content_immutable ON messages")
    op.execute(
        "CREATE TRIGGER messages_content_immutable BEFORE UPDATE ON messages FOR EACH ROW "
        f"WHEN (({_content('OLD')}) IS DISTINCT FROM ({_content('NEW')})) "
        "EXECUTE FUNCTION parley_message_content_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_content_immutable ON messages")
    for table in ("communication_preferences", "consent_events"):
        op.execute(f"DROP TRIGGER {table}_no_delete ON {table}")
        op.execute(f"DROP TRIGGER {table}_no_update ON {table}")
    op.execute("DROP TRIGGER calls_no_delete ON calls")
    op.execute("DROP TRIGGER calls_record_guard ON calls")
    op.execute("DROP FUNCTION parley_call_record_guard()")
    op.drop_index("ix_compliance_decisions_call", table_name="compliance_decisions")
    op.drop_constraint("ck_compliance_decisions_subject", "compliance_decisions")
    op.drop_column("compliance_decisions", "call_id")
    op.alter_column("compliance_decisions", "message_id", nullable=False)
    op.drop_column("messages", "flags")
    op.drop_column("messages", "attempted_at")
    op.drop_column("contact_points", "phone_tz")
    op.drop_column("message_template_versions", "elements")
    op.drop_column("messages", "purpose")
    op.drop_table("instance_secrets")
    op.drop_index("ix_calls_case_created", table_name="calls")
    op.drop_index("ix_calls_attempts", table_name="calls")
    op.drop_table("calls")
    op.drop_index("ix_consent_events_borrower", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_table("communication_preferences")
    op.drop_table("compliance_policies")
    # The guard as 0004 left it (without purpose and flags).
    op.execute(GUARD.replace(", NEW.purpose, NEW.flags", "").replace(", OLD.purpose, OLD.flags", ""))
    old = CONTENT.replace(", purpose, flags", "")
    old_cols = {p: ", ".join(f"{p}.{c.strip()}" for c in old.split(",")) for p in ("OLD", "NEW")}
    op.execute(
        "CREATE TRIGGER messages_content_immutable BEFORE UPDATE ON messages FOR EACH ROW "
        f"WHEN (({old_cols['OLD']}) IS DISTINCT FROM ({old_cols['NEW']})) "
        "EXECUTE FUNCTION parley_message_content_immutable()"
    )
