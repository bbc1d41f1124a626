"""The sandbox answers clients nobody here wrote, used unmodified, for the operations orderops uses.

TikTok: `tiktok-shop-api` (PyPI, generated from the Partner Center docs; a test-only dependency).
It calls each endpoint at the version the docs name now (order detail 202507, cancellations
202602, Mark Package As Shipped 202610), sends lists as repeated query keys and signs each
occurrence, and parses every answer into its typed models, so a field of the wrong type or shape
fails here.
"""
from __future__ import annotations

import pytest
from tiktok_shop_api import TikTokShop, TikTokShopError
from tiktok_shop_api.generated import models

from include.sandbox.core import Settings
from include.sandbox.tiktok import DEFAULT_CREDENTIALS as CREDS
from tests.contract.test_tiktok import cancel_id, line_id, oid, order, scenario

FROZEN = Settings(clock_rate=0)


@pytest.fixture
def tiktok_shop(run_sandbox):
    server = run_sandbox(scenario(order(1, lines=2), order(2), order(3, pending_cancel=True),
                                  order(4, pending_cancel=True), order(5, status="CANCELLED")),
                         platforms=("tiktok",), settings=FROZEN)
    client = TikTokShop(CREDS["app_key"], CREDS["app_secret"], access_token=CREDS["access_token"],
                        base_url=server.urls["tiktok"], timeout=10)
    cipher = client.authorization.get_authorized_shops().to_dict()["data"]["shops"][0]["cipher"]
    with client.with_shop(shop_cipher=cipher) as shop:
        yield server, shop
    client.close()


def test_orders_logistics_and_shipping_through_the_public_client(tiktok_shop):
    server, shop = tiktok_shop
    listed = shop.orders.get_order_list(page_size=2, body=models.GetOrderListRequest(
        order_status=models.GetOrderListRequestOrderStatus.AWAITING_SHIPMENT)).to_dict()["data"]
    assert listed["total_count"] == 4 and len(listed["orders"]) == 2 and listed["next_page_token"]
    rest = shop.orders.get_order_list(page_size=50, page_token=listed["next_page_token"], body=models.GetOrderListRequest(
        order_status=models.GetOrderListRequestOrderStatus.AWAITING_SHIPMENT)).to_dict()["data"]
    assert sorted(o["id"] for o in listed["orders"] + rest["orders"]) == [oid(n) for n in (1, 2, 3, 4)]

    detail = shop.orders.get_order_detail(ids=[oid(1), oid(5)]).to_dict()["data"]["orders"]   # ids=..&ids=..
    assert [o["id"] for o in detail] == [oid(1), oid(5)] and detail[1]["status"] == "CANCELLED"
    assert detail[0]["recommended_shipping_time"] == detail[0]["rts_sla_time"]

    warehouse = shop.logistics.get_warehouse_list().to_dict()["data"]["warehouses"][0]["id"]
    options = shop.logistics.get_warehouse_delivery_options(warehouse).to_dict()["data"]["delivery_options"]
    assert detail[0]["delivery_option_id"] in {o["id"] for o in options}
    providers = shop.logistics.get_shipping_providers(detail[0]["delivery_option_id"]).to_dict()["data"]
    ups = next(p["id"] for p in providers["shipping_providers"] if p["name"] == "UPS")

    shipped = shop.fulfillment.mark_package_as_shipped(oid(1), body=models.MarkPackageAsShippedRequest(
        order_line_list=[models.ConfirmOrderSplitRequestSplittableGroupsV2OrderLineList(order_line_id=line_id(1, 0))],
        shipping_info_list=[models.ShippingInfoList(tracking_number="1ZSANDBOX0000000001",
                                                    shipping_provider_id=ups)])).to_dict()["data"]
    assert shipped["order_line_item_ids"] == [line_id(1, 0)] and shipped["package_id"]
    after = shop.orders.get_order_detail(ids=[oid(1)]).to_dict()["data"]["orders"][0]
    assert [li.get("tracking_number") for li in after["line_items"]] == ["1ZSANDBOX0000000001", ""]
    ok = [w for w in server.sandbox.writes if w.outcome == "ok"]
    assert [(w.operation, w.path) for w in ok] == [
        ("mark_package_as_shipped", f"/fulfillment/202610/orders/{oid(1)}/packages")]
    # a refusal reaches the public client as the platform's error, with its code
    with pytest.raises(TikTokShopError) as caught:
        shop.fulfillment.mark_package_as_shipped(oid(5), body=models.MarkPackageAsShippedRequest(
            shipping_info_list=[models.ShippingInfoList(tracking_number="1ZSANDBOX0000000002",
                                                        shipping_provider_id=ups)]))
    assert caught.value.code != 0 and caught.value.request_id


def test_cancellations_through_the_public_client(tiktok_shop):
    server, shop = tiktok_shop
    found = shop.return_and_refund.search_cancellations(page_size="50", body=models.SearchCancellationsRequest(
        cancel_status=[models.SearchCancellationsRequestCancelStatusItem.CANCELLATION_REQUEST_PENDING]))
    pending = found.to_dict()["data"]["cancellations"]
    assert [c["cancel_id"] for c in pending] == [cancel_id(3), cancel_id(4)]
    assert all(c["should_replenish_stock"] is True for c in pending)

    shop.return_and_refund.approve_cancellation(cancel_id(3), idempotency_key="orderops-approve-3")
    reasons = shop.return_and_refund.get_reject_reasons(return_or_cancel_id=cancel_id(4)).to_dict()["data"]["reasons"]
    shop.return_and_refund.reject_cancellation(cancel_id(4), idempotency_key="orderops-reject-4",
                                               body=models.RejectCancellationRequest(reject_reason=reasons[0]["name"]))
    statuses = {c["cancel_id"]: c["cancel_status"] for c in shop.return_and_refund.search_cancellations(
        body=models.SearchCancellationsRequest(order_ids=[oid(3), oid(4)])).to_dict()["data"]["cancellations"]}
    assert statuses[cancel_id(3)] != "CANCELLATION_REQUEST_PENDING"
    assert statuses[cancel_id(4)] != "CANCELLATION_REQUEST_PENDING"
    orders = {o["id"]: o["status"] for o in shop.orders.get_order_detail(ids=[oid(3), oid(4)]).to_dict()[
        "data"]["orders"]}
    assert orders == {oid(3): "CANCELLED", oid(4): "AWAITING_SHIPMENT"}
    assert [(w.operation, w.outcome) for w in server.sandbox.writes] == [
        ("approve_cancellation", "ok"), ("reject_cancellation", "ok")]
