"""Receiving platform events: the webhook endpoints (one per shop and platform) and the reader of
Amazon's notification queue. Both verify (include/events/platform_events.py), keep what is new in the shop's inbox
and ring the shop's doorbell when something waits that starts a run.

The webhook app is plain FastAPI: the Airflow API server serves it (plugins/orderops_sla_plugin.py,
under /orderops-events) and the simulation serves it on its own. Platforms authenticate by
signature, not by an Airflow login. It answers 200 once the event is kept (a redelivery too), 401
for a signature that does not match (or a delivery too old, or for another shop), 400 naming what
is wrong with a body it cannot read, 404 for a shop or platform it does not serve, 413 a body bigger
than any delivery, 429 with Retry-After past the shop's budget of deliveries a second (the platform
retries). It counts what it kept nothing of, by reason (`app.state.refused`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from include.events import platform_events as events
from include.events.platform_events import BadEvent, EventInbox, Unverified
from include.run.shops import ShopEvents
from orderops_provider.base import http_client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShopSecrets:
    """What verifies one shop's deliveries (from its connections)."""

    tiktok_app_key: str | None = None
    tiktok_app_secret: str | None = None
    shopify_secret: str | None = None  # the app's client secret
    shipbob_secret: str | None = None  # the subscription's whsec_ secret
    amazon_seller_id: str | None = None  # notifications for another seller are refused
    tiktok_shop_id: str | None = None  # the shop's id at TikTok (connection extra shop_id): others refused
    shopify_shop_domain: str | None = None  # the shop's myshopify.com domain: deliveries for others refused


def shop_secrets(shop) -> ShopSecrets | None:
    """A shop's verifying secrets from its connections (None: the shop takes no events)."""
    from orderops_provider.hooks import read_connection

    if shop is None or shop.events is None:
        return None
    c = shop.connections
    tiktok = read_connection(c.tiktok)
    shopify = read_connection(c.shopify, ("client_secret",))
    shipbob = read_connection(c.shipbob, ("webhook_secret",))
    amazon = read_connection(c.amazon_mcf)
    return ShopSecrets(
        tiktok.login,
        tiktok.password,
        shopify.extra.get("client_secret"),
        shipbob.extra.get("webhook_secret"),
        amazon.extra.get("seller_id"),
        tiktok_shop_id=str(tiktok.extra["shop_id"]) if tiktok.extra.get("shop_id") else None,
        shopify_shop_domain=shopify_domain(shopify.extra.get("shop_domain"), shopify.base_url),
    )


def shopify_domain(named: Any, base_url: str) -> str | None:
    """The shop's myshopify.com domain: the Shopify connection's extra.shop_domain, else its host
    when that is one (None: unknown, so a delivery's shop is not checked)."""
    if isinstance(named, str) and named.strip():
        return named.strip().lower()
    host = urlsplit(base_url if "://" in base_url else f"https://{base_url}").hostname or ""
    return host.lower() if host.lower().endswith(".myshopify.com") else None


def read_delivery(
    platform: str, body: bytes, headers: dict, secrets: ShopSecrets, now: datetime | None = None
) -> events.PlatformEvent:
    """One webhook delivery, verified with the shop's secrets."""
    if platform == "tiktok":
        if not (secrets.tiktok_app_key and secrets.tiktok_app_secret):
            raise Unverified("tiktok: the shop's TikTok connection has no app key and secret to verify with")
        return events.tiktok_event(
            body, headers, secrets.tiktok_app_key, secrets.tiktok_app_secret, now, secrets.tiktok_shop_id
        )
    if platform == "shopify":
        if not secrets.shopify_secret:
            raise Unverified("shopify: the shop's Shopify connection has no extra.client_secret to verify with")
        return events.shopify_event(body, headers, secrets.shopify_secret, secrets.shopify_shop_domain)
    if platform == "shipbob":
        if not secrets.shipbob_secret:
            raise Unverified("shipbob: the shop's ShipBob connection has no extra.webhook_secret to verify with")
        return events.shipbob_event(body, headers, secrets.shipbob_secret, now)
    raise LookupError(platform)


class RateBound:
    """Each shop's budget of deliveries: a token bucket refilled at the shop's rate a second, holding
    at most two seconds of it (a burst). In one server process: an API server with several worker
    processes bounds each to the rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # shop -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, shop: str, per_second: float) -> float:
        """Take one delivery from the shop's budget: 0.0 when it is within, else the seconds until it would be."""
        burst = max(1.0, 2 * per_second)
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(shop, (burst, now))
            tokens = min(burst, tokens + (now - at) * per_second)
            if tokens >= 1:
                self._buckets[shop] = (tokens - 1, now)
                return 0.0
            self._buckets[shop] = (tokens, now)
            return (1 - tokens) / per_second


