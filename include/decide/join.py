"""Join staged rows: TikTok order -> Shopify order -> fulfillment order -> shipments.

Each link records the rule that made it. A TikTok id found on several Shopify orders, or a
Shopify order with fulfillment orders at more than one place, is kept with a reason and never
acted on; so is a missing link.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include.decide.carriers import CarrierMap
from include.decide.enums import SHIPPING_TYPES, status_of
from include.decide.model import (
    Cancellation,
    Fulfillment,
    FulfillmentState,
    JoinedOrder,
    LinkProblem,
    Package,
    SagaState,
    as_utc,
)
from orderops_provider.tiktok_order_id import PLACES, place_of

DEFAULT_LOOKUP_ORDER = PLACES
AMAZON_STATES = {
    "New": FulfillmentState.NOT_STARTED,
    "Received": FulfillmentState.NOT_STARTED,
    "Planning": FulfillmentState.NOT_STARTED,
    "Processing": FulfillmentState.IN_PROGRESS,
    "Complete": FulfillmentState.SHIPPED,
    "CompletePartialled": FulfillmentState.PARTIALLY_SHIPPED,
    "Cancelled": FulfillmentState.CANCELLED,
    "Unfulfillable": FulfillmentState.FAILED,
    "Invalid": FulfillmentState.FAILED,
}
# Amazon's statuses before picking starts: a pending shipment then is only Amazon's plan (it carries the
# early tracking number), and the order can still be cancelled
EARLY_AMAZON_STATUSES = ("New", "Received", "Planning")
SHIPBOB_STATES = {
    "Processing": FulfillmentState.NOT_STARTED,
    "ImportReview": FulfillmentState.NOT_STARTED,
    "Fulfilled": FulfillmentState.SHIPPED,
    "PartiallyFulfilled": FulfillmentState.PARTIALLY_SHIPPED,
    "Cancelled": FulfillmentState.CANCELLED,
    "Exception": FulfillmentState.FAILED,
}
# ShipBob shipment sub-states from which a shipment can no longer be cancelled.
SHIPBOB_STARTED = {"Picked", "Packed", "Labeled", "LabeledCreated"}


@dataclass(frozen=True)
class Link:
    tiktok_order_id: str
    shopify_order_ids: tuple[str, ...]
    match_rule: str | None
    fulfiller: str | None
    fulfillment_order_id: str | None
    link_problem: str | None


def _line_ids_for(skus: list[str], lines: list[dict[str, Any]], taken: set[str]) -> tuple[str, ...]:
    """TikTok line items (one per unit) matching a package's SKUs; () when any SKU has no match."""
    chosen = []
    for sku in skus:
        match = next(
            (
                line["id"]
                for line in lines
                if line.get("seller_sku") == sku and line["id"] not in taken and line["id"] not in chosen
            ),
            None,
        )
        if match is None:
            return ()
        chosen.append(match)
    taken.update(chosen)
    return tuple(chosen)


def amazon_fulfillment(row: dict[str, Any], carriers: CarrierMap, lines: list[dict[str, Any]]) -> Fulfillment:
    packages: list[Package] = []
    taken: set[str] = set()
    started = False
    aftn = ""
    for shipment in row["shipments"]:
        aftn = aftn or next((p["aftn"] for p in shipment.get("packages", []) if p.get("aftn")), "")
        # a pending shipment Amazon planned with its early tracking number has not started moving
        started = started or shipment.get("status") != "PENDING" or row["status"] not in EARLY_AMAZON_STATUSES
        if shipment.get("status") != "SHIPPED":
            continue
        for p in shipment.get("packages", []):
            packages.append(
                Package(
                    p["carrier"],
                    p["tracking_number"],
                    carriers.provider_id(p["carrier"]),
                    _line_ids_for(p.get("skus", []), lines, taken),
                )
            )
    state = AMAZON_STATES.get(row["status"], FulfillmentState.FAILED)
    if state == FulfillmentState.IN_PROGRESS and packages:
        state = FulfillmentState.PARTIALLY_SHIPPED
    return Fulfillment(
        "amazon_mcf",
        row["seller_fulfillment_order_id"],
        row["status"],
        state,
        tuple(packages),
        shipment_started=started,
        aftn=aftn,
        aftn_provider_id=carriers.provider_id("aftn") if aftn else None,
    )


