"""What the platforms send on their own: webhooks and Amazon's notification queue.

A simulator calls `Outbox.emit` when its state changes (TikTok: an order's status, a cancellation
request; ShipBob: a shipment shipped, cancelled or in exception; Amazon MCF: a fulfillment order's
status or shipment). Each platform subscribed (admin `POST /_sandbox/webhooks`) gets the delivery
its platform documents: TikTok's `{type, tts_notification_id, shop_id, timestamp, data}` signed in
`Authorization` (HMAC of app_key + body), Shopify's topic body signed in X-Shopify-Hmac-Sha256,
ShipBob's order or shipment signed as Standard Webhooks, and Amazon's FULFILLMENT_ORDER_STATUS
notification as a message on the shop's queue (served by `queue_app`, the SQS JSON protocol:
ReceiveMessage, DeleteMessage; a message not deleted is delivered again after its visibility
timeout). Deliveries go out in order from one thread; a failed one is tried again (up to
RETRIES times), as the platforms retry. Signatures and the delivery timestamps are on the wall
clock (like request signing); the bodies carry the scenario's times.

Signatures are computed here independently of orderops's own verification, so a test of the one
is a test of the other.

Faults (admin `POST /_sandbox/webhooks/faults {"faults": [...]}`): what platforms, and whoever
captured a delivery, sometimes send, mixed into this stream. Each fault follows one in FAULT_EVERY
(4) of the deliveries it can follow, the first one included, and goes out right after it, once
(never retried):

- `stale`: a body that disagrees with the platform's current state: a ShipBob `order.shipped` or an
  Amazon Shipment notification claiming a tracking number the fulfiller does not show (validly
  signed; orderops keeps it, and the run it wakes must read the fulfiller and count it).
- `replay`: a captured TikTok, Shopify or ShipBob delivery re-sent with fresh unsigned headers (new
  Shopify webhook and event ids; a new ShipBob webhook-id and -timestamp under the old signature).
- `cross_shop`: a TikTok or Shopify delivery for another shop of the same app, signed with the
  app's secret (TikTok: the body's shop_id; Shopify: X-Shopify-Shop-Domain), about another order.
- `old`: a TikTok or ShipBob delivery signed with a time past the platform's tolerance (TikTok's
  body timestamp 4 days ago; ShipBob's webhook-timestamp an hour ago). Shopify signs no time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import queue
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orderops_provider.base import http_client

RETRIES = 5
RETRY_SECONDS = (0.2, 1.0, 5.0, 30.0, 120.0)  # wall seconds before each new attempt
VISIBILITY_SECONDS = 30.0
PLATFORMS = ("tiktok", "shopify", "shipbob", "amazon_mcf")
TIKTOK_TYPES = {"ORDER_STATUS_CHANGE": 1, "CANCELLATION_STATUS_CHANGE": 11}
FAULTS = ("stale", "replay", "cross_shop", "old")
FAULT_EVERY = 4  # a fault follows one in this many of the deliveries it can follow (the first included)
OTHER_TIKTOK_SHOP = "7494000000000099999"  # another shop of the same TikTok app
OTHER_SHOPIFY_SHOP = "orderops-other-shop.myshopify.com"  # another shop of the same Shopify app


def fault_names(faults) -> tuple[str, ...]:
    """The faults asked for, each known (a ValueError names an unknown one and the known ones)."""
    if not isinstance(faults, (list, tuple)) or not all(isinstance(f, str) for f in faults):
        raise ValueError(f"webhooks.faults: expected a list of fault names, got {faults!r:.80}")
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        raise ValueError(f"webhooks.faults: unknown fault(s) {', '.join(unknown)}; known: {', '.join(FAULTS)}")
    return tuple(dict.fromkeys(faults))


@dataclass
class Subscription:
    platform: str
    url: str | None  # None for Amazon: its notifications go to the queue
    secret: str | None = None  # ShipBob's whsec_ secret (the others sign with the app's credentials)
    topics: tuple[str, ...] = ()  # empty: every topic


@dataclass
class _Message:
    id: str
    body: str
    visible_at: float = 0.0
    receipt: str | None = None
    received: int = 0


@dataclass
class Outbox:
    sandbox: Any
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    sent: Counter = field(default_factory=Counter)  # (platform, outcome) -> deliveries
    log: deque = field(default_factory=lambda: deque(maxlen=500))

    def __post_init__(self):
        self.faults: tuple[str, ...] = ()
        self.faults_sent: Counter = Counter()  # (fault, platform, outcome) -> deliveries
        self._followable: Counter = Counter()  # fault -> deliveries it could have followed so far
        self._pending: queue.Queue = queue.Queue()
        self._busy = 0
        self._lock = threading.Condition()
        self._messages: dict[str, _Message] = {}  # Amazon's queue, in order
        self._seq = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._client = http_client(timeout=10)

    # ------------------------------------------------------------ subscriptions
    def subscribe(
        self, platform: str, url: str | None, secret: str | None = None, topics: tuple[str, ...] = ()
    ) -> Subscription:
        if platform not in PLATFORMS:
            raise ValueError(f"webhooks.platform: expected one of {', '.join(PLATFORMS)}, got {platform!r}")
        if platform != "amazon_mcf" and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ValueError(f"webhooks.url: expected an http(s) URL for {platform}, got {url!r}")
        if platform == "shipbob" and not (isinstance(secret, str) and secret.startswith("whsec_")):
            raise ValueError("webhooks.secret: ShipBob signs with a whsec_ secret; give one")
        sub = Subscription(platform, url, secret, tuple(topics))
        self.subscriptions[platform] = sub
        return sub

    def clear(self) -> None:
        self.flush(timeout=30)
        self.subscriptions.clear()
        self._messages.clear()
        self.sent.clear()
        self.log.clear()
        self.set_faults(())

    def set_faults(self, faults) -> None:
        self.faults = fault_names(faults)
        self.faults_sent.clear()
        self._followable.clear()

    # ------------------------------------------------------------ emitting
    def emit(self, platform: str, topic: str, doc: dict) -> None:
        """A platform's state changed: send what it sends for `topic`, if anyone subscribed."""
        sub = self.subscriptions.get(platform)
        if sub is None or (sub.topics and topic not in sub.topics):
            return
        if platform == "amazon_mcf":
            self._queue(doc)
            self.sent[(platform, "queued")] += 1
            if self._follows("stale", "Shipment" == topic and bool(_amazon_tracking(doc))):
                self._queue(_amazon_stale(doc))
                self.faults_sent[("stale", platform, "queued")] += 1
            return
        body, headers = getattr(self, f"_{platform}")(topic, doc, sub)
        self._send(platform, topic, sub.url, body, headers)
        for fault, delivery in self._faulty(platform, topic, doc, sub, body, headers):
            self._send(platform, topic, sub.url, *delivery, fault=fault)

    def _queue(self, body: dict) -> None:
        msg_id = str(uuid.uuid4())
        self._messages[msg_id] = _Message(msg_id, json.dumps(self._amazon(body)))

    def _send(self, platform: str, topic: str, url, body: bytes, headers: dict, fault: str | None = None) -> None:
        self._start()
        with self._lock:
            self._busy += 1
        self._pending.put((platform, topic, url, body, headers, 0, fault))

    def _follows(self, fault: str, can: bool) -> bool:
        """Whether `fault` follows this delivery: one in FAULT_EVERY of those it can follow."""
        if fault not in self.faults or not can:
            return False
        self._followable[fault] += 1
        return (self._followable[fault] - 1) % FAULT_EVERY == 0

    def _faulty(self, platform: str, topic: str, doc: dict, sub: Subscription, body: bytes, headers: dict):
        """The faults that follow this delivery: (fault, (body, headers)) each."""
        if self._follows("stale", platform == "shipbob" and topic == "order.shipped" and bool(_shipbob_tracking(doc))):
            yield "stale", self._shipbob(topic, _shipbob_stale(doc), sub)
        if self._follows("replay", True):
            fresh = dict(headers)
            if platform == "shopify":
                fresh.update({"X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-Event-Id": str(uuid.uuid4())})
            elif platform == "shipbob":  # the captured signature cannot be made anew without the secret
                fresh.update({"webhook-id": f"msg_{uuid.uuid4().hex}", "webhook-timestamp": str(int(time.time()))})
            fresh["X-Request-Id"] = str(uuid.uuid4())
            yield "replay", (body, fresh)
        if self._follows("cross_shop", platform in ("tiktok", "shopify")):
            if platform == "tiktok":
                yield "cross_shop", self._tiktok(topic, doc, sub, shop_id=OTHER_TIKTOK_SHOP)
            else:
                other_body, other_headers = self._shopify(topic, {**doc, "id": _other_order(doc.get("id"))}, sub)
                yield "cross_shop", (other_body, {**other_headers, "X-Shopify-Shop-Domain": OTHER_SHOPIFY_SHOP})
        if self._follows("old", platform in ("tiktok", "shipbob")):
            if platform == "tiktok":
                yield "old", self._tiktok(topic, doc, sub, sent=int(time.time()) - 4 * 86400)
            else:
                yield "old", self._shipbob(topic, doc, sub, sent=int(time.time()) - 3600)

    def _tiktok(
        self, topic: str, data: dict, sub: Subscription, shop_id: str | None = None, sent: int | None = None
    ) -> tuple[bytes, dict]:
        creds = self.sandbox.platforms["tiktok"].config
        body = json.dumps(
            {
                "type": TIKTOK_TYPES[topic],
                "tts_notification_id": f"{next(self._seq):019d}",
                "shop_id": shop_id or creds["shop_id"],
                "timestamp": int(time.time()) if sent is None else sent,
                "data": data,
            },
            separators=(",", ":"),
        ).encode()
        digest = hmac.new(creds["app_secret"].encode(), creds["app_key"].encode() + body, hashlib.sha256).hexdigest()
        return body, {"Authorization": digest, "Content-Type": "application/json"}

    def _shopify(self, topic: str, doc: dict, sub: Subscription) -> tuple[bytes, dict]:
        shopify = self.sandbox.platforms["shopify"]
        creds = shopify.config
        body = json.dumps(doc).encode()
        digest = base64.b64encode(hmac.new(creds["client_secret"].encode(), body, hashlib.sha256).digest()).decode()
        # subscriptions carry no version here: the oldest supported, where a retired one falls forward
        version = shopify.oldest_supported(shopify.now().date())
        return body, {
            "X-Shopify-Hmac-Sha256": digest,
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": creds["shop_domain"],
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-API-Version": version,
            "X-Shopify-Triggered-At": doc.get("updated_at") or "",
            "Content-Type": "application/json",
        }

    def _shipbob(self, topic: str, doc: dict, sub: Subscription, sent: int | None = None) -> tuple[bytes, dict]:
        body = json.dumps(doc).encode()
        msg_id, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()) if sent is None else sent)
        key = base64.b64decode(sub.secret.removeprefix("whsec_"))
        digest = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
        return body, {
            "webhook-id": msg_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{digest}",
            "shipbob-topic": topic,
            "Content-Type": "application/json",
        }

    def _amazon(self, body: dict) -> dict:
        now = self.sandbox.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "NotificationVersion": "1.0",
            "NotificationType": "FULFILLMENT_ORDER_STATUS",
            "PayloadVersion": "1.0",
            "EventTime": now,
            "Payload": {"FulfillmentOrderStatusNotification": body},
            "NotificationMetadata": {
                "ApplicationId": "amzn1.sp.solution.orderops-sandbox",
                "SubscriptionId": "orderops-sandbox-subscription",
                "PublishTime": now,
                "NotificationId": str(uuid.uuid4()),
            },
        }

    # ------------------------------------------------------------ delivering
    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._deliver_forever, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def _deliver_forever(self) -> None:
        while True:
            platform, topic, url, body, headers, attempt, fault = self._pending.get()
            outcome = "failed"
            try:
                status = self._client.post(url, content=body, headers=headers).status_code
                outcome = "delivered" if 200 <= status < 300 else f"http {status}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.log.append(
                {"platform": platform, "topic": topic, "attempt": attempt + 1, "outcome": outcome, "fault": fault}
            )
            if fault is None and outcome != "delivered" and attempt + 1 < RETRIES:
                self.sent[(platform, "retried")] += 1
                threading.Timer(
                    RETRY_SECONDS[attempt],
                    self._pending.put,
                    args=((platform, topic, url, body, headers, attempt + 1, None),),
                ).start()
                continue
            if fault is None:
                self.sent[(platform, outcome)] += 1
            else:  # a fault goes out once: what a platform or a replayer sends, not a retry
                self.faults_sent[(fault, platform, outcome)] += 1
            with self._lock:
                self._busy -= 1
                self._lock.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every delivery was answered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def info(self) -> dict:
        return {
            "subscriptions": [
                {"platform": s.platform, "url": s.url, "topics": list(s.topics)} for s in self.subscriptions.values()
            ],
            "sent": [{"platform": p, "outcome": o, "count": n} for (p, o), n in sorted(self.sent.items())],
            "faults": {
                "configured": list(self.faults),
                "every": FAULT_EVERY,
                "sent": [
                    {"fault": f, "platform": p, "outcome": o, "count": n}
                    for (f, p, o), n in sorted(self.faults_sent.items())
                ],
            },
            "queued_messages": len(self._messages),
            "recent": list(self.log)[-20:],
        }

    # ------------------------------------------------------------ Amazon's queue
    def receive(self, most: int, visibility: float) -> list[dict]:
        now = time.monotonic()
        out = []
        for message in self._messages.values():
            if len(out) >= most:
                break
            if message.visible_at <= now:
                message.visible_at = now + visibility
                message.receipt = f"{message.id}#{uuid.uuid4().hex}"
                message.received += 1
                out.append(
                    {
                        "MessageId": message.id,
                        "ReceiptHandle": message.receipt,
                        "MD5OfBody": hashlib.md5(message.body.encode()).hexdigest(),
                        "Body": message.body,
                    }
                )
        return out

    def delete(self, receipt: str) -> bool:
        message = self._messages.get(receipt.split("#", 1)[0])
        if message is None or message.receipt != receipt:
            return False
        del self._messages[message.id]
        self.sent[("amazon_mcf", "delivered")] += 1
        return True


