"""TikTok Shop Open API simulator (202309 paths, and the newer versions in NEWER_VERSIONS) and its token host.

Two apps: `tiktok` (open API: shops, orders, logistics, fulfillment, cancellations) and
`tiktok_auth` (`/api/v2/token/get` and `/api/v2/token/refresh`). Every open API request goes
through the same gateway as the real one: app key, timestamp window (wall clock), HMAC-SHA256
signature over path + sorted query + raw body (a repeated query key signed either way clients
sign it: values comma-joined, or one key+value per occurrence), `x-tts-access-token`, `shop_cipher` required or
forbidden per path, then a per (app_key, shop_cipher, endpoint) token bucket.

State is keyed by shop cipher so more shops can be configured (`extra_shops`); scenario orders
belong to the first shop. Time-driven changes (auto-cancel past `shipping_due_time`, buyer
cancellations past their deadline, shipped orders moving on to delivery) are kept in a per-shop
queue and applied lazily, in time order, when a request touches the shop.

Codes 21019xxx are simulator-only: the real codes for these refusals are not published.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import heapq
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from orderops_provider.tiktok_signing import sign
from sandbox.core import PlatformSandbox, TokenBucket
from sandbox.scenario import Scenario, ScenarioOrder, parse_time

# Fixed credentials valid only against this simulator. The auth code and tokens are
# pre-issued at every scenario load, so a client can start with or without the token exchange.
DEFAULT_CREDENTIALS: dict[str, Any] = {
    "app_key": "6sbxorderops01",
    "app_secret": "sbx0orderops0tiktok0app0secret000000000",
    "auth_code": "TTP_sbx-auth-code-0001",
    "access_token": "TTP_sbx-access-token-0001",
    "refresh_token": "TTP_sbx-refresh-token-0001",
    "shop_cipher": "TTP_SbxShopCipher0001",
    "shop_id": "7494000000000000001",
    "shop_name": "OrderOps Sandbox Shop",
    "shop_code": "USSBXSHOP1",
    "open_id": "7494000000000000901",
    "seller_name": "OrderOps Sandbox Seller",
}

DEFAULT_SETTINGS: dict[str, Any] = {
    **DEFAULT_CREDENTIALS,
    "qps": 50,  # per (app_key, shop_cipher, endpoint), x rate_scale
    "extra_shops": [],  # [{"cipher", "id", "name", "code"}], empty but authorized
    "cancellation_deadline_action": "approve",  # approve | reject | keep (pending past deadline)
    "region": "US",  # the default shop's market: its reject reasons (REJECT_REASONS)
    "cancel_overdue_orders": True,  # unshipped at shipping_due_time -> CANCELLED by SYSTEM
    "progress_shipped_orders": True,  # AWAITING_COLLECTION -> IN_TRANSIT -> DELIVERED -> COMPLETED
    # since 01/2026 USPS labels for TikTok orders are bought through TikTok Shipping: USPS tracking
    # on an order shipped on the seller's own label fails TikTok's verification (US shops)
    "usps_needs_tiktok_shipping": True,
    # a second sales warehouse in Amazon MCF mode (delivery option "MCF"): tracking uploaded for its
    # orders must be Amazon MCF's; at `mcf_wrong_tracking_limit` incorrect ones it is deactivated
    "mcf_warehouse": False,
    "mcf_wrong_tracking_limit": 5,
    "access_token_ttl": 7 * 86400,
    "refresh_token_ttl": 365 * 86400,
    "auth_code_ttl": 30 * 60,
    "page_token_ttl": 2 * 3600,
}

# Scenario seconds a shipped order spends in each state before moving on (settings.durations["tiktok"]).
DEFAULT_DURATIONS = {"AWAITING_COLLECTION": 86400.0, "IN_TRANSIT": 3 * 86400.0, "DELIVERED": 7 * 86400.0}
NEXT_STATUS = {"AWAITING_COLLECTION": "IN_TRANSIT", "IN_TRANSIT": "DELIVERED", "DELIVERED": "COMPLETED"}

API_VERSION = "202309"
# Endpoints served at a newer version too, each at 202309 and at that one with its differences:
# 202507 order detail adds fields; 202602 cancellations add `should_replenish_stock` and
# `cancel_sub_line_items` (both as the Partner Center models publish them); 202610 Mark Package As
# Shipped, known only from an unofficial generated client (UNCERTAIN), takes `shipping_info_list[]` and
# `order_line_list[]` instead of top-level `tracking_number`, `shipping_provider_id` and
# `order_line_item_ids`. Every other endpoint is served at 202309 only.
NEWER_VERSIONS = {"get_order_detail": "202507", "search_cancellations": "202602", "mark_package_as_shipped": "202610"}
TOKEN_HEADER = "x-tts-access-token"
SIGN_WINDOW_PAST = 300
SIGN_WINDOW_FUTURE = 30

# Documented codes.
E_THROTTLED = 36009002
E_INTERNAL = 36009003
E_REQUEST = 36009004
E_PATH = 36009009
E_METHOD = 36009010
E_VERSION = 36009014
E_CONTENT_TYPE = 36009022
E_SIGN = 106001
E_NO_CIPHER = 106013
E_TOKEN_EXPIRED = 105002
E_CIPHER_TOKEN = 101000
E_AUTH_CODE = 36004004
E_RT_EXPIRED = 36004001
E_NO_AUTH_RECORD = 36004005
E_BUSINESS_TYPE = 21008106
E_NOT_SELLERS = 21008111
# Simulator-only codes.
E_ORDER_STATUS = 21019001
E_ALREADY_SHIPPED = 21019002
E_PROVIDER = 21019003
E_LINE_ITEMS = 21019004
E_TRACKING = 21019005
E_USPS_LABEL = 21019006
E_NOT_MCF_TRACKING = 21019007
E_NO_CANCELLATION = 21019010
E_CANCEL_STATE = 21019011
E_NOT_CANCELLABLE = 21019012
E_PENDING_REQUEST = 21019013
E_WAREHOUSE = 21019020
E_DELIVERY_OPTION = 21019021
E_WAREHOUSE_INACTIVE = 21019022

SIMULATOR_CODES = {
    E_ORDER_STATUS: "The order status does not allow this operation.",
    E_ALREADY_SHIPPED: "The order line items have already been shipped.",
    E_PROVIDER: "The shipping_provider_id is not available for the order's delivery option.",
    E_LINE_ITEMS: "The order_line_item_ids are invalid for this order.",
    E_TRACKING: "The tracking_number is invalid.",
    E_USPS_LABEL: "USPS labels for TikTok Shop orders must be purchased through TikTok Shipping.",
    E_NOT_MCF_TRACKING: "The tracking_number is not an Amazon MCF tracking number for this MCF warehouse.",
    E_NO_CANCELLATION: "The cancellation does not exist or does not belong to the current seller.",
    E_CANCEL_STATE: "The cancellation request is not pending.",
    E_NOT_CANCELLABLE: "The order has shipped items and cannot be cancelled.",
    E_PENDING_REQUEST: "The order has a pending buyer cancellation request; approve or reject it first.",
    E_WAREHOUSE: "The warehouse does not exist or does not belong to the current seller.",
    E_DELIVERY_OPTION: "The delivery option does not exist or does not belong to the current seller.",
    E_WAREHOUSE_INACTIVE: "The warehouse is deactivated: too many incorrect tracking numbers were uploaded.",
}

MSG = {
    "success": "Success",
    "app_key": "Invalid credentials. Invalid `app_key` query parameter.",
    "no_sign": "Missing credentials. The request does not include a required signature in the query.",
    "ts_missing": (
        "Invalid timestamp. The `timestamp` query parameter is required and must be a Unix timestamp in seconds."
    ),
    "ts_negative": "Invalid timestamp. The `timestamp` query parameter must not be lesser than 0.",
    "ts_old": (
        "Invalid timestamp. The `timestamp` query parameter must not be earlier than 5 minutes before the current time."
    ),
    "ts_future": (
        "Invalid timestamp. The `timestamp` query parameter must not exceed the current time by more than 30 seconds."
    ),
    "sign": "Invalid credentials. The `sign` query parameter is invalid.",
    "token": "Invalid credentials. The `x-tts-access-token` header is invalid.",
    "token_expired": "Expired credentials. The `access_token` or `x-tts-access-token` header has expired.",
    "no_cipher": "Missing identifier. The `shop_cipher` query parameter is required to identify the target shop.",
    "unexpected_cipher": "Unexpected identifier. The `shop_cipher` query parameter is not required for this request.",
    "cipher_token": (
        "Invalid query or header. The `category_asset_cipher` query parameter or "
        "`x-tts-access-token` header is invalid."
    ),
    "throttled": "Too many requests. You've made too many requests in a short period of time.",
    "internal": (
        "Internal error. Please try again. If the issue persists after multiple attempts, "
        "please contact platform support."
    ),
    "path": "Invalid path. The specified path does not match any available endpoint.",
    "method": "Invalid method. The HTTP method used is not supported by this endpoint.",
    "version": "Invalid API version. The `version` value is invalid or unsupported.",
    "content_type": "Invalid request format. The request body format must be `application/json`.",
    "auth_code": "Invalid auth code.",
    "rt_expired": "rt has expired",
    "no_auth_record": "can not find related auth record",
    "app_secret": "Invalid credentials. The `app_secret` query parameter is invalid.",
    "business_type": "This interface cannot be used in this region or this business type. Please don't use the api.",
    "not_sellers": "The order or package does not belong to the current seller.",
}

ORDER_STATUSES = (
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
)
SHIPPED_STATUSES = ("AWAITING_COLLECTION", "IN_TRANSIT", "DELIVERED", "COMPLETED")
SHIPPABLE_STATUSES = ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING")
# A whole-order buyer cancellation can only take effect before anything shipped.
CANCELLABLE_STATUSES = ("UNPAID", "ON_HOLD", "AWAITING_SHIPMENT")
PACKAGE_STATUS = {
    "PARTIALLY_SHIPPING": "PROCESSING",
    "AWAITING_COLLECTION": "PROCESSING",
    "IN_TRANSIT": "FULFILLING",
    "DELIVERED": "COMPLETED",
    "COMPLETED": "COMPLETED",
}
CANCEL_STATUSES = (
    "CANCELLATION_REQUEST_PENDING",
    "CANCELLATION_REQUEST_SUCCESS",
    "CANCELLATION_REQUEST_CANCEL",
    "CANCELLATION_REQUEST_COMPLETE",
)
CANCEL_TYPES = ("CANCEL", "BUYER_CANCEL")
BUYER_CANCEL_REASON = ("ecom_order_to_ship_canceled_reason_created_by_mistakes", "Order created by mistake")
# What a seller may reject a buyer's cancellation request with, per market (code, text), as
# TikTok's cancel-reasons page lists them ("Seller Reject Cancel Request Reason"); Reject
# Cancellation refuses a code outside the shop's market. UK and ID share their list; the
# "agreement" code appears in TikTok's Get Reject Reasons sample answer.
REJECT_REASONS: dict[str, tuple[tuple[str, str], ...]] = {
    "US": (
        ("ecom_reverse_reject_cancel_reason_product_packed", "Product has been packed"),
        ("ecom_reverse_reject_refund_request_package_delivery_multiple_boxes", "Package delivered in multiple boxes"),
        ("seller_reject_apply_unable_to_change_address", "Unable to change the address"),
    ),
    **{
        market: (
            ("seller_reject_apply_product_has_been_packed", "Product has been packed"),
            ("seller_reject_apply_you_have_reached_an_agreement_with_the_buyer", "Reached an agreement with the buyer"),
        )
        for market in ("GB", "ID")
    },
}
# a connector's copy of a Shopify cancel: a seller cancellation
CHANNEL_CANCEL_REASON = ("seller_cancel_reason_out_of_stock", "Cancelled by the seller")
SYSTEM_CANCEL_REASON = (
    "ecom_order_to_ship_canceled_reason_seller_did_not_ship_in_time",
    "Package wasn't shipped before the shipping due time",
)

CARRIERS_STANDARD = (
    "USPS",
    "UPS",
    "FedEx",
    "DHL eCommerce",
    "DHL Express",
    "OnTrac",
    "Amazon Logistics",
    "LaserShip",
    "Veho",
)
CARRIERS_EXPRESS = ("USPS", "UPS", "FedEx", "DHL Express")
# TikTok's provider for tracking of an Amazon MCF warehouse's orders (Seller University, 02/25/2026)
MCF_PROVIDER = "Amazon Shipping + Amazon MCF"
# Fulfiller carrier codes a scenario may use for an already-shipped order -> the TikTok provider name.
PROVIDER_ALIASES = {
    "amzl": "Amazon Logistics",
    "amzlus": "Amazon Logistics",
    "amazon": "Amazon Logistics",
    "amazonshipping": "Amazon Logistics",
    "fedexground": "FedEx",
    "fedexhomedelivery": "FedEx",
    "dhlecs": "DHL eCommerce",
    "dhl": "DHL Express",
    "uspspriority": "USPS",
    "uspsfirstclass": "USPS",
}
SCOPES = (
    "seller.authorization.info",
    "seller.order.info",
    "seller.fulfillment.basic",
    "seller.logistics",
    "seller.return_refund.basic",
)

TRACKING_RE = re.compile(r"^[A-Za-z0-9-]{6,50}$")
REASON_CODE_RE = re.compile(r"^[a-z0-9_]{1,255}$")
PAGE_TOKEN_PREFIX = b"\xfb\xff\xbf"  # encodes as "+/+/": clients must percent-encode tokens


class ApiError(Exception):
    """A refusal in the platform's envelope; `status` is the HTTP status."""

    def __init__(self, code: int, message: str | None = None, status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message or SIMULATOR_CODES.get(code, "")
        self.status = status


def param_error(detail: str) -> ApiError:
    return ApiError(E_REQUEST, f"invalid param error: {detail}", 400)


def stable_id(*parts: Any, prefix: str = "7", length: int = 19) -> str:
    """A fixed id of digits derived from names, so ids survive restarts."""
    digest = int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest(), 16)
    return (prefix + str(digest))[:length]


