"""Events wake a run; the platform's own answer decides it. A signed ShipBob `order.shipped` body
claiming tracking for an order ShipBob itself shows unshipped must not reach TikTok, nor an Amazon
notification claiming a shipment Amazon does not show: each is counted in the run summary as a body
the read contradicted, and what the platform answers is staged."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from include.events.platform_events import EventInbox, PlatformEvent, amazon_event
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse, platform_events, stg_amazon_fulfillment_orders, stg_shipbob_orders
from sandbox.connections import connection_env
from sandbox.core import Settings
from tests.support import NOW, NOW_ISO

TIKTOK_ID, SHOPIFY_ID, SHIPBOB_ID = "576000000000000081", 6100000081, 9000081
AMAZON_TIKTOK_ID, AMAZON_SHOPIFY_ID, AMAZON_ID = "576000000000000082", 6100000082, "1082"
SHIPPED_TIKTOK_ID, SHIPPED_SHOPIFY_ID, SHIPPED_ID = "576000000000000083", 6100000083, 9000083


def tiktok(order_id: str, line: str) -> dict:
    return {
        "id": order_id,
        "status": "AWAITING_SHIPMENT",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "create_time": "2026-11-20T09:00:00Z",
        "rts_sla_time": "2026-11-23T23:59:00Z",
        "shipping_due_time": "2026-11-27T23:59:00Z",
        "tracking_number": "",
        "line_items": [{"id": line, "seller_sku": "OSL-TEE-M"}],
        "cancellation": None,
    }


def shopify(order_id: int, name: str) -> dict:
    return {"id": order_id, "name": name, "tiktok_id_in": "source_identifier", "cancelled": False}


def scenario() -> dict:
    return {
        "now": NOW_ISO,
        "orders": [
            {
                "tiktok": tiktok(TIKTOK_ID, "577000000000000081"),
                "shopify": shopify(SHOPIFY_ID, "#1081"),
                "fulfiller": "shipbob",
                "amazon_mcf": None,
                "shipbob": {
                    "order_id": SHIPBOB_ID,
                    "reference_id": str(SHOPIFY_ID),
                    "status": "Processing",
                    "shipments": [{"id": 1, "status": "Processing"}],
                },
            },
            {
                "tiktok": tiktok(AMAZON_TIKTOK_ID, "577000000000000082"),
                "shopify": shopify(AMAZON_SHOPIFY_ID, "#1082"),
                "fulfiller": "amazon_mcf",
                "amazon_mcf": {
                    "seller_fulfillment_order_id": AMAZON_ID,
                    "status": "Processing",
                    "received_time": "2026-11-20T10:00:00Z",
                    "shipments": [],
                },
                "shipbob": None,
            },
            {
                "tiktok": tiktok(SHIPPED_TIKTOK_ID, "577000000000000083"),
                "shopify": shopify(SHIPPED_SHOPIFY_ID, "#1083"),
                "fulfiller": "shipbob",
                "amazon_mcf": None,
                "shipbob": {
                    "order_id": SHIPPED_ID,
                    "reference_id": str(SHIPPED_SHOPIFY_ID),
                    "status": "Fulfilled",
                    "shipments": [
                        {
                            "id": 3,
                            "status": "Completed",
                            "tracking": {"carrier": "UPS", "tracking_number": "1Z999AA10123456791"},
                        }
                    ],
                },
            },
        ],
    }


def amazon_claiming_shipped() -> PlatformEvent:
    """A notification that reads as Amazon's own (the queue has no signature), claiming a package
    Amazon does not show."""
    body = {
        "SellerId": "A3TH9S8BH6GOGM",
        "EventType": "Shipment",
        "StatusUpdatedDateTime": NOW_ISO,
        "SellerFulfillmentOrderId": AMAZON_ID,
        "FulfillmentOrderStatus": "Complete",
        "FulfillmentShipment": {
            "AmazonShipmentId": "S-FORGED",
            "FulfillmentShipmentStatus": "SHIPPED",
            "FulfillmentShipmentPackages": [
                {"PackageNumber": 1, "CarrierCode": "UPS", "TrackingNumber": "1Z999AA10123456785"}
            ],
        },
    }
    return amazon_event(
        json.dumps(
            {
                "NotificationType": "FULFILLMENT_ORDER_STATUS",
                "EventTime": NOW_ISO,
                "Payload": {"FulfillmentOrderStatusNotification": body},
                "NotificationMetadata": {"NotificationId": "n-forged"},
            }
        )
    )


def test_event_bodies_that_disagree_with_the_platform_are_counted_and_never_posted(
    run_sandbox, tmp_path, monkeypatch, caplog
):
    server = run_sandbox(scenario(), settings=Settings(clock_rate=0, rate_scale=20))
    for key, value in connection_env(server.urls, rate_scale=20).items():
        monkeypatch.setenv(key, value)
    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")

    def run(run_id: str, run_type: str) -> dict:
        # Amazon's early tracking number off: what reaches TikTok here is only what a body claims
        params = {"now": NOW_ISO, "policy": {"post_aftn": False}}
        settings = run_settings(dag_id="orderops_sla", run_id=run_id, params=params, run_after=NOW, run_type=run_type)
        platforms = Platforms(settings)
        try:
            return run_all(settings, platforms, wh)
        finally:
            platforms.close()

    def tiktok_posts() -> list:
        return [w for w in server.sandbox.writes if w.platform == "tiktok" and w.path.endswith("/packages")]

    try:
        first = run("scheduled-1", "scheduled")
        assert first["events"] == {"claimed": 0, "disagreed": 0}
        posted = len(tiktok_posts())  # the order ShipBob shipped: its tracking, as ShipBob answers it
        assert posted == 1
        # deliveries whose signature checked out (the receiver's part), claiming shipments the platforms do not show
        claimed_shipped = {
            "id": SHIPBOB_ID,
            "reference_id": str(SHOPIFY_ID),
            "status": "Fulfilled",
            "shipments": [
                {
                    "id": 1,
                    "status": "Completed",
                    "tracking": {"carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
                }
            ],
        }
        settings = run_settings(dag_id="orderops_sla", run_id="read", params={"now": NOW_ISO}, run_after=NOW)
        platforms = Platforms(settings)
        try:  # and ShipBob's own body of the order it did ship: one that agrees with the read
            (agreeing,) = platforms.shipbob().orders(ids=[SHIPPED_ID])
        finally:
            platforms.close()
        EventInbox(wh).receive(
            "default",
            [
                PlatformEvent("shipbob", "msg_forged", "order.shipped", str(SHIPBOB_ID), NOW, True, claimed_shipped),
                PlatformEvent("shipbob", "msg_true", "order.shipped", str(SHIPPED_ID), NOW, True, agreeing),
                amazon_claiming_shipped(),
            ],
            received_at=NOW,
        )
        reads = server.sandbox.calls[("amazon_mcf", "getFulfillmentOrder")]
        with caplog.at_level(logging.WARNING):
            summary = run("event-1", "asset_triggered")
        assert len(tiktok_posts()) == posted  # nothing more reached TikTok on a body's word
        assert summary["extraction"]["mode"] == "event" and summary["extraction"]["listed"] == []
        assert summary["events"] == {"claimed": 3, "disagreed": 2}  # the true body is not counted
        assert "1 ShipBob event body(ies) disagree with ShipBob's own answer" in caplog.text
        assert "1 Amazon notification(s) disagree with Amazon's own answer" in caplog.text
        with wh.engine.connect() as conn:
            staged = conn.execute(
                sa.select(stg_shipbob_orders.c.status).where(stg_shipbob_orders.c.shipbob_order_id == SHIPBOB_ID)
            ).scalar()
            amazon = conn.execute(
                sa.select(stg_amazon_fulfillment_orders.c.status, stg_amazon_fulfillment_orders.c.shipments).where(
                    stg_amazon_fulfillment_orders.c.seller_fulfillment_order_id == AMAZON_ID
                )
            ).one()
            marked = dict(conn.execute(sa.select(platform_events.c.event_id, platform_events.c.contradicted)).all())
        assert staged == "Processing"  # what ShipBob answers, not what the body claimed
        # what Amazon answers: no carrier tracking (only its early number on the planned package)
        assert amazon.status == "Processing"
        assert not [p for s in amazon.shipments for p in s["packages"] if p["tracking_number"]]
        assert marked == {"msg_forged": True, "msg_true": None, "n-forged": True}
        # the Amazon order was read by id, not taken from its notification
        assert server.sandbox.calls[("amazon_mcf", "getFulfillmentOrder")] == reads + 1
    finally:
        wh.dispose()
