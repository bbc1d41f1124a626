"""The order SLA pipeline, step by step: what each task of `dags/orderops_sla.py` calls.

extract (per platform) -> stage -> validate -> join -> decide -> act (ledger) -> verify -> summarize.
Every step takes the run's `RunSettings`, a `Platforms` (clients for one shop) and the
warehouse, so the whole flow also runs without Airflow in tests and benchmarks.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa

from include import staging, steps
from include.actions import Executor, Handlers, Outcome
from include.at_risk import alert_at_risk
from include.carriers import CarrierMap
from include.decide import decide
from include.events import SHIPBOB_ORDER_TOPICS, EventInbox, amazon_reads, sources_of
from include.enums import AMAZON_ORDER_STATUSES, TIKTOK_SHIPPABLE_STATUSES, status_of
from include.inbox import mapped_carriers
from include.join import Joiner, Link, saga_states
from include.ledger import DONE_STATES, FAILED, IN_FLIGHT, PENDING, SUCCEEDED, Ledger, RunContext
from include.model import (
    ADD_NOTE, APPROVE_CANCELLATION, CANCEL_FULFILLMENT, CANCEL_SHOPIFY, ESCALATE, POST_TRACKING,
    REJECT_CANCELLATION, VERIFY_FULFILLMENT_CANCEL, Action, Decision,
)
from orderops_provider.base import BusinessError, ConfigurationError, NotFoundError, PlatformError, record_id
from include.quality import BATCH_PLATFORM, validate
from include.runconfig import RunSettings
from include.shops import minutes_setting
from include.warehouse import (
    Warehouse, action_ledger, amazon_shipment_reports, api_calls, as_utc, decisions, extraction_cursors, order_links,
    quarantine, runs, tiktok_shipping_providers,
    stg_amazon_fulfillment_orders, stg_shipbob_orders, stg_shopify_orders, stg_tiktok_cancellations, stg_tiktok_orders,
    utcnow, validation_results,
)

log = logging.getLogger(__name__)
CHUNK = 50
# Staged rows upserted per statement while a listing is read.
STAGE_ROWS = 2000
# How far before the oldest order in play the Shopify/fulfiller listings start.
LOOKBACK_MARGIN = timedelta(days=1)
MAX_LOOKBACK = timedelta(days=60)
# Amazon's fulfilled-shipments report: at most one month of data, built at most every 30 minutes.
REPORT_MAX_RANGE = timedelta(days=30)
REPORT_REGENERATION = timedelta(minutes=30)
# Task processes may run on hosts whose clocks differ by this much (kept small: rows staged this long
# before a run started, by a run that has finished, are read as if this run had staged them).
CLOCK_SKEW = timedelta(seconds=5)
SAGA_KINDS = (CANCEL_FULFILLMENT, VERIFY_FULFILLMENT_CANCEL, CANCEL_SHOPIFY, APPROVE_CANCELLATION)
GAVE_UP = "gave up:"
# Where a quarantined record keeps the values it could join on (see `quarantined_links`).
LINK_KEYS = "_orderops_link_keys"
GROUPS = {POST_TRACKING: "tracking", ADD_NOTE: "notes", REJECT_CANCELLATION: "rejections", ESCALATE: "escalations"}


# How long one listing may go on (minutes; 0 = no bound): outside Airflow nothing else stops one
LISTING_TIMEOUT_ENV = "ORDEROPS_LISTING_TIMEOUT_MINUTES"


class Platforms:
    """The four clients of one shop, built on first use from Airflow connections (or a factory);
    with `quotas` (include.quotas.SharedQuotas) they pace their calls by the shop's shared quotas."""

    def __init__(self, settings: RunSettings, factory: Callable[[str], Any] | None = None, quotas: Any = None):
        self.settings = settings
        self._factory = factory or self._from_connection
        self._quotas = quotas
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()   # threads of one run share one client (and quota copy) per platform

    def _from_connection(self, platform: str):
        from orderops_provider.hooks import BY_PLATFORM

        return BY_PLATFORM[platform](getattr(self.settings.connections, platform)).get_client()

    def get(self, platform: str):
        with self._lock:
            if platform not in self._clients:
                client = self._factory(platform)
                if getattr(client, "listing_seconds", None) is not None:
                    minutes = minutes_setting(LISTING_TIMEOUT_ENV, client.listing_seconds / 60)
                    client.listing_seconds = minutes * 60 if minutes else None
                if self._quotas is not None:
                    client.share_quotas(self._quotas)
                self._clients[platform] = client
            return self._clients[platform]

    def check(self) -> None:
        """Build the client of every platform the run uses, before any call, and check what its
        writes need (a ShipBob cancel needs the channel): a bad connection is named at the start of
        the run, not after the other platforms' writes."""
        for platform in ("tiktok", "shopify", *self.settings.fulfillers):
            conn_id = getattr(self.settings.connections, platform)
            try:
                client = self.get(platform)
                if platform == "shipbob" and not self.settings.dry_run:
                    client.require_channel("cancels")
            except ConfigurationError as exc:
                if conn_id in str(exc):
                    raise
                raise ConfigurationError(f"connection {conn_id!r}: {exc}") from None

    def tiktok(self):
        return self.get("tiktok")

    def shopify(self):
        return self.get("shopify")

    def amazon_mcf(self):
        return self.get("amazon_mcf")

    def shipbob(self):
        return self.get("shipbob")

    def stats_rows(self) -> list[dict]:
        return [row for name, client in self._clients.items() for row in client.stats.as_rows(name)]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


@dataclass
class Step:
    """What one step did, for the task log, XCom and the run summary."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"step": self.name, **self.counts, **self.detail}


def now_for(settings: RunSettings) -> datetime:
    return settings.now_override or datetime.now(timezone.utc)


def prepare_run(settings: RunSettings, wh: Warehouse) -> RunSettings:
    """Create or upgrade the schema, open the run's record and decide whether it sweeps; returns the
    settings every later step of the run uses."""
    version = wh.migrate()
    # the platform events waiting now are this run's: a scheduled run lists everything they could
    # say anyway; an event-driven one lists the platforms they came from, and never sweeps
    claimed = EventInbox(wh).claim(settings.shop, settings.run_id)
    if settings.event_driven:
        settings = replace(settings, listed=sources_of(claimed))
        log.info("event-driven run: %d event(s) (%d waking) -> lists %s", len(claimed),
                 sum(1 for e in claimed if e["wakes"]), ", ".join(settings.listed) or "nothing")
    else:
        reason = sweep_reason(settings, wh)
        settings = replace(settings, sweep=reason, full_sweep=reason is not None and full_sweep_due(settings, wh))
    wh.upsert(runs, [dict(shop=settings.shop, run_id=settings.run_id, dag_id=settings.dag_id,
                          window_start=settings.window_start, window_end=settings.window_end,
                          started_at=utcnow(), state="running", policy_version=settings.policy.version,
                          dry_run=settings.dry_run)])
    log.info("run %s shop %s window %s .. %s (overlap %s), policy %s%s, schema v%d, %s", settings.run_id, settings.shop,
             settings.window_start, settings.window_end, settings.overlap, settings.policy.version,
             " DRY RUN" if settings.dry_run else "", version,
             f"{'full ' if settings.full_sweep else ''}sweep ({settings.sweep})" if settings.sweep
             else "incremental extraction")
    return settings


FULFILLER_SOURCES = {"amazon_mcf": "amazon_fulfillment_orders", "shipbob": "shipbob_orders"}


def _sources(settings: RunSettings) -> list[str]:
    return ["tiktok_orders", "tiktok_cancellations", "shopify_orders", *(FULFILLER_SOURCES[f] for f in settings.fulfillers)]


def sweep_reason(settings: RunSettings, wh: Warehouse) -> str | None:
    """Why this run lists everything in play, or None: it lists what changed since the cursors."""
    if settings.sweep:
        return settings.sweep
    if settings.sweep_hours == 0:
        return "every run (sweep_hours 0)"
    with wh.engine.connect() as conn:
        swept = dict(conn.execute(sa.select(extraction_cursors.c.source, extraction_cursors.c.swept_at).where(
            extraction_cursors.c.shop == settings.shop)).all())
    missing = [source for source in _sources(settings) if swept.get(source) is None]
    if missing:
        return f"no sweep yet of {', '.join(missing)}"
    if now_for(settings) - min(as_utc(t) for t in swept.values()) >= timedelta(hours=settings.sweep_hours):
        return f"{settings.sweep_hours:g} h since the last sweep"
    return None


def full_sweep_due(settings: RunSettings, wh: Warehouse) -> bool:
    """Whether a sweeping run lists everything in play (a first listing, a backfill, an asked sweep,
    one per `full_sweep_hours`) rather than the changes since the last sweep."""
    if settings.sweep in ("asked", "backfill", "explicit window") or settings.full_sweep_hours <= settings.sweep_hours:
        return True
    with wh.engine.connect() as conn:
        full = dict(conn.execute(sa.select(extraction_cursors.c.source, extraction_cursors.c.full_swept_at).where(
            extraction_cursors.c.shop == settings.shop)).all())
    if any(full.get(source) is None for source in _sources(settings)):
        return True
    return now_for(settings) - min(as_utc(t) for t in full.values()) >= timedelta(hours=settings.full_sweep_hours)


# A sweep between full ones lists the changes since the last sweep began, this much earlier: what
# a cursor misses is a write that became visible late, minutes, not a day, after its update time
SWEEP_OVERLAP = timedelta(hours=1)


@dataclass(frozen=True)
class Listing:
    """How a run lists one source: changes in [changed_since, changed_until) (None: up to now), and,
    when it sweeps, everything in play too. Changes from `established` (where the shop's first listing
    began) to `changed_since` that a sweep finds missing from staging are the cursor's misses."""

    source: str
    sweep: str | None
    changed_since: datetime
    changed_until: datetime | None
    established: datetime | None
    listed_until: datetime | None
    swept_at: datetime | None
    started: datetime
    full: bool = False                     # a sweep of everything in play (else of the changes since the last)
    full_swept_at: datetime | None = None

    @property
    def full_sweep(self) -> bool:
        return bool(self.sweep) and self.full

    @property
    def changes_from(self) -> datetime:
        """Where the listing of changes (by update time) begins: the cursor, or for a sweep between
        full ones the last sweep's start, an hour early."""
        if not self.sweep or self.full or self.swept_at is None:
            return self.changed_since
        return min(self.swept_at - SWEEP_OVERLAP, self.changed_since)