class KnownSecrets:
    """Each shop's secrets as last read, for up to `seconds`: reading them parses the shop's four
    connections (with a local connections file, every shop's: at 20 shops that was most of a
    delivery's 115 ms of the API server). A delivery whose signature does not match them is checked
    once more against a fresh read, unless they were read less than REREAD seconds ago (forged
    deliveries must not make every request a read), so a rotated secret verifies from its first
    delivery or the platform's retry of it; the old one still verifies for up to `seconds` after it
    was replaced (0: read on every delivery)."""

    REREAD = 5.0

    def __init__(
        self, read: Callable[[str], ShopSecrets | None], seconds: float, clock: Callable[[], float] = time.monotonic
    ):
        self.read, self.seconds, self.clock = read, seconds, clock
        self._known: dict[str, tuple[float, ShopSecrets | None]] = {}
        self._lock = threading.Lock()

    def get(self, shop: str, fresh: bool = False) -> tuple[ShopSecrets | None, bool]:
        """The shop's secrets, and whether they were read just now; `fresh`: read again unless read
        in the last REREAD seconds."""
        now = self.clock()
        with self._lock:
            known = self._known.get(shop)
        if known is not None and now - known[0] < (min(self.seconds, self.REREAD) if fresh else self.seconds):
            return known[1], False
        secrets = self.read(shop)
        with self._lock:
            self._known[shop] = (now, secrets)
        return secrets, True


def create_app(
    secrets_of: Callable[[str], ShopSecrets | None],
    inbox: EventInbox,
    doorbell: Callable[[str], Any] = lambda shop: None,
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    rate_of: Callable[[str], float] = lambda shop: ShopEvents.deliveries_per_second,
    bound: RateBound | None = None,
    secrets_seconds: float = 0.0,
    monotonic: Callable[[], float] = time.monotonic,
):
    """The webhook app. `rate_of(shop)`: the shop's budget of deliveries a second (the shops file's
    events.deliveries_per_second; its default where none is given); `secrets_seconds`: how long a
    shop's secrets read are used (KnownSecrets)."""
    app = FastAPI(title="orderops platform events", docs_url=None, redoc_url=None, openapi_url=None)
    bound = bound or RateBound()
    known = KnownSecrets(secrets_of, secrets_seconds, monotonic)
    # what the receiver kept nothing of, by reason: signature, old, other_shop (401), unreadable
    # (400), unknown_shop (404), too_big (413), rate (429) and duplicate (200: kept before)
    app.state.refused = Counter()
    counting = threading.Lock()

    def refuse(reason: str, status: int, message: str, headers: dict | None = None) -> JSONResponse:
        with counting:
            app.state.refused[reason] += 1
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def verified(shop: str, platform: str, secrets: ShopSecrets, fresh: bool, body: bytes, headers: dict):
        try:
            return read_delivery(platform, body, headers, secrets, clock())
        except Unverified as exc:
            if fresh or exc.reason != "signature":
                raise
            again, read = known.get(shop, fresh=True)  # a secret rotated since they were read
            if not read:
                raise
        if again is None:
            raise Unverified(f"{platform}: shop {shop!r} takes no events any more")
        return read_delivery(platform, body, headers, again, clock())

    def keep(shop: str, platform: str, secrets: ShopSecrets, fresh: bool, body: bytes, headers: dict) -> Any:
        """Verify, keep and ring: database and Redis work, run in a worker thread so the server's event
        loop (in production the Airflow API server's, beside the UI) keeps answering meanwhile."""
        try:
            event = verified(shop, platform, secrets, fresh, body, headers)
        except Unverified as exc:
            log.warning("refused a %s delivery for shop %s: %s", platform, shop, exc)
            return refuse(exc.reason, 401, str(exc))
        except BadEvent as exc:
            log.warning("could not read a %s delivery for shop %s: %s", platform, shop, exc)
            return refuse("unreadable", 400, str(exc))
        new = inbox.receive(shop, [event], clock())
        if not new:
            with counting:
                app.state.refused["duplicate"] += 1
        if new and event.wakes:
            bell = doorbell(shop)  # a Redis URL or client
            events.ring(bell if isinstance(bell, str) else None, shop, client=None if isinstance(bell, str) else bell)
        return {"received": event.event_id, "new": bool(new), "wakes": event.wakes}

    @app.post("/{shop}/{platform}")
    async def receive(shop: str, platform: str, request: Request):
        secrets, fresh = await run_in_threadpool(known.get, shop)  # may read the shop's connections
        if secrets is None or platform not in ("tiktok", "shopify", "shipbob"):
            return refuse("unknown_shop", 404, f"no shop {shop!r} with platform {platform!r} here")
        wait = bound.take(shop, rate_of(shop))
        if wait > 0:  # refused unread: the platform retries
            return refuse(
                "rate",
                429,
                f"shop {shop!r} is over its {rate_of(shop):g} deliveries a second: retry later",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        body = bytearray()
        async for chunk in request.stream():  # a body bigger than any delivery is refused unread
            body += chunk
            if len(body) > events.MAX_BODY:
                return refuse("too_big", 413, f"body over {events.MAX_BODY} bytes: not a {platform} delivery")
        return await run_in_threadpool(keep, shop, platform, secrets, fresh, bytes(body), dict(request.headers))

    @app.get("/health")
    async def health():
        return {"ok": True}

    return app


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_headers(
    method: str,
    url: str,
    body: bytes,
    headers: dict,
    key_id: str,
    secret: str,
    region: str,
    service: str,
    amz_date: str,
) -> dict:
    """AWS Signature Version 4 for one request (no query string): the headers to send with it."""
    parts = urlsplit(url)
    signed = {
        k.lower(): " ".join(str(v).split())
        for k, v in {**headers, "host": parts.netloc, "x-amz-date": amz_date}.items()
    }
    names = ";".join(sorted(signed))
    canonical = "\n".join(
        [
            method,
            parts.path or "/",
            "",
            "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
            names,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), amz_date[:8]), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        **headers,
        "X-Amz-Date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={names}, Signature={signature}",
    }


