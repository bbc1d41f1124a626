"""The sandbox refuses unsigned, mis-signed, replayed-out-of-window and wrong-token requests
(adding to tests/contract: requests captured from the real clients, then replayed or altered).

- TikTok: a request signed by the production client and captured on the wire. Replayed as-is
  within the window it is accepted: TikTok has no nonce, the -300 s/+30 s timestamp window is the
  replay defence, so a capture replayed once the window has passed is refused (here: a client whose
  clock is 6 minutes behind, so its fresh capture is already out of the window). Any signed part
  changed (a query parameter, the body, the path), the signature removed, or the access token of
  another app: refused. Refused writes change nothing and are logged with the platform's code.
- Every platform refuses the credentials of the other three.
- Amazon: a presigned document URL moved to another document is refused.
"""

from __future__ import annotations

import time

import httpx
import pytest

from orderops_provider.base import PlatformError
from sandbox.connections import sandbox_connections
from tests.chaos.harness import RewritingTransport, chaos_scenario, hook_client, is_order_write, patched_env

SCENARIO = chaos_scenario()
SEARCH = "/order/202309/orders/search"


def code(response: httpx.Response) -> int:
    return response.json()["code"]


def captured(rig, *, clock=None) -> tuple[httpx.Request, RewritingTransport]:
    """The first orders-search request the real client signs and sends."""
    recorder = RewritingTransport()
    with patched_env(rig.connection_env()):
        client = hook_client("tiktok", transport=recorder, **({"clock": clock} if clock else {}))
        try:
            next(client.search_orders({"order_status": "AWAITING_SHIPMENT"}, page_size=5), None)
        except PlatformError:
            pass
        finally:
            client.close()
    return next(r for r in recorder.requests if r.url.path.endswith(SEARCH)), recorder


def replay(request: httpx.Request, *, url=None, content=None, headers=None) -> httpx.Response:
    sent = dict(request.headers)
    sent.update(headers or {})
    sent.pop("content-length", None)
    return httpx.request(
        request.method,
        url or request.url,
        content=request.content if content is None else content,
        headers=sent,
        timeout=10,
    )


def test_tiktok_capture_replayed_within_the_window_is_accepted_altered_is_refused(rig):
    rig.load(SCENARIO)
    request, _ = captured(rig)
    assert code(replay(request)) == 0
    assert code(replay(request)) == 0  # no nonce: the timestamp window bounds a replay
    params = dict(request.url.params)
    for name, value in (
        ("page_size", "50"),
        ("shop_cipher", "TTP_OtherShopCipher"),
        ("app_key", params["app_key"] + "x"),
    ):
        altered = replay(request, url=request.url.copy_set_param(name, value))
        assert altered.status_code in (400, 401) and code(altered) in (106001, 36009004), name
    assert (
        code(replay(request, content=request.content.replace(b"AWAITING_SHIPMENT", b"AWAITING_COLLECTION"))) == 106001
    )
    moved = request.url.copy_with(path="/return_refund/202309/cancellations/search")
    assert code(replay(request, url=moved)) == 106001
    unsigned = request.url.copy_remove_param("sign")
    assert code(replay(request, url=unsigned)) == 36009004
    assert "signature" in replay(request, url=unsigned).json()["message"]
    forged = replay(request, headers={"x-tts-access-token": "TTP_another-apps-token"})
    assert forged.status_code == 401 and "x-tts-access-token" in forged.json()["message"]
    assert "x-tts-access-token" in request.headers and "access_token" not in str(request.url)


def test_tiktok_capture_out_of_the_window_is_refused_and_writes_nothing(rig):
    rig.load(SCENARIO)

    def six_minutes_ago():
        return time.time() - 360

    request, recorder = captured(rig, clock=six_minutes_ago)
    stale = replay(request)
    assert stale.status_code == 400 and code(stale) == 36009004 and "5 minutes" in stale.json()["message"]
    # a write signed 6 minutes ago: refused, logged with the code, the order unchanged
    order = next(
        o
        for o in SCENARIO["orders"]
        if o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and o["fulfiller"] == "amazon_mcf"
        and o["amazon_mcf"]["status"] == "Complete"
        and isinstance(o["shopify"], dict)
        and not o["tiktok"]["cancellation"]
    )
    with patched_env(rig.connection_env()):
        client = hook_client("tiktok", clock=six_minutes_ago)
        with client, pytest.raises(PlatformError) as refused:
            client.mark_package_shipped(order["tiktok"]["id"], "1Z999AA10123456784", "1")
    assert refused.value.code == 36009004
    assert [(w.operation, w.outcome) for w in rig.writes] == [("mark_package_as_shipped", "36009004")]
    shop = rig.state("tiktok")["shops"][0]
    assert next(o for o in shop["orders"] if o["id"] == order["tiktok"]["id"])["tracking_number"] == ""


