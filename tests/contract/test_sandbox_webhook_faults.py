"""The sandbox's webhook faults (sandbox/webhooks.py), read by orderops's own verification: each is
what it claims to be (a stale body validly signed, a replay with fresh unsigned headers, a delivery
for another shop of the same app, one signed past the tolerance), so the simulation that mixes
them in measures the receiver's defence and not a sandbox mistake."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from include.events import platform_events as events
from include.events.platform_events import Unverified
from sandbox import webhooks
from sandbox.core import Sandbox, Settings
from sandbox.scenario import parse_scenario
from sandbox.shopify import DEFAULT_CREDENTIALS as SHOPIFY
from sandbox.tiktok import DEFAULT_CREDENTIALS as TIKTOK
from tests.e2e.test_event_reads import scenario

SECRET = "whsec_" + "c2FuZGJveC1mYXVsdHMtY29udHJhY3QtdGVzdA=="[:32]


@pytest.fixture
def recorder():
    received: list[tuple[str, bytes, dict]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"])), dict(self.headers)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_each_fault_is_what_it_claims_to_be(recorder, monkeypatch):
    url, received = recorder
    monkeypatch.setattr(webhooks, "FAULT_EVERY", 1)  # every delivery followed by each fault it can take
    outbox = Sandbox(parse_scenario(scenario()), Settings(clock_rate=0)).outbox
    for platform in ("tiktok", "shopify", "shipbob"):
        outbox.subscribe(platform, f"{url}/{platform}", SECRET)
    outbox.subscribe("amazon_mcf", None)
    outbox.set_faults(list(webhooks.FAULTS))
    now = datetime.now(timezone.utc)
    outbox.emit(
        "tiktok", "ORDER_STATUS_CHANGE", {"order_id": "576", "order_status": "IN_TRANSIT", "update_time": 1763650800}
    )
    outbox.emit("shopify", "orders/updated", {"id": 6100000081, "updated_at": "2026-11-20T15:00:00Z"})
    shipped = {"id": 9000081, "status": "Fulfilled", "shipments": [{"id": 1, "tracking": {"tracking_number": "1Z12"}}]}
    outbox.emit("shipbob", "order.shipped", shipped)
    package = {"PackageNumber": 1, "CarrierCode": "UPS", "TrackingNumber": "1Z999AA10123456784"}
    outbox.emit(
        "amazon_mcf",
        "Shipment",
        {"SellerFulfillmentOrderId": "1082", "FulfillmentShipment": {"FulfillmentShipmentPackages": [package]}},
    )
    assert outbox.flush(timeout=30)
    by = {p: [(b, h) for path, b, h in received if path == f"/{p}"] for p in ("tiktok", "shopify", "shipbob")}

    def refused(read, body, headers) -> str:
        with pytest.raises(Unverified) as exc:
            read(body, headers)
        return exc.value.reason

    tiktok = lambda body, headers: events.tiktok_event(  # noqa: E731
        body, headers, TIKTOK["app_key"], TIKTOK["app_secret"], now, TIKTOK["shop_id"]
    )
    genuine, replay, cross, old = by["tiktok"]  # in this order, each once
    assert tiktok(*replay).event_id == tiktok(*genuine).event_id  # the same delivery: kept once
    assert (refused(tiktok, *cross), refused(tiktok, *old)) == ("other_shop", "old")

    shopify = lambda body, headers: events.shopify_event(  # noqa: E731
        body, headers, SHOPIFY["client_secret"], SHOPIFY["shop_domain"]
    )
    genuine, replay, cross = by["shopify"]
    assert replay[1]["X-Shopify-Webhook-Id"] != genuine[1]["X-Shopify-Webhook-Id"]
    assert shopify(*replay).event_id == shopify(*genuine).event_id
    assert refused(shopify, *cross) == "other_shop"
    assert events.shopify_event(cross[0], cross[1], SHOPIFY["client_secret"]).order_ref != "6100000081"

    shipbob = lambda body, headers: events.shipbob_event(body, headers, SECRET, now)  # noqa: E731
    genuine, stale, replay, old = by["shipbob"]
    said = shipbob(*stale).payload["shipments"][0]["tracking"]["tracking_number"]  # validly signed ...
    assert said != "1Z12" and len(said) == len("1Z12")  # ... claiming tracking ShipBob does not show
    assert (refused(shipbob, *replay), refused(shipbob, *old)) == ("signature", "old")

    notes = [json.loads(m.body) for m in outbox._messages.values()]
    numbers = [n["Payload"]["FulfillmentOrderStatusNotification"]["FulfillmentShipment"] for n in notes]
    tracking = [s["FulfillmentShipmentPackages"][0]["TrackingNumber"] for s in numbers]
    assert tracking[0] == "1Z999AA10123456784" and tracking[1] != tracking[0]
    sent = {(e["fault"], e["platform"]): e["outcome"] for e in outbox.info()["faults"]["sent"]}
    assert sent[("stale", "amazon_mcf")] == "queued" and sent[("old", "tiktok")] == "delivered"


def test_an_unknown_fault_is_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown fault\\(s\\) late; known: stale, replay, cross_shop, old"):
        webhooks.fault_names(["stale", "late"])
    assert webhooks.fault_names(["old", "old"]) == ("old",)
