"""The order of a buyer cancellation's last writes, against a sandbox whose Shopify plays a sales-channel
connector that copies a Shopify cancel to TikTok as a seller cancellation.

The danger is shown, not assumed: cancelling in Shopify first turns the buyer's request into a seller
cancellation on TikTok and the approval then fails; the default order (approve, then cancel in
Shopify) leaves the buyer's cancellation the buyer's.
"""

from __future__ import annotations

import pytest

from include.act.ledger import Ledger
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse
from sandbox.connections import connection_env
from sandbox.core import Settings, parse_fault
from tests.support import NOW_ISO as NOW

TIKTOK_ID, CANCEL_ID, SHOPIFY_ID = "576000000000000071", "4035000000000000071", 6100000071


def scenario() -> dict:
    """One buyer cancellation with no fulfillment order (C2)."""
    return {
        "now": NOW,
        "orders": [
            {
                "tiktok": {
                    "id": TIKTOK_ID,
                    "status": "AWAITING_SHIPMENT",
                    "fulfillment_type": "FULFILLMENT_BY_SELLER",
                    "create_time": "2026-11-20T09:00:00Z",
                    "rts_sla_time": "2026-11-22T23:59:00Z",
                    "shipping_due_time": "2026-11-27T23:59:00Z",
                    "tracking_number": "",
                    "line_items": [{"id": "577000000000000071", "seller_sku": "OSL-TEE-M"}],
                    "cancellation": {
                        "cancel_id": CANCEL_ID,
                        "status": "CANCELLATION_REQUEST_PENDING",
                        "create_time": "2026-11-20T14:00:00Z",
                        "deadline": "2026-11-22T14:00:00Z",
                    },
                },
                "shopify": {"id": SHOPIFY_ID, "name": "#1071", "tiktok_id_in": "source_identifier", "cancelled": False},
                "fulfiller": None,
                "amazon_mcf": None,
                "shipbob": None,
            }
        ],
    }


@pytest.fixture
def shop(run_sandbox, tmp_path, monkeypatch):
    connector = {"shopify": {"channel_copies_cancel_to_tiktok": True, "cancel_job_polls": 1}}
    server = run_sandbox(scenario(), settings=Settings(clock_rate=0, rate_scale=20, platforms=connector))
    for key, value in connection_env(server.urls, rate_scale=20).items():
        monkeypatch.setenv(key, value)
    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")

    def run(run_id: str, sequence: str | None = None, observe=None) -> None:
        policy = {"cancellation_sequence": sequence} if sequence else {}
        settings = run_settings(
            dag_id="orderops_sla",
            run_id=run_id,
            params={"now": NOW, "window_start": "2026-11-20T14:30:00Z", "window_end": NOW, "policy": policy},
        )
        platforms = Platforms(settings)
        try:
            run_all(settings, platforms, wh, observe=observe)
        finally:
            platforms.close()

    yield server, wh, run
    wh.dispose()


def tiktok_state(server) -> tuple[dict, list[dict]]:
    shop = server.sandbox.platforms["tiktok"].state()["shops"][0]
    order = next(o for o in shop["orders"] if o["id"] == TIKTOK_ID)
    return order, [c for c in shop["cancellations"] if c["order_id"] == TIKTOK_ID]


def writes(server) -> dict[str, list]:
    found: dict[str, list] = {"approve": [], "orderCancel": []}
    for w in server.sandbox.writes:
        if w.path.endswith(f"/cancellations/{CANCEL_ID}/approve"):
            found["approve"].append(w)
        elif w.operation == "orderCancel":
            found["orderCancel"].append(w)
    return found


def test_approving_first_keeps_the_buyers_cancellation(shop):
    server, wh, run = shop
    run("run-1")
    seen = writes(server)
    assert [w.outcome for w in seen["approve"]] == ["ok"] and [w.outcome for w in seen["orderCancel"]] == ["ok"]
    assert seen["approve"][0].seq < seen["orderCancel"][0].seq
    order, cancellations = tiktok_state(server)
    assert order["status"] == "CANCELLED" and order["cancellation_initiator"] == "BUYER"
    # the connector's copy of the Shopify cancel found the order cancelled already: no seller cancellation
    assert [(c["cancel_type"], c["cancel_status"]) for c in cancellations] == [
        ("BUYER_CANCEL", "CANCELLATION_REQUEST_SUCCESS")
    ]
    rows = {r["kind"]: r["state"] for r in Ledger(wh).rows("default") if r["tiktok_order_id"] == TIKTOK_ID}
    assert rows == {"approve_cancellation": "succeeded", "cancel_shopify_order": "succeeded"}