def listing_for(settings: RunSettings, wh: Warehouse, source: str) -> Listing:
    now = now_for(settings)
    start = settings.window_start - settings.overlap
    with wh.engine.connect() as conn:
        cursor = conn.execute(sa.select(extraction_cursors).where(
            extraction_cursors.c.shop == settings.shop, extraction_cursors.c.source == source)).first()
    # a backfill or an explicit window lists that window's changes (and sweeps); other runs list every
    # change since the cursor, so a failed or skipped run leaves no gap
    windowed = settings.sweep in ("backfill", "explicit window")
    until = settings.window_end + timedelta(seconds=1) if windowed and settings.window_end < now else None
    if cursor is None:
        return Listing(source, settings.sweep or "first listing", start, until, None, None, None, now, full=True)
    listed_until = as_utc(cursor.listed_until)
    since = start if windowed else min(start, listed_until - settings.overlap)
    return Listing(source, settings.sweep, since, until, as_utc(cursor.established_at), listed_until,
                   as_utc(cursor.swept_at), now, full=bool(settings.sweep) and settings.full_sweep,
                   full_swept_at=as_utc(cursor.full_swept_at))


def advance_cursor(wh: Warehouse, settings: RunSettings, listing: Listing, listed: int, findings: int,
                   covered_from: datetime | None = None) -> None:
    """After a listing completed: changes up to its start are staged when it reached that moment
    and began no later than the cursor (no gap); the cursor never moves back. `covered_from` is
    where a sweep's listing began (before the changes, e.g. every order created since the oldest
    in play): a sweep that is not a backfill's carries the cursor's start (`established_at`, from
    which the source's orders are known) back to it."""
    until = listing.listed_until
    if listing.changed_until is None and (until is None or listing.changed_since <= until):
        until = listing.started if until is None else max(until, listing.started)
    established = listing.established
    reach = min(covered_from or listing.changed_since, listing.changed_since)
    if established is None:
        established = reach
    elif listing.sweep and listing.changed_until is None:
        established = min(established, reach)
    wh.upsert(extraction_cursors, [dict(
        shop=settings.shop, source=listing.source, established_at=established,
        listed_until=until or listing.started, swept_at=listing.started if listing.sweep else listing.swept_at,
        full_swept_at=listing.started if listing.full_sweep else listing.full_swept_at,
        run_id=settings.run_id, mode="sweep" if listing.sweep else "incremental", listed=listed, findings=findings)])


# Each staging table's platform update time: the listings' cursors follow it.
UPDATED = {"stg_tiktok_orders": "update_time", "stg_tiktok_cancellations": "update_time",
           "stg_shopify_orders": "updated_at", "stg_amazon_fulfillment_orders": "status_updated_at",
           "stg_shipbob_orders": "last_update_at"}


def _missed_by_cursor(wh: Warehouse, settings: RunSettings, table: sa.Table, listing: Listing
                      ) -> Callable[[list[dict]], int] | None:
    """For a sweep: counts the rows about to be staged that changed between the cursor's start and
    this run's changes listing, yet were absent from staging or older there."""
    if not listing.sweep or listing.established is None:
        return None
    key = natural_key(table)
    updated = table.c[UPDATED[table.name]]

    def count(rows: list[dict]) -> int:
        changed = {row[key.name]: as_utc(row[updated.name]) for row in rows if row.get(updated.name) is not None
                   and listing.established <= as_utc(row[updated.name]) < listing.changed_since}
        if not changed:
            return 0
        with wh.engine.connect() as conn:
            stored = dict(conn.execute(sa.select(key, updated).where(
                table.c.shop == settings.shop, key.in_(list(changed)))).all())
        return sum(1 for k, moment in changed.items() if stored.get(k) is None or as_utc(stored[k]) < moment)
    return count


def natural_key(table: sa.Table) -> sa.Column:
    """A staging table's platform id column (its key beside `shop`)."""
    return next(c for c in table.primary_key.columns if c.name != "shop")


def _stage(wh: Warehouse, settings: RunSettings, table: sa.Table, batch: str, records: Iterable[Any],
           to_row: Callable[[Any], dict], key_of: Callable[[Any], str | None],
           on_row: Callable[[dict], None] | None = None,
           missed: Callable[[list[dict]], int] | None = None) -> tuple[int, int, int]:
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
        wh.upsert(table, rows.values())
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
            bad.append(dict(shop=settings.shop, run_id=settings.run_id, batch=batch,
                            record_key=None if key is None else printable(str(key))[:quarantine.c.record_key.type.length],
                            reason=printable(str(exc)), raw={**raw, LINK_KEYS: staging.link_keys(payload)},
                            quarantined_at=now))
            continue
        row.update(shop=settings.shop, snapshot_run_id=settings.run_id, extracted_at=now, source_request_id=None)
        rows[row[key_col]] = row  # a record repeated across pages is staged once (the later copy wins)
        staged.add(row[key_col])
        if on_row is not None:
            on_row(row)
        if len(rows) >= STAGE_ROWS:
            flush()
    flush()
    if bad:
        with wh.engine.begin() as conn:
            conn.execute(quarantine.insert(), bad)
        for entry in bad[:20]:
            log.warning("quarantined %s record %s: %s", batch, entry["record_key"], entry["reason"])
    if found:
        log.warning("%s: the sweep found %d change(s) the cursor had missed", batch, found)
    return len(staged), len(bad), found


def printable(text: str) -> str:
    """Text as the quarantine keeps it: a NUL written out (PostgreSQL text cannot hold one)."""
    return text.replace("\x00", "\\x00")


def unique(records: Iterable[Any], field_name: str) -> Iterator[Any]:
    """Records of several listings, each id once (the first copy: the listings are read moments
    apart); records without an id pass through, to be quarantined."""
    seen: set = set()
    for record in records:
        key = record_id(record, field_name)
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        yield record


def _key(field_name: str) -> Callable[[Any], str | None]:
    return lambda record: str(record.get(field_name)) if isinstance(record, dict) and record.get(field_name) is not None else None


def _tiktok_changes(listing: Listing) -> dict:
    # the last second included: TikTok's times are whole seconds, and a change stamped with the
    # listing's own moment would otherwise wait for the next run's overlap
    until = listing.changed_until or listing.started + timedelta(seconds=1)
    return {"update_time_ge": int(listing.changes_from.timestamp()), "update_time_lt": int(until.timestamp())}


def _not_listed(step: str, **detail: Any) -> dict:
    """An event-driven run's listing of a platform no event came from: its cursor stays where it is."""
    return Step(step, {"orders": 0}, {**detail, "mode": "not listed (no event)"}).as_dict()