@dataclass(frozen=True)
class AwsCredentials:
    key_id: str
    secret: str
    region: str


class AmazonQueue:
    """The shop's FULFILLMENT_ORDER_STATUS queue (SQS JSON protocol, signed with AWS Signature V4
    when credentials are given): read, keep, then delete. A message is deleted only after the inbox
    kept its event, so a crash between the two delivers it again (and the inbox recognises it)."""

    def __init__(
        self,
        queue_url: str,
        client: httpx.Client | None = None,
        seller_id: str | None = None,
        credentials: AwsCredentials | None = None,
    ):
        self.queue_url = queue_url
        self.seller_id = seller_id
        self.credentials = credentials
        self.client = client or http_client(timeout=30)
        parts = urlsplit(queue_url)
        self._endpoint = f"{parts.scheme}://{parts.netloc}/"  # the JSON protocol posts to the host's root

    def _call(self, action: str, body: dict) -> dict:
        content = json.dumps({"QueueUrl": self.queue_url, **body}).encode()
        headers = {"X-Amz-Target": f"AmazonSQS.{action}", "Content-Type": "application/x-amz-json-1.0"}
        if self.credentials is not None:
            c = self.credentials
            headers = sigv4_headers(
                "POST",
                self._endpoint,
                content,
                headers,
                c.key_id,
                c.secret,
                c.region,
                "sqs",
                datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            )
        response = self.client.post(self._endpoint, content=content, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(
                f"amazon notification queue: {action} answered {response.status_code}: {response.text[:300]}"
            )
        return response.json()

    def drain(
        self,
        shop: str,
        inbox: EventInbox,
        redis_url: str | None = None,
        wait_seconds: int = 0,
        received_at: datetime | None = None,
    ) -> int:
        """Read every message waiting (long-polling `wait_seconds` for the first); returns how many
        new events that start a run it kept. A message that is not a notification orderops reads is
        logged and deleted (it would come back forever)."""
        new = 0
        while True:
            messages = (
                self._call(
                    "ReceiveMessage",
                    {"MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_seconds, "VisibilityTimeout": 60},
                ).get("Messages")
                or []
            )
            if not messages:
                return new
            wait_seconds = 0
            read = []
            for message in messages:
                try:
                    read.append(events.amazon_event(message.get("Body") or "", self.seller_id))
                except BadEvent as exc:
                    log.warning("amazon notification %s dropped: %s", message.get("MessageId"), exc)
            waking = sum(1 for e in inbox.receive(shop, read, received_at) if e.wakes)
            new += waking
            for message in messages:
                self._call("DeleteMessage", {"ReceiptHandle": message["ReceiptHandle"]})
            if waking:
                events.ring(redis_url, shop)
