"""Dual control of every credential: enrolment codes in two halves, and one queue of pending
changes confirmed by their hash.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("enrolments") as t:
        t.add_column(sa.Column("halves", sa.Integer, nullable=False, server_default="1"))
        t.add_column(sa.Column("second_sha256", sa.String(64)))
        t.add_column(sa.Column("second_by", sa.String(64)))
        t.add_column(sa.Column("second_at", sa.DateTime(timezone=True)))
    op.create_table(
        "changes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False, index=True),
        sa.Column("slot", sa.String(300), nullable=False, index=True),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("proposed_by", sa.String(64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_by", sa.String(64)),
        sa.Column("confirmed_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("ended_reason", sa.String(32)),
    )


def downgrade() -> None:
    op.drop_table("changes")
    with op.batch_alter_table("enrolments") as t:
        t.drop_column("second_at")
        t.drop_column("second_by")
        t.drop_column("second_sha256")
        t.drop_column("halves")
