"""At-risk alerts name the deadline at risk: the ship-by time (no tracking yet, or tracking and no
carrier scan) and TikTok's auto-cancellation (no tracking), against staged rows."""

from __future__ import annotations

from datetime import timedelta

from include.report.at_risk import AUTO_CANCEL, SHIP_BY, alert_at_risk, orders_at_risk
from include.store.warehouse import Warehouse, stg_tiktok_orders
from tests.support import NOW


def staged(order_id: str, ship_by_in: float, *, tracking="", scanned=False, cancel_in=120.0, shipping="SELLER"):
    return dict(
        shop="s",
        tiktok_order_id=order_id,
        status="AWAITING_COLLECTION" if tracking else "AWAITING_SHIPMENT",
        fulfillment_type="FULFILLMENT_BY_SELLER",
        create_time=NOW - timedelta(days=2),
        update_time=NOW - timedelta(hours=1),
        rts_sla_time=NOW + timedelta(hours=ship_by_in),
        shipping_due_time=NOW + timedelta(hours=cancel_in),
        collection_time=NOW - timedelta(minutes=30) if scanned else None,
        tracking_number=tracking,
        shipping_provider_id="p" if tracking else "",
        is_buyer_request_cancel=False,
        line_items=[],
        raw={"shipping_type": shipping},
        snapshot_run_id="r1",
        extracted_at=NOW,
    )


def test_each_deadline_at_risk_is_named_with_what_is_missing(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    wh.upsert(
        stg_tiktok_orders,
        [
            staged("576A", 3),  # no tracking, ship-by in 3 h
            staged("576B", 10, tracking="1ZB"),  # tracking, no scan yet, ship-by in 10 h
            staged("576C", 2, tracking="1ZC", scanned=True),  # scanned: dispatched
            staged("576D", -30, cancel_in=5),  # past ship-by; TikTok cancels it in 5 h without tracking
            staged("576E", 3, shipping="TIKTOK"),  # TikTok's label: its scan brings the tracking
        ],
    )
    found = {(r.tiktok_order_id, r.deadline): r for r in orders_at_risk(wh, "s", NOW, 12)}
    assert set(found) == {("576A", SHIP_BY), ("576B", SHIP_BY), ("576D", AUTO_CANCEL)}
    assert found[("576A", SHIP_BY)].missing == "no tracking"
    assert found[("576B", SHIP_BY)].missing == "tracking on TikTok, no carrier scan"
    line = found[("576D", AUTO_CANCEL)].line(NOW)
    assert line.startswith("576D auto-cancel at") and "(5.0 h left): no tracking; no fulfillment order linked" in line
    sent = alert_at_risk(wh, wh.url, "s", "orderops_sla", "r1", NOW, (12.0, 4.0))
    assert sent == {(SHIP_BY, 4.0): ["576A"], (SHIP_BY, 12.0): ["576B"], (AUTO_CANCEL, 12.0): ["576D"]}
    # once per deadline and threshold: the next run sends nothing new
    assert alert_at_risk(wh, wh.url, "s", "orderops_sla", "r2", NOW + timedelta(minutes=30), (12.0, 4.0)) == {}
    wh.dispose()
