"""Sessions remember when they were last used: a person's session ends after the inactivity
timeout (NIST SP 800-53 AC-11/AC-12, IRS Publication 1075).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as t:
        t.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as t:
        t.drop_column("last_used_at")