def _shipbob_tracking(doc: dict) -> list[dict]:
    """The tracking objects of a ShipBob order's shipments."""
    return [s["tracking"] for s in doc.get("shipments") or [] if isinstance(s.get("tracking"), dict)]


def _shipbob_stale(doc: dict) -> dict:
    """The order as ShipBob does not show it: each shipment's tracking number another."""
    stale = json.loads(json.dumps(doc))
    for tracking in _shipbob_tracking(stale):
        tracking["tracking_number"] = _stale_number(tracking.get("tracking_number"))
    return stale


def _amazon_tracking(body: dict) -> list[dict]:
    shipment = body.get("FulfillmentShipment") or {}
    return [p for p in shipment.get("FulfillmentShipmentPackages") or [] if p.get("TrackingNumber")]


def _amazon_stale(body: dict) -> dict:
    """The notification as Amazon does not show it: each package's tracking number another."""
    stale = json.loads(json.dumps(body))
    for package in _amazon_tracking(stale):
        package["TrackingNumber"] = _stale_number(package["TrackingNumber"])
    return stale


def _stale_number(number) -> str:
    """A tracking number of the same shape the fulfiller never issued (its last digits changed)."""
    text = str(number or "1Z0000000000000000")
    return text[:-4] + "".join(str((int(c) + 5) % 10) if c.isdigit() else "9" for c in text[-4:])


