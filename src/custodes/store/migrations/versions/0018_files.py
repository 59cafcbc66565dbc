"""The files custodes reads back, each tied to the ledger event that records its hash.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("path", sa.String(400), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("event_idx", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("files")
