"""ShipBob Developer API simulator: channels, orders, shipments and cancels, versions 2026-01 and 2026-07.

Serves the `2025-07`, `2026-01` and `2026-07` paths, which share the order, shipment and cancel
contract (colon verbs included), each until its end of support on the scenario clock. A version past
it (1.0, 2.0 and 2025-07 since 2026-07-31) is refused as no longer accessible (`refused_version`).
Contract: ShipBob's developer documentation and its OpenAPI file (tests/fixtures/vendor-specs/shipbob).
Responses follow the OrderViewModel / ShipmentViewModel / CanceledOrderViewModel schemas.

Auth is a Personal Access Token (`Authorization: Bearer <PAT>`); the quota is 150 requests per
minute per token in a sliding window, answered with the gateway's own 429. Shipments move through
Allocated -> Picked -> Packed -> Labeled -> Completed (then in transit, out for delivery,
delivered) with the scenario clock, computed lazily whenever an order is read or written.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.core import PlatformSandbox, SlidingWindow
from sandbox.scenario import Scenario, ScenarioOrder, format_time, parse_time, reached_by

# The versions simulated: one order/shipment/cancel contract (colon verbs from 2025-07 on).
SERVED = ("2025-07", "2026-01", "2026-07")
# Last supported day of each version (developer.shipbob.com/versioning). 2026-07's is not published:
# ShipBob's ~18 months is assumed (UNCERTAIN). 1.0 and 2.0 are not simulated: only refused.
END_OF_SUPPORT = {
    "1.0": date(2026, 7, 31),
    "2.0": date(2026, 7, 31),
    "2025-07": date(2026, 7, 31),
    "2026-01": date(2027, 1, 31),
    "2026-07": date(2028, 1, 31),
}

# Fixed sandbox credentials; any of them works only against this simulator.
DEFAULT_CREDENTIALS: dict[str, Any] = {
    "personal_access_tokens": ["shipbob-sandbox-pat-0001"],
    "channel_id": 100201,  # the PAT's own channel, with *_write scopes
    "readonly_channel_id": 100200,  # "ShipBob Default": read scopes only
    "store_channel_id": 100300,  # the Shopify store the orders come from
}
DEFAULTS: dict[str, Any] = dict(
    DEFAULT_CREDENTIALS,
    rate_limit=150,  # requests per window, per token (documented)
    rate_window_seconds=60.0,
    # How an order cancel that cancels nothing answers: "failure" = 200 with status Failure,
    # "422" = a validation dictionary (the reference leaves it open).
    order_cancel_refused_as="failure",
    # few USPS labels on TikTok orders since 01/2026 (sandbox/generate.py SHIPBOB_CARRIERS)
    carriers={"USPS": 0.05, "UPS": 0.5, "FedEx": 0.3, "DHLExpress": 0.15},
)

READ_SCOPES = [
    "channels_read",
    "orders_read",
    "products_read",
    "inventory_read",
    "receiving_read",
    "returns_read",
    "webhooks_read",
    "locations_read",
    "fulfillments_read",
    "billing_read",
]
WRITE_SCOPES = [
    "channels_write",
    "orders_write",
    "products_write",
    "inventory_write",
    "receiving_write",
    "returns_write",
    "webhooks_write",
    "fulfillments_write",
]

# Lifecycle phases of a shipment: phase -> (shipment status, status detail or None).
# Detail ids and names from ShipBob's status reference; Allocated has no detail of its own.
PHASES: dict[str, tuple[str, tuple[int, str, str] | None]] = {
    "Allocated": ("Processing", None),
    "Picked": ("Processing", (100, "Picked", "Picking Completed")),
    "Packed": ("Processing", (101, "Packed", "Packing Completed")),
    "Labeled": ("Processing", (102, "Labeled", "Label Generated")),
    "AwaitingCarrierPickup": ("Completed", (200, "Processing", "Waiting For Carrier Pickup")),
    "InTransit": ("Completed", (201, "InTransit", "Shipment In Transit")),
    "OutForDelivery": ("Completed", (202, "OutForDelivery", "Shipment Out For Delivery")),
    "Delivered": ("Completed", (203, "Delivered", "Shipment Delivered")),
    # Statuses that wait for a person (or are final): they do not move with the clock.
    "None": ("None", None),
    "OnHold": ("OnHold", (401, "InvalidAddress", "Invalid Address")),
    "Exception": ("Exception", (303, "OutOfStock", "Inventory Out Of Stock")),
    "ImportReview": ("ImportReview", None),
    "Cancelled": ("Cancelled", None),
    "CleanSweeped": ("CleanSweeped", None),
    "LabeledCreated": ("LabeledCreated", None),
}
NEXT_PHASE = {
    "Allocated": "Picked",
    "Picked": "Packed",
    "Packed": "Labeled",
    "Labeled": "AwaitingCarrierPickup",
    "AwaitingCarrierPickup": "InTransit",
    "InTransit": "OutForDelivery",
    "OutForDelivery": "Delivered",
}
# The API version whose views the webhooks carry (subscriptions of 2025-07 and later).
WEBHOOK_VERSION = "2026-07"
# Scenario seconds spent in each moving phase; override with Settings.durations["shipbob"][phase].
DEFAULT_DURATIONS = {
    "Allocated": 4 * 3600.0,
    "Picked": 1800.0,
    "Packed": 600.0,
    "Labeled": 2 * 3600.0,
    "AwaitingCarrierPickup": 6 * 3600.0,
    "InTransit": 48 * 3600.0,
    "OutForDelivery": 8 * 3600.0,
}
PACKED_PHASES = (
    "Packed",
    "Labeled",
    "LabeledCreated",
    "AwaitingCarrierPickup",
    "InTransit",
    "OutForDelivery",
    "Delivered",
)
# "Not picked, packed or shipped": anything else refuses a cancel.
CANCELLABLE_PHASES = frozenset({"Allocated", "None", "OnHold", "Exception", "ImportReview", "CleanSweeped"})
REFUSAL_REASONS = {
    "Picked": "Shipment cannot be cancelled because it has already been picked",
    "Packed": "Shipment cannot be cancelled because it has already been packed",
    "Labeled": "Shipment cannot be cancelled because it has already been labeled",
    "LabeledCreated": "Shipment cannot be cancelled because its label has been created",
    "Cancelled": "Shipment is already cancelled",
}
SHIPPED_REASON = "Shipment cannot be cancelled because it has already shipped"

CARRIER_INFO = {
    "USPS": ("Ground Advantage", "https://tools.usps.com/go/TrackConfirmAction?tLabels={}"),
    "UPS": ("Ground", "https://www.ups.com/track?tracknum={}"),
    "FedEx": ("Home Delivery", "https://www.fedex.com/fedextrack/?trknbr={}"),
    "DHLExpress": ("Express Worldwide", "https://www.dhl.com/us-en/home/tracking.html?tracking-id={}"),
}
LOCATIONS = [(21, "Cicero (IL)"), (34, "Moreno Valley (CA)"), (57, "Bethlehem (PA)")]
CITIES = [
    ("Chicago", "IL", "60601"),
    ("Austin", "TX", "73301"),
    ("Denver", "CO", "80202"),
    ("Seattle", "WA", "98101"),
    ("Miami", "FL", "33101"),
    ("Columbus", "OH", "43215"),
    ("Phoenix", "AZ", "85004"),
    ("Atlanta", "GA", "30303"),
]
INT32_MAX = 2**31 - 1
ALNUM = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _digits_check_mod10(body: str) -> str:
    """USPS IMpb check digit: weights 3,1 from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _ups_check(body: str) -> str:
    """UPS 1Z check digit over the 15 characters after '1Z'."""
    total = 0
    for i, ch in enumerate(body, start=1):
        value = int(ch) if ch.isdigit() else (ord(ch) - 63) % 10
        total += value * (2 if i % 2 == 0 else 1)
    return str((10 - total % 10) % 10)