def shipbob_fulfillment(row: dict[str, Any], carriers: CarrierMap, lines: list[dict[str, Any]]) -> Fulfillment:
    packages: list[Package] = []
    taken: set[str] = set()
    started = False
    for shipment in row["shipments"]:
        if shipment.get("status") == "Completed" or shipment.get("tracking_number"):
            started = True
            if shipment.get("tracking_number"):
                packages.append(
                    Package(
                        shipment["carrier"],
                        shipment["tracking_number"],
                        carriers.provider_id(shipment["carrier"]),
                        _line_ids_for(shipment.get("skus", []), lines, taken),
                    )
                )
        elif SHIPBOB_STARTED & set(shipment.get("status_details") or []) or shipment.get("status") == "LabeledCreated":
            started = True
    state = SHIPBOB_STATES.get(row["status"], FulfillmentState.FAILED)
    if state == FulfillmentState.NOT_STARTED and started:
        state = FulfillmentState.PARTIALLY_SHIPPED if packages else FulfillmentState.IN_PROGRESS
    return Fulfillment(
        "shipbob", row["shipbob_order_id"], row["status"], state, tuple(packages), shipment_started=started
    )


def fulfillment_keys(shopify_row: dict[str, Any]) -> tuple[str, ...]:
    """The ids a fulfiller files a Shopify order's fulfillment order under: its id, its name and
    the name without '#'."""
    name = shopify_row["name"]
    bare = name.lstrip("#")
    return (shopify_row["shopify_order_id"], name) if bare == name else (shopify_row["shopify_order_id"], name, bare)


