"""The guards before TikTok's one-shot tracking upload, in whole runs against the sandbox: an Amazon MCF
warehouse whose orders (wrongly) ship from ShipBob gets its wrong numbers refused by TikTok, and
orderops stops one refusal short of TikTok's limit, so the warehouse is never deactivated; the held
posts stay pending, a person is told, and the next run escalates the warehouse's orders."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from include.act.ledger import Ledger
from include.store.warehouse import pipeline_breaches
from tests.chaos.harness import SandboxRig, fresh_warehouse
from tests.support import NOW, iso
from tests.support import tiktok_order_id as tid


def order(n: int) -> dict:
    """A ShipBob order shipped with UPS, for a TikTok order of the MCF warehouse's delivery option."""
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
            "line_items": [{"id": str(577000000000000000 + n), "seller_sku": "OSL-TEE-M"}],
        },
        "shopify": {
            "id": 6100000000 + n,
            "name": f"#{1000 + n}",
            "tiktok_id_in": "source_identifier",
            "cancelled": False,
        },
        "fulfiller": "shipbob",
        "amazon_mcf": None,
        "shipbob": {
            "order_id": 9000000 + n,
            "reference_id": str(6100000000 + n),
            "status": "Fulfilled",
            "shipments": [
                {
                    "id": 20000000 + n,
                    "status": "Completed",
                    "tracking": {"carrier": "UPS", "tracking_number": f"1Z999AA1012345{n:04d}"},
                }
            ],
        },
    }


def test_an_mcf_warehouse_is_never_deactivated_by_orderops(tmp_path):
    scenario = {"now": iso(NOW), "orders": [order(n) for n in range(1, 7)]}
    rig = SandboxRig({"now": iso(NOW), "orders": []})
    tiktok = rig.sandbox.platforms["tiktok"]
    # the shop runs TikTok's Amazon MCF warehouse mode
    rig.sandbox.settings.platforms.setdefault("tiktok", {})["mcf_warehouse"] = True
    tiktok.config["mcf_warehouse"] = True
    rig.load(scenario)
    try:
        with fresh_warehouse("sqlite", tmp_path) as wh:
            rig.run(wh, "guard-1")
            (warehouse,) = [w for w, n in tiktok.default_shop.mcf_wrong_tracking.items()]
            # four refused, then the remaining posts were held: TikTok's count stays one short of five
            assert tiktok.default_shop.mcf_wrong_tracking[warehouse] == 4
            status = {w["id"]: w["effect_status"] for w in tiktok.default_shop.warehouses}
            assert status[warehouse] == "ENABLED"
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
            attempts = len([w for w in rig.writes if w.operation == "mark_package_as_shipped"])
            rig.run(wh, "guard-2")
            # the next run escalates the warehouse's orders and posts nothing more
            assert len([w for w in rig.writes if w.operation == "mark_package_as_shipped"]) == attempts
            reasons = {
                r["tiktok_order_id"]: r["request"]["reason_code"]
                for r in Ledger(wh).rows("default")
                if r["kind"] == "escalate"
            }
            assert reasons == {tid(n): "warehouse_refusals" for n in range(1, 7)}
            assert tiktok.default_shop.mcf_wrong_tracking[warehouse] == 4
    finally:
        rig.stop()
