"""The first schema: staging, runs, links, decisions, the action ledger, API calls.

Revision 0001 (hand-made schema version 1 before alembic). Frozen: a later change is a new revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "stg_tiktok_orders",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("fulfillment_type", sa.String(length=32), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rts_sla_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipping_due_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rts_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tracking_number", sa.String(length=64), nullable=False),
        sa.Column("shipping_provider_id", sa.String(length=64), nullable=False),
        sa.Column("is_buyer_request_cancel", sa.Boolean(), nullable=False),
        sa.Column("line_items", sa.JSON(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("snapshot_run_id", sa.String(length=250), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("shop", "tiktok_order_id"),
    )
    op.create_table(
        "stg_tiktok_cancellations",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("cancel_id", sa.String(length=64), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=48), nullable=False),
        sa.Column("cancel_type", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("snapshot_run_id", sa.String(length=250), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("shop", "cancel_id"),
    )
    op.create_index(
        "ix_stg_tiktok_cancellations_tiktok_order_id", "stg_tiktok_cancellations", ["tiktok_order_id"], unique=False
    )
    op.create_table(
        "stg_shopify_orders",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("shopify_order_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("source_identifier", sa.String(length=128), nullable=True),
        sa.Column("tiktok_ids", sa.JSON(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("financial_status", sa.String(length=32), nullable=True),
        sa.Column("fulfillment_status", sa.String(length=32), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("snapshot_run_id", sa.String(length=250), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("shop", "shopify_order_id"),
    )
    op.create_table(
        "stg_amazon_fulfillment_orders",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("seller_fulfillment_order_id", sa.String(length=64), nullable=False),
        sa.Column("displayable_order_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipments", sa.JSON(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("snapshot_run_id", sa.String(length=250), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("shop", "seller_fulfillment_order_id"),
    )
    op.create_table(
        "stg_shipbob_orders",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("shipbob_order_id", sa.String(length=64), nullable=False),
        sa.Column("reference_id", sa.String(length=128), nullable=True),
        sa.Column("order_number", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("last_update_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipments", sa.JSON(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("snapshot_run_id", sa.String(length=250), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("shop", "shipbob_order_id"),
    )
    op.create_index("ix_stg_shipbob_orders_reference_id", "stg_shipbob_orders", ["reference_id"], unique=False)
    op.create_table(
        "runs",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("shop", "run_id"),
    )
    op.create_table(
        "validation_results",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "run_id", "platform"),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("batch", sa.String(length=48), nullable=False),
        sa.Column("record_key", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=True),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "order_links",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        sa.Column("shopify_order_ids", sa.JSON(), nullable=False),
        sa.Column("match_rule", sa.String(length=32), nullable=True),
        sa.Column("fulfiller", sa.String(length=16), nullable=True),
        sa.Column("fulfillment_order_id", sa.String(length=64), nullable=True),
        sa.Column("link_problem", sa.String(length=48), nullable=True),
        sa.PrimaryKeyConstraint("shop", "run_id", "tiktok_order_id"),
    )
    op.create_table(
        "decisions",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop", "run_id", "tiktok_order_id"),
    )
    op.create_table(
        "action_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=8), nullable=False),
        sa.Column("decision_run_id", sa.String(length=250), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("platform_request_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dag_id", sa.String(length=250), nullable=True),
        sa.Column("run_id", sa.String(length=250), nullable=True),
        sa.Column("task_id", sa.String(length=250), nullable=True),
        sa.Column("try_number", sa.Integer(), nullable=True),
        sa.Column("map_index", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shop", "idempotency_key", name="uq_action_ledger_key"),
    )
    op.create_index("ix_action_ledger_tiktok_order_id", "action_ledger", ["tiktok_order_id"], unique=False)
    op.create_table(
        "api_calls",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("operation", sa.String(length=128), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("throttled", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shop", "run_id", "task_id", "map_index", "platform", "operation"),
    )


def downgrade() -> None:
    op.drop_table("api_calls")
    op.drop_index("ix_action_ledger_tiktok_order_id", table_name="action_ledger")
    op.drop_table("action_ledger")
    op.drop_table("decisions")
    op.drop_table("order_links")
    op.drop_table("quarantine")
    op.drop_table("validation_results")
    op.drop_table("runs")
    op.drop_index("ix_stg_shipbob_orders_reference_id", table_name="stg_shipbob_orders")
    op.drop_table("stg_shipbob_orders")
    op.drop_table("stg_amazon_fulfillment_orders")
    op.drop_table("stg_shopify_orders")
    op.drop_index("ix_stg_tiktok_cancellations_tiktok_order_id", table_name="stg_tiktok_cancellations")
    op.drop_table("stg_tiktok_cancellations")
    op.drop_table("stg_tiktok_orders")
