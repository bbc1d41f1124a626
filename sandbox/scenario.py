"""Scenario files (docs/architecture.md §6): parsing and validation.

A scenario describes, per TikTok order, what each platform holds at the scenario's `now`.
Validation is strict and names the order and the field at fault, so a bad file is refused
before any simulator state is touched. The platform simulators read the validated dicts
and fill in every other field the real APIs return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from include.decide.enums import (  # noqa: F401  (re-exported for the simulators)
    AMAZON_ORDER_STATUSES,
    AMAZON_SHIPMENT_STATUSES,
    FULFILLMENT_TYPES,
    SHIPBOB_ORDER_STATUSES,
    SHIPBOB_SHIPMENT_STATUSES,
    TIKTOK_CANCEL_STATUSES,
    TIKTOK_ORDER_STATUSES,
)

# where the simulated sales channel writes the TikTok id: the platform's side, kept apart from the
# client's reading of it (orderops_provider/tiktok_order_id.py) so the tests hold one against the other
TIKTOK_ID_PLACES = ("source_identifier", "custom_attribute", "note", "name")
# Optional shopify.tiktok_id_key (the attribute key, with custom_attribute) and shopify.tiktok_id_format
# (the note line or the order name, with note or name; "{id}" stands for the id): the styles of the
# connectors in docs/tiktok-order-id.md.
TIKTOK_ID_KEY_LENGTH = 64
TIKTOK_ID_FORMAT_LENGTH = 60
# Optional TikTok scenario fields tiktok.shipping_type and tiktok.delivery_option (MCF: the option of
# the Amazon MCF warehouse, with the TikTok setting mcf_warehouse).
TIKTOK_SHIPPING_TYPES = ("SELLER", "TIKTOK")
TIKTOK_DELIVERY_OPTIONS = ("STANDARD", "EXPRESS", "MCF")
# Shopify OrderDisplayFinancialStatus values (optional scenario field shopify.financial_status).
SHOPIFY_FINANCIAL_STATUSES = (
    "PENDING",
    "AUTHORIZED",
    "PARTIALLY_PAID",
    "PAID",
    "PARTIALLY_REFUNDED",
    "REFUNDED",
    "VOIDED",
    "EXPIRED",
)
FULFILLERS = ("amazon_mcf", "shipbob")
# Optional scenario field amazon_mcf.shipping_speed (the API's shippingSpeedCategory, US values).
AMAZON_SHIPPING_SPEEDS = ("Standard", "Expedited", "Priority")
# Sub-states of a Processing ShipBob shipment (status_details names); from Picked on it can't be cancelled.
SHIPBOB_PROCESSING_DETAILS = ("Allocated", "Picked", "Packed", "Labeled")
# Every scenario time and the sandbox clock fall in these years: the simulators add days and weeks
# to them, which must stay within what a datetime holds (years 1-9999).
FIRST_YEAR, LAST_YEAR = 2000, 2100
TIME_RANGE = (datetime(FIRST_YEAR, 1, 1, tzinfo=timezone.utc), datetime(LAST_YEAR + 1, 1, 1, tzinfo=timezone.utc))
# The platforms' own limits on ids: TikTok's are 64-bit numbers sent as strings; Shopify's stay
# below 2^53, which JSON readers hold exactly; ShipBob's and Amazon's package numbers are int32;
# Amazon and ShipBob take order references of up to 40 and 300 characters.
TIKTOK_ID_DIGITS = 20
SHOPIFY_ID_MAX = 2**53 - 1
INT32_MAX = 2**31 - 1
AMAZON_ORDER_ID_LENGTH = 40
SHIPBOB_REFERENCE_LENGTH = 300
# The fields each part of a scenario may have; any other is refused by name, so a misspelt
# optional field does not quietly fall back to its default.
FIELDS = {
    "scenario": frozenset({"now", "orders"}),
    "order": frozenset({"tiktok", "shopify", "fulfiller", "amazon_mcf", "shipbob"}),
    "tiktok": frozenset(
        {
            "id",
            "status",
            "fulfillment_type",
            "create_time",
            "rts_sla_time",
            "shipping_due_time",
            "update_time",
            "tracking_number",
            "shipping_provider",
            "paid_time",
            "tts_sla_time",
            "collection_due_time",
            "delivery_due_time",
            "delivery_sla_time",
            "cancel_order_sla_time",
            "shipping_type",
            "delivery_option",
            "seller_note",
            "buyer_message",
            "line_items",
            "cancellation",
        }
    ),
    "tiktok.line_item": frozenset({"id", "seller_sku"}),
    "tiktok.cancellation": frozenset({"cancel_id", "status", "create_time", "deadline"}),
    "shopify": frozenset(
        {
            "id",
            "name",
            "tiktok_id_in",
            "tiktok_id_key",
            "tiktok_id_format",
            "cancelled",
            "created_at",
            "source_name",
            "note",
            "financial_status",
            "tags",
        }
    ),
    "amazon_mcf": frozenset(
        {
            "seller_fulfillment_order_id",
            "status",
            "received_time",
            "displayable_order_id",
            "shipping_speed",
            "cancel_ignored",
            "shipments",
        }
    ),
    "amazon_mcf.shipment": frozenset({"status", "packages"}),
    "amazon_mcf.package": frozenset({"package_number", "carrier_code", "tracking_number"}),
    "shipbob": frozenset({"order_id", "reference_id", "status", "created_date", "shipments"}),
    "shipbob.shipment": frozenset(
        {"id", "status", "status_detail", "status_since", "is_tracking_uploaded", "tracking"}
    ),
    "shipbob.tracking": frozenset({"carrier", "tracking_number"}),
}


def shopify_order_name(entry: dict, tiktok_id: str) -> str:
    """The Shopify order name as the sales channel writes it: the TikTok id (in the entry's
    tiktok_id_format, if any) when that is where it lives."""
    if entry["tiktok_id_in"] == "name" and entry.get("tiktok_id_format"):
        return entry["tiktok_id_format"].replace("{id}", tiktok_id)
    if entry["tiktok_id_in"] == "name" and tiktok_id not in entry["name"]:
        return f"#{tiktok_id}"
    return entry["name"]


class ScenarioError(ValueError):
    """A scenario file that cannot be loaded; the message names the order and field."""


def _shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short (an id may be thousands of digits)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def parse_time(value: Any, where: str) -> datetime:
    """An ISO-8601 instant with a timezone (or a trailing Z), returned in UTC."""
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: expected an ISO-8601 time string, got {_shown(value)}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"{where}: {_shown(value)} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        raise ScenarioError(f"{where}: {_shown(value)} has no timezone (add Z or an offset)")
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before the first representable instant
        raise ScenarioError(f"{where}: {_shown(value)} is out of range") from None


def scenario_time(value: Any, where: str) -> datetime:
    """A time a scenario or the sandbox clock names: parse_time's, in the years FIRST_YEAR-LAST_YEAR."""
    moment = parse_time(value, where)
    if not TIME_RANGE[0] <= moment < TIME_RANGE[1]:
        raise ScenarioError(f"{where}: {_shown(value)} is outside the years {FIRST_YEAR}-{LAST_YEAR}")
    return moment


