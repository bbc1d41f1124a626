"""Platform events: signatures as each platform documents them, what each delivery says, and the
inbox (each event once, claimed by one run) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from include.events import platform_events as events
from include.events.platform_events import BadEvent, EventInbox, PlatformEvent, Unverified
from include.store.warehouse import Warehouse, platform_events
from tests.conftest import RINGING_SHOP
from tests.support import NOW


def test_tiktok_signature_matches_the_published_vector():
    # TikTok's webhook signature over app_key + body; the vector an open SDK tests against
    body = (
        b'{"type":1,"shop_id":"7494726673780148744","timestamp":1664095733,"data":{"order_id":'
        b'"576684019603311365","order_status":"AWAITING_SHIPMENT","update_time":1664095610}}'
    )
    assert (
        events.tiktok_signature("fake_app_key", "fake_app_secret", body)
        == "21109834de72ec53c9959716d8514ae388ce1f123e5ffdcafc46713fcdf62b27"
    )
    event = events.tiktok_event(
        body,
        {"authorization": events.tiktok_signature("fake_app_key", "fake_app_secret", body)},
        "fake_app_key",
        "fake_app_secret",
        now=datetime.fromtimestamp(1664095733, timezone.utc),  # received as it was sent
    )
    assert (event.platform, event.topic, event.order_ref, event.wakes) == (
        "tiktok",
        "ORDER_STATUS_CHANGE",
        "576684019603311365",
        False,
    )
    assert event.occurred_at == datetime.fromtimestamp(1664095610, timezone.utc)


def _tiktok(doc: dict, secret: str = "s3cret") -> tuple[bytes, dict]:
    body = json.dumps(doc).encode()
    return body, {"Authorization": events.tiktok_signature("key", secret, body)}


def test_a_buyer_cancellation_request_wakes_and_other_tiktok_events_do_not():
    body, headers = _tiktok(
        {
            "type": 11,
            "tts_notification_id": "N1",
            "shop_id": "1",
            "timestamp": int(NOW.timestamp()),
            "data": {
                "order_id": "576",
                "cancel_id": "C1",
                "cancellations_role": "BUYER",
                "cancel_status": "CANCELLATION_REQUEST_PENDING",
                "create_time": 1700000000,
            },
        }
    )
    event = events.tiktok_event(body, headers, "key", "s3cret", NOW)
    assert event.wakes and event.event_id == "N1" and event.topic == "CANCELLATION_STATUS_CHANGE"
    body, headers = _tiktok(
        {
            "type": 11,
            "tts_notification_id": "N2",
            "data": {"order_id": "576", "cancel_status": "CANCELLATION_REQUEST_COMPLETE", "create_time": 1700000000},
        }
    )
    assert not events.tiktok_event(body, headers, "key", "s3cret", NOW).wakes


@pytest.mark.parametrize("tamper", ["body", "secret", "missing"])
def test_a_tiktok_delivery_that_is_not_signed_by_the_app_is_refused(tamper):
    body, headers = _tiktok({"type": 1, "data": {"order_id": "576", "update_time": 1700000000}})
    if tamper == "body":
        body = body.replace(b"576", b"577")
    elif tamper == "secret":
        headers = {"Authorization": events.tiktok_signature("key", "other", body)}
    else:
        headers = {}
    with pytest.raises(Unverified, match="tiktok: the Authorization header"):
        events.tiktok_event(body, headers, "key", "s3cret", NOW)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "body is not JSON"),
        (b'{"type": "1", "data": {}}', "type must be an integer"),
        (b'{"type": 1, "data": []}', "data: expected an object"),
        (b'{"type": 1, "data": {"order_id": "1", "update_time": "yesterday"}}', "is not an ISO-8601 time"),
        (
            b'{"type": 1, "data": {"order_id": {"x": 1}, "update_time": 1700000000}}',
            "order_id must be a string or number",
        ),
    ],
)
def test_wrong_shaped_tiktok_deliveries_name_what_is_wrong(body, message):
    with pytest.raises(BadEvent, match=message):
        events.tiktok_event(body, {"Authorization": events.tiktok_signature("key", "s3cret", body)}, "key", "s3cret")


def _shipbob(doc: dict, secret: str, msg_id: str = "msg_1", at: datetime = NOW, topic: str = "order.shipped"):
    body = json.dumps(doc).encode()
    stamp = str(int(at.timestamp()))
    return body, {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "shipbob-topic": topic,
        "webhook-signature": "v1,bm90IGl0 " + events.standard_webhook_signature(secret, msg_id, stamp, body),
    }


def test_standard_webhooks_signature_matches_the_specifications_vector():
    assert (
        events.standard_webhook_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


SHIPBOB_SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY="[:32]


def test_shipbob_order_shipped_is_verified_as_standard_webhooks_and_wakes():
    body, headers = _shipbob(
        {
            "id": 9100001,
            "reference_id": "7100000001",
            "status": "Completed",
            "recipient": {"name": "A Buyer", "email": "a@b.c"},
        },
        SHIPBOB_SECRET,
    )
    event = events.shipbob_event(body, headers, SHIPBOB_SECRET, now=NOW + timedelta(seconds=30))
    assert (event.platform, event.topic, event.order_ref, event.wakes) == ("shipbob", "order.shipped", "9100001", True)
    assert "recipient" not in event.payload  # buyer data never reaches the warehouse


def test_shipbob_refuses_a_replay_and_a_wrong_signature():
    body, headers = _shipbob({"id": 1}, SHIPBOB_SECRET)
    with pytest.raises(Unverified, match="more than"):
        events.shipbob_event(body, headers, SHIPBOB_SECRET, now=NOW + timedelta(minutes=6))
    with pytest.raises(Unverified, match="no webhook-signature matches"):
        events.shipbob_event(body + b" ", headers, SHIPBOB_SECRET, now=NOW)
    with pytest.raises(Unverified, match="webhook-id and webhook-timestamp"):
        events.shipbob_event(body, {}, SHIPBOB_SECRET, now=NOW)


def test_shipbob_reads_the_signed_bodys_topic_never_the_header_against_it():
    """A signed shipment-cancel body with an `order.shipped` topic header is read as what it says."""
    doc = {"topic": "order.shipment.cancelled", "id": 55, "order_id": 9100001, "status": "Cancelled"}
    body, headers = _shipbob(doc, SHIPBOB_SECRET, topic="order.shipped")
    event = events.shipbob_event(body, headers, SHIPBOB_SECRET, now=NOW)
    assert (event.topic, event.order_ref) == ("order.shipment.cancelled", "9100001")
    # a body without a topic is read by the header, as documented
    body, headers = _shipbob({"id": 9100001}, SHIPBOB_SECRET, topic="order.shipped")
    assert events.shipbob_event(body, headers, SHIPBOB_SECRET, now=NOW).topic == "order.shipped"


def test_a_shopify_body_resent_with_new_unsigned_ids_is_one_delivery():
    body = json.dumps({"id": 7100000001, "updated_at": "2026-11-20T15:00:00Z"}).encode()
    ids = set()
    for n in range(3):
        headers = {
            "X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", body),
            "X-Shopify-Topic": "orders/updated",
            "X-Shopify-Webhook-Id": f"w{n}",
            "X-Shopify-Event-Id": f"e{n}",
            "X-Shopify-Triggered-At": f"2027-01-0{n + 1}T00:00:00Z",
        }
        event = events.shopify_event(body, headers, "shpss")
        ids.add(event.event_id)
        assert event.occurred_at == NOW  # the body's own time, not the unsigned header's
    assert len(ids) == 1
    changed = json.dumps({"id": 7100000001, "updated_at": "2026-11-20T15:01:00Z"}).encode()
    other = events.shopify_event(
        changed,
        {"X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", changed), "X-Shopify-Topic": "orders/updated"},
        "shpss",
    )
    assert other.event_id not in ids


def test_a_shopify_delivery_for_another_shop_of_the_same_app_is_refused():
    """One app (one client secret) serves several shops: the delivery's shop must be the URL's."""
    body = json.dumps({"id": 7100000001, "updated_at": "2026-11-20T15:00:00Z"}).encode()

    def headers(domain: str | None) -> dict:
        return {
            "X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", body),
            "X-Shopify-Topic": "orders/updated",
            **({"X-Shopify-Shop-Domain": domain} if domain else {}),
        }

    with pytest.raises(Unverified, match="for shop 'shop-b.myshopify.com' at the URL of shop shop-a") as refused:
        events.shopify_event(body, headers("shop-b.myshopify.com"), "shpss", "shop-a.myshopify.com")
    assert refused.value.reason == "other_shop"
    assert events.shopify_event(body, headers("Shop-A.myshopify.com"), "shpss", "shop-a.myshopify.com").order_ref
    # the URL's shop unknown (no domain on its connection): not checked
    assert events.shopify_event(body, headers("shop-b.myshopify.com"), "shpss").order_ref == "7100000001"
    # a body that names its shop (signed) is held to it, whatever the unsigned header says
    shop_body = json.dumps({"id": 1, "myshopify_domain": "shop-b.myshopify.com"}).encode()
    signed = {"X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", shop_body), "X-Shopify-Topic": "shop/update"}
    with pytest.raises(Unverified, match="shop-b.myshopify.com"):
        events.shopify_event(
            shop_body, {**signed, "X-Shopify-Shop-Domain": "shop-a.myshopify.com"}, "shpss", "shop-a.myshopify.com"
        )


def test_the_shops_shopify_domain_is_its_connections_extra_or_its_myshopify_host():
    from include.events.receiver import shopify_domain

    assert shopify_domain("Shop-A.myshopify.com ", "http://127.0.0.1:8001") == "shop-a.myshopify.com"
    assert shopify_domain(None, "https://shop-a.myshopify.com") == "shop-a.myshopify.com"
    assert shopify_domain(None, "shop-a.myshopify.com") == "shop-a.myshopify.com"
    assert shopify_domain("", "http://127.0.0.1:8001") is None  # unknown: deliveries' shops not checked


def test_shopify_fulfillment_with_tracking_wakes_and_an_order_update_does_not():
    body = json.dumps({"id": 55, "order_id": 7100000001, "tracking_number": "1Z999"}).encode()
    headers = {
        "X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", body),
        "X-Shopify-Topic": "fulfillments/create",
        "X-Shopify-Webhook-Id": "w1",
        "X-Shopify-Triggered-At": "2026-11-20T15:00:00Z",
    }
    event = events.shopify_event(body, headers, "shpss")
    assert (event.order_ref, event.wakes, event.occurred_at) == ("7100000001", True, NOW)
    body = json.dumps({"id": 7100000001, "updated_at": "2026-11-20T15:00:00-05:00"}).encode()
    headers = {
        "X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", body),
        "X-Shopify-Topic": "orders/updated",
        "X-Shopify-Webhook-Id": "w2",
    }
    event = events.shopify_event(body, headers, "shpss")
    assert (event.order_ref, event.wakes, event.occurred_at) == ("7100000001", False, NOW + timedelta(hours=5))
    with pytest.raises(Unverified):
        events.shopify_event(body, {**headers, "X-Shopify-Hmac-Sha256": "AAAA"}, "shpss")


def amazon_notification(
    sfo: str,
    status: str,
    event_type: str = "Order",
    shipment: dict | None = None,
    notification_id: str = "n-1",
    seller: str = "A3TH9S8BH6GOGM",
) -> str:
    body = {
        "SellerId": seller,
        "EventType": event_type,
        "StatusUpdatedDateTime": "2026-11-20T15:00:00Z",
        "SellerFulfillmentOrderId": sfo,
        "FulfillmentOrderStatus": status,
    }
    if shipment:
        body["FulfillmentShipment"] = shipment
    return json.dumps(
        {
            "NotificationVersion": "1.0",
            "NotificationType": "FULFILLMENT_ORDER_STATUS",
            "PayloadVersion": "1.0",
            "EventTime": "2026-11-20T15:00:01Z",
            "Payload": {"FulfillmentOrderStatusNotification": body},
            "NotificationMetadata": {
                "ApplicationId": "app",
                "SubscriptionId": "sub",
                "PublishTime": "2026-11-20T15:00:01Z",
                "NotificationId": notification_id,
            },
        }
    )


def test_amazon_shipment_notification_wakes_and_a_status_on_the_way_does_not():
    shipped = amazon_notification(
        "5001",
        "Processing",
        "Shipment",
        {
            "AmazonShipmentId": "S1",
            "FulfillmentShipmentStatus": "SHIPPED",
            "FulfillmentShipmentPackages": [{"PackageNumber": 1, "CarrierCode": "UPS", "TrackingNumber": "1Z1"}],
        },
    )
    event = events.amazon_event(shipped, seller_id="A3TH9S8BH6GOGM")
    assert (event.order_ref, event.wakes, event.topic) == ("5001", True, "FULFILLMENT_ORDER_STATUS/Shipment")
    assert not events.amazon_event(amazon_notification("5001", "Planning", notification_id="n-2")).wakes
    assert events.amazon_event(amazon_notification("5001", "Cancelled", notification_id="n-3")).wakes
    with pytest.raises(Unverified, match="not this shop's"):
        events.amazon_event(amazon_notification("5001", "Complete", seller="OTHER"), seller_id="A3TH9S8BH6GOGM")
    with pytest.raises(BadEvent, match="NotificationType"):
        events.amazon_event(json.dumps({"NotificationType": "ORDER_CHANGE"}))


def _event(n: int, wakes: bool = True, platform: str = "shipbob") -> PlatformEvent:
    return PlatformEvent(platform, f"e{n}", "order.shipped", str(9100000 + n), NOW, wakes, {"id": n})


def test_inbox_keeps_each_event_once_and_gives_it_to_one_run(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    inbox = EventInbox(wh)
    assert len(inbox.receive("shop-a", [_event(1), _event(2, wakes=False)], received_at=NOW)) == 2
    assert inbox.receive("shop-a", [_event(1), _event(3)], received_at=NOW + timedelta(seconds=5)) == [
        _event(3)
    ]  # e1 again
    assert len(inbox.receive("shop-b", [_event(1)], received_at=NOW)) == 1  # another shop
    assert inbox.first_waiting("shop-a") == NOW
    claimed = inbox.claim("shop-a", "run-1", up_to=NOW)
    assert sorted(e["event_id"] for e in claimed) == ["e1", "e2"]
    assert inbox.first_waiting("shop-a") == NOW + timedelta(seconds=5)
    assert [e["event_id"] for e in inbox.claim("shop-a", "run-2")] == ["e3"]
    assert inbox.claim("shop-a", "run-3") == [] and inbox.first_waiting("shop-a") is None
    # a redelivery of a claimed event stays claimed: it is not handled twice
    assert inbox.receive("shop-a", [_event(1)]) == [] and inbox.claim("shop-a", "run-4") == []
    # ShipBob's order.shipped carries the order: nothing to list; an exception names only a shipment
    assert events.sources_of(claimed) == ()
    assert events.sources_of(
        claimed + [{"platform": "shipbob", "topic": "order.shipment.cancelled", "order_ref": "1", "wakes": True}]
    ) == ("shipbob_orders",)
    # what wakes nothing is kept, not read: the scheduled listings bring it
    assert (
        events.sources_of([{"platform": "tiktok", "topic": "ORDER_STATUS_CHANGE", "order_ref": "5", "wakes": False}])
        == ()
    )
    wh.dispose()


def test_two_runs_claiming_at_once_split_the_events(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    inbox = EventInbox(wh)
    inbox.receive("shop-a", [_event(n) for n in range(200)])
    got: dict[str, list] = {}

    def claim(run: str) -> None:
        got[run] = [e["event_id"] for e in inbox.claim("shop-a", run)]

    threads = [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got["run-0"] + got["run-1"]) == sorted(f"e{n}" for n in range(200))
    wh.dispose()


def test_the_doorbell_rings_the_shops_channel_and_a_dead_redis_loses_nothing():
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    listener = client.pubsub()
    listener.subscribe(events.channel(RINGING_SHOP))
    listener.get_message(timeout=2)  # the subscription's own confirmation
    assert events.ring(None, RINGING_SHOP, client=client)
    message = listener.get_message(timeout=5)
    assert message and json.loads(message["data"])["shop"] == RINGING_SHOP
    listener.close()
    assert events.ring("redis://127.0.0.1:1/0", RINGING_SHOP) is False  # nothing listens there: no error


def test_a_doorbell_rings_only_its_own_redis_dbs_shop():
    """Pub/sub ignores db numbers: two deployments on one server (dbs 7 and 8) with a shop of the same
    name must not wake each other's shop."""
    import redis

    mine, theirs = (redis.Redis(host="127.0.0.1", port=6379, db=db) for db in (7, 8))
    listener = mine.pubsub()
    listener.subscribe(events.channel(RINGING_SHOP, 7))
    listener.get_message(timeout=2)
    assert events.ring(None, RINGING_SHOP, client=theirs)
    assert listener.get_message(timeout=1) is None
    assert events.ring("redis://127.0.0.1:6379/7", RINGING_SHOP)
    message = listener.get_message(timeout=5)
    assert message and json.loads(message["data"])["shop"] == RINGING_SHOP
    listener.close()