def _amazon_from_events(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """An event-driven run's Amazon orders: each its notifications name (they are few: see
    events.sources_of), from the notification when it says all there is to say (a Complete order
    shipped in one package, already staged), else read by id; the cursor stays for the next listing."""
    claimed = [{**e, "platform": "amazon_mcf"} for e in EventInbox(wh).claimed(settings.shop, settings.run_id, "amazon_mcf")]
    refs = amazon_reads(claimed)
    if not refs:
        return _not_listed("extract_amazon")
    t = stg_amazon_fulfillment_orders.c
    staged = {r["seller_fulfillment_order_id"]: r for r in _read(
        wh, stg_amazon_fulfillment_orders, settings, t.seller_fulfillment_order_id.in_(refs),
        columns=("seller_fulfillment_order_id", "displayable_order_id", "received_at", "shipments"))}
    said: dict[str, list[dict]] = defaultdict(list)   # each order's waking notifications, as they happened
    for e in claimed:
        if e["wakes"]:
            said[e["order_ref"]].append(e["payload"])
    carried = {}
    for sfo in refs:
        # the newest notification that says it all (an order's status and its shipment come as two,
        # stamped the same moment)
        for payload in reversed(said[sfo] if sfo in staged else []):
            try:
                row = staging.amazon_row_from_notification(payload, staged[sfo])
            except staging.BadRecord:
                row = None   # read by id instead: that read names what is wrong, if anything
            if row is not None:
                carried[sfo] = row
                break
    reads = [sfo for sfo in refs if sfo not in carried]
    client = platforms.amazon_mcf() if reads else None

    def read():
        yield from (("carried", row) for row in carried.values())
        for sfo in reads:
            try:
                yield ("detail", client.get_fulfillment_order(sfo))
            except NotFoundError as exc:   # announced, yet unknown by id: held, named
                yield ("unreadable", {"sellerFulfillmentOrderId": sfo, "_error": exc.platform_message})

    def to_row(item):
        source, payload = item
        if source == "unreadable":
            raise staging.BadRecord(f"amazon fulfillment order {payload['sellerFulfillmentOrderId']!r}: announced, "
                                    f"but getFulfillmentOrder does not know it ({payload['_error']})")
        return dict(payload) if source == "carried" else staging.amazon_order_row(payload)

    def key_of(item) -> str | None:
        source, payload = item
        if source == "carried":
            return payload["seller_fulfillment_order_id"]
        return str((payload.get("fulfillmentOrder") or payload).get("sellerFulfillmentOrderId"))

    orders, bad, _ = _stage(wh, settings, stg_amazon_fulfillment_orders, "amazon_fulfillment_orders", read(), to_row,
                            key_of)
    return Step("extract_amazon", {"orders": orders, "carried_by_event": len(carried), "detail_calls": len(reads),
                                   "quarantined": bad}, {"mode": "read by event"}).as_dict()


def _shipbob_from_events(settings: RunSettings, wh: Warehouse) -> dict:
    """An event-driven run's ShipBob orders: those its order.shipped events carry (the order as
    GET /order/{id} answers it, signed by ShipBob): staged as a listing would stage them, no call."""
    carried = [e["payload"] for e in EventInbox(wh).claimed(settings.shop, settings.run_id, "shipbob")
               if e["topic"] in SHIPBOB_ORDER_TOPICS and e["wakes"]]
    # the newest copy of an order announced twice (two shipments) is the one staged
    orders, bad, _ = _stage(wh, settings, stg_shipbob_orders, "shipbob_orders", unique(reversed(carried), "id"),
                            staging.shipbob_order_row, _key("id"))
    return Step("extract_shipbob", {"orders": orders, "quarantined": bad}, {"mode": "carried by event"}).as_dict()


def extract_tiktok(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """Orders and cancellation requests changed since the shop's cursors. A full sweep also lists
    every actionable order and pending request, and re-reads orders staging holds as in play that no
    listing returned (they changed without the cursor seeing it); a sweep between full ones lists
    the changes since the last sweep."""
    if not settings.lists("tiktok_orders"):
        return _not_listed("extract_tiktok", since=in_play_since(settings, wh).isoformat())
    client = platforms.tiktok()
    listing = listing_for(settings, wh, "tiktok_orders")
    searches = [_tiktok_changes(listing)]
    if listing.full_sweep:
        searches += [*({"order_status": s} for s in TIKTOK_SHIPPABLE_STATUSES), {"is_buyer_request_cancel": True}]
    listed = (order for filters in searches for order in client.search_orders(filters, page_size=100))
    seen: set[str] = set()
    missed = _missed_by_cursor(wh, settings, stg_tiktok_orders, listing)
    orders, bad, found = _stage(wh, settings, stg_tiktok_orders, "tiktok_orders", unique(listed, "id"),
                                staging.tiktok_order_row, _key("id"), on_row=lambda row: seen.add(row["tiktok_order_id"]),
                                missed=missed)
    if listing.full_sweep:
        gone = sorted({r["tiktok_order_id"] for r in _in_play_tiktok(wh, settings, columns=("tiktok_order_id",))} - seen)
        if gone:
            more, more_bad, more_found = _stage(wh, settings, stg_tiktok_orders, "tiktok_orders", client.get_orders(gone),
                                                staging.tiktok_order_row, _key("id"), missed=missed)
            orders, bad, found = orders + more, bad + more_bad, found + more_found
    advance_cursor(wh, settings, listing, orders, found)

    cancel_listing = listing_for(settings, wh, "tiktok_cancellations")
    filters = [_tiktok_changes(cancel_listing)]
    if cancel_listing.full_sweep:
        filters.insert(0, {"cancel_status": ["CANCELLATION_REQUEST_PENDING"]})
    requests = (c for f in filters for c in client.search_cancellations(f, page_size=50))
    cancels, bad_cancels, found_cancels = _stage(
        wh, settings, stg_tiktok_cancellations, "tiktok_cancellations", unique(requests, "cancel_id"),
        staging.tiktok_cancellation_row, _key("cancel_id"),
        missed=_missed_by_cursor(wh, settings, stg_tiktok_cancellations, cancel_listing))
    advance_cursor(wh, settings, cancel_listing, cancels, found_cancels)
    since = in_play_since(settings, wh)
    return Step("extract_tiktok", {"orders": orders, "cancellations": cancels, "quarantined": bad + bad_cancels,
                                   "missed_by_cursor": found + found_cancels},
                {"since": since.isoformat(), "mode": "sweep" if listing.sweep else "incremental"}).as_dict()


def extract_shopify(settings: RunSettings, platforms: Platforms, wh: Warehouse, since: datetime) -> dict:
    """Orders updated since the cursor; a full sweep adds every order created since the oldest TikTok
    order in play, a sweep between full ones every order updated since the last sweep."""
    if not settings.lists("shopify_orders"):
        return _not_listed("extract_shopify")
    listing = listing_for(settings, wh, "shopify_orders")
    query = f"updated_at:>='{listing.changes_from:%Y-%m-%dT%H:%M:%SZ}'"
    if listing.full_sweep:
        query = f"created_at:>='{since:%Y-%m-%dT%H:%M:%SZ}' OR {query}"
    orders, bad, found = _stage(wh, settings, stg_shopify_orders, "shopify_orders", platforms.shopify().orders(query),
                                staging.shopify_order_row, _key("legacyResourceId"),
                                missed=_missed_by_cursor(wh, settings, stg_shopify_orders, listing))
    advance_cursor(wh, settings, listing, orders, found, since if listing.full_sweep else None)
    return Step("extract_shopify", {"orders": orders, "quarantined": bad, "missed_by_cursor": found}).as_dict()


def extract_amazon(settings: RunSettings, platforms: Platforms, wh: Warehouse, since: datetime) -> dict:
    """Bulk path: the order listing (status changed since the cursor; a full sweep: since the oldest
    order in play; a sweep between: since the last sweep) for status, the fulfilled-shipments report
    for tracking.

    Listed orders that may have shipped and are not already staged with their shipments, unchanged
    since, need tracking: more of them than the report costs in calls (REPORT_CALLS) and the report
    is asked for, with getFulfillmentOrder for shipped orders it does not carry yet; fewer (a quiet
    half hour, a night) and each is read one by one, as when Amazon cancels the report.
    """
    if not settings.lists("amazon_fulfillment_orders"):
        return _amazon_from_events(settings, platforms, wh) if settings.event_driven else _not_listed("extract_amazon")
    client = platforms.amazon_mcf()
    listing = listing_for(settings, wh, "amazon_fulfillment_orders")
    start = min(since, listing.changed_since) if listing.full_sweep else listing.changes_from
    listed = list(client.list_fulfillment_orders(start))

    def status(order: Any) -> str | None:
        return status_of(order, "fulfillmentOrderStatus", AMAZON_ORDER_STATUSES)

    shipping = [o for o in listed if isinstance(record_id(o, "sellerFulfillmentOrderId"), str)
                and status(o) in SHIPPING_STATUSES]
    # a sweep re-reads everything: it is what catches a row staged incomplete (a report that lagged)
    known = set() if listing.sweep else _shipped_as_staged(wh, settings, shipping, status)
    followed = set() if listing.sweep else _followed_while_processing(wh, settings, shipping, status)
    wanted = sum(1 for o in shipping if o["sellerFulfillmentOrderId"] not in known | followed)
    report, reused = shipments_report(settings, client, wh, start) if wanted > REPORT_CALLS else (None, False)
    report_state = ("reused" if reused else "read") if report is not None else (
        "cancelled" if wanted > REPORT_CALLS else "not needed")
    # without the report an order that may have shipped is read one by one
    read_each = ("Complete", "CompletePartialled") if report is not None else SHIPPING_STATUSES
    by_order: dict[str, list[dict]] = defaultdict(list)
    for line in report or ():
        by_order[line.get("merchant-order-id") or ""].append(line)
    details = []
    fallbacks = carried = 0
    for order in listed:
        sfo = record_id(order, "sellerFulfillmentOrderId")
        if sfo in known:
            carried += 1   # staged with its shipments, unchanged since: its row stands as it is
        elif isinstance(sfo, str) and not by_order.get(sfo) and status(order) in read_each and sfo not in followed:
            fallbacks += 1
            try:
                details.append(("detail", client.get_fulfillment_order(sfo)))
            except (NotFoundError, ValueError) as exc:   # listed, yet unknown by (or no valid) id: held
                reason = exc.platform_message if isinstance(exc, NotFoundError) else str(exc)
                details.append(("unreadable", {**order, "_error": reason}))
        else:
            details.append(("listing", order))

    def to_row(item):
        source, payload = item
        if source == "unreadable":
            raise staging.BadRecord(f"amazon fulfillment order {payload['sellerFulfillmentOrderId']!r}: listed, but "
                                    f"getFulfillmentOrder does not know it ({payload['_error']})")
        if source == "detail":
            return staging.amazon_order_row(payload)
        return staging.amazon_row_from_listing(payload, by_order.get(record_id(payload, "sellerFulfillmentOrderId"), []))

    table = stg_amazon_fulfillment_orders
    orders, bad, found = _stage(wh, settings, table, "amazon_fulfillment_orders", details, to_row,
                                lambda item: str((item[1].get("fulfillmentOrder") or item[1]).get("sellerFulfillmentOrderId"))
                                if isinstance(item[1], dict) else None,
                                missed=_missed_by_cursor(wh, settings, table, listing))
    advance_cursor(wh, settings, listing, orders, found, start if listing.full_sweep else None)
    return Step("extract_amazon", {"orders": orders, "report_rows": len(report or ()), "report": report_state,
                                   "detail_calls": fallbacks, "carried_forward": carried,
                                   "followed_by_notifications": len(followed), "quarantined": bad,
                                   "missed_by_cursor": found}).as_dict()


def _followed_while_processing(wh: Warehouse, settings: RunSettings, orders: list[dict], status: Callable) -> set[str]:
    """Of listed Processing orders, those staged with no shipment whose FULFILLMENT_ORDER_STATUS
    notifications reach the inbox, none left to act on: a package they ship is announced (and its
    run stages it), so the listing stands for them without reading their shipments. A lost
    announcement is caught when the order is listed Complete with no shipment staged, or by a sweep."""
    processing = {o["sellerFulfillmentOrderId"] for o in orders if status(o) == "Processing"}
    followed = EventInbox(wh).followed(settings.shop, "amazon_mcf", processing, settings.run_id)
    if not followed:
        return set()
    t = stg_amazon_fulfillment_orders.c
    with wh.engine.connect() as conn:
        shipped = {sfo for sfo, shipments in conn.execute(sa.select(t.seller_fulfillment_order_id, t.shipments).where(
            t.shop == settings.shop, t.seller_fulfillment_order_id.in_(sorted(followed)))) if shipments}
    return followed - shipped


def _shipped_as_staged(wh: Warehouse, settings: RunSettings, orders: list[dict], status: Callable) -> set[str]:
    """Of listed orders, the finished ones whose staged row already has their shipments and shows
    the same status since the same moment: read again, they would bring nothing new (the listing's
    statusUpdatedDate moves with any change). An order still Processing may ship more any minute."""
    listed = {}
    for order in orders:
        if status(order) not in FINISHED_STATUSES:
            continue
        try:
            listed[order["sellerFulfillmentOrderId"]] = (status(order), staging.iso_time(
                order, "statusUpdatedDate", "amazon fulfillment order", required=False))
        except staging.BadRecord:
            continue   # read as usual, so that staging names what is wrong
    if not listed:
        return set()
    t = stg_amazon_fulfillment_orders.c
    with wh.engine.connect() as conn:
        staged = conn.execute(sa.select(t.seller_fulfillment_order_id, t.status, t.status_updated_at, t.shipments)
                              .where(t.shop == settings.shop, t.seller_fulfillment_order_id.in_(list(listed)))).all()
    return {sfo for sfo, staged_status, updated, shipments in staged
            if updated is not None and listed[sfo] == (staged_status, as_utc(updated))
            and any(p.get("tracking_number") for s in shipments or [] for p in s.get("packages") or [])}


# Amazon statuses of orders that may have shipments: the report carries their tracking
SHIPPING_STATUSES = ("Complete", "CompletePartialled", "Processing")
# Amazon's last word on an order's shipments: staged with them, it is not read again until it changes
FINISHED_STATUSES = ("Complete", "CompletePartialled")
# How long a run may map carriers with the shipping providers an earlier run read
PROVIDERS_REUSE = timedelta(hours=6)
# What one shipments report costs in calls: create, about three status polls, document, download
REPORT_CALLS = 6


def shipments_report(settings: RunSettings, client, wh: Warehouse, since: datetime) -> tuple[list[dict] | None, bool]:
    """The fulfilled-shipments rows from the start of `since`'s day (at most a month back) to now,
    and whether they are the shop's stored copy: one requested under 30 minutes ago for a range
    that covers this one is read again instead of asking Amazon (who would not build it anew).
    None when Amazon cancelled it because another was asked for lately (nothing is stored); one
    cancelled for want of data is an empty report.
    Orders shipped before the range have no rows: the detail call covers them. Only the columns
    staging reads are kept (the report carries buyer names and addresses)."""
    now = now_for(settings)
    start = max(datetime.combine(since.astimezone(timezone.utc).date(), datetime.min.time(), tzinfo=timezone.utc),
                now - REPORT_MAX_RANGE)
    with wh.engine.connect() as conn:
        last = conn.execute(sa.select(amazon_shipment_reports).where(
            amazon_shipment_reports.c.shop == settings.shop)).first()
    if last is not None and as_utc(last.data_start) <= start and as_utc(last.data_end) >= now \
            and timedelta(0) <= now - as_utc(last.requested_at) < REPORT_REGENERATION:
        return last.report_rows, True
    report_id = client.request_fulfilled_shipments(start, now)
    lines = client.collect_fulfilled_shipments(report_id, expected_seconds=last.build_seconds if last else None)
    if lines is None:
        # cancelled: asked too soon after another (by anyone: read one by one) or nothing shipped in
        # the range (an empty report: reading every order that might have shipped would cost a call
        # per open order, which a sweep of a shop with thousands open cannot afford)
        # (strictly within the interval: runs 30 minutes apart each ask once, and are not too soon)
        if client.others_requested_since(report_id, now - REPORT_REGENERATION + timedelta(seconds=1)):
            log.warning("amazon_mcf: report %s was cancelled (another was asked for within %s); shipped orders "
                        "are read one by one", report_id, REPORT_REGENERATION)
            return None, False
        log.info("amazon_mcf: report %s was cancelled: nothing shipped from %s to %s", report_id, start, now)
        lines = []
    rows = [{k: line[k] for k in staging.REPORT_FIELDS if k in line} if isinstance(line, dict) else line
            for line in lines]
    wh.upsert(amazon_shipment_reports, [{"shop": settings.shop, "report_id": report_id, "data_start": start,
                                         "data_end": now, "requested_at": now, "report_rows": rows,
                                         "build_seconds": client.build_seconds if client.build_seconds is not None
                                         else last.build_seconds if last else None}])
    return rows, False


def extract_shipbob(settings: RunSettings, platforms: Platforms, wh: Warehouse, since: datetime) -> dict:
    """Orders updated since the cursor; a full sweep adds every order created since the oldest TikTok
    order in play, a sweep between full ones every order updated since the last sweep."""
    if not settings.lists("shipbob_orders"):
        return _shipbob_from_events(settings, wh) if settings.event_driven else _not_listed("extract_shipbob")
    client = platforms.shipbob()
    listing = listing_for(settings, wh, "shipbob_orders")
    listings = [client.orders(start_date=since)] if listing.full_sweep else []
    listings.append(client.orders(last_update_start=listing.changes_from))
    orders, bad, found = _stage(wh, settings, stg_shipbob_orders, "shipbob_orders",
                                unique((order for each in listings for order in each), "id"),
                                staging.shipbob_order_row, _key("id"),
                                missed=_missed_by_cursor(wh, settings, stg_shipbob_orders, listing))
    advance_cursor(wh, settings, listing, orders, found, since if listing.full_sweep else None)
    return Step("extract_shipbob", {"orders": orders, "quarantined": bad, "missed_by_cursor": found}).as_dict()


BATCH_TABLES = {
    "tiktok_orders": stg_tiktok_orders, "tiktok_cancellations": stg_tiktok_cancellations,
    "shopify_orders": stg_shopify_orders, "amazon_fulfillment_orders": stg_amazon_fulfillment_orders,
    "shipbob_orders": stg_shipbob_orders,
}


def _run_started(wh: Warehouse, settings: RunSettings) -> datetime | None:
    with wh.engine.connect() as conn:
        started = conn.execute(sa.select(runs.c.started_at).where(
            runs.c.shop == settings.shop, runs.c.run_id == settings.run_id)).scalar()
    return as_utc(started) if started is not None else None


def _staged_by_run(table: sa.Table, settings: RunSettings, started: datetime | None):
    """Rows this run staged. Staging keeps one row per order (upsert by natural key), so a run of the
    same shop going on at the same time (a backfill beside the scheduled run) may restage them and
    take them over: anything staged since this run started is at least as fresh as its own copy."""
    mine = table.c.snapshot_run_id == settings.run_id
    return sa.or_(mine, table.c.extracted_at >= started - CLOCK_SKEW) if started is not None else mine


def _read(wh: Warehouse, table: sa.Table, settings: RunSettings, where, raw_fields: tuple[str, ...] = (),
          columns: tuple[str, ...] | None = None) -> list[dict]:
    """Typed columns only (the raw payload stays in the warehouse: it is most of a row's size),
    plus `raw_fields` read out of it."""
    chosen = [table.c[n] for n in columns] if columns else [c for c in table.c if c.name != "raw"]
    chosen += [table.c.raw[name].as_string().label(name) for name in raw_fields]
    with wh.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(*chosen).where(table.c.shop == settings.shop, where))]


