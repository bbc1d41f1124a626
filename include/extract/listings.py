"""Each platform's extraction step but Amazon's: TikTok orders and cancellation requests, Shopify
orders, ShipBob orders, listed since their cursors (a sweep: everything in play) and staged; and
what the steps share (their result, the not-listed answer of an event-driven run)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from include.decide.enums import TIKTOK_SHIPPABLE_STATUSES
from include.events.platform_events import SHIPBOB_ORDER_TOPICS, EventInbox, contradicted
from include.extract import staging
from include.extract.cursors import Listing, advance_cursor, listing_for, missed_by_cursor
from include.run.platforms import Platforms
from include.run.runconfig import RunSettings, now_for
from include.store.run_store import RunStore
from include.store.warehouse import (
    Warehouse,
    stg_shipbob_orders,
    stg_shopify_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
)
from orderops_provider.base import record_id

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    """What one step did, for the task log, XCom and the run summary."""

    name: str
    counts: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"step": self.name, **self.counts, **self.detail}


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


def key_of(field_name: str) -> Callable[[Any], str | None]:
    return lambda record: (
        str(record.get(field_name)) if isinstance(record, dict) and record.get(field_name) is not None else None
    )


def _tiktok_changes(listing: Listing) -> dict:
    # the last second included: TikTok's times are whole seconds, and a change stamped with the
    # listing's own moment would otherwise wait for the next run's overlap
    until = listing.changed_until or listing.started + timedelta(seconds=1)
    return {"update_time_ge": int(listing.changes_from.timestamp()), "update_time_lt": int(until.timestamp())}


def not_listed(step: str, **detail: Any) -> dict:
    """An event-driven run's listing of a platform no event came from: its cursor stays where it is."""
    return StepResult(step, {"orders": 0}, {**detail, "mode": "not listed (no event)"}).as_dict()


def _shipbob_from_events(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """An event-driven run's ShipBob orders: those its order.shipped events announce, read from
    ShipBob by id (one call per 250 orders). An event wakes the run; ShipBob's own current answer
    decides: a delivery is authentic, not necessarily current or complete (resent, reordered, or
    sent before its tracking). A body the read contradicts (events.contradicted) is marked so,
    counted in the run summary and logged, never staged."""
    inbox = EventInbox(wh)
    bodies: dict[str, list[dict]] = defaultdict(list)  # each announced order's bodies, oldest first
    for e in inbox.claimed(settings.shop, settings.run_id, "shipbob"):
        if e["topic"] in SHIPBOB_ORDER_TOPICS and e["wakes"]:
            bodies[str(e["payload"].get("id"))].append(e)
    ids = sorted(int(i) for i in bodies if i.isdigit())
    read = list(platforms.shipbob().orders(ids=ids)) if ids else []
    answers = {str(order.get("id")): _shipped_as(order) for order in read if isinstance(order, dict)}
    wrong = [
        event_id
        for ref, events in bodies.items()
        for event_id in contradicted([(e["event_id"], *_shipped_as(e["payload"])) for e in events], answers.get(ref))
    ]
    disagreed = inbox.contradict(settings.shop, settings.run_id, "shipbob", wrong)
    if disagreed:
        log.warning(
            "%d ShipBob event body(ies) disagree with ShipBob's own answer: staged what ShipBob answers", disagreed
        )
    orders, bad, _ = RunStore(wh, settings).stage(
        stg_shipbob_orders, "shipbob_orders", read, staging.shipbob_order_row, key_of("id")
    )
    return StepResult(
        "extract_shipbob", {"orders": orders, "quarantined": bad, "disagreed": disagreed}, {"mode": "read by event"}
    ).as_dict()


def _shipped_as(order: Any) -> tuple[str | None, frozenset[str]]:
    """What an order says of its shipping: its status and the tracking numbers of its shipments."""
    if not isinstance(order, dict):
        return (None, frozenset())
    listed = order.get("shipments")
    shipments: list[Any] = listed if isinstance(listed, list) else []
    trackings = [s.get("tracking") for s in shipments if isinstance(s, dict)]
    numbers = {str(t["tracking_number"]) for t in trackings if isinstance(t, dict) and t.get("tracking_number")}
    return (order.get("status"), frozenset(numbers))


def extract_tiktok(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """Orders and cancellation requests changed since the shop's cursors. A full sweep also lists
    every actionable order and pending request, and re-reads orders staging holds as in play that no
    listing returned (they changed without the cursor seeing it); a sweep between full ones lists
    the changes since the last sweep."""
    if not settings.extraction.lists("tiktok_orders"):
        return not_listed("extract_tiktok", since=RunStore(wh, settings).in_play_since(now_for(settings)).isoformat())
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
        key_of("id"),
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
                key_of("id"),
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
        key_of("cancel_id"),
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
    if not settings.extraction.lists("shopify_orders"):
        return not_listed("extract_shopify")
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
        key_of("legacyResourceId"),
        missed=missed_by_cursor(wh, settings, stg_shopify_orders, listing),
    )
    advance_cursor(wh, settings, listing, orders, found, since if listing.full_sweep else None)
    return StepResult("extract_shopify", {"orders": orders, "quarantined": bad, "missed_by_cursor": found}).as_dict()


def extract_shipbob(settings: RunSettings, platforms: Platforms, wh: Warehouse, since: datetime) -> dict:
    """Orders updated since the cursor; a full sweep adds every order created since the oldest TikTok
    order in play, a sweep between full ones every order updated since the last sweep."""
    if not settings.extraction.lists("shipbob_orders"):
        return _shipbob_from_events(settings, platforms, wh) if settings.event_driven else not_listed("extract_shipbob")
    client = platforms.shipbob()
    listing = listing_for(settings, wh, "shipbob_orders")
    listings = [client.orders(start_date=since)] if listing.full_sweep else []
    listings.append(client.orders(last_update_start=listing.changes_from))
    orders, bad, found = RunStore(wh, settings).stage(
        stg_shipbob_orders,
        "shipbob_orders",
        unique((order for each in listings for order in each), "id"),
        staging.shipbob_order_row,
        key_of("id"),
        missed=missed_by_cursor(wh, settings, stg_shipbob_orders, listing),
    )
    advance_cursor(wh, settings, listing, orders, found, since if listing.full_sweep else None)
    return StepResult("extract_shipbob", {"orders": orders, "quarantined": bad, "missed_by_cursor": found}).as_dict()