def money(value: float) -> str:
    return f"{value:.2f}"


def request_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def envelope(code: int, message: str, rid: str, data: Any = None) -> dict:
    return {"code": code, "message": message, "request_id": rid, "data": {} if data is None else data}


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass
class _Endpoint:
    method: str
    template: str
    operation: str
    handler: Callable[[_Ctx], Awaitable[Any]]
    shop_scoped: bool = True
    write: bool = False
    idempotent: bool = False

    def __post_init__(self):
        self.regex = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", self.template) + "$")


def shipped_with(body: Any) -> dict:
    """{tracking_number, shipping_provider_id} of a logged Mark Package As Shipped body, at any
    version (202610 nests them in shipping_info_list[0]); {} for a body that carried neither."""
    if not isinstance(body, dict):
        return {}
    infos = body.get("shipping_info_list")
    source = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else body
    return {k: source[k] for k in ("tracking_number", "shipping_provider_id") if k in source}


@dataclass
class _Ctx:
    request: Request
    request_id: str
    query: dict[str, str]
    body: dict
    app_key: str
    shop: _Shop | None

    @property
    def path_params(self) -> dict:
        return self.request.path_params

    @property
    def version(self) -> str:
        return self.request.url.path.split("/")[2]


@dataclass
class _Snapshot:
    """A frozen, ordered list of matching ids: pages never lose or repeat an entry."""

    shop: str
    fingerprint: str
    ids: list[str]
    created: float
    key: str = ""


@dataclass
class _Shop:
    cipher: str
    id: str
    name: str
    code: str
    region: str = "US"
    seller_type: str = "LOCAL"
    orders: dict[str, dict] = field(default_factory=dict)
    cancellations: dict[str, dict] = field(default_factory=dict)
    packages: dict[str, dict] = field(default_factory=dict)
    warehouses: list[dict] = field(default_factory=list)
    delivery_options: dict[str, dict] = field(default_factory=dict)  # id -> option (+ providers)
    option_by_type: dict[str, str] = field(default_factory=dict)  # STANDARD/EXPRESS/MCF -> id
    # Amazon MCF warehouse id -> incorrect (non-MCF) tracking numbers uploaded for its orders
    mcf_wrong_tracking: dict[str, int] = field(default_factory=dict)
    events: list[tuple] = field(default_factory=list)  # heap of (time, seq, kind, key)

    def info(self) -> dict:
        return {
            "cipher": self.cipher,
            "code": self.code,
            "id": self.id,
            "name": self.name,
            "region": self.region,
            "seller_type": self.seller_type,
        }


def provider(name: str) -> dict:
    return {"id": stable_id("shipping_provider", name, prefix="69"), "name": name}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


