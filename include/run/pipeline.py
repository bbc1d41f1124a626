"""The order SLA pipeline, step by step: what each task of `dags/orderops_sla.py` calls.

extract (per platform) -> stage -> validate -> join -> decide -> act (ledger) -> verify -> summarize.
Every step takes the run's `RunSettings`, a `Platforms` (clients for one shop) and the
warehouse, so the whole flow also runs without Airflow in tests and benchmarks.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import sqlalchemy as sa

from include.act import saga
from include.act.actions import Executor, Handlers, log_outcome
from include.act.ledger import IN_FLIGHT, PENDING, Ledger, RunContext
from include.decide.carriers import CarrierMap
from include.decide.enums import AMAZON_ORDER_STATUSES, TIKTOK_SHIPPABLE_STATUSES, status_of
from include.decide.join import Joiner, Link
from include.decide.model import (
    ADD_NOTE,
    ESCALATE,
    POST_TRACKING,
    REJECT_CANCELLATION,
    VERIFY_FULFILLMENT_CANCEL,
    Decision,
    as_utc,
)
from include.decide.rules import decide, needs_reject_reasons
from include.events.platform_events import SHIPBOB_ORDER_TOPICS, EventInbox, amazon_reads, sources_of
from include.extract import staging
from include.extract.cursors import Listing, advance_cursor, full_sweep_due, listing_for, missed_by_cursor, sweep_reason
from include.quality.checkpoints import run_name, validate_batches
from include.report.at_risk import alert_at_risk
from include.report.inbox import mapped_carriers
from include.run import steps
from include.run.platforms import Platforms
from include.run.runconfig import RunSettings, now_for
from include.store.run_store import BATCH_TABLES, CLOCK_SKEW, RunStore
from include.store.warehouse import (
    Warehouse,
    amazon_shipment_reports,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_shopify_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
    tiktok_shipping_providers,
    utcnow,
)
from orderops_provider.base import BusinessError, NotFoundError, PlatformError, record_id

log = logging.getLogger(__name__)
CHUNK = 50
# Amazon's fulfilled-shipments report: at most one month of data, built at most every 30 minutes.
REPORT_MAX_RANGE = timedelta(days=30)
REPORT_REGENERATION = timedelta(minutes=30)
# the action group (steps.GROUPS) each kind outside the saga is carried out in
GROUP_OF_KIND = {
    POST_TRACKING: "tracking",
    ADD_NOTE: "notes",
    REJECT_CANCELLATION: "rejections",
    ESCALATE: "escalations",
}


@dataclass
class StepResult:
    """What one step did, for the task log, XCom and the run summary."""

    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"step": self.name, **self.counts, **self.detail}


def prepare_run(settings: RunSettings, wh: Warehouse) -> RunSettings:
    """Create or upgrade the schema, open the run's record and decide whether it sweeps; returns the
    settings every later step of the run uses."""
    revision = wh.migrate()
    # the platform events waiting now are this run's: a scheduled run lists everything they could
    # say anyway; an event-driven one lists the platforms they came from, and never sweeps
    claimed = EventInbox(wh).claim(settings.shop, settings.run_id)
    if settings.event_driven:
        settings = replace(settings, listed=sources_of(claimed))
        log.info(
            "event-driven run: %d event(s) (%d waking) -> lists %s",
            len(claimed),
            sum(1 for e in claimed if e["wakes"]),
            ", ".join(settings.listed or ()) or "nothing",
        )
    else:
        reason = sweep_reason(settings, wh)
        settings = replace(settings, sweep=reason, full_sweep=reason is not None and full_sweep_due(settings, wh))
    RunStore(wh, settings).start()
    log.info(
        "run %s shop %s window %s .. %s (overlap %s), policy %s%s, schema %s, %s",
        settings.run_id,
        settings.shop,
        settings.window_start,
        settings.window_end,
        settings.overlap,
        settings.policy.version,
        " DRY RUN" if settings.dry_run else "",
        revision,
        f"{'full ' if settings.full_sweep else ''}sweep ({settings.sweep})"
        if settings.sweep
        else "incremental extraction",
    )
    return settings


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
    return lambda record: (
        str(record.get(field_name)) if isinstance(record, dict) and record.get(field_name) is not None else None
    )


def _tiktok_changes(listing: Listing) -> dict:
    # the last second included: TikTok's times are whole seconds, and a change stamped with the
    # listing's own moment would otherwise wait for the next run's overlap
    until = listing.changed_until or listing.started + timedelta(seconds=1)
    return {"update_time_ge": int(listing.changes_from.timestamp()), "update_time_lt": int(until.timestamp())}


def _not_listed(step: str, **detail: Any) -> dict:
    """An event-driven run's listing of a platform no event came from: its cursor stays where it is."""
    return StepResult(step, {"orders": 0}, {**detail, "mode": "not listed (no event)"}).as_dict()


