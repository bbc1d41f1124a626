"""Platform payloads -> staging rows: typed columns plus raw JSON with buyer PII removed.

Each `*_row` function takes one object as the platform's API returns it and raises
`BadRecord` (with the field at fault) when it cannot be staged; the extract step quarantines
such records with the reason instead of failing the run.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Literal, overload

from include.decide.enums import (
    AMAZON_ORDER_STATUSES,
    AMAZON_SHIPMENT_STATUSES,
    FULFILLMENT_TYPES,
    SHIPBOB_ORDER_STATUSES,
    SHIPBOB_SHIPMENT_STATUSES,
    SHIPPING_TYPES,
    TIKTOK_CANCEL_STATUSES,
    TIKTOK_ORDER_STATUSES,
    spelled,
)
from orderops_provider.tiktok_order_id import TIKTOK_ID, TikTokIdRules

# Keys whose values identify or locate the buyer: dropped from `raw` at any depth.
PII_KEYS = frozenset(
    {
        "recipient_address",
        "buyer_email",
        "buyer_message",
        "email",
        "phone",
        "phone_number",
        "name_on_card",
        "customer",
        "shippingAddress",
        "billingAddress",
        "destinationAddress",
        "recipient",
        "notificationEmails",
        "contactEmail",
        "contactPhone",
        "full_name",
        "first_name",
        "last_name",
        "address1",
        "address2",
        "shipping_address",
        "billing_address",
        "note",
    }
)
DEFAULT_RULES = TikTokIdRules()


class BadRecord(ValueError):
    """A platform record that cannot be staged; the message names the field."""


# Fields whose values join records across platforms (see include.decide.join).
LINK_FIELDS = frozenset(
    {
        "id",
        "legacyResourceId",
        "name",
        "sourceIdentifier",
        "sellerFulfillmentOrderId",
        "displayableOrderId",
        "reference_id",
        "order_number",
        "order_id",
        "cancel_id",
    }
)


def link_key(value: Any) -> str:
    """An id or order name as the join compares it: text, without a gid prefix or a leading '#'."""
    return str(value).strip().rsplit("/", 1)[-1].lstrip("#")


def link_keys(record: Any) -> list[str]:
    """Every value by which a record could be joined to an order: TikTok-id-shaped numbers anywhere
    in it (notes included) and the values of its id and name fields (buyer data left out). Kept with
    a quarantined record, so that no order it might belong to is acted on while it is unreadable."""
    found = set(TIKTOK_ID.findall(json.dumps(record, default=str)))

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in LINK_FIELDS and isinstance(item, (str, int)) and not isinstance(item, bool):
                    found.add(link_key(item))
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(strip_pii(record))
    return sorted(k for k in found if k)


def strip_pii(value: Any) -> Any:
    """A payload as the warehouse keeps it: without buyer data, and storable as strict JSON (a
    platform's NaN or Infinity, which Python's parser accepts, written out as text)."""
    if isinstance(value, dict):
        return {k: strip_pii(v) for k, v in value.items() if k not in PII_KEYS}
    if isinstance(value, (list, tuple)):
        return [strip_pii(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _field(obj: dict, key: str, kind: type | tuple[type, ...], where: str, *, required: bool = True) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadRecord(f"{where}: {key} is missing")
        return None
    if isinstance(value, bool) and kind is not bool:
        raise BadRecord(f"{where}: {key} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise BadRecord(f"{where}: {key} has the wrong type ({type(value).__name__})")
    return value


# Sizes of the strings read from inside records (line items, shipments, packages), which stage as
# JSON: no real id, SKU, carrier or tracking number comes near them, and a longer one would be
# copied into a platform write.
ID_MAX, TEXT_MAX = 64, 128


def _text(obj: dict, key: str, where: str, limit: int = ID_MAX) -> str:
    """An optional string inside a record: "" when absent; a number, object or oversized string is
    refused rather than passed on to a join or a write."""
    value = _field(obj, key, str, where, required=False)
    if value is None:
        return ""
    if len(value) > limit:
        raise BadRecord(f"{where}: {key} is {len(value)} characters long (at most {limit})")
    return value


def check_sizes(row: dict, table: Any, where: str) -> None:
    """Each string of a staging row fits its warehouse column (PostgreSQL refuses an oversized value
    or a NUL character, and with it the whole batch; SQLite would keep it silently): a record that
    doesn't is refused."""
    for column in table.c:
        limit = getattr(column.type, "length", None)
        value = row.get(column.name)
        if not isinstance(value, str):
            continue
        if limit and len(value) > limit:
            raise BadRecord(f"{where}: {column.name} is {len(value)} characters long (at most {limit})")
        if "\x00" in value:  # PostgreSQL text cannot hold it; no real id or name has one
            raise BadRecord(f"{where}: {column.name} contains a NUL character")


