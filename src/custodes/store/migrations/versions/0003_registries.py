"""Registries: agencies (safeguard status), signing officials, data-sharing agreements.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("safeguards_current", sa.Boolean, nullable=False),
        sa.Column("open_findings", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "officials",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agency", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date),
    )
    op.create_index("ix_officials_agency", "officials", ["agency"])
    op.create_table(
        "agreements",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("provision", sa.String(64), nullable=False),
        sa.Column("agency", sa.String(200), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for t in ("agreements", "officials", "agencies"):
        op.drop_table(t)
