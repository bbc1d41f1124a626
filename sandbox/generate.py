"""Generate realistic scenario files (docs/architecture.md §6) from a seed.

The mix is what a mid-size seller's queue looks like on a given afternoon: most orders are
already handled, some have shipped at the fulfiller without tracking on TikTok, some are near
or past the ship-by deadline, a few have buyer cancellation requests, and a few cannot be
matched. `MIX` lists the cases and their shares; README "Sandbox" documents them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sandbox.scenario import format_time, parse_scenario, parse_time

DEFAULT_NOW = "2026-11-20T15:00:00Z"

# case -> share of orders. The cases name the situation each order is in at `now`.
MIX: dict[str, float] = {
    "handled": 0.34,  # shipped, tracking already on TikTok
    "shipped_no_tracking": 0.15,  # fulfiller shipped, TikTok still awaiting shipment (T1)
    "unmappable_carrier": 0.01,  # shipped with a carrier TikTok has no provider for (T2)
    "near_sla_in_progress": 0.12,  # due within 24 h, fulfiller still working (N1)
    "in_progress": 0.15,  # due later, fulfiller still working (nothing to do yet)
    "late": 0.04,  # past rts_sla_time, nothing shipped
    "cancel_cancellable": 0.03,  # buyer cancel, fulfiller order not started (C1)
    "cancel_no_fulfillment": 0.01,  # buyer cancel, no fulfillment order yet (C2)
    "cancel_shipped": 0.02,  # buyer cancel, already shipped or picking (C3)
    "no_shopify_match": 0.02,  # E1
    "ambiguous_shopify": 0.01,  # E1: two Shopify orders carry the TikTok id
    "no_fulfillment_order": 0.01,  # E1
    "fulfiller_failed": 0.01,  # E1: Unfulfillable / Invalid / cancelled by fulfiller
    "cancelled": 0.06,  # already cancelled on TikTok
    "fulfilled_by_tiktok": 0.02,  # FBT: out of scope
}
FULFILLER_SHARE = {"amazon_mcf": 0.6, "shipbob": 0.4}
ID_PLACES = {"source_identifier": 0.7, "custom_attribute": 0.15, "note": 0.1, "name": 0.05}
AMAZON_CARRIERS = {"UPS": 0.35, "USPS": 0.3, "AMZL_US": 0.2, "FEDEX": 0.15}
SHIPBOB_CARRIERS = {"USPS": 0.5, "UPS": 0.25, "FedEx": 0.15, "DHLExpress": 0.1}
# A 2026 shop: USPS labels for TikTok orders come through TikTok Shipping, so its fulfillers ship few
# of them by USPS on their own label (those TikTok refuses; orderops escalates them by default). The
# seeded stream draws its carriers from the tables above, then a pass of its own moves all but this
# share of the USPS packages to another carrier: every other choice of a seed stays as it was.
USPS_KEPT = 0.1
USPS_MOVED_TO = {"amazon_mcf": "UPS", "shipbob": "UPS"}
# Carriers no TikTok shipping provider corresponds to (the T2 case).
UNMAPPABLE_CARRIERS = {"amazon_mcf": "LOCAL-COURIER-7", "shipbob": "Regional Courier Co"}
SKUS = (
    "OSL-TEE-S",
    "OSL-TEE-M",
    "OSL-TEE-L",
    "OSL-HOOD-M",
    "OSL-CAP-01",
    "OSL-MUG-11",
    "OSL-SOCK-3P",
    "OSL-BAG-TOTE",
    "OSL-BOTTLE-750",
    "OSL-STICKER-5",
)


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def tracking_number(rng: random.Random, carrier: str) -> str:
    """A tracking number in the carrier's usual format (not check-digit valid)."""
    c = carrier.upper()
    if c == "UPS":
        return "1Z" + "".join(rng.choices("0123456789ABCDEFGHJKLMNPRSTUVWXYZ", k=16))
    if c == "USPS":
        return "9400" + "".join(rng.choices("0123456789", k=18))
    if c.startswith("FEDEX"):
        return "".join(rng.choices("0123456789", k=12))
    if c == "AMZL_US":
        return "TBA" + "".join(rng.choices("0123456789", k=12))
    if c.startswith("DHL"):
        return "".join(rng.choices("0123456789", k=10))
    return "LC" + "".join(rng.choices("0123456789", k=12))


@dataclass
class _Ids:
    base: int

    def tiktok(self, i: int) -> str:
        return f"576{self.base + i:015d}"

    def line(self, i: int, j: int) -> str:
        return f"577{self.base + i * 4 + j:015d}"

    def cancel(self, i: int) -> str:
        return f"4035{self.base + i:015d}"