class Joiner:
    """Indexes staged rows once; `join` then links each TikTok order in O(1)."""

    def __init__(
        self,
        shopify: Iterable[dict[str, Any]],
        amazon: Iterable[dict[str, Any]],
        shipbob: Iterable[dict[str, Any]],
        cancellations: Iterable[dict[str, Any]],
        carrier_maps: dict[str, CarrierMap],
        default_carriers: CarrierMap,
        sagas: dict[str, SagaState] | None = None,
        lookup_order: tuple[str, ...] = DEFAULT_LOOKUP_ORDER,
        fulfillers_listed_from: datetime | None = None,
        warehouse_refusals: dict[str, int] | None = None,
    ):
        unknown = set(lookup_order) - set(DEFAULT_LOOKUP_ORDER)
        if unknown:
            raise ValueError(f"lookup_order: unknown place(s) {', '.join(sorted(unknown))}")
        self.lookup_order = lookup_order
        self.fulfillers_listed_from = fulfillers_listed_from
        self._rank = {place: i for i, place in enumerate(lookup_order)}
        # Built once per run over every staged row (tens of thousands): plain loops, no per-row sets.
        self.shopify_by_tiktok: dict[str, dict[str, str]] = defaultdict(dict)  # tiktok id -> shopify id -> rule
        self.shopify_rows: dict[str, dict[str, Any]] = {}
        by_tiktok, rank = self.shopify_by_tiktok, self._rank
        for row in shopify:
            sid = row["shopify_order_id"]
            self.shopify_rows[sid] = row
            for found in row["tiktok_ids"]:
                # a rule names its place ("custom_attribute:tiktok order id"); the best-ranked place wins
                here = rank.get(place_of(found["rule"]))
                if here is not None:
                    known = by_tiktok[found["tiktok_order_id"]].get(sid)
                    if known is None or here < rank[place_of(known)]:
                        by_tiktok[found["tiktok_order_id"]][sid] = found["rule"]
        self.amazon_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in amazon:
            sfo = row["seller_fulfillment_order_id"]
            if sfo:
                self.amazon_by_key[sfo].append(row)
            shown = str(row.get("displayable_order_id") or "")
            if shown and shown != sfo:
                self.amazon_by_key[shown].append(row)
        self.shipbob_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in shipbob:
            reference, number = str(row.get("reference_id") or ""), str(row.get("order_number") or "")
            if reference:
                self.shipbob_by_key[reference].append(row)
            if number and number != reference:
                self.shipbob_by_key[number].append(row)
        self.cancellations: dict[str, dict[str, Any]] = {}
        for row in cancellations:
            current = self.cancellations.get(row["tiktok_order_id"])
            if current is None or as_utc(row["update_time"]) >= as_utc(current["update_time"]):
                self.cancellations[row["tiktok_order_id"]] = row
        self.carrier_maps = carrier_maps
        self.default_carriers = default_carriers
        self.sagas = sagas or {}
        self.warehouse_refusals = warehouse_refusals or {}

    def _fulfillment_candidates(self, shopify_row: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        keys = fulfillment_keys(shopify_row)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        amazon, shipbob = self.amazon_by_key, self.shipbob_by_key
        for key in keys:
            for row in amazon.get(key, ()):
                found[("amazon_mcf", row["seller_fulfillment_order_id"])] = row
            for row in shipbob.get(key, ()):
                found[("shipbob", row["shipbob_order_id"])] = row
        if len(found) < 2:
            return [(fulfiller, row) for (fulfiller, _), row in found.items()]
        return [(fulfiller, row) for (fulfiller, _), row in sorted(found.items(), key=lambda kv: kv[0])]

    def join(self, tiktok: dict[str, Any]) -> tuple[JoinedOrder, Link]:
        tid = tiktok["tiktok_order_id"]
        matches = self.shopify_by_tiktok.get(tid, {})
        shopify_ids = tuple(sorted(matches))
        rule = min(matches.values(), key=lambda r: self._rank[place_of(r)]) if matches else None
        problem: LinkProblem | None = None
        fulfillment = None
        keys: tuple[str, ...] = ()
        fulfiller_ref: tuple[str | None, str | None] = (None, None)
        shopify_cancelled = False
        if not shopify_ids:
            problem = LinkProblem.NO_SHOPIFY_MATCH
        elif len(shopify_ids) > 1:
            problem = LinkProblem.AMBIGUOUS_SHOPIFY_MATCH
        else:
            shopify_row = self.shopify_rows[shopify_ids[0]]
            keys = fulfillment_keys(shopify_row)
            shopify_cancelled = shopify_row.get("cancelled_at") is not None
            candidates = self._fulfillment_candidates(shopify_row)
            if not candidates:
                listed_from = self.fulfillers_listed_from
                problem = (
                    LinkProblem.FULFILLMENT_NOT_LISTED
                    if listed_from is not None and as_utc(tiktok["create_time"]) < listed_from
                    else LinkProblem.NO_FULFILLMENT_ORDER
                )
            elif len(candidates) > 1:
                problem = LinkProblem.AMBIGUOUS_FULFILLMENT_ORDER
            else:
                fulfiller, row = candidates[0]
                option = tiktok.get("delivery_option_id") or ""
                carriers = self.carrier_maps.get(option, self.default_carriers)
                build = amazon_fulfillment if fulfiller == "amazon_mcf" else shipbob_fulfillment
                fulfillment = build(row, carriers, tiktok["line_items"])
                fulfiller_ref = (fulfiller, fulfillment.order_id)
        created = as_utc(tiktok["create_time"])
        cancel_row = self.cancellations.get(tid)
        cancellation = None
        if cancel_row is not None:
            cancellation = Cancellation(
                cancel_row["cancel_id"], cancel_row["status"], as_utc(cancel_row.get("deadline"))
            )
        joined = JoinedOrder(
            tiktok_order_id=tid,
            status=tiktok["status"],
            fulfillment_type=tiktok["fulfillment_type"],
            create_time=created,
            rts_sla_time=as_utc(tiktok["rts_sla_time"]) or created,
            shipping_due_time=as_utc(tiktok.get("shipping_due_time")),
            tracking_number=tiktok["tracking_number"],
            line_item_ids=tuple(line["id"] for line in tiktok["line_items"]),
            cancellation=cancellation,
            shopify_order_ids=shopify_ids,
            shopify_cancelled=shopify_cancelled,
            match_rule=rule,
            link_problem=problem,
            fulfillment=fulfillment,
            fulfillment_keys=keys,
            saga=self.sagas.get(tid, SagaState()),
            # read from the answer as sent (staging checked it): in the vocabulary's spelling here
            shipping_type=status_of(tiktok, "shipping_type", SHIPPING_TYPES) or "unknown",
            warehouse_id=tiktok.get("warehouse_id") or "",
            warehouse_refusals=self.warehouse_refusals.get(tiktok.get("warehouse_id") or "", 0),
        )
        link = Link(tid, shopify_ids, rule, fulfiller_ref[0], fulfiller_ref[1], problem.value if problem else None)
        return joined, link


def saga_states(ledger_rows: Iterable[dict[str, Any]]) -> dict[str, SagaState]:
    """What earlier runs did on each order's cancellation, from succeeded ledger rows (and approvals
    sent whose outcome a crash left unknown: TikTok's own answer, the request's status, tells)."""
    requested: dict[str, datetime] = {}
    shopify_done: set[str] = set()
    approved: set[str] = set()
    refused: dict[str, str] = {}
    for row in ledger_rows:
        tid, kind, state = row["tiktok_order_id"], row["kind"], row["state"]
        if kind == "approve_cancellation" and state in ("succeeded", "in_flight"):
            approved.add(tid)
        elif kind == "cancel_shopify_order" and state == "failed":
            refused[tid] = row.get("detail") or "refused"
        elif kind == "cancel_fulfillment" and state == "succeeded":
            requested[tid] = as_utc(row.get("acted_at") or row["updated_at"])
        elif kind == "cancel_shopify_order" and state == "succeeded":
            shopify_done.add(tid)
    return {
        tid: SagaState(requested.get(tid), tid in shopify_done, tid in approved, refused.get(tid))
        for tid in set(requested) | shopify_done | approved | set(refused)
    }
