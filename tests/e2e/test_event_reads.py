"""Events wake a run; the platform's own answer decides it. A signed ShipBob `order.shipped` body
claiming tracking for an order ShipBob itself shows unshipped must not reach TikTok."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from include.events.platform_events import EventInbox, PlatformEvent
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse, stg_shipbob_orders
from sandbox.connections import connection_env
from sandbox.core import Settings
from tests.support import NOW, NOW_ISO

TIKTOK_ID, SHOPIFY_ID, SHIPBOB_ID = "576000000000000081", 6100000081, 9000081


def scenario() -> dict:
    return {
        "now": NOW_ISO,
        "orders": [
            {
                "tiktok": {
                    "id": TIKTOK_ID,
                    "status": "AWAITING_SHIPMENT",
                    "fulfillment_type": "FULFILLMENT_BY_SELLER",
                    "create_time": "2026-11-20T09:00:00Z",
                    "rts_sla_time": "2026-11-23T23:59:00Z",
                    "shipping_due_time": "2026-11-27T23:59:00Z",
                    "tracking_number": "",
                    "line_items": [{"id": "577000000000000081", "seller_sku": "OSL-TEE-M"}],
                    "cancellation": None,
                },
                "shopify": {"id": SHOPIFY_ID, "name": "#1081", "tiktok_id_in": "source_identifier", "cancelled": False},
                "fulfiller": "shipbob",
                "amazon_mcf": None,
                "shipbob": {
                    "order_id": SHIPBOB_ID,
                    "reference_id": str(SHOPIFY_ID),
                    "status": "Processing",
                    "shipments": [{"id": 1, "status": "Processing"}],
                },
            }
        ],
    }


def test_an_event_body_that_disagrees_with_shipbob_is_not_posted(run_sandbox, tmp_path, monkeypatch, caplog):
    server = run_sandbox(scenario(), settings=Settings(clock_rate=0, rate_scale=20))
    for key, value in connection_env(server.urls, rate_scale=20).items():
        monkeypatch.setenv(key, value)
    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")

    def run(run_id: str, run_type: str) -> None:
        settings = run_settings(
            dag_id="orderops_sla", run_id=run_id, params={"now": NOW_ISO}, run_after=NOW, run_type=run_type
        )
        platforms = Platforms(settings)
        try:
            run_all(settings, platforms, wh)
        finally:
            platforms.close()

    try:
        run("scheduled-1", "scheduled")
        # a delivery whose signature checked out (the receiver's part), claiming a shipment ShipBob does not show
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
        EventInbox(wh).receive(
            "default",
            [PlatformEvent("shipbob", "msg_forged", "order.shipped", str(SHIPBOB_ID), NOW, True, claimed_shipped)],
            received_at=NOW,
        )
        with caplog.at_level(logging.WARNING):
            run("event-1", "asset_triggered")
        posts = [w for w in server.sandbox.writes if w.platform == "tiktok" and w.path.endswith("/packages")]
        assert posts == []  # nothing reached TikTok on the body's word
        assert "1 ShipBob event body(ies) disagree with ShipBob's own answer" in caplog.text
        with wh.engine.connect() as conn:
            staged = conn.execute(
                sa.select(stg_shipbob_orders.c.status).where(stg_shipbob_orders.c.shipbob_order_id == SHIPBOB_ID)
            ).scalar()
        assert staged == "Processing"  # what ShipBob answers, not what the body claimed
    finally:
        wh.dispose()
