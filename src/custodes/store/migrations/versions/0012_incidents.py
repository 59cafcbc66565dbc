"""Incidents: suspected improper disclosures or inspections, with their 24-hour report clock.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(32)),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("opened_by", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_by", sa.String(64)),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
        sa.Column("closed_by", sa.String(64)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("finding", sa.String(16)),
    )


def downgrade() -> None:
    op.drop_table("incidents")
