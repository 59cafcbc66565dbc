"""Recall notices are kept in the store (so the recipient agency can download its part over the
API) and each agency's acknowledgement of receipt is recorded.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recalls") as t:
        t.add_column(sa.Column("notice", sa.Text))
    op.create_table(
        "recall_acknowledgements",
        sa.Column("recall_id", sa.String(32), primary_key=True),
        sa.Column("agency", sa.String(200), primary_key=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("recall_acknowledgements")
    with op.batch_alter_table("recalls") as t:
        t.drop_column("notice")
