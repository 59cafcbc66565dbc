"""Access: users, role grants (with basis and expiry), server-side sessions and keys, the
access log (every allowed or refused action, every inspection of a record).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("totp_secret", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64)),
        sa.Column("status_reason", sa.Text),
        sa.Column("status_at", sa.DateTime(timezone=True)),
        sa.Column("status_by", sa.String(64)),
        sa.Column("reinstate_requested_by", sa.String(64)),
    )
    op.create_table(
        "grants",
        sa.Column("user_name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(32), primary_key=True),
        sa.Column("basis", sa.Text),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("granted_by", sa.String(64), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sessions_user_name", "sessions", ["user_name"])
    op.create_table(
        "access_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(64)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("record_id", sa.String(64)),
        sa.Column("purpose", sa.Text),
        sa.Column("request_id", sa.String(32)),
    )
    op.create_index("ix_access_log_record_id", "access_log", ["record_id"])


def downgrade() -> None:
    op.drop_table("access_log")
    op.drop_table("sessions")
    op.drop_table("grants")
    op.drop_table("users")
