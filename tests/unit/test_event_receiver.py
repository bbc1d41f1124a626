"""The webhook endpoints: what they keep, what they refuse and why, and the doorbell they ring."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from include.events import platform_events as events
from include.events.platform_events import EventInbox
from include.events.receiver import RateBound, ShopSecrets, create_app
from include.store.warehouse import Warehouse
from tests.conftest import RINGING_SHOP
from tests.support import NOW

SECRETS = ShopSecrets(
    "key",
    "s3cret",
    "shpss",
    "whsec_" + "c2VjcmV0LWZvci1yZWNlaXZlci10ZXN0cw=="[:32],
    None,
    shopify_shop_domain="shop-a.myshopify.com",
)


def shopify_delivery(doc: dict, domain: str) -> tuple[bytes, dict]:
    body = json.dumps(doc).encode()
    return body, {
        "X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", body),
        "X-Shopify-Topic": "orders/updated",
        "X-Shopify-Shop-Domain": domain,
    }


@pytest.fixture
def receiver(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    inbox = EventInbox(wh)
    app = create_app(
        lambda shop: SECRETS if shop in ("shop-a", RINGING_SHOP) else None,
        inbox,
        doorbell=lambda shop: "redis://127.0.0.1:6379/0",
        clock=lambda: NOW,
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")
    yield client, inbox
    wh.dispose()


def tiktok_delivery(doc: dict) -> tuple[bytes, dict]:
    body = json.dumps(doc).encode()
    return body, {"Authorization": events.tiktok_signature("key", "s3cret", body)}


def signed(body: bytes) -> tuple[bytes, dict]:
    return body, {"Authorization": events.tiktok_signature("key", "s3cret", body)}


REQUEST = {
    "type": 11,
    "tts_notification_id": "N-1",
    "data": {
        "order_id": "576",
        "cancel_id": "C1",
        "cancel_status": "CANCELLATION_REQUEST_PENDING",
        "create_time": 1763650800,
    },
}


@pytest.mark.anyio
async def test_a_delivery_is_kept_once_and_rings_the_doorbell(receiver):
    client, inbox = receiver
    listener = redis.Redis(host="127.0.0.1", port=6379).pubsub()
    listener.subscribe(events.channel(RINGING_SHOP))
    listener.get_message(timeout=2)
    body, headers = tiktok_delivery(REQUEST)
    first = await client.post(f"/{RINGING_SHOP}/tiktok", content=body, headers=headers)
    again = await client.post(f"/{RINGING_SHOP}/tiktok", content=body, headers=headers)  # TikTok retries it
    assert first.status_code == again.status_code == 200
    assert (first.json()["new"], again.json()["new"], first.json()["wakes"]) == (True, False, True)
    assert [e["event_id"] for e in inbox.claim(RINGING_SHOP, "run-1")] == ["N-1"]
    rings = [listener.get_message(timeout=5), listener.get_message(timeout=1)]
    listener.close()
    assert rings[0] and json.loads(rings[0]["data"])["shop"] == RINGING_SHOP and rings[1] is None  # once


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path, body, headers, status, message",
    [
        ("/shop-a/tiktok", b'{"type": 1}', {"Authorization": "0" * 64}, 401, "Authorization header"),
        ("/shop-a/tiktok", *tiktok_delivery({"type": 1, "data": "x"}), 400, "data: expected an object"),
        ("/shop-b/tiktok", *tiktok_delivery(REQUEST), 404, "no shop 'shop-b'"),
        ("/shop-a/amazon_mcf", *tiktok_delivery(REQUEST), 404, "platform 'amazon_mcf'"),
        ("/shop-a/shipbob", b"{}", {}, 401, "webhook-id and webhook-timestamp"),
        ("/shop-a/shopify", b"x" * (events.MAX_BODY + 1), {}, 413, "body over"),
        # signed with the app's secret, for another shop the app serves
        (
            "/shop-a/shopify",
            *shopify_delivery({"id": 7100000001}, "shop-b.myshopify.com"),
            401,
            "for shop 'shop-b.myshopify.com' at the URL of shop shop-a.myshopify.com",
        ),
        # signed a year ago: a replay, not one of TikTok's retries
        ("/shop-a/tiktok", *tiktok_delivery({**REQUEST, "timestamp": 1732114800}), 401, "older than 3 days"),
        # signed, yet not storable: refused with 400 (a 500 would be retried by the platform for ever)
        ("/shop-a/tiktok", *signed(b'{"type": 1, "data": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400, "nested more"),
        ("/shop-a/tiktok", *signed(b'{"type": 1, "data": ' + b"[" * 70 + b"]" * 70 + b"}"), 400, "nested more than 64"),
        ("/shop-a/tiktok", *tiktok_delivery({**REQUEST, "tts_notification_id": "N\u0000"}), 400, "NUL character"),
        (
            "/shop-a/tiktok",
            *signed(b'{"type": 11, "tts_notification_id": "\\ud800", "data": {}}'),
            400,
            "lone surrogate",
        ),
    ],
)
async def test_what_cannot_be_taken_is_refused_naming_why_and_nothing_is_kept(
    receiver, path, body, headers, status, message
):
    client, inbox = receiver
    reply = await client.post(path, content=body, headers=headers)
    assert reply.status_code == status and message in reply.json()["error"]
    assert inbox.first_waiting("shop-a") is None and inbox.claim("shop-a", "run-1") == []


@pytest.mark.anyio
async def test_a_captured_shopify_body_resent_with_new_ids_is_kept_once(receiver):
    """Shopify signs the body only: new X-Shopify-Webhook-Id headers do not make a new delivery."""
    client, inbox = receiver
    body = json.dumps({"id": 7100000001, "updated_at": "2026-11-20T15:00:00Z"}).encode()
    answers = []
    for n in range(5):
        headers = {
            "X-Shopify-Hmac-Sha256": events.shopify_signature("shpss", body),
            "X-Shopify-Topic": "orders/updated",
            "X-Shopify-Webhook-Id": f"replayed-{n}",
        }
        answer = await client.post("/shop-a/shopify", content=body, headers=headers)
        answers.append((answer.status_code, answer.json()["new"]))
    assert answers == [(200, True)] + [(200, False)] * 4
    assert len(inbox.claim("shop-a", "run-1")) == 1


@pytest.mark.anyio
async def test_the_receiver_answers_health_while_a_delivery_is_being_kept(warehouse_url):
    """The warehouse work of a delivery runs off the event loop: while one is held inside the inbox,
    /health still answers (were it on the loop, nothing else could run until the inbox let go)."""
    import asyncio
    import threading

    wh = Warehouse(warehouse_url)
    wh.migrate()
    entered, release = threading.Event(), threading.Event()

    class SlowInbox(EventInbox):
        def receive(self, *args, **kwargs):
            entered.set()
            release.wait(30)
            return super().receive(*args, **kwargs)

    app = create_app(lambda shop: SECRETS if shop == "shop-a" else None, SlowInbox(wh), clock=lambda: NOW)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")
    body, headers = tiktok_delivery(REQUEST)
    delivery = asyncio.create_task(client.post("/shop-a/tiktok", content=body, headers=headers))
    try:
        while not entered.is_set():
            await asyncio.sleep(0.01)
        health = await asyncio.wait_for(client.get("/health"), timeout=20)
        assert health.json() == {"ok": True} and not delivery.done()
    finally:
        release.set()
    assert (await delivery).json()["new"] is True
    wh.dispose()


def test_a_shops_budget_refills_at_its_rate_and_holds_two_seconds_of_it():
    now = [0.0]
    bound = RateBound(clock=lambda: now[0])
    assert [bound.take("shop-a", 5) for _ in range(10)] == [0.0] * 10  # a burst: two seconds' worth
    assert bound.take("shop-a", 5) == pytest.approx(0.2)  # the next in a fifth of a second
    assert bound.take("shop-b", 5) == 0.0  # each shop its own
    now[0] = 0.2
    assert bound.take("shop-a", 5) == 0.0 and bound.take("shop-a", 5) > 0
    now[0] = 100.0  # a quiet while refills no more than the burst
    assert [bound.take("shop-a", 5) == 0.0 for _ in range(11)].count(True) == 10


@pytest.mark.anyio
async def test_deliveries_past_a_shops_budget_are_answered_429_with_retry_after_and_not_kept(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    inbox = EventInbox(wh)
    now = [0.0]
    app = create_app(
        lambda shop: SECRETS if shop in ("shop-a", "shop-c") else None,
        inbox,
        clock=lambda: NOW,
        rate_of=lambda shop: 0.5,  # a burst of one, then one every two seconds
        bound=RateBound(clock=lambda: now[0]),
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")
    answers = []
    for n in range(3):
        body, headers = tiktok_delivery({**REQUEST, "tts_notification_id": f"N-{n}"})
        answers.append(await client.post("/shop-a/tiktok", content=body, headers=headers))
    assert [a.status_code for a in answers] == [200, 429, 429]
    assert answers[1].headers["Retry-After"] == "2" and "over its 0.5 deliveries a second" in answers[1].json()["error"]
    other = await client.post("/shop-c/tiktok", content=body, headers=headers)  # another shop's budget
    now[0] = 2.0  # the platform retries later
    retried = await client.post("/shop-a/tiktok", content=body, headers=headers)
    assert other.status_code == retried.status_code == 200
    assert sorted(e["event_id"] for e in inbox.claim("shop-a", "run-1")) == ["N-0", "N-2"]  # none kept twice
    assert app.state.refused == {"rate": 2}
    wh.dispose()


@pytest.mark.anyio
async def test_a_shops_secrets_are_read_once_a_minute_and_again_when_a_signature_does_not_match(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    now, reads = [0.0], []
    current = {"secrets": SECRETS}

    def read(shop: str):
        reads.append(shop)
        return current["secrets"] if shop == "shop-a" else None

    app = create_app(read, EventInbox(wh), clock=lambda: NOW, secrets_seconds=60, monotonic=lambda: now[0])
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")

    async def deliver(n: int, key: str = "key", secret: str = "s3cret") -> int:
        body = json.dumps({**REQUEST, "tts_notification_id": f"N-{n}"}).encode()
        headers = {"Authorization": events.tiktok_signature(key, secret, body)}
        return (await client.post("/shop-a/tiktok", content=body, headers=headers)).status_code

    assert [await deliver(n) for n in range(5)] == [200] * 5
    assert reads == ["shop-a"]  # one read for five deliveries
    now[0] = 61.0
    assert await deliver(5) == 200 and reads == ["shop-a"] * 2  # read again after a minute
    # the app secret rotated: the first delivery signed with the new one reads again and is kept
    current["secrets"] = ShopSecrets("key", "n3w", SECRETS.shopify_secret, SECRETS.shipbob_secret, None)
    now[0] = 70.0
    assert await deliver(6, secret="n3w") == 200 and len(reads) == 3
    # forged deliveries are refused; they make a read at most every five seconds
    assert await deliver(7, secret="forged") == 401 and len(reads) == 3  # read a moment ago
    now[0] = 76.0
    assert await deliver(8, secret="forged") == 401 and len(reads) == 4
    assert await deliver(9, secret="forged") == 401 and len(reads) == 4
    assert app.state.refused == {"signature": 3}
    wh.dispose()


@pytest.mark.anyio
async def test_with_no_minutes_the_secrets_are_read_on_every_delivery(receiver, warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    reads = []
    app = create_app(lambda shop: reads.append(shop) or SECRETS, EventInbox(wh), clock=lambda: NOW)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")
    for n in range(3):
        body, headers = tiktok_delivery({**REQUEST, "tts_notification_id": f"R-{n}"})
        assert (await client.post("/shop-a/tiktok", content=body, headers=headers)).status_code == 200
    assert reads == ["shop-a"] * 3
    wh.dispose()