def _other_order(order_id):
    return order_id + 1_000_000_000 if isinstance(order_id, int) else f"{order_id}-other"


QUEUE_NAME = "orderops-notifications"


def queue_app(outbox: Outbox) -> FastAPI:
    """Amazon SQS's JSON protocol for the shop's notification queue (ReceiveMessage, DeleteMessage,
    GetQueueUrl). Request signing (SigV4) is not checked: the sandbox has one queue and no AWS account."""
    app = FastAPI(title="Amazon SQS (sandbox)", docs_url=None, redoc_url=None, openapi_url=None)

    def error(code: str, message: str, status: int = 400) -> JSONResponse:
        return JSONResponse(
            {"__type": f"com.amazonaws.sqs#{code}", "message": message},
            status_code=status,
            media_type="application/x-amz-json-1.0",
        )

    @app.post("/")
    async def sqs(request: Request):
        target = request.headers.get("x-amz-target", "")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error("InvalidParameterValue", "the body is not JSON")
        if not isinstance(body, dict):
            return error("InvalidParameterValue", "the body must be an object")
        action = target.removeprefix("AmazonSQS.")
        if action == "GetQueueUrl":
            return JSONResponse({"QueueUrl": f"{request.base_url}{QUEUE_NAME}"})
        if not str(body.get("QueueUrl", "")).endswith(QUEUE_NAME):
            return error("QueueDoesNotExist", "The specified queue does not exist.")
        if action == "ReceiveMessage":
            most = body.get("MaxNumberOfMessages", 1)
            if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 10:
                return error(
                    "InvalidParameterValue",
                    "Value for parameter MaxNumberOfMessages is invalid. Reason: "
                    "Must be between 1 and 10, if provided.",
                )
            visibility = body.get("VisibilityTimeout", VISIBILITY_SECONDS)
            return JSONResponse(
                {"Messages": outbox.receive(most, float(visibility))}, media_type="application/x-amz-json-1.0"
            )
        if action == "DeleteMessage":
            if not outbox.delete(str(body.get("ReceiptHandle", ""))):
                return error("ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
            return JSONResponse({}, media_type="application/x-amz-json-1.0")
        return error("InvalidAction", f"The action {action or '(none)'} is not valid for this endpoint.")

    return app
