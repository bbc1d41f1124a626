"""The warehouse: staging tables, links, decisions, the action ledger and run summaries.

SQLAlchemy Core, so the same code and statements run on SQLite (embedded default) and
PostgreSQL (production). Every statement is parameterised: ids from the platforms never reach
SQL text. Schema changes are alembic revisions (`include/store/migrations`); the pipeline applies them
itself (`Warehouse.migrate`).
Buyer names, addresses and emails are never stored (see `include.extract.staging`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)


def _staging(name: str, key: str, *columns: sa.Column) -> sa.Table:
    """A staging table: natural key per shop, typed columns, raw JSON and where it came from."""
    return sa.Table(
        name,
        metadata,
        sa.Column("shop", sa.String(64), primary_key=True),
        sa.Column(key, sa.String(64), primary_key=True),
        *columns,
        sa.Column("raw", sa.JSON, nullable=False),
        sa.Column("snapshot_run_id", sa.String(250), nullable=False),
        sa.Column("extracted_at", TS, nullable=False),
        sa.Column("source_request_id", sa.String(128)),
    )


stg_tiktok_orders = _staging(
    "stg_tiktok_orders",
    "tiktok_order_id",
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("fulfillment_type", sa.String(32), nullable=False),
    sa.Column("create_time", TS, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("rts_sla_time", TS),
    sa.Column("shipping_due_time", TS),
    sa.Column("rts_time", TS),
    # TikTok's In Transit moment: the carrier's scan of tracking TikTok has (the dispatch clock since 01/2026)
    sa.Column("collection_time", TS),
    sa.Column("warehouse_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("tracking_number", sa.String(64), nullable=False),
    sa.Column("shipping_provider_id", sa.String(64), nullable=False),
    sa.Column("is_buyer_request_cancel", sa.Boolean, nullable=False),
    sa.Column("line_items", sa.JSON, nullable=False),
)
stg_tiktok_cancellations = _staging(
    "stg_tiktok_cancellations",
    "cancel_id",
    sa.Column("tiktok_order_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(48), nullable=False),
    sa.Column("cancel_type", sa.String(32)),
    sa.Column("role", sa.String(16)),
    sa.Column("create_time", TS, nullable=False),
    sa.Column("update_time", TS, nullable=False),
    sa.Column("deadline", TS),
)
# TikTok stops returning a request's deadline once it is answered: the one read while pending stays.
stg_tiktok_cancellations.info["keep_when_null"] = ("deadline",)
stg_shopify_orders = _staging(
    "stg_shopify_orders",
    "shopify_order_id",
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("source_identifier", sa.String(128)),
    sa.Column("tiktok_ids", sa.JSON, nullable=False),  # [{"tiktok_order_id": ..., "rule": ...}]
    sa.Column("cancelled_at", TS),
    sa.Column("financial_status", sa.String(32)),
    sa.Column("fulfillment_status", sa.String(32)),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)
stg_amazon_fulfillment_orders = _staging(
    "stg_amazon_fulfillment_orders",
    "seller_fulfillment_order_id",
    sa.Column("displayable_order_id", sa.String(64)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("status_updated_at", TS),
    sa.Column("received_at", TS),
    sa.Column("shipments", sa.JSON, nullable=False),
)
stg_shipbob_orders = _staging(
    "stg_shipbob_orders",
    "shipbob_order_id",
    sa.Column("reference_id", sa.String(128), index=True),
    sa.Column("order_number", sa.String(128)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("last_update_at", TS),
    sa.Column("shipments", sa.JSON, nullable=False),
)

LATEST_STATE_INDEXES = (
    sa.Index("ix_stg_tiktok_orders_status", stg_tiktok_orders.c.shop, stg_tiktok_orders.c.status),
    # the guard that never posts one tracking number to two orders looks numbers up
    sa.Index("ix_stg_tiktok_orders_tracking", stg_tiktok_orders.c.shop, stg_tiktok_orders.c.tracking_number),
    sa.Index(
        "ix_stg_tiktok_cancellations_update", stg_tiktok_cancellations.c.shop, stg_tiktok_cancellations.c.update_time
    ),
    sa.Index("ix_stg_shopify_orders_updated", stg_shopify_orders.c.shop, stg_shopify_orders.c.updated_at),
    sa.Index(
        "ix_stg_amazon_status_updated",
        stg_amazon_fulfillment_orders.c.shop,
        stg_amazon_fulfillment_orders.c.status_updated_at,
    ),
    sa.Index("ix_stg_shipbob_orders_updated", stg_shipbob_orders.c.shop, stg_shipbob_orders.c.last_update_at),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("dag_id", sa.String(250), nullable=False),
    sa.Column("window_start", TS),
    sa.Column("window_end", TS),
    sa.Column("decided_at", TS),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("policy_version", sa.String(32)),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("summary", sa.JSON),
    # orders decided by rule and decisions recorded, counted where the run decides (`RunStore.decided`)
    sa.Column("decision_counts", sa.JSON),
)
validation_results = sa.Table(
    "validation_results",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("batch", sa.String(48), primary_key=True),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("failures", sa.JSON, nullable=False),
    sa.Column("checked_at", TS, nullable=False),
)
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shop", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("batch", sa.String(48), nullable=False),
    sa.Column("record_key", sa.String(128)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.JSON),
    sa.Column("quarantined_at", TS, nullable=False),
)
order_links = sa.Table(
    "order_links",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("tiktok_order_id", sa.String(64), primary_key=True),
    sa.Column("shopify_order_ids", sa.JSON, nullable=False),
    sa.Column("match_rule", sa.String(128)),  # e.g. custom_attribute:<key> (orderops_provider.tiktok_order_id)
    sa.Column("fulfiller", sa.String(16)),
    sa.Column("fulfillment_order_id", sa.String(64)),
    sa.Column("link_problem", sa.String(48)),
    # a link is recorded with its order's decision, at the same moment: when it changed
    sa.Column("decided_at", TS, nullable=False),
)
decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("tiktok_order_id", sa.String(64), primary_key=True),
    sa.Column("rule", sa.String(8), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actions", sa.JSON, nullable=False),  # idempotency keys, in order
    sa.Column("inputs", sa.JSON, nullable=False),  # snapshot run id of each input row
    sa.Column("policy_version", sa.String(32), nullable=False),
    sa.Column("decided_at", TS, nullable=False),
)
# A run records an order's decision and link only when they changed: an order's current ones are its
# latest rows (`latest_rows`), found by these.
sa.Index("ix_decisions_order_latest", decisions.c.shop, decisions.c.tiktok_order_id, decisions.c.decided_at)
sa.Index("ix_order_links_order_latest", order_links.c.shop, order_links.c.tiktok_order_id, order_links.c.decided_at)
action_ledger = sa.Table(
    "action_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shop", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("tiktok_order_id", sa.String(64), nullable=False, index=True),
    sa.Column("rule", sa.String(8), nullable=False),
    sa.Column("decision_run_id", sa.String(250), nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    # a post_tracking's tracking number: one number is never posted to two orders
    sa.Column("tracking_number", sa.String(64)),
    sa.Column("response", sa.JSON),
    sa.Column("platform_request_id", sa.String(128)),
    sa.Column("state", sa.String(16), nullable=False),  # pending in_flight succeeded failed skipped
    sa.Column("detail", sa.Text),
    sa.Column("acted_at", TS),  # when it took effect, on the run's decision clock
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(255)),
    sa.Column("lease_until", TS),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("run_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("try_number", sa.Integer),
    sa.Column("map_index", sa.Integer),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("shop", "idempotency_key", name="uq_action_ledger_key"),
    sa.Index("ix_action_ledger_tracking", "shop", "tracking_number"),
)
api_calls = sa.Table(
    "api_calls",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("task_id", sa.String(250), primary_key=True),
    sa.Column("map_index", sa.Integer, primary_key=True),
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("operation", sa.String(128), primary_key=True),
    sa.Column("calls", sa.Integer, nullable=False),
    sa.Column("retries", sa.Integer, nullable=False),
    sa.Column("throttled", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
)
sla_daily = sa.Table(
    "sla_daily",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("fulfiller", sa.String(16), primary_key=True),  # all | amazon_mcf | shipbob | unlinked
    sa.Column("carrier", sa.String(64), primary_key=True),  # all | the fulfiller's carrier (carrier_group)
    sa.Column("orders_due", sa.Integer, nullable=False),
    sa.Column("dispatched_on_time", sa.Integer, nullable=False),
    sa.Column("dispatched_late", sa.Integer, nullable=False),
    sa.Column("past_due_no_tracking", sa.Integer, nullable=False),
    sa.Column("at_risk_auto_cancel", sa.Integer, nullable=False),
    sa.Column("late_dispatch_rate", sa.Float, nullable=False),
    sa.Column("ldr_over_line", sa.Boolean, nullable=False),
    sa.Column("cancel_requests", sa.Integer, nullable=False),
    sa.Column("cancels_on_time", sa.Integer, nullable=False),
    sa.Column("cancels_late", sa.Integer, nullable=False),
    # the carrier-scan clock (TikTok's since 01/2026): dispatched = In Transit by the first carrier scan;
    # empty on days computed before orderops counted it
    sa.Column("dispatched_on_time_scan", sa.Integer),
    sa.Column("dispatched_late_scan", sa.Integer),
    sa.Column("past_due_no_scan", sa.Integer),
    sa.Column("at_risk_no_scan", sa.Integer),
    sa.Column("late_dispatch_rate_scan", sa.Float),
    sa.Column("ship_to_tracking_median_h", sa.Float),
    sa.Column("ship_to_tracking_p95_h", sa.Float),
    sa.Column("computed_at", TS, nullable=False),
)
pipeline_breaches = sa.Table(
    "pipeline_breaches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dag_id", sa.String(250), nullable=False),
    sa.Column("run_id", sa.String(250)),
    sa.Column("kind", sa.String(32), nullable=False),  # deadline_missed | task_failed
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("recorded_at", TS, nullable=False),
)
# The platforms' quotas of each shop, drawn from by every task process of that shop (include/store/quotas.py).
quota_buckets = sa.Table(
    "quota_buckets",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(200), primary_key=True),  # platform:operation, or platform alone
    sa.Column("tokens", sa.Float, nullable=False),  # may be negative: calls promised a later slot
    sa.Column("stamp", sa.Float, nullable=False),  # epoch seconds of the last change
)
# Each shop's last fulfilled-shipments report: Amazon builds one at most every 30 minutes, so a run
# within that time whose range it covers (a rerun, a backfill) reads this copy instead of asking again.
amazon_shipment_reports = sa.Table(
    "amazon_shipment_reports",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("report_id", sa.Text, nullable=False),
    sa.Column("data_start", TS, nullable=False),
    sa.Column("data_end", TS, nullable=False),
    sa.Column("requested_at", TS, nullable=False),  # the run's clock
    sa.Column("report_rows", sa.JSON, nullable=False),
    sa.Column("build_seconds", sa.Float),  # how long Amazon took: the next report's first poll waits that
)
# TikTok's shipping providers per delivery option, as last read (the run's clock): they seldom
# change, so runs reuse them for a while and every sweep reads them anew.
tiktok_shipping_providers = sa.Table(
    "tiktok_shipping_providers",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("delivery_option_id", sa.String(64), primary_key=True),
    sa.Column("providers", sa.JSON, nullable=False),
    sa.Column("fetched_at", TS, nullable=False),
)
# Where each platform listing of a shop stands: incremental runs list what changed since
# `listed_until` (minus the run's overlap); a full sweep re-reads everything in play and counts, as
# findings, changes from before that point the cursor did not bring in (a defect to look at).
extraction_cursors = sa.Table(
    "extraction_cursors",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(48), primary_key=True),  # a staging batch (tiktok_orders, shopify_orders, ...)
    sa.Column("established_at", TS, nullable=False),  # the first listing's moment: findings start here
    sa.Column("listed_until", TS, nullable=False),  # changes up to here are staged (the run's clock)
    sa.Column("swept_at", TS),  # the last sweep's moment
    sa.Column("full_swept_at", TS),  # the last sweep of everything in play
    sa.Column("run_id", sa.String(250), nullable=False),  # the run that last listed
    sa.Column("mode", sa.String(16), nullable=False),  # sweep | incremental
    sa.Column("listed", sa.Integer, nullable=False),  # records that listing staged
    sa.Column("findings", sa.Integer, nullable=False),  # sweep: changes the cursor had missed
)
# The at-risk alerts sent: one per order and threshold (hours before its ship-by time), ever.
at_risk_alerts = sa.Table(
    "at_risk_alerts",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("tiktok_order_id", sa.String(64), primary_key=True),
    # ship_by (a carrier scan by the ship-by time) | auto_cancel (tracking by TikTok's auto-cancellation)
    sa.Column("deadline", sa.String(16), primary_key=True),
    sa.Column("threshold_hours", sa.Float, primary_key=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("alerted_at", TS, nullable=False),  # the run's clock
    sa.Column("sent", sa.Boolean, nullable=False),  # False: passed by an order first seen under a tighter one
)
# The escalation inbox: what people did with each escalation (append-only; the newest row is its
# state, none means open), and the carrier mappings they added for unmapped carriers.
escalation_reviews = sa.Table(
    "escalation_reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("shop", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False, index=True),  # the escalate ledger row
    sa.Column("state", sa.String(16), nullable=False),  # acknowledged | resolved
    sa.Column("note", sa.Text),
    sa.Column("reviewed_by", sa.String(250), nullable=False),
    sa.Column("reviewed_at", TS, nullable=False),
    sa.Column("owner", sa.String(250)),  # who takes the escalation (a later review without one keeps it)
)
carrier_mappings = sa.Table(
    "carrier_mappings",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("carrier", sa.String(64), primary_key=True),  # as the fulfiller writes it
    sa.Column("provider", sa.String(128), nullable=False),  # a TikTok provider name or id
    sa.Column("mapped_by", sa.String(250), nullable=False),
    sa.Column("mapped_at", TS, nullable=False),
)
# Platform events (webhooks, Amazon's notification queue) as received: each once per platform id,
# claimed by the run that handled it (include/events/platform_events.py).
platform_events = sa.Table(
    "platform_events",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("platform", sa.String(16), primary_key=True),
    sa.Column("event_id", sa.String(128), primary_key=True),  # the platform's id of the event
    sa.Column("topic", sa.String(64), nullable=False),
    sa.Column("order_ref", sa.String(128)),  # the platform's order id
    sa.Column("occurred_at", TS, nullable=False),  # by the platform's clock
    sa.Column("received_at", TS, nullable=False),
    sa.Column("wakes", sa.Boolean, nullable=False),  # starts a run
    sa.Column("payload", sa.JSON, nullable=False),  # buyer data removed
    sa.Column("run_id", sa.String(250)),  # the run that claimed it
    # true: the platform's own read (by the run that claimed it) contradicted what the body says
    sa.Column("contradicted", sa.Boolean),
    sa.Index("ix_platform_events_waiting", "shop", "run_id", "received_at"),
    sa.Index("ix_platform_events_order", "shop", "platform", "order_ref"),
)
# one run of a shop at a time: its pipeline run (across its tasks) or its event task holds this row
# until it is done or the lease lapses (include/store/leases.py)
shop_leases = sa.Table(
    "shop_leases",
    metadata,
    sa.Column("shop", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(250)),  # the run id holding it; null: free
    sa.Column("dag_id", sa.String(250)),
    sa.Column("taken_at", TS),
    sa.Column("expires_at", TS),  # by the wall clock: a holder that died frees it then
    # an event task found it held and left its events waiting: the holder rings the doorbell when done
    sa.Column("wake_after", sa.Boolean, nullable=False, server_default=sa.false()),
)
# alembic's record of the revision in place (include/store/migrations); not `alembic_version`, which a
# database shared with Airflow's metadata already has
VERSION_TABLE = "orderops_alembic_version"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Before alembic, the schema's versions 1-10 were recorded here; revision "00NN" is version NN.
HAND_VERSIONS = "orderops_schema"


def _alembic_config():
    from alembic.config import (
        Config as AlembicConfig,  # alembic only where the schema is looked at: DAG files import this module
    )

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@lru_cache(maxsize=1)
def _revisions():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def schema_head() -> str:
    """The revision this orderops needs."""
    return _revisions().get_current_head()


def schema_revision(conn: sa.Connection) -> str | None:
    """The revision in place: alembic's, else the hand-made version's, else None (empty)."""
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    if current is None and sa.inspect(conn).has_table(HAND_VERSIONS):
        hand = conn.execute(sa.text(f"SELECT max(version) FROM {HAND_VERSIONS}")).scalar()
        return f"{hand:04d}" if hand else None
    return current


def latest_rows(
    conn: sa.Connection, table: sa.Table, shop: str, orders: Iterable[str] | None = None
) -> dict[str, sa.RowMapping]:
    """Each order's latest row of `decisions` or `order_links` (all the shop's orders, or `orders`):
    its current decision or link, as runs record one only when it changed."""
    t = table.c
    wanted = sorted(set(orders)) if orders is not None else None
    found: dict[str, sa.RowMapping] = {}
    for start in range(0, len(wanted) if wanted is not None else 1, 500):
        # both sides limited to the orders asked for: the index by (shop, order, time) serves each
        these = t.tiktok_order_id.in_(wanted[start : start + 500]) if wanted is not None else sa.true()
        latest = (
            sa.select(t.tiktok_order_id, sa.func.max(t.decided_at).label("at"))
            .where(t.shop == shop, these)
            .group_by(t.tiktok_order_id)
            .subquery()
        )
        for row in conn.execute(
            sa.select(table)
            .join(latest, sa.and_(t.tiktok_order_id == latest.c.tiktok_order_id, t.decided_at == latest.c.at))
            .where(t.shop == shop, these)
            .order_by(t.run_id)  # two rows of one moment: one answer, the same each time
        ).mappings():
            found[row["tiktok_order_id"]] = row
    return found


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Warehouse:
    """One warehouse database (SQLAlchemy URL); safe to share across threads."""

    def __init__(self, url: str, **engine_options: Any):
        self.url = url
        kwargs: dict[str, Any] = {"future": True, **engine_options}
        if url.startswith("sqlite"):
            # concurrent task processes share the file: wait for locks rather than failing
            kwargs["connect_args"] = {"timeout": 60}
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.dialect = self.engine.dialect.name

    def migrate(self) -> str:
        """Create or upgrade the schema to this orderops's alembic head; returns that revision.
        Safe when several processes start it at once (the shops' first runs, the report DAG beside
        the pipeline): they take turns, and those after the first find nothing to do."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext

        scripts = _revisions()
        head = scripts.get_current_head()
        with self._sqlite_file_lock(), self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # several shops' first runs migrate at the same moment: one at a time
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": 7_403_921_561})
            current = schema_revision(conn)
            if current == head:
                return head
            if current is not None and current not in {r.revision for r in scripts.walk_revisions()}:
                # a newer orderops upgraded it (this one was rolled back): revisions only add, so it serves
                return current
            migrations = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            if current is not None and migrations.get_current_revision() is None:
                migrations.stamp(scripts, current)  # adopt a warehouse the hand-made steps kept
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            return head

    @contextmanager
    def _sqlite_file_lock(self) -> Iterator[None]:
        """SQLite has no advisory locks and creates tables without waiting for a writer: processes
        migrating one file take turns on a lock file beside it."""
        database = self.engine.url.database if self.dialect == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            yield
            return
        with open(f"{database}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def upsert(self, table: sa.Table, rows: Iterable[dict], conn=None) -> int:
        """Insert or replace rows by primary key; returns the rows sent. One statement, compiled
        once per table and set of columns, executed for many rows (compiling a multi-row VALUES
        statement per batch cost more than writing the rows)."""
        rows = list(rows)
        if not rows:
            return 0
        key = [c.name for c in table.primary_key.columns]
        # in key order: two runs upserting the same rows at once lock them in the same order (no deadlock)
        rows.sort(key=lambda row: tuple(str(row[k]) for k in key))
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        stmt = dialect.insert(table)
        keep = table.info.get("keep_when_null", ())
        update = {
            col: sa.func.coalesce(stmt.excluded[col], table.c[col]) if col in keep else stmt.excluded[col]
            for col in rows[0]
            if col not in key
        }
        stmt = (
            stmt.on_conflict_do_update(index_elements=key, set_=update)
            if update
            else stmt.on_conflict_do_nothing(index_elements=key)
        )
        with _maybe_begin(self.engine, conn) as c:
            for start in range(0, len(rows), 1000):
                c.execute(stmt, rows[start : start + 1000])
        return len(rows)

    def dispose(self) -> None:
        self.engine.dispose()


class _maybe_begin:
    """Use the caller's transaction when given one, else open and commit our own."""

    def __init__(self, engine: sa.Engine, conn):
        self.engine = engine
        self.conn = conn
        self._ctx: AbstractContextManager[sa.Connection] | None = None

    def __enter__(self):
        if self.conn is not None:
            return self.conn
        self._ctx = self.engine.begin()
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        return False


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()