def staged_by_run(wh: Warehouse, table: sa.Table, settings: RunSettings) -> list[dict]:
    """The batch this run staged (what validation checks)."""
    return _read(wh, table, settings, _staged_by_run(table, settings, _run_started(wh, settings)))


def _in_play(settings: RunSettings, wh: Warehouse):
    """TikTok orders in play by their latest staged state: actionable, with a buyer's cancellation
    request, or staged by this run."""
    o = stg_tiktok_orders.c
    return sa.or_(o.status.in_(TIKTOK_SHIPPABLE_STATUSES), o.is_buyer_request_cancel.is_(True),
                  _staged_by_run(stg_tiktok_orders, settings, _run_started(wh, settings)))


def _in_play_tiktok(wh: Warehouse, settings: RunSettings, raw_fields: tuple[str, ...] = (),
                    columns: tuple[str, ...] | None = None) -> list[dict]:
    return _read(wh, stg_tiktok_orders, settings, _in_play(settings, wh), raw_fields, columns)


def in_play_since(settings: RunSettings, wh: Warehouse) -> datetime:
    """Where the other platforms' rows of the orders in play begin: a margin before the oldest one
    (a Shopify order is created after its TikTok order), at most MAX_LOOKBACK back."""
    o = stg_tiktok_orders.c
    with wh.engine.connect() as conn:
        oldest = conn.execute(sa.select(sa.func.min(o.create_time)).where(
            o.shop == settings.shop, _in_play(settings, wh))).scalar()
    start = settings.window_start - settings.overlap
    oldest = min(as_utc(oldest), start) if oldest is not None else start
    return max(oldest - LOOKBACK_MARGIN, now_for(settings) - MAX_LOOKBACK)


