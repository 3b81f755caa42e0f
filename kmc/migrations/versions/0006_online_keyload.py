"""sm_registry: online key loading per SM (security_modules.online_keyload)

Existing SMs start with it off: an operator enables it per SM (docs/protocol.md, "Online key
loading"). New SMs start with it on in a test KMC and off in a live one (the service decides).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:55:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("security_modules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("online_keyload", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade():
    with op.batch_alter_table("security_modules", schema=None) as batch_op:
        batch_op.drop_column("online_keyload")
