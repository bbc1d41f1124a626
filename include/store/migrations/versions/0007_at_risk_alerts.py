"""At-risk alerts sent.

Revision 0007 (hand-made schema version 7 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "at_risk_alerts",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        sa.Column("threshold_hours", sa.Float(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("shop", "tiktok_order_id", "threshold_hours"),
    )


def downgrade() -> None:
    op.drop_table("at_risk_alerts")