def fulfillers_listed_from(settings: RunSettings, wh: Warehouse, since: datetime) -> datetime:
    """The oldest order creation for which a missing fulfillment order is proven missing: every
    configured fulfiller's orders are known from its cursor's start on, and the state read for the
    orders in play begins at `since` (capped at MAX_LOOKBACK). A fulfiller never listed covers nothing."""
    sources = [FULFILLER_SOURCES[f] for f in settings.fulfillers]
    c = extraction_cursors.c
    with wh.engine.connect() as conn:
        starts = dict(conn.execute(sa.select(c.source, c.established_at).where(
            c.shop == settings.shop, c.source.in_(sources))).all())
    return max([since, *(as_utc(starts[s]) if starts.get(s) else now_for(settings) for s in sources)])


def latest_state(wh: Warehouse, tables: Iterable[sa.Table], settings: RunSettings, since: datetime) -> list[list[dict]]:
    """The latest staged state of the platforms' orders that can belong to orders in play: changed
    since `since`, or staged by this run."""
    started = _run_started(wh, settings)
    found = []
    for table in tables:
        changed = table.c[UPDATED[table.name]] >= since
        if table is stg_amazon_fulfillment_orders:
            changed = sa.or_(changed, table.c.received_at >= since)
        found.append(_read(wh, table, settings, sa.or_(changed, _staged_by_run(table, settings, started))))
    return found


def validate_batch(settings: RunSettings, wh: Warehouse, batch: str) -> dict:
    """Great Expectations on the batch this run staged; a failure blocks actions, not staging."""
    outcome = validate(batch, staged_by_run(wh, BATCH_TABLES[batch], settings), now_for(settings))
    wh.upsert(validation_results, [dict(shop=settings.shop, run_id=settings.run_id, platform=batch,
                                        success=outcome.success, rows=outcome.rows, failures=outcome.failures,
                                        checked_at=utcnow())])
    (log.info if outcome.success else log.error)("%s", outcome.describe())
    return {"batch": batch, "success": outcome.success, "rows": outcome.rows, "failures": len(outcome.failures)}


def carrier_maps(settings: RunSettings, platforms: Platforms, wh: Warehouse,
                 tiktok_rows: list[dict]) -> tuple[dict, CarrierMap]:
    """TikTok shipping providers per delivery option of the orders in play: one call per option,
    except where a run read them less than PROVIDERS_REUSE ago (a sweep reads them all anew)."""
    options = sorted({r["delivery_option_id"] for r in tiktok_rows
                      if r["status"] in TIKTOK_SHIPPABLE_STATUSES} - {None, ""})
    now = now_for(settings)
    t = tiktok_shipping_providers.c
    stored = {}
    if not settings.sweep:
        with wh.engine.connect() as conn:
            stored = {row.delivery_option_id: row.providers for row in conn.execute(sa.select(
                t.delivery_option_id, t.providers, t.fetched_at).where(
                    t.shop == settings.shop, t.delivery_option_id.in_(options)))
                if timedelta(0) <= now - as_utc(row.fetched_at) < PROVIDERS_REUSE}
    maps, every, fetched = {}, {}, []
    # mappings people added in the inbox, then the policy's own, which win where both name a carrier
    overrides = {**mapped_carriers(wh, settings.shop), **settings.policy.carrier_overrides}
    for option in options:
        providers = stored.get(option)
        if providers is None:
            try:
                providers = platforms.tiktok().shipping_providers(option)
                fetched.append({"shop": settings.shop, "delivery_option_id": option, "providers": providers,
                                "fetched_at": now})
            except BusinessError as exc:
                # TikTok does not know the option: no carrier maps for its orders (escalated, T2), no guess
                log.warning("delivery option %s: %s; its orders' carriers map to no provider", option,
                            exc.platform_message)
                providers = []
        maps[option] = CarrierMap(providers, overrides)
        every.update({p["id"]: p for p in providers})
    wh.upsert(tiktok_shipping_providers, fetched)
    return maps, CarrierMap(list(every.values()), overrides)


def blocked_by_validation(settings: RunSettings, wh: Warehouse) -> set[str]:
    with wh.engine.connect() as conn:
        failed = conn.execute(sa.select(validation_results.c.platform).where(
            validation_results.c.shop == settings.shop, validation_results.c.run_id == settings.run_id,
            validation_results.c.success.is_(False))).scalars().all()
    return {BATCH_PLATFORM[b] for b in failed}