def reached_by(start: datetime, lead: timedelta, now: datetime) -> datetime:
    """When a step the scenario says is done by `now` (a shipment that left, an order settled) happened,
    if the scenario gives no time: `lead` after `start` on the platform's own timeline, or, where that
    timeline would still be running at `now`, halfway from `start` to `now` (the platform was quicker).
    Never `now` itself: stamped at the frozen clock, every such step would seem to happen at once, and
    the hours from a shipment to its tracking would all read 0."""
    moment = start + lead
    return moment if moment < now else start + max(now - start, timedelta(0)) / 2


def format_time(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC, the year always four digits (strftime writes year 159 as "159")."""
    return moment.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _unknown_fields(value: dict, part: str) -> str | None:
    """What to say of the fields of `value` that the scenario part `part` does not have, if any."""
    unknown = sorted(map(str, value.keys() - FIELDS[part]))
    return f"unknown field(s) {', '.join(unknown)}" if unknown else None


class _Checker:
    """Field checks that name the order and path of whatever is wrong."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, path: str, problem: str) -> None:
        raise ScenarioError(f"{self.where}: {path}: {problem}")

    def obj(self, value: Any, path: str, part: str) -> dict:
        """An object of the scenario part `part` (a key of FIELDS), with no field that part lacks."""
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {type(value).__name__}")
        unknown = _unknown_fields(value, part)
        if unknown:
            self.fail(path, unknown)
        return value

    def has(self, obj: dict, key: str, path: str) -> Any:
        if key not in obj:
            self.fail(f"{path}.{key}", "is required")
        return obj[key]

    def string(
        self,
        obj: dict,
        key: str,
        path: str,
        *,
        required: bool = True,
        digits: bool = False,
        allow_empty: bool = False,
        max_length: int | None = None,
    ) -> str | None:
        if key not in obj or obj[key] is None:
            if required:
                self.fail(f"{path}.{key}", "is required")
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"expected a string, got {_shown(value)}")
        if not value and not allow_empty:
            self.fail(f"{path}.{key}", "must not be empty")
        if digits and not (value.isascii() and value.isdigit()):  # "²" is a digit to isdigit(), not to int()
            self.fail(f"{path}.{key}", f"expected a string of digits, got {_shown(value)}")
        if max_length is not None and len(value) > max_length:
            self.fail(f"{path}.{key}", f"expected at most {max_length} characters, got {len(value)}")
        return value

    def integer(self, obj: dict, key: str, path: str, *, maximum: int) -> int:
        """A required positive integer up to the platform's own `maximum`."""
        value = obj.get(key)
        if value is None:
            self.fail(f"{path}.{key}", "is required")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
            self.fail(f"{path}.{key}", f"expected a positive integer up to {maximum}, got {_shown(value)}")
        return value

    def boolean(self, obj: dict, key: str, path: str, *, default: bool = False) -> bool:
        value = obj.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"expected true or false, got {_shown(value)}")
        return value

    def enum(self, obj: dict, key: str, path: str, allowed: tuple[str, ...], *, default: str | None = None) -> str:
        value = obj.get(key, default)
        if value is None:
            self.fail(f"{path}.{key}", "is required")
        if value not in allowed:
            self.fail(f"{path}.{key}", f"{_shown(value)} is not one of {', '.join(allowed)}")
        return value

    def time(self, obj: dict, key: str, path: str, *, required: bool = True) -> datetime | None:
        if key not in obj or obj[key] is None:
            if required:
                self.fail(f"{path}.{key}", "is required")
            return None
        return scenario_time(obj[key], f"{self.where}: {path}.{key}")

    def items(self, obj: dict, key: str, path: str, *, required: bool = True, non_empty: bool = False) -> list:
        if key not in obj or obj[key] is None:
            if required:
                self.fail(f"{path}.{key}", "is required")
            return []
        value = obj[key]
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", f"expected a list, got {type(value).__name__}")
        if non_empty and not value:
            self.fail(f"{path}.{key}", "must not be empty")
        return value