def _times(rng: random.Random, now: datetime, case: str) -> tuple[datetime, datetime]:
    """create_time and rts_sla_time for a case (TikTok's ship-by is a few days after payment)."""
    hours = {
        "near_sla_in_progress": rng.uniform(0.5, 23.5),
        "late": -rng.uniform(1, 30),
        "in_progress": rng.uniform(25, 70),
    }.get(case, rng.uniform(-48, 70))
    rts = now + timedelta(hours=hours)
    create = rts - timedelta(hours=rng.uniform(48, 72))
    if create > now:
        create = now - timedelta(minutes=rng.uniform(5, 120))
    return create.replace(microsecond=0), rts.replace(microsecond=0)


def _amazon(rng, case, mcf_id, create, now, carrier, package_number):
    received = create + timedelta(minutes=rng.uniform(2, 30))
    doc: dict = {
        "seller_fulfillment_order_id": mcf_id,
        "received_time": format_time(min(received, now)),
        "shipments": [],
    }
    shipped = {
        "status": "SHIPPED",
        "packages": [
            {
                "package_number": package_number,
                "carrier_code": carrier,
                "tracking_number": tracking_number(rng, carrier),
            }
        ],
    }
    if case in ("handled", "shipped_no_tracking", "unmappable_carrier"):
        doc.update(status="Complete", shipments=[shipped])
    elif case == "cancel_shipped":
        if rng.random() < 0.5:
            doc.update(status="Complete", shipments=[shipped])
        else:
            doc.update(status="Processing", shipments=[{"status": "PENDING", "packages": []}])
    elif case == "cancel_cancellable":
        doc["status"] = rng.choice(["Received", "Planning"])
    elif case == "fulfiller_failed":
        doc["status"] = rng.choice(["Unfulfillable", "Invalid"])
    elif case == "cancelled":
        doc["status"] = "Cancelled"
    else:
        doc["status"] = rng.choice(["Planning", "Processing"])
        if doc["status"] == "Processing":
            doc["shipments"] = [{"status": "PENDING", "packages": []}]
    return doc


def _shipbob(rng, case, order_id, shipment_id, shopify_id, carrier):
    completed = {
        "id": shipment_id,
        "status": "Completed",
        "tracking": {"carrier": carrier, "tracking_number": tracking_number(rng, carrier)},
    }
    doc: dict = {"order_id": order_id, "reference_id": str(shopify_id)}
    if case in ("handled", "shipped_no_tracking", "unmappable_carrier"):
        doc.update(status="Fulfilled", shipments=[completed])
    elif case == "cancel_shipped":
        if rng.random() < 0.5:
            doc.update(status="Fulfilled", shipments=[completed])
        else:
            doc.update(
                status="Processing",
                shipments=[
                    {
                        "id": shipment_id,
                        "status": "Processing",
                        "status_detail": rng.choice(["Picked", "Packed", "Labeled"]),
                    }
                ],
            )
    elif case == "cancel_cancellable":
        doc.update(
            status="Processing", shipments=[{"id": shipment_id, "status": "Processing", "status_detail": "Allocated"}]
        )
    elif case == "fulfiller_failed":
        doc.update(status="Exception", shipments=[{"id": shipment_id, "status": "Exception"}])
    elif case == "cancelled":
        doc.update(status="Cancelled", shipments=[{"id": shipment_id, "status": "Cancelled"}])
    else:
        doc.update(
            status="Processing",
            shipments=[
                {
                    "id": shipment_id,
                    "status": "Processing",
                    "status_detail": rng.choice(["Allocated", "Picked", "Packed"]),
                }
            ],
        )
    return doc


