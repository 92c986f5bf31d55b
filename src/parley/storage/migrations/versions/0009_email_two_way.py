"""Email two-way and case documents: documents with their bytes, message attachments,
and the IMAP listener's read position per account and folder.

Document bytes are kept in PostgreSQL (`document_contents.data`, bytea) rather than in
the data directory: every API and worker process of a scaled-out deployment reads the
same database but not the same disk, a document is written in the same transaction as
its metadata and its message link, and one backup holds everything. Files are at most
25 MB. The column is stored EXTERNAL (out of line, uncompressed): PDFs, images and
office files are compressed already, so PostgreSQL's compression attempt is waste.

Revision ID: 0009
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("case_id", UUID(as_uuid=True), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("document_type", sa.String(30), nullable=False),
        sa.Column("content_type", sa.String(127), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("message_id", UUID(as_uuid=True), sa.ForeignKey("messages.id")),
        sa.Column("uploaded_by_user_id", UUID(as_uuid=True), sa.ForeignKey("users.id")),
        sa.Column("uploaded_by_name", sa.String(200)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_documents_case_created", "documents", ["case_id", "created_at"])
    op.create_table(
        "document_contents",
        sa.Column(
            "document_id", UUID(as_uuid=True), sa.ForeignKey("documents.id"), primary_key=True
        ),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.execute("ALTER TABLE document_contents ALTER COLUMN data SET STORAGE EXTERNAL")
    op.create_table(
        "message_attachments",
        sa.Column("message_id", UUID(as_uuid=True), sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column(
            "document_id", UUID(as_uuid=True), sa.ForeignKey("documents.id"), primary_key=True
        ),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "imap_cursors",
        sa.Column(
            "provider_account_id",
            UUID(as_uuid=True),
            sa.ForeignKey("provider_accounts.id"),
            primary_key=True,
        ),
        sa.Column("folder", sa.String(200), primary_key=True),
        sa.Column(
            "organization_id", UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index(
        "ix_messages_rfc822_id",
        "messages",
        ["organization_id", "rfc822_message_id"],
        postgresql_where=sa.text("rfc822_message_id IS NOT NULL"),
    )
    # The communication record is append-only (invariant 6): an attachment link stays.
    op.execute(
        "CREATE TRIGGER message_attachments_no_delete BEFORE DELETE ON message_attachments "
        "FOR EACH ROW EXECUTE FUNCTION parley_forbid_delete()"
    )


def downgrade() -> None:
    op.drop_index("ix_messages_rfc822_id", table_name="messages")
    op.execute("DROP TRIGGER IF EXISTS message_attachments_no_delete ON message_attachments")
    op.drop_table("imap_cursors")
    op.drop_table("message_attachments")
    op.drop_table("document_contents")
    op.drop_index("ix_documents_case_created", table_name="documents")
    op.drop_table("documents")