def tracking_number(rng: random.Random, carrier: str) -> str:
    """A carrier-shaped tracking number with a valid check digit."""
    if carrier == "UPS":
        body = "".join(rng.choice(ALNUM) for _ in range(6)) + "03" + "".join(rng.choice("0123456789") for _ in range(7))
        return "1Z" + body + _ups_check(body)
    if carrier == "FedEx":
        body = "".join(rng.choice("0123456789") for _ in range(11))
        weights = [1, 3, 7]
        total = sum(int(d) * weights[i % 3] for i, d in enumerate(reversed(body)))
        return body + str(total % 11 % 10)
    if carrier == "DHLExpress":
        body = "".join(rng.choice("0123456789") for _ in range(9))
        return body + str(int(body) % 7)
    body = "9400111" + "".join(rng.choice("0123456789") for _ in range(14))
    return body + _digits_check_mod10(body)


class _Reply(Exception):
    """Stop handling and answer with this response; `outcome` names it in the write log."""

    def __init__(self, response: Response, outcome: str):
        super().__init__(outcome)
        self.response = response
        self.outcome = outcome


def _problems(status: int, errors: dict[str, list[str]], outcome: str) -> _Reply:
    """The ASP.NET validation dictionary the spec declares for 400/422/500."""
    return _Reply(JSONResponse(errors, status_code=status), outcome)


def refused_version(version: str, today: date) -> _Reply | None:
    """How the gateway answers a version past its end of support on `today`, else None.

    ShipBob documents only that such a version is "no longer accessible", not the answer. A 410 Gone
    in the gateway's {statusCode, message} shape naming the version is assumed (UNCERTAIN)."""
    end = END_OF_SUPPORT.get(version)
    if end is None or end >= today:
        return None
    live = ", ".join(v for v in SERVED if END_OF_SUPPORT[v] >= today)
    message = (
        f"API version {version} is no longer accessible: it reached end of support on {end}. "
        f"Use a supported version ({live})."
    )
    return _Reply(JSONResponse({"statusCode": 410, "message": message}, status_code=410), "version_retired")


