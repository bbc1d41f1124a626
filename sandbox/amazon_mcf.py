"""Amazon SP-API simulator: Login with Amazon tokens, Fulfillment Outbound 2020-07-01 (MCF), Reports 2021-06-30.

Two apps, as on the real platform two hosts:
- "amazon_lwa": `POST /auth/o2/token` (refresh_token and client_credentials grants, OAuth2 errors).
- "amazon_mcf": the SP-API host. `/fba/outbound/2020-07-01/...` answers in the `{payload, errors}`
  envelope; `/reports/2021-06-30/...` answers unwrapped, as its model says; `/_documents/{id}` serves
  report documents behind a presigned-style URL that expires (the real one is an S3 link).

Every SP-API call needs `x-amz-access-token` (403 Unauthorized otherwise), then passes a token
bucket per operation at the rate and burst of the operation's Usage Plan (429 QuotaExceeded).
Fulfillment orders move Received -> Planning -> Processing -> Complete with the scenario clock,
computed lazily whenever an order is read or written. Choices where the public contract is silent
are listed in the README section "Amazon MCF simulator".
"""

from __future__ import annotations

import base64
import binascii
import bisect
import gzip
import hashlib
import hmac
import json
import math
import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.core import PlatformSandbox, TokenBucket
from sandbox.scenario import Scenario, ScenarioError, ScenarioOrder, parse_time, reached_by, shopify_order_name
from sandbox.scenario import format_time as ts

FBA = "/fba/outbound/2020-07-01"
REPORTS = "/reports/2021-06-30"
DOCUMENTS = "/_documents"

# Fixed, documented sandbox credentials; override with Settings.platforms["amazon_mcf"].
DEFAULT_CREDENTIALS: dict[str, str] = {
    "client_id": "amzn1.application-oa2-client.0rderops5andb0x0000000000000001",
    "client_secret": "amzn1.oa2-cs.v1.orderops-sandbox-client-secret-0000000000000001",
    "refresh_token": "Atzr|orderops-sandbox-refresh-token-0000000000000001",
    "marketplace_id": "ATVPDKIKX0DER",
    "seller_id": "A2ORDEROPSSBX1",
}
DEFAULT_OPTIONS: dict[str, Any] = {
    "token_lifetime_seconds": 3600,  # "An LWA access token expires one hour after it is issued."
    "page_size": 50,  # listAllFulfillmentOrders page size (not stated by the model)
    "report_queue_seconds": 1.0,  # wall seconds a report spends IN_QUEUE, then IN_PROGRESS
    "report_processing_seconds": 2.0,
    "document_url_ttl_seconds": 300,  # "This URL expires after 5 minutes."
    # Amazon regenerates the shipments report at most every 30 minutes: one asked for sooner after
    # the last (scenario clock) is CANCELLED, as one with no data is; 0 turns it off
    "report_regeneration_minutes": 30,
    "upper_case_statuses": False,  # the retired static sandbox answered "COMPLETE" etc.
    # few USPS labels on TikTok orders since 01/2026 (sandbox/generate.py AMAZON_CARRIERS)
    "carriers": {"AMZL_US": 0.4, "UPS": 0.4, "USPS": 0.05, "FEDEX": 0.15},
    # Amazon's early tracking number (AFTN): for US, single-item orders, minutes after the order is
    # created (median; Amazon says "within minutes"), on the order's package before any carrier
    # tracking exists, and kept beside the carrier's number once it ships. Its format is not
    # published: the sandbox's is its own (UNCERTAIN). 0 turns it off.
    "aftn_minutes": 5.0,
    "quotas": {},  # operationId -> [rate per second, burst]
}

# operationId -> (rate per second, burst): the "Usage Plan" table of each operation in the models.
QUOTAS: dict[str, tuple[float, int]] = {
    "listAllFulfillmentOrders": (2.0, 30),
    "getFulfillmentOrder": (2.0, 30),
    "createFulfillmentOrder": (2.0, 30),
    "cancelFulfillmentOrder": (2.0, 30),
    "getPackageTrackingDetails": (2.0, 30),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReports": (0.0222, 10),
    "cancelReport": (0.0222, 10),
    "getReportDocument": (0.0167, 15),
}
WRITE_OPERATIONS = (
    "createFulfillmentOrder",
    "cancelFulfillmentOrder",
    "submitFulfillmentOrderStatusUpdate",
    "createReport",
    "cancelReport",
)
GRANTLESS_SCOPES = ("sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation")

STATUSES = (
    "New",
    "Received",
    "Planning",
    "Processing",
    "Cancelled",
    "Complete",
    "CompletePartialled",
    "Unfulfillable",
    "Invalid",
)
PROGRESSION = ("New", "Received", "Planning", "Processing")
NEXT_STATUS = {"New": "Received", "Received": "Planning", "Planning": "Processing", "Processing": "Complete"}
# Scenario seconds spent in each progressing state unless Settings.durations["amazon_mcf"] says otherwise.
DEFAULT_DURATIONS = {"New": 120.0, "Received": 900.0, "Planning": 7200.0, "Processing": 43200.0}
CANCELLABLE = ("New", "Received", "Planning")
# The states each terminal status is reached after (for timestamps of scenario orders).
REACHED_AFTER = {
    "Complete": PROGRESSION,
    "CompletePartialled": PROGRESSION,
    "Cancelled": ("New", "Received"),
    "Unfulfillable": ("New", "Received", "Planning"),
    "Invalid": ("New",),
}
SPEEDS = ("Standard", "Expedited", "Priority", "ScheduledDelivery")
TRANSIT_DAYS = {"Standard": 4, "Expedited": 2, "Priority": 1, "ScheduledDelivery": 2}
HOLD_AUTO_CANCEL = timedelta(days=14)
MAX_REPORT_RANGE = timedelta(days=31)
REPORT_RETENTION = timedelta(days=90)
SHIPMENTS_REPORT = "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL"
REPORT_STATUSES = ("CANCELLED", "DONE", "FATAL", "IN_PROGRESS", "IN_QUEUE")
# Column order of the flat file, as documented for this report type.
SHIPMENT_REPORT_COLUMNS = (
    "amazon-order-id",
    "merchant-order-id",
    "shipment-id",
    "shipment-item-id",
    "amazon-order-item-id",
    "merchant-order-item-id",
    "purchase-date",
    "payments-date",
    "shipment-date",
    "reporting-date",
    "buyer-email",
    "buyer-name",
    "buyer-phone-number",
    "sku",
    "product-name",
    "quantity-shipped",
    "currency",
    "item-price",
    "item-tax",
    "shipping-price",
    "shipping-tax",
    "gift-wrap-price",
    "gift-wrap-tax",
    "ship-service-level",
    "recipient-name",
    "ship-address-1",
    "ship-address-2",
    "ship-address-3",
    "ship-city",
    "ship-state",
    "ship-postal-code",
    "ship-country",
    "ship-phone-number",
    "bill-address-1",
    "bill-address-2",
    "bill-address-3",
    "bill-city",
    "bill-state",
    "bill-postal-code",
    "bill-country",
    "item-promotion-discount",
    "ship-promotion-discount",
    "carrier",
    "tracking-number",
    "estimated-arrival-date",
    "fulfillment-center-id",
    "fulfillment-channel",
    "sales-channel",
)

FULFILLMENT_CENTERS = (
    ("PHX6", "Phoenix", "AZ"),
    ("ONT8", "Moreno Valley", "CA"),
    ("MDW2", "Joliet", "IL"),
    ("BFI4", "Kent", "WA"),
    ("CVG3", "Hebron", "KY"),
    ("TPA1", "Ruskin", "FL"),
    ("RIC2", "Chester", "VA"),
    ("DFW7", "Fort Worth", "TX"),
    ("ABE8", "Florence", "NJ"),
)
HUBS = (("Louisville", "KY"), ("Memphis", "TN"), ("Indianapolis", "IN"), ("Dallas", "TX"))
DESTINATIONS = (
    ("Austin", "TX", "78701"),
    ("Columbus", "OH", "43215"),
    ("Denver", "CO", "80202"),
    ("Portland", "OR", "97205"),
    ("Atlanta", "GA", "30303"),
    ("Brooklyn", "NY", "11201"),
    ("Madison", "WI", "53703"),
    ("Raleigh", "NC", "27601"),
    ("Tucson", "AZ", "85701"),
)
STREETS = ("Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Park Blvd", "Elm St", "Lake Rd")
CARRIER_CONTACT = {
    "UPS": ("+1 800 742 5877", "https://www.ups.com"),
    "USPS": ("+1 800 275 8777", "https://www.usps.com"),
    "FEDEX": ("+1 800 463 3339", "https://www.fedex.com"),
}

