"""Platform events: what TikTok, Shopify and ShipBob say by webhook, and Amazon by its notification
queue, verified as each platform documents, read into what changed, and kept in the inbox
(`platform_events`) for the shop's next run (docs/architecture.md §7).

An event never feeds a write by itself: it says which platform changed and which order, so that
an event-driven run lists that platform from its cursor (the same read a scheduled run makes) and
re-reads the TikTok order before acting. What an event carries is kept (buyer data removed) for
lineage. Events that start a run (`wakes`): a shipment at a fulfiller, a buyer's new cancellation
request, a fulfiller's cancellation (the saga's check). The others are kept and counted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from include.decide.model import as_utc
from include.store.warehouse import Warehouse, platform_events, utcnow

# The sources an event of each platform tells a run to list again (include/run/steps.py BATCHES).
SOURCES = {
    "tiktok": ("tiktok_orders", "tiktok_cancellations"),
    "shopify": ("shopify_orders",),
    "amazon_mcf": ("amazon_fulfillment_orders",),
    "shipbob": ("shipbob_orders",),
}
PLATFORMS = tuple(SOURCES)
# Standard Webhooks (ShipBob): a delivery older or newer than this is refused (replay protection).
TIMESTAMP_TOLERANCE = timedelta(minutes=5)
# How old a signed TikTok delivery (its body's `timestamp`) may be: TikTok's retry window, not a year.
# TikTok publishes none that orderops found: UNCERTAIN, chosen wide enough for its retries and a
# receiver that was down, short enough that a captured body cannot be replayed for long. ShipBob's
# signed timestamp has Standard Webhooks' 5 minutes. Shopify signs no time of the delivery itself
# (X-Shopify-Triggered-At is outside the HMAC; a body's `updated_at` is when the order changed, not
# when it was sent): no age is checked there, and a captured body re-sent is kept once by its digest.
MAX_AGE = {"tiktok": timedelta(days=3)}


def _fresh(platform: str, sent: datetime, now: datetime | None) -> None:
    age = (now or datetime.now(timezone.utc)) - sent
    if age > MAX_AGE[platform]:
        raise Unverified(
            f"{platform}: delivery from {sent:%Y-%m-%dT%H:%M:%SZ} is older than {MAX_AGE[platform]} (a replay?)",
            "old",
        )


MAX_BODY = 1_000_000  # bytes: a platform's delivery is a few KB; anything near this is not one


class BadEvent(ValueError):
    """A delivery that cannot be taken: the message names what was wrong."""


class Unverified(BadEvent):
    """Refused with 401, nothing kept: the signature does not match or is missing (`reason`
    "signature"), the signed time is past the platform's tolerance ("old"), or the delivery is for
    another shop than the URL's ("other_shop")."""

    def __init__(self, message: str, reason: str = "signature"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PlatformEvent:
    platform: str  # tiktok | shopify | shipbob | amazon_mcf
    event_id: str  # the platform's id of this event (a redelivery carries the same one)
    topic: str  # the platform's name for it
    order_ref: str | None  # the platform's own order id
    occurred_at: datetime  # when it happened, by the platform
    wakes: bool  # starts the shop's pipeline now
    payload: dict = field(default_factory=dict, compare=False)


# ---------------------------------------------------------------------------------- signatures
def tiktok_signature(app_key: str, app_secret: str, body: bytes) -> str:
    """TikTok's webhook signature: lowercase hex HMAC-SHA256 of app_key + the raw body."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def shopify_signature(secret: str, body: bytes) -> str:
    """Shopify's X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the raw body with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def standard_webhook_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks (ShipBob): 'v1,' + base64 HMAC-SHA256 of 'id.timestamp.body', keyed by
    the base64 part of a `whsec_` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get(name.lower())


def _same(given: str | None, wanted: str) -> bool:
    return given is not None and hmac.compare_digest(given.strip().encode(), wanted.encode())


# deeper than any platform's delivery: a body nested further is refused, not parsed to the end
MAX_DEPTH = 64


def _json(body: bytes, platform: str) -> Any:
    """The body's JSON, or BadEvent (answered 400, never 500) for one that cannot be kept: not JSON,
    nested past MAX_DEPTH, or holding text the warehouse cannot store (NUL, a lone surrogate)."""
    if len(body) > MAX_BODY:
        raise BadEvent(f"{platform}: body of {len(body)} bytes is over {MAX_BODY}")
    try:
        doc = json.loads(body)
    except RecursionError:
        raise BadEvent(f"{platform}: body is nested more than {MAX_DEPTH} deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent(f"{platform}: body is not JSON ({exc})") from None
    problem = _unstorable(doc)
    if problem:
        raise BadEvent(f"{platform}: body {problem}")
    return doc


def _unstorable(doc: Any) -> str | None:
    """Why the parsed body cannot be kept as it is, or None."""
    todo: list[tuple[Any, int]] = [(doc, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH:
            return f"is nested more than {MAX_DEPTH} deep"
        if isinstance(value, dict):
            todo += [(key, depth) for key in value] + [(item, depth + 1) for item in value.values()]
        elif isinstance(value, list):
            todo += [(item, depth + 1) for item in value]
        elif isinstance(value, str):
            if "\x00" in value:
                return "holds a NUL character"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "holds a lone surrogate (not UTF-8 text)"
    return None


def _time(value: Any, what: str) -> datetime:
    """Unix seconds or ISO-8601, as the platforms write them, read as staging reads times."""
    from include.extract.staging import BadRecord, iso_time, unix_time

    if isinstance(value, str) and value.isdigit():
        value = int(value)
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return unix_time({"time": value}, "time", what)
        if isinstance(value, str):
            return iso_time({"time": value}, "time", what)
    except BadRecord as exc:
        raise BadEvent(str(exc)) from None
    raise BadEvent(f"{what}: expected a time, got {value!r}")


# a required text is always there: None only when not required
@overload
def _text(obj: dict, key: str, what: str, required: Literal[True] = True) -> str: ...
@overload
def _text(obj: dict, key: str, what: str, required: bool) -> str | None: ...
def _text(obj: dict, key: str, what: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise BadEvent(f"{what}: {key} is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadEvent(f"{what}: {key} must be a string or number, got {type(value).__name__}")
    text = str(value)
    if len(text) > 128:
        raise BadEvent(f"{what}: {key} is {len(text)} characters long (at most 128)")
    return text


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadEvent(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _strip(payload: Any) -> Any:
    from include.extract.staging import strip_pii

    return strip_pii(payload)


# ---------------------------------------------------------------------------------- per platform
TIKTOK_TOPICS = {
    1: "ORDER_STATUS_CHANGE",
    2: "REVERSE_ORDER_STATUS_UPDATE",
    3: "RECIPIENT_ADDRESS_UPDATE",
    4: "PACKAGE_UPDATE",
    5: "PRODUCT_STATUS_CHANGE",
    6: "SELLER_DEAUTHORIZATION",
    7: "UPCOMING_AUTHORIZATION_EXPIRATION",
    11: "CANCELLATION_STATUS_CHANGE",
    12: "RETURN_STATUS_CHANGE",
}


def tiktok_event(
    body: bytes,
    headers: Mapping[str, str],
    app_key: str,
    app_secret: str,
    now: datetime | None = None,
    shop_id: str | None = None,
) -> PlatformEvent:
    """One TikTok Shop webhook delivery (header Authorization = its signature). One app serves many
    shops with one secret, so a delivery for another shop than `shop_id` (the URL's shop, when its
    connection names it) is refused, as is one older than TikTok's retries (its signed `timestamp`)."""
    if not _same(_header(headers, "Authorization"), tiktok_signature(app_key, app_secret, body)):
        raise Unverified("tiktok: the Authorization header is not the HMAC of app_key + body")
    doc = _object(_json(body, "tiktok"), "tiktok webhook")
    if shop_id and str(doc.get("shop_id")) != shop_id:
        raise Unverified(
            f"tiktok: a delivery for shop {doc.get('shop_id')!r} at the URL of shop {shop_id}", "other_shop"
        )
    if doc.get("timestamp") is not None:
        _fresh("tiktok", _time(doc.get("timestamp"), "tiktok webhook timestamp"), now)
    kind = doc.get("type")
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise BadEvent(f"tiktok webhook: type must be an integer, got {kind!r}")
    data = _object(doc.get("data"), "tiktok webhook data")
    topic = TIKTOK_TOPICS.get(kind, f"TYPE_{kind}")
    when = _time(data.get("update_time") or data.get("create_time") or doc.get("timestamp"), "tiktok webhook time")
    # a delivery without TikTok's notification id (older apps) is known by what it says
    event_id = (
        _text(doc, "tts_notification_id", "tiktok webhook", required=False) or hashlib.sha256(body).hexdigest()[:40]
    )
    wakes = kind == 11 and data.get("cancel_status") == "CANCELLATION_REQUEST_PENDING"
    return PlatformEvent(
        "tiktok",
        event_id,
        topic,
        _text(data, "order_id", "tiktok webhook data", required=False),
        when,
        wakes,
        _strip(doc),
    )


# Shopify topics that carry an order (orders/*) or a fulfillment with its tracking.
SHOPIFY_WAKING = ("fulfillments/create", "fulfillments/update")


def shopify_event(
    body: bytes, headers: Mapping[str, str], secret: str, shop_domain: str | None = None
) -> PlatformEvent:
    """One Shopify webhook delivery (X-Shopify-Hmac-Sha256 over the body, -Topic). Shopify signs the
    body only: a delivery is known by a digest of its body, so a captured body re-sent with new
    X-Shopify-Webhook-Id or -Event-Id headers is the same delivery, kept once; its time is the body's
    own (`updated_at`) where it has one. One app (one secret) may serve several shops: with the URL's
    shop's `shop_domain` known, a delivery whose X-Shopify-Shop-Domain names another shop, or whose
    body does (a shop's `myshopify_domain` or `shop_domain`), is refused."""
    if not _same(_header(headers, "X-Shopify-Hmac-Sha256"), shopify_signature(secret, body)):
        raise Unverified("shopify: X-Shopify-Hmac-Sha256 is not the HMAC of the body")
    topic = _header(headers, "X-Shopify-Topic")
    if not topic:
        raise BadEvent("shopify: X-Shopify-Topic is required")
    event_id = "sha256:" + hashlib.sha256(body).hexdigest()
    doc = _object(_json(body, "shopify"), "shopify webhook")
    if shop_domain:
        named = [_header(headers, "X-Shopify-Shop-Domain"), doc.get("myshopify_domain"), doc.get("shop_domain")]
        other = next((n for n in named if n is not None and str(n).strip().lower() != shop_domain.lower()), None)
        if other is not None:
            raise Unverified(
                f"shopify: a delivery for shop {str(other)[:100]!r} at the URL of shop {shop_domain}", "other_shop"
            )
    order = doc.get("order_id") if topic.startswith("fulfillments/") else doc.get("id")
    when = _time(
        doc.get("updated_at") or doc.get("created_at") or _header(headers, "X-Shopify-Triggered-At"),
        "shopify webhook time",
    )
    has_tracking = bool(doc.get("tracking_number") or doc.get("tracking_numbers"))
    return PlatformEvent(
        "shopify",
        event_id[:128],
        topic[:64],
        None if order is None else _text({"o": order}, "o", "shopify order id"),
        when,
        topic in SHOPIFY_WAKING and has_tracking,
        _strip(doc),
    )


SHIPBOB_WAKING = ("order.shipped", "order_shipped", "order.shipment.cancelled", "shipment_cancelled")


def shipbob_event(body: bytes, headers: Mapping[str, str], secret: str, now: datetime | None = None) -> PlatformEvent:
    """One ShipBob webhook delivery, signed as Standard Webhooks (webhook-id, -timestamp,
    -signature: one or more space-separated 'v1,<base64>'). The topic is the signed body's `topic`
    when it has one, whatever a header says; only a body without one is read by the topic header
    (UNCERTAIN name: shipbob-topic or x-webhook-topic, both read), which the signature does not cover."""
    msg_id, stamp = _header(headers, "webhook-id"), _header(headers, "webhook-timestamp")
    if not msg_id or not stamp:
        raise Unverified("shipbob: webhook-id and webhook-timestamp headers are required")
    wanted = standard_webhook_signature(secret, msg_id, stamp, body)
    given = (_header(headers, "webhook-signature") or "").split()
    if not any(_same(s, wanted) for s in given):
        raise Unverified("shipbob: no webhook-signature matches the HMAC of id.timestamp.body")
    sent = _time(stamp, "shipbob webhook-timestamp")
    if abs((now or datetime.now(timezone.utc)) - sent) > TIMESTAMP_TOLERANCE:
        raise Unverified(
            f"shipbob: webhook-timestamp {stamp} is more than {TIMESTAMP_TOLERANCE} from now (a replay?)", "old"
        )
    doc = _object(_json(body, "shipbob"), "shipbob webhook")
    topic = doc.get("topic") or _header(headers, "shipbob-topic") or _header(headers, "x-webhook-topic")
    if not isinstance(topic, str) or not topic:
        raise BadEvent("shipbob: no topic (shipbob-topic header or the body's topic)")
    # order.* topics carry the order (its id); shipment ones the shipment (its order_id)
    order = doc.get("order_id") if "shipment" in topic and doc.get("order_id") is not None else doc.get("id")
    return PlatformEvent(
        "shipbob",
        msg_id[:128],
        topic[:64],
        None if order is None else _text({"o": order}, "o", "shipbob order id"),
        sent,
        topic in SHIPBOB_WAKING,
        _strip(doc),
    )


AMAZON_WAKING_STATUSES = ("Complete", "CompletePartialled", "Cancelled", "Unfulfillable")


def amazon_event(message_body: str | bytes, seller_id: str | None = None) -> PlatformEvent:
    """One FULFILLMENT_ORDER_STATUS notification from the shop's queue (its message body). A queue
    has no per-message signature (reading it needs the queue's credentials); a notification for
    another seller than the connection's (when it names one) is refused."""
    raw = message_body.encode() if isinstance(message_body, str) else message_body
    doc = _object(_json(raw, "amazon_mcf"), "amazon notification")
    if doc.get("NotificationType") != "FULFILLMENT_ORDER_STATUS":
        raise BadEvent(
            f"amazon notification: NotificationType {doc.get('NotificationType')!r} is not FULFILLMENT_ORDER_STATUS"
        )
    meta = _object(doc.get("NotificationMetadata"), "amazon notification NotificationMetadata")
    body = _object(
        _object(doc.get("Payload"), "amazon notification Payload").get("FulfillmentOrderStatusNotification"),
        "amazon notification FulfillmentOrderStatusNotification",
    )
    if seller_id and body.get("SellerId") not in (None, seller_id):
        raise Unverified(f"amazon notification: for seller {body.get('SellerId')!r}, not this shop's", "other_shop")
    status = body.get("FulfillmentOrderStatus")
    shipment = body.get("FulfillmentShipment")
    shipped = (
        body.get("EventType") == "Shipment"
        and isinstance(shipment, dict)
        and shipment.get("FulfillmentShipmentStatus") == "SHIPPED"
    )
    return PlatformEvent(
        "amazon_mcf",
        _text(meta, "NotificationId", "amazon notification metadata"),
        f"FULFILLMENT_ORDER_STATUS/{body.get('EventType')}",
        _text(body, "SellerFulfillmentOrderId", "amazon notification"),
        _time(body.get("StatusUpdatedDateTime") or doc.get("EventTime"), "amazon notification time"),
        shipped or status in AMAZON_WAKING_STATUSES,
        _strip(doc),
    )


# ---------------------------------------------------------------------------------- the inbox
class EventInbox:
    """The shop's received events: each kept once (a redelivery is recognised by its id), claimed
    by the run that handles it."""

    def __init__(self, wh: Warehouse):
        self.wh = wh

    def receive(
        self, shop: str, events: list[PlatformEvent], received_at: datetime | None = None
    ) -> list[PlatformEvent]:
        """Keep the events not seen before; returns those."""
        if not events:
            return []
        at = received_at or utcnow()
        t = platform_events.c
        with self.wh.engine.begin() as conn:
            known = {
                (p, e)
                for p, e in conn.execute(
                    sa.select(t.platform, t.event_id).where(
                        t.shop == shop, t.event_id.in_(sorted({e.event_id for e in events}))
                    )
                )
            }
            fresh = {(e.platform, e.event_id): e for e in events if (e.platform, e.event_id) not in known}
            if fresh:
                dialect = postgresql if self.wh.dialect == "postgresql" else sqlite
                # a redelivery racing its first copy: the first one stands (with its claim)
                conn.execute(
                    dialect.insert(platform_events).on_conflict_do_nothing(),
                    [
                        dict(
                            shop=shop,
                            platform=e.platform,
                            event_id=e.event_id,
                            topic=e.topic,
                            order_ref=e.order_ref,
                            occurred_at=e.occurred_at,
                            received_at=at,
                            wakes=e.wakes,
                            payload=e.payload,
                            run_id=None,
                        )
                        for e in fresh.values()
                    ],
                )
        return list(fresh.values())

    def first_waiting(self, shop: str) -> datetime | None:
        """When the oldest waking event no run has claimed yet arrived (None: none waits)."""
        t = platform_events.c
        with self.wh.engine.connect() as conn:
            return as_utc(
                conn.execute(
                    sa.select(sa.func.min(t.received_at)).where(t.shop == shop, t.run_id.is_(None), t.wakes.is_(True))
                ).scalar()
            )

    def claim(self, shop: str, run_id: str, up_to: datetime | None = None) -> list[dict]:
        """Give this run every event not claimed yet (received up to `up_to`); two runs never get
        the same event."""
        t = platform_events.c
        where = [t.shop == shop, t.run_id.is_(None)]
        if up_to is not None:
            where.append(t.received_at <= up_to)
        with self.wh.engine.begin() as conn:
            conn.execute(platform_events.update().where(*where).values(run_id=run_id))
            return [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(
                        t.platform, t.event_id, t.topic, t.order_ref, t.occurred_at, t.received_at, t.wakes
                    ).where(t.shop == shop, t.run_id == run_id)
                )
            ]

    def prune(self, shop: str, before: datetime, running: str) -> int:
        """Delete the shop's events received before `before` that an earlier run claimed (never one
        no run has claimed, nor the `running` run's); returns how many."""
        t = platform_events.c
        with self.wh.engine.begin() as conn:
            return conn.execute(
                platform_events.delete().where(
                    t.shop == shop, t.run_id.is_not(None), t.run_id != running, t.received_at < before
                )
            ).rowcount

    def followed(self, shop: str, platform: str, refs: Iterable[str], run_id: str) -> set[str]:
        """Of these orders, those the platform's notifications reach the inbox for, none of whose
        waking ones waits or is this run's: what changes next on them will be announced, and
        nothing announced is left to read."""
        refs = sorted(set(refs))
        if not refs:
            return set()
        t = platform_events.c
        with self.wh.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.order_ref, t.wakes, t.run_id).where(
                    t.shop == shop, t.platform == platform, t.order_ref.in_(refs)
                )
            ).all()
        pending = {ref for ref, wakes, claimant in rows if wakes and claimant in (None, run_id)}
        return {ref for ref, _, _ in rows} - pending

    def contradict(self, shop: str, run_id: str, platform: str, event_ids: Iterable[str]) -> int:
        """Mark these events of the run's as contradicted by the platform's own read (counted in the
        run's summary); returns how many."""
        ids = sorted(set(event_ids))
        if not ids:
            return 0
        t = platform_events.c
        with self.wh.engine.begin() as conn:
            return conn.execute(
                platform_events.update()
                .where(t.shop == shop, t.run_id == run_id, t.platform == platform, t.event_id.in_(ids))
                .values(contradicted=True)
            ).rowcount

    def claimed(self, shop: str, run_id: str, platform: str) -> list[dict]:
        """What a run claimed of one platform, with what each event carried."""
        t = platform_events.c
        with self.wh.engine.connect() as conn:
            return [
                dict(r._mapping)
                for r in conn.execute(
                    sa.select(t.event_id, t.topic, t.order_ref, t.payload, t.wakes)
                    .where(t.shop == shop, t.run_id == run_id, t.platform == platform)
                    .order_by(t.occurred_at)
                )
            ]


# ShipBob topics whose body is the order itself (the same view GET /order/{id} answers)
SHIPBOB_ORDER_TOPICS = ("order.shipped", "order_shipped")
# Above this many Amazon orders named by events, a run lists from the cursor instead of one read each
AMAZON_READS_MOST = 5


# what a body or a read says of an order: its status, its tracking numbers
Shipping = tuple[str | None, frozenset[str]]


def contradicted(bodies: list[tuple[str, str | None, frozenset[str]]], read: Shipping | None) -> list[str]:
    """Of one order's event bodies (event id, the status it says, the tracking numbers it says;
    oldest first), those the platform's own read (its status and tracking numbers; None: it does not
    know the order) contradicts: a body naming tracking the read does not show, or the newest body
    naming another status than the read's (an older one may be merely out of date, when a newer
    body says the read's status)."""
    if read is None:
        return [event_id for event_id, _, _ in bodies]
    status, tracking = read
    return [
        event_id
        for i, (event_id, said_status, said_tracking) in enumerate(bodies)
        if not said_tracking <= tracking or (i == len(bodies) - 1 and said_status != status)
    ]


def amazon_reads(claimed: list[dict]) -> list[str]:
    """The Amazon orders an event-driven run reads by id: those its waking notifications name."""
    return sorted({e["order_ref"] for e in claimed if e["platform"] == "amazon_mcf" and e["wakes"] and e["order_ref"]})


def sources_of(claimed: list[dict]) -> tuple[str, ...]:
    """The listings an event-driven run makes: the platforms its waking events came from, except where
    those events name few enough orders to read by id (Amazon) or carry the order itself (ShipBob).
    Events that wake nothing (an order moving along) are kept, and left to the scheduled listings."""
    waking = [e for e in claimed if e["wakes"]]
    sources: set[str] = set()
    for platform in {e["platform"] for e in waking}:
        mine = [e for e in waking if e["platform"] == platform]
        if platform == "shipbob" and all(e["topic"] in SHIPBOB_ORDER_TOPICS for e in mine):
            continue
        if platform == "amazon_mcf" and len(amazon_reads(mine)) <= AMAZON_READS_MOST:
            continue
        sources.update(SOURCES.get(platform, ()))
    return tuple(sorted(sources))


# ---------------------------------------------------------------------------------- the doorbell
def channel(shop: str, db: int = 0) -> str:
    """The Redis pub/sub channel an event for `shop` rings (the DAG's AssetWatcher listens). Pub/sub
    ignores Redis's db numbers: the db is in the name, so deployments sharing a server (each on its own
    db) do not ring each other's same-named shops."""
    return f"orderops.events.{db}.{shop}"


def ring(redis_url: str | None, shop: str, client: Any = None) -> bool:
    """Tell the shop's AssetWatcher that events wait. A ring lost (Redis down, no listener) loses
    nothing: the events are in the inbox and the next ring or scheduled run takes them."""
    if client is None and not redis_url:
        return False
    try:
        if client is None and redis_url:
            import redis

            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        pool = getattr(client, "connection_pool", None)  # a cluster client has none: cluster mode is db 0
        db = int(pool.connection_kwargs.get("db") or 0) if pool is not None else 0
        client.publish(channel(shop, db), json.dumps({"shop": shop, "at": time.time()}))
        return True
    except Exception:  # noqa: BLE001 - the doorbell is best effort by design (see above)
        return False