def test_few_amazon_orders_are_read_by_id_and_many_are_listed():
    few = [
        {"platform": "amazon_mcf", "topic": "FULFILLMENT_ORDER_STATUS/Shipment", "order_ref": str(n), "wakes": True}
        for n in range(events.AMAZON_READS_MOST)
    ]
    assert events.sources_of(few + few) == ()  # the same orders twice are still few
    moving = [{"platform": "amazon_mcf", "topic": "FULFILLMENT_ORDER_STATUS/Order", "order_ref": "y", "wakes": False}]
    assert events.sources_of(few + moving) == () and "y" not in events.amazon_reads(few + moving)
    many = few + [
        {"platform": "amazon_mcf", "topic": "FULFILLMENT_ORDER_STATUS/Order", "order_ref": "x", "wakes": True}
    ]
    assert events.sources_of(many) == ("amazon_fulfillment_orders",)
    tiktok = [{"platform": "tiktok", "topic": "CANCELLATION_STATUS_CHANGE", "order_ref": "576", "wakes": True}]
    assert events.sources_of(tiktok) == ("tiktok_cancellations", "tiktok_orders")


def test_sigv4_matches_the_aws_test_suite_vector():
    from include.events.receiver import sigv4_headers

    headers = sigv4_headers(
        "GET",
        "https://example.amazonaws.com/",
        b"",
        {},
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        "us-east-1",
        "service",
        "20150830T123600Z",
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_a_body_is_contradicted_by_tracking_the_read_lacks_or_the_newest_ones_other_status():
    read = ("Fulfilled", frozenset({"1Z1"}))
    before = ("e1", "Processing", frozenset())  # sent before the shipment: out of date, not contradicted
    shipped = ("e2", "Fulfilled", frozenset({"1Z1"}))
    forged = ("e3", "Fulfilled", frozenset({"1Z9"}))  # tracking the platform does not show
    assert events.contradicted([before, shipped], read) == []
    assert events.contradicted([before, shipped, forged], read) == ["e3"]
    assert events.contradicted([shipped, before], read) == ["e1"]  # the newest says another status
    assert events.contradicted([before, shipped], None) == ["e1", "e2"]  # the platform does not know the order


def test_an_amazon_notification_says_its_status_and_its_packages_tracking():
    from include.extract.amazon import _notified_as

    package = {"PackageNumber": 7, "CarrierCode": "UPS", "TrackingNumber": "1Z9"}
    shipped = json.loads(
        amazon_notification(
            "5001",
            "Complete",
            "Shipment",
            {
                "AmazonShipmentId": "S1",
                "FulfillmentShipmentStatus": "SHIPPED",
                "FulfillmentShipmentPackages": [package],
            },
        )
    )
    assert _notified_as(shipped) == ("Complete", frozenset({"1Z9"}))
    assert _notified_as(json.loads(amazon_notification("5001", "Cancelled"))) == ("Cancelled", frozenset())
    assert _notified_as({"Payload": "garbled"}) == (None, frozenset())


def test_a_tiktok_delivery_for_another_shop_of_the_same_app_is_refused():
    """One app (one secret) serves an agency's shops: the body's shop_id must be the URL's shop."""
    sent = int(NOW.timestamp())
    doc = {
        "type": 1,
        "tts_notification_id": "N-9",
        "shop_id": "7494000000000000002",
        "timestamp": sent,
        "data": {"order_id": "576", "order_status": "AWAITING_SHIPMENT", "update_time": sent},
    }
    body = json.dumps(doc).encode()
    headers = {"Authorization": events.tiktok_signature("key", "s3cret", body)}
    with pytest.raises(Unverified, match="for shop '7494000000000000002' at the URL of shop 7494000000000000001"):
        events.tiktok_event(body, headers, "key", "s3cret", NOW, shop_id="7494000000000000001")
    assert events.tiktok_event(body, headers, "key", "s3cret", NOW, shop_id="7494000000000000002").event_id == "N-9"
    # TikTok's own timestamp, three days and a second old, is past its retries
    with pytest.raises(Unverified, match="older than 3 days"):
        events.tiktok_event(body, headers, "key", "s3cret", NOW + timedelta(days=3, seconds=1))


def test_claimed_events_are_pruned_after_their_retention_and_nothing_waiting_ever_is(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    inbox = EventInbox(wh)
    old, recent = NOW - timedelta(days=31), NOW - timedelta(days=1)
    inbox.receive("shop-a", [_event(1), _event(2)], received_at=old)
    inbox.receive("shop-a", [_event(3)], received_at=recent)
    inbox.claim("shop-a", "run-1", up_to=old)  # e1, e2 claimed long ago
    inbox.claim("shop-a", "run-2")  # e3, this run's
    inbox.receive("shop-a", [_event(4)], received_at=old)  # old, yet no run has claimed it
    inbox.receive("shop-b", [_event(1)], received_at=old)
    inbox.claim("shop-b", "run-b")
    assert inbox.prune("shop-a", NOW - timedelta(days=30), running="run-2") == 2
    t = platform_events.c
    with wh.engine.connect() as conn:
        kept = {(r.shop, r.event_id) for r in conn.execute(sa.select(t.shop, t.event_id))}
    assert kept == {("shop-a", "e3"), ("shop-a", "e4"), ("shop-b", "e1")}
    # the running run's own events stay, however old
    assert inbox.prune("shop-b", NOW, running="run-b") == 0
    wh.dispose()
