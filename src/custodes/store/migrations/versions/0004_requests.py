"""Requests: intake records and the lifecycle's transitions.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("provision", sa.String(64), nullable=False),
        sa.Column("agency", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("envelope_sha256", sa.String(64), nullable=False),
        sa.Column("items_sha256", sa.String(64), nullable=False),
        sa.Column("items", sa.BigInteger, nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.String(128)),
    )
    op.create_table(
        "request_transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_request_transitions_request_id", "request_transitions", ["request_id"])


def downgrade() -> None:
    op.drop_table("request_transitions")
    op.drop_table("requests")
