"""The carrier-scan clock and the guards before TikTok's one-shot tracking upload: TikTok's In Transit
moment (`collection_time`) and the warehouse an order ships from on the staged TikTok orders, filled
from each row's raw order; `sla_daily` gains the carrier-scan figures beside the upload ones and the
orders at risk of a late scan; the ledger keeps a post_tracking's number in a column of its own, and
both tables index tracking numbers (a number is never posted to two orders); an at-risk alert names
its deadline (the ship-by time or the auto-cancellation), part of its key.

Frozen: a later change is a new revision.
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"

SCAN_FIGURES = ("dispatched_on_time_scan", "dispatched_late_scan", "past_due_no_scan", "at_risk_no_scan")


def upgrade() -> None:
    with op.batch_alter_table("stg_tiktok_orders") as table:
        table.add_column(sa.Column("collection_time", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("warehouse_id", sa.String(length=64), nullable=False, server_default=""))
    # days computed before this revision were not counted on the scan clock: empty, not 0
    with op.batch_alter_table("sla_daily") as table:
        for name in SCAN_FIGURES:
            table.add_column(sa.Column(name, sa.Integer(), nullable=True))
        table.add_column(sa.Column("late_dispatch_rate_scan", sa.Float(), nullable=True))
    with op.batch_alter_table("action_ledger") as table:
        table.add_column(sa.Column("tracking_number", sa.String(length=64), nullable=True))
    op.create_index("ix_action_ledger_tracking", "action_ledger", ["shop", "tracking_number"])
    op.create_index("ix_stg_tiktok_orders_tracking", "stg_tiktok_orders", ["shop", "tracking_number"])
    ledger = sa.table(
        "action_ledger",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("request", sa.JSON),
        sa.column("tracking_number", sa.String),
    )
    conn = op.get_bind()
    for batch in _batches(conn, [ledger.c.id], ledger.c.request, ledger.c.kind == "post_tracking"):
        for row_id, request in batch:
            number = (request or {}).get("tracking_number")
            if isinstance(number, str):
                conn.execute(ledger.update().where(ledger.c.id == row_id).values(tracking_number=number[:64]))
    _rekey_at_risk_alerts(with_deadline=True)
    # rows staged before this revision: their raw order says both
    orders = sa.table(
        "stg_tiktok_orders",
        sa.column("shop", sa.String),
        sa.column("tiktok_order_id", sa.String),
        sa.column("raw", sa.JSON),
        sa.column("collection_time", sa.DateTime(timezone=True)),
        sa.column("warehouse_id", sa.String),
    )
    for batch in _batches(conn, [orders.c.shop, orders.c.tiktok_order_id], orders.c.raw):
        for shop, order_id, raw in batch:
            raw = raw or {}
            moment = raw.get("collection_time")
            # as staging reads it: seconds since the epoch, 0 for none
            seconds = moment if isinstance(moment, int) and not isinstance(moment, bool) else 0
            conn.execute(
                orders.update()
                .where(orders.c.shop == shop, orders.c.tiktok_order_id == order_id)
                .values(
                    collection_time=datetime.fromtimestamp(seconds, timezone.utc) if 0 < seconds < 10**10 else None,
                    warehouse_id=str(raw.get("warehouse_id") or "")[:64],
                )
            )


def _batches(conn, key: list, payload, *where, size: int = 1000):
    """Rows of (key..., payload) a thousand at a time in key order: a large warehouse's rows are
    never all in memory."""
    last = None
    while True:
        query = sa.select(*key, payload).where(*where)
        if last is not None:
            query = query.where(sa.tuple_(*key) > sa.tuple_(*last))
        rows = conn.execute(query.order_by(*key).limit(size)).all()
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][: len(key)])


def _rekey_at_risk_alerts(with_deadline: bool) -> None:
    """at_risk_alerts anew with (or without) `deadline` in its key, its rows copied: the alerts sent
    before were all for the ship-by time."""
    deadline = [sa.Column("deadline", sa.String(length=16), nullable=False)] if with_deadline else []
    op.create_table(
        "at_risk_alerts_new",
        sa.Column("shop", sa.String(length=64), nullable=False),
        sa.Column("tiktok_order_id", sa.String(length=64), nullable=False),
        *deadline,
        sa.Column("threshold_hours", sa.Float(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("shop", "tiktok_order_id", *(["deadline"] if with_deadline else []), "threshold_hours"),
    )
    columns = "shop, tiktok_order_id, threshold_hours, run_id, alerted_at, sent"
    if with_deadline:
        op.execute(
            f"INSERT INTO at_risk_alerts_new ({columns}, deadline) SELECT {columns}, 'ship_by' FROM at_risk_alerts"
        )
    else:
        kept = "WHERE deadline = 'ship_by'"
        op.execute(f"INSERT INTO at_risk_alerts_new ({columns}) SELECT {columns} FROM at_risk_alerts {kept}")
    op.drop_table("at_risk_alerts")
    op.rename_table("at_risk_alerts_new", "at_risk_alerts")


def downgrade() -> None:
    _rekey_at_risk_alerts(with_deadline=False)
    op.drop_index("ix_stg_tiktok_orders_tracking", table_name="stg_tiktok_orders")
    op.drop_index("ix_action_ledger_tracking", table_name="action_ledger")
    with op.batch_alter_table("action_ledger") as table:
        table.drop_column("tracking_number")
    with op.batch_alter_table("sla_daily") as table:
        for name in (*SCAN_FIGURES, "late_dispatch_rate_scan"):
            table.drop_column(name)
    with op.batch_alter_table("stg_tiktok_orders") as table:
        table.drop_column("warehouse_id")
        table.drop_column("collection_time")
