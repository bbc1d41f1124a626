"""One run's reads and writes of the warehouse (docs/architecture.md §4): its `runs` row, the staged
rows it works on (what it staged, the orders in play and the other platforms' latest state of
them), validation and quarantine, its decisions, API call counts and the figures of its summary.
The steps in `pipeline.py` say what to do; this says where it is kept. The ledger's rows are the
ledger's (`include/act/ledger.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from include.act.ledger import FAILED, PENDING, RETRY_ASKED
from include.decide.enums import TIKTOK_SHIPPABLE_STATUSES
from include.decide.model import ESCALATE, as_utc
from include.extract import staging
from include.quality.checkpoints import BATCH_PLATFORM
from include.quality.checkpoints import Outcome as Validation
from include.run.runconfig import RunSettings
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    api_calls,
    decisions,
    extraction_cursors,
    latest_rows,
    order_links,
    platform_events,
    quarantine,
    runs,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_shopify_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
    utcnow,
    validation_results,
)

# The staged batches a run validates, by name (include/run/steps.py BATCHES).
BATCH_TABLES = {
    "tiktok_orders": stg_tiktok_orders,
    "tiktok_cancellations": stg_tiktok_cancellations,
    "shopify_orders": stg_shopify_orders,
    "amazon_fulfillment_orders": stg_amazon_fulfillment_orders,
    "shipbob_orders": stg_shipbob_orders,
}
# Each staging table's own update time (the platform's): what "changed since" compares.
UPDATED = {
    "stg_tiktok_orders": "update_time",
    "stg_tiktok_cancellations": "update_time",
    "stg_shopify_orders": "updated_at",
    "stg_amazon_fulfillment_orders": "status_updated_at",
    "stg_shipbob_orders": "last_update_at",
}
FULFILLER_SOURCES = {"amazon_mcf": "amazon_fulfillment_orders", "shipbob": "shipbob_orders"}
# What makes an order's decision the same as its latest recorded one, so that the run records no new
# row: the rule, the reason, the actions planned (their keys name what they touch), the policy and
# what it was decided on (`inputs`) but the TikTok snapshot's run id, which names the run that last
# read the order, not what was read (an order read again unchanged decides the same).
RUN_ONLY_INPUTS = ("tiktok",)
LINK_FIELDS = ("shopify_order_ids", "match_rule", "fulfiller", "fulfillment_order_id", "link_problem")
# Task processes may run on hosts whose clocks differ by this much (kept small: rows staged this long
# before a run started, by a run that has finished, are read as if this run had staged them).
CLOCK_SKEW = timedelta(seconds=5)
# How far before the oldest order in play the Shopify/fulfiller listings start.
LOOKBACK_MARGIN = timedelta(days=1)
MAX_LOOKBACK = timedelta(days=60)
# Where a quarantined record keeps the values it could join on (see `quarantined_links`).
LINK_KEYS = "_orderops_link_keys"
# Staged rows upserted per statement while a listing is read.
STAGE_ROWS = 2000
log = logging.getLogger(__name__)


def _essentials(decision: Any) -> tuple:
    inputs = {k: v for k, v in (decision["inputs"] or {}).items() if k not in RUN_ONLY_INPUTS}
    return decision["rule"], decision["reason"], list(decision["actions"]), decision["policy_version"], inputs


def unchanged(recorded: tuple[Any, Any] | None, decision: dict, link: dict) -> bool:
    """Whether an order's decision and link are the ones recorded last (`RUN_ONLY_INPUTS`)."""
    if recorded is None or recorded[1] is None:
        return False
    before, linked = recorded
    return _essentials(before) == _essentials(decision) and all(linked[f] == link[f] for f in LINK_FIELDS)


def printable(text: str) -> str:
    """Text as the quarantine keeps it: a NUL written out (PostgreSQL text cannot hold one)."""
    return text.replace("\x00", "\\x00")


def natural_key(table: sa.Table) -> sa.Column:
    """A staging table's platform id column (its key beside `shop`)."""
    return next(c for c in table.primary_key.columns if c.name != "shop")