@dataclass
class ScenarioOrder:
    """One TikTok order and what Shopify and the fulfiller hold for it (validated raw dicts)."""

    index: int
    tiktok: dict
    shopify: list[dict]  # zero, one, or several Shopify orders carrying this TikTok id
    fulfiller: str | None
    amazon_mcf: dict | None
    shipbob: dict | None

    @property
    def tiktok_id(self) -> str:
        return self.tiktok["id"]


@dataclass
class Scenario:
    now: datetime
    orders: list[ScenarioOrder] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


def _check_tiktok(c: _Checker, tt: dict) -> None:
    c.string(tt, "id", "tiktok", digits=True, max_length=TIKTOK_ID_DIGITS)
    c.enum(tt, "status", "tiktok", TIKTOK_ORDER_STATUSES)
    c.enum(tt, "fulfillment_type", "tiktok", FULFILLMENT_TYPES, default="FULFILLMENT_BY_SELLER")
    create = c.time(tt, "create_time", "tiktok")
    c.time(tt, "rts_sla_time", "tiktok")
    c.time(tt, "shipping_due_time", "tiktok")
    update = c.time(tt, "update_time", "tiktok", required=False)
    if update is not None and update < create:
        c.fail("tiktok.update_time", "is before create_time")
    c.string(tt, "tracking_number", "tiktok", required=False, allow_empty=True)
    c.string(tt, "shipping_provider", "tiktok", required=False, allow_empty=True)
    # Optional TikTok details; the simulator derives them when absent.
    for key in (
        "paid_time",
        "tts_sla_time",
        "collection_due_time",
        "delivery_due_time",
        "delivery_sla_time",
        "cancel_order_sla_time",
    ):
        c.time(tt, key, "tiktok", required=False)
    if "shipping_type" in tt:
        c.enum(tt, "shipping_type", "tiktok", TIKTOK_SHIPPING_TYPES)
    if "delivery_option" in tt:
        c.enum(tt, "delivery_option", "tiktok", TIKTOK_DELIVERY_OPTIONS)
    c.string(tt, "seller_note", "tiktok", required=False, allow_empty=True)
    c.string(tt, "buyer_message", "tiktok", required=False, allow_empty=True)
    lines = c.items(tt, "line_items", "tiktok", non_empty=True)
    seen: set[str] = set()
    for i, line in enumerate(lines):
        path = f"tiktok.line_items[{i}]"
        c.obj(line, path, "tiktok.line_item")
        line_id = c.string(line, "id", path, digits=True, max_length=TIKTOK_ID_DIGITS)
        if line_id in seen:
            c.fail(f"{path}.id", f"duplicate line item id {line_id}")
        seen.add(line_id)
        c.string(line, "seller_sku", path)
    cancellation = tt.get("cancellation")
    if cancellation is not None:
        c.obj(cancellation, "tiktok.cancellation", "tiktok.cancellation")
        c.string(cancellation, "cancel_id", "tiktok.cancellation", digits=True, max_length=TIKTOK_ID_DIGITS)
        c.enum(cancellation, "status", "tiktok.cancellation", TIKTOK_CANCEL_STATUSES)
        c.time(cancellation, "create_time", "tiktok.cancellation")
        c.time(cancellation, "deadline", "tiktok.cancellation")