def _list(obj: dict, key: str, where: str) -> list:
    """An optional list field: [] when absent, BadRecord when it is something else."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRecord(f"{where}: {key} has the wrong type ({type(value).__name__})")
    return value


# Unix seconds outside 2015..2100 are treated as corrupt rather than believed.
_MIN_TS, _MAX_TS = 1420070400, 4102444800


# a required time is always there: None only when not required
@overload
def unix_time(obj: dict, key: str, where: str, *, required: Literal[True] = True) -> datetime: ...
@overload
def unix_time(obj: dict, key: str, where: str, *, required: bool) -> datetime | None: ...
def unix_time(obj: dict, key: str, where: str, *, required: bool = True) -> datetime | None:
    value = _field(obj, key, int, where, required=required)
    if value in (None, 0) and not required:
        return None
    if not _MIN_TS <= value <= _MAX_TS:
        raise BadRecord(f"{where}: {key}={value} is not a plausible time")
    return datetime.fromtimestamp(value, tz=timezone.utc)


@overload
def iso_time(obj: dict, key: str, where: str, *, required: Literal[True] = True) -> datetime: ...
@overload
def iso_time(obj: dict, key: str, where: str, *, required: bool) -> datetime | None: ...
def iso_time(obj: dict, key: str, where: str, *, required: bool = True) -> datetime | None:
    value = _field(obj, key, str, where, required=required)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRecord(f"{where}: {key}={value!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if not 2015 <= parsed.year <= 2100:
        raise BadRecord(f"{where}: {key}={value!r} is not a plausible time")
    return parsed.astimezone(timezone.utc)


def tiktok_order_row(order: dict) -> dict:
    if not isinstance(order, dict):
        raise BadRecord("tiktok order: not an object")
    order_id = _field(order, "id", str, "tiktok order")
    where = f"tiktok order {order_id}"
    if not order_id.isdigit():
        raise BadRecord(f"{where}: id is not numeric")
    lines = _field(order, "line_items", list, where)
    line_items = []
    for line in lines:
        if not isinstance(line, dict) or not isinstance(line.get("id"), str) or not line["id"]:
            raise BadRecord(f"{where}: line_items has an entry without an id")
        item = f"{where} line item {line['id'][:ID_MAX]}"
        line_items.append(
            {
                "id": _text(line, "id", item),
                "seller_sku": _text(line, "seller_sku", item, TEXT_MAX),
                "display_status": _text(line, "display_status", item),
                "tracking_number": _text(line, "tracking_number", item),
                "package_id": _text(line, "package_id", item),
            }
        )
    # who prints the label decides whether the seller's tracking may be posted at all
    shipping_type = spelled(_field(order, "shipping_type", str, where), SHIPPING_TYPES)
    if shipping_type not in SHIPPING_TYPES:
        raise BadRecord(f"{where}: shipping_type {shipping_type[:ID_MAX]!r} is not one of {', '.join(SHIPPING_TYPES)}")
    option = _text(order, "delivery_option_id", where)
    if option and not option.isdigit():
        raise BadRecord(f"{where}: delivery_option_id {option!r} is not a TikTok id")
    return {
        "tiktok_order_id": order_id,
        "status": spelled(_field(order, "status", str, where), TIKTOK_ORDER_STATUSES),
        "fulfillment_type": spelled(_field(order, "fulfillment_type", str, where), FULFILLMENT_TYPES),
        "create_time": unix_time(order, "create_time", where),
        "update_time": unix_time(order, "update_time", where),
        "rts_sla_time": unix_time(order, "rts_sla_time", where, required=False),
        "shipping_due_time": unix_time(order, "shipping_due_time", where, required=False),
        "rts_time": unix_time(order, "rts_time", where, required=False),
        "collection_time": unix_time(order, "collection_time", where, required=False),
        "warehouse_id": _text(order, "warehouse_id", where),
        "tracking_number": _field(order, "tracking_number", str, where, required=False) or "",
        "shipping_provider_id": _field(order, "shipping_provider_id", str, where, required=False) or "",
        "is_buyer_request_cancel": bool(_field(order, "is_buyer_request_cancel", bool, where, required=False)),
        "line_items": line_items,
        "raw": strip_pii(order),
    }


def tiktok_cancellation_row(cancellation: dict) -> dict:
    if not isinstance(cancellation, dict):
        raise BadRecord("tiktok cancellation: not an object")
    cancel_id = _field(cancellation, "cancel_id", str, "tiktok cancellation")
    where = f"tiktok cancellation {cancel_id}"
    deadline = None
    for step in _list(cancellation, "seller_next_action_response", where):
        if isinstance(step, dict) and isinstance(step.get("deadline"), int):
            deadline = unix_time(step, "deadline", where)
    status = spelled(
        _field(cancellation, "cancel_status", str, where), (*TIKTOK_CANCEL_STATUSES, "CANCELLATION_REQUEST_CANCELLED")
    )
    return {
        "cancel_id": cancel_id,
        "tiktok_order_id": _field(cancellation, "order_id", str, where),
        # one spelling for the status the docs write two ways
        "status": "CANCELLATION_REQUEST_CANCEL" if status == "CANCELLATION_REQUEST_CANCELLED" else status,
        "cancel_type": _field(cancellation, "cancel_type", str, where, required=False),
        "role": _field(cancellation, "role", str, where, required=False),
        "create_time": unix_time(cancellation, "create_time", where),
        "update_time": unix_time(cancellation, "update_time", where),
        "deadline": deadline,
        "raw": strip_pii(cancellation),
    }


def shopify_order_row(node: dict, rules: TikTokIdRules = DEFAULT_RULES) -> dict:
    """`rules`: where the shop's connector writes the TikTok order id (its Shopify connection's setting)."""
    if not isinstance(node, dict):
        raise BadRecord("shopify order: not an object")
    where = f"shopify order {node.get('legacyResourceId') or node.get('id')}"
    legacy = node.get("legacyResourceId")
    if legacy is None and isinstance(node.get("id"), str):
        legacy = node["id"].rsplit("/", 1)[-1]
    if not isinstance(legacy, (str, int)) or not str(legacy).isdigit():
        raise BadRecord(f"{where}: legacyResourceId is missing")
    tags = node.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise BadRecord(f"{where}: tags has the wrong type ({type(tags).__name__})")
    _list(node, "customAttributes", where)
    name = _field(node, "name", str, where)
    # Shopify names an order by its number with the shop's prefix and suffix ("#1001"): a name
    # without digits is not one, and the fulfillers file the order under it, so it links nothing
    if not any(ch.isdigit() for ch in name):
        raise BadRecord(f"{where}: name {name[:40]!r} carries no order number")
    return {
        "shopify_order_id": str(legacy),
        "name": name,
        "source_identifier": _field(node, "sourceIdentifier", str, where, required=False),
        "tiktok_ids": rules.find(node),
        "cancelled_at": iso_time(node, "cancelledAt", where, required=False),
        "financial_status": _field(node, "displayFinancialStatus", str, where, required=False),
        "fulfillment_status": _field(node, "displayFulfillmentStatus", str, where, required=False),
        "tags": list(tags),
        "updated_at": iso_time(node, "updatedAt", where),
        "raw": strip_pii(node),
    }


def amazon_order_row(detail: dict) -> dict:
    """From getFulfillmentOrder's payload: {fulfillmentOrder, fulfillmentOrderItems, fulfillmentShipments}."""
    if not isinstance(detail, dict) or not isinstance(detail.get("fulfillmentOrder"), dict):
        raise BadRecord("amazon fulfillment order: fulfillmentOrder is missing")
    order = detail["fulfillmentOrder"]
    sfo_id = _field(order, "sellerFulfillmentOrderId", str, "amazon fulfillment order")
    where = f"amazon fulfillment order {sfo_id}"
    items = {
        i.get("sellerFulfillmentOrderItemId"): _text(i, "sellerSku", f"{where} item", TEXT_MAX)
        for i in _list(detail, "fulfillmentOrderItems", where)
        if isinstance(i, dict)
    }
    shipments = []
    for shipment in _list(detail, "fulfillmentShipments", where):
        if not isinstance(shipment, dict):
            raise BadRecord(f"{where}: a fulfillmentShipment is not an object")
        at = f"{where} shipment {str(shipment.get('amazonShipmentId'))[:ID_MAX]}"
        packages = []
        for p in _list(shipment, "fulfillmentShipmentPackage", at):
            if not isinstance(p, dict):
                raise BadRecord(f"{at}: a fulfillmentShipmentPackage is not an object")
            packages.append(
                {
                    "package_number": _field(p, "packageNumber", (int, str), at, required=False),
                    "carrier": _text(p, "carrierCode", at),
                    "tracking_number": _text(p, "trackingNumber", at),
                    # Amazon's early tracking number: minutes after the order, before any carrier's
                    "aftn": _text(p, "amazonFulfillmentTrackingNumber", at),
                }
            )
        skus_by_package: dict = {}
        for item in _list(shipment, "fulfillmentShipmentItem", at):
            if isinstance(item, dict):
                sku = items.get(item.get("sellerFulfillmentOrderItemId")) or _text(item, "sellerSku", at, TEXT_MAX)
                skus_by_package.setdefault(item.get("packageNumber"), []).append(sku)
        for package in packages:
            package["skus"] = [s for s in skus_by_package.get(package["package_number"], []) if s]
        shipped_at = iso_time(shipment, "shippingDate", at, required=False)
        shipments.append(
            {
                "id": _text(shipment, "amazonShipmentId", at),
                "status": spelled(_text(shipment, "fulfillmentShipmentStatus", at), AMAZON_SHIPMENT_STATUSES),
                "packages": packages,
                "shipped_at": shipped_at.isoformat() if shipped_at else None,
            }
        )
    return {
        "seller_fulfillment_order_id": sfo_id,
        "displayable_order_id": _field(order, "displayableOrderId", str, where, required=False),
        "status": spelled(_field(order, "fulfillmentOrderStatus", str, where), AMAZON_ORDER_STATUSES),
        "status_updated_at": iso_time(order, "statusUpdatedDate", where, required=False),
        "received_at": iso_time(order, "receivedDate", where, required=False),
        "shipments": shipments,
        "raw": strip_pii(detail),
    }