QUOTA_EXCEEDED = {
    "code": "QuotaExceeded",
    "message": "You exceeded your quota for the requested resource.",
    "details": "",
}
ACCESS_DENIED = "Access to requested resource is denied."


def flat_ts(moment: datetime) -> str:
    """Dates in flat-file reports carry an explicit offset."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def ups_tracking(rng: random.Random) -> str:
    """1Z + shipper (6) + service (2) + package (7) + check digit, valid per the UPS check-digit rule."""
    body = (
        "".join(rng.choices("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", k=6)) + "03" + "".join(rng.choices("0123456789", k=7))
    )
    total = sum((int(ch) if ch.isdigit() else (ord(ch) - 63) % 10) * (2 if i % 2 else 1) for i, ch in enumerate(body))
    return f"1Z{body}{(10 - total % 10) % 10}"


def usps_tracking(rng: random.Random) -> str:
    """A 22-digit IMpb number (9400 1...) with its mod-10 check digit."""
    body = "94001" + "".join(rng.choices("0123456789", k=16))
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return f"{body}{(10 - total % 10) % 10}"


def tracking_number_for(rng: random.Random, carrier: str) -> str:
    if carrier == "UPS":
        return ups_tracking(rng)
    if carrier == "USPS":
        return usps_tracking(rng)
    if carrier == "FEDEX":
        return "".join(rng.choices("0123456789", k=12))
    if carrier == "AMZL_US":
        return "TBA" + "".join(rng.choices("0123456789", k=12))
    return "".join(rng.choices("0123456789", k=14))


# ---------------------------------------------------------------- state


@dataclass
class Line:
    sku: str
    item_id: str
    quantity: int
    fnsku: str
    cancelled: int = 0
    unfulfillable: int = 0


@dataclass
class Package:
    number: int
    carrier: str
    tracking: str
    eta: datetime | None = None


@dataclass
class Shipment:
    shipment_id: str
    fc: tuple[str, str, str]
    status: str  # PENDING, SHIPPED, CANCELLED_BY_FULFILLER, CANCELLED_BY_SELLER
    items: list[list[int]]  # [line index, quantity]
    ship_date: datetime | None = None  # estimated while PENDING, actual once SHIPPED
    eta: datetime | None = None
    packages: list[Package] = field(default_factory=list)


@dataclass
class FulfillmentOrder:
    seq: int
    sfo_id: str
    marketplace_id: str
    displayable_id: str
    displayable_date: datetime
    comment: str
    speed: str
    address: dict
    lines: list[Line]
    status: str
    status_since: datetime  # statusUpdatedDate; progression runs from here
    received: datetime
    amazon_order_id: str
    action: str = "Ship"
    policy: str = "FillOrKill"
    emails: list[str] = field(default_factory=list)
    payment_information: list[dict] = field(default_factory=list)
    shipments: list[Shipment] = field(default_factory=list)
    cancel_ignored: bool = False
    tiktok_id: str | None = None
    aftn: str | None = None  # Amazon's early tracking number, shown from aftn_at on
    aftn_at: datetime | None = None
    # A living shop's own latencies: seconds per status, None = stalls there (else the settings')
    durations: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Report:
    seq: int
    report_id: str
    report_type: str
    marketplace_ids: list[str]
    start: datetime
    end: datetime
    created: datetime  # scenario clock
    created_wall: float
    options: dict = field(default_factory=dict)
    status: str = "IN_QUEUE"  # settled value once final (DONE, CANCELLED, FATAL)
    document_id: str | None = None
    cancelled_in_queue: bool = False  # cancelled by cancelReport: it never started processing
    too_soon: bool = False  # asked for within the regeneration interval of the last


@dataclass
class Document:
    document_id: str
    content: bytes  # gzip bytes
    rows: int


@dataclass
class AccessToken:
    expires_at: float  # wall clock
    grantless: bool
    scope: str | None = None


class AmazonMcfSandbox(PlatformSandbox):
    name = "amazon_mcf"
    page_cursor = "nextToken"

    def __init__(self, sandbox):
        super().__init__(sandbox)
        self.config = self.sandbox.settings.for_platform(self.name, {**DEFAULT_CREDENTIALS, **DEFAULT_OPTIONS})
        # Tokens survive scenario reloads: credentials do not change with the scenario.
        self.tokens: dict[str, AccessToken] = {}
        self._secret = secrets.token_bytes(32)
        self.orders: dict[str, FulfillmentOrder] = {}
        self.reports: dict[str, Report] = {}
        self.documents: dict[str, Document] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self._packages: dict[int, tuple[FulfillmentOrder, Shipment, Package]] = {}
        # every package's carrier number (None), and every AFTN with its order (it counts once shown)
        self._tracking_numbers: dict[str, FulfillmentOrder | None] = {}
        self._listing: list[FulfillmentOrder] = []  # creation order; list pages walk it
        self._seq = 0
        self._report_seq = 0

    # ------------------------------------------------------------ settings

    def quota(self, operation: str) -> tuple[float, int] | None:
        base = QUOTAS.get(operation)
        if base is None:
            return None
        rate, burst = self.config.get("quotas", {}).get(operation, base)
        scale = self.sandbox.settings.rate_scale
        return float(rate) * scale, max(1, round(burst * scale))

    def duration(self, status: str) -> timedelta:
        return timedelta(seconds=self.sandbox.settings.duration(self.name, status, DEFAULT_DURATIONS[status]))

    # ------------------------------------------------------------ loading

    def load(self, scenario: Scenario) -> None:
        self.orders = {}
        self.reports = {}
        self.documents = {}
        self._packages = {}
        self._tracking_numbers = {}
        self._listing = []
        self._seq = 0
        self._report_seq = 0
        self.buckets = {op: TokenBucket(*self.quota(op), clock=self.sandbox.clock.quota_seconds) for op in QUOTAS}
        now = self.now()
        for entry in scenario.orders:
            if entry.amazon_mcf is not None:
                self._add(self._load_order(entry, now))

    def _add(self, order: FulfillmentOrder) -> None:
        self.orders[order.sfo_id] = order
        self._listing.append(order)
        minutes = float(self.config["aftn_minutes"])
        single_item = sum(line.quantity for line in order.lines) == 1
        if minutes > 0 and single_item and order.address.get("countryCode") == "US":
            rng = self._rng(order.sfo_id, "aftn")
            order.aftn = "AFT" + "".join(rng.choices("0123456789", k=12))
            self._tracking_numbers[order.aftn] = order
            order.aftn_at = order.received + timedelta(minutes=minutes * math.exp(rng.gauss(0.0, 0.5)))

    def is_mcf_tracking(self, number: str) -> bool:
        """A tracking number of an MCF package, or an early tracking number Amazon has issued."""
        if number not in self._tracking_numbers:
            return False
        order = self._tracking_numbers[number]
        return order is None or self._aftn_shown(order, self.now()) == number

    def _aftn_shown(self, order: FulfillmentOrder, now: datetime) -> str | None:
        return order.aftn if order.aftn_at is not None and order.aftn_at <= now else None

    def aftn(self, sfo_id: str) -> str | None:
        """The order's early tracking number as of the clock (None: none, or not yet)."""
        order = self.orders.get(sfo_id)
        return None if order is None else self._aftn_shown(order, self.now())

    def _rng(self, *parts: Any) -> random.Random:
        return random.Random(":".join(str(p) for p in parts))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _address(self, key: str) -> dict:
        rng = self._rng(key, "address")
        city, state, postal = rng.choice(DESTINATIONS)
        # Buyer PII is not reproduced: a synthetic recipient per order.
        return {
            "name": f"Sandbox Buyer {rng.randrange(1000, 9999)}",
            "addressLine1": f"{rng.randrange(10, 9999)} {rng.choice(STREETS)}",
            "city": city,
            "stateOrRegion": state,
            "postalCode": postal,
            "countryCode": "US",
        }

    def _amazon_order_id(self, key: str) -> str:
        rng = self._rng(key, "amazon-order-id")
        return f"S01-{rng.randrange(10**6, 10**7)}-{rng.randrange(10**6, 10**7)}"

    def _fnsku(self, sku: str) -> str:
        return "X00" + hashlib.sha1(sku.encode()).hexdigest()[:7].upper()

    def _load_order(self, entry: ScenarioOrder, now: datetime) -> FulfillmentOrder:
        mcf = entry.amazon_mcf
        sfo_id = mcf["seller_fulfillment_order_id"]
        status = mcf["status"]
        shopify = entry.shopify[0] if entry.shopify else None
        displayable = mcf.get("displayable_order_id") or (
            shopify_order_name(shopify, entry.tiktok_id) if shopify else sfo_id
        )
        counts: dict[str, int] = {}
        for line in entry.tiktok["line_items"]:
            counts[line["seller_sku"]] = counts.get(line["seller_sku"], 0) + 1
        lines = [
            Line(sku=sku, item_id=f"{sfo_id}-{i + 1}", quantity=qty, fnsku=self._fnsku(sku))
            for i, (sku, qty) in enumerate(counts.items())
        ]

        before = REACHED_AFTER.get(status) or PROGRESSION[: PROGRESSION.index(status)]
        lead = sum((self.duration(s) for s in before), timedelta())
        if mcf.get("received_time"):
            received = parse_time(mcf["received_time"], "amazon_mcf.received_time")
            entered = received + lead
            if status in PROGRESSION:
                # The scenario's status holds at `now`: if the default timeline would already have
                # moved past it, the order is taken as stuck there until now (e.g. a late order).
                if entered > now or entered + self.duration(status) <= now:
                    entered = max(now, received)
            else:  # settled (shipped, cancelled, ...) by `now`, at a moment of scenario time
                entered = reached_by(received, lead, now)
        else:
            entered = now
            received = now - lead
        created = parse_time(entry.tiktok["create_time"], "tiktok.create_time")
        order = FulfillmentOrder(
            seq=self._next_seq(),
            sfo_id=sfo_id,
            marketplace_id=self.config["marketplace_id"],
            displayable_id=displayable,
            displayable_date=min(created, received),
            comment="Thank you for your order!",
            speed=mcf.get("shipping_speed", "Standard"),
            address=self._address(sfo_id),
            lines=lines,
            status=status,
            status_since=entered,
            received=received,
            amazon_order_id=self._amazon_order_id(sfo_id),
            cancel_ignored=bool(mcf.get("cancel_ignored")),
            tiktok_id=entry.tiktok_id,
        )

        given = mcf.get("shipments") or []
        active_count = sum(1 for s in given if s["status"] in ("PENDING", "SHIPPED")) or 1
        active_index = 0
        for k, spec in enumerate(given):
            shipment = self._new_shipment(order, k, [])
            shipment.status = spec["status"]
            if spec["status"] in ("PENDING", "SHIPPED"):
                shipment.items = [
                    [i, line.quantity] for i, line in enumerate(lines) if i % active_count == active_index
                ]
                active_index += 1
            else:
                shipment.items = [[i, line.quantity] for i, line in enumerate(lines)]
            if spec["status"] == "SHIPPED":
                shipment.ship_date = entered
                shipment.eta = entered + timedelta(days=TRANSIT_DAYS[order.speed])
            elif spec["status"] == "PENDING":
                shipment.ship_date = self._projected_ship(order)
                shipment.eta = shipment.ship_date + timedelta(days=TRANSIT_DAYS[order.speed])
            for p in spec.get("packages") or []:
                package = Package(
                    number=p["package_number"],
                    carrier=p["carrier_code"],
                    tracking=p["tracking_number"],
                    eta=shipment.eta,
                )
                if package.number in self._packages:
                    package.number = self._unique_package_number(order, len(self._packages))
                shipment.packages.append(package)
                self._packages[package.number] = (order, shipment, package)
                self._tracking_numbers[package.tracking] = None
            order.shipments.append(shipment)
        self._settle(order, status, entered)
        return order

    # ------------------------------------------------------------ state machine

    def _projected_ship(self, order: FulfillmentOrder) -> datetime:
        """When an order still in progress is expected to leave the fulfillment center."""
        if order.status not in PROGRESSION:
            return order.status_since
        moment = order.status_since
        for status in PROGRESSION[PROGRESSION.index(order.status) :]:
            moment += self.duration(status)
        return moment

    def _new_shipment(self, order: FulfillmentOrder, index: int, items: list[list[int]]) -> Shipment:
        rng = self._rng(order.sfo_id, "shipment", index)
        shipment_id = "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz0123456789", k=9))
        return Shipment(shipment_id=shipment_id, fc=rng.choice(FULFILLMENT_CENTERS), status="PENDING", items=items)

    def _unique_package_number(self, order: FulfillmentOrder, salt: int) -> int:
        rng = self._rng(order.sfo_id, "package", salt)
        while True:
            number = rng.randrange(100_000_000, 2_000_000_000)
            if number not in self._packages:
                return number

    def _remaining(self, order: FulfillmentOrder) -> list[list[int]]:
        """Line quantities not yet in a pending or shipped shipment, nor cancelled or unfulfillable."""
        taken = [0] * len(order.lines)
        for shipment in order.shipments:
            if shipment.status in ("PENDING", "SHIPPED"):
                for index, qty in shipment.items:
                    taken[index] += qty
        return [
            [i, line.quantity - line.cancelled - line.unfulfillable - taken[i]]
            for i, line in enumerate(order.lines)
            if line.quantity - line.cancelled - line.unfulfillable - taken[i] > 0
        ]

    def _shipped_quantity(self, order: FulfillmentOrder, index: int) -> int:
        return sum(qty for s in order.shipments if s.status == "SHIPPED" for i, qty in s.items if i == index)

    def _open_shipment(self, order: FulfillmentOrder, at: datetime) -> None:
        """A pending shipment for whatever quantity no shipment carries yet (picking starts, or Amazon
        plans the package its early tracking number is issued for)."""
        remaining = self._remaining(order)
        if remaining:
            shipment = self._new_shipment(order, len(order.shipments), remaining)
            shipment.ship_date = (
                self._projected_ship(order) if order.status in CANCELLABLE else at + self.duration("Processing")
            )
            shipment.eta = shipment.ship_date + timedelta(days=TRANSIT_DAYS[order.speed])
            order.shipments.append(shipment)

    def _ship(self, order: FulfillmentOrder, at: datetime, partial: bool) -> None:
        if not any(s.status == "PENDING" for s in order.shipments):
            self._open_shipment(order, at)
        pending = [s for s in order.shipments if s.status == "PENDING"]
        if partial and pending:
            # Part of the order could not be fulfilled: one unit of the last line drops out.
            last = pending[-1]
            index, qty = last.items[-1] if last.items else (0, 0)
            if qty > 1:
                last.items[-1][1] -= 1
                order.lines[index].unfulfillable += 1
            elif last.items:
                last.items.pop()
                order.lines[index].unfulfillable += qty
            if not last.items:
                last.status = "CANCELLED_BY_FULFILLER"
                last.ship_date = last.eta = None
                pending.pop()
        carriers = self.config["carriers"]
        for shipment in pending:
            shipment.status = "SHIPPED"
            shipment.ship_date = at
            shipment.eta = at + timedelta(days=TRANSIT_DAYS[order.speed])
        for k, shipment in enumerate(order.shipments):
            if shipment.status != "SHIPPED":
                continue
            if not shipment.packages:
                rng = self._rng(order.sfo_id, "carrier", k)
                carrier = rng.choices(list(carriers), weights=list(carriers.values()))[0]
                package = Package(
                    number=self._unique_package_number(order, k),
                    carrier=carrier,
                    tracking=tracking_number_for(rng, carrier),
                    eta=shipment.eta,
                )
                shipment.packages.append(package)
                self._packages[package.number] = (order, shipment, package)
                self._tracking_numbers[package.tracking] = None
            for package in shipment.packages:
                package.eta = package.eta or shipment.eta
            self._notify(order, "Shipment", at, shipment)

    def _notify(self, order: FulfillmentOrder, event_type: str, at: datetime, shipment=None) -> None:
        """FULFILLMENT_ORDER_STATUS to the shop's notification queue (if subscribed)."""
        body = {
            "SellerId": self.config["seller_id"],
            "EventType": event_type,
            "StatusUpdatedDateTime": ts(at),
            "SellerFulfillmentOrderId": order.sfo_id,
            "FulfillmentOrderStatus": order.status,
        }
        if shipment is not None:
            body["FulfillmentShipment"] = {
                "AmazonShipmentId": shipment.shipment_id,
                "FulfillmentShipmentStatus": shipment.status,
                "EstimatedArrivalDateTime": ts(shipment.eta) if shipment.eta else None,
                "FulfillmentShipmentPackages": [
                    {"PackageNumber": p.number, "CarrierCode": p.carrier, "TrackingNumber": p.tracking}
                    for p in shipment.packages
                ],
            }
        self.sandbox.outbox.emit("amazon_mcf", event_type, body)

    def _settle(self, order: FulfillmentOrder, status: str, at: datetime) -> None:
        """Enter `status` at `at` and make items and shipments agree with it."""
        order.status = status
        order.status_since = at
        self._notify(order, "Order", at)
        if status == "Processing":
            if not any(s.status == "PENDING" for s in order.shipments):
                self._open_shipment(order, at)
        elif status in ("Complete", "CompletePartialled"):
            self._ship(order, at, partial=status == "CompletePartialled")
        elif status in ("Cancelled", "Unfulfillable", "Invalid"):
            for shipment in order.shipments:
                if shipment.status == "PENDING":
                    shipment.status = "CANCELLED_BY_SELLER" if status == "Cancelled" else "CANCELLED_BY_FULFILLER"
                    shipment.ship_date = shipment.eta = None
            for i, line in enumerate(order.lines):
                left = line.quantity - line.cancelled - line.unfulfillable - self._shipped_quantity(order, i)
                if status == "Cancelled":
                    line.cancelled += max(0, left)
                else:
                    line.unfulfillable += max(0, left)

    def _advance(self, order: FulfillmentOrder, now: datetime) -> None:
        if self._aftn_shown(order, now) and not order.shipments and order.status in CANCELLABLE:
            self._open_shipment(order, order.aftn_at)  # the AFTN comes on the package Amazon plans
        while order.status in PROGRESSION:
            if order.action == "Hold" and order.status == "Received":
                if now >= order.status_since + HOLD_AUTO_CANCEL:
                    self._settle(order, "Cancelled", order.status_since + HOLD_AUTO_CANCEL)
                return
            own = order.durations.get(order.status, 0.0)
            if own is None:
                return  # stalled: waits for a person at Amazon
            due = order.status_since + (
                timedelta(seconds=own) if order.status in order.durations else self.duration(order.status)
            )
            if due > now:
                return
            self._settle(order, NEXT_STATUS[order.status], due)

    # ------------------------------------------------------------ a living shop (life.py)
    def add_fulfillment_order(self, entry: ScenarioOrder, durations: dict[str, float | None]) -> None:
        """The Shopify app hands the order to MCF now (status New)."""
        order = self._load_order(entry, self.now())
        order.durations = dict(durations)
        self._add(order)

    def fail(self, sfo_id: str, status: str) -> None:
        """The fulfillment center gives up on an order still in progress (Unfulfillable or Invalid)."""
        order = self.orders[sfo_id]
        self._advance(order, self.now())
        if order.status in PROGRESSION:
            self._settle(order, status, self.now())

    def shipped(self, sfo_id: str) -> dict | None:
        """When the order first shipped and with which packages, as of the clock (None: not yet)."""
        order = self.orders.get(sfo_id)
        if order is None:
            return None
        self._advance(order, self.now())
        sent = [s for s in order.shipments if s.status == "SHIPPED" and s.packages]
        if not sent:
            return None
        return {
            "at": min(s.ship_date for s in sent),
            "status": order.status,
            "packages": [(p.carrier, p.tracking) for s in sent for p in s.packages],
            "aftns": [order.aftn] if self._aftn_shown(order, self.now()) else [],
        }

    def _advance_all(self, now: datetime) -> None:
        for order in self.orders.values():
            self._advance(order, now)

    # ------------------------------------------------------------ JSON views

    def _status_text(self, status: str) -> str:
        return status.upper() if self.config["upper_case_statuses"] else status

    def _order_json(self, order: FulfillmentOrder) -> dict:
        doc = {
            "sellerFulfillmentOrderId": order.sfo_id,
            "marketplaceId": order.marketplace_id,
            "displayableOrderId": order.displayable_id,
            "displayableOrderDate": ts(order.displayable_date),
            "displayableOrderComment": order.comment,
            "shippingSpeedCategory": order.speed,
            "destinationAddress": dict(order.address),
            "fulfillmentAction": order.action,
            "fulfillmentPolicy": order.policy,
            "receivedDate": ts(order.received),
            "fulfillmentOrderStatus": self._status_text(order.status),
            "statusUpdatedDate": ts(order.status_since),
        }
        if order.emails:
            doc["notificationEmails"] = list(order.emails)
        return doc

    def _result_json(self, order: FulfillmentOrder) -> dict:
        items = []
        projected = self._projected_ship(order)
        for i, line in enumerate(order.lines):
            item = {
                "sellerSku": line.sku,
                "sellerFulfillmentOrderItemId": line.item_id,
                "quantity": line.quantity,
                "fulfillmentNetworkSku": line.fnsku,
                "orderItemDisposition": "Sellable",
                "cancelledQuantity": line.cancelled,
                "unfulfillableQuantity": line.unfulfillable,
            }
            carrying = [
                s
                for s in order.shipments
                if s.status in ("PENDING", "SHIPPED") and any(index == i for index, _ in s.items)
            ]
            if carrying:
                item["estimatedShipDate"] = ts(carrying[0].ship_date)
                item["estimatedArrivalDate"] = ts(carrying[0].eta)
            elif order.status in PROGRESSION:
                item["estimatedShipDate"] = ts(projected)
                item["estimatedArrivalDate"] = ts(projected + timedelta(days=TRANSIT_DAYS[order.speed]))
            items.append(item)
        shipments = []
        for shipment in order.shipments:
            doc: dict = {
                "amazonShipmentId": shipment.shipment_id,
                "fulfillmentCenterId": shipment.fc[0],
                "fulfillmentShipmentStatus": shipment.status,
            }
            if shipment.status in ("PENDING", "SHIPPED"):
                doc["shippingDate"] = ts(shipment.ship_date)
                doc["estimatedArrivalDate"] = ts(shipment.eta)
            first_package = shipment.packages[0].number if shipment.packages else None
            doc["fulfillmentShipmentItem"] = []
            for index, qty in shipment.items:
                line = order.lines[index]
                entry = {"sellerSku": line.sku, "sellerFulfillmentOrderItemId": line.item_id, "quantity": qty}
                if first_package is not None:
                    entry["packageNumber"] = first_package
                doc["fulfillmentShipmentItem"].append(entry)
            aftn = self._aftn_shown(order, self.now())
            early = {"amazonFulfillmentTrackingNumber": aftn} if aftn else {}
            if shipment.packages:
                doc["fulfillmentShipmentPackage"] = [
                    {
                        "packageNumber": p.number,
                        "carrierCode": p.carrier,
                        "trackingNumber": p.tracking,
                        **early,
                        **({"estimatedArrivalDate": ts(p.eta)} if p.eta else {}),
                    }
                    for p in shipment.packages
                ]
            elif early and shipment.status == "PENDING":  # before any carrier: Amazon's number alone
                doc["fulfillmentShipmentPackage"] = [
                    {"packageNumber": self._unique_package_number(order, -1), "carrierCode": "AMZN_US", **early}
                ]
            shipments.append(doc)
        result = {
            "fulfillmentOrder": self._order_json(order),
            "fulfillmentOrderItems": items,
            "fulfillmentShipments": shipments,
            "returnItems": [],
            "returnAuthorizations": [],
        }
        if order.payment_information:
            result["paymentInformation"] = order.payment_information
        return result

    def _tracking_json(self, order: FulfillmentOrder, shipment: Shipment, package: Package, now: datetime) -> dict:
        dest = order.address
        dest_addr = {
            "city": dest.get("city", ""),
            "state": dest.get("stateOrRegion", ""),
            "country": dest.get("countryCode", ""),
        }
        doc: dict = {
            "packageNumber": package.number,
            "trackingNumber": package.tracking,
            "customerTrackingLink": f"https://www.swiship.com/track?id={package.tracking}",
            "carrierCode": package.carrier,
            "shipToAddress": dest_addr,
        }
        if package.carrier in CARRIER_CONTACT:
            doc["carrierPhoneNumber"], doc["carrierURL"] = CARRIER_CONTACT[package.carrier]
        events = []
        if shipment.status == "SHIPPED" and shipment.ship_date is not None:
            ship, eta = shipment.ship_date, package.eta or shipment.eta
            doc["shipDate"] = ts(ship)
            doc["estimatedArrivalDate"] = ts(eta)
            fc_addr = {"city": shipment.fc[1], "state": shipment.fc[2], "country": "US"}
            hub_city, hub_state = self._rng(package.number, "hub").choice(HUBS)
            hub = {"city": hub_city, "state": hub_state, "country": "US"}
            timeline = [
                (ship - timedelta(hours=2), "EVENT_101", fc_addr, "Carrier notified to pick up package."),
                (ship, "EVENT_102", fc_addr, "Shipment picked up."),
                (ship + timedelta(hours=5), "EVENT_201", hub, "Arrival scan."),
                (ship + timedelta(hours=9), "EVENT_202", hub, "Departure scan."),
                (eta - timedelta(hours=10), "EVENT_201", dest_addr, "Arrival scan."),
                (eta - timedelta(hours=5), "EVENT_302", dest_addr, "Out for delivery."),
                (eta, "EVENT_301", dest_addr, "Delivered."),
            ]
            events = [e for e in timeline if e[0] <= now]
        if not events:
            status, text = "UNKNOWN", "Tracking information is not yet available."
        elif events[-1][1] == "EVENT_301":
            status, text = "DELIVERED", "Delivered to the destination address."
            doc["additionalLocationInfo"] = "FRONT_DOOR"
        elif events[-1][1] == "EVENT_302":
            status, text = "OUT_FOR_DELIVERY", "Out for delivery."
        else:
            status, text = "IN_TRANSIT", "In transit."
        doc["currentStatus"] = status
        doc["currentStatusDescription"] = text
        doc["trackingEvents"] = [
            {"eventDate": ts(t), "eventAddress": dict(addr), "eventCode": code, "eventDescription": description}
            for t, code, addr, description in reversed(events)
        ]
        return doc

    # ------------------------------------------------------------ responses

    def _request_id(self, request: Request) -> str:
        rid = getattr(request.state, "request_id", None)
        if rid is None:
            rid = request.state.request_id = str(uuid.uuid4())
        return rid

    def _respond(
        self, request: Request, body: Any, status: int = 200, operation: str | None = None, empty: bool = False
    ) -> Response:
        headers = {"x-amzn-RequestId": self._request_id(request)}
        quota = self.quota(operation) if operation else None
        # The models declare x-amzn-RateLimit-Limit on 200/202/400/404 only.
        if quota is not None and status in (200, 202, 400, 404):
            headers["x-amzn-RateLimit-Limit"] = str(round(quota[0], 6))
        if empty:
            return Response(status_code=status, headers=headers)
        return JSONResponse(body, status_code=status, headers=headers)

    def _error(
        self, request: Request, status: int, code: str, message: str, details: str = "", operation: str | None = None
    ) -> Response:
        return self._respond(
            request, {"errors": [{"code": code, "message": message, "details": details}]}, status, operation
        )

    def _invalid(self, request: Request, message: str, operation: str) -> Response:
        return self._error(request, 400, "InvalidInput", message, operation=operation)

    def throttled_response(self, retry_after: float = 1.0) -> Response:
        # No Retry-After and no x-amzn-RateLimit-Limit on 429, as the models declare.
        return JSONResponse(
            {"errors": [dict(QUOTA_EXCEEDED)]}, status_code=429, headers={"x-amzn-RequestId": str(uuid.uuid4())}
        )

    def server_error_response(self, status: int) -> Response:
        if status == 503:
            error = {
                "code": "ServiceUnavailable",
                "message": "Service is temporarily unavailable. Please try again.",
                "details": "",
            }
        else:
            error = {
                "code": "InternalFailure",
                "message": "We encountered an internal error. Please try again.",
                "details": "",
            }
        return JSONResponse({"errors": [error]}, status_code=status, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    def expire_tokens(self) -> None:
        for token in self.tokens.values():
            token.expires_at = 0.0

    def _gate(self, request: Request, operation: str, body: Any = None) -> Response | None:
        """Authenticate, then take a token from the operation's bucket; None when the call may proceed."""
        request.state.operation = operation
        token = request.headers.get("x-amz-access-token")
        refusal = None
        if not token:
            refusal = (403, "Unauthorized", "Access token is missing in the request header.")
        elif token not in self.tokens:
            refusal = (403, "Unauthorized", "The access token you provided is revoked, malformed or invalid.")
        elif self.tokens[token].expires_at <= self.wall():
            refusal = (403, "Unauthorized", "The access token you provided has expired.")
        elif self.tokens[token].grantless:
            refusal = (403, "Unauthorized", "")
        if refusal is not None:
            status, code, details = refusal
            response = self._error(request, status, code, ACCESS_DENIED, details)
            if operation in WRITE_OPERATIONS:
                self.record_write(
                    request, body, status, code, request_id=self._request_id(request), operation=operation
                )
            return response
        bucket = self.buckets.get(operation)
        if bucket is not None and bucket.take() > 0:
            response = self.throttled_response()
            request.state.request_id = response.headers["x-amzn-RequestId"]
            if operation in WRITE_OPERATIONS:
                self.record_write(
                    request, body, 429, "QuotaExceeded", request_id=request.state.request_id, operation=operation
                )
            return response
        return None

    def _write(self, request: Request, body: Any, response: Response, operation: str) -> Response:
        outcome = "ok"
        if response.status_code >= 400:
            try:
                outcome = json.loads(response.body)["errors"][0]["code"]
            except (ValueError, KeyError, IndexError, TypeError):
                outcome = str(response.status_code)
        self.record_write(
            request,
            body,
            response.status_code,
            outcome,
            request_id=response.headers.get("x-amzn-RequestId"),
            operation=operation,
        )
        return response

    # ------------------------------------------------------------ apps

    def apps(self) -> dict[str, FastAPI]:
        return {"amazon_mcf": self._sp_api_app(), "amazon_lwa": self._lwa_app()}

    def _lwa_app(self) -> FastAPI:
        # OAuth2's error object (RFC 6749 section 5.2), as LWA answers its errors
        app = self.sandbox.new_app(
            self.name,
            "Login with Amazon (sandbox)",
            unrouted=lambda request, exc: JSONResponse(
                {"error": "invalid_request", "error_description": "The request could not be routed"},
                status_code=404 if exc.status_code in (404, 405) else exc.status_code,
            ),
        )

        @app.post("/auth/o2/token")
        async def token(request: Request):
            request.state.operation = "lwa:token"
            return await self._token(request)

        return app

    def _sp_api_app(self) -> FastAPI:
        app = self.sandbox.new_app(self.name, "Amazon Selling Partner API (sandbox)")

        @app.exception_handler(Exception)
        async def internal(request: Request, exc: Exception):
            return self.server_error_response(500)

        @app.get(f"{FBA}/fulfillmentOrders")
        async def list_orders(request: Request):
            return self._list_orders(request)

        @app.post(f"{FBA}/fulfillmentOrders")
        async def create_order(request: Request):
            return await self._create_order(request)

        @app.get(f"{FBA}/fulfillmentOrders/{{sfo_id}}")
        async def get_order(sfo_id: str, request: Request):
            return self._get_order(request, sfo_id)

        @app.put(f"{FBA}/fulfillmentOrders/{{sfo_id}}/cancel")
        async def cancel_order(sfo_id: str, request: Request):
            return self._cancel_order(request, sfo_id)

        @app.put(f"{FBA}/fulfillmentOrders/{{sfo_id}}/status")
        async def update_status(sfo_id: str, request: Request):
            return await self._update_status(request, sfo_id)

        @app.get(f"{FBA}/tracking")
        async def tracking(request: Request):
            return self._tracking(request)

        @app.post(f"{REPORTS}/reports")
        async def create_report(request: Request):
            return await self._create_report(request)

        @app.get(f"{REPORTS}/reports")
        async def get_reports(request: Request):
            return self._get_reports(request)

        @app.get(f"{REPORTS}/reports/{{report_id}}")
        async def get_report(report_id: str, request: Request):
            return self._get_report(request, report_id)

        @app.delete(f"{REPORTS}/reports/{{report_id}}")
        async def cancel_report(report_id: str, request: Request):
            return self._cancel_report(request, report_id)

        @app.get(f"{REPORTS}/documents/{{document_id}}")
        async def get_document(document_id: str, request: Request):
            return self._get_document(request, document_id)

        @app.get(f"{DOCUMENTS}/{{document_id}}")
        async def download(document_id: str, request: Request):
            return self._download(request, document_id)

        @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        async def not_simulated(path: str, request: Request):
            request.state.operation = "unknown"
            return self._error(
                request, 404, "NotFound", "Resource not found.", f"/{path} is not simulated by this sandbox."
            )

        return app

    # ------------------------------------------------------------ LWA

    async def _token(self, request: Request) -> Response:
        raw = await request.body()
        headers = {"x-amzn-RequestId": str(uuid.uuid4()), "Cache-Control": "no-cache, no-store", "Pragma": "no-cache"}

        def answer(status: int, body: dict, params: Any) -> Response:
            self.record_write(
                request,
                params,
                status,
                body.get("error", "ok"),
                request_id=headers["x-amzn-RequestId"],
                operation="lwa:token",
            )
            return JSONResponse(body, status_code=status, headers=headers, media_type="application/json;charset=UTF-8")

        def oauth_error(status: int, error: str, description: str, params: Any) -> Response:
            return answer(status, {"error_description": description, "error": error}, params)

        try:
            if "json" in request.headers.get("content-type", ""):
                params = json.loads(raw or b"{}")
                if not isinstance(params, dict):
                    raise ValueError
                params = {k: str(v) for k, v in params.items()}
            else:
                params = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        except (ValueError, UnicodeDecodeError):
            return oauth_error(400, "invalid_request", "Malformed request", None)
        grant = params.get("grant_type")
        if not grant:
            return oauth_error(
                400, "invalid_request", "The request is missing a required parameter : grant_type", params
            )
        if grant not in ("refresh_token", "client_credentials", "authorization_code"):
            return oauth_error(
                400,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server",
                params,
            )
        for key in ("client_id", "client_secret"):
            if not params.get(key):
                return oauth_error(
                    400, "invalid_request", f"The request is missing a required parameter : {key}", params
                )
        if not (
            hmac.compare_digest(params["client_id"], self.config["client_id"])
            and hmac.compare_digest(params["client_secret"], self.config["client_secret"])
        ):
            return oauth_error(401, "invalid_client", "Client authentication failed", params)
        lifetime = int(self.config["token_lifetime_seconds"])
        access = "Atza|" + secrets.token_urlsafe(96)
        if grant == "refresh_token":
            if not params.get("refresh_token"):
                return oauth_error(
                    400, "invalid_request", "The request is missing a required parameter : refresh_token", params
                )
            if not hmac.compare_digest(params["refresh_token"], self.config["refresh_token"]):
                return oauth_error(
                    400, "invalid_grant", "The request has an invalid grant parameter : refresh_token", params
                )
            self.tokens[access] = AccessToken(expires_at=self.wall() + lifetime, grantless=False)
            return answer(
                200,
                {
                    "access_token": access,
                    "refresh_token": self.config["refresh_token"],
                    "token_type": "bearer",
                    "expires_in": lifetime,
                },
                params,
            )
        if grant == "client_credentials":
            scope = params.get("scope")
            if not scope:
                return oauth_error(
                    400, "invalid_request", "The request is missing a required parameter : scope", params
                )
            if scope not in GRANTLESS_SCOPES:
                return oauth_error(400, "invalid_scope", "The request has an invalid parameter : scope", params)
            self.tokens[access] = AccessToken(expires_at=self.wall() + lifetime, grantless=True, scope=scope)
            return answer(
                200, {"access_token": access, "scope": scope, "token_type": "bearer", "expires_in": lifetime}, params
            )
        # authorization_code: the sandbox has no consent page, so no code is ever valid.
        if not params.get("code"):
            return oauth_error(400, "invalid_request", "The request is missing a required parameter : code", params)
        return oauth_error(400, "invalid_grant", "The request has an invalid grant parameter : code", params)

    # ------------------------------------------------------------ Fulfillment Outbound

    def _encode_token(self, data: dict) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        mac = hmac.new(self._secret, raw, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")

    def _decode_token(self, token: str) -> dict | None:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        mac, raw = blob[:12], blob[12:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, raw, hashlib.sha256).digest()[:12]):
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _list_orders(self, request: Request) -> Response:
        op = "listAllFulfillmentOrders"
        if (refused := self._gate(request, op)) is not None:
            return refused
        query = request.query_params
        since: datetime | None = None
        after = 0
        if query.get("nextToken"):
            # The token carries the filter and the last order seen: pages walk a fixed order
            # (creation sequence), so a full pass is complete and never repeats an order.
            data = self._decode_token(query["nextToken"])
            if data is None or "after" not in data:
                return self._invalid(request, "Invalid nextToken", op)
            after = int(data["after"])
            since = datetime.fromisoformat(data["since"]) if data.get("since") else None
        elif query.get("queryStartDate") is not None:
            try:
                since = parse_time(query["queryStartDate"], "queryStartDate")
            except (ScenarioError, OverflowError):  # OverflowError: an offset before year 1 in UTC
                return self._invalid(request, "timestamp must follow ISO8601", op)
        now = self.now()
        size = int(self.config["page_size"])
        page: list[FulfillmentOrder] = []
        more = False
        start = bisect.bisect_right(self._listing, after, key=lambda o: o.seq)
        for order in self._listing[start:]:
            self._advance(order, now)
            if since is not None and order.status_since < since:
                continue
            if len(page) == size:
                more = True
                break
            page.append(order)
        payload: dict = {"fulfillmentOrders": [self._order_json(o) for o in page]}
        if more:
            # isoformat, not `ts`: it keeps four digits for any year, so every token reads back
            payload["nextToken"] = self._encode_token(
                {"since": since.isoformat() if since else None, "after": page[-1].seq}
            )
        return self._respond(request, {"payload": payload}, 200, op)

    def _find(self, request: Request, sfo_id: str, op: str) -> FulfillmentOrder | Response:
        order = self.orders.get(sfo_id)
        if order is None:
            return self._invalid(request, f"Requested order '{sfo_id}' not found", op)
        self._advance(order, self.now())
        return order

    def _get_order(self, request: Request, sfo_id: str) -> Response:
        op = "getFulfillmentOrder"
        if (refused := self._gate(request, op)) is not None:
            return refused
        found = self._find(request, sfo_id, op)
        if isinstance(found, Response):
            return found
        return self._respond(request, {"payload": self._result_json(found)}, 200, op)

    def _cancel_order(self, request: Request, sfo_id: str) -> Response:
        op = "cancelFulfillmentOrder"
        if (refused := self._gate(request, op)) is not None:
            return refused
        found = self._find(request, sfo_id, op)
        if isinstance(found, Response):
            return self._write(request, None, found, op)
        order = found
        reason = None
        if order.status == "Cancelled":
            reason = "DuplicateCancelRequest"
        elif order.status not in CANCELLABLE or any(
            s.status == "SHIPPED" or (s.status == "PENDING" and order.status not in CANCELLABLE)
            for s in order.shipments
        ):
            reason = "OrderNotCancellable"
        if reason:
            response = self._invalid(
                request, f"Value {sfo_id} for parameter SellerFulfillmentOrderId is invalid. Reason: {reason}.", op
            )
            return self._write(request, None, response, op)
        if not order.cancel_ignored:
            self._settle(order, "Cancelled", self.now())
        return self._write(request, None, self._respond(request, {}, 200, op), op)

    async def _json_body(self, request: Request) -> tuple[Any, str | None]:
        raw = await request.body()
        try:
            return json.loads(raw or b"null"), None
        except ValueError:
            return None, "The request body is not valid JSON."

    async def _update_status(self, request: Request, sfo_id: str) -> Response:
        op = "submitFulfillmentOrderStatusUpdate"
        body, problem = await self._json_body(request)
        if (refused := self._gate(request, op, body)) is not None:
            return refused
        if problem is None and (not isinstance(body, dict) or body.get("fulfillmentOrderStatus") not in STATUSES):
            value = body.get("fulfillmentOrderStatus", "") if isinstance(body, dict) else ""
            problem = f"Value {value} for parameter FulfillmentOrderStatus is invalid. Reason: InvalidValue."
        if problem:
            return self._write(request, body, self._invalid(request, problem, op), op)
        found = self._find(request, sfo_id, op)
        if isinstance(found, Response):
            return self._write(request, body, found, op)
        order, target = found, body["fulfillmentOrderStatus"]
        if (
            order.status not in PROGRESSION
            or target == "New"
            or (target in PROGRESSION and PROGRESSION.index(target) < PROGRESSION.index(order.status))
        ):
            response = self._invalid(
                request,
                f"Value {target} for parameter FulfillmentOrderStatus is invalid. "
                f"Reason: cannot move an order from {order.status} to {target}.",
                op,
            )
            return self._write(request, body, response, op)
        if target != order.status:
            self._settle(order, target, self.now())
        return self._write(request, body, self._respond(request, {}, 200, op), op)

    def _tracking(self, request: Request) -> Response:
        op = "getPackageTrackingDetails"
        if (refused := self._gate(request, op)) is not None:
            return refused
        value = request.query_params.get("packageNumber", "")
        try:
            number = int(value)
            if not -(2**31) <= number < 2**31:
                raise ValueError
        except ValueError:
            return self._invalid(
                request, f"Value {value} for parameter packageNumber is invalid. Reason: InvalidValue.", op
            )
        now = self.now()
        if number not in self._packages:
            self._advance_all(now)
        if number not in self._packages:
            return self._invalid(request, f"Requested package '{number}' not found", op)
        order, shipment, package = self._packages[number]
        self._advance(order, now)
        return self._respond(request, {"payload": self._tracking_json(order, shipment, package, now)}, 200, op)

    def _check_create(self, body: Any) -> str | None:
        """The first problem with a createFulfillmentOrder body, in the platform's message style."""

        def bad(param: str, value: Any = "") -> str:
            return f"Value {value} for parameter {param} is invalid. Reason: InvalidValue."

        if not isinstance(body, dict):
            return "The request body is not a JSON object."
        for key, limit in (
            ("sellerFulfillmentOrderId", 40),
            ("displayableOrderId", 40),
            ("displayableOrderComment", 750),
        ):
            value = body.get(key)
            if not isinstance(value, str) or not value.strip() or len(value) > limit:
                return bad(key[0].upper() + key[1:], value if isinstance(value, str) else "")
        try:
            parse_time(body.get("displayableOrderDate"), "displayableOrderDate")
        except ScenarioError:
            return "timestamp must follow ISO8601"
        if body.get("shippingSpeedCategory") not in SPEEDS:
            return bad("ShippingSpeedCategory", body.get("shippingSpeedCategory") or "")
        for key, allowed in (
            ("fulfillmentAction", ("Ship", "Hold")),
            ("fulfillmentPolicy", ("FillOrKill", "FillAll", "FillAllAvailable")),
        ):
            if key in body and body[key] not in allowed:
                return bad(key[0].upper() + key[1:], body[key])
        if "marketplaceId" in body and body["marketplaceId"] != self.config["marketplace_id"]:
            return bad("MarketplaceId", body["marketplaceId"])
        address = body.get("destinationAddress")
        if not isinstance(address, dict):
            return bad("DestinationAddress")
        for key in ("name", "addressLine1", "countryCode", "postalCode"):
            if not isinstance(address.get(key), str) or not address[key].strip():
                return bad(key[0].upper() + key[1:], address.get(key) or "")
        if address["countryCode"] != "JP" and not address.get("city"):
            return bad("City")
        items = body.get("items")
        if not isinstance(items, list) or not 1 <= len(items) <= 100:
            return bad("Items")
        seen: set[str] = set()
        units = 0
        for item in items:
            if not isinstance(item, dict):
                return bad("Items")
            for key in ("sellerSku", "sellerFulfillmentOrderItemId"):
                if not isinstance(item.get(key), str) or not item[key] or len(item[key]) > 50:
                    return bad(key[0].upper() + key[1:], item.get(key) or "")
            if item["sellerFulfillmentOrderItemId"] in seen:
                return bad("SellerFulfillmentOrderItemId", item["sellerFulfillmentOrderItemId"])
            seen.add(item["sellerFulfillmentOrderItemId"])
            qty = item.get("quantity")
            if isinstance(qty, bool) or not isinstance(qty, int) or qty < 1:
                return bad("Quantity", qty if qty is not None else "")
            units += qty
        if units > 250:
            return bad("Quantity", units)
        return None

    async def _create_order(self, request: Request) -> Response:
        op = "createFulfillmentOrder"
        body, problem = await self._json_body(request)
        if (refused := self._gate(request, op, body)) is not None:
            return refused
        problem = problem or self._check_create(body)
        if problem:
            return self._write(request, body, self._invalid(request, problem, op), op)
        sfo_id = body["sellerFulfillmentOrderId"]
        if sfo_id in self.orders:
            response = self._invalid(
                request, f"A create request already exists for MerchantFulfillmentOrderId : {sfo_id}", op
            )
            return self._write(request, body, response, op)
        now = self.now()
        address = {k: v for k, v in body["destinationAddress"].items() if isinstance(v, str)}
        lines = [
            Line(
                sku=i["sellerSku"],
                item_id=i["sellerFulfillmentOrderItemId"],
                quantity=i["quantity"],
                fnsku=i.get("fulfillmentNetworkSku") or self._fnsku(i["sellerSku"]),
            )
            for i in body["items"]
        ]
        order = FulfillmentOrder(
            seq=self._next_seq(),
            sfo_id=sfo_id,
            marketplace_id=self.config["marketplace_id"],
            displayable_id=body["displayableOrderId"].strip(),
            displayable_date=parse_time(body["displayableOrderDate"], "displayableOrderDate"),
            comment=body["displayableOrderComment"],
            speed=body["shippingSpeedCategory"],
            address=address,
            lines=lines,
            status="New",
            status_since=now,
            received=now,
            amazon_order_id=self._amazon_order_id(sfo_id),
            action=body.get("fulfillmentAction", "Ship"),
            policy=body.get("fulfillmentPolicy", "FillOrKill"),
            emails=[e for e in body.get("notificationEmails") or [] if isinstance(e, str)],
            payment_information=[p for p in body.get("paymentInformation") or [] if isinstance(p, dict)],
        )
        self._add(order)
        return self._write(request, body, self._respond(request, {}, 200, op), op)

    # ------------------------------------------------------------ Reports

    def _report_state(self, report: Report) -> str:
        """Processing runs on the wall clock (short delays); the content follows the scenario clock."""
        if report.status in ("CANCELLED", "DONE", "FATAL"):
            return report.status
        elapsed = self.wall() - report.created_wall
        queue = float(self.config["report_queue_seconds"])
        if elapsed < queue:
            return "IN_QUEUE"
        if elapsed < queue + float(self.config["report_processing_seconds"]):
            return "IN_PROGRESS"
        self._finish_report(report)
        return report.status

    def _finish_report(self, report: Report) -> None:
        if report.end - report.start > MAX_REPORT_RANGE:
            report.status = "FATAL"
            return
        if report.too_soon:
            report.status = "CANCELLED"
            return
        now = self.now()
        self._advance_all(now)
        rows = []
        for order in self.orders.values():
            for k, shipment in enumerate(order.shipments):
                if shipment.status != "SHIPPED" or not report.start <= shipment.ship_date <= min(report.end, now):
                    continue
                for n, (index, qty) in enumerate(shipment.items):
                    rows.append(self._report_row(order, shipment, k, n, index, qty))
        if not rows:
            # "automatic cancellation if there is no data to return"
            report.status = "CANCELLED"
            return
        lines = ["\t".join(SHIPMENT_REPORT_COLUMNS)] + [
            "\t".join(row[c] for c in SHIPMENT_REPORT_COLUMNS) for row in rows
        ]
        document_id = f"amzn1.spdoc.1.4.na.{uuid.uuid4()}"
        content = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)
        self.documents[document_id] = Document(document_id=document_id, content=content, rows=len(rows))
        report.document_id = document_id
        report.status = "DONE"

    def _report_row(
        self, order: FulfillmentOrder, shipment: Shipment, k: int, n: int, index: int, qty: int
    ) -> dict[str, str]:
        line = order.lines[index]
        package = shipment.packages[0] if shipment.packages else None
        rng = self._rng(order.sfo_id, "report", k, n)
        row = {c: "" for c in SHIPMENT_REPORT_COLUMNS}
        # MCF rows: merchant-order-id is the sellerFulfillmentOrderId and the sales channel is
        # "Non-Amazon"; buyer, recipient and price columns stay blank (no buyer PII, no Amazon price).
        row.update(
            {
                "amazon-order-id": order.amazon_order_id,
                "merchant-order-id": order.sfo_id,
                "shipment-id": shipment.shipment_id,
                "shipment-item-id": f"D{rng.randrange(10**12, 10**13)}",
                "amazon-order-item-id": str(rng.randrange(10**13, 10**14)),
                "merchant-order-item-id": line.item_id,
                "purchase-date": flat_ts(order.displayable_date),
                "payments-date": flat_ts(order.displayable_date),
                "shipment-date": flat_ts(shipment.ship_date),
                "reporting-date": flat_ts(shipment.ship_date + timedelta(minutes=30)),
                "sku": line.sku,
                "product-name": line.sku,
                "quantity-shipped": str(qty),
                "currency": "USD",
                "ship-service-level": order.speed,
                "ship-city": order.address.get("city", ""),
                "ship-state": order.address.get("stateOrRegion", ""),
                "ship-postal-code": order.address.get("postalCode", ""),
                "ship-country": order.address.get("countryCode", ""),
                "carrier": package.carrier if package else "",
                "tracking-number": package.tracking if package else "",
                "estimated-arrival-date": flat_ts(shipment.eta) if shipment.eta else "",
                "fulfillment-center-id": shipment.fc[0],
                "fulfillment-channel": "AFN",
                "sales-channel": "Non-Amazon",
            }
        )
        return row

    def _report_json(self, report: Report) -> dict:
        state = self._report_state(report)
        queue = timedelta(seconds=float(self.config["report_queue_seconds"]))
        work = timedelta(seconds=float(self.config["report_processing_seconds"]))
        doc = {
            "reportId": report.report_id,
            "reportType": report.report_type,
            "marketplaceIds": list(report.marketplace_ids),
            "dataStartTime": ts(report.start),
            "dataEndTime": ts(report.end),
            "createdTime": ts(report.created),
            "processingStatus": state,
        }
        if state != "IN_QUEUE" and not report.cancelled_in_queue:
            doc["processingStartTime"] = ts(report.created + queue)
            if state in ("DONE", "FATAL", "CANCELLED"):
                doc["processingEndTime"] = ts(report.created + queue + work)
        if report.document_id:
            doc["reportDocumentId"] = report.document_id
        return doc

    async def _create_report(self, request: Request) -> Response:
        op = "createReport"
        body, problem = await self._json_body(request)
        if (refused := self._gate(request, op, body)) is not None:
            return refused
        now = self.now()
        start = end = now
        if problem is None:
            if not isinstance(body, dict) or not isinstance(body.get("reportType"), str) or not body["reportType"]:
                problem = "reportType is required."
            elif body["reportType"] != SHIPMENTS_REPORT:
                problem = f"Report type {body['reportType']} is not available in this sandbox."
            elif (
                not isinstance(body.get("marketplaceIds"), list)
                or not 1 <= len(body["marketplaceIds"]) <= 25
                or not all(isinstance(m, str) for m in body["marketplaceIds"])
            ):
                problem = "marketplaceIds must list 1 to 25 marketplace identifiers."
            elif self.config["marketplace_id"] not in body["marketplaceIds"]:
                problem = f"Invalid marketplaceIds: {', '.join(body['marketplaceIds'])}"
            elif "reportOptions" in body and not isinstance(body["reportOptions"], dict):
                problem = "reportOptions must be an object of strings."
            else:
                try:
                    if body.get("dataStartTime") is not None:
                        start = parse_time(body["dataStartTime"], "dataStartTime")
                    if body.get("dataEndTime") is not None:
                        end = parse_time(body["dataEndTime"], "dataEndTime")
                except ScenarioError:
                    problem = "Invalid date format for dataStartTime or dataEndTime; use ISO 8601."
                else:
                    if start > end:
                        problem = "dataStartTime must be before dataEndTime."
        if problem:
            return self._write(request, body, self._invalid(request, problem, op), op)
        regeneration = timedelta(minutes=float(self.config["report_regeneration_minutes"]))
        too_soon = any(
            r.report_type == body["reportType"]
            and not (r.cancelled_in_queue or r.too_soon)
            and timedelta(0) <= now - r.created < regeneration
            for r in self.reports.values()
        )
        self._report_seq += 1
        report_id = str(50_000_000_000 + self._rng("report", self._report_seq, self.wall()).randrange(10**9))
        while report_id in self.reports:
            report_id = str(int(report_id) + 1)
        self.reports[report_id] = Report(
            seq=self._report_seq,
            report_id=report_id,
            report_type=body["reportType"],
            marketplace_ids=list(body["marketplaceIds"]),
            start=start,
            end=end,
            created=now,
            created_wall=self.wall(),
            options=dict(body.get("reportOptions") or {}),
            too_soon=too_soon,
        )
        return self._write(request, body, self._respond(request, {"reportId": report_id}, 202, op), op)

    def _get_report(self, request: Request, report_id: str) -> Response:
        op = "getReport"
        if (refused := self._gate(request, op)) is not None:
            return refused
        report = self.reports.get(report_id)
        if report is None:
            return self._error(request, 404, "NotFound", f"Report {report_id} not found.", operation=op)
        return self._respond(request, self._report_json(report), 200, op)

    def _cancel_report(self, request: Request, report_id: str) -> Response:
        op = "cancelReport"
        if (refused := self._gate(request, op)) is not None:
            return refused
        report = self.reports.get(report_id)
        if report is None:
            response = self._error(request, 404, "NotFound", f"Report {report_id} not found.", operation=op)
            return self._write(request, None, response, op)
        if self._report_state(report) != "IN_QUEUE":
            response = self._invalid(request, "Only reports with processingStatus IN_QUEUE can be cancelled.", op)
            return self._write(request, None, response, op)
        report.status = "CANCELLED"
        report.cancelled_in_queue = True
        return self._write(request, None, self._respond(request, None, 200, op, empty=True), op)

    def _get_reports(self, request: Request) -> Response:
        op = "getReports"
        if (refused := self._gate(request, op)) is not None:
            return refused
        query = request.query_params

        def listed(name: str) -> list[str]:
            return [v for item in query.getlist(name) for v in item.split(",") if v]

        now = self.now()
        if "nextToken" in query:
            if set(query) - {"nextToken"}:
                return self._invalid(request, "nextToken must be the only parameter when it is given.", op)
            data = self._decode_token(query["nextToken"])
            if data is None or "before" not in data:
                return self._invalid(request, "Invalid nextToken", op)
            filters = data
        else:
            types = listed("reportTypes")
            if not types:
                return self._invalid(request, "Either reportTypes or nextToken is required.", op)
            statuses = listed("processingStatuses")
            markets = listed("marketplaceIds")
            if len(types) > 10 or len(markets) > 10 or any(s not in REPORT_STATUSES for s in statuses):
                return self._invalid(request, "Invalid reportTypes, processingStatuses or marketplaceIds.", op)
            try:
                size = int(query.get("pageSize", 10))
                if not 1 <= size <= 100:
                    raise ValueError
            except ValueError:
                return self._invalid(request, "pageSize must be between 1 and 100.", op)
            try:
                since = (
                    parse_time(query["createdSince"], "createdSince")
                    if "createdSince" in query
                    else now - REPORT_RETENTION
                )
                until = parse_time(query["createdUntil"], "createdUntil") if "createdUntil" in query else now
            except ScenarioError:
                return self._invalid(request, "Invalid date format for createdSince or createdUntil.", op)
            filters = {
                "types": types,
                "statuses": statuses,
                "markets": markets,
                "size": size,
                "since": ts(since),
                "until": ts(until),
                "before": None,
            }
        since, until = parse_time(filters["since"], "since"), parse_time(filters["until"], "until")
        matched = []
        more = False
        # Newest first; the token remembers the last report returned.
        for report in sorted(self.reports.values(), key=lambda r: r.seq, reverse=True):
            if filters["before"] is not None and report.seq >= filters["before"]:
                continue
            if report.report_type not in filters["types"] or not since <= report.created <= until:
                continue
            if filters["markets"] and not set(filters["markets"]) & set(report.marketplace_ids):
                continue
            if filters["statuses"] and self._report_state(report) not in filters["statuses"]:
                continue
            if len(matched) == filters["size"]:
                more = True
                break
            matched.append(report)
        body: dict = {"reports": [self._report_json(r) for r in matched]}
        if more:
            body["nextToken"] = self._encode_token({**filters, "before": matched[-1].seq})
        return self._respond(request, body, 200, op)

    def _sign(self, document_id: str, stamp: str, ttl: int, encoding: str) -> str:
        message = f"{document_id}\n{stamp}\n{ttl}\n{encoding}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _get_document(self, request: Request, document_id: str) -> Response:
        op = "getReportDocument"
        if (refused := self._gate(request, op)) is not None:
            return refused
        document = self.documents.get(document_id)
        if document is None:
            return self._error(request, 404, "NotFound", f"Report document {document_id} not found.", operation=op)
        encoding = "gzip" if request.query_params.get("enableContentEncodingUrlHeader", "").lower() == "true" else ""
        stamp = datetime.fromtimestamp(self.wall(), timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        ttl = int(self.config["document_url_ttl_seconds"])
        params = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(ttl),
            "X-Amz-SignedHeaders": "host",
        }
        if encoding:
            params["response-content-encoding"] = encoding
        params["X-Amz-Signature"] = self._sign(document_id, stamp, ttl, encoding)
        # The socket's own address, not the Host header: some clients send a mangled Host.
        host, port = request.scope.get("server") or (request.url.hostname, request.url.port)
        url = f"{request.url.scheme}://{host}:{port}{DOCUMENTS}/{document_id}?{urlencode(params)}"
        return self._respond(
            request, {"reportDocumentId": document_id, "url": url, "compressionAlgorithm": "GZIP"}, 200, op
        )

    def _download(self, request: Request, document_id: str) -> Response:
        """The presigned download: no access token, but a signature and a 5-minute expiry (wall clock)."""
        request.state.operation = "downloadReportDocument"
        query = request.query_params

        def s3_error(status: int, code: str, message: str) -> Response:
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}'
                f"</Message><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
            )
            return Response(body, status_code=status, media_type="application/xml")

        document = self.documents.get(document_id)
        if document is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        stamp, encoding = query.get("X-Amz-Date", ""), query.get("response-content-encoding", "")
        try:
            ttl = int(query.get("X-Amz-Expires", ""))
            issued = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return s3_error(
                403, "AccessDenied", "Query-string authentication requires the X-Amz-Date and X-Amz-Expires parameters."
            )
        if not hmac.compare_digest(query.get("X-Amz-Signature", ""), self._sign(document_id, stamp, ttl, encoding)):
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self.wall() > issued.timestamp() + ttl:
            return s3_error(403, "AccessDenied", "Request has expired")
        headers = {"Content-Encoding": "gzip"} if encoding == "gzip" else {}
        return Response(document.content, media_type="text/tab-separated-values; charset=UTF-8", headers=headers)

    # ------------------------------------------------------------ dump

    def state(self) -> dict:
        now = self.now()
        self._advance_all(now)
        wall = self.wall()
        return {
            "now": ts(now),
            "orders": [self._result_json(o) for o in self.orders.values()],
            "reports": [self._report_json(r) for r in self.reports.values()],
            "documents": {d.document_id: {"rows": d.rows} for d in self.documents.values()},
            "tokens": {
                "issued": len(self.tokens),
                "valid": sum(1 for t in self.tokens.values() if t.expires_at > wall),
            },
        }