def _amazon_from_events(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """An event-driven run's Amazon orders: each its notifications name (they are few: see
    events.sources_of), from the notification when it says all there is to say (a Complete order
    shipped in one package, already staged), else read by id; the cursor stays for the next listing."""
    claimed = [
        {**e, "platform": "amazon_mcf"} for e in EventInbox(wh).claimed(settings.shop, settings.run_id, "amazon_mcf")
    ]
    refs = amazon_reads(claimed)
    if not refs:
        return _not_listed("extract_amazon")
    t = stg_amazon_fulfillment_orders.c
    staged = {
        r["seller_fulfillment_order_id"]: r
        for r in RunStore(wh, settings).read(
            stg_amazon_fulfillment_orders,
            t.seller_fulfillment_order_id.in_(refs),
            columns=("seller_fulfillment_order_id", "displayable_order_id", "received_at", "shipments"),
        )
    }
    said: dict[str, list[dict]] = defaultdict(list)  # each order's waking notifications, as they happened
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
                row = None  # read by id instead: that read names what is wrong, if anything
            if row is not None:
                carried[sfo] = row
                break
    reads = [sfo for sfo in refs if sfo not in carried]

    def read():
        yield from (("carried", row) for row in carried.values())
        for sfo in reads:
            try:
                yield ("detail", platforms.amazon_mcf().get_fulfillment_order(sfo))
            except NotFoundError as exc:  # announced, yet unknown by id: held, named
                yield ("unreadable", {"sellerFulfillmentOrderId": sfo, "_error": exc.platform_message})

    def to_row(item):
        source, payload = item
        if source == "unreadable":
            raise staging.BadRecord(
                f"amazon fulfillment order {payload['sellerFulfillmentOrderId']!r}: announced, "
                f"but getFulfillmentOrder does not know it ({payload['_error']})"
            )
        return dict(payload) if source == "carried" else staging.amazon_order_row(payload)

    def key_of(item) -> str | None:
        source, payload = item
        if source == "carried":
            return payload["seller_fulfillment_order_id"]
        return str((payload.get("fulfillmentOrder") or payload).get("sellerFulfillmentOrderId"))

    orders, bad, _ = RunStore(wh, settings).stage(
        stg_amazon_fulfillment_orders, "amazon_fulfillment_orders", read(), to_row, key_of
    )
    return StepResult(
        "extract_amazon",
        {"orders": orders, "carried_by_event": len(carried), "detail_calls": len(reads), "quarantined": bad},
        {"mode": "read by event"},
    ).as_dict()


def _shipbob_from_events(settings: RunSettings, wh: Warehouse) -> dict:
    """An event-driven run's ShipBob orders: those its order.shipped events carry (the order as
    GET /order/{id} answers it, signed by ShipBob): staged as a listing would stage them, no call."""
    carried = [
        e["payload"]
        for e in EventInbox(wh).claimed(settings.shop, settings.run_id, "shipbob")
        if e["topic"] in SHIPBOB_ORDER_TOPICS and e["wakes"]
    ]
    # the newest copy of an order announced twice (two shipments) is the one staged
    orders, bad, _ = RunStore(wh, settings).stage(
        stg_shipbob_orders, "shipbob_orders", unique(reversed(carried), "id"), staging.shipbob_order_row, _key("id")
    )
    return StepResult("extract_shipbob", {"orders": orders, "quarantined": bad}, {"mode": "carried by event"}).as_dict()


def extract_tiktok(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """Orders and cancellation requests changed since the shop's cursors. A full sweep also lists
    every actionable order and pending request, and re-reads orders staging holds as in play that no
    listing returned (they changed without the cursor seeing it); a sweep between full ones lists
    the changes since the last sweep."""
    if not settings.lists("tiktok_orders"):
        return _not_listed("extract_tiktok", since=RunStore(wh, settings).in_play_since(now_for(settings)).isoformat())
    client = platforms.tiktok()
    listing = listing_for(settings, wh, "tiktok_orders")
    searches = [_tiktok_changes(listing)]
    if listing.full_sweep:
        searches += [*({"order_status": s} for s in TIKTOK_SHIPPABLE_STATUSES), {"is_buyer_request_cancel": True}]
    listed = (order for filters in searches for order in client.search_orders(filters, page_size=100))
    seen: set[str] = set()
    missed = missed_by_cursor(wh, settings, stg_tiktok_orders, listing)
    orders, bad, found = RunStore(wh, settings).stage(
        stg_tiktok_orders,
        "tiktok_orders",
        unique(listed, "id"),
        staging.tiktok_order_row,
        _key("id"),
        on_row=lambda row: seen.add(row["tiktok_order_id"]),
        missed=missed,
    )
    if listing.full_sweep:
        in_play = RunStore(wh, settings).in_play_tiktok(columns=("tiktok_order_id",))
        gone = sorted({r["tiktok_order_id"] for r in in_play} - seen)
        if gone:
            more, more_bad, more_found = RunStore(wh, settings).stage(
                stg_tiktok_orders,
                "tiktok_orders",
                client.get_orders(gone),
                staging.tiktok_order_row,
                _key("id"),
                missed=missed,
            )
            orders, bad, found = orders + more, bad + more_bad, found + more_found
    advance_cursor(wh, settings, listing, orders, found)

    cancel_listing = listing_for(settings, wh, "tiktok_cancellations")
    filters = [_tiktok_changes(cancel_listing)]
    if cancel_listing.full_sweep:
        filters.insert(0, {"cancel_status": ["CANCELLATION_REQUEST_PENDING"]})
    requests = (c for f in filters for c in client.search_cancellations(f, page_size=50))
    cancels, bad_cancels, found_cancels = RunStore(wh, settings).stage(
        stg_tiktok_cancellations,
        "tiktok_cancellations",
        unique(requests, "cancel_id"),
        staging.tiktok_cancellation_row,
        _key("cancel_id"),
        missed=missed_by_cursor(wh, settings, stg_tiktok_cancellations, cancel_listing),
    )
    advance_cursor(wh, settings, cancel_listing, cancels, found_cancels)
    since = RunStore(wh, settings).in_play_since(now_for(settings))
    return StepResult(
        "extract_tiktok",
        {
            "orders": orders,
            "cancellations": cancels,
            "quarantined": bad + bad_cancels,
            "missed_by_cursor": found + found_cancels,
        },
        {"since": since.isoformat(), "mode": "sweep" if listing.sweep else "incremental"},
    ).as_dict()


def extract_shopify(settings: RunSettings, platforms: Platforms, wh: Warehouse, since: datetime) -> dict:
    """Orders updated since the cursor; a full sweep adds every order created since the oldest TikTok
    order in play, a sweep between full ones every order updated since the last sweep."""
    if not settings.lists("shopify_orders"):
        return _not_listed("extract_shopify")
    listing = listing_for(settings, wh, "shopify_orders")
    query = f"updated_at:>='{listing.changes_from:%Y-%m-%dT%H:%M:%SZ}'"
    if listing.full_sweep:
        query = f"created_at:>='{since:%Y-%m-%dT%H:%M:%SZ}' OR {query}"
    client = platforms.shopify()
    orders, bad, found = RunStore(wh, settings).stage(
        stg_shopify_orders,
        "shopify_orders",
        client.orders(query),
        partial(staging.shopify_order_row, rules=client.tiktok_order_id),
        _key("legacyResourceId"),
        missed=missed_by_cursor(wh, settings, stg_shopify_orders, listing),
    )
    advance_cursor(wh, settings, listing, orders, found, since if listing.full_sweep else None)
    return StepResult("extract_shopify", {"orders": orders, "quarantined": bad, "missed_by_cursor": found}).as_dict()


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

    shipping = [
        o
        for o in listed
        if isinstance(record_id(o, "sellerFulfillmentOrderId"), str) and status(o) in SHIPPING_STATUSES
    ]
    # a sweep re-reads everything: it is what catches a row staged incomplete (a report that lagged)
    known = set() if listing.sweep else _shipped_as_staged(wh, settings, shipping, status)
    followed = set() if listing.sweep else _followed_while_processing(wh, settings, shipping, status)
    wanted = sum(1 for o in shipping if o["sellerFulfillmentOrderId"] not in known | followed)
    report, reused = shipments_report(settings, client, wh, start) if wanted > REPORT_CALLS else (None, False)
    report_state = (
        ("reused" if reused else "read")
        if report is not None
        else ("cancelled" if wanted > REPORT_CALLS else "not needed")
    )
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
            carried += 1  # staged with its shipments, unchanged since: its row stands as it is
        elif isinstance(sfo, str) and not by_order.get(sfo) and status(order) in read_each and sfo not in followed:
            fallbacks += 1
            try:
                details.append(("detail", client.get_fulfillment_order(sfo)))
            except (NotFoundError, ValueError) as exc:  # listed, yet unknown by (or no valid) id: held
                reason = exc.platform_message if isinstance(exc, NotFoundError) else str(exc)
                details.append(("unreadable", {**order, "_error": reason}))
        else:
            details.append(("listing", order))

    def to_row(item):
        source, payload = item
        if source == "unreadable":
            raise staging.BadRecord(
                f"amazon fulfillment order {payload['sellerFulfillmentOrderId']!r}: listed, but "
                f"getFulfillmentOrder does not know it ({payload['_error']})"
            )
        if source == "detail":
            return staging.amazon_order_row(payload)
        return staging.amazon_row_from_listing(
            payload, by_order.get(str(record_id(payload, "sellerFulfillmentOrderId")), [])
        )

    table = stg_amazon_fulfillment_orders
    orders, bad, found = RunStore(wh, settings).stage(
        table,
        "amazon_fulfillment_orders",
        details,
        to_row,
        lambda item: (
            str((item[1].get("fulfillmentOrder") or item[1]).get("sellerFulfillmentOrderId"))
            if isinstance(item[1], dict)
            else None
        ),
        missed=missed_by_cursor(wh, settings, table, listing),
    )
    advance_cursor(wh, settings, listing, orders, found, start if listing.full_sweep else None)
    return StepResult(
        "extract_amazon",
        {
            "orders": orders,
            "report_rows": len(report or ()),
            "report": report_state,
            "detail_calls": fallbacks,
            "carried_forward": carried,
            "followed_by_notifications": len(followed),
            "quarantined": bad,
            "missed_by_cursor": found,
        },
    ).as_dict()


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
        shipped = {
            sfo
            for sfo, shipments in conn.execute(
                sa.select(t.seller_fulfillment_order_id, t.shipments).where(
                    t.shop == settings.shop, t.seller_fulfillment_order_id.in_(sorted(followed))
                )
            )
            if shipments
        }
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
            listed[order["sellerFulfillmentOrderId"]] = (
                status(order),
                staging.iso_time(order, "statusUpdatedDate", "amazon fulfillment order", required=False),
            )
        except staging.BadRecord:
            continue  # read as usual, so that staging names what is wrong
    if not listed:
        return set()
    t = stg_amazon_fulfillment_orders.c
    with wh.engine.connect() as conn:
        staged = conn.execute(
            sa.select(t.seller_fulfillment_order_id, t.status, t.status_updated_at, t.shipments).where(
                t.shop == settings.shop, t.seller_fulfillment_order_id.in_(list(listed))
            )
        ).all()
    return {
        sfo
        for sfo, staged_status, updated, shipments in staged
        if updated is not None
        and listed[sfo] == (staged_status, as_utc(updated))
        and any(p.get("tracking_number") for s in shipments or [] for p in s.get("packages") or [])
    }


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
    start = max(
        datetime.combine(since.astimezone(timezone.utc).date(), datetime.min.time(), tzinfo=timezone.utc),
        now - REPORT_MAX_RANGE,
    )
    with wh.engine.connect() as conn:
        last = conn.execute(
            sa.select(amazon_shipment_reports).where(amazon_shipment_reports.c.shop == settings.shop)
        ).first()
    if (
        last is not None
        and as_utc(last.data_start) <= start
        and as_utc(last.data_end) >= now
        and timedelta(0) <= now - as_utc(last.requested_at) < REPORT_REGENERATION
    ):
        return last.report_rows, True
    report_id = client.request_fulfilled_shipments(start, now)
    lines = client.collect_fulfilled_shipments(report_id, expected_seconds=last.build_seconds if last else None)
    if lines is None:
        # cancelled: asked too soon after another (by anyone: read one by one) or nothing shipped in
        # the range (an empty report: reading every order that might have shipped would cost a call
        # per open order, which a sweep of a shop with thousands open cannot afford)
        # (strictly within the interval: runs 30 minutes apart each ask once, and are not too soon)
        if client.others_requested_since(report_id, now - REPORT_REGENERATION + timedelta(seconds=1)):
            log.warning(
                "amazon_mcf: report %s was cancelled (another was asked for within %s); shipped orders "
                "are read one by one",
                report_id,
                REPORT_REGENERATION,
            )
            return None, False
        log.info("amazon_mcf: report %s was cancelled: nothing shipped from %s to %s", report_id, start, now)
        lines = []
    rows = [
        {k: line[k] for k in staging.REPORT_FIELDS if k in line} if isinstance(line, dict) else line for line in lines
    ]
    wh.upsert(
        amazon_shipment_reports,
        [
            {
                "shop": settings.shop,
                "report_id": report_id,
                "data_start": start,
                "data_end": now,
                "requested_at": now,
                "report_rows": rows,
                "build_seconds": client.build_seconds
                if client.build_seconds is not None
                else last.build_seconds
                if last
                else None,
            }
        ],
    )
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
    orders, bad, found = RunStore(wh, settings).stage(
        stg_shipbob_orders,
        "shipbob_orders",
        unique((order for each in listings for order in each), "id"),
        staging.shipbob_order_row,
        _key("id"),
        missed=missed_by_cursor(wh, settings, stg_shipbob_orders, listing),
    )
    advance_cursor(wh, settings, listing, orders, found, since if listing.full_sweep else None)
    return StepResult("extract_shipbob", {"orders": orders, "quarantined": bad, "missed_by_cursor": found}).as_dict()


def validate_staged(settings: RunSettings, wh: Warehouse) -> list[dict]:
    """Every batch's Great Expectations checkpoint on what this run staged (results and Data Docs
    named by shop and run); a failure blocks actions, not staging."""
    store, now = RunStore(wh, settings), now_for(settings)
    outcomes = validate_batches(
        {batch: store.staged_by_run(BATCH_TABLES[batch]) for batch in steps.BATCHES},
        now,
        run=run_name(settings.shop, settings.run_id),
    )
    done = []
    for batch, outcome in outcomes.items():
        store.record_validation(batch, outcome, now)
        (log.info if outcome.success else log.error)("%s", outcome.describe())
        done.append(
            {"batch": batch, "success": outcome.success, "rows": outcome.rows, "failures": len(outcome.failures)}
        )
    return done


def carrier_maps(
    settings: RunSettings, platforms: Platforms, wh: Warehouse, tiktok_rows: list[dict]
) -> tuple[dict, CarrierMap]:
    """TikTok shipping providers per delivery option of the orders in play: one call per option,
    except where a run read them less than PROVIDERS_REUSE ago (a sweep reads them all anew)."""
    options = sorted(
        {r["delivery_option_id"] for r in tiktok_rows if r["status"] in TIKTOK_SHIPPABLE_STATUSES} - {None, ""}
    )
    now = now_for(settings)
    t = tiktok_shipping_providers.c
    stored = {}
    if not settings.sweep:
        with wh.engine.connect() as conn:
            stored = {
                row.delivery_option_id: row.providers
                for row in conn.execute(
                    sa.select(t.delivery_option_id, t.providers, t.fetched_at).where(
                        t.shop == settings.shop, t.delivery_option_id.in_(options)
                    )
                )
                if timedelta(0) <= now - as_utc(row.fetched_at) < PROVIDERS_REUSE
            }
    maps, every, fetched = {}, {}, []
    # mappings people added in the inbox, then the policy's own, which win where both name a carrier
    overrides = {**mapped_carriers(wh, settings.shop), **settings.policy.carrier_overrides}
    for option in options:
        providers = stored.get(option)
        if providers is None:
            try:
                providers = platforms.tiktok().shipping_providers(option)
                fetched.append(
                    {"shop": settings.shop, "delivery_option_id": option, "providers": providers, "fetched_at": now}
                )
            except BusinessError as exc:
                # TikTok does not know the option: no carrier maps for its orders (escalated, T2), no guess
                log.warning(
                    "delivery option %s: %s; its orders' carriers map to no provider", option, exc.platform_message
                )
                providers = []
        maps[option] = CarrierMap(providers, overrides)
        every.update({p["id"]: p for p in providers})
    wh.upsert(tiktok_shipping_providers, fetched)
    return maps, CarrierMap(list(every.values()), overrides)


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
    store = RunStore(wh, settings)
    tiktok_rows = store.in_play_tiktok(raw_fields)
    since = store.in_play_since(now)
    ledger = Ledger(wh)
    sagas = saga.states(ledger, settings.shop)
    maps, default_map = carrier_maps(settings, platforms, wh, tiktok_rows)
    shopify, amazon, shipbob, cancellations = store.latest_state(
        (stg_shopify_orders, stg_amazon_fulfillment_orders, stg_shipbob_orders, stg_tiktok_cancellations), since
    )
    joiner = Joiner(
        shopify,
        amazon,
        shipbob,
        cancellations,
        maps,
        default_map,
        sagas,
        fulfillers_listed_from=store.fulfillers_listed_from(since, now),
    )
    blocked = store.blocked_by_validation()
    unreadable = store.quarantined_links()
    reasons = RejectReasons(platforms, ledger.done_keys(settings.shop))

    def decided_for(row: dict) -> tuple[Link, Decision]:
        joined, link = joiner.join(row)
        decision = reasons.decide(joined, settings.policy, now)
        stale = _depends_on(link.fulfiller, settings.fulfillers) & blocked
        if stale and decision.actions:
            decision = Decision(
                decision.tiktok_order_id,
                "-",
                f"blocked: validation failed for {', '.join(sorted(stale))} ({decision.rule}: {decision.reason})",
            )
        elif decision.actions and unreadable:
            # a record that could not be staged may be this order's other Shopify order or its
            # fulfillment order: its absence proves nothing, so nothing is done until it reads
            suspect = sorted(order_link_keys(joiner, joined, link) & unreadable.keys())
            if suspect:
                decision = Decision(
                    decision.tiktok_order_id,
                    "-",
                    f"blocked: a quarantined {unreadable[suspect[0]]} "
                    f"record carries {suspect[0]} ({decision.rule}: {decision.reason})",
                )
        return link, decision

    outcome = {row["tiktok_order_id"]: (row, *decided_for(row)) for row in tiktok_rows}
    for row, held in _reread_before_acting(settings, platforms, wh, outcome, raw_fields):
        outcome[row["tiktok_order_id"]] = (row, *(held or decided_for(row)))
    links, decided, planned = [], [], []
    rules: Counter = Counter()
    matched: Counter = Counter()  # join coverage: which rule found each order's Shopify order
    for row, link, decision in outcome.values():
        rules[decision.rule] += 1
        matched[link.match_rule or "no match"] += 1
        links.append(
            dict(
                shop=settings.shop,
                run_id=settings.run_id,
                tiktok_order_id=link.tiktok_order_id,
                shopify_order_ids=list(link.shopify_order_ids),
                match_rule=link.match_rule,
                fulfiller=link.fulfiller,
                fulfillment_order_id=link.fulfillment_order_id,
                link_problem=link.link_problem,
            )
        )
        decided.append(
            dict(
                shop=settings.shop,
                run_id=settings.run_id,
                tiktok_order_id=decision.tiktok_order_id,
                rule=decision.rule,
                reason=decision.reason,
                actions=[a.idempotency_key for a in decision.actions],
                inputs={
                    "tiktok": row["snapshot_run_id"],
                    "match_rule": link.match_rule,
                    "fulfiller": link.fulfiller,
                    "fulfillment_order_id": link.fulfillment_order_id,
                    **unmapped_carriers(decision),
                },
                policy_version=settings.policy.version,
                decided_at=utcnow(),
            )
        )
        planned.append(decision)
    store.record_decisions(links, decided)
    plan: dict[str, list[Any]] = {group: [] for group in steps.GROUPS}
    if not settings.dry_run:
        ctx = RunContext(shop=settings.shop, dag_id=settings.dag_id, run_id=settings.run_id)
        done = Ledger(wh).done_keys(settings.shop)
        for decision in planned:
            saga_keys = []
            for action in decision.actions:
                ledger.record(
                    ctx,
                    action,
                    rule=decision.rule,
                    decision_run_id=settings.run_id,
                    tiktok_order_id=decision.tiktok_order_id,
                )
                if action.idempotency_key in done:
                    continue
                if action.kind in saga.KINDS:
                    saga_keys.append(action.idempotency_key)
                else:
                    plan[GROUP_OF_KIND[action.kind]].append(action.idempotency_key)
            if saga_keys:
                plan["cancellations"].append({"tiktok_order_id": decision.tiktok_order_id, "keys": saga_keys})
        settle_orphans(
            settings,
            platforms,
            wh,
            replace(ctx, task_id="join_and_decide", now=now),
            {a.idempotency_key for d in planned for a in d.actions},
        )
    store.decided(now)
    chunks = {group: [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)] for group, keys in plan.items()}
    log.info(
        "decided %d orders: %s; blocked platforms: %s",
        len(planned),
        dict(sorted(rules.items())),
        ", ".join(sorted(blocked)) or "none",
    )
    log.info("shopify orders found by: %s", dict(sorted(matched.items())))
    # each action group's chunks at the top: the DAG maps each group's task over its key
    return {
        "orders": len(planned),
        "rules": dict(rules),
        "blocked": sorted(blocked),
        **chunks,
        "actions": {group: len(keys) for group, keys in plan.items()},
    }


def unmapped_carriers(decision: Decision) -> dict:
    """The carriers a decision escalated as mapping to no TikTok provider (T2), as its escalation
    names them, for the decision's record (a dry run leaves no ledger row to read them from)."""
    carriers = sorted({c for a in decision.actions if a.kind == ESCALATE for c in a.params.get("carriers", ())})
    return {"unmapped_carriers": carriers} if carriers else {}


class RejectReasons:
    """Decides with the reject reasons TikTok offers for each request a decision would reject: read
    once per request and run (one call; only for requests not yet rejected)."""

    def __init__(self, platforms: Platforms, done: set[str]):
        self.platforms = platforms
        self.done = done
        self.offered: dict[str, tuple[tuple[str, str], ...] | PlatformError] = {}

    def decide(self, joined, policy, now: datetime) -> Decision:
        decision = decide(joined, policy, now)
        reject = needs_reject_reasons(decision)
        if reject is None or reject.idempotency_key in self.done:
            return decision
        cancel_id = reject.params["cancel_id"]
        if cancel_id not in self.offered:
            try:
                self.offered[cancel_id] = tuple(self.platforms.tiktok().reject_reasons(cancel_id))
            except PlatformError as exc:
                self.offered[cancel_id] = exc
        offered = self.offered[cancel_id]
        if isinstance(offered, PlatformError):
            # the rejection waits for a later run; the order's tracking or note does not
            return Decision(
                decision.tiktok_order_id,
                decision.rule,
                f"{decision.reason}; the rejection waits: could not read TikTok's reject reasons ({offered})",
                tuple(a for a in decision.actions if a is not reject),
            )
        return decide(replace(joined, reject_reasons=offered), policy, now)


def _reread_before_acting(
    settings: RunSettings,
    platforms: Platforms,
    wh: Warehouse,
    outcome: dict[str, tuple[dict, Link, Decision]],
    raw_fields: tuple[str, ...],
) -> list[tuple[dict, tuple[Link, Decision] | None]]:
    """Orders the run would act on whose TikTok state an earlier run read: read again (50 per call)
    so no write rests on a stale copy. Returns (fresh row, None) to decide again, or, when
    the read failed, (row, (link, a decision holding its actions back))."""
    store = RunStore(wh, settings)
    started = store.started()
    done = Ledger(wh).done_keys(settings.shop)
    stale = [
        tid
        for tid, (row, _, decision) in outcome.items()
        if any(a.idempotency_key not in done for a in decision.actions)
        and row["snapshot_run_id"] != settings.run_id
        and not (started is not None and as_utc(row["extracted_at"]) >= started - CLOCK_SKEW)
    ]
    if not stale:
        return []
    try:
        RunStore(wh, settings).stage(
            stg_tiktok_orders,
            "tiktok_orders",
            platforms.tiktok().get_orders(stale),
            staging.tiktok_order_row,
            _key("id"),
        )
    except PlatformError as exc:
        log.warning("re-reading %d TikTok order(s) before acting failed: %s", len(stale), exc)
        return [
            (row, (link, Decision(tid, "-", f"blocked: could not re-read the order before acting ({exc})")))
            for tid in stale
            for row, link, _ in [outcome[tid]]
        ]
    fresh = store.read(stg_tiktok_orders, stg_tiktok_orders.c.tiktok_order_id.in_(stale), raw_fields)
    log.info("re-read %d TikTok order(s) staged by earlier runs before acting on them", len(fresh))
    return [(row, None) for row in fresh]


def settle_orphans(
    settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext, planned: set[str]
) -> list[dict]:
    """Actions an earlier attempt left in flight, and fulfiller-cancel checks left pending, that this run
    does not decide again: read what became of them (see `Executor.settle`). Those it decides again
    are reconciled when they are carried out."""
    ledger = Ledger(wh)
    open_rows = ledger.rows(settings.shop, state=IN_FLIGHT) + ledger.rows(
        settings.shop, kind=VERIFY_FULFILLMENT_CANCEL, state=PENDING
    )
    orphans = [r for r in open_rows if r["idempotency_key"] not in planned]
    if not orphans:
        return []
    executor = Executor(ledger, ctx, Handlers(platforms))
    return [log_outcome(executor.settle(row)) for row in orphans]


def act(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext, keys: list[str]) -> list[dict]:
    """Carry out one chunk of independent actions (tracking, notes, rejections, escalations)."""
    ledger = Ledger(wh)
    executor = Executor(ledger, ctx, Handlers(platforms))
    rows = ledger.rows_by_key(settings.shop, keys)
    return [log_outcome(executor.run(rows[key])) for key in keys if key in rows]


def record_api_calls(wh: Warehouse, settings: RunSettings, task_id: str, map_index: int, platforms: Platforms) -> None:
    RunStore(wh, settings).record_api_calls(task_id, map_index, platforms.stats_rows())


def summarize_run(settings: RunSettings, wh: Warehouse, started: float | None = None) -> dict:
    """The run's figures: orders per platform, actions by kind and outcome, escalations, validation,
    API calls and throttles per platform; then the at-risk alerts and the run's final state."""
    store = RunStore(wh, settings)
    figures = store.figures()
    mode = "sweep" if settings.sweep else "event" if settings.event_driven else "incremental"
    summary: dict[str, Any] = {
        "shop": settings.shop,
        "run_id": settings.run_id,
        "dry_run": settings.dry_run,
        "window": [settings.window_start.isoformat(), settings.window_end.isoformat()],
        **{
            key: figures[key]
            for key in (
                "orders_seen",
                "decisions",
                "actions",
                "escalations",
                "validation_failures",
                "quarantined",
                "api",
            )
        },
        "extraction": {
            "mode": mode,
            "sweep_reason": settings.sweep,
            "full_sweep": bool(settings.sweep) and settings.full_sweep,
            "listed": list(settings.listed) if settings.listed is not None else None,
            "sources": figures["sources"],
        },
        "missed_by_cursor": sum(v["missed_by_cursor"] for v in figures["sources"].values()),
    }
    finished = utcnow()
    if figures["started_at"] is not None:
        summary["duration_seconds"] = round((finished - figures["started_at"]).total_seconds(), 1)
    if not settings.dry_run:  # a person is told of orders about to breach; a dry run tells no one
        alerted = alert_at_risk(
            wh,
            wh.engine.url.render_as_string(hide_password=False),
            settings.shop,
            settings.dag_id,
            settings.run_id,
            now_for(settings),
            settings.policy.at_risk_alert_hours,
        )
        summary["at_risk_alerts"] = {f"{hours:g}h": orders for hours, orders in sorted(alerted.items(), reverse=True)}
    failed = any(k.endswith(":failed") or k.endswith(":in_flight") for k in summary["actions"])
    state = "attention" if failed or summary["validation_failures"] else "succeeded"
    store.finish(summary, state, finished)
    summary["state"] = state
    return summary


def summary_table(summary: dict) -> str:
    """The run summary as a readable table for the task log."""
    lines = [
        f"orderops run {summary['run_id']} (shop {summary['shop']}){' DRY RUN' if summary['dry_run'] else ''}: "
        f"{summary['state']}, {summary.get('duration_seconds', '?')} s"
    ]
    lines.append(f"  {'orders seen':28s} " + ", ".join(f"{k}={v}" for k, v in summary["orders_seen"].items()))
    lines.append(
        f"  {'decisions by rule':28s} " + ", ".join(f"{k}={v}" for k, v in sorted(summary["decisions"].items()))
    )
    for key, n in sorted(summary["actions"].items()):
        lines.append(f"  {'action ' + key:28s} {n}")
    for platform, figures in sorted(summary["api"].items()):
        lines.append(
            f"  {'api ' + platform:28s} calls={figures['calls']} throttled={figures['throttled']} "
            f"retries={figures['retries']}"
        )
    extraction = summary.get("extraction") or {}
    lines.append(
        f"  {'extraction':28s} {extraction.get('mode', '?')}"
        + (
            f" ({extraction['sweep_reason']}), missed by cursor {summary['missed_by_cursor']}"
            if extraction.get("sweep_reason")
            else ""
        )
    )
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


def run_all(
    settings: RunSettings,
    platforms: Platforms,
    wh: Warehouse,
    *,
    lanes: int = 1,
    observe: Callable[[str], Any] | None = None,
) -> dict:
    """The run's steps (include/run/steps.py, the DAG's tasks) in one process: tests, benchmarks, simulation.

    lanes=1 runs them one after the other in the list's order. lanes > 1 runs side by side the
    steps that wait on nothing still running (the Shopify and fulfiller listings, the action groups
    and the sagas' first step), each with `lanes` chunks at a time (as a pool of that many slots
    would). `observe` is told "decided" once everything is read and decided (the simulation splits
    the API calls into extraction and actions there)."""
    ctx = RunContext(
        shop=settings.shop, dag_id=settings.dag_id, run_id=settings.run_id, task_id="run_all", now=now_for(settings)
    )
    results: dict[str, Any] = {}

    def run_step(step: steps.Step) -> None:
        nonlocal settings
        if step.name == "prepare_run":
            platforms.check()
        if step.name == "summarize_run":
            record_api_calls(wh, settings, "run_all", -1, platforms)
        values = {
            "settings": settings,
            "platforms": platforms,
            "wh": wh,
            "ctx": ctx,
            "since": steps.since_of(results["extract_tiktok"]) if "since" in step.args else None,
        }
        if step.each is None:
            results[step.name] = step.function(*steps.arguments(step, values))
            if step.name == "prepare_run":  # the steps after it use the settings it decided
                settings = results[step.name]
            return
        items = results["join_and_decide"][step.each]
        out: list[Any] = [None] * len(items)

        def one(i: int) -> None:
            out[i] = step.function(*steps.arguments(step, {**values, "chunk": items[i]}))

        side_by_side([partial(one, i) for i in range(len(items))], lanes)
        results[step.name] = out

    for wave in steps.waves():
        wave = [s for s in wave if s.fulfiller is None or s.fulfiller in settings.fulfillers]
        side_by_side([partial(run_step, s) for s in wave], len(wave) if lanes > 1 else 1)
        if observe is not None and any(s.name == "join_and_decide" for s in wave):
            observe("decided")
    return results["summarize_run"]
