"""Amazon MCF's extraction step: the fulfillment-order listing, tracking from the fulfilled-shipments
report (read by id where the report cannot tell), and the orders Amazon's notifications named."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from include.decide.enums import AMAZON_ORDER_STATUSES, status_of
from include.decide.model import (
    as_utc,
)
from include.events.platform_events import EventInbox, amazon_reads, contradicted
from include.extract import staging
from include.extract.cursors import advance_cursor, listing_for, missed_by_cursor
from include.extract.listings import StepResult, not_listed
from include.run.platforms import Platforms
from include.run.runconfig import RunSettings, now_for
from include.store.run_store import RunStore
from include.store.warehouse import (
    Warehouse,
    amazon_shipment_reports,
    stg_amazon_fulfillment_orders,
)
from orderops_provider.base import NotFoundError, record_id

log = logging.getLogger(__name__)


# Amazon's fulfilled-shipments report: at most one month of data, built at most every 30 minutes.
REPORT_MAX_RANGE = timedelta(days=30)


REPORT_REGENERATION = timedelta(minutes=30)


def unknown_by_id(payload: dict, how: str) -> staging.BadRecord:
    """An order Amazon named (`how`: announced, listed) that getFulfillmentOrder does not know."""
    return staging.BadRecord(
        f"amazon fulfillment order {payload['sellerFulfillmentOrderId']!r}: {how}, "
        f"but getFulfillmentOrder does not know it ({payload['_error']})"
    )


def _amazon_from_events(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """An event-driven run's Amazon orders: each its waking notifications name (they are few: see
    events.sources_of), read by id (getFulfillmentOrder); the cursor stays for the next listing. A
    notification wakes the run; Amazon's own current answer decides: a notification the read
    contradicts (events.contradicted: tracking the order does not show, or the newest one's status
    not the order's) is marked so, counted in the run summary and logged, never staged."""
    inbox = EventInbox(wh)
    claimed = [{**e, "platform": "amazon_mcf"} for e in inbox.claimed(settings.shop, settings.run_id, "amazon_mcf")]
    refs = amazon_reads(claimed)
    if not refs:
        return not_listed("extract_amazon")
    read: dict[str, tuple[str | None, frozenset[str]] | None] = {}  # each order as Amazon answers

    def reads():
        for sfo in refs:
            read[sfo] = None
            try:
                detail = platforms.amazon_mcf().get_fulfillment_order(sfo)
            except NotFoundError as exc:  # announced, yet unknown by id: held, named
                yield ("unreadable", {"sellerFulfillmentOrderId": sfo, "_error": exc.platform_message})
                continue
            try:
                row = staging.amazon_order_row(detail)
            except staging.BadRecord:  # quarantined by the staging below, which names why; compared with nothing
                del read[sfo]
            else:
                read[sfo] = (row["status"], _tracking_of(row["shipments"]))
            yield ("detail", detail)

    def to_row(item):
        source, payload = item
        if source == "unreadable":
            raise unknown_by_id(payload, "announced")
        return staging.amazon_order_row(payload)

    def key_of(item) -> str | None:
        payload = item[1]
        return str((payload.get("fulfillmentOrder") or payload).get("sellerFulfillmentOrderId"))

    orders, bad, _ = RunStore(wh, settings).stage(
        stg_amazon_fulfillment_orders, "amazon_fulfillment_orders", reads(), to_row, key_of
    )
    bodies: dict[str, list[tuple[str, str | None, frozenset[str]]]] = defaultdict(list)
    for e in claimed:  # oldest first
        if e["wakes"] and e["order_ref"] in read:
            bodies[e["order_ref"]].append((e["event_id"], *_notified_as(e["payload"])))
    wrong = [event_id for sfo, said in bodies.items() for event_id in contradicted(said, read[sfo])]
    disagreed = inbox.contradict(settings.shop, settings.run_id, "amazon_mcf", wrong)
    if disagreed:
        log.warning(
            "%d Amazon notification(s) disagree with Amazon's own answer: staged what Amazon answers", disagreed
        )
    return StepResult(
        "extract_amazon",
        {"orders": orders, "detail_calls": len(refs), "quarantined": bad, "disagreed": disagreed},
        {"mode": "read by event"},
    ).as_dict()


def _tracking_of(shipments: list[dict]) -> frozenset[str]:
    return frozenset(p["tracking_number"] for s in shipments for p in s["packages"] if p.get("tracking_number"))


def _notified_as(notification: Any) -> tuple[str | None, frozenset[str]]:
    """What a FULFILLMENT_ORDER_STATUS notification says of its order: the status, the tracking numbers."""

    def part(doc: Any, key: str) -> Any:
        return doc.get(key) if isinstance(doc, dict) else None

    body = part(part(notification, "Payload"), "FulfillmentOrderStatusNotification")
    packages = part(part(body, "FulfillmentShipment"), "FulfillmentShipmentPackages")
    listed = packages if isinstance(packages, list) else []
    numbers = {str(part(p, "TrackingNumber")) for p in listed if part(p, "TrackingNumber")}
    status = part(body, "FulfillmentOrderStatus")
    return (status if isinstance(status, str) else None, frozenset(numbers))


def extract_amazon(settings: RunSettings, platforms: Platforms, wh: Warehouse, since: datetime) -> dict:
    """Bulk path: the order listing (status changed since the cursor; a full sweep: since the oldest
    order in play; a sweep between: since the last sweep) for status, the fulfilled-shipments report
    for tracking.

    Listed orders that may have shipped and are not already staged with their shipments, unchanged
    since, need tracking: more of them than the report costs in calls (REPORT_CALLS) and the report
    is asked for, with getFulfillmentOrder for shipped orders it does not carry yet; fewer (a quiet
    half hour, a night) and each is read one by one, as when Amazon cancels the report.
    """
    if not settings.extraction.lists("amazon_fulfillment_orders"):
        return _amazon_from_events(settings, platforms, wh) if settings.event_driven else not_listed("extract_amazon")
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
    early, planned = (
        _early_tracking_plan(wh, settings, listed, status, now_for(settings))
        if settings.policy.post_aftn
        else (set(), {})
    )
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
    read_early = 0

    def read_by_id(sfo: str, order: dict) -> None:
        try:
            details.append(("detail", client.get_fulfillment_order(sfo)))
        except (NotFoundError, ValueError) as exc:  # listed, yet unknown by (or no valid) id: held
            reason = exc.platform_message if isinstance(exc, NotFoundError) else str(exc)
            details.append(("unreadable", {**order, "_error": reason}))

    for order in listed:
        sfo = record_id(order, "sellerFulfillmentOrderId")
        if sfo in early:
            read_early += 1
            read_by_id(sfo, order)
        elif sfo in known:
            carried += 1  # staged with its shipments, unchanged since: its row stands as it is
        elif isinstance(sfo, str) and not by_order.get(sfo) and status(order) in read_each and sfo not in followed:
            fallbacks += 1
            read_by_id(sfo, order)
        else:
            details.append(("listing", order))
    listed_ids = {record_id(o, "sellerFulfillmentOrderId") for o in listed}
    for sfo in sorted(early - listed_ids):  # staged earlier, unchanged since: its AFTN may have come
        read_early += 1
        read_by_id(sfo, {"sellerFulfillmentOrderId": sfo})

    def to_row(item):
        source, payload = item
        if source == "unreadable":
            raise unknown_by_id(payload, "listed")
        if source == "detail":
            return staging.amazon_order_row(payload)
        row = staging.amazon_row_from_listing(
            payload, by_order.get(str(record_id(payload, "sellerFulfillmentOrderId")), [])
        )
        # the listing carries no packages: the package Amazon planned, with its early number, stays
        if not row["shipments"] and row["seller_fulfillment_order_id"] in planned:
            row["shipments"] = planned[row["seller_fulfillment_order_id"]]
        return row

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
            "early_tracking_reads": read_early,
            "carried_forward": carried,
            "followed_by_notifications": len(followed),
            "quarantined": bad,
            "missed_by_cursor": found,
        },
    ).as_dict()