def quarantined_links(settings: RunSettings, wh: Warehouse) -> dict[str, str]:
    """Join values of the records that could not be staged -> the batch they came from: this run's,
    and earlier runs' until a later listing staged the same record (an incremental run does not list
    an unchanged record again, so its quarantine carries forward). A record without an id counts
    in the run that read it only: nothing could tell when it was read again."""
    q = quarantine.c
    with wh.engine.connect() as conn:
        rows = conn.execute(sa.select(q.batch, q.record_key, q.raw, q.quarantined_at).where(
            q.shop == settings.shop, sa.or_(q.run_id == settings.run_id, sa.and_(
                q.record_key.is_not(None), q.quarantined_at >= utcnow() - MAX_LOOKBACK)))).all()
        staged: dict[tuple[str, str], datetime] = {}
        for batch in {r.batch for r in rows}:
            table = BATCH_TABLES[batch]
            key = natural_key(table)
            wanted = sorted({r.record_key for r in rows if r.batch == batch and r.record_key is not None})
            for i in range(0, len(wanted), 500):
                for k, at in conn.execute(sa.select(key, table.c.extracted_at).where(
                        table.c.shop == settings.shop, key.in_(wanted[i:i + 500]))):
                    staged[(batch, k)] = as_utc(at)
    links: dict[str, str] = {}
    for r in rows:
        restaged = staged.get((r.batch, r.record_key))
        if restaged is None or restaged <= as_utc(r.quarantined_at):
            links.update({key: r.batch for key in ((r.raw or {}).get(LINK_KEYS) or [])})
    return links


def order_link_keys(joiner: Joiner, joined, link) -> set[str]:
    """The values a record of any platform would need to carry to belong to this order."""
    keys = {link.tiktok_order_id, link.fulfillment_order_id, joined.cancellation and joined.cancellation.cancel_id}
    for shopify_id in link.shopify_order_ids:
        keys |= {shopify_id, joiner.shopify_rows[shopify_id]["name"]}
    return {staging.link_key(k) for k in keys if k}


def _depends_on(fulfiller: str | None, configured: tuple[str, ...]) -> set[str]:
    """Platforms whose data the decision rests on (absence of a fulfillment order rests on all)."""
    needed = {"tiktok", "shopify"}
    needed |= {fulfiller} if fulfiller else set(configured)
    return needed


def join_and_decide(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """Link, decide and record pending ledger rows; returns the plan of keys to act on."""
    now = now_for(settings)
    raw_fields = ("delivery_option_id", "shipping_type")
    tiktok_rows = _in_play_tiktok(wh, settings, raw_fields)
    since = in_play_since(settings, wh)
    ledger = Ledger(wh)
    sagas = saga_states(ledger.rows(settings.shop, kind=CANCEL_FULFILLMENT) + ledger.rows(settings.shop, kind=CANCEL_SHOPIFY))
    maps, default_map = carrier_maps(settings, platforms, wh, tiktok_rows)
    joiner = Joiner(*latest_state(wh, (stg_shopify_orders, stg_amazon_fulfillment_orders, stg_shipbob_orders,
                                       stg_tiktok_cancellations), settings, since),
                    maps, default_map, sagas, fulfillers_listed_from=fulfillers_listed_from(settings, wh, since))
    blocked = blocked_by_validation(settings, wh)
    unreadable = quarantined_links(settings, wh)

    def decided_for(row: dict) -> tuple[Link, Decision]:
        joined, link = joiner.join(row)
        decision = decide(joined, settings.policy, now)
        stale = _depends_on(link.fulfiller, settings.fulfillers) & blocked
        if stale and decision.actions:
            decision = Decision(decision.tiktok_order_id, "-",
                                f"blocked: validation failed for {', '.join(sorted(stale))} ({decision.rule}: {decision.reason})")
        elif decision.actions and unreadable:
            # a record that could not be staged may be this order's other Shopify order or its
            # fulfillment order: its absence proves nothing, so nothing is done until it reads
            suspect = sorted(order_link_keys(joiner, joined, link) & unreadable.keys())
            if suspect:
                decision = Decision(decision.tiktok_order_id, "-", f"blocked: a quarantined {unreadable[suspect[0]]} "
                                    f"record carries {suspect[0]} ({decision.rule}: {decision.reason})")
        return link, decision

    outcome = {row["tiktok_order_id"]: (row, *decided_for(row)) for row in tiktok_rows}
    for row, link, decision in _reread_before_acting(settings, platforms, wh, outcome, raw_fields):
        outcome[row["tiktok_order_id"]] = (row, link, decision) if link is not None else (row, *decided_for(row))
    links, decided, planned = [], [], []
    rules: Counter = Counter()
    for row, link, decision in outcome.values():
        rules[decision.rule] += 1
        links.append(dict(shop=settings.shop, run_id=settings.run_id, tiktok_order_id=link.tiktok_order_id,
                          shopify_order_ids=list(link.shopify_order_ids), match_rule=link.match_rule,
                          fulfiller=link.fulfiller, fulfillment_order_id=link.fulfillment_order_id,
                          link_problem=link.link_problem))
        decided.append(dict(shop=settings.shop, run_id=settings.run_id, tiktok_order_id=decision.tiktok_order_id,
                            rule=decision.rule, reason=decision.reason,
                            actions=[a.idempotency_key for a in decision.actions],
                            inputs={"tiktok": row["snapshot_run_id"], "match_rule": link.match_rule,
                                    "fulfiller": link.fulfiller, "fulfillment_order_id": link.fulfillment_order_id},
                            policy_version=settings.policy.version, decided_at=utcnow()))
        planned.append(decision)
    wh.upsert(order_links, links)
    wh.upsert(decisions, decided)
    plan = {"tracking": [], "notes": [], "rejections": [], "escalations": [], "cancellations": []}
    if not settings.dry_run:
        ctx = RunContext(shop=settings.shop, dag_id=settings.dag_id, run_id=settings.run_id)
        done = _done_keys(wh, settings.shop)
        for decision in planned:
            saga = []
            for action in decision.actions:
                ledger.record(ctx, action, rule=decision.rule, decision_run_id=settings.run_id,
                              tiktok_order_id=decision.tiktok_order_id)
                if action.idempotency_key in done:
                    continue
                if action.kind in SAGA_KINDS:
                    saga.append(action.idempotency_key)
                else:
                    plan[GROUPS[action.kind]].append(action.idempotency_key)
            if saga:
                plan["cancellations"].append({"tiktok_order_id": decision.tiktok_order_id, "keys": saga})
        settle_orphans(settings, platforms, wh, replace(ctx, task_id="join_and_decide", now=now),
                       {a.idempotency_key for d in planned for a in d.actions})
    with wh.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.shop == settings.shop, runs.c.run_id == settings.run_id)
                     .values(decided_at=now))
    chunks = {group: [keys[i:i + CHUNK] for i in range(0, len(keys), CHUNK)] for group, keys in plan.items()}
    log.info("decided %d orders: %s; blocked platforms: %s", len(planned), dict(sorted(rules.items())),
             ", ".join(sorted(blocked)) or "none")
    return {"orders": len(planned), "rules": dict(rules), "blocked": sorted(blocked), "chunks": chunks,
            "actions": {group: len(keys) for group, keys in plan.items()}}


def _reread_before_acting(settings: RunSettings, platforms: Platforms, wh: Warehouse,
                          outcome: dict[str, tuple[dict, Link, Decision]], raw_fields: tuple[str, ...]
                          ) -> list[tuple[dict, Link | None, Decision]]:
    """Orders the run would act on whose TikTok state an earlier run read: read again (50 per call)
    so no write rests on a stale copy. Returns (fresh row, None, None) to decide again, or, when
    the read failed, the order with its actions held back."""
    started = _run_started(wh, settings)
    done = _done_keys(wh, settings.shop)
    stale = [tid for tid, (row, _, decision) in outcome.items()
             if any(a.idempotency_key not in done for a in decision.actions)
             and row["snapshot_run_id"] != settings.run_id
             and not (started is not None and as_utc(row["extracted_at"]) >= started - CLOCK_SKEW)]
    if not stale:
        return []
    try:
        _stage(wh, settings, stg_tiktok_orders, "tiktok_orders", platforms.tiktok().get_orders(stale),
               staging.tiktok_order_row, _key("id"))
    except PlatformError as exc:
        log.warning("re-reading %d TikTok order(s) before acting failed: %s", len(stale), exc)
        return [(row, link, Decision(tid, "-", f"blocked: could not re-read the order before acting ({exc})"))
                for tid in stale for row, link, _ in [outcome[tid]]]
    fresh = _read(wh, stg_tiktok_orders, settings, stg_tiktok_orders.c.tiktok_order_id.in_(stale), raw_fields)
    log.info("re-read %d TikTok order(s) staged by earlier runs before acting on them", len(fresh))
    return [(row, None, None) for row in fresh]


