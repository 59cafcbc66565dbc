"""Decisions: review resolutions, two-person releases and the disclosures they made.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_resolutions",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("outcomes_sha256", sa.String(64), nullable=False),
        sa.Column("prepared_by", sa.String(128), nullable=False),
        sa.Column("prepared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(128)),
        sa.Column("approved_at", sa.DateTime(timezone=True)),
        sa.Column("intent_at", sa.DateTime(timezone=True)),
        sa.Column("released_by", sa.String(128)),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        sa.Column("response_sha256", sa.String(64)),
        sa.Column("checkpoint", sa.Text),
    )
    op.create_table(
        "disclosures",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_disclosures_record_id", "disclosures", ["record_id"])


def downgrade() -> None:
    op.drop_table("disclosures")
    op.drop_table("releases")
    op.drop_table("review_resolutions")
