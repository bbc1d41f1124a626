"""Extraction cursors, and indexes for reading the latest state of the orders in play.

Revision 0005 (hand-made schema version 5 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

LATEST_STATE_INDEXES = (
    ("ix_stg_tiktok_orders_status", "stg_tiktok_orders", ["shop", "status"]),
    ("ix_stg_tiktok_cancellations_update", "stg_tiktok_cancellations", ["shop", "update_time"]),
    ("ix_stg_shopify_orders_updated", "stg_shopify_orders", ["shop", "updated_at"]),
    ("ix_stg_amazon_status_updated", "stg_amazon_fulfillment_orders", ["shop", "status_updated_at"]),
    ("ix_stg_shipbob_orders_updated", "stg_shipbob_orders", ["shop", "last_update_at"]),
)


def upgrade() -> None:
    op.create_table(
        "extraction_cursors",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=48), nullable=False),
        sa.Column("established_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shop", "source"),
    )
    # a warehouse created by a later hand-made version has them already
    for name, table, columns in LATEST_STATE_INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _ in LATEST_STATE_INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("extraction_cursors")
