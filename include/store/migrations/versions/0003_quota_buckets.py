"""The shops' shared platform quotas.

Revision 0003 (hand-made schema version 3 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "quota_buckets",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=200), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("shop", "bucket"),
    )


def downgrade() -> None:
    op.drop_table("quota_buckets")
