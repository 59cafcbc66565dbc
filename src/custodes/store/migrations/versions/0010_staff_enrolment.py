"""Access, second version: staff enrol themselves with a one-time code, privileged grants and
agency keys wait for a second administrator, requester accounts belong to an agency, sessions
end instead of vanishing (so an ended session is told apart from a made-up token), sign-in
failures are throttled per account name, and the second-factor policy lives in the store.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as b:
        b.alter_column("password_hash", existing_type=sa.Text, nullable=True)
        b.alter_column("totp_secret", existing_type=sa.String(64), type_=sa.Text)
        b.add_column(sa.Column("agency", sa.String(200)))
        b.add_column(sa.Column("totp_last_step", sa.BigInteger))
    with op.batch_alter_table("grants") as b:
        b.add_column(sa.Column("confirmed_by", sa.String(64)))
        b.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True)))
    # Grants made before two-administrator confirmation existed stay in force.
    op.execute(
        "UPDATE grants SET confirmed_by = granted_by, confirmed_at = granted_at "
        "WHERE confirmed_by IS NULL"
    )
    with op.batch_alter_table("sessions") as b:
        b.add_column(sa.Column("issued_by", sa.String(64)))
        b.add_column(sa.Column("confirmed_by", sa.String(64)))
        b.add_column(sa.Column("ended_at", sa.DateTime(timezone=True)))
        b.add_column(sa.Column("ended_reason", sa.String(32)))
    # An officer who discloses after review names the record they identified.
    with op.batch_alter_table("review_resolutions") as b:
        b.add_column(sa.Column("record_id", sa.String(64)))
    op.create_table(
        "enrolments",
        sa.Column("code_sha256", sa.String(64), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False, index=True),
        sa.Column("issued_by", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "login_throttle",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("last_failure", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "policy",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text),
        sa.Column("set_by", sa.String(64)),
        sa.Column("confirmed_by", sa.String(64)),
        sa.Column("set_at", sa.DateTime(timezone=True)),
        sa.Column("pending", sa.Text),
        sa.Column("pending_by", sa.String(64)),
        sa.Column("pending_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("policy")
    op.drop_table("login_throttle")
    op.drop_table("enrolments")
    with op.batch_alter_table("review_resolutions") as b:
        b.drop_column("record_id")
    with op.batch_alter_table("sessions") as b:
        for c in ("ended_reason", "ended_at", "confirmed_by", "issued_by"):
            b.drop_column(c)
    with op.batch_alter_table("grants") as b:
        b.drop_column("confirmed_at")
        b.drop_column("confirmed_by")
    with op.batch_alter_table("users") as b:
        b.drop_column("totp_last_step")
        b.drop_column("agency")
