"""Recalls of improper disclosures and the certification that the data was destroyed.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recalls",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("certified_by", sa.String(200)),
        sa.Column("certified_on", sa.Date),
        sa.Column("certificate", sa.Text),
        sa.Column("recorded_by", sa.String(128)),
    )
    op.create_table(
        "recall_items",
        sa.Column("recall_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("item_id", sa.String(128), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("recall_items")
    op.drop_table("recalls")
