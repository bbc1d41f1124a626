"""Runs record an order's decision and link only when they changed, so an order's current ones are
its latest rows: `order_links.decided_at` (filled from its decision, else its run), an index on each
table by order and time, and `runs.decision_counts` (orders decided by rule, decisions recorded).

Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    op.add_column("runs", sa.Column("decision_counts", sa.JSON(), nullable=True))
    op.add_column("order_links", sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE order_links SET decided_at = coalesce("
        "(SELECT d.decided_at FROM decisions d WHERE d.shop = order_links.shop"
        " AND d.run_id = order_links.run_id AND d.tiktok_order_id = order_links.tiktok_order_id),"
        " (SELECT r.started_at FROM runs r WHERE r.shop = order_links.shop AND r.run_id = order_links.run_id),"
        " CURRENT_TIMESTAMP)"
    )
    with op.batch_alter_table("order_links") as table:
        table.alter_column("decided_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_decisions_order_latest", "decisions", ["shop", "tiktok_order_id", "decided_at"])
    op.create_index("ix_order_links_order_latest", "order_links", ["shop", "tiktok_order_id", "decided_at"])


def downgrade() -> None:
    op.drop_index("ix_order_links_order_latest", "order_links")
    op.drop_index("ix_decisions_order_latest", "decisions")
    with op.batch_alter_table("order_links") as table:
        table.drop_column("decided_at")
    with op.batch_alter_table("runs") as table:
        table.drop_column("decision_counts")
