"""Platform events as received.

Revision 0009 (hand-made schema version 9 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "platform_events",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("order_ref", sa.String(length=128), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wakes", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.PrimaryKeyConstraint("shop", "platform", "event_id"),
    )
    op.create_index("ix_platform_events_waiting", "platform_events", ["shop", "run_id", "received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_platform_events_waiting", table_name="platform_events")
    op.drop_table("platform_events")