# The fulfilled-shipments report's columns orderops reads; the rest (buyer names, addresses) is never kept.
REPORT_FIELDS = (
    "amazon-order-id",
    "merchant-order-id",
    "shipment-id",
    "shipment-date",
    "sku",
    "quantity-shipped",
    "carrier",
    "tracking-number",
)


def amazon_row_from_listing(order: dict, report_rows: list[dict]) -> dict:
    """From a listAllFulfillmentOrders entry plus its rows of the fulfilled-shipments report.

    The bulk path: tracking comes from the report (one download for all orders) instead of one
    getFulfillmentOrder call per order. Shipments group report rows by shipment id, packages by
    tracking number.
    """
    if not isinstance(order, dict):
        raise BadRecord("amazon fulfillment order: not an object")
    shipments: dict[str, dict] = {}
    for line in report_rows:
        shipment = shipments.setdefault(
            line.get("shipment-id") or "",
            {
                "amazonShipmentId": line.get("shipment-id"),
                "shippingDate": line.get("shipment-date"),
                "fulfillmentShipmentStatus": "SHIPPED",
                "fulfillmentShipmentPackage": [],
                "fulfillmentShipmentItem": [],
            },
        )
        tracking = line.get("tracking-number") or ""
        if tracking and not any(p["trackingNumber"] == tracking for p in shipment["fulfillmentShipmentPackage"]):
            shipment["fulfillmentShipmentPackage"].append(
                {"packageNumber": tracking, "carrierCode": line.get("carrier") or "", "trackingNumber": tracking}
            )
        try:
            quantity = max(1, int(line.get("quantity-shipped") or 1))
        except ValueError:
            raise BadRecord(
                f"amazon shipment report: quantity-shipped {line.get('quantity-shipped')!r} is not a number"
            ) from None
        shipment["fulfillmentShipmentItem"] += [{"sellerSku": line.get("sku"), "packageNumber": tracking}] * quantity
    return amazon_order_row({"fulfillmentOrder": order, "fulfillmentShipments": list(shipments.values())})


