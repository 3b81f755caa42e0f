"""pki: the KMC signer certificates in the database, shared by every node

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:50:00

"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "pki_certificates",
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("pem", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pki_certificates")),
    )


def downgrade():
    op.drop_table("pki_certificates")