def test_cancelling_in_shopify_first_becomes_a_seller_cancellation(shop):
    server, wh, run = shop
    run("run-1", "shopify_then_approve")
    seen = writes(server)
    assert [w.outcome for w in seen["orderCancel"]] == ["ok"]
    order, cancellations = tiktok_state(server)
    # the connector cancelled the order on TikTok as the seller's and closed the buyer's request
    assert order["status"] == "CANCELLED" and order["cancellation_initiator"] == "SELLER"
    assert {(c["cancel_type"], c["cancel_status"]) for c in cancellations} == {
        ("BUYER_CANCEL", "CANCELLATION_REQUEST_CANCEL"),
        ("CANCEL", "CANCELLATION_REQUEST_SUCCESS"),
    }
    # so the approval fails: the request is no longer pending
    assert seen["approve"] and all(w.outcome != "ok" for w in seen["approve"])
    approval = next(r for r in Ledger(wh).rows("default", kind="approve_cancellation"))
    assert approval["state"] in ("failed", "skipped")


def test_an_approval_whose_shopify_cancel_failed_is_finished_by_the_next_run(shop):
    server, wh, run = shop

    def shopify_down(moment: str) -> None:
        # once everything is read and decided, Shopify answers 503 to the rest of the run
        server.sandbox.add_fault(parse_fault({"platform": "shopify", "kind": "5xx", "path": "graphql", "count": 1000}))

    run("run-1", observe=shopify_down)
    assert [w.outcome for w in writes(server)["approve"]] == ["ok"]
    refund = next(r for r in Ledger(wh).rows("default", kind="cancel_shopify_order"))
    assert refund["state"] != "succeeded"
    server.sandbox.faults.clear()
    run("run-2")
    refund = next(r for r in Ledger(wh).rows("default", kind="cancel_shopify_order"))
    assert refund["state"] == "succeeded" and refund["rule"] == "C2"
    assert [w.outcome for w in writes(server)["approve"]] == ["ok"]  # approved once
    assert [w.outcome for w in writes(server)["orderCancel"]] == ["ok"]


def shipped_with_request() -> dict:
    """A buyer cancellation of an order Amazon already shipped (C3: reject, post the tracking)."""
    doc = scenario()
    order = doc["orders"][0]
    order["fulfiller"] = "amazon_mcf"
    order["amazon_mcf"] = {
        "seller_fulfillment_order_id": "1071",
        "status": "Complete",
        "shipments": [
            {
                "status": "SHIPPED",
                "packages": [{"package_number": 1, "carrier_code": "UPS", "tracking_number": "1Z999AA10123456784"}],
            }
        ],
    }
    return doc


def test_unreadable_reject_reasons_hold_the_rejection_not_the_tracking(run_sandbox, tmp_path, monkeypatch):
    server = run_sandbox(shipped_with_request(), settings=Settings(clock_rate=0, rate_scale=20))
    for key, value in connection_env(server.urls, rate_scale=20).items():
        monkeypatch.setenv(key, value)
    server.sandbox.add_fault(
        parse_fault({"platform": "tiktok", "kind": "5xx", "path": "/reject_reasons$", "count": 1000})
    )
    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")

    def run(run_id: str) -> None:
        settings = run_settings(
            dag_id="orderops_sla",
            run_id=run_id,
            params={"now": NOW, "window_start": "2026-11-20T14:30:00Z", "window_end": NOW},
        )
        platforms = Platforms(settings)
        try:
            run_all(settings, platforms, wh)
        finally:
            platforms.close()

    def paths(outcome: str = "ok") -> list[str]:
        return [w.path for w in server.sandbox.writes if w.platform == "tiktok" and w.outcome == outcome]

    try:
        run("run-1")
        # the tracking went out; the rejection waits for reasons TikTok could not give
        assert any(p.endswith("/packages") for p in paths()) and not any(p.endswith("/reject") for p in paths())
        rows = {r["kind"]: r for r in Ledger(wh).rows("default") if r["tiktok_order_id"] == TIKTOK_ID}
        assert "reject_cancellation" not in rows and rows["post_tracking"]["state"] == "succeeded"
        server.sandbox.faults.clear()
        run("run-2")
        (reject,) = [w for w in server.sandbox.writes if w.path.endswith(f"/cancellations/{CANCEL_ID}/reject")]
        assert (
            reject.outcome == "ok"
            and reject.body["reject_reason"] == "ecom_reverse_reject_cancel_reason_product_packed"
        )
    finally:
        wh.dispose()