def _check_shopify(c: _Checker, value: Any) -> list[dict]:
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    for i, entry in enumerate(entries):
        path = "shopify" if not isinstance(value, list) else f"shopify[{i}]"
        c.obj(entry, path, "shopify")
        c.integer(entry, "id", path, maximum=SHOPIFY_ID_MAX)
        c.string(entry, "name", path)
        place = c.enum(entry, "tiktok_id_in", path, TIKTOK_ID_PLACES)
        if (
            c.string(entry, "tiktok_id_key", path, required=False, max_length=TIKTOK_ID_KEY_LENGTH) is not None
            and place != "custom_attribute"
        ):
            c.fail(f"{path}.tiktok_id_key", f"goes with tiktok_id_in custom_attribute, not {place}")
        shape = c.string(entry, "tiktok_id_format", path, required=False, max_length=TIKTOK_ID_FORMAT_LENGTH)
        if shape is not None:
            if place not in ("note", "name"):
                c.fail(f"{path}.tiktok_id_format", f"goes with tiktok_id_in note or name, not {place}")
            if shape.count("{id}") != 1:
                c.fail(f"{path}.tiktok_id_format", f"must hold {{id}} once, got {_shown(shape)}")
        c.boolean(entry, "cancelled", path)
        # Optional Shopify-side details; the simulator derives them when absent.
        c.time(entry, "created_at", path, required=False)
        c.string(entry, "source_name", path, required=False)
        c.string(entry, "note", path, required=False, allow_empty=True)
        if entry.get("financial_status") is not None:
            c.enum(entry, "financial_status", path, SHOPIFY_FINANCIAL_STATUSES)
        for j, tag in enumerate(c.items(entry, "tags", path, required=False)):
            if not isinstance(tag, str) or not tag.strip():
                c.fail(f"{path}.tags[{j}]", f"expected a non-empty string, got {_shown(tag)}")
    return entries