def settle_orphans(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext,
                   planned: set[str]) -> list[dict]:
    """Actions an earlier attempt left in flight, and fulfiller-cancel checks left pending, that this run
    does not decide again: read what became of them (see `Executor.settle`). Those it decides again
    are reconciled when they are carried out."""
    ledger = Ledger(wh)
    open_rows = ledger.rows(settings.shop, state=IN_FLIGHT) + ledger.rows(
        settings.shop, kind=VERIFY_FULFILLMENT_CANCEL, state=PENDING)
    orphans = [r for r in open_rows if r["idempotency_key"] not in planned]
    if not orphans:
        return []
    executor = Executor(ledger, ctx, Handlers(platforms))
    return [_log_outcome(executor.settle(row)) for row in orphans]


def _done_keys(wh: Warehouse, shop: str) -> set[str]:
    t = action_ledger.c
    with wh.engine.connect() as conn:
        return set(conn.execute(sa.select(t.idempotency_key).where(t.shop == shop, t.state.in_(DONE_STATES))).scalars())


def _rows_by_key(wh: Warehouse, shop: str, keys: list[str]) -> dict[str, dict]:
    t = action_ledger
    with wh.engine.connect() as conn:
        return {r.idempotency_key: dict(r._mapping) for r in conn.execute(
            sa.select(t).where(t.c.shop == shop, t.c.idempotency_key.in_(keys)))}


def act(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext, keys: list[str]) -> list[dict]:
    """Carry out one chunk of independent actions (tracking, notes, rejections, escalations)."""
    executor = Executor(Ledger(wh), ctx, Handlers(platforms))
    rows = _rows_by_key(wh, settings.shop, keys)
    outcomes = [executor.run(rows[key]) for key in keys if key in rows]
    return [_log_outcome(o) for o in outcomes]


def _log_outcome(outcome: Outcome) -> dict:
    (log.info if outcome.state in (SUCCEEDED, "skipped") else log.warning)(
        "%-22s %-9s %s %s", outcome.kind, outcome.state, outcome.key, outcome.detail)
    return {"key": outcome.key, "kind": outcome.kind, "state": outcome.state, "detail": outcome.detail}


def cancel_at_fulfiller(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext,
                        sagas: list[dict]) -> list[dict]:
    """Saga step 1: ask the fulfiller to cancel (only where the decision said so)."""
    executor = Executor(Ledger(wh), ctx, Handlers(platforms))
    results = []
    for saga in sagas:
        rows = _rows_by_key(wh, settings.shop, saga["keys"])
        for key in saga["keys"]:
            if rows.get(key, {}).get("kind") == CANCEL_FULFILLMENT:
                results.append(_log_outcome(executor.run(rows[key])))
    return results


def verify_cancellations(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext,
                         sagas: list[dict]) -> dict:
    """Saga step 2: read each fulfiller cancel once. A saga whose cancel shows goes on to its refund
    in this run; one that does not yet waits for a later run (its decision asks again), so a slow
    fulfiller holds no other saga, action group or run. A cancel that does not show within the
    policy's timeout, on the run's clock from when it took effect, is given up: the verify row
    fails and the order is escalated (C4); it is never refunded or approved."""
    ledger = Ledger(wh)
    executor = Executor(ledger, ctx, Handlers(platforms))
    timeout = timedelta(minutes=settings.policy.cancel_verify_timeout_minutes)
    counts: Counter = Counter()
    for saga in sagas:
        rows = _rows_by_key(wh, settings.shop, saga["keys"])
        verify = next((r for r in rows.values() if r["kind"] == VERIFY_FULFILLMENT_CANCEL), None)
        if verify is None or verify["state"] in DONE_STATES or (verify["detail"] or "").startswith(GAVE_UP):
            continue
        cancel_key = verify["idempotency_key"].replace(VERIFY_FULFILLMENT_CANCEL, CANCEL_FULFILLMENT, 1)
        cancel = _rows_by_key(wh, settings.shop, [cancel_key]).get(cancel_key)
        if cancel is None or cancel["state"] != SUCCEEDED:
            continue  # the cancel request itself did not go through: nothing to verify yet
        outcome = executor.run(verify)
        if outcome.state == SUCCEEDED:
            counts["verified"] += 1
        elif ctx.now - as_utc(cancel["acted_at"] or cancel["updated_at"]) >= timeout:
            _give_up(ledger, ctx, verify, saga["tiktok_order_id"], settings)
            counts["given_up"] += 1
        else:
            ledger.wait(settings.shop, verify["idempotency_key"], f"waiting: {outcome.detail} "
                        f"(read at {ctx.now:%Y-%m-%dT%H:%M:%SZ}; a later run reads again)")
            counts["waiting"] += 1
    return Step("verify_fulfiller_cancel", dict(counts)).as_dict()


def _give_up(ledger: Ledger, ctx: RunContext, verify: dict, tiktok_order_id: str, settings: RunSettings) -> None:
    claim = ledger.claim(ctx, verify["idempotency_key"])
    detail = f"{GAVE_UP} not cancelled at the fulfiller within {settings.policy.cancel_verify_timeout_minutes:g} min"
    if claim is not None:
        ledger.finish(claim, FAILED, detail=detail)
    action = Action(ESCALATE, f"ledger:escalation/{tiktok_order_id}",
                    {"tiktok_order_id": tiktok_order_id, "reason_code": "fulfiller_cancel_not_verified", "detail": detail},
                    f"escalate:{tiktok_order_id}:fulfiller_cancel_not_verified")
    ledger.record(ctx, action, rule="C4", decision_run_id=settings.run_id, tiktok_order_id=tiktok_order_id)
    escalation = ledger.claim(ctx, action.idempotency_key)
    if escalation is not None:
        ledger.finish(escalation, SUCCEEDED, response={"escalated": "fulfiller_cancel_not_verified"}, detail=detail,
                      acted_at=ctx.now)
    log.warning("C4 %s: %s; escalated, not refunded, not approved", tiktok_order_id, detail)


def refund_and_approve(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext,
                       sagas: list[dict]) -> list[dict]:
    """Saga step 3: cancel the Shopify order (refund), then approve on TikTok, each only after
    the step before it succeeded (a verified fulfiller cancel, when there is one)."""
    executor = Executor(Ledger(wh), ctx, Handlers(platforms))
    results = []
    for saga in sagas:
        rows = _rows_by_key(wh, settings.shop, saga["keys"])
        ordered = [rows[k] for k in saga["keys"] if k in rows]
        ready = all(r["state"] == SUCCEEDED for r in ordered if r["kind"] in (CANCEL_FULFILLMENT, VERIFY_FULFILLMENT_CANCEL))
        for row in ordered:
            if row["kind"] not in (CANCEL_SHOPIFY, APPROVE_CANCELLATION):
                continue
            if not ready:
                results.append({"key": row["idempotency_key"], "kind": row["kind"], "state": "waiting",
                                "detail": "fulfiller cancel not verified"})
                break
            outcome = executor.run(row)
            results.append(_log_outcome(outcome))
            ready = outcome.state in DONE_STATES
    return results


def record_api_calls(wh: Warehouse, settings: RunSettings, task_id: str, map_index: int, platforms: Platforms) -> None:
    rows = [dict(shop=settings.shop, run_id=settings.run_id, task_id=task_id, map_index=map_index, **r)
            for r in platforms.stats_rows()]
    wh.upsert(api_calls, rows)