def test_each_platform_refuses_the_others_credentials(rig):
    rig.load(SCENARIO)
    docs = sandbox_connections(rig.urls)
    with patched_env(rig.connection_env()):
        lwa = hook_client("amazon_mcf")
        amazon_token = lwa.access_token()
        lwa.close()
    tokens = {
        "tiktok": docs["tiktok"]["extra"]["access_token"],
        "shopify": docs["shopify"]["password"],
        "amazon_mcf": amazon_token,
        "shipbob": docs["shipbob"]["password"],
    }
    shipbob_order = next(o for o in SCENARIO["orders"] if o.get("shipbob"))["shipbob"]["order_id"]
    amazon_order = next(o for o in SCENARIO["orders"] if (o.get("amazon_mcf") or {}).get("status") == "Planning")
    sfo = amazon_order["amazon_mcf"]["seller_fulfillment_order_id"]
    shopify_id = amazon_order["shopify"]["id"]

    def as_platform(platform: str, token: str) -> httpx.Response:
        if platform == "tiktok":
            request, _ = captured(rig)
            return replay(request, headers={"x-tts-access-token": token})
        if platform == "shopify":
            return httpx.post(
                f"{rig.urls['shopify']}/admin/api/2026-07/graphql.json",
                timeout=10,
                headers={"X-Shopify-Access-Token": token},
                json={
                    "query": "mutation C($id: ID!) { orderCancel(orderId: $id, reason: CUSTOMER, "
                    "refundMethod: {originalPaymentMethodsRefund: true}, restock: true) "
                    "{ job { id } orderCancelUserErrors { message } } }",
                    "variables": {"id": f"gid://shopify/Order/{shopify_id}"},
                },
            )
        if platform == "amazon_mcf":
            return httpx.put(
                f"{rig.urls['amazon_mcf']}/fba/outbound/2020-07-01/fulfillmentOrders/{sfo}/cancel",
                headers={"x-amz-access-token": token},
                timeout=10,
            )
        return httpx.post(
            f"{rig.urls['shipbob']}/2026-01/order/{shipbob_order}:cancel",
            timeout=10,
            headers={
                "Authorization": f"Bearer {token}",
                "shipbob_channel_id": str(docs["shipbob"]["extra"]["channel_id"]),
            },
        )

    refusals = {}
    for platform in tokens:
        for owner, token in tokens.items():
            if owner == platform:
                continue
            answer = as_platform(platform, token)
            refused = answer.status_code in (401, 403) or (platform == "tiktok" and code(answer) != 0)
            assert refused, (platform, owner, answer.status_code, answer.text[:200])
            refusals[(platform, owner)] = answer.status_code
    assert len(refusals) == 12
    # the refused writes changed nothing
    assert [w for w in rig.writes if is_order_write(w) and w.outcome == "ok"] == []
    assert len([w for w in rig.writes if is_order_write(w)]) == 9
    amazon = {
        o["fulfillmentOrder"]["sellerFulfillmentOrderId"]: o["fulfillmentOrder"]["fulfillmentOrderStatus"]
        for o in rig.state("amazon_mcf")["orders"]
    }
    assert amazon[sfo] == "Planning"
    assert next(o for o in rig.state("shopify")["orders"] if o["legacy_id"] == shopify_id)["cancelled_at"] is None
    shipbob = {o["id"]: o["status"] for o in rig.state("shipbob")["orders"]}
    assert shipbob[shipbob_order] != "Cancelled"


def test_a_presigned_document_url_moved_to_another_document_is_refused(rig):
    rig.load(SCENARIO)
    with patched_env(rig.connection_env()):
        client = hook_client("amazon_mcf")
        with client:
            urls = []
            for start in ("2026-11-10T00:00:00Z", "2026-11-12T00:00:00Z"):
                if urls:
                    rig.advance(30 * 60)  # Amazon builds the report at most every 30 minutes
                report = client.get_report(client.create_report(start, "2026-11-20T15:00:00Z"))
                assert report["processingStatus"] == "DONE"
                urls.append(httpx.URL(client.get_report_document(report["reportDocumentId"])["url"]))
    assert urls[0].path != urls[1].path
    assert all(httpx.get(url, timeout=10).status_code == 200 for url in urls)
    # the first document's signature on the second document's path
    swapped = urls[1].copy_with(query=urls[0].query)
    denied = httpx.get(swapped, timeout=10)
    assert denied.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in denied.text
    unsigned = urls[0].copy_remove_param("X-Amz-Signature")
    assert httpx.get(unsigned, timeout=10).status_code == 403