def _check_amazon(c: _Checker, mcf: dict) -> None:
    c.obj(mcf, "amazon_mcf", "amazon_mcf")
    c.string(mcf, "seller_fulfillment_order_id", "amazon_mcf", max_length=AMAZON_ORDER_ID_LENGTH)
    c.enum(mcf, "status", "amazon_mcf", AMAZON_ORDER_STATUSES)
    c.time(mcf, "received_time", "amazon_mcf", required=False)
    # Optional: packing-slip order id (default: the Shopify order name), shipping speed, and
    # cancel_ignored (a cancel request is accepted with 200 but never takes: best-effort cancel).
    c.string(mcf, "displayable_order_id", "amazon_mcf", required=False, max_length=AMAZON_ORDER_ID_LENGTH)
    if "shipping_speed" in mcf:
        c.enum(mcf, "shipping_speed", "amazon_mcf", AMAZON_SHIPPING_SPEEDS)
    c.boolean(mcf, "cancel_ignored", "amazon_mcf")
    for i, shipment in enumerate(c.items(mcf, "shipments", "amazon_mcf", required=False)):
        path = f"amazon_mcf.shipments[{i}]"
        c.obj(shipment, path, "amazon_mcf.shipment")
        c.enum(shipment, "status", path, AMAZON_SHIPMENT_STATUSES)
        for j, package in enumerate(c.items(shipment, "packages", path, required=False)):
            ppath = f"{path}.packages[{j}]"
            c.obj(package, ppath, "amazon_mcf.package")
            c.integer(package, "package_number", ppath, maximum=INT32_MAX)
            c.string(package, "carrier_code", ppath)
            c.string(package, "tracking_number", ppath)


def _check_shipbob(c: _Checker, sb: dict) -> None:
    c.obj(sb, "shipbob", "shipbob")
    c.integer(sb, "order_id", "shipbob", maximum=INT32_MAX)
    c.string(sb, "reference_id", "shipbob", max_length=SHIPBOB_REFERENCE_LENGTH)
    c.enum(sb, "status", "shipbob", SHIPBOB_ORDER_STATUSES)
    c.time(sb, "created_date", "shipbob", required=False)
    for i, shipment in enumerate(c.items(sb, "shipments", "shipbob", required=False)):
        path = f"shipbob.shipments[{i}]"
        c.obj(shipment, path, "shipbob.shipment")
        c.integer(shipment, "id", path, maximum=INT32_MAX)
        c.enum(shipment, "status", path, SHIPBOB_SHIPMENT_STATUSES)
        if shipment.get("status_detail") is not None:
            c.enum(shipment, "status_detail", path, SHIPBOB_PROCESSING_DETAILS)
        # When the shipment entered its current status (default: the scenario's now).
        c.time(shipment, "status_since", path, required=False)
        c.boolean(shipment, "is_tracking_uploaded", path)
        tracking = shipment.get("tracking")
        if tracking is not None:
            c.obj(tracking, f"{path}.tracking", "shipbob.tracking")
            c.string(tracking, "carrier", f"{path}.tracking")
            c.string(tracking, "tracking_number", f"{path}.tracking")


