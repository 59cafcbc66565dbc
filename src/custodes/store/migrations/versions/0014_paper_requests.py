"""Requests in an agency's name come from its account; staff key in only a request received on
paper, with the scan's hash, and a second staff member confirms it before it is processed.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as t:
        t.add_column(sa.Column("paper_sha256", sa.String(64)))
        t.add_column(sa.Column("paper_confirmed_by", sa.String(128)))
        t.add_column(sa.Column("paper_confirmed_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as t:
        t.drop_column("paper_confirmed_at")
        t.drop_column("paper_confirmed_by")
        t.drop_column("paper_sha256")