class RunStore:
    """The warehouse as one run of one shop sees it."""

    def __init__(self, wh: Warehouse, settings: RunSettings):
        self.wh = wh
        self.settings = settings
        self.shop, self.run_id = settings.shop, settings.run_id
        self._started: datetime | None = None

    # ------------------------------------------------------------------ the run's row
    def start(self) -> None:
        s = self.settings
        self.wh.upsert(
            runs,
            [
                dict(
                    shop=s.shop,
                    run_id=s.run_id,
                    dag_id=s.dag_id,
                    window_start=s.window_start,
                    window_end=s.window_end,
                    started_at=utcnow(),
                    state="running",
                    policy_version=s.policy.version,
                    dry_run=s.dry_run,
                )
            ],
        )
        self._started = None  # (re)opened just now: read it again

    def started(self) -> datetime | None:
        """When the run's row was opened (prepare_run); read once per store, as it does not change."""
        if self._started is None:
            with self.wh.engine.connect() as conn:
                started = conn.execute(
                    sa.select(runs.c.started_at).where(runs.c.shop == self.shop, runs.c.run_id == self.run_id)
                ).scalar()
            self._started = as_utc(started) if started is not None else None
        return self._started

    def _update_run(self, **values: Any) -> None:
        with self.wh.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.shop == self.shop, runs.c.run_id == self.run_id).values(**values))

    def decided(self, now: datetime, by_rule: dict[str, int], recorded: int) -> None:
        """The run decided as of `now`: the orders it decided by rule, and how many of their
        decisions it recorded (those that changed), kept for its summary."""
        self._update_run(decided_at=now, decision_counts={"by_rule": by_rule, "recorded": recorded})

    def finish(self, summary: dict, state: str, finished: datetime) -> None:
        self._update_run(finished_at=finished, state=state, summary=summary)

    # ------------------------------------------------------------------ staged rows
    def stage(
        self,
        table: sa.Table,
        batch: str,
        records: Iterable[Any],
        to_row: Callable[[Any], dict],
        key_of: Callable[[Any], str | None],
        on_row: Callable[[dict], None] | None = None,
        missed: Callable[[list[dict]], int] | None = None,
    ) -> tuple[int, int, int]:
        """Transform and upsert one platform batch as its pages arrive, STAGE_ROWS rows at a time (so a
        run never holds a whole platform's payloads); records that can't be staged are quarantined.
        Returns the orders staged, the records quarantined and what `missed` counted of the rows."""
        now = utcnow()
        rows: dict[Any, dict] = {}
        staged: set = set()
        bad = []
        found = 0

        def flush() -> None:
            nonlocal found
            if missed is not None and rows:
                found += missed(list(rows.values()))
            self.wh.upsert(table, rows.values())
            rows.clear()

        key_col = natural_key(table).name
        for record in records:
            try:
                row = to_row(record)
                staging.check_sizes(row, table, f"{batch} {row[key_col]}")
            except staging.BadRecord as exc:
                payload = record[1] if isinstance(record, tuple) and len(record) == 2 else record
                raw = staging.strip_pii(payload) if isinstance(payload, dict) else {}
                key = key_of(record)
                bad.append(
                    dict(
                        shop=self.shop,
                        run_id=self.run_id,
                        batch=batch,
                        record_key=None
                        if key is None
                        else printable(str(key))[: cast(sa.String, quarantine.c.record_key.type).length],
                        reason=printable(str(exc)),
                        raw={**raw, LINK_KEYS: staging.link_keys(payload)},
                        quarantined_at=now,
                    )
                )
                continue
            row.update(shop=self.shop, snapshot_run_id=self.run_id, extracted_at=now, source_request_id=None)
            rows[row[key_col]] = row  # a record repeated across pages is staged once (the later copy wins)
            staged.add(row[key_col])
            if on_row is not None:
                on_row(row)
            if len(rows) >= STAGE_ROWS:
                flush()
        flush()
        if bad:
            with self.wh.engine.begin() as conn:
                conn.execute(quarantine.insert(), bad)
            for entry in bad[:20]:
                log.warning("quarantined %s record %s: %s", batch, entry["record_key"], entry["reason"])
        if found:
            log.warning("%s: the sweep found %d change(s) the cursor had missed", batch, found)
        return len(staged), len(bad), found

    def staged_since_start(self, table: sa.Table, started: datetime | None):
        """Rows this run staged. Staging keeps one row per order (upsert by natural key), so a run of
        the same shop going on at the same time (a backfill beside the scheduled run) may restage
        them and take them over: anything staged since this run started is at least as fresh as
        its own copy."""
        mine = table.c.snapshot_run_id == self.run_id
        return sa.or_(mine, table.c.extracted_at >= started - CLOCK_SKEW) if started is not None else mine

    def read(
        self, table: sa.Table, where, raw_fields: tuple[str, ...] = (), columns: tuple[str, ...] | None = None
    ) -> list[dict]:
        """Typed columns only (the raw payload stays in the warehouse: it is most of a row's size),
        plus `raw_fields` read out of it."""
        chosen = [table.c[n] for n in columns] if columns else [c for c in table.c if c.name != "raw"]
        chosen += [table.c.raw[name].as_string().label(name) for name in raw_fields]
        with self.wh.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(*chosen).where(table.c.shop == self.shop, where))]

    def staged_by_run(self, table: sa.Table) -> list[dict]:
        """The batch this run staged (what validation checks)."""
        return self.read(table, self.staged_since_start(table, self.started()))

    def _in_play(self):
        """TikTok orders in play by their latest staged state: actionable, with a buyer's cancellation
        request, or staged by this run."""
        o = stg_tiktok_orders.c
        return sa.or_(
            o.status.in_(TIKTOK_SHIPPABLE_STATUSES),
            o.is_buyer_request_cancel.is_(True),
            self.staged_since_start(stg_tiktok_orders, self.started()),
        )

    def in_play_tiktok(self, raw_fields: tuple[str, ...] = (), columns: tuple[str, ...] | None = None) -> list[dict]:
        return self.read(stg_tiktok_orders, self._in_play(), raw_fields, columns)

    def in_play_since(self, now: datetime) -> datetime:
        """Where the other platforms' rows of the orders in play begin: a margin before the oldest
        one (a Shopify order is created after its TikTok order), at most MAX_LOOKBACK back."""
        o = stg_tiktok_orders.c
        with self.wh.engine.connect() as conn:
            oldest = conn.execute(
                sa.select(sa.func.min(o.create_time)).where(o.shop == self.shop, self._in_play())
            ).scalar()
        start = self.settings.window_start - self.settings.overlap
        oldest = min(as_utc(oldest), start) if oldest is not None else start
        return max(oldest - LOOKBACK_MARGIN, now - MAX_LOOKBACK)

    def fulfillers_listed_from(self, since: datetime, now: datetime) -> datetime:
        """The oldest order creation for which a missing fulfillment order is proven missing: every
        configured fulfiller's orders are known from its cursor's start on, and the state read for
        the orders in play begins at `since` (capped at MAX_LOOKBACK). A fulfiller never listed
        covers nothing."""
        sources = [FULFILLER_SOURCES[f] for f in self.settings.fulfillers]
        c = extraction_cursors.c
        with self.wh.engine.connect() as conn:
            starts = dict(
                conn.execute(
                    sa.select(c.source, c.established_at).where(c.shop == self.shop, c.source.in_(sources))
                ).all()
            )
        return max([since, *(as_utc(starts[s]) if starts.get(s) else now for s in sources)])

    def tracking_elsewhere(self, numbers: Iterable[str]) -> dict[str, set[str]]:
        """For each tracking number, the TikTok orders it is on: as TikTok shows them (staged), or
        as orderops posted, or means to post, it (the ledger; a refused post does not count)."""
        wanted = sorted(set(numbers) - {""})
        found: dict[str, set[str]] = {}
        o, a = stg_tiktok_orders.c, action_ledger.c
        with self.wh.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                on_tiktok = sa.select(o.tracking_number, o.tiktok_order_id).where(
                    o.shop == self.shop, o.tracking_number.in_(part)
                )
                in_ledger = sa.select(a.tracking_number, a.tiktok_order_id).where(
                    a.shop == self.shop, a.tracking_number.in_(part), a.state.in_(("pending", "in_flight", "succeeded"))
                )
                for number, order_id in conn.execute(sa.union(on_tiktok, in_ledger)):
                    found.setdefault(number, set()).add(order_id)
        return found

    def warehouse_refusals(self) -> dict[str, int]:
        """Tracking uploads TikTok refused, per Amazon MCF warehouse (policy `mcf_warehouse_ids`) of the
        orders they were for: each attempt of a post that ended refused counts (a retry TikTok refused
        again is another, and one a person asked to retry still counts while it waits); a post
        settled without being sent does not."""
        warehouses = list(self.settings.policy.mcf_warehouse_ids)
        if not warehouses:
            return {}
        o, a = stg_tiktok_orders.c, action_ledger.c
        with self.wh.engine.connect() as conn:
            rows = conn.execute(
                sa.select(o.warehouse_id, sa.func.sum(a.attempts))
                .select_from(
                    action_ledger.join(
                        stg_tiktok_orders, sa.and_(o.shop == a.shop, o.tiktok_order_id == a.tiktok_order_id)
                    )
                )
                .where(
                    a.shop == self.shop,
                    a.kind == "post_tracking",
                    sa.or_(a.state == FAILED, sa.and_(a.state == PENDING, a.detail.startswith(RETRY_ASKED))),
                    o.warehouse_id.in_(warehouses),
                    sa.or_(a.detail.is_(None), sa.not_(a.detail.startswith("settled:"))),
                )
                .group_by(o.warehouse_id)
            ).all()
        return {warehouse: int(count or 0) for warehouse, count in rows}

    def latest_state(self, tables: Iterable[sa.Table], since: datetime) -> list[list[dict]]:
        """The latest staged state of the platforms' orders that can belong to orders in play:
        changed since `since`, or staged by this run."""
        started = self.started()
        found = []
        for table in tables:
            changed = table.c[UPDATED[table.name]] >= since
            if table is stg_amazon_fulfillment_orders:
                changed = sa.or_(changed, table.c.received_at >= since)
            found.append(self.read(table, sa.or_(changed, self.staged_since_start(table, started))))
        return found

    # ------------------------------------------------------------------ validation and quarantine
    def record_validation(self, batch: str, outcome: Validation, now: datetime) -> None:
        """`now` is the run's clock: the SLA page lists failed batches by day beside the run's figures."""
        self.wh.upsert(
            validation_results,
            [
                dict(
                    shop=self.shop,
                    run_id=self.run_id,
                    batch=batch,
                    success=outcome.success,
                    rows=outcome.rows,
                    failures=outcome.failures,
                    checked_at=now,
                )
            ],
        )

    def failed_validations(self) -> Sequence[str]:
        v = validation_results.c
        with self.wh.engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(v.batch).where(v.shop == self.shop, v.run_id == self.run_id, v.success.is_(False))
                )
                .scalars()
                .all()
            )

    def blocked_by_validation(self) -> set[str]:
        """Platforms whose batch failed its suite in this run: no action rests on them."""
        return {BATCH_PLATFORM[b] for b in self.failed_validations()}

    def quarantined_links(self) -> dict[str, str]:
        """Join values of the records that could not be staged -> the batch they came from: this
        run's, and earlier runs' until a later listing staged the same record (an incremental run
        does not list an unchanged record again, so its quarantine carries forward). A record
        without an id counts in the run that read it only: nothing could tell when it was read again."""
        q = quarantine.c
        with self.wh.engine.connect() as conn:
            rows = conn.execute(
                sa.select(q.batch, q.record_key, q.raw, q.quarantined_at).where(
                    q.shop == self.shop,
                    sa.or_(
                        q.run_id == self.run_id,
                        sa.and_(q.record_key.is_not(None), q.quarantined_at >= utcnow() - MAX_LOOKBACK),
                    ),
                )
            ).all()
            staged: dict[tuple[str, str], datetime] = {}
            for batch in {r.batch for r in rows}:
                table = BATCH_TABLES[batch]
                key = natural_key(table)
                wanted = sorted({r.record_key for r in rows if r.batch == batch and r.record_key is not None})
                for i in range(0, len(wanted), 500):
                    for k, at in conn.execute(
                        sa.select(key, table.c.extracted_at).where(
                            table.c.shop == self.shop, key.in_(wanted[i : i + 500])
                        )
                    ):
                        staged[(batch, k)] = as_utc(at)
        links: dict[str, str] = {}
        for r in rows:
            restaged = staged.get((r.batch, r.record_key))
            if restaged is None or restaged <= as_utc(r.quarantined_at):
                links.update({key: r.batch for key in ((r.raw or {}).get(LINK_KEYS) or [])})
        return links

    # ------------------------------------------------------------------ decisions, calls, summary
    def recorded_decisions(self, orders: Iterable[str]) -> dict[str, tuple[Any, Any]]:
        """Each order's latest recorded decision and link (an order never decided is missing)."""
        orders = list(orders)
        with self.wh.engine.connect() as conn:
            decided = latest_rows(conn, decisions, self.shop, orders)
            linked = latest_rows(conn, order_links, self.shop, orders)
        return {o: (d, linked.get(o)) for o, d in decided.items()}

    def record_decisions(self, links: list[dict], decided: list[dict]) -> None:
        self.wh.upsert(order_links, links)
        self.wh.upsert(decisions, decided)

    def record_api_calls(self, task_id: str, map_index: int, stats_rows: list[dict]) -> None:
        self.wh.upsert(
            api_calls,
            [dict(shop=self.shop, run_id=self.run_id, task_id=task_id, map_index=map_index, **r) for r in stats_rows],
        )

    def figures(self) -> dict:
        """What the run did, from the warehouse: orders staged per batch, orders decided by rule and
        the decisions recorded (as counted when it decided), actions
        by kind and state, escalations, validation failures, quarantine, API calls per platform,
        the extraction per source, the platform events it claimed (and those a read contradicted),
        and when the run started."""
        shop, run_id = self.shop, self.run_id
        out: dict[str, Any] = {}
        with self.wh.engine.connect() as conn:
            out["orders_seen"] = {
                batch: conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.shop == shop, table.c.snapshot_run_id == run_id)
                ).scalar()
                for batch, table in BATCH_TABLES.items()
            }
            counts = (
                conn.execute(
                    sa.select(runs.c.decision_counts).where(runs.c.shop == shop, runs.c.run_id == run_id)
                ).scalar()
                or {}
            )
            out["decisions"] = counts.get("by_rule") or {}
            out["decisions_recorded"] = int(counts.get("recorded") or 0)
            t = action_ledger.c
            actions = conn.execute(
                sa.select(t.kind, t.state, sa.func.count())
                .where(t.shop == shop, t.run_id == run_id)
                .group_by(t.kind, t.state)
            ).all()
            out["actions"] = {f"{kind}:{state}": n for kind, state, n in actions}
            out["escalations"] = [
                dict(tiktok_order_id=r.tiktok_order_id, rule=r.rule, reason=r.request.get("detail"))
                for r in conn.execute(
                    sa.select(t.tiktok_order_id, t.rule, t.request).where(
                        t.shop == shop, t.run_id == run_id, t.kind == ESCALATE
                    )
                )
            ]
            out["quarantined"] = conn.execute(
                sa.select(sa.func.count())
                .select_from(quarantine)
                .where(quarantine.c.shop == shop, quarantine.c.run_id == run_id)
            ).scalar()
            c = api_calls.c
            out["api"] = {
                p: {"calls": int(calls or 0), "throttled": int(thr or 0), "retries": int(ret or 0)}
                for p, calls, thr, ret in conn.execute(
                    sa.select(c.platform, sa.func.sum(c.calls), sa.func.sum(c.throttled), sa.func.sum(c.retries))
                    .where(c.shop == shop, c.run_id == run_id)
                    .group_by(c.platform)
                )
            }
            x = extraction_cursors.c
            out["sources"] = {
                source: {"mode": mode, "listed": listed, "missed_by_cursor": findings}
                for source, mode, listed, findings in conn.execute(
                    sa.select(x.source, x.mode, x.listed, x.findings).where(x.shop == shop, x.run_id == run_id)
                )
            }
            e = platform_events.c
            claimed, disagreed = conn.execute(
                sa.select(sa.func.count(), sa.func.sum(sa.case((e.contradicted.is_(True), 1), else_=0))).where(
                    e.shop == shop, e.run_id == run_id
                )
            ).one()
            out["events"] = {"claimed": int(claimed or 0), "disagreed": int(disagreed or 0)}
        out["validation_failures"] = self.failed_validations()
        out["started_at"] = self.started()
        return out
