"""accounts: exponential back-off in a login_throttle table instead of the five-strike lock

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:45:00

"""

import sqlalchemy as sa
from alembic import op

import kmc.database

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "login_throttle",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=120), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", kmc.database.UTCDateTime(), nullable=True),
        sa.Column("blocked_until", kmc.database.UTCDateTime(), nullable=True),
        sa.Column("window_start", kmc.database.UTCDateTime(), nullable=True),
        sa.Column("window_failures", sa.Integer(), nullable=False),
        sa.Column("window_throttled", sa.Integer(), nullable=False),
        sa.Column("window_names", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject", name=op.f("pk_login_throttle")),
    )
    op.create_index(
        "ix_login_throttle_window_start", "login_throttle", ["window_start"], unique=False
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("failed_logins")
        batch_op.drop_column("locked_until")


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locked_until", kmc.database.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
    op.drop_index("ix_login_throttle_window_start", table_name="login_throttle")
    op.drop_table("login_throttle")