def _not_found() -> _Reply:
    body = {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.4", "title": "Not Found", "status": 404}
    return _Reply(JSONResponse(body, status_code=404, media_type="application/problem+json"), "not_found")


@dataclass
class _Shipment:
    id: int
    order_id: int
    phase: str
    entered: datetime  # when the current phase began
    created: datetime
    location: tuple[int, str]
    product_skus: list[str]
    tracking: dict | None = None
    is_tracking_uploaded: bool = False
    reached: dict[str, datetime] = field(default_factory=dict)  # phase -> when it was entered
    last_tracking_update: datetime | None = None
    # A living shop's own latencies: seconds per phase, None = stalls there (else the settings')
    durations: dict[str, float | None] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return PHASES[self.phase][0]

    def has_tracking(self) -> bool:
        return bool(self.tracking and self.tracking.get("tracking_number"))


@dataclass
class _Order:
    id: int
    reference_id: str
    order_number: str
    created: datetime
    purchased: datetime
    scenario_status: str
    products: list[tuple[str, int]]  # (sku, quantity)
    recipient: dict
    shipment_ids: list[int] = field(default_factory=list)
    updated: datetime | None = None  # order-level change (e.g. a cancel)


class ShipBobSandbox(PlatformSandbox):
    name = "shipbob"

    def __init__(self, sandbox):
        super().__init__(sandbox)
        self.config = sandbox.settings.for_platform("shipbob", DEFAULTS)
        scale = sandbox.settings.rate_scale
        self.rate_limit = max(1, int(round(float(self.config["rate_limit"]) * scale)))
        self.rate_window = float(self.config["rate_window_seconds"])
        self.orders: dict[int, _Order] = {}
        self.shipments: dict[int, _Shipment] = {}
        self.active_tokens: set[str] = set()
        self.revoked_tokens: set[str] = set()
        self.windows: dict[str, SlidingWindow] = {}
        self._app: FastAPI | None = None

    # ------------------------------------------------------------------ state
    def load(self, scenario: Scenario) -> None:
        self.orders.clear()
        self.shipments.clear()
        self.windows.clear()
        self.revoked_tokens.clear()
        self.active_tokens = set(self.config["personal_access_tokens"])
        now = scenario.now
        pending: list[tuple[_Order, ScenarioOrder]] = []
        for entry in scenario.orders:
            if entry.shipbob is not None:
                pending.append((self._load_order(entry, now), entry))
        # Shipments the scenario leaves out get ids above every id it names.
        next_id = max([s.id for s in self.shipments.values()] + [300_000_000]) + 1
        for order, entry in pending:
            if order.shipment_ids:
                continue
            for phase in self._implied_phases(entry.shipbob["status"]):
                self._add_shipment(order, next_id, phase, self._entered(order, phase, now), {})
                next_id += 1
            self._spread_products(order)

    def _load_order(self, entry: ScenarioOrder, now: datetime) -> _Order:
        sb = entry.shipbob
        tiktok_created = parse_time(entry.tiktok["create_time"], "tiktok.create_time")
        if sb.get("created_date"):
            created = parse_time(sb["created_date"], "shipbob.created_date")
        else:
            # The store integration hands the order to ShipBob a few minutes after the sale.
            created = min(tiktok_created + timedelta(minutes=12), now)
        shopify_names = {s["id"]: s["name"] for s in entry.shopify}
        reference_id = sb["reference_id"]
        # a Shopify order id; "²" is a digit to isdigit(), not to int()
        number = shopify_names.get(int(reference_id)) if reference_id.isascii() and reference_id.isdigit() else None
        skus: dict[str, int] = {}
        for line in entry.tiktok["line_items"]:
            skus[line["seller_sku"]] = skus.get(line["seller_sku"], 0) + 1
        order = _Order(
            id=sb["order_id"],
            reference_id=reference_id,
            order_number=(number or reference_id).lstrip("#"),
            created=created,
            purchased=tiktok_created,
            scenario_status=sb["status"],
            products=list(skus.items()),
            recipient=self._recipient(sb["order_id"]),
        )
        self.orders[order.id] = order
        for raw in sb.get("shipments") or []:
            phase = raw["status"]
            if phase == "Processing":
                phase = raw.get("status_detail") or "Allocated"
            elif phase == "Completed":
                phase = "InTransit"  # it has left the warehouse
            since = parse_time(raw["status_since"], "status_since") if raw.get("status_since") else None
            self._add_shipment(order, raw["id"], phase, since or self._entered(order, phase, now), raw)
        self._spread_products(order)
        return order

    def _entered(self, order: _Order, phase: str, now: datetime) -> datetime:
        """When a shipment the scenario gives without a time entered `phase`: a shipment that left
        the warehouse did so on ShipBob's own timeline from the order's creation, in scenario time
        (sandbox.scenario.reached_by); a phase that waits for a person holds from `now`."""
        if PHASES[phase][0] != "Completed":
            return now
        lead, step = 0.0, "Allocated"
        while step != phase and step in NEXT_PHASE:
            lead += self._duration(step)
            step = NEXT_PHASE[step]
        return reached_by(order.created, timedelta(seconds=lead), now)

    @staticmethod
    def _implied_phases(status: str) -> list[str]:
        """Shipments matching an order status, for scenario orders that list none."""
        return {
            "Processing": ["Allocated"],
            "Exception": ["Exception"],
            "Fulfilled": ["InTransit"],
            "PartiallyFulfilled": ["InTransit", "Allocated"],
            "Cancelled": ["Cancelled"],
            "ImportReview": ["ImportReview"],
        }[status]

    def _add_shipment(self, order: _Order, shipment_id: int, phase: str, since: datetime, raw: dict) -> None:
        since = max(since, order.created)
        location = LOCATIONS[shipment_id % len(LOCATIONS)]
        shipment = _Shipment(
            id=shipment_id,
            order_id=order.id,
            phase=phase,
            entered=since,
            created=order.created,
            location=location,
            product_skus=[],
            is_tracking_uploaded=bool(raw.get("is_tracking_uploaded", False)),
        )
        shipment.reached[phase] = since
        if raw.get("tracking"):
            shipment.tracking = self._tracking(raw["tracking"]["carrier"], raw["tracking"]["tracking_number"], since)
            shipment.last_tracking_update = since
        elif PHASES[phase][0] == "Completed":
            self._assign_tracking(shipment, since)
        if PHASES[phase][0] == "Completed":
            shipment.last_tracking_update = since
        self.shipments[shipment_id] = shipment
        order.shipment_ids.append(shipment_id)

    def _spread_products(self, order: _Order) -> None:
        """Line items go to the order's shipments in turn (a split order ships them separately)."""
        for i, (sku, _) in enumerate(order.products):
            if order.shipment_ids:
                self.shipments[order.shipment_ids[i % len(order.shipment_ids)]].product_skus.append(sku)

    def _recipient(self, order_id: int) -> dict:
        rng = random.Random(order_id)
        city, state, zip_code = rng.choice(CITIES)
        number = order_id % 10000
        return {
            "name": f"Sandbox Buyer {number:04d}",
            "address": {
                "address1": f"{rng.randint(10, 9999)} Sandbox Ave",
                "address2": None,
                "company_name": None,
                "city": city,
                "state": state,
                "country": "US",
                "zip_code": zip_code,
            },
            "email": f"buyer{number:04d}@example.com",
            "phone_number": f"555-555-{number:04d}",
        }

    def _tracking(self, carrier: str, number: str, shipped: datetime) -> dict:
        service, url = CARRIER_INFO.get(carrier, (None, None))
        return {
            "carrier": carrier,
            "tracking_number": number,
            "carrier_service": service,
            "tracking_url": url.format(number) if url else None,
            "bol": None,
            "shipping_date": format_time(shipped),
            "pro_number": None,
            "scac": None,
        }

    def _assign_tracking(self, shipment: _Shipment, when: datetime) -> None:
        rng = random.Random(shipment.id * 7919)
        carriers = self.config["carriers"]
        carrier = rng.choices(list(carriers), weights=list(carriers.values()))[0]
        shipment.tracking = self._tracking(carrier, tracking_number(rng, carrier), when)

    # ------------------------------------------------------------------ clock
    def _duration(self, phase: str) -> float:
        return max(0.0, self.sandbox.settings.duration("shipbob", phase, DEFAULT_DURATIONS[phase]))

    def _advance(self, shipment: _Shipment, now: datetime) -> None:
        while shipment.phase in NEXT_PHASE:
            own = shipment.durations.get(shipment.phase, 0.0)
            if own is None:
                return  # stalled: waits for a person at the warehouse
            seconds = own if shipment.phase in shipment.durations else self._duration(shipment.phase)
            due = shipment.entered + timedelta(seconds=seconds)
            if due > now:
                return
            phase = NEXT_PHASE[shipment.phase]
            shipment.phase, shipment.entered = phase, due
            shipment.reached[phase] = due
            if PHASES[phase][0] == "Completed":
                if not shipment.has_tracking():
                    self._assign_tracking(shipment, due)
                shipment.last_tracking_update = due
                if phase == "AwaitingCarrierPickup":
                    self._emit("order.shipped", self.order_json(self.orders[shipment.order_id], WEBHOOK_VERSION, due))

    # ------------------------------------------------------------------ a living shop (life.py)
    def add_order(self, entry: ScenarioOrder, durations: dict[str, float | None]) -> None:
        """The store integration hands the order to ShipBob now: one shipment, Allocated."""
        now = self.now()
        order = self._load_order(entry, now)
        next_id = max([s for s in self.shipments] + [300_000_000]) + 1
        self._add_shipment(order, next_id, "Allocated", now, {})
        self.shipments[next_id].durations = dict(durations)
        self._spread_products(order)

    def fail(self, order_id: int) -> None:
        """A shipment not yet picked goes to Exception (out of stock); it waits for a person."""
        now = self.now()
        order = self.orders[order_id]
        self._sync(order, now)
        for sid in order.shipment_ids:
            shipment = self.shipments[sid]
            if shipment.phase == "Allocated":
                shipment.phase, shipment.entered = "Exception", now
                shipment.reached["Exception"] = now
                self._emit("order.shipment.exception", self.shipment_json(shipment, WEBHOOK_VERSION, now))

    def shipped(self, order_id: int) -> dict | None:
        """When the order's tracking first existed and with which packages, as of the clock."""
        order = self.orders.get(order_id)
        if order is None:
            return None
        self._sync(order, self.now())
        sent = [
            self.shipments[s]
            for s in order.shipment_ids
            if self.shipments[s].has_tracking() and self.shipments[s].status == "Completed"
        ]
        if not sent:
            return None
        return {
            "at": min(s.reached.get("AwaitingCarrierPickup") or s.last_tracking_update for s in sent),
            "status": self.order_status(order),
            "packages": [(s.tracking["carrier"], s.tracking["tracking_number"]) for s in sent],
        }

    def _sync(self, order: _Order, now: datetime) -> None:
        for sid in order.shipment_ids:
            self._advance(self.shipments[sid], now)

    def _sync_all(self) -> datetime:
        now = self.now()
        for order in self.orders.values():
            self._sync(order, now)
        return now

    # ------------------------------------------------------------------ derived views
    def order_status(self, order: _Order) -> str:
        """Imputed from the shipments (rules inferred: ShipBob does not document them)."""
        statuses = [self.shipments[s].status for s in order.shipment_ids]
        if not statuses:
            return order.scenario_status
        active = [s for s in statuses if s != "Cancelled"]
        if not active:
            return "Cancelled"
        if all(s == "Completed" for s in active):
            return "Fulfilled"
        if any(s == "Completed" for s in active):
            return "PartiallyFulfilled"
        if any(s in ("Exception", "OnHold") for s in active):
            return "Exception"
        if any(s == "ImportReview" for s in active):
            return "ImportReview"
        return "Processing"

    def _order_last_update(self, order: _Order) -> datetime:
        times = [order.created] + [self.shipments[s].entered for s in order.shipment_ids]
        if order.updated:
            times.append(order.updated)
        return max(times)

    def _order_last_tracking(self, order: _Order) -> datetime | None:
        times = [
            self.shipments[s].last_tracking_update
            for s in order.shipment_ids
            if self.shipments[s].has_tracking() and self.shipments[s].last_tracking_update
        ]
        return max(times) if times else None

    def _order_has_tracking(self, order: _Order) -> bool:
        return any(self.shipments[s].has_tracking() for s in order.shipment_ids)

    def _order_tracking_uploaded(self, order: _Order) -> bool:
        """Fully uploaded: every shipment still going out has its tracking marked as uploaded."""
        active = [self.shipments[s] for s in order.shipment_ids if self.shipments[s].status != "Cancelled"]
        return bool(active) and all(s.has_tracking() and s.is_tracking_uploaded for s in active)

    @staticmethod
    def _sku_id(sku: str, salt: int) -> int:
        return 1_000_000 + (int.from_bytes(sku.encode()[:12].ljust(12, b"\0"), "big") * 31 + salt) % 900_000_000

    def _price(self, sku: str) -> float:
        return round(9.99 + (self._sku_id(sku, 0) % 4000) / 100, 2)

    def _emit(self, topic: str, doc: dict) -> None:
        self.sandbox.outbox.emit("shipbob", topic, doc)

    def order_json(self, order: _Order, version: str, now: datetime) -> dict:
        return {
            "id": order.id,
            "created_date": format_time(order.created),
            "purchase_date": format_time(order.purchased),
            "reference_id": order.reference_id,
            "order_number": order.order_number,
            "status": self.order_status(order),
            "type": "DTC",
            "channel": {"id": self.config["store_channel_id"], "name": "orderops-sandbox.myshopify.com"},
            "shipping_method": "Standard",
            "recipient": order.recipient,
            "products": [
                {
                    "id": self._sku_id(sku, 1),
                    "reference_id": sku,
                    "quantity": qty,
                    "quantity_unit_of_measure_code": "EA",
                    "sku": sku,
                    "gtin": None,
                    "upc": None,
                    "unit_price": self._price(sku),
                    "external_line_id": i + 1,
                }
                for i, (sku, qty) in enumerate(order.products)
            ],
            "tags": [],
            "shipments": [self.shipment_json(self.shipments[s], version, now) for s in order.shipment_ids],
            "gift_message": None,
            "shipping_terms": {"carrier_type": "Parcel", "payment_term": "Prepaid"},
            "financials": {"total_price": round(sum(self._price(s) * q for s, q in order.products), 2)},
        }

    def shipment_json(self, shipment: _Shipment, version: str, now: datetime) -> dict:
        order = self.orders[shipment.order_id]
        status, detail = PHASES[shipment.phase]
        labeled = shipment.reached.get("Labeled")
        completed = next(
            (
                shipment.reached[p]
                for p in ("AwaitingCarrierPickup", "InTransit", "OutForDelivery", "Delivered")
                if p in shipment.reached
            ),
            None,
        )
        fulfilled = labeled or completed
        estimated = shipment.created + timedelta(days=2)
        if status == "Completed":
            promise = "FulfilledOnTime" if fulfilled and fulfilled <= estimated else "FulfilledLate"
        elif status == "Exception":
            promise = "AwaitingInventoryAllocation"
        elif status in ("Processing", "LabeledCreated", "CleanSweeped"):
            promise = "PendingOnTime" if now <= estimated else "PendingLate"
        else:
            promise = "Unavailable"
        packed = any(p in shipment.reached for p in PACKED_PHASES)
        products = []
        for sku in shipment.product_skus:
            qty = dict(order.products)[sku]
            products.append(
                {
                    "id": self._sku_id(sku, 1),
                    "reference_id": sku,
                    "name": sku.replace("-", " ").title(),
                    "sku": sku,
                    "inventory_items": [
                        {
                            "id": self._sku_id(sku, 2),
                            "name": sku.replace("-", " ").title(),
                            "quantity": qty,
                            "quantity_committed": 0 if status == "Exception" else qty,
                            "lot": None,
                            "expiration_date": None,
                            "serial_numbers": [],
                            "is_dangerous_goods": False,
                        }
                    ],
                }
            )
        weight = 6 * max(1, len(shipment.product_skus))
        doc = {
            "id": shipment.id,
            "order_id": shipment.order_id,
            "reference_id": order.reference_id,
            "recipient": {
                "name": order.recipient["name"],
                "full_name": order.recipient["name"],
                "address": order.recipient["address"],
                "email": order.recipient["email"],
                "phone_number": order.recipient["phone_number"],
            },
            "created_date": format_time(shipment.created),
            "last_update_at": format_time(shipment.entered),
            "last_tracking_update_at": (
                format_time(shipment.last_tracking_update)
                if shipment.last_tracking_update and shipment.has_tracking()
                else None
            ),
            "status": status,
            "status_details": (
                [
                    {
                        "id": detail[0],
                        "name": detail[1],
                        "description": detail[2],
                        "inventory_id": None,
                        "exception_fulfillment_center_id": None,
                    }
                ]
                if detail
                else []
            ),
            "location": {"id": shipment.location[0], "name": shipment.location[1]},
            "invoice_amount": round(4.5 + weight * 0.11, 2) if fulfilled else None,
            "invoice_currency_code": "USD" if fulfilled else None,
            "insurance_value": None,
            "ship_option": "Standard",
            "package_material_type": "PolyMailer" if packed else "Unknown",
            # The schema gives tracking no null: an empty tracking object stands for "none yet".
            "tracking": shipment.tracking
            or {
                k: None
                for k in (
                    "carrier",
                    "tracking_number",
                    "carrier_service",
                    "tracking_url",
                    "bol",
                    "shipping_date",
                    "pro_number",
                    "scac",
                )
            },
            "products": products,
            "parent_cartons": [],
            "measurements": (
                {"total_weight_oz": weight, "length_in": 10, "width_in": 8, "depth_in": 2}
                if packed
                else {"total_weight_oz": 0, "length_in": 0, "width_in": 0, "depth_in": 0}
            ),
            "require_signature": False,
            "estimated_fulfillment_date": format_time(estimated),
            "actual_fulfillment_date": format_time(fulfilled) if fulfilled and status != "Cancelled" else None,
            "estimated_fulfillment_date_status": promise,
            "is_tracking_uploaded": shipment.is_tracking_uploaded,
            "gift_message": None,
            "delivery_date": format_time(shipment.reached["Delivered"]) if "Delivered" in shipment.reached else None,
        }
        return doc

    # ------------------------------------------------------------------ platform hooks
    def throttled_response(self, retry_after: float = 1.0) -> Response:
        seconds = max(1, math.ceil(retry_after))
        return JSONResponse(
            {"statusCode": 429, "message": f"Rate limit is exceeded. Try again in {seconds} seconds."},
            status_code=429,
            headers={"x-retry-after": str(seconds), "x-remaining-calls": "0"},
        )

    def server_error_response(self, status: int) -> Response:
        if status == 500:
            return JSONResponse({"": ["An unexpected error occurred. Please try again later."]}, status_code=500)
        # Other 5xx come from the gateway in front of the API, in its own shape.
        messages = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
        return JSONResponse({"statusCode": status, "message": messages.get(status, "Server Error")}, status_code=status)

    def expire_tokens(self) -> None:
        # PATs never expire on their own; the nearest real event is the token being revoked.
        self.revoked_tokens |= self.active_tokens
        self.active_tokens = set()

    def issue_token(self) -> str:
        token = "shipbob-sandbox-pat-" + secrets.token_hex(8)
        self.active_tokens.add(token)
        return token

    def state(self) -> dict:
        now = self._sync_all()
        return {
            "now": format_time(now),
            "rate_limit": {"limit": self.rate_limit, "window_seconds": self.rate_window},
            "tokens": {"active": len(self.active_tokens), "revoked": len(self.revoked_tokens)},
            "orders": [
                {
                    "id": o.id,
                    "reference_id": o.reference_id,
                    "status": self.order_status(o),
                    "created_date": format_time(o.created),
                    "shipments": [
                        {
                            "id": s.id,
                            "status": s.status,
                            "phase": s.phase,
                            "status_detail": (PHASES[s.phase][1] or (None, None))[1],
                            "since": format_time(s.entered),
                            "cancellable": s.phase in CANCELLABLE_PHASES,
                            "tracking": (
                                {"carrier": s.tracking["carrier"], "tracking_number": s.tracking["tracking_number"]}
                                if s.has_tracking()
                                else None
                            ),
                        }
                        for s in (self.shipments[i] for i in o.shipment_ids)
                    ],
                }
                for o in self.orders.values()
            ],
        }

    # ------------------------------------------------------------------ channels
    def channels(self) -> list[dict]:
        c = self.config
        return [
            {
                "id": c["readonly_channel_id"],
                "name": "ShipBob Default",
                "application_name": "ShipBob",
                "scopes": list(READ_SCOPES),
            },
            {
                "id": c["channel_id"],
                "name": "Personal Access Token (orderops sandbox)",
                "application_name": "SMA",
                "scopes": READ_SCOPES + WRITE_SCOPES,
            },
            {
                "id": c["store_channel_id"],
                "name": "orderops-sandbox.myshopify.com",
                "application_name": "Shopify",
                "scopes": READ_SCOPES + WRITE_SCOPES,
            },
        ]

    # ------------------------------------------------------------------ HTTP plumbing
    def _reply(
        self, request: Request, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        response = JSONResponse(payload, status_code=status, headers=headers)
        remaining = getattr(request.state, "shipbob_remaining", None)
        if remaining is not None:
            response.headers["x-remaining-calls"] = str(remaining)
        return response

    async def _unrouted(self, request: Request, exc) -> Response:
        """The gateway checks the token before routing (401 without a valid one); a path or method
        not served is then a ProblemDetails 404 or 405, as ASP.NET answers."""
        try:
            await self._guard(request)
        except _Reply as refused:
            return refused.response
        if exc.status_code == 405:
            body = {
                "type": "https://tools.ietf.org/html/rfc7231#section-6.5.5",
                "title": "Method Not Allowed",
                "status": 405,
            }
            return JSONResponse(body, status_code=405, media_type="application/problem+json")
        if exc.status_code == 404:
            return _not_found().response
        return JSONResponse({"": [str(exc.detail)]}, status_code=exc.status_code)

    async def _guard(self, request: Request) -> None:
        """Gateway checks in front of every API route: the bearer token, then the quota."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await self._refuse_write(request, 401, "unauthorized")
            raise _Reply(Response(status_code=401, headers={"WWW-Authenticate": "Bearer"}), "unauthorized")
        if token not in self.active_tokens:
            await self._refuse_write(request, 401, "unauthorized")
            raise _Reply(
                Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}), "unauthorized"
            )
        window = self.windows.get(token)
        if window is None:
            window = self.windows[token] = SlidingWindow(
                self.rate_limit, self.rate_window, self.sandbox.clock.quota_seconds
            )
        wait = window.take()
        if wait > 0:
            await self._refuse_write(request, 429, "too_many_requests")
            raise _Reply(self.throttled_response(wait), "too_many_requests")
        request.state.shipbob_remaining = window.remaining()
        # every path starts with its version; one past its end of support is refused whatever follows
        retired = refused_version(request.url.path.split("/")[1], self.now().date())
        if retired is not None:
            await self._refuse_write(request, 410, retired.outcome)
            raise retired

    async def _refuse_write(self, request: Request, status: int, outcome: str) -> None:
        if request.method == "POST":
            self.record_write(request, await self._body_for_log(request), status, outcome)

    @staticmethod
    async def _body_for_log(request: Request) -> Any:
        raw = await request.body()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return raw.decode("utf-8", "replace")[:2000]

    def _channel(self, request: Request, *, required: bool, scope: str | None, missing_status: int = 400) -> int | None:
        """The `shipbob_channel_id` header: required on some writes; must name a channel with the scope."""
        raw = request.headers.get("shipbob_channel_id")
        if raw is None or raw.strip() == "":
            if required:
                raise _problems(
                    missing_status,
                    {"shipbob_channel_id": ["The shipbob_channel_id field is required."]},
                    "channel_required",
                )
            return None
        try:
            channel_id = int(raw.strip())
        except ValueError:
            raise _problems(
                missing_status, {"shipbob_channel_id": [f"The value '{raw}' is not valid."]}, "bad_request"
            ) from None
        channel = next((c for c in self.channels() if c["id"] == channel_id), None)
        if channel is None or (scope is not None and scope not in channel["scopes"]):
            raise _Reply(Response(status_code=403), "forbidden")
        return channel_id

    @staticmethod
    def _path_int(value: str, name: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise _problems(400, {name: [f"The value '{value}' is not valid."]}, "bad_request") from None
        if not 0 < number <= INT32_MAX:
            raise _problems(400, {name: [f"The value '{value}' is not valid."]}, "bad_request")
        return number

    def _order(self, order_id: int) -> _Order:
        order = self.orders.get(order_id)
        if order is None:
            raise _not_found()
        return order

    def _shipment(self, shipment_id: int, order_id: int | None = None) -> _Shipment:
        shipment = self.shipments.get(shipment_id)
        if shipment is None or (order_id is not None and shipment.order_id != order_id):
            raise _not_found()
        return shipment

    async def _write(self, request: Request, work: Callable[[], Any]) -> Response:
        """Run a state-changing handler and log it, whether it succeeded or was refused."""
        body = await self._body_for_log(request)
        try:
            response, outcome = await work()
        except _Reply as reply:
            self.record_write(request, body, reply.response.status_code, reply.outcome)
            raise
        self.record_write(request, body, response.status_code, outcome)
        return response

    # ------------------------------------------------------------------ app
    def apps(self) -> dict[str, FastAPI]:
        if self._app is None:
            self._app = self._build_app()
        return {"shipbob": self._app}

    def _build_app(self) -> FastAPI:
        app = self.sandbox.new_app("shipbob", "ShipBob Developer API (sandbox)", unrouted=self._unrouted)

        @app.exception_handler(_Reply)
        async def reply_handler(request: Request, exc: _Reply):
            remaining = getattr(request.state, "shipbob_remaining", None)
            if remaining is not None and "x-remaining-calls" not in exc.response.headers:
                exc.response.headers["x-remaining-calls"] = str(remaining)
            return exc.response

        @app.post("/_sandbox/shipbob/tokens")
        async def new_token():
            """Mint a new PAT (after the token_expiry fault revoked the old ones)."""
            return {"token": self.issue_token()}

        guard = [Depends(self._guard)]

        def route(path: str, methods: list[str], endpoint) -> None:
            app.add_api_route(path, endpoint, methods=methods, dependencies=guard)

        for version in SERVED:
            self._routes(route, version)
        return app

    def _routes(self, route, v: str) -> None:
        async def list_channels(request: Request):
            return self._list_channels(request, v)

        async def list_orders(request: Request):
            self._channel(request, required=False, scope=None)
            return self._list_orders(request, v)

        async def get_order(request: Request, orderId: str):
            self._channel(request, required=False, scope=None)
            order = self._order(self._path_int(orderId, "orderId"))
            now = self.now()
            self._sync(order, now)
            return self._reply(request, self.order_json(order, v, now))

        async def order_shipments(request: Request, orderId: str):
            self._channel(request, required=False, scope=None)
            order = self._order(self._path_int(orderId, "orderId"))
            now = self.now()
            self._sync(order, now)
            return self._reply(request, [self.shipment_json(self.shipments[s], v, now) for s in order.shipment_ids])

        async def order_shipment(request: Request, orderId: str, shipmentId: str):
            self._channel(request, required=False, scope=None)
            order = self._order(self._path_int(orderId, "orderId"))
            shipment = self._shipment(self._path_int(shipmentId, "shipmentId"), order.id)
            now = self.now()
            self._sync(order, now)
            return self._reply(request, self.shipment_json(shipment, v, now))

        async def get_shipment(request: Request, shipmentId: str):
            self._channel(request, required=False, scope=None)
            shipment = self._shipment(self._path_int(shipmentId, "shipmentId"))
            now = self.now()
            self._sync(self.orders[shipment.order_id], now)
            return self._reply(request, self.shipment_json(shipment, v, now))

        async def cancel_order(request: Request, orderId: str):
            async def work():
                self._channel(request, required=False, scope="orders_write")
                return self._cancel_order(request, v, self._path_int(orderId, "orderId"))

            return await self._write(request, work)

        async def cancel_shipment(request: Request, shipmentId: str):
            async def work():
                self._channel(request, required=False, scope="fulfillments_write")
                return self._cancel_shipment(request, v, self._path_int(shipmentId, "shipmentId"), None)

            return await self._write(request, work)

        async def cancel_order_shipment(request: Request, orderId: str, shipmentId: str):
            async def work():
                self._channel(request, required=False, scope="fulfillments_write")
                order_id = self._path_int(orderId, "orderId")
                return self._cancel_shipment(request, v, self._path_int(shipmentId, "shipmentId"), order_id)

            return await self._write(request, work)

        async def batch_cancel(request: Request):
            async def work():
                # The batch operation declares no 400: its client errors are 422 dictionaries.
                self._channel(request, required=True, scope="fulfillments_write", missing_status=422)
                return self._batch_cancel(request, await request.body())

            return await self._write(request, work)

        route(f"/{v}/channel", ["GET"], list_channels)
        route(f"/{v}/order", ["GET"], list_orders)
        route(f"/{v}/order/{{orderId}}", ["GET"], get_order)
        route(f"/{v}/order/{{orderId}}/shipment", ["GET"], order_shipments)
        route(f"/{v}/order/{{orderId}}/shipment/{{shipmentId}}", ["GET"], order_shipment)
        route(f"/{v}/shipment/{{shipmentId}}", ["GET"], get_shipment)
        route(f"/{v}/order/{{orderId}}:cancel", ["POST"], cancel_order)
        route(f"/{v}/shipment:batchCancel", ["POST"], batch_cancel)
        route(f"/{v}/shipment/{{shipmentId}}:cancel", ["POST"], cancel_shipment)
        route(f"/{v}/order/{{orderId}}/shipment/{{shipmentId}}:cancel", ["POST"], cancel_order_shipment)

    # ------------------------------------------------------------------ channels endpoint
    def _list_channels(self, request: Request, version: str) -> Response:
        channels = self.channels()
        query = {k.lower(): v for k, v in request.query_params.items()}
        errors: dict[str, list[str]] = {}
        per_page, offset = 50, 0
        if "recordsperpage" in query:
            try:
                per_page = int(query["recordsperpage"])
                if per_page < 1:
                    raise ValueError
            except ValueError:
                errors["RecordsPerPage"] = [f"The value '{query['recordsperpage']}' is not valid for RecordsPerPage."]
        if query.get("cursor"):
            try:
                offset = int(json.loads(base64.urlsafe_b64decode(query["cursor"].encode()))["offset"])
            except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
                errors["Cursor"] = ["The cursor is invalid."]
        if errors:
            raise _problems(400, errors, "bad_request")

        def link(start: int) -> str:
            cursor = base64.urlsafe_b64encode(json.dumps({"offset": start}).encode()).decode()
            return f"/{version}/channel?" + urlencode({"RecordsPerPage": per_page, "Cursor": cursor})

        items = channels[offset : offset + per_page]
        return self._reply(
            request,
            {
                "items": items,
                "next": link(offset + per_page) if offset + per_page < len(channels) else None,
                "prev": link(max(0, offset - per_page)) if offset > 0 else None,
            },
        )

    # ------------------------------------------------------------------ order list
    def _list_orders(self, request: Request, version: str) -> Response:
        items = request.query_params.multi_items()
        values: dict[str, list[str]] = {}
        for key, value in items:
            values.setdefault(key.lower(), []).append(value)
        errors: dict[str, list[str]] = {}

        def scalar(name: str) -> str | None:
            got = values.get(name.lower())
            return got[0] if got and got[0] != "" else None

        def integer(name: str, low: int, high: int, default: int) -> int:
            raw = scalar(name)
            if raw is None:
                return default
            try:
                number = int(raw)
            except ValueError:
                errors.setdefault(name, []).append(f"The value '{raw}' is not valid for {name}.")
                return default
            if not low <= number <= high:
                errors.setdefault(name, []).append(f"The field {name} must be between {low} and {high}.")
            return number

        def moment(name: str) -> datetime | None:
            raw = scalar(name)
            if raw is None:
                return None
            try:
                parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
            except ValueError:
                errors.setdefault(name, []).append(f"The value '{raw}' is not valid for {name}.")
                return None
            # A time without an offset is taken as UTC.
            return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)

        def boolean(name: str) -> bool | None:
            raw = scalar(name)
            if raw is None:
                return None
            if raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            errors.setdefault(name, []).append(f"The value '{raw}' is not valid for {name}.")
            return None

        def csv(name: str) -> list[str] | None:
            got = values.get(name.lower())
            if not got:
                return None
            parts = [p.strip() for raw in got for p in raw.split(",") if p.strip()]
            return parts or None

        page = integer("Page", 1, INT32_MAX, 1)
        limit = integer("Limit", 1, 250, 50)
        ids: set[int] | None = None
        raw_ids = csv("IDs")
        if raw_ids is not None:
            ids = set()
            for part in raw_ids:
                try:
                    ids.add(int(part))
                except ValueError:
                    errors.setdefault("IDs", []).append(f"The value '{part}' is not valid for IDs.")
        references = csv("ReferenceIds")
        start, end = moment("StartDate"), moment("EndDate")
        upd_start, upd_end = moment("LastUpdateStartDate"), moment("LastUpdateEndDate")
        trk_start, trk_end = moment("LastTrackingUpdateStartDate"), moment("LastTrackingUpdateEndDate")
        has_tracking = boolean("HasTracking")
        uploaded = boolean("IsTrackingUploaded")
        sort = scalar("SortOrder") or "Newest"
        if sort.lower() not in ("newest", "oldest"):
            errors.setdefault("SortOrder", []).append(f"The value '{sort}' is not valid for SortOrder.")
        if errors:
            raise _problems(400, errors, "bad_request")

        now = self._sync_all()
        # Windows are half-open [start, end): adjacent windows neither overlap nor leave gaps.
        selected = []
        for order in self.orders.values():
            if ids is not None and order.id not in ids:
                continue
            if references is not None and order.reference_id not in references:
                continue
            if start and order.created < start or end and order.created >= end:
                continue
            if upd_start or upd_end:
                updated = self._order_last_update(order)
                if upd_start and updated < upd_start or upd_end and updated >= upd_end:
                    continue
            if trk_start or trk_end:
                tracked = self._order_last_tracking(order)
                if tracked is None or trk_start and tracked < trk_start or trk_end and tracked >= trk_end:
                    continue
            if has_tracking is not None and self._order_has_tracking(order) != has_tracking:
                continue
            if uploaded is not None and self._order_tracking_uploaded(order) != uploaded:
                continue
            selected.append(order)
        newest = sort.lower() == "newest"
        selected.sort(key=lambda o: (o.created, o.id), reverse=newest)

        total = len(selected)
        pages = math.ceil(total / limit)
        chunk = selected[(page - 1) * limit : page * limit]
        headers = {
            "Page-Number": str(page),
            "Page-Size": str(limit),
            "Total-Count": str(total),
            "Total-Pages": str(pages),
        }
        if page < pages:
            rest = [(k, val) for k, val in items if k.lower() != "page"]
            headers["Next-Page"] = f"{request.url.path}?" + urlencode([("Page", str(page + 1))] + rest)
        return self._reply(request, [self.order_json(o, version, now) for o in chunk], headers=headers)

    # ------------------------------------------------------------------ cancels
    def _try_cancel(self, shipment: _Shipment, now: datetime) -> tuple[bool, str]:
        if shipment.phase not in CANCELLABLE_PHASES:
            return False, REFUSAL_REASONS.get(shipment.phase, SHIPPED_REASON)
        shipment.phase, shipment.entered = "Cancelled", now
        shipment.reached["Cancelled"] = now
        self._emit("order.shipment.cancelled", self.shipment_json(shipment, WEBHOOK_VERSION, now))
        return True, "Shipment cancelled"

    def _cancel_order(self, request: Request, version: str, order_id: int):
        order = self._order(order_id)
        now = self.now()
        self._sync(order, now)
        results = []
        for sid in order.shipment_ids:
            ok, reason = self._try_cancel(self.shipments[sid], now)
            results.append({"action": "Cancel", "shipment_id": sid, "is_success": ok, "reason": reason})
        succeeded = sum(r["is_success"] for r in results)
        if succeeded:
            order.updated = now
        if not succeeded and self.config["order_cancel_refused_as"] == "422":
            reasons = sorted({r["reason"] for r in results})
            raise _problems(
                422, {"OrderId": [f"Order {order_id} cannot be cancelled: " + "; ".join(reasons)]}, "not_cancellable"
            )
        status = "Success" if succeeded == len(results) and results else "PartialSuccess" if succeeded else "Failure"
        body = {
            "order_id": order.id,
            "order": self.order_json(order, version, now),
            "status": status,
            "canceled_shipment_results": results,
        }
        outcome = "ok" if status == "Success" else ("partial" if status == "PartialSuccess" else "not_cancellable")
        return self._reply(request, body), outcome

    def _cancel_shipment(self, request: Request, version: str, shipment_id: int, order_id: int | None):
        if order_id is not None:
            self._order(order_id)
        shipment = self._shipment(shipment_id, order_id)
        now = self.now()
        self._sync(self.orders[shipment.order_id], now)
        ok, reason = self._try_cancel(shipment, now)
        if not ok:
            raise _problems(422, {"ShipmentId": [reason]}, "not_cancellable")
        return self._reply(request, self.shipment_json(shipment, version, now)), "ok"

    def _batch_cancel(self, request: Request, raw: bytes):
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _problems(422, {"": ["The request body is not valid JSON."]}, "bad_request") from None
        ids = body.get("shipment_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids:
            raise _problems(422, {"shipment_ids": ["The shipment_ids field is required."]}, "bad_request")
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 < i <= INT32_MAX]
        if bad:
            raise _problems(422, {"shipment_ids": [f"The value '{b}' is not valid." for b in bad]}, "bad_request")
        now = self.now()
        results = []
        for sid in ids:
            shipment = self.shipments.get(sid)
            if shipment is None:
                results.append(
                    {"action": "Cancel", "shipment_id": sid, "is_success": False, "reason": "Shipment not found"}
                )
                continue
            self._sync(self.orders[shipment.order_id], now)
            ok, reason = self._try_cancel(shipment, now)
            results.append({"action": "Cancel", "shipment_id": sid, "is_success": ok, "reason": reason})
        done = sum(r["is_success"] for r in results)
        outcome = "ok" if done == len(results) else ("partial" if done else "not_cancellable")
        return self._reply(request, {"results": results}), outcome
