"""The escalation inbox and carrier mappings.

Revision 0008 (hand-made schema version 8 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "escalation_reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reviewed_by", sa.String(length=250), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_escalation_reviews_idempotency_key", "escalation_reviews", ["idempotency_key"], unique=False)
    op.create_table(
        "carrier_mappings",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("carrier", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=128), nullable=False),
        sa.Column("mapped_by", sa.String(length=250), nullable=False),
        sa.Column("mapped_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "carrier"),
    )


def downgrade() -> None:
    op.drop_table("carrier_mappings")
    op.drop_index("ix_escalation_reviews_idempotency_key", table_name="escalation_reviews")
    op.drop_table("escalation_reviews")
