"""Foundation: workspace metadata and the master-file import history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("people_sha256", sa.String(64), nullable=False),
        sa.Column("addresses_sha256", sa.String(64), nullable=False),
        sa.Column("people_rows", sa.BigInteger, nullable=False),
        sa.Column("address_rows", sa.BigInteger, nullable=False),
        sa.Column("people_added", sa.BigInteger, nullable=False),
        sa.Column("people_changed", sa.BigInteger, nullable=False),
        sa.Column("addresses_added", sa.BigInteger, nullable=False),
        sa.Column("addresses_changed", sa.BigInteger, nullable=False),
        sa.Column("master_sha256", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("imports")
    op.drop_table("meta")
