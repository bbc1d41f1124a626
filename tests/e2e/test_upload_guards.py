"""The guards before TikTok's one-shot tracking upload, in whole runs against the sandbox. A shop in
TikTok's Amazon MCF warehouse mode posts numbers TikTok refuses for its MCF warehouse: orderops counts
the refusals and stops one short of TikTok's limit (posts held, a person told), and the next run
escalates the warehouse's orders instead of posting."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from include.act.ledger import Ledger
from include.store.warehouse import pipeline_breaches
from tests.chaos.harness import SandboxRig, fresh_warehouse
from tests.support import NOW, iso
from tests.support import tiktok_order_id as tid


def order(n: int) -> dict:
    """A two-item order (Amazon gives it no early number), shipped by Amazon MCF with USPS."""
    return {
        "tiktok": {
            "id": tid(n),
            "status": "AWAITING_SHIPMENT",
            "delivery_option": "MCF",
            "create_time": iso(NOW - timedelta(days=1)),
            "rts_sla_time": iso(NOW + timedelta(hours=20)),
            "shipping_due_time": iso(NOW + timedelta(days=5)),
            "tracking_number": "",
            "cancellation": None,
            "line_items": [
                {"id": str(577000000000000000 + 10 * n + k), "seller_sku": sku}
                for k, sku in enumerate(("OSL-TEE-M", "OSL-TEE-L"))
            ],
        },
        "shopify": {
            "id": 6100000000 + n,
            "name": f"#{1000 + n}",
            "tiktok_id_in": "source_identifier",
            "cancelled": False,
        },
        "fulfiller": "amazon_mcf",
        "amazon_mcf": {
            "seller_fulfillment_order_id": str(1000 + n),
            "status": "Complete",
            "received_time": iso(NOW - timedelta(hours=20)),
            "shipments": [
                {
                    "status": "SHIPPED",
                    "packages": [
                        {"package_number": n, "carrier_code": "USPS", "tracking_number": f"94001118992231974{n:05d}"}
                    ],
                }
            ],
        },
        "shipbob": None,
    }


def test_orderops_stops_one_refusal_short_of_tiktoks_limit_for_an_mcf_warehouse(tmp_path):
    scenario = {"now": iso(NOW), "orders": [order(n) for n in range(1, 7)]}
    rig = SandboxRig({"now": iso(NOW), "orders": []})
    tiktok = rig.sandbox.platforms["tiktok"]
    rig.sandbox.settings.platforms.setdefault("tiktok", {})["mcf_warehouse"] = True
    tiktok.config["mcf_warehouse"] = True
    rig.load(scenario)
    (warehouse,) = tiktok.default_shop.mcf_wrong_tracking
    # the seller posts USPS numbers (their policy), which TikTok refuses: each refusal counts for the warehouse
    policy = {"mcf_warehouse_ids": [warehouse], "usps_tracking": "post"}
    try:
        with fresh_warehouse("sqlite", tmp_path) as wh:

            def refused() -> int:
                return len(
                    [w for w in rig.writes if w.operation == "mark_package_as_shipped" and w.outcome == "21019006"]
                )

            rig.run(wh, "guard-1", policy=policy)
            assert refused() == 4  # four refused, then the remaining posts were held
            posts = [r for r in Ledger(wh).rows("default") if r["kind"] == "post_tracking"]
            assert sorted(r["state"] for r in posts) == ["failed"] * 4 + ["pending"] * 2
            with wh.engine.connect() as conn:
                alerts = (
                    conn.execute(
                        sa.select(pipeline_breaches.c.detail).where(
                            pipeline_breaches.c.kind == "warehouse_uploads_held"
                        )
                    )
                    .scalars()
                    .all()
                )
            assert len(alerts) == 1 and f"warehouse {warehouse}" in alerts[0]
            rig.run(wh, "guard-2", policy=policy)
            # the next run escalates the warehouse's orders and posts nothing more
            assert refused() == 4 and len([w for w in rig.writes if w.operation == "mark_package_as_shipped"]) == 4
            reasons = {
                r["tiktok_order_id"]: r["request"]["reason_code"]
                for r in Ledger(wh).rows("default")
                if r["kind"] == "escalate"
            }
            assert reasons == {tid(n): "warehouse_refusals" for n in range(1, 7)}
    finally:
        rig.stop()