def summarize_run(settings: RunSettings, wh: Warehouse, started: float | None = None) -> dict:
    """The run's figures: orders per platform, actions by kind and outcome, escalations, validation,
    API calls and throttles per platform."""
    shop, run_id = settings.shop, settings.run_id
    summary: dict[str, Any] = {"shop": shop, "run_id": run_id, "dry_run": settings.dry_run,
                               "window": [settings.window_start.isoformat(), settings.window_end.isoformat()]}
    with wh.engine.connect() as conn:
        summary["orders_seen"] = {batch: conn.execute(sa.select(sa.func.count()).select_from(table).where(
            table.c.shop == shop, table.c.snapshot_run_id == run_id)).scalar() for batch, table in BATCH_TABLES.items()}
        summary["decisions"] = dict(conn.execute(sa.select(decisions.c.rule, sa.func.count()).where(
            decisions.c.shop == shop, decisions.c.run_id == run_id).group_by(decisions.c.rule)).all())
        t = action_ledger.c
        actions = conn.execute(sa.select(t.kind, t.state, sa.func.count()).where(
            t.shop == shop, t.run_id == run_id).group_by(t.kind, t.state)).all()
        summary["actions"] = {f"{kind}:{state}": n for kind, state, n in actions}
        summary["escalations"] = [dict(tiktok_order_id=r.tiktok_order_id, rule=r.rule, reason=r.request.get("detail"))
                                  for r in conn.execute(sa.select(t.tiktok_order_id, t.rule, t.request).where(
                                      t.shop == shop, t.run_id == run_id, t.kind == ESCALATE))]
        summary["validation_failures"] = conn.execute(sa.select(validation_results.c.platform).where(
            validation_results.c.shop == shop, validation_results.c.run_id == run_id,
            validation_results.c.success.is_(False))).scalars().all()
        summary["quarantined"] = conn.execute(sa.select(sa.func.count()).select_from(quarantine).where(
            quarantine.c.shop == shop, quarantine.c.run_id == run_id)).scalar()
        c = api_calls.c
        summary["api"] = {p: {"calls": int(calls or 0), "throttled": int(thr or 0), "retries": int(ret or 0)}
                          for p, calls, thr, ret in conn.execute(
                              sa.select(c.platform, sa.func.sum(c.calls), sa.func.sum(c.throttled), sa.func.sum(c.retries))
                              .where(c.shop == shop, c.run_id == run_id).group_by(c.platform))}
        started_at = conn.execute(sa.select(runs.c.started_at).where(runs.c.shop == shop, runs.c.run_id == run_id)).scalar()
        x = extraction_cursors.c
        mode = "sweep" if settings.sweep else "event" if settings.event_driven else "incremental"
        summary["extraction"] = {"mode": mode, "sweep_reason": settings.sweep,
                                 "full_sweep": bool(settings.sweep) and settings.full_sweep,
                                 "listed": list(settings.listed) if settings.listed is not None else None,
                                 "sources": {source: {"mode": mode, "listed": listed, "missed_by_cursor": findings}
                                             for source, mode, listed, findings in conn.execute(
                                                 sa.select(x.source, x.mode, x.listed, x.findings).where(
                                                     x.shop == shop, x.run_id == run_id))}}
        summary["missed_by_cursor"] = sum(v["missed_by_cursor"] for v in summary["extraction"]["sources"].values())
    finished = utcnow()
    if started_at is not None:
        started_at = started_at.replace(tzinfo=timezone.utc) if started_at.tzinfo is None else started_at
        summary["duration_seconds"] = round((finished - started_at).total_seconds(), 1)
    if not settings.dry_run:   # a person is told of orders about to breach; a dry run tells no one
        alerted = alert_at_risk(wh, wh.engine.url.render_as_string(hide_password=False), shop, settings.dag_id,
                                run_id, now_for(settings), settings.policy.at_risk_alert_hours)
        summary["at_risk_alerts"] = {f"{hours:g}h": orders for hours, orders in sorted(alerted.items(), reverse=True)}
    failed = any(k.endswith(":failed") or k.endswith(":in_flight") for k in summary["actions"])
    state = "attention" if failed or summary["validation_failures"] else "succeeded"
    with wh.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.shop == shop, runs.c.run_id == run_id)
                     .values(finished_at=finished, state=state, summary=summary))
    summary["state"] = state
    return summary


def summary_table(summary: dict) -> str:
    """The run summary as a readable table for the task log."""
    lines = [f"orderops run {summary['run_id']} (shop {summary['shop']}){' DRY RUN' if summary['dry_run'] else ''}: "
             f"{summary['state']}, {summary.get('duration_seconds', '?')} s"]
    lines.append(f"  {'orders seen':28s} " + ", ".join(f"{k}={v}" for k, v in summary["orders_seen"].items()))
    lines.append(f"  {'decisions by rule':28s} " + ", ".join(f"{k}={v}" for k, v in sorted(summary["decisions"].items())))
    for key, n in sorted(summary["actions"].items()):
        lines.append(f"  {'action ' + key:28s} {n}")
    for platform, figures in sorted(summary["api"].items()):
        lines.append(f"  {'api ' + platform:28s} calls={figures['calls']} throttled={figures['throttled']} "
                     f"retries={figures['retries']}")
    extraction = summary.get("extraction") or {}
    lines.append(f"  {'extraction':28s} {extraction.get('mode', '?')}"
                 + (f" ({extraction['sweep_reason']}), missed by cursor {summary['missed_by_cursor']}"
                    if extraction.get("sweep_reason") else ""))
    lines.append(f"  {'validation failures':28s} {', '.join(summary['validation_failures']) or 'none'}")
    lines.append(f"  {'quarantined records':28s} {summary['quarantined']}")
    for e in summary["escalations"]:
        lines.append(f"  escalated {e['tiktok_order_id']} [{e['rule']}] {e['reason']}")
    return "\n".join(lines)


def side_by_side(steps: list[Callable[[], Any]], workers: int) -> None:
    """Run the steps on up to `workers` threads (1: in order, in this thread); once all are done,
    the first error in step order is raised."""
    if workers <= 1 or len(steps) <= 1:
        for step in steps:
            step()
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(steps))) as pool:
        futures = [pool.submit(step) for step in steps]
    for future in futures:
        future.result()


def run_all(settings: RunSettings, platforms: Platforms, wh: Warehouse, *, lanes: int = 1,
            observe: Callable[[str], Any] | None = None) -> dict:
    """The run's steps (include/steps.py, the DAG's tasks) in one process: tests, benchmarks, simulation.

    lanes=1 runs them one after the other in the list's order. lanes > 1 runs side by side the
    steps that wait on nothing still running (the Shopify and fulfiller listings, the action groups
    and the sagas' first step), each with `lanes` chunks at a time (as a pool of that many slots
    would). `observe` is told "decided" once everything is read and decided (the simulation splits
    the API calls into extraction and actions there)."""
    ctx = RunContext(shop=settings.shop, dag_id=settings.dag_id, run_id=settings.run_id, task_id="run_all",
                     now=now_for(settings))
    results: dict[str, Any] = {}

    def prepare(_: None) -> RunSettings:
        nonlocal settings   # the steps after it use the settings it decided (whether the run sweeps)
        platforms.check()
        settings = prepare_run(settings, wh)
        return settings

    def since() -> datetime:
        return datetime.fromisoformat(results["extract_tiktok"]["since"])

    def summarize(_: None) -> dict:
        record_api_calls(wh, settings, "run_all", -1, platforms)
        return summarize_run(settings, wh)

    runners: dict[str, Callable[[Any], Any]] = {
        "prepare_run": prepare,
        "extract_tiktok": lambda _: extract_tiktok(settings, platforms, wh),
        "extract_shopify": lambda _: extract_shopify(settings, platforms, wh, since()),
        "extract_amazon": lambda _: extract_amazon(settings, platforms, wh, since()),
        "extract_shipbob": lambda _: extract_shipbob(settings, platforms, wh, since()),
        "validate_staged": lambda batch: validate_batch(settings, wh, batch),
        "join_and_decide": lambda _: join_and_decide(settings, platforms, wh),
        **{name: (lambda keys: act(settings, platforms, wh, ctx, keys)) for name in steps.ACTS},
        "cancel_at_fulfiller": lambda chunk: cancel_at_fulfiller(settings, platforms, wh, ctx, chunk),
        "verify_fulfiller_cancel": lambda chunk: verify_cancellations(settings, platforms, wh, ctx, chunk),
        "refund_and_approve": lambda chunk: refund_and_approve(settings, platforms, wh, ctx, chunk),
        "summarize_run": summarize,
    }

    def run_step(step: steps.Step) -> None:
        if step.each is None:
            results[step.name] = runners[step.name](None)
            return
        items = steps.BATCHES if step.each == "batch" else results["join_and_decide"]["chunks"][step.each]
        out: list[Any] = [None] * len(items)

        def one(i: int) -> None:
            out[i] = runners[step.name](items[i])
        side_by_side([partial(one, i) for i in range(len(items))], lanes)
        results[step.name] = out

    for wave in steps.waves():
        wave = [s for s in wave if s.fulfiller is None or s.fulfiller in settings.fulfillers]
        side_by_side([partial(run_step, s) for s in wave], len(wave) if lanes > 1 else 1)
        if observe is not None and any(s.name == "join_and_decide" for s in wave):
            observe("decided")
    return results["summarize_run"]
