"""Ledger: events, perfect-subtree nodes, tree state, checkpoints, cosignatures.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_events",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("record_id", sa.String(64)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("salt", sa.LargeBinary(32), nullable=False),
        sa.Column("commitment", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_ledger_events_request_id", "ledger_events", ["request_id"])
    op.create_index("ix_ledger_events_record_id", "ledger_events", ["record_id"])
    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    state = op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
        sa.Column("checkpoint_size", sa.BigInteger),
    )
    # The one state row exists from the start, so appenders only ever compare-and-swap it.
    op.bulk_insert(state, [{"id": 1, "size": 0, "frontier": b"", "checkpoint_size": None}])
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "ledger_cosignatures",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String(255), primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for t in (
        "ledger_cosignatures",
        "ledger_checkpoints",
        "ledger_state",
        "ledger_nodes",
        "ledger_events",
    ):
        op.drop_table(t)