def generate(orders: int, seed: int, now: str = DEFAULT_NOW) -> dict:
    """A scenario of `orders` orders; the same seed always gives the same file."""
    if orders < 0:
        raise ValueError(f"orders: expected a non-negative count, got {orders}")
    rng = random.Random(seed)
    moment = parse_time(now, "now")
    ids = _Ids(base=rng.randrange(10**9, 10**10) * 1000)
    cases = list(MIX)
    out = []
    for i in range(orders):
        case = rng.choices(cases, weights=[MIX[c] for c in cases])[0]
        create, rts = _times(rng, moment, case)
        fulfiller = _pick(rng, FULFILLER_SHARE)
        carrier = _pick(rng, AMAZON_CARRIERS if fulfiller == "amazon_mcf" else SHIPBOB_CARRIERS)
        if case == "unmappable_carrier":
            carrier = UNMAPPABLE_CARRIERS[fulfiller]
        tiktok_id = ids.tiktok(i)
        shopify_id = 6100000000 + i * 3
        number = 1001 + i
        tiktok: dict = {
            "id": tiktok_id,
            "status": "AWAITING_SHIPMENT",
            "fulfillment_type": "FULFILLMENT_BY_TIKTOK" if case == "fulfilled_by_tiktok" else "FULFILLMENT_BY_SELLER",
            "create_time": format_time(create),
            "update_time": format_time(create + timedelta(minutes=1)),
            "rts_sla_time": format_time(rts),
            "shipping_due_time": format_time(rts + timedelta(days=5)),
            "tracking_number": "",
            "line_items": [
                {"id": ids.line(i, j), "seller_sku": rng.choice(SKUS)}
                for j in range(rng.choices([1, 2, 3], weights=[0.75, 0.2, 0.05])[0])
            ],
            "cancellation": None,
        }
        order: dict = {"tiktok": tiktok}
        if case == "handled":
            tiktok["status"] = rng.choice(["AWAITING_COLLECTION", "IN_TRANSIT", "DELIVERED"])
        if case == "cancelled":
            tiktok["status"] = "CANCELLED"
        if case.startswith("cancel_"):
            requested = min(moment - timedelta(minutes=rng.uniform(5, 600)), rts)
            requested = max(requested, create + timedelta(minutes=1))
            tiktok["cancellation"] = {
                "cancel_id": ids.cancel(i),
                "status": "CANCELLATION_REQUEST_PENDING",
                "create_time": format_time(requested),
                "deadline": format_time(requested + timedelta(hours=48)),
            }
            tiktok["update_time"] = format_time(requested)
        place = _pick(rng, ID_PLACES)
        shopify = {"id": shopify_id, "name": f"#{number}", "tiktok_id_in": place, "cancelled": case == "cancelled"}
        if case == "no_shopify_match":
            order["shopify"] = None
        elif case == "ambiguous_shopify":
            order["shopify"] = [shopify, dict(shopify, id=shopify_id + 1, name=f"#{number}-R")]
        else:
            order["shopify"] = shopify
        has_fulfillment = case not in (
            "no_fulfillment_order",
            "cancel_no_fulfillment",
            "no_shopify_match",
            "fulfilled_by_tiktok",
        )
        order["fulfiller"] = fulfiller if has_fulfillment else None
        order["amazon_mcf"] = None
        order["shipbob"] = None
        if has_fulfillment and fulfiller == "amazon_mcf":
            # connectors name the fulfillment order after the Shopify order, whose name may be the TikTok id
            mcf_id = tiktok_id if place == "name" else str(number)
            order["amazon_mcf"] = _amazon(rng, case, mcf_id, create, moment, carrier, package_number=i + 1)
        elif has_fulfillment:
            order["shipbob"] = _shipbob(rng, case, 9000000 + i, 20000000 + i, shopify_id, carrier)
        if case == "handled":
            tiktok["shipping_provider"], tiktok["tracking_number"] = _shipped_package(order)
        out.append(order)
    _fewer_usps_labels(out, seed)
    scenario = {"now": format_time(moment), "orders": out}
    parse_scenario(scenario)  # the generator never writes a file the sandbox would refuse
    return scenario


def _fewer_usps_labels(orders: list[dict], seed: int) -> None:
    """All but USPS_KEPT of the seller-label USPS packages move to UPS (see USPS_KEPT)."""
    for order in orders:
        rng = random.Random(f"usps-2026:{seed}:{order['tiktok']['id']}")
        if order["tiktok"].get("shipping_type", "SELLER") != "SELLER" or rng.random() < USPS_KEPT:
            continue
        carrier = USPS_MOVED_TO.get(order["fulfiller"] or "")
        packages = [p for s in (order["amazon_mcf"] or {}).get("shipments", []) for p in s["packages"]]
        for p in packages:
            if p["carrier_code"] == "USPS" and carrier:
                p["carrier_code"], p["tracking_number"] = carrier, tracking_number(rng, carrier)
        for s in (order["shipbob"] or {}).get("shipments", []):
            tracking = s.get("tracking")
            if tracking and tracking["carrier"] == "USPS" and carrier:
                tracking["carrier"], tracking["tracking_number"] = carrier, tracking_number(rng, carrier)
        if order["tiktok"].get("shipping_provider") == "USPS":
            order["tiktok"]["shipping_provider"], order["tiktok"]["tracking_number"] = _shipped_package(order)


def _shipped_package(order: dict) -> tuple[str, str]:
    if order.get("amazon_mcf"):
        package = order["amazon_mcf"]["shipments"][0]["packages"][0]
        return package["carrier_code"], package["tracking_number"]
    tracking = order["shipbob"]["shipments"][0]["tracking"]
    return tracking["carrier"], tracking["tracking_number"]


def order_count(text: str) -> int:
    """`--orders N` of the command lines (`python -m sandbox generate`, `sandbox.demo`), as argparse
    reads it: a refused one gets argparse's error naming the option, and exit status 2."""
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise argparse.ArgumentTypeError(f"expected a count of orders from 0 to 999999999, got {text!r}")
    return int(text)


def write(path: str | Path, orders: int, seed: int, now: str = DEFAULT_NOW) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(generate(orders, seed, now), indent=1))
    return target
