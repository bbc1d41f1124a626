"""Receiving platform events: the webhook endpoints (one per shop and platform) and the reader of
Amazon's notification queue. Both verify (include/events.py), keep what is new in the shop's inbox
and ring the shop's doorbell when something waits that starts a run.

The webhook app is plain FastAPI: the Airflow API server serves it (plugins/orderops_sla_plugin.py,
under /orderops-events) and the simulation serves it on its own. Platforms authenticate by
signature, not by an Airflow login. It answers 200 once the event is kept (a redelivery too), 401
for a signature that does not match, 400 naming what is wrong with a body it cannot read, 404 for
a shop or platform it does not serve.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from include import events
from include.events import BadEvent, EventInbox, Unverified

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShopSecrets:
    """What verifies one shop's deliveries (from its connections)."""

    tiktok_app_key: str | None = None
    tiktok_app_secret: str | None = None
    shopify_secret: str | None = None       # the app's client secret
    shipbob_secret: str | None = None       # the subscription's whsec_ secret
    amazon_seller_id: str | None = None     # notifications for another seller are refused


def read_delivery(platform: str, body: bytes, headers: dict, secrets: ShopSecrets,
                  now: datetime | None = None) -> events.PlatformEvent:
    """One webhook delivery, verified with the shop's secrets."""
    if platform == "tiktok":
        if not (secrets.tiktok_app_key and secrets.tiktok_app_secret):
            raise Unverified("tiktok: the shop's TikTok connection has no app key and secret to verify with")
        return events.tiktok_event(body, headers, secrets.tiktok_app_key, secrets.tiktok_app_secret)
    if platform == "shopify":
        if not secrets.shopify_secret:
            raise Unverified("shopify: the shop's Shopify connection has no extra.client_secret to verify with")
        return events.shopify_event(body, headers, secrets.shopify_secret)
    if platform == "shipbob":
        if not secrets.shipbob_secret:
            raise Unverified("shipbob: the shop's ShipBob connection has no extra.webhook_secret to verify with")
        return events.shipbob_event(body, headers, secrets.shipbob_secret, now)
    raise LookupError(platform)


def create_app(secrets_of: Callable[[str], ShopSecrets | None], inbox: EventInbox, redis_url: str | None = None,
               clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
    app = FastAPI(title="orderops platform events", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/{shop}/{platform}")
    async def receive(shop: str, platform: str, request: Request):
        secrets = secrets_of(shop)
        if secrets is None or platform not in ("tiktok", "shopify", "shipbob"):
            return JSONResponse({"error": f"no shop {shop!r} with platform {platform!r} here"}, status_code=404)
        body = await request.body()
        try:
            event = read_delivery(platform, body, dict(request.headers), secrets, clock())
        except Unverified as exc:
            log.warning("refused a %s delivery for shop %s: %s", platform, shop, exc)
            return JSONResponse({"error": str(exc)}, status_code=401)
        except BadEvent as exc:
            log.warning("could not read a %s delivery for shop %s: %s", platform, shop, exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        new = inbox.receive(shop, [event], clock())
        if new and event.wakes:
            events.ring(redis_url, shop)
        return {"received": event.event_id, "new": bool(new), "wakes": event.wakes}

    @app.get("/health")
    async def health():
        return {"ok": True}

    return app


class AmazonQueue:
    """The shop's FULFILLMENT_ORDER_STATUS queue (SQS JSON protocol): read, keep, then delete. A
    message deleted only after the inbox kept its event, so a crash between the two delivers it
    again (and the inbox recognises it)."""

    def __init__(self, queue_url: str, client: httpx.Client | None = None, seller_id: str | None = None):
        self.queue_url = queue_url
        self.seller_id = seller_id
        self.client = client or httpx.Client(timeout=30)
        self._endpoint = queue_url.rsplit("/", 1)[0] + "/"

    def _call(self, action: str, body: dict) -> dict:
        response = self.client.post(self._endpoint, content=json.dumps({"QueueUrl": self.queue_url, **body}),
                                    headers={"X-Amz-Target": f"AmazonSQS.{action}",
                                             "Content-Type": "application/x-amz-json-1.0"})
        if response.status_code != 200:
            raise RuntimeError(f"amazon notification queue: {action} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def drain(self, shop: str, inbox: EventInbox, redis_url: str | None = None, wait_seconds: int = 0,
              received_at: datetime | None = None) -> int:
        """Read every message waiting (long-polling `wait_seconds` for the first); returns the new
        events kept. A message that is not a notification orderops reads is logged and deleted (it
        would come back forever)."""
        new = 0
        while True:
            messages = self._call("ReceiveMessage", {"MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_seconds,
                                                     "VisibilityTimeout": 60}).get("Messages") or []
            if not messages:
                return new
            wait_seconds = 0
            read = []
            for message in messages:
                try:
                    read.append(events.amazon_event(message.get("Body") or "", self.seller_id))
                except BadEvent as exc:
                    log.warning("amazon notification %s dropped: %s", message.get("MessageId"), exc)
            added = inbox.receive(shop, read, received_at)
            new += added
            for message in messages:
                self._call("DeleteMessage", {"ReceiptHandle": message["ReceiptHandle"]})
            if added and any(e.wakes for e in read):
                events.ring(redis_url, shop)