def _check_order(index: int, raw: Any) -> ScenarioOrder:
    hint = raw.get("tiktok", {}).get("id") if isinstance(raw, dict) and isinstance(raw.get("tiktok"), dict) else None
    hint = str(hint or "")
    if len(hint) > TIKTOK_ID_DIGITS:  # too long to be TikTok's (tiktok.id's own check says so)
        hint = f"{hint[:TIKTOK_ID_DIGITS]}..."
    c = _Checker(f"orders[{index}]" + (f" (tiktok id {hint})" if hint else ""))
    c.obj(raw, "order", "order")
    tiktok = c.obj(c.has(raw, "tiktok", "order"), "tiktok", "tiktok")
    _check_tiktok(c, tiktok)
    shopify = _check_shopify(c, raw.get("shopify"))
    fulfiller = raw.get("fulfiller")
    if fulfiller is not None and fulfiller not in FULFILLERS:
        c.fail("fulfiller", f"{_shown(fulfiller)} is not one of {', '.join(FULFILLERS)} or null")
    amazon = raw.get("amazon_mcf")
    shipbob = raw.get("shipbob")
    if amazon is not None:
        _check_amazon(c, amazon)
    if shipbob is not None:
        _check_shipbob(c, shipbob)
    if fulfiller == "amazon_mcf" and amazon is None and shipbob is not None:
        c.fail("amazon_mcf", "fulfiller is amazon_mcf but only shipbob data is given")
    if fulfiller == "shipbob" and shipbob is None and amazon is not None:
        c.fail("shipbob", "fulfiller is shipbob but only amazon_mcf data is given")
    if fulfiller is None and (amazon is not None or shipbob is not None):
        c.fail("fulfiller", "is null but fulfiller data is given")
    return ScenarioOrder(
        index=index, tiktok=tiktok, shopify=shopify, fulfiller=fulfiller, amazon_mcf=amazon, shipbob=shipbob
    )


def _check_unique(orders: list[ScenarioOrder]) -> None:
    """Ids must be unique where the real platforms make them unique."""
    owners: dict[tuple[str, Any], int] = {}

    def claim(kind: str, value: Any, order: ScenarioOrder, path: str) -> None:
        key = (kind, value)
        if key in owners:
            raise ScenarioError(
                f"orders[{order.index}] (tiktok id {order.tiktok_id}): {path}: {value!r} "
                f"is already used by orders[{owners[key]}]"
            )
        owners[key] = order.index

    for order in orders:
        claim("tiktok order", order.tiktok_id, order, "tiktok.id")
        for line in order.tiktok["line_items"]:
            claim("tiktok line item", line["id"], order, "tiktok.line_items.id")
        if order.tiktok.get("cancellation"):
            claim("cancel id", order.tiktok["cancellation"]["cancel_id"], order, "tiktok.cancellation.cancel_id")
        for entry in order.shopify:
            claim("shopify id", entry["id"], order, "shopify.id")
        if order.amazon_mcf:
            claim(
                "mcf id",
                order.amazon_mcf["seller_fulfillment_order_id"],
                order,
                "amazon_mcf.seller_fulfillment_order_id",
            )
        if order.shipbob:
            claim("shipbob order", order.shipbob["order_id"], order, "shipbob.order_id")
            for shipment in order.shipbob.get("shipments") or []:
                claim("shipbob shipment", shipment["id"], order, "shipbob.shipments.id")


def parse_scenario(data: Any) -> Scenario:
    """Validate a decoded scenario document; raise ScenarioError naming what is wrong."""
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario: expected a JSON object, got {type(data).__name__}")
    unknown = _unknown_fields(data, "scenario")
    if unknown:
        raise ScenarioError(f"scenario: {unknown}")
    if "now" not in data:
        raise ScenarioError("scenario: now: is required")
    now = scenario_time(data["now"], "scenario: now")
    orders_raw = data.get("orders")
    if not isinstance(orders_raw, list):
        raise ScenarioError("scenario: orders: expected a list")
    orders = [_check_order(i, raw) for i, raw in enumerate(orders_raw)]
    _check_unique(orders)
    return Scenario(now=now, orders=orders, raw=data)


def parse_json(data: bytes | str) -> Any:
    """A JSON document; ValueError saying why when it is not UTF-8 JSON or nests deeper than the
    parser goes (sandbox files and admin request bodies alike)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("not JSON: nested too deeply") from None
    except ValueError as exc:  # malformed, not UTF-8, or an integer of more digits than int() takes
        raise ValueError(f"not JSON: {exc}") from None


def read_json(path: str | Path) -> Any:
    """The JSON document in a file; ValueError saying why it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(exc.strerror) from None
    return parse_json(data)


def load_scenario(path: str | Path) -> Scenario:
    try:
        data = read_json(path)
    except ValueError as exc:
        raise ScenarioError(f"scenario file {path}: {exc}") from None
    return parse_scenario(data)
