"""Rows that confer authority or scope name the ledger event that anchors them (`anchor`: its
index); see custodes.ledger.anchors. Rows already in the store are anchored once by
'custodes init' right after this upgrade
(docs/decisions/2026-12-06-authority-anchored-in-the-ledger.md).

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = (
    "sessions",
    "users",
    "grants",
    "enrolments",
    "policy",
    "agencies",
    "officials",
    "agreements",
    "ruleset_changes",
    "requests",
    "sensitive_records",
    "incidents",
)


def upgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as t:
            t.add_column(sa.Column("anchor", sa.BigInteger))


def downgrade() -> None:
    for name in TABLES:
        with op.batch_alter_table(name) as t:
            t.drop_column("anchor")