class TikTokSandbox(PlatformSandbox):
    name = "tiktok"

    def __init__(self, sandbox):
        super().__init__(sandbox)
        self.config = sandbox.settings.for_platform(self.name, DEFAULT_SETTINGS)
        if self.config["cancellation_deadline_action"] not in ("approve", "reject", "keep"):
            raise ValueError("tiktok.cancellation_deadline_action: expected approve, reject or keep")
        for spec in (self.config, *self.config["extra_shops"]):
            if spec.get("region", "US") not in REJECT_REASONS:
                raise ValueError(
                    f"tiktok.region: expected one of {', '.join(REJECT_REASONS)}, got {spec.get('region')!r}"
                )
        self.app_secrets = {self.config["app_key"]: self.config["app_secret"]}
        self.buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self.endpoints = self._endpoints()
        self.shops: dict[str, _Shop] = {}

    # ------------------------------------------------------------------ state
    def load(self, scenario: Scenario) -> None:
        cfg = self.config
        self.shops = {}
        shop_defs = [
            {
                "cipher": cfg["shop_cipher"],
                "id": cfg["shop_id"],
                "name": cfg["shop_name"],
                "code": cfg["shop_code"],
                "region": cfg["region"],
            }
        ] + list(cfg["extra_shops"])
        for spec in shop_defs:
            shop = _Shop(
                cipher=spec["cipher"],
                id=spec["id"],
                name=spec["name"],
                code=spec.get("code") or spec["cipher"][-10:].upper(),
                region=spec.get("region", "US"),
            )
            self._build_logistics(shop)
            self.shops[shop.cipher] = shop
        self.default_shop = self.shops[cfg["shop_cipher"]]
        self.seq = 0
        self.id_seq = 0
        self.snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self.idempotency: dict[tuple, tuple[dict, int, str]] = {}
        # Ground truth for a living shop: who put tracking on an order and when; who answered a
        # buyer's cancellation request and when (the seller through the API, or the system).
        self.dispatches: dict[str, dict] = {}
        self.responses: dict[str, dict] = {}
        # carriers' first scans (tracking number -> when) and the orders each tracking number is on
        self.scans: dict[str, int] = {}
        self.orders_by_tracking: dict[str, list[str]] = {}
        # a living shop (life.py) scans parcels: In Transit follows the carrier's scan, not a timer
        self.in_transit_at_scan = False
        self.buckets.clear()
        self._load_auth()
        now = self.now()
        for so in scenario.orders:
            self._load_order(self.default_shop, so, now)

    def _load_auth(self) -> None:
        cfg = self.config
        wall = time.time()
        self.grant = {
            "open_id": cfg["open_id"],
            "seller_name": cfg["seller_name"],
            "shops": list(self.shops),
            "app_key": cfg["app_key"],
        }
        self.auth_codes = {
            cfg["auth_code"]: {"app_key": cfg["app_key"], "expires": wall + cfg["auth_code_ttl"], "used": False}
        }
        self.refresh_tokens = {
            cfg["refresh_token"]: {"app_key": cfg["app_key"], "expires": wall + cfg["refresh_token_ttl"]}
        }
        self.access_tokens = {
            cfg["access_token"]: {"app_key": cfg["app_key"], "expires": wall + cfg["access_token_ttl"]}
        }

    def _build_logistics(self, shop: _Shop) -> None:
        sales = stable_id("warehouse", shop.cipher, "sales", prefix="72")
        returns = stable_id("warehouse", shop.cipher, "return", prefix="72")
        address = {
            "region": "United States",
            "region_code": "US",
            "state": "Ohio",
            "city": "Columbus",
            "district": "Franklin",
            "town": "",
            "postal_code": "43004",
            "address_line1": "100 Sandbox Way",
            "address_line2": "",
            "address_line3": "",
            "address_line4": "",
            "contact_person": "Sandbox Warehouse",
            "phone_number": "(+1)5550100100",
            "full_address": "100 Sandbox Way, Columbus, Ohio 43004, United States",
        }
        shop.warehouses = [
            {
                "id": sales,
                "name": "Sandbox Fulfillment Center",
                "effect_status": "ENABLED",
                "type": "SALES_WAREHOUSE",
                "sub_type": "DOMESTIC_WAREHOUSE",
                "is_default": True,
                "address": dict(address),
            },
            {
                "id": returns,
                "name": "Sandbox Returns Center",
                "effect_status": "ENABLED",
                "type": "RETURN_WAREHOUSE",
                "sub_type": "DOMESTIC_WAREHOUSE",
                "is_default": True,
                "address": dict(address),
            },
        ]
        options = [
            ("STANDARD", "Standard shipping", CARRIERS_STANDARD, "3-8", sales),
            ("EXPRESS", "Express shipping", CARRIERS_EXPRESS, "1-3", sales),
        ]
        if self.config["mcf_warehouse"]:
            mcf = stable_id("warehouse", shop.cipher, "mcf", prefix="72")
            shop.warehouses.append(
                {
                    "id": mcf,
                    "name": "Amazon MCF",
                    "effect_status": "ENABLED",
                    "type": "SALES_WAREHOUSE",
                    "sub_type": "DOMESTIC_WAREHOUSE",
                    "is_default": False,
                    "address": dict(address),
                }
            )
            shop.mcf_wrong_tracking[mcf] = 0
            options.append(("MCF", "Standard shipping (Amazon MCF)", (*CARRIERS_STANDARD, MCF_PROVIDER), "3-8", mcf))
        for kind, name, carriers, days, warehouse in options:
            option_id = stable_id("delivery_option", shop.cipher, kind, prefix="71")
            shop.option_by_type[kind] = option_id
            shop.delivery_options[option_id] = {
                "warehouse_id": warehouse,
                "option": {
                    "id": option_id,
                    "name": name,
                    "description": f"Delivered in {days} business days",
                    "type": kind,
                    "platform": ["TIKTOK_SHOP"],
                    "dimension_limit": {"max_height": 108, "max_length": 108, "max_width": 108, "unit": "IN"},
                    "weight_limit": {"max_weight": 1120, "min_weight": 0, "unit": "OZ"},
                },
                "providers": [provider(c) for c in carriers],
            }

    def _next_id(self, prefix: str, taken: dict) -> str:
        """A new id of 19 digits that no scenario entity uses."""
        while True:
            self.id_seq += 1
            candidate = f"{prefix}{self.id_seq:0{19 - len(prefix)}d}"
            if candidate not in taken:
                return candidate

    def _schedule(self, shop: _Shop, at: float, kind: str, key: Any) -> None:
        self.seq += 1
        heapq.heappush(shop.events, (at, self.seq, kind, key))

    def _load_order(self, shop: _Shop, so: ScenarioOrder, now: datetime) -> None:
        tt = so.tiktok
        oid = tt["id"]
        status = tt["status"]
        now_s = ts(now)
        create = ts(parse_time(tt["create_time"], "create_time"))
        rts_sla = ts(parse_time(tt["rts_sla_time"], "rts_sla_time"))
        ship_due = ts(parse_time(tt["shipping_due_time"], "shipping_due_time"))

        def opt_time(key: str, default: int | None) -> int | None:
            return ts(parse_time(tt[key], key)) if tt.get(key) else default

        paid = opt_time("paid_time", None if status == "UNPAID" else create + 30 + int(oid) % 240)
        if tt.get("update_time"):
            update = opt_time("update_time", create)
        elif status in ("UNPAID",):
            update = create
        elif status in ("ON_HOLD", "AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"):
            update = paid
        else:  # the last status change happened by the ship-by deadline, or just now
            update = max(paid or create, min(now_s, rts_sla))
        fulfillment_type = tt.get("fulfillment_type", "FULFILLMENT_BY_SELLER")
        shipping_type = tt.get("shipping_type") or (
            "TIKTOK" if fulfillment_type == "FULFILLMENT_BY_TIKTOK" else "SELLER"
        )
        wanted = tt.get("delivery_option", "STANDARD")
        if wanted not in shop.option_by_type:
            raise ValueError(f"order {oid}: delivery_option {wanted} needs the TikTok setting mcf_warehouse")
        option_id = shop.option_by_type[wanted]
        option = shop.delivery_options[option_id]
        user_id = stable_id("buyer", oid, prefix="7494")
        lines = [self._line_item(line, status) for line in tt["line_items"]]
        subtotal = sum(float(li["sale_price"]) for li in lines)
        tax = sum(float(li["item_tax"][0]["tax_amount"]) for li in lines)
        shipping_fee = 0.0 if subtotal >= 35 else 5.99
        order = {
            "id": oid,
            "status": status,
            "create_time": create,
            "update_time": update,
            "rts_sla_time": rts_sla,
            "tts_sla_time": opt_time("tts_sla_time", rts_sla + 86400),
            "shipping_due_time": ship_due,
            "collection_due_time": opt_time("collection_due_time", ship_due + 3 * 86400),
            "delivery_due_time": opt_time("delivery_due_time", ship_due + 17 * 86400),
            "cancel_order_sla_time": opt_time(
                "cancel_order_sla_time", create + 86400 if status == "UNPAID" else ship_due
            ),
            "delivery_sla_time": opt_time("delivery_sla_time", rts_sla + 8 * 86400),
            "delivery_option_required_delivery_time": opt_time("delivery_sla_time", rts_sla + 8 * 86400),
            "fast_dispatch_sla_time": rts_sla,
            "pick_up_cut_off_time": rts_sla,
            "fulfillment_type": fulfillment_type,
            "shipping_type": shipping_type,
            "delivery_type": "HOME_DELIVERY",
            "delivery_option_id": option_id,
            "delivery_option_name": option["option"]["name"],
            "is_on_hold_order": status == "ON_HOLD",
            "is_buyer_request_cancel": False,
            "buyer_message": tt.get("buyer_message") or "",
            "seller_note": tt.get("seller_note") or "",
            "cancel_reason": "",
            "cancellation_initiator": "",
            "tracking_number": "",
            "shipping_provider": "",
            "shipping_provider_id": "",
            "packages": [],
            "warehouse_id": option["warehouse_id"],
            "user_id": user_id,
            "buyer_email": f"buyer{user_id[-8:]}@sandbox.invalid",
            "is_cod": False,
            "is_sample_order": False,
            "is_replacement_order": False,
            "replaced_order_id": "",
            "is_exchange_order": False,
            "order_type": "NORMAL",
            "commerce_platform": "TIKTOK_SHOP",
            "payment_method_name": "Credit/Debit card",
            "has_updated_recipient_address": False,
            "handling_duration": {"days": "3", "type": "BUSINESS_DAY"},
            "payment": {
                "currency": "USD",
                "sub_total": money(subtotal),
                "shipping_fee": money(shipping_fee),
                "seller_discount": "0.00",
                "platform_discount": "0.00",
                "tax": money(tax),
                "product_tax": money(tax),
                "shipping_fee_tax": "0.00",
                "original_total_product_price": money(subtotal),
                "original_shipping_fee": money(shipping_fee),
                "shipping_fee_seller_discount": "0.00",
                "shipping_fee_platform_discount": "0.00",
                "retail_delivery_fee": "0.00",
                "small_order_fee": "0.00",
                "buyer_service_fee": "0.00",
                "total_amount": money(subtotal + shipping_fee + tax),
            },
            "line_items": lines,
        }
        if paid is not None:
            order["paid_time"] = paid
        if status not in ("UNPAID", "ON_HOLD"):
            order["recipient_address"] = self._recipient(user_id)
        shop.orders[oid] = order

        # Tracking and packages as the scenario says they stand now.
        tracking = tt.get("tracking_number") or ""
        carrier = self._provider_by_name(tt.get("shipping_provider") or "", option)
        shipped_lines: list[dict] = []
        if status in SHIPPED_STATUSES:
            shipped_lines = lines
        elif status == "PARTIALLY_SHIPPING" and tracking and len(lines) > 1:
            shipped_lines = lines[:1]
        if shipped_lines:
            rts = max(paid or create, update - (0 if status == "AWAITING_COLLECTION" else 2 * 86400))
            self._add_package(shop, order, shipped_lines, tracking, carrier, rts)
            for li in shipped_lines:
                li["display_status"] = "AWAITING_COLLECTION" if status == "PARTIALLY_SHIPPING" else status
                li["package_status"] = PACKAGE_STATUS[status]
            if status in ("IN_TRANSIT", "DELIVERED", "COMPLETED"):
                order["collection_time"] = max(rts, update - (0 if status == "IN_TRANSIT" else 86400))
            if status in ("DELIVERED", "COMPLETED"):
                order["delivery_time"] = update

        cancellation = tt.get("cancellation")
        if cancellation:
            self._load_cancellation(shop, order, cancellation, now_s)
        if status == "CANCELLED":
            initiator = "BUYER" if cancellation else "SELLER"
            reason = BUYER_CANCEL_REASON[1] if cancellation else "Out of stock"
            for li in lines:
                li["display_status"] = "CANCELLED"
                li["cancel_user"] = initiator
                li["cancel_reason"] = reason
            order.update(cancel_time=update, cancellation_initiator=initiator, cancel_reason=reason)
        # Deadlines before the scenario's now are history: the file states the outcome.
        if (
            self.config["cancel_overdue_orders"]
            and status in SHIPPABLE_STATUSES
            and fulfillment_type == "FULFILLMENT_BY_SELLER"
            and ship_due > now_s
        ):
            self._schedule(shop, ship_due, "shipping_due", oid)

    def _load_cancellation(self, shop: _Shop, order: dict, c: dict, now_s: int) -> None:
        create = ts(parse_time(c["create_time"], "cancellation.create_time"))
        deadline = ts(parse_time(c["deadline"], "cancellation.deadline"))
        status = c["status"]
        pending = status == "CANCELLATION_REQUEST_PENDING"
        update = create if pending else max(create, min(now_s, deadline))
        rec = self._cancellation(
            order,
            c["cancel_id"],
            "BUYER_CANCEL",
            "BUYER",
            status,
            BUYER_CANCEL_REASON,
            create,
            [li for li in order["line_items"] if li["display_status"] != "CANCELLED"] or order["line_items"],
        )
        rec["update_time"] = update
        if pending:
            rec["seller_next_action_response"] = [{"action": "SELLER_RESPOND_CANCEL", "deadline": deadline}]
            order["is_buyer_request_cancel"] = True
            if deadline > now_s:
                self._schedule(shop, deadline, "cancellation_deadline", c["cancel_id"])
        order["request_cancel_time"] = create
        shop.cancellations[rec["cancel_id"]] = rec

    def _line_item(self, line: dict, status: str) -> dict:
        sku = line["seller_sku"]
        base, _, variant = sku.rpartition("-")
        base = base or sku
        cents = int(stable_id("price", sku, prefix="1")) % 7000
        price = 5.0 + cents / 100.0
        tax = round(price * 0.0725, 2)
        sku_id = stable_id("sku", sku, prefix="17")
        return {
            "id": line["id"],
            "sku_id": sku_id,
            "product_id": stable_id("product", base, prefix="17"),
            "product_name": f"Sandbox product {base}",
            "sku_name": variant if base != sku else "Default",
            "sku_image": f"https://sandbox.invalid/images/{sku_id}.jpeg",
            "seller_sku": sku,
            "sku_type": "NORMAL",
            "display_status": status,
            "tracking_number": "",
            "shipping_provider_id": "",
            "shipping_provider_name": "",
            "is_gift": False,
            "currency": "USD",
            "original_price": money(price),
            "sale_price": money(price),
            "platform_discount": "0.00",
            "seller_discount": "0.00",
            "item_tax": [{"tax_type": "SALES_TAX", "tax_amount": money(tax), "tax_rate": "0.0725"}],
            "retail_delivery_fee": "0.00",
            "small_order_fee": "0.00",
            "buyer_service_fee": "0.00",
            "cancel_reason": "",
            "cancel_user": "",
            "combined_listing_skus": [],
            "handling_duration_days": "3",
            "is_dangerous_good": False,
            "needs_prescription": False,
        }

    @staticmethod
    def _recipient(user_id: str) -> dict:
        return {
            "name": "Sandbox Buyer",
            "first_name": "Sandbox",
            "last_name": "Buyer",
            "phone_number": f"(+1)555*****{user_id[-2:]}",
            "address_line1": "1 Example Street",
            "address_line2": "",
            "address_line3": "",
            "address_line4": "",
            "address_detail": "",
            "postal_code": "43004",
            "region_code": "US",
            "full_address": "1 Example Street, Columbus, Franklin, Ohio, United States",
            "district_info": [
                {"address_level_name": "Country", "address_name": "United States", "address_level": "L0"},
                {"address_level_name": "State", "address_name": "Ohio", "address_level": "L1"},
                {"address_level_name": "County", "address_name": "Franklin", "address_level": "L2"},
                {"address_level_name": "City", "address_name": "Columbus", "address_level": "L3"},
            ],
            "delivery_preferences": {"drop_off_location": ""},
        }

    @staticmethod
    def _provider_by_name(name: str, option: dict) -> dict:
        if not name:
            return {"id": "", "name": ""}
        wanted = _norm(PROVIDER_ALIASES.get(_norm(name), name))
        for p in option["providers"]:
            if _norm(p["name"]) == wanted:
                return dict(p)
        return {"id": stable_id("shipping_provider", name, prefix="69"), "name": name}

    def _add_package(self, shop: _Shop, order: dict, lines: list[dict], tracking: str, carrier: dict, at: int) -> dict:
        package_id = self._next_id("1154", shop.packages)
        shop.packages[package_id] = {
            "id": package_id,
            "order_id": order["id"],
            "order_line_item_ids": [li["id"] for li in lines],
            "tracking_number": tracking,
            "shipping_provider_id": carrier["id"],
            "shipping_provider_name": carrier["name"],
            "create_time": at,
            "update_time": at,
        }
        order["packages"].append({"id": package_id})
        self.orders_by_tracking.setdefault(tracking, []).append(order["id"])
        order.update(
            tracking_number=tracking, shipping_provider=carrier["name"], shipping_provider_id=carrier["id"], rts_time=at
        )
        for li in lines:
            li.update(
                package_id=package_id,
                tracking_number=tracking,
                shipping_provider_id=carrier["id"],
                shipping_provider_name=carrier["name"],
                rts_time=at,
            )
        return shop.packages[package_id]

    def _cancellation(
        self,
        order: dict,
        cancel_id: str,
        cancel_type: str,
        role: str,
        status: str,
        reason: tuple[str, str],
        at: int,
        lines: list[dict],
    ) -> dict:
        total = sum(float(li["sale_price"]) + float(li["item_tax"][0]["tax_amount"]) for li in lines)
        subtotal = sum(float(li["sale_price"]) for li in lines)
        return {
            "cancel_id": cancel_id,
            "order_id": order["id"],
            "cancel_type": cancel_type,
            "cancel_status": status,
            "role": role,
            "cancel_reason": reason[0],
            "cancel_reason_text": reason[1],
            "create_time": at,
            "update_time": at,
            "seller_next_action_response": [],
            "refund_amount": {
                "currency": "USD",
                "refund_total": money(total),
                "refund_subtotal": money(subtotal),
                "refund_shipping_fee": "0.00",
                "refund_tax": money(total - subtotal),
                "retail_delivery_fee": "0.00",
            },
            "cancel_line_items": [
                {
                    "cancel_line_item_id": stable_id("cancel_line", cancel_id, li["id"], prefix="4035"),
                    "order_line_item_id": li["id"],
                    "sku_id": li["sku_id"],
                    "sku_name": li["sku_name"],
                    "seller_sku": li["seller_sku"],
                    "product_name": li["product_name"],
                    "product_image": {"url": li["sku_image"], "width": 200, "height": 200},
                    "refund_amount": {
                        "currency": "USD",
                        "refund_total": money(float(li["sale_price"]) + float(li["item_tax"][0]["tax_amount"])),
                    },
                }
                for li in lines
            ],
        }

    # ------------------------------------------------------------ a living shop (life.py)
    def arrive(self, so: ScenarioOrder) -> None:
        """A new paid order, ON_HOLD for its first hour (`release_hold` ends it)."""
        self._advance(self.default_shop)
        self._load_order(self.default_shop, so, self.now())

    def release_hold(self, oid: str) -> None:
        shop = self.default_shop
        self._advance(shop)
        order = shop.orders[oid]
        if order["status"] != "ON_HOLD":
            return
        at = ts(self.now())
        order["recipient_address"] = self._recipient(order["user_id"])
        self._set_status(shop, order, "AWAITING_SHIPMENT", at)
        if self.config["cancel_overdue_orders"] and order["fulfillment_type"] == "FULFILLMENT_BY_SELLER":
            self._schedule(shop, order["shipping_due_time"], "shipping_due", oid)

    def buyer_request_cancel(self, oid: str, deadline_seconds: int) -> str | None:
        """The buyer asks to cancel an order awaiting shipment; the seller must answer by the deadline.
        Returns the request's id, or None when the order can no longer be cancelled by request."""
        shop = self.default_shop
        self._advance(shop)
        order = shop.orders[oid]
        if not self._cancellable(order) or order["status"] != "AWAITING_SHIPMENT" or order["is_buyer_request_cancel"]:
            return None
        at = ts(self.now())
        rec = self._cancellation(
            order,
            self._next_id("4035", shop.cancellations),
            "BUYER_CANCEL",
            "BUYER",
            "CANCELLATION_REQUEST_PENDING",
            BUYER_CANCEL_REASON,
            at,
            [li for li in order["line_items"] if li["display_status"] != "CANCELLED"],
        )
        deadline = at + deadline_seconds
        rec["seller_next_action_response"] = [{"action": "SELLER_RESPOND_CANCEL", "deadline": deadline}]
        shop.cancellations[rec["cancel_id"]] = rec
        order.update(is_buyer_request_cancel=True, request_cancel_time=at)
        self._schedule(shop, deadline, "cancellation_deadline", rec["cancel_id"])
        self._emit_cancellation(rec)
        return rec["cancel_id"]

    def ship_by_platform(self, oid: str, tracking: str, carrier_name: str, by: str) -> bool:
        """Tracking that reaches TikTok without the seller's API call: a TikTok shipping label the
        fulfiller used, or an order TikTok fulfils itself. False when the order can't ship any more."""
        shop = self.default_shop
        self._advance(shop)
        order = shop.orders[oid]
        lines = [li for li in order["line_items"] if li["display_status"] != "CANCELLED" and not li.get("package_id")]
        if order["status"] not in SHIPPABLE_STATUSES or not lines:
            return False
        at = ts(self.now())
        carrier = self._provider_by_name(carrier_name, shop.delivery_options[order["delivery_option_id"]])
        self._add_package(shop, order, lines, tracking, carrier, at)
        self.dispatches.setdefault(oid, {"by": by, "at": at, "tracking_number": tracking})
        self._refresh_status(shop, order, at)
        self._collect_if_scanned(shop, order, at)
        return True

    def carrier_scan(self, numbers: list[str]) -> None:
        """A carrier scanned a parcel known by these tracking numbers (its own, and any other number
        that follows it, such as Amazon's early tracking number): an order awaiting collection with
        one of them moves to In Transit now; an order whose tracking comes later moves when it comes."""
        shop = self.default_shop
        self._advance(shop)
        at = ts(self.now())
        for number in numbers:
            self.scans.setdefault(number, at)
            for oid in self.orders_by_tracking.get(number, ()):
                self._collect_if_scanned(shop, shop.orders[oid], at)

    def _collect_if_scanned(self, shop: _Shop, order: dict, at: int) -> None:
        if (
            self.in_transit_at_scan
            and order["status"] == "AWAITING_COLLECTION"
            and order["tracking_number"] in self.scans
        ):
            self._set_status(shop, order, "IN_TRANSIT", at)

    # ------------------------------------------------------------ state machine
    def _advance(self, shop: _Shop) -> None:
        """Apply every time-driven change due by the scenario clock, in time order."""
        now = self.now().timestamp()
        while shop.events and shop.events[0][0] <= now:
            at, _, kind, key = heapq.heappop(shop.events)
            getattr(self, f"_on_{kind}")(shop, key, int(at))

    def _on_shipping_due(self, shop: _Shop, oid: str, at: int) -> None:
        order = shop.orders[oid]
        if order["status"] not in SHIPPABLE_STATUSES:
            return
        unshipped = [
            li for li in order["line_items"] if li["display_status"] != "CANCELLED" and not li.get("package_id")
        ]
        for rec in shop.cancellations.values():  # the buyer gets the cancellation asked for
            if rec["order_id"] == oid and rec["cancel_status"] == "CANCELLATION_REQUEST_PENDING":
                self._close_request(order, rec, "CANCELLATION_REQUEST_SUCCESS", at)
                self.responses[rec["cancel_id"]] = {"by": "system", "at": at, "outcome": "auto_cancelled"}
        self._cancel_as(shop, order, unshipped, "SYSTEM", SYSTEM_CANCEL_REASON, at)

    def _cancel_as(
        self, shop: _Shop, order: dict, lines: list[dict], role: str, reason: tuple[str, str], at: int
    ) -> dict:
        """The order's `lines` cancelled by `role` (the seller or the system), recorded as a granted
        cancellation; returns the record."""
        rec = self._cancellation(
            order,
            self._next_id("4035", shop.cancellations),
            "CANCEL",
            role,
            "CANCELLATION_REQUEST_SUCCESS",
            reason,
            at,
            lines,
        )
        shop.cancellations[rec["cancel_id"]] = rec
        self._cancel_lines(shop, order, lines, role, reason[1], at)
        return rec

    def _on_cancellation_deadline(self, shop: _Shop, cancel_id: str, at: int) -> None:
        rec = shop.cancellations[cancel_id]
        if rec["cancel_status"] != "CANCELLATION_REQUEST_PENDING":
            return
        action = self.config["cancellation_deadline_action"]
        if action == "keep":
            return
        order = shop.orders[rec["order_id"]]
        if action == "approve" and self._cancellable(order):
            self._approve(shop, order, rec, at)
            self.responses[cancel_id] = {"by": "system", "at": at, "outcome": "approved"}
        else:
            self._close_request(order, rec, "CANCELLATION_REQUEST_CANCEL", at)
            self.responses[cancel_id] = {"by": "system", "at": at, "outcome": "rejected"}

    def _on_progress(self, shop: _Shop, key: tuple[str, str], at: int) -> None:
        oid, expected = key
        order = shop.orders[oid]
        if order["status"] == expected:
            self._set_status(shop, order, NEXT_STATUS[expected], at)

    @staticmethod
    def _cancellable(order: dict) -> bool:
        return order["status"] in CANCELLABLE_STATUSES and not any(
            li.get("package_id") for li in order["line_items"] if li["display_status"] != "CANCELLED"
        )

    def _close_request(self, order: dict, rec: dict, status: str, at: int) -> None:
        rec.update(cancel_status=status, update_time=at, seller_next_action_response=[])
        order["is_buyer_request_cancel"] = False
        self._emit_cancellation(rec)

    def _emit_cancellation(self, rec: dict) -> None:
        self.sandbox.outbox.emit(
            "tiktok",
            "CANCELLATION_STATUS_CHANGE",
            {
                "order_id": rec["order_id"],
                "cancel_id": rec["cancel_id"],
                "cancellations_role": rec.get("role", "BUYER"),
                "cancel_status": rec["cancel_status"],
                "create_time": rec["create_time"],
                "update_time": rec["update_time"],
            },
        )

    def _approve(self, shop: _Shop, order: dict, rec: dict, at: int) -> None:
        self._close_request(order, rec, "CANCELLATION_REQUEST_SUCCESS", at)
        ids = {li["order_line_item_id"] for li in rec["cancel_line_items"]}
        lines = [li for li in order["line_items"] if li["id"] in ids and li["display_status"] != "CANCELLED"]
        self._cancel_lines(shop, order, lines, "BUYER", rec["cancel_reason_text"], at)

    def _cancel_lines(self, shop: _Shop, order: dict, lines: list[dict], initiator: str, reason: str, at: int) -> None:
        for li in lines:
            li.update(display_status="CANCELLED", cancel_user=initiator, cancel_reason=reason)
        if all(li["display_status"] == "CANCELLED" for li in order["line_items"]):
            order.update(
                cancel_time=at, cancellation_initiator=initiator, cancel_reason=reason, is_buyer_request_cancel=False
            )
        self._refresh_status(shop, order, at)

    def _refresh_status(self, shop: _Shop, order: dict, at: int) -> None:
        """Derive the order status from its line items after a shipment or cancellation."""
        active = [li for li in order["line_items"] if li["display_status"] != "CANCELLED"]
        old = order["status"]
        new = old
        if not active:
            new = "CANCELLED"
        elif old in SHIPPABLE_STATUSES:
            shipped = sum(1 for li in active if li.get("package_id"))
            new = (
                "AWAITING_COLLECTION"
                if shipped == len(active)
                else ("PARTIALLY_SHIPPING" if shipped else "AWAITING_SHIPMENT")
            )
        if new != old:
            self._set_status(shop, order, new, at)
        else:
            self._sync_lines(shop, order)

    def _set_status(self, shop: _Shop, order: dict, status: str, at: int) -> None:
        order["status"] = status
        order["update_time"] = at  # update_time follows status changes only
        self.sandbox.outbox.emit(
            "tiktok",
            "ORDER_STATUS_CHANGE",
            {
                "order_id": order["id"],
                "order_status": status,
                "is_on_hold_order": status == "ON_HOLD",
                "update_time": at,
            },
        )
        if status == "IN_TRANSIT":
            order["collection_time"] = at
        elif status == "DELIVERED":
            order["delivery_time"] = at
        self._sync_lines(shop, order, at)
        # on a living shop's carrier scans an order leaves AWAITING_COLLECTION at its scan, not on a timer
        if (
            status in NEXT_STATUS
            and self.config["progress_shipped_orders"]
            and not (status == "AWAITING_COLLECTION" and self.in_transit_at_scan)
        ):
            wait = self.sandbox.settings.duration(self.name, status, DEFAULT_DURATIONS[status])
            self._schedule(shop, at + wait, "progress", (order["id"], status))

    def _sync_lines(self, shop: _Shop, order: dict, at: int | None = None) -> None:
        status = order["status"]
        for li in order["line_items"]:
            if li["display_status"] == "CANCELLED":
                continue
            if status in SHIPPABLE_STATUSES:
                li["display_status"] = "AWAITING_COLLECTION" if li.get("package_id") else "AWAITING_SHIPMENT"
            else:
                li["display_status"] = status
            if li.get("package_id"):
                li["package_status"] = PACKAGE_STATUS.get(li["display_status"], "PROCESSING")
                if at is not None:
                    shop.packages[li["package_id"]]["update_time"] = at

    # ------------------------------------------------------------ platform hooks
    def throttled_response(self, retry_after: float = 1.0) -> Response:
        # No Retry-After header: it is not documented, so clients must back off without it.
        return JSONResponse(envelope(E_THROTTLED, MSG["throttled"], request_id()), status_code=429)

    def server_error_response(self, status: int) -> Response:
        return JSONResponse(envelope(E_INTERNAL, MSG["internal"], request_id()), status_code=status)

    def expire_tokens(self) -> None:
        past = time.time() - 1
        for rec in self.access_tokens.values():
            rec["expires"] = min(rec["expires"], past)

    def state(self) -> dict:
        for shop in self.shops.values():
            self._advance(shop)
        return {
            "shops": [
                {
                    **shop.info(),
                    "orders": list(shop.orders.values()),
                    "cancellations": list(shop.cancellations.values()),
                    "packages": list(shop.packages.values()),
                    "pending_events": len(shop.events),
                }
                for shop in self.shops.values()
            ],
            "access_tokens": len(self.access_tokens),
            "refresh_tokens": len(self.refresh_tokens),
            "auth_codes_unused": sum(1 for c in self.auth_codes.values() if not c["used"]),
            "page_snapshots": len(self.snapshots),
        }

    # ------------------------------------------------------------------ apps
    def apps(self) -> dict[str, FastAPI]:
        api = self.sandbox.new_app(self.name, "TikTok Shop Open API (sandbox)")
        for ep in self.endpoints:
            api.add_api_route(ep.template, self._endpoint(ep), methods=[ep.method])
        api.add_api_route(
            "/{rest:path}", self._unknown_path, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        )
        auth = self.sandbox.new_app(self.name, "TikTok Shop auth (sandbox)")
        auth.add_api_route("/api/v2/token/get", self._token_get, methods=["GET"])
        auth.add_api_route("/api/v2/token/refresh", self._token_refresh, methods=["GET"])
        auth.add_api_route(
            "/{rest:path}",
            self._unknown_auth_path,
            methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
        )
        return {"tiktok": api, "tiktok_auth": auth}

    def _endpoints(self) -> list[_Endpoint]:
        served = self._endpoints_at(API_VERSION)
        for ep in list(served):
            newer = NEWER_VERSIONS.get(ep.operation)
            if newer:
                served.append(replace(ep, template=ep.template.replace(f"/{API_VERSION}/", f"/{newer}/", 1)))
        return served

    def _endpoints_at(self, v: str) -> list[_Endpoint]:
        return [
            _Endpoint("GET", f"/authorization/{v}/shops", "get_authorized_shops", self._get_shops, shop_scoped=False),
            _Endpoint("POST", f"/order/{v}/orders/search", "search_orders", self._search_orders),
            _Endpoint("GET", f"/order/{v}/orders", "get_order_detail", self._order_detail),
            _Endpoint("GET", f"/logistics/{v}/warehouses", "get_warehouses", self._warehouses),
            _Endpoint(
                "GET",
                f"/logistics/{v}/warehouses/{{warehouse_id}}/delivery_options",
                "get_delivery_options",
                self._delivery_options,
            ),
            _Endpoint(
                "GET",
                f"/logistics/{v}/delivery_options/{{delivery_option_id}}/shipping_providers",
                "get_shipping_providers",
                self._shipping_providers,
            ),
            _Endpoint(
                "POST",
                f"/fulfillment/{v}/orders/{{order_id}}/packages",
                "mark_package_as_shipped",
                self._mark_shipped,
                write=True,
            ),
            _Endpoint(
                "POST", f"/return_refund/{v}/cancellations/search", "search_cancellations", self._search_cancellations
            ),
            _Endpoint(
                "POST",
                f"/return_refund/{v}/cancellations/{{cancel_id}}/approve",
                "approve_cancellation",
                self._approve_cancellation,
                write=True,
                idempotent=True,
            ),
            _Endpoint(
                "POST",
                f"/return_refund/{v}/cancellations/{{cancel_id}}/reject",
                "reject_cancellation",
                self._reject_cancellation,
                write=True,
                idempotent=True,
            ),
            _Endpoint(
                "POST",
                f"/return_refund/{v}/cancellations",
                "cancel_order",
                self._seller_cancel,
                write=True,
                idempotent=True,
            ),
            _Endpoint("GET", f"/return_refund/{v}/reject_reasons", "get_reject_reasons", self._reject_reasons),
        ]

    def _respond(self, body: dict, status: int) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers={"x-tt-logid": body["request_id"]})

    def _endpoint(self, ep: _Endpoint):
        async def endpoint(request: Request) -> Response:
            request.state.operation = ep.operation
            rid = request_id()
            key = None
            try:
                ctx = await self._gateway(request, ep, rid)
                if ep.idempotent:
                    key = ctx.query.get("idempotency_key") or None
                    if key is not None and len(key) > 255:
                        raise param_error("idempotency_key must be at most 255 characters")
                    if key is not None:
                        key = (ctx.shop.cipher, request.url.path, key)
                        if key in self.idempotency:  # same key: same answer, no second effect
                            body, status, outcome = self.idempotency[key]
                            await self._record(request, ep, status, outcome, body["request_id"])
                            return self._respond(body, status)
                data = await ep.handler(ctx)
                body, status, outcome = envelope(0, MSG["success"], rid, data), 200, "ok"
            except ApiError as exc:
                body, status, outcome = envelope(exc.code, exc.message, rid), exc.status, str(exc.code)
            if key is not None and status == 200:
                self.idempotency[key] = (body, status, outcome)
            await self._record(request, ep, status, outcome, rid)
            return self._respond(body, status)

        endpoint.__name__ = ep.operation
        return endpoint

    async def _record(self, request: Request, ep: _Endpoint, status: int, outcome: str, rid: str) -> None:
        if not ep.write:
            return
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = raw.decode("utf-8", "replace")
        self.record_write(request, body, status, outcome, request_id=rid, operation=ep.operation)

    async def _unknown_path(self, request: Request) -> Response:
        request.state.operation = "unknown_path"
        path = request.url.path
        if any(ep.regex.match(path) for ep in self.endpoints):
            code, message, status = E_METHOD, MSG["method"], 405
        else:
            code, message, status = E_PATH, MSG["path"], 404
            m = re.match(r"^/([a-z_]+)/(\d{6})(/.*)?$", path)
            versions = {ep.template.split("/")[2] for ep in self.endpoints}
            if m and any(
                ep.regex.match(f"/{m.group(1)}/{v}{m.group(3) or ''}") for v in versions for ep in self.endpoints
            ):
                code, message = E_VERSION, MSG["version"]
        return self._respond(envelope(code, message, request_id()), status)

    async def _unknown_auth_path(self, request: Request) -> Response:
        request.state.operation = "unknown_path"
        return self._respond(envelope(E_PATH, MSG["path"], request_id()), 404)

    # --------------------------------------------------------------- gateway
    async def _gateway(self, request: Request, ep: _Endpoint, rid: str) -> _Ctx:
        pairs = request.query_params.multi_items()
        query: dict[str, str] = {}
        for k, v in pairs:
            query[k] = f"{query[k]},{v}" if k in query else v
        app_key = query.get("app_key", "")
        secret = self.app_secrets.get(app_key)
        if secret is None:
            raise ApiError(E_REQUEST, MSG["app_key"], 400)
        given = query.get("sign", "")
        if not given:
            raise ApiError(E_REQUEST, MSG["no_sign"], 400)
        self._check_timestamp(query.get("timestamp"))
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        if raw and not ctype.lower().startswith("application/json"):
            raise ApiError(E_CONTENT_TYPE, MSG["content_type"], 400)
        if not self._signature_ok(secret, request.url.path, pairs, raw, ctype, given):
            raise ApiError(E_SIGN, MSG["sign"], 401)
        self._check_access_token(request.headers.get(TOKEN_HEADER), app_key)
        cipher = query.get("shop_cipher")
        shop = None
        if ep.shop_scoped:
            if not cipher:
                raise ApiError(E_NO_CIPHER, MSG["no_cipher"], 400)
            if cipher not in self.shops or cipher not in self.grant["shops"]:
                raise ApiError(E_CIPHER_TOKEN, MSG["cipher_token"], 400)
            shop = self.shops[cipher]
        elif cipher is not None:
            raise ApiError(E_REQUEST, MSG["unexpected_cipher"], 400)
        self._throttle(app_key, cipher or "", ep.template)
        body: Any = {}
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise param_error("the request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise param_error("the request body must be a JSON object")
        if shop is not None:
            self._advance(shop)
        return _Ctx(request=request, request_id=rid, query=query, body=body, app_key=app_key, shop=shop)

    @staticmethod
    def _check_timestamp(value: str | None) -> None:
        if value is None or not re.fullmatch(r"-?\d{1,12}", value):
            raise ApiError(E_REQUEST, MSG["ts_missing"], 400)
        stamp = int(value)
        if stamp < 0:
            raise ApiError(E_REQUEST, MSG["ts_negative"], 400)
        now = time.time()
        if stamp < now - SIGN_WINDOW_PAST:
            raise ApiError(E_REQUEST, MSG["ts_old"], 400)
        if stamp > now + SIGN_WINDOW_FUTURE:
            raise ApiError(E_REQUEST, MSG["ts_future"], 400)

    @staticmethod
    def _signature_ok(secret: str, path: str, pairs: list[tuple[str, str]], raw: bytes, ctype: str, given: str) -> bool:
        given = given.lower()
        # Some clients drop empty-valued parameters before signing; a repeated key is signed
        # comma-joined or once per occurrence (tiktok_signing): accept each of those forms.
        forms = [pairs] + ([[(k, v) for k, v in pairs if v != ""]] if any(v == "" for _, v in pairs) else [])
        styles = ("joined", "each") if len({k for k, _ in pairs}) < len(pairs) else ("joined",)
        return any(
            hmac.compare_digest(sign(secret, path, form, raw, ctype, style), given)
            for form in forms
            for style in styles
        )

    def _check_access_token(self, token: str | None, app_key: str) -> None:
        rec = self.access_tokens.get(token or "")
        if rec is None or rec["app_key"] != app_key:
            raise ApiError(E_REQUEST, MSG["token"], 401)
        if rec["expires"] <= time.time():
            raise ApiError(E_TOKEN_EXPIRED, MSG["token_expired"], 401)

    def _throttle(self, app_key: str, cipher: str, template: str) -> None:
        key = (app_key, cipher, template)
        bucket = self.buckets.get(key)
        if bucket is None:
            rate = max(0.001, float(self.config["qps"]) * self.sandbox.settings.rate_scale)
            bucket = self.buckets[key] = TokenBucket(rate, max(1.0, rate), clock=self.sandbox.clock.quota_seconds)
        if bucket.take() > 0:
            raise ApiError(E_THROTTLED, MSG["throttled"], 429)

    # --------------------------------------------------------------- params
    @staticmethod
    def _int_query(q: dict, key: str, *, default: int | None, lo: int, hi: int) -> int:
        raw = q.get(key)
        if raw is None or raw == "":
            if default is None:
                raise param_error(f"{key} is required")
            return default
        if not re.fullmatch(r"-?\d+", raw) or not lo <= int(raw) <= hi:
            raise param_error(f"{key} must be {lo}-{hi}")
        return int(raw)

    @staticmethod
    def _enum_query(q: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = q.get(key) or default
        if value not in allowed:
            raise param_error(f"{key} must be one of {', '.join(allowed)}")
        return value

    @staticmethod
    def _body_time(body: dict, key: str) -> int | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise param_error(f"{key} must be a Unix timestamp in seconds")
        return value

    @staticmethod
    def _body_list(body: dict, key: str, allowed: tuple[str, ...] | None = None) -> list[str] | None:
        value = body.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise param_error(f"{key} must be a list of strings")
        if allowed is not None:
            for v in value:
                if v not in allowed:
                    raise param_error(f"{key}: {v!r} is not one of {', '.join(allowed)}")
        return value

    @staticmethod
    def _window(body: dict, prefix: str) -> tuple[int | None, int | None]:
        return TikTokSandbox._body_time(body, f"{prefix}_ge"), TikTokSandbox._body_time(body, f"{prefix}_lt")

    @staticmethod
    def _in_window(value: int, window: tuple[int | None, int | None]) -> bool:
        ge, lt = window
        return (ge is None or value >= ge) and (lt is None or value < lt)

    # --------------------------------------------------------------- paging
    def _page(
        self, shop: _Shop, q: dict, fingerprint: str, page_size: int, matching: Callable[[], list[str]]
    ) -> tuple[list[str], str, int]:
        token = q.get("page_token") or ""
        if token:
            snap, offset = self._resume(shop, token, fingerprint)
        else:
            snap, offset = _Snapshot(shop.cipher, fingerprint, matching(), time.time()), 0
        ids = snap.ids[offset : offset + page_size]
        nxt = offset + page_size
        next_token = self._store(snap, nxt) if nxt < len(snap.ids) else ""
        return ids, next_token, len(snap.ids)

    def _store(self, snap: _Snapshot, offset: int) -> str:
        if not snap.key:
            snap.key = secrets.token_bytes(9).hex()
            self.snapshots[snap.key] = snap
            while len(self.snapshots) > 500:
                self.snapshots.popitem(last=False)
        raw = PAGE_TOKEN_PREFIX + bytes.fromhex(snap.key) + offset.to_bytes(6, "big")
        return base64.b64encode(raw).decode()

    def _resume(self, shop: _Shop, token: str, fingerprint: str) -> tuple[_Snapshot, int]:
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 18 or not raw.startswith(PAGE_TOKEN_PREFIX):
            raise param_error("page_token is invalid")
        snap = self.snapshots.get(raw[3:12].hex())
        if snap is None or time.time() - snap.created > self.config["page_token_ttl"]:
            raise param_error("page_token is invalid or expired")
        if snap.shop != shop.cipher or snap.fingerprint != fingerprint:
            raise param_error("page_token does not belong to this query; keep the same filters and sort")
        return snap, int.from_bytes(raw[12:], "big")

    # --------------------------------------------------------------- handlers
    async def _get_shops(self, ctx: _Ctx) -> dict:
        return {"shops": [self.shops[c].info() for c in self.grant["shops"] if c in self.shops]}

    def _order_of(self, shop: _Shop, oid: str) -> dict:
        order = shop.orders.get(oid)
        if order is None:
            raise ApiError(E_NOT_SELLERS, MSG["not_sellers"])
        return order

    async def _search_orders(self, ctx: _Ctx) -> dict:
        q, body, shop = ctx.query, ctx.body, ctx.shop
        page_size = self._int_query(q, "page_size", default=None, lo=1, hi=100)
        sort_field = self._enum_query(q, "sort_field", ("create_time", "update_time"), "create_time")
        sort_order = self._enum_query(q, "sort_order", ("ASC", "DESC"), "DESC")
        status = body.get("order_status")
        if status is not None and status not in ORDER_STATUSES:
            raise param_error(f"order_status must be one of {', '.join(ORDER_STATUSES)}")
        shipping_type = body.get("shipping_type")
        if shipping_type is not None and shipping_type not in ("TIKTOK", "SELLER"):
            raise param_error("shipping_type must be TIKTOK or SELLER")
        cancel_flag = body.get("is_buyer_request_cancel")
        if cancel_flag is not None and not isinstance(cancel_flag, bool):
            raise param_error("is_buyer_request_cancel must be true or false")
        buyer = body.get("buyer_user_id")
        if buyer is not None and not isinstance(buyer, str):
            raise param_error("buyer_user_id must be a string")
        warehouses = self._body_list(body, "warehouse_ids")
        created, updated = self._window(body, "create_time"), self._window(body, "update_time")
        filters = {
            "order_status": status,
            "shipping_type": shipping_type,
            "cancel": cancel_flag,
            "buyer": buyer,
            "warehouses": warehouses,
            "created": created,
            "updated": updated,
        }
        fingerprint = json.dumps(["orders", sort_field, sort_order, filters], sort_keys=True)

        def matching() -> list[str]:
            found = [
                o
                for o in shop.orders.values()
                if (status is None or o["status"] == status)
                and (shipping_type is None or o["shipping_type"] == shipping_type)
                and (cancel_flag is None or o["is_buyer_request_cancel"] == cancel_flag)
                and (buyer is None or o["user_id"] == buyer)
                and (warehouses is None or o["warehouse_id"] in warehouses)
                and self._in_window(o["create_time"], created)
                and self._in_window(o["update_time"], updated)
            ]
            found.sort(key=lambda o: (o[sort_field], int(o["id"])), reverse=sort_order == "DESC")
            return [o["id"] for o in found]

        ids, next_token, total = self._page(shop, q, fingerprint, page_size, matching)
        return {
            "next_page_token": next_token,
            "total_count": total,
            "orders": [copy.deepcopy(shop.orders[i]) for i in ids],
        }

    async def _order_detail(self, ctx: _Ctx) -> dict:
        raw = ctx.query.get("ids", "")
        ids = [i.strip() for i in raw.split(",")] if raw else []
        if not ids or any(not i.isdigit() for i in ids):
            raise param_error("ids must be a comma-separated list of order ids")
        ids = list(dict.fromkeys(ids))
        if len(ids) > 50:
            raise param_error("ids: at most 50 order ids per request")
        orders = [copy.deepcopy(self._order_of(ctx.shop, i)) for i in ids]
        if ctx.version != API_VERSION:
            for order in orders:
                order.update(
                    is_subscription_order=False,
                    buyer_nickname=f"buyer{order['user_id'][-6:]}",
                    recommended_shipping_time=order["rts_sla_time"],
                )
        return {"orders": orders}

    async def _warehouses(self, ctx: _Ctx) -> dict:
        return {"warehouses": copy.deepcopy(ctx.shop.warehouses)}

    async def _delivery_options(self, ctx: _Ctx) -> dict:
        wid = ctx.path_params["warehouse_id"]
        if not any(w["id"] == wid for w in ctx.shop.warehouses):
            raise ApiError(E_WAREHOUSE)
        return {
            "delivery_options": [
                copy.deepcopy(o["option"]) for o in ctx.shop.delivery_options.values() if o["warehouse_id"] == wid
            ]
        }

    async def _shipping_providers(self, ctx: _Ctx) -> dict:
        option = ctx.shop.delivery_options.get(ctx.path_params["delivery_option_id"])
        if option is None:
            raise ApiError(E_DELIVERY_OPTION)
        return {"shipping_providers": copy.deepcopy(option["providers"])}

    def _shipping_request(self, ctx: _Ctx) -> tuple[Any, Any, list | None]:
        """(tracking number, provider id, line ids or None) as the endpoint's version spells them."""
        body = ctx.body
        if ctx.version == API_VERSION:
            return (
                body.get("tracking_number"),
                body.get("shipping_provider_id"),
                self._body_list(body, "order_line_item_ids"),
            )
        infos = body.get("shipping_info_list")
        if not isinstance(infos, list) or not infos or not all(isinstance(i, dict) for i in infos):
            raise param_error(
                f"shipping_info_list is required (from {ctx.version} the tracking number and "
                "provider go in shipping_info_list[])"
            )
        if len(infos) > 1:
            raise param_error(
                "shipping_info_list: only one tracking number can be uploaded at a time "
                "(several need the split-shipment allowlist)"
            )
        lines = body.get("order_line_list")
        if lines is not None and (
            not isinstance(lines, list)
            or not all(isinstance(li, dict) and isinstance(li.get("order_line_id"), str) for li in lines)
        ):
            raise param_error("order_line_list must be a list of {order_line_id}")
        wanted = None if not lines else [li["order_line_id"] for li in lines]
        return infos[0].get("tracking_number"), infos[0].get("shipping_provider_id"), wanted

    async def _mark_shipped(self, ctx: _Ctx) -> dict:
        shop = ctx.shop
        tracking, provider_id, wanted = self._shipping_request(ctx)
        if not isinstance(tracking, str) or not tracking:
            raise param_error("tracking_number is required")
        if not isinstance(provider_id, str) or not provider_id:
            raise param_error("shipping_provider_id is required")
        order = self._order_of(shop, ctx.path_params["order_id"])
        if order["fulfillment_type"] != "FULFILLMENT_BY_SELLER" or order["shipping_type"] != "SELLER":
            raise ApiError(E_BUSINESS_TYPE, MSG["business_type"])
        if order["status"] in SHIPPED_STATUSES:
            raise ApiError(E_ALREADY_SHIPPED, f"The order has already been shipped ({order['status']}).")
        if order["status"] not in SHIPPABLE_STATUSES:
            raise ApiError(E_ORDER_STATUS, f"The order status {order['status']} does not allow shipping.")
        carrier = next(
            (p for p in shop.delivery_options[order["delivery_option_id"]]["providers"] if p["id"] == provider_id), None
        )
        if carrier is None:
            raise ApiError(E_PROVIDER)
        if not TRACKING_RE.match(tracking):
            raise ApiError(E_TRACKING, "The tracking_number is invalid: use 6-50 letters, digits or dashes.")
        self._verify_tracking(shop, order, carrier, tracking)
        by_id = {li["id"]: li for li in order["line_items"]}
        if wanted:
            unknown = [i for i in wanted if i not in by_id]
            if unknown:
                raise ApiError(E_LINE_ITEMS, f"Line items {', '.join(unknown)} do not belong to this order.")
            cancelled = [i for i in wanted if by_id[i]["display_status"] == "CANCELLED"]
            if cancelled:
                raise ApiError(E_LINE_ITEMS, f"Line items {', '.join(cancelled)} are cancelled.")
            shipped = [i for i in wanted if by_id[i].get("package_id")]
            if shipped:
                raise ApiError(
                    E_ALREADY_SHIPPED, f"The order line items have already been shipped: {', '.join(shipped)}."
                )
            lines = [by_id[i] for i in dict.fromkeys(wanted)]
        else:
            lines = [
                li for li in order["line_items"] if li["display_status"] != "CANCELLED" and not li.get("package_id")
            ]
            if not lines:
                raise ApiError(E_ALREADY_SHIPPED)
        at = ts(self.now())
        package = self._add_package(shop, order, lines, tracking, carrier, at)
        self.dispatches.setdefault(order["id"], {"by": "seller", "at": at, "tracking_number": tracking})
        self._refresh_status(shop, order, at)
        self._collect_if_scanned(shop, order, at)
        return {
            "order_id": order["id"],
            "order_line_item_ids": package["order_line_item_ids"],
            "package_id": package["id"],
        }

    def refuses_carrier(self, carrier: str, shop: _Shop | None = None) -> bool:
        """TikTok's USPS rule of 01/2026: USPS tracking on the seller's own label fails verification."""
        shop = shop or self.default_shop
        return bool(self.config["usps_needs_tiktok_shipping"]) and shop.region == "US" and "usps" in _norm(carrier)

    def _verify_tracking(self, shop: _Shop, order: dict, carrier: dict, tracking: str) -> None:
        """TikTok's checks of a seller's tracking before it takes it (rules of 2026)."""
        warehouse = order["warehouse_id"]
        if warehouse in shop.mcf_wrong_tracking:
            if shop.mcf_wrong_tracking[warehouse] >= self.config["mcf_wrong_tracking_limit"]:
                raise ApiError(E_WAREHOUSE_INACTIVE)
            amazon = self.sandbox.platforms.get("amazon_mcf")
            if amazon is None or not amazon.is_mcf_tracking(tracking):
                shop.mcf_wrong_tracking[warehouse] += 1
                if shop.mcf_wrong_tracking[warehouse] >= self.config["mcf_wrong_tracking_limit"]:
                    for w in shop.warehouses:
                        if w["id"] == warehouse:
                            w["effect_status"] = "DISABLED"
                raise ApiError(E_NOT_MCF_TRACKING)
        if self.refuses_carrier(carrier["name"], shop):
            raise ApiError(E_USPS_LABEL)

    async def _search_cancellations(self, ctx: _Ctx) -> dict:
        q, body, shop = ctx.query, ctx.body, ctx.shop
        page_size = self._int_query(q, "page_size", default=10, lo=1, hi=50)
        sort_field = self._enum_query(q, "sort_field", ("create_time", "update_time"), "create_time")
        sort_order = self._enum_query(q, "sort_order", ("ASC", "DESC"), "ASC")
        cancel_ids = self._body_list(body, "cancel_ids")
        order_ids = self._body_list(body, "order_ids")
        buyers = self._body_list(body, "buyer_user_ids")
        types = self._body_list(body, "cancel_types", CANCEL_TYPES)
        statuses = self._body_list(body, "cancel_status", CANCEL_STATUSES)
        locale = body.get("locale")
        if locale is not None and not isinstance(locale, str):
            raise param_error("locale must be a string")
        created, updated = self._window(body, "create_time"), self._window(body, "update_time")
        filters = [cancel_ids, order_ids, buyers, types, statuses, created, updated]
        fingerprint = json.dumps(["cancellations", sort_field, sort_order, filters], sort_keys=True)

        def matching() -> list[str]:
            found = [
                c
                for c in shop.cancellations.values()
                if (cancel_ids is None or c["cancel_id"] in cancel_ids)
                and (order_ids is None or c["order_id"] in order_ids)
                and (buyers is None or shop.orders[c["order_id"]]["user_id"] in buyers)
                and (types is None or c["cancel_type"] in types)
                and (statuses is None or c["cancel_status"] in statuses)
                and self._in_window(c["create_time"], created)
                and self._in_window(c["update_time"], updated)
            ]
            found.sort(key=lambda c: (c[sort_field], int(c["cancel_id"])), reverse=sort_order == "DESC")
            return [c["cancel_id"] for c in found]

        ids, next_token, total = self._page(shop, q, fingerprint, page_size, matching)
        found = [copy.deepcopy(shop.cancellations[i]) for i in ids]
        if ctx.version != API_VERSION:
            for rec in found:
                shipped = shop.orders[rec["order_id"]]["status"] in SHIPPED_STATUSES
                rec["should_replenish_stock"] = not shipped
                for line in rec["cancel_line_items"]:
                    line["cancel_sub_line_items"] = []
        return {"cancellations": found, "next_page_token": next_token, "total_count": total}

    def _pending_request(self, shop: _Shop, cancel_id: str) -> tuple[dict, dict]:
        rec = shop.cancellations.get(cancel_id)
        if rec is None:
            raise ApiError(E_NO_CANCELLATION)
        if rec["cancel_type"] != "BUYER_CANCEL" or rec["cancel_status"] != "CANCELLATION_REQUEST_PENDING":
            raise ApiError(E_CANCEL_STATE, f"The cancellation request is not pending (status {rec['cancel_status']}).")
        return rec, shop.orders[rec["order_id"]]

    async def _approve_cancellation(self, ctx: _Ctx) -> dict:
        rec, order = self._pending_request(ctx.shop, ctx.path_params["cancel_id"])
        if not self._cancellable(order):
            raise ApiError(
                E_NOT_CANCELLABLE, f"The order is {order['status']} with shipped items and cannot be cancelled."
            )
        at = ts(self.now())
        self._approve(ctx.shop, order, rec, at)
        self.responses[rec["cancel_id"]] = {"by": "seller", "at": at, "outcome": "approved"}
        return {}

    async def _reject_cancellation(self, ctx: _Ctx) -> dict:
        body = ctx.body
        reason = body.get("reject_reason")
        if not isinstance(reason, str) or not reason:
            raise param_error("reject_reason is required")
        if reason not in dict(REJECT_REASONS[ctx.shop.region]):
            raise param_error(f"reject_reason {reason!r} is not a reason from reject_reasons")
        comment = body.get("comment")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 1000):
            raise param_error("comment must be a string of at most 1000 characters")
        images = body.get("images")
        if images is not None and not isinstance(images, list):
            raise param_error("images must be a list")
        rec, order = self._pending_request(ctx.shop, ctx.path_params["cancel_id"])
        at = ts(self.now())
        self._close_request(order, rec, "CANCELLATION_REQUEST_CANCEL", at)
        self.responses[rec["cancel_id"]] = {"by": "seller", "at": at, "outcome": "rejected"}
        return {}

    def cancel_from_channel(self, order_id: str) -> bool:
        """A sales-channel connector copying a Shopify cancel to TikTok: the order is cancelled as the
        seller's (it counts against the shop's seller-fault cancellation rate) and a pending buyer
        request is closed with it, so approving that request afterwards fails. False when the order
        is unknown or cannot be cancelled any more."""
        shop = self.default_shop
        order = shop.orders.get(order_id)
        if order is None or not self._cancellable(order):
            return False
        at = ts(self.now())
        for rec in shop.cancellations.values():
            if rec["order_id"] == order_id and rec["cancel_status"] == "CANCELLATION_REQUEST_PENDING":
                self._close_request(order, rec, "CANCELLATION_REQUEST_CANCEL", at)
                self.responses[rec["cancel_id"]] = {"by": "channel", "at": at, "outcome": "seller_cancelled"}
        lines = [li for li in order["line_items"] if li["display_status"] != "CANCELLED"]
        self._cancel_as(shop, order, lines, "SELLER", CHANNEL_CANCEL_REASON, at)
        return True

    async def _seller_cancel(self, ctx: _Ctx) -> dict:
        shop, body = ctx.shop, ctx.body
        oid = body.get("order_id")
        reason = body.get("cancel_reason")
        if not isinstance(oid, str) or not oid:
            raise param_error("order_id is required")
        if not isinstance(reason, str) or not reason:
            raise param_error("cancel_reason is required")
        if not REASON_CODE_RE.match(reason):
            raise param_error("cancel_reason must be a reason code")
        wanted = self._body_list(body, "order_line_item_ids")
        skus = body.get("skus")
        if skus is not None and not isinstance(skus, list):
            raise param_error("skus must be a list")
        order = self._order_of(shop, oid)
        if any(
            c["order_id"] == oid and c["cancel_status"] == "CANCELLATION_REQUEST_PENDING"
            for c in shop.cancellations.values()
        ):
            raise ApiError(E_PENDING_REQUEST)
        if order["status"] not in CANCELLABLE_STATUSES + ("PARTIALLY_SHIPPING",):
            raise ApiError(E_ORDER_STATUS, f"The order status {order['status']} does not allow cancellation.")
        by_id = {li["id"]: li for li in order["line_items"]}
        if wanted:
            unknown = [i for i in wanted if i not in by_id or by_id[i]["display_status"] == "CANCELLED"]
            if unknown:
                raise ApiError(E_LINE_ITEMS, f"Line items {', '.join(unknown)} are unknown or already cancelled.")
            if any(by_id[i].get("package_id") for i in wanted):
                raise ApiError(E_NOT_CANCELLABLE, "Shipped line items cannot be cancelled.")
            lines = [by_id[i] for i in dict.fromkeys(wanted)]
        else:
            if not self._cancellable(order):
                raise ApiError(
                    E_NOT_CANCELLABLE, "The order has shipped items: name the unshipped order_line_item_ids to cancel."
                )
            lines = [li for li in order["line_items"] if li["display_status"] != "CANCELLED"]
        at = ts(self.now())
        rec = self._cancel_as(shop, order, lines, "SELLER", (reason, reason.replace("_", " ")), at)
        return {"cancel_id": rec["cancel_id"], "cancel_status": rec["cancel_status"]}

    async def _reject_reasons(self, ctx: _Ctx) -> dict:
        target = ctx.query.get("return_or_cancel_id")
        if target and target not in ctx.shop.cancellations:
            raise ApiError(E_NO_CANCELLATION)
        return {"reasons": [{"name": n, "text": t} for n, t in REJECT_REASONS[ctx.shop.region]]}

    # ------------------------------------------------------------ token host
    async def _token_gateway(self, request: Request, operation: str, grant_type: str) -> dict[str, str]:
        request.state.operation = operation
        q = dict(request.query_params)
        app_key = q.get("app_key", "")
        secret = self.app_secrets.get(app_key)
        if secret is None:
            raise ApiError(E_REQUEST, MSG["app_key"], 400)
        if not hmac.compare_digest(q.get("app_secret", ""), secret):
            raise ApiError(E_REQUEST, MSG["app_secret"], 400)
        if q.get("grant_type") != grant_type:
            raise param_error(f"grant_type must be {grant_type}")
        self._throttle(app_key, "", request.url.path)
        return q

    def _issue(self, app_key: str, refresh_token: str | None = None) -> dict:
        wall = time.time()
        access = "TTP_" + secrets.token_urlsafe(30)
        self.access_tokens[access] = {"app_key": app_key, "expires": wall + self.config["access_token_ttl"]}
        if refresh_token is None:
            refresh_token = "TTP_" + secrets.token_urlsafe(30)
            self.refresh_tokens[refresh_token] = {
                "app_key": app_key,
                "expires": wall + self.config["refresh_token_ttl"],
            }
        return {
            "access_token": access,
            "access_token_expire_in": int(self.access_tokens[access]["expires"]),
            "refresh_token": refresh_token,
            "refresh_token_expire_in": int(self.refresh_tokens[refresh_token]["expires"]),
            "open_id": self.grant["open_id"],
            "seller_name": self.grant["seller_name"],
            "seller_base_region": "US",
            "user_type": 0,
            "granted_scopes": list(SCOPES),
        }

    async def _token_call(
        self, request: Request, operation: str, grant_type: str, action: Callable[[dict, str], dict]
    ) -> Response:
        rid = request_id()
        try:
            q = await self._token_gateway(request, operation, grant_type)
            data = action(q, q["app_key"])
            body, status, outcome = {"code": 0, "message": "success", "request_id": rid, "data": data}, 200, "ok"
        except ApiError as exc:
            body, status, outcome = envelope(exc.code, exc.message, rid), exc.status, str(exc.code)
        self.record_write(request, None, status, outcome, request_id=rid, operation=operation)
        return self._respond(body, status)

    async def _token_get(self, request: Request) -> Response:
        def exchange(q: dict, app_key: str) -> dict:
            code = self.auth_codes.get(q.get("auth_code") or "")
            if code is None or code["used"] or code["app_key"] != app_key or code["expires"] <= time.time():
                raise ApiError(E_AUTH_CODE, MSG["auth_code"])
            code["used"] = True  # single use
            return self._issue(app_key)

        return await self._token_call(request, "get_access_token", "authorized_code", exchange)

    async def _token_refresh(self, request: Request) -> Response:
        def refresh(q: dict, app_key: str) -> dict:
            rec = self.refresh_tokens.get(q.get("refresh_token") or "")
            if rec is None or rec["app_key"] != app_key:
                raise ApiError(E_NO_AUTH_RECORD, MSG["no_auth_record"])
            if rec["expires"] <= time.time():
                raise ApiError(E_RT_EXPIRED, MSG["rt_expired"])
            return self._issue(app_key, q["refresh_token"])

        return await self._token_call(request, "refresh_access_token", "refresh_token", refresh)
