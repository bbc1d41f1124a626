"""The sandbox answers clients nobody here wrote, used unmodified, for the operations orderops uses
(test-only dependencies from PyPI; only their documented settings are touched).

TikTok: `tiktok-shop-api`, generated from the Partner Center docs. It calls each endpoint at the
version it was generated for (order detail 202507, cancellations 202602, Mark Package As Shipped
202610, a version only such generated clients show: orderops uses it only when a connection pins
it), sends lists as repeated query keys and signs each occurrence, and parses every answer
into its typed models, so a field of the wrong type or shape fails here.
Amazon: `python-amazon-sp-api` (Fulfillment Outbound and Reports, LWA refresh-token grant). It
only speaks https, so its endpoint is given as a marketplace object and its token host through its
token-client class; the Host header it derives from an https URL comes out cut for http, which
the sandbox does not check.
Shopify: `ShopifyAPI` (Session + GraphQL over urllib), pointed at loopback with its own
`Session.setup(protocol, myshopify_domain, port)`, running orderops's documents and others.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import shopify
from sp_api.api import FulfillmentOutbound, Reports
from sp_api.auth import AccessTokenClient
from sp_api.auth.access_token_client import cache as token_cache
from sp_api.base import SellingApiException
from tiktok_shop_api import TikTokShop, TikTokShopError
from tiktok_shop_api.generated import models

from orderops_provider import shopify as orderops_shopify
from sandbox.amazon_mcf import DEFAULT_CREDENTIALS as AMAZON
from sandbox.core import Settings
from sandbox.generate import generate
from sandbox.shopify import DEFAULT_CREDENTIALS as SHOPIFY
from sandbox.tiktok import DEFAULT_CREDENTIALS as CREDS
from tests.contract.test_hook_amazon_mcf import QUICK_REPORTS, mcf_order, shipped_in
from tests.contract.test_tiktok import cancel_id, line_id, oid, order, scenario

FROZEN = Settings(clock_rate=0)


@pytest.fixture
def tiktok_shop(run_sandbox):
    server = run_sandbox(
        scenario(
            order(1, lines=2),
            order(2),
            order(3, pending_cancel=True),
            order(4, pending_cancel=True),
            order(5, status="CANCELLED"),
        ),
        platforms=("tiktok",),
        settings=FROZEN,
    )
    client = TikTokShop(
        CREDS["app_key"],
        CREDS["app_secret"],
        access_token=CREDS["access_token"],
        base_url=server.urls["tiktok"],
        timeout=10,
    )
    cipher = client.authorization.get_authorized_shops().to_dict()["data"]["shops"][0]["cipher"]
    with client.with_shop(shop_cipher=cipher) as shop:
        yield server, shop
    client.close()


def test_orders_logistics_and_shipping_through_the_public_client(tiktok_shop):
    server, shop = tiktok_shop
    listed = shop.orders.get_order_list(
        page_size=2,
        body=models.GetOrderListRequest(order_status=models.GetOrderListRequestOrderStatus.AWAITING_SHIPMENT),
    ).to_dict()["data"]
    assert listed["total_count"] == 4 and len(listed["orders"]) == 2 and listed["next_page_token"]
    rest = shop.orders.get_order_list(
        page_size=50,
        page_token=listed["next_page_token"],
        body=models.GetOrderListRequest(order_status=models.GetOrderListRequestOrderStatus.AWAITING_SHIPMENT),
    ).to_dict()["data"]
    assert sorted(o["id"] for o in listed["orders"] + rest["orders"]) == [oid(n) for n in (1, 2, 3, 4)]

    detail = shop.orders.get_order_detail(ids=[oid(1), oid(5)]).to_dict()["data"]["orders"]  # ids=..&ids=..
    assert [o["id"] for o in detail] == [oid(1), oid(5)] and detail[1]["status"] == "CANCELLED"
    assert detail[0]["recommended_shipping_time"] == detail[0]["rts_sla_time"]

    warehouse = shop.logistics.get_warehouse_list().to_dict()["data"]["warehouses"][0]["id"]
    options = shop.logistics.get_warehouse_delivery_options(warehouse).to_dict()["data"]["delivery_options"]
    assert detail[0]["delivery_option_id"] in {o["id"] for o in options}
    providers = shop.logistics.get_shipping_providers(detail[0]["delivery_option_id"]).to_dict()["data"]
    ups = next(p["id"] for p in providers["shipping_providers"] if p["name"] == "UPS")

    shipped = shop.fulfillment.mark_package_as_shipped(
        oid(1),
        body=models.MarkPackageAsShippedRequest(
            order_line_list=[
                models.ConfirmOrderSplitRequestSplittableGroupsV2OrderLineList(order_line_id=line_id(1, 0))
            ],
            shipping_info_list=[
                models.ShippingInfoList(tracking_number="1ZSANDBOX0000000001", shipping_provider_id=ups)
            ],
        ),
    ).to_dict()["data"]
    assert shipped["order_line_item_ids"] == [line_id(1, 0)] and shipped["package_id"]
    after = shop.orders.get_order_detail(ids=[oid(1)]).to_dict()["data"]["orders"][0]
    assert [li.get("tracking_number") for li in after["line_items"]] == ["1ZSANDBOX0000000001", ""]
    ok = [w for w in server.sandbox.writes if w.outcome == "ok"]
    assert [(w.operation, w.path) for w in ok] == [
        ("mark_package_as_shipped", f"/fulfillment/202610/orders/{oid(1)}/packages")
    ]
    # a refusal reaches the public client as the platform's error, with its code
    with pytest.raises(TikTokShopError) as caught:
        shop.fulfillment.mark_package_as_shipped(
            oid(5),
            body=models.MarkPackageAsShippedRequest(
                shipping_info_list=[
                    models.ShippingInfoList(tracking_number="1ZSANDBOX0000000002", shipping_provider_id=ups)
                ]
            ),
        )
    assert caught.value.code != 0 and caught.value.request_id


def test_cancellations_through_the_public_client(tiktok_shop):
    server, shop = tiktok_shop
    found = shop.return_and_refund.search_cancellations(
        page_size="50",
        body=models.SearchCancellationsRequest(
            cancel_status=[models.SearchCancellationsRequestCancelStatusItem.CANCELLATION_REQUEST_PENDING]
        ),
    )
    pending = found.to_dict()["data"]["cancellations"]
    assert [c["cancel_id"] for c in pending] == [cancel_id(3), cancel_id(4)]
    assert all(c["should_replenish_stock"] is True for c in pending)

    shop.return_and_refund.approve_cancellation(cancel_id(3), idempotency_key="orderops-approve-3")
    reasons = shop.return_and_refund.get_reject_reasons(return_or_cancel_id=cancel_id(4)).to_dict()["data"]["reasons"]
    shop.return_and_refund.reject_cancellation(
        cancel_id(4),
        idempotency_key="orderops-reject-4",
        body=models.RejectCancellationRequest(reject_reason=reasons[0]["name"]),
    )
    statuses = {
        c["cancel_id"]: c["cancel_status"]
        for c in shop.return_and_refund.search_cancellations(
            body=models.SearchCancellationsRequest(order_ids=[oid(3), oid(4)])
        ).to_dict()["data"]["cancellations"]
    }
    assert statuses[cancel_id(3)] != "CANCELLATION_REQUEST_PENDING"
    assert statuses[cancel_id(4)] != "CANCELLATION_REQUEST_PENDING"
    orders = {
        o["id"]: o["status"] for o in shop.orders.get_order_detail(ids=[oid(3), oid(4)]).to_dict()["data"]["orders"]
    }
    assert orders == {oid(3): "CANCELLED", oid(4): "AWAITING_SHIPMENT"}
    assert [(w.operation, w.outcome) for w in server.sandbox.writes] == [
        ("approve_cancellation", "ok"),
        ("reject_cancellation", "ok"),
    ]


# ---------------------------------------------------------------- Amazon: python-amazon-sp-api
@pytest.fixture
def amazon(run_sandbox):
    doc = generate(300, seed=5)
    doc["orders"] += [mcf_order(n, "Planning") for n in (901, 902)]
    server = run_sandbox(
        doc,
        platforms=("amazon_mcf",),
        settings=Settings(rate_scale=10, clock_rate=0, platforms={"amazon_mcf": QUICK_REPORTS}),
    )

    token_cache.clear()  # the library keeps tokens per refresh token across clients; each sandbox issues its own

    class SandboxTokenHost(AccessTokenClient):  # the library's own hook for another LWA host
        scheme, host = "http://", server.urls["amazon_lwa"].removeprefix("http://")

    marketplace = SimpleNamespace(
        endpoint=server.urls["amazon_mcf"], marketplace_id=AMAZON["marketplace_id"], region="us-east-1"
    )
    kwargs = dict(
        marketplace=marketplace,
        credentials={
            "refresh_token": AMAZON["refresh_token"],
            "lwa_app_id": AMAZON["client_id"],
            "lwa_client_secret": AMAZON["client_secret"],
        },
        auth_token_client_class=SandboxTokenHost,
        timeout=10,
    )
    return server, FulfillmentOutbound(**kwargs), Reports(**kwargs)


def test_fulfillment_orders_and_cancel_through_the_public_client(amazon):
    server, outbound, _ = amazon
    since = (datetime(2026, 11, 1, tzinfo=timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    listed, token, pages = [], None, 0
    while True:
        page = outbound.list_all_fulfillment_orders(**({"nextToken": token} if token else {"queryStartDate": since}))
        listed += page.payload["fulfillmentOrders"]
        pages, token = pages + 1, page.payload.get("nextToken")
        if not token:
            break
    truth = {o.sfo_id for o in server.sandbox.platforms["amazon_mcf"].orders.values()}
    assert {o["sellerFulfillmentOrderId"] for o in listed} <= truth and pages > 1 and len(listed) > 50
    detail = outbound.get_fulfillment_order("1901").payload
    assert detail["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Planning"
    outbound.cancel_fulfillment_order("1901")
    assert outbound.get_fulfillment_order("1901").payload["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Cancelled"
    with pytest.raises(SellingApiException) as caught:
        outbound.get_fulfillment_order("no-such-order")
    assert caught.value.code == 400 and caught.value.error[0]["code"] == "InvalidInput"
    assert [(w.operation, w.outcome) for w in server.sandbox.writes if w.outcome == "ok"][-1:] == [
        ("cancelFulfillmentOrder", "ok")
    ]


def test_the_shipments_report_through_the_public_client(amazon):
    server, _, reports = amazon
    now = server.sandbox.clock.now()
    begin = now - timedelta(days=3)
    created = reports.create_report(
        reportType="GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
        dataStartTime=begin.strftime("%Y-%m-%dT%H:%M:%SZ"),
        dataEndTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ).payload
    deadline = time.monotonic() + 30
    while (report := reports.get_report(created["reportId"]).payload)["processingStatus"] != "DONE":
        assert report["processingStatus"] in ("IN_QUEUE", "IN_PROGRESS") and time.monotonic() < deadline
        time.sleep(0.1)
    document = reports.get_report_document(report["reportDocumentId"], download=True).payload["document"]
    lines = document.splitlines()
    header, rows = (
        lines[0].split("\t"),
        [dict(zip(lines[0].split("\t"), line.split("\t"), strict=False)) for line in lines[1:]],
    )
    assert "tracking-number" in header
    assert {(r["merchant-order-id"], r["shipment-id"], r["tracking-number"]) for r in rows} == shipped_in(
        server, begin, now
    )


# ---------------------------------------------------------------- Shopify: ShopifyAPI
@pytest.fixture
def shopify_session(run_sandbox):
    from tests.contract.test_shopify import scenario_order

    server = run_sandbox(
        {"now": "2026-11-20T15:00:00Z", "orders": [scenario_order(n) for n in range(1, 6)]},
        platforms=("shopify",),
        settings=Settings(clock_rate=0),
    )
    host, port = server.urls["shopify"].removeprefix("http://").split(":")
    first, _, rest = host.partition(".")  # the library builds "{shop}.{myshopify_domain}:{port}"
    shopify.Session.setup(protocol="http", myshopify_domain=rest, port=int(port))
    session = shopify.Session(first, "2026-07", SHOPIFY["access_token"])
    shopify.ShopifyResource.activate_session(session)
    try:
        yield server, shopify.GraphQL()
    finally:
        shopify.ShopifyResource.clear_session()
        shopify.Session.setup(protocol="https", myshopify_domain="myshopify.com", port=None)


def run(client, query: str, variables: dict | None = None) -> dict:
    return json.loads(client.execute(query, variables))


def test_orderops_documents_through_the_public_shopify_client(shopify_session):
    server, client = shopify_session
    page = run(client, orderops_shopify.ORDERS_QUERY, {"first": 2, "query": "tag:TikTok", "sortKey": "ID"})
    assert "errors" not in page, page
    nodes = page["data"]["orders"]["nodes"]
    assert len(nodes) == 2 and page["data"]["orders"]["pageInfo"]["hasNextPage"] is True
    assert page["extensions"]["cost"]["throttleStatus"]["maximumAvailable"] > 0
    one = run(client, orderops_shopify.ORDER_QUERY, {"id": nodes[0]["id"]})["data"]["order"]
    assert one["id"] == nodes[0]["id"] and one["sourceIdentifier"]
    cancel = run(
        client,
        orderops_shopify.CANCEL_MUTATION,
        {
            "orderId": nodes[0]["id"],
            "reason": "CUSTOMER",
            "refundMethod": {"originalPaymentMethodsRefund": True},
            "restock": True,
            "notifyCustomer": False,
            "staffNote": "buyer cancelled on TikTok",
        },
    )
    assert "errors" not in cancel, cancel
    job = cancel["data"]["orderCancel"]["job"]
    for _ in range(20):
        if run(client, orderops_shopify.JOB_QUERY, {"id": job["id"]})["data"]["job"]["done"]:
            break
    assert run(client, orderops_shopify.ORDER_QUERY, {"id": nodes[0]["id"]})["data"]["order"]["cancelledAt"]
    note = run(
        client,
        orderops_shopify.NOTE_MUTATION,
        {"input": {"id": nodes[1]["id"], "note": "Shipping, no tracking ID yet"}},
    )
    tags = run(client, orderops_shopify.TAGS_MUTATION, {"id": nodes[1]["id"], "tags": ["orderops"]})
    assert not note["data"]["orderUpdate"]["userErrors"] and not tags["data"]["tagsAdd"]["userErrors"]
    assert [w.operation for w in server.sandbox.writes] == ["orderCancel", "orderUpdate", "tagsAdd"]


def test_the_public_shopify_client_reads_what_orderops_does_not_model(shopify_session):
    server, client = shopify_session
    answer = run(
        client,
        """{ orders(first: 1) { nodes { id fulfillmentOrders(first: 3) { nodes { id } }
        currentTotalPriceSet { shopMoney { amount currencyCode } } } } }""",
    )
    assert "errors" not in answer, answer
    node = answer["data"]["orders"]["nodes"][0]
    assert node["fulfillmentOrders"] == {"nodes": []} and node["currentTotalPriceSet"]["shopMoney"]["currencyCode"]
    wrong = run(client, "{ orders(first: 1) { nodes { totalPrize } } }")
    assert wrong["errors"][0]["extensions"]["code"] == "undefinedField"
