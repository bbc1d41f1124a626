"""The SLA report and pipeline breaches.

Revision 0002 (hand-made schema version 2 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "sla_daily",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("fulfiller", sa.String(length=16), nullable=False),
        sa.Column("carrier", sa.String(length=64), nullable=False),
        sa.Column("orders_due", sa.Integer(), nullable=False),
        sa.Column("dispatched_on_time", sa.Integer(), nullable=False),
        sa.Column("dispatched_late", sa.Integer(), nullable=False),
        sa.Column("past_due_no_tracking", sa.Integer(), nullable=False),
        sa.Column("at_risk_auto_cancel", sa.Integer(), nullable=False),
        sa.Column("late_dispatch_rate", sa.Float(), nullable=False),
        sa.Column("ldr_over_line", sa.Boolean(), nullable=False),
        sa.Column("cancel_requests", sa.Integer(), nullable=False),
        sa.Column("cancels_on_time", sa.Integer(), nullable=False),
        sa.Column("cancels_late", sa.Integer(), nullable=False),
        sa.Column("ship_to_tracking_median_h", sa.Float(), nullable=True),
        sa.Column("ship_to_tracking_p95_h", sa.Float(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "day", "fulfiller", "carrier"),
    )
    op.create_table(
        "pipeline_breaches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("pipeline_breaches")
    op.drop_table("sla_daily")
