"""TikTok shipping providers per delivery option.

Revision 0006 (hand-made schema version 6 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "tiktok_shipping_providers",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("delivery_option_id", sa.String(length=64), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "delivery_option_id"),
    )


def downgrade() -> None:
    op.drop_table("tiktok_shipping_providers")