def _text_or_number(obj: dict, key: str, where: str) -> str | None:
    """An id a platform may send as a number or as text, staged as text (None when absent)."""
    value = _field(obj, key, (str, int), where, required=False)
    return None if value is None else str(value)


def shipbob_order_row(order: dict) -> dict:
    if not isinstance(order, dict):
        raise BadRecord("shipbob order: not an object")
    order_id = _field(order, "id", int, "shipbob order")
    where = f"shipbob order {order_id}"
    shipments = []
    for shipment in _list(order, "shipments", where):
        if not isinstance(shipment, dict):
            raise BadRecord(f"{where}: a shipment is not an object")
        tracking = shipment.get("tracking") or {}
        if not isinstance(tracking, dict):
            raise BadRecord(f"{where}: shipment tracking has the wrong type ({type(tracking).__name__})")
        at = f"{where} shipment {shipment.get('id')}"
        details = [_text(d, "name", at) for d in _list(shipment, "status_details", where) if isinstance(d, dict)]
        shipped_at = iso_time(tracking, "shipping_date", at, required=False) or iso_time(
            shipment, "actual_fulfillment_date", at, required=False
        )
        shipments.append(
            {
                "id": _field(shipment, "id", int, at, required=False),
                "status": spelled(_text(shipment, "status", at), SHIPBOB_SHIPMENT_STATUSES),
                "status_details": details,
                "carrier": _text(tracking, "carrier", at),
                "tracking_number": _text(tracking, "tracking_number", at),
                "skus": [
                    s
                    for s in (
                        _text(p, "sku", at, TEXT_MAX) for p in _list(shipment, "products", at) if isinstance(p, dict)
                    )
                    if s
                ],
                "shipped_at": shipped_at.isoformat() if shipped_at else None,
            }
        )
    # ShipBob's LastUpdate filter reads the latest of the order's and its shipments' changes (the
    # order's own date is its creation, stamped when the sale was made): the cursor follows the same
    moments = [iso_time(order, key, where) for key in ("last_update_at", "created_date") if order.get(key)][:1]
    moments += [
        iso_time(s, "last_update_at", where)
        for s in _list(order, "shipments", where)
        if isinstance(s, dict) and s.get("last_update_at")
    ]
    last_update = max(moments) if moments else None
    return {
        "shipbob_order_id": str(order_id),
        "reference_id": _field(order, "reference_id", str, where, required=False),
        "order_number": _text_or_number(order, "order_number", where),
        "status": spelled(_field(order, "status", str, where), SHIPBOB_ORDER_STATUSES),
        "last_update_at": last_update,
        "shipments": shipments,
        "raw": strip_pii(order),
    }