# Amazon issues its early tracking number (AFTN) within minutes of the order: an order still without
# one this long after Amazon received it gets none (several items, outside the US) and is not read for it
AFTN_WAIT = timedelta(hours=1)
# before the carrier's tracking exists
EARLY_STATUSES = ("New", "Received", "Planning", "Processing")


def _early_tracking_plan(
    wh: Warehouse, settings: RunSettings, listed: list[dict], status: Callable, now: datetime
) -> tuple[set[str], dict[str, list[dict]]]:
    """(the orders to read by id for Amazon's early tracking number, the staged shipments carrying
    one that a listing row would lose). The listing carries no packages, so an order Amazon received
    within AFTN_WAIT and not yet shipped is read by id each run until its number comes, unless a read
    showed it is not an order Amazon gives one (an order first seen later, after a stop, waits for
    the carrier's number)."""
    fresh = now - AFTN_WAIT
    listed_early: dict[str, datetime | None] = {}  # order -> when Amazon received it
    for order in listed:
        sfo = record_id(order, "sellerFulfillmentOrderId")
        if not (isinstance(order, dict) and isinstance(sfo, str) and status(order) in EARLY_STATUSES):
            continue
        try:
            received = staging.iso_time(order, "receivedDate", "amazon fulfillment order", required=False)
        except staging.BadRecord:
            continue  # staged from the listing as usual, so that staging names what is wrong
        listed_early[sfo] = received
    t = stg_amazon_fulfillment_orders.c
    columns = (t.seller_fulfillment_order_id, t.status, t.received_at, t.shipments, t.raw)
    staged: dict[str, Any] = {}
    with wh.engine.connect() as conn:
        ids = sorted(listed_early)
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                sa.select(*columns).where(
                    t.shop == settings.shop, t.seller_fulfillment_order_id.in_(ids[start : start + 500])
                )
            ):
                staged[row.seller_fulfillment_order_id] = row
        for row in conn.execute(sa.select(*columns).where(t.shop == settings.shop, t.received_at >= fresh)):
            staged.setdefault(row.seller_fulfillment_order_id, row)
    reads, planned = set(), {}
    for sfo in set(listed_early) | set(staged):
        known = staged.get(sfo)
        if known is not None and any(p.get("aftn") for s in known.shipments or [] for p in s.get("packages") or []):
            if sfo in listed_early:
                planned[sfo] = known.shipments
            continue
        received = as_utc(known.received_at) if known is not None else listed_early.get(sfo)
        recent = received is not None and received >= fresh
        if recent and (known is None or (known.status in EARLY_STATUSES and _may_get_aftn(known.raw))):
            reads.add(sfo)  # Amazon's minutes may not have passed at the last read
    return reads, planned
    return reads, planned


def _may_get_aftn(raw: Any) -> bool:
    """Amazon issues early tracking numbers for US, single-item orders: a detail read that shows
    several items or another country settles it (a listing row, without items, does not)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("fulfillmentOrderItems"), list):
        return True
    items = sum(i.get("quantity") or 0 for i in raw["fulfillmentOrderItems"] if isinstance(i, dict))
    country = ((raw.get("fulfillmentOrder") or {}).get("destinationAddress") or {}).get("countryCode")
    return items <= 1 and country in (None, "US")


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
