"""Shopify Admin GraphQL client and Airflow hook (docs/architecture.md §5).

Contract: Shopify's Admin GraphQL API documentation and schema (2025-01 onwards).

* Versions: `api_version` is the version asked for (default DEFAULT_VERSION). A version past its
  support falls forward on Shopify's side to the oldest supported one, and every answer names the
  version that served it (`X-Shopify-API-Version`). The client keeps the last one named as
  `served_version` and shapes version-dependent documents (orderCancel) from it; before any answer,
  from the version asked. See docs/api-versions.md.

* One endpoint: `POST {shop admin host}/admin/api/{api_version}/graphql.json`, header
  `X-Shopify-Access-Token`. The token is the connection password (a custom app's admin token);
  with `client_id` + `client_secret` in the extra, a new token is obtained through the
  client-credentials grant (`POST /admin/oauth/access_token`) when the platform refuses the old one
  (401) or when the granted token's `expires_in` has passed. Every token obtained is handed to
  `secret_sink` (the hook passes Airflow's `mask_secret`) before it is used.
* Cost-based throttling. Shopify meters points, not requests: a leaky bucket per app and shop
  (documented Standard plan: 2,000 points, restored at 100 points/s; one query may request at
  most 1,000). The client keeps one points bucket for all operations, takes each query's
  *requested* cost from it before sending, and resyncs it from `extensions.cost.throttleStatus`
  of every answer (level, size and restore rate), so it follows the shop's real plan and the
  refunds Shopify makes when the actual cost is below the requested one. A THROTTLED answer
  (HTTP 200, or 429) becomes ThrottledError with
  retry_after = (requestedQueryCost - currentlyAvailable) / restoreRate.
* Page size: `first` is the largest page (max 250) whose requested cost stays under 60 % of the
  single-query cap and of the bucket; the per-order cost is learned from `requestedQueryCost`.
* Calls are counted per root field (`orders`, `order`, `job`, `orderCancel`, `orderUpdate`,
  `tagsAdd`; `access_token` for the grant). `points` sums the actual cost per operation.
* `orderCancel` has no idempotency key and is never resent blindly (retry_safe=False). Shopify
  refuses a second cancel of an order (already cancelled, or a cancel job running), so
  `cancel_order_and_wait` resends only after reading that the order is still not cancelled.
* Note and tags writes set absolute or additive state computed from a read, so resending them
  changes nothing: they are retried like reads, and skipped when the order already has them.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PagingError,
    PlatformClient,
    PlatformError,
    RateLimiter,
    Reply,
    RetryableError,
    RetryPolicy,
    ThrottledError,
    TokenExpiredError,
    record_id,
)
from orderops_provider.connection import ConnectionSettings
from orderops_provider.tiktok_order_id import EXTRA_KEY, TikTokIdRules

log = logging.getLogger(__name__)

# Released 2026-07-01, supported at least until 2027-07-01 (shopify.dev/docs/api/usage/versioning).
DEFAULT_VERSION = "2026-07"
SUPPORT_MONTHS = 12  # each stable version, from its release
# From this version on orderCancel takes `refundMethod`; before it, `refund: Boolean!`.
REFUND_METHOD_SINCE = "2025-07"
MAX_PAGE_SIZE = 250
MAX_QUERY_COST = 1000  # documented single-query ceiling
DEFAULT_BUCKET = 2000.0  # Standard plan; resynced from every answer
DEFAULT_RESTORE_RATE = 100.0  # points per second, Standard plan
COST_HEADROOM = 0.6  # a page requests at most this share of the cap and of the bucket
CONNECTION_COST = 2
ORDER_NODE_COST = 2  # Order 1 + customAttributes 1 (scalars and enums are free)
MUTATION_COST = 10
FIRST_POLL = 0.2  # seconds before the second cancel-job poll; doubles up to poll_interval
TOKEN_OPERATION = "access_token"
SECRET_EXTRA_KEYS = ("client_secret",)

CANCEL_REASONS = ("CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "OTHER", "STAFF")
REFUND_METHODS = ("original_payment", "store_credit", "none")
SORT_KEYS = ("ID", "CREATED_AT", "UPDATED_AT", "PROCESSED_AT", "ORDER_NUMBER")

_VERSION = re.compile(r"\d{4}-(01|04|07|10)|unstable")

ORDER_FIELDS = """
fragment OrderFields on Order {
  id legacyResourceId name createdAt updatedAt cancelledAt cancelReason closed
  displayFinancialStatus displayFulfillmentStatus sourceName sourceIdentifier
  customAttributes { key value } tags note
}"""

ORDERS_QUERY = (
    """
query OrdersPage($first: Int!, $after: String, $query: String, $sortKey: OrderSortKeys, $reverse: Boolean) {
  orders(first: $first, after: $after, query: $query, sortKey: $sortKey, reverse: $reverse) {
    nodes { ...OrderFields }
    pageInfo { hasNextPage endCursor }
  }
}"""
    + ORDER_FIELDS
)

ORDER_QUERY = (
    """
query OrderById($id: ID!) {
  order(id: $id) { ...OrderFields }
}"""
    + ORDER_FIELDS
)

JOB_QUERY = """
query CancelJob($id: ID!) {
  job(id: $id) { id done }
}"""

SHOP_QUERY = "query Shop { shop { name myshopifyDomain } }"
ACCESS_SCOPES_QUERY = "query AccessScopes { currentAppInstallation { accessScopes { handle } } }"

CANCEL_MUTATION = """
mutation OrderCancel($orderId: ID!, $reason: OrderCancelReason!, $refundMethod: OrderCancelRefundMethodInput,
                     $restock: Boolean!, $notifyCustomer: Boolean, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, refundMethod: $refundMethod, restock: $restock,
              notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}"""

# Up to 2025-04 the same mutation takes `refund: Boolean!` and knows no refundMethod type.
CANCEL_MUTATION_LEGACY = """
mutation OrderCancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, $restock: Boolean!,
                     $notifyCustomer: Boolean, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: $reason, refund: $refund, restock: $restock,
              notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}"""

NOTE_MUTATION = """
mutation OrderNote($input: OrderInput!) {
  orderUpdate(input: $input) { order { id note } userErrors { field message } }
}"""

TAGS_MUTATION = """
mutation TagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) { node { id } userErrors { field message } }
}"""


class QueryCostError(BusinessError):
    """MAX_COST_EXCEEDED: a query over the single-query cost cap, which can never run as sent.

    `requested` and `limit` are the platform's numbers, so a caller can shrink the query."""

    def __init__(self, *args: Any, requested: float | None = None, limit: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requested = requested
        self.limit = limit


class CancelTimeoutError(RetryableError):
    """The cancel job did not finish (or the order did not show cancelledAt) within the timeout."""


@dataclass(frozen=True)
class CancelResult:
    """What `cancel_order_and_wait` achieved: the order read back after the job, and how."""

    order: dict[str, Any]
    job_id: str | None
    requests_sent: int
    already_cancelled: bool = False
    request_id: str | None = None


@dataclass(frozen=True)
class NoteResult:
    """What `add_note_and_tags` changed (nothing, on a second run)."""

    order_id: str
    note_added: bool
    tags_added: tuple[str, ...]
    request_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changed(self) -> bool:
        return self.note_added or bool(self.tags_added)


class PointsBucket(RateLimiter):
    """The client's copy of Shopify's leaky bucket, resynced from each answer's throttleStatus.

    Threads may share one client (and so one bucket). An answer's `currentlyAvailable` was
    computed before the other threads' requests still in flight were charged, so a resync counts
    their requested cost as spent: otherwise it would hand out points those requests are about to
    take, and the next query would be THROTTLED.
    """

    IN_FLIGHT_TTL = 120.0  # an entry older than this belongs to a request that never got an answer

    def __init__(self, rate: float, burst: float, **kwargs: Any) -> None:
        super().__init__(rate, burst, **kwargs)
        self._synced_at: float | None = None
        self._in_flight: dict[int, tuple[float, float]] = {}  # thread -> (requested cost, sent at)

    def acquire(self, cost: float = 1.0) -> float:
        # A cost above the bucket could never be granted; the platform answers such a query itself.
        cost = min(cost, self.burst)
        waited = super().acquire(cost)
        with self._lock:
            self._in_flight[threading.get_ident()] = (cost, self._clock())
        return waited

    def sync(
        self, available: float, rate: float | None = None, maximum: float | None = None, actual: float | None = None
    ) -> None:
        with self._lock:
            now = self._clock()
            mine = self._in_flight.pop(threading.get_ident(), None)  # this thread's request is the one answered
            pending = sum(cost for cost, sent in self._in_flight.values() if now - sent < self.IN_FLIGHT_TTL)
            if rate and rate > 0:
                self.rate = float(rate)
            if maximum and maximum >= 1:
                self.burst = float(maximum)
            self._synced_at = now
            if self.shared is None:
                self._tokens = max(0.0, min(self.burst, float(available) - pending))
                self._stamp = now
                return
        # shared: the requested cost was taken; give back what Shopify did not charge
        quotas, bucket = self.shared
        refund = max(0.0, mine[0] - actual) if mine is not None and actual is not None else 0.0
        quotas.settle(bucket, self.rate, self.burst, refund=refund, at_most=float(available) - pending)

    def drain(self) -> None:
        # A THROTTLED answer carries the true level, just synced: emptying the bucket would over-wait.
        with self._lock:
            fresh = self._synced_at is not None and self._clock() - self._synced_at < 1.0
        if not fresh:
            super().drain()


def order_gid(value: Any) -> str:
    """`gid://shopify/Order/<n>` from a gid, a legacy numeric id (int or digits) or an order dict."""
    if isinstance(value, dict):
        value = value.get("id") or value.get("legacyResourceId")
    if isinstance(value, bool):
        raise ValueError(f"order id: expected a gid or a numeric id, got {value!r}")
    text = str(value).strip()
    if text.isdigit() and int(text) > 0:
        return f"gid://shopify/Order/{int(text)}"
    if re.fullmatch(r"gid://shopify/Order/[1-9]\d*", text):
        return text
    raise ValueError(f"order id: expected gid://shopify/Order/<n> or a numeric id, got {value!r}")


def supported_until(version: str) -> date | None:
    """The last day Shopify supports a stable version: 12 months after its release on the 1st of
    its month (shopify.dev/docs/api/usage/versioning says "at least"); None for `unstable`."""
    if not re.fullmatch(r"\d{4}-(01|04|07|10)", version):
        return None
    months = int(version[:4]) * 12 + int(version[5:7]) - 1 + SUPPORT_MONTHS
    return date(months // 12, months % 12 + 1, 1) - timedelta(days=1)


def _version_at_least(version: str, bound: str) -> bool:
    return version == "unstable" or version >= bound


def _split_tags(tags: Iterable[str] | str) -> list[str]:
    """Shopify splits tags on commas and trims them; keep the first spelling of each."""
    if isinstance(tags, str):
        tags = [tags]
    out: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        for tag in str(raw).split(","):
            tag = tag.strip()
            if tag and tag.lower() not in seen:
                seen.add(tag.lower())
                out.append(tag)
    return out


def _growing_waits(cap: float, first: float = FIRST_POLL) -> Iterator[float]:
    """first, 2 x first, ... up to cap, then cap forever."""
    wait = min(first, cap)
    while True:
        yield wait
        wait = min(cap, wait * 2)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class ShopifyClient(PlatformClient):
    """Shopify orders, cancels and notes over the Admin GraphQL API, paced by query cost."""

    platform = "shopify"

    def __init__(
        self,
        base_url: str,
        access_token: str | None = None,
        *,
        api_version: str = DEFAULT_VERSION,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        maximum_available: float = DEFAULT_BUCKET,
        restore_rate: float = DEFAULT_RESTORE_RATE,
        max_query_cost: int = MAX_QUERY_COST,
        secret_sink: Callable[[str], None] | None = None,
        tiktok_order_id: TikTokIdRules = TikTokIdRules(),
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not _VERSION.fullmatch(api_version or ""):
            raise ConfigurationError(
                f"shopify: api_version {api_version!r} must look like 2026-07 (a quarterly version) or be 'unstable'"
            )
        if bool(client_id) != bool(client_secret):
            raise ConfigurationError("shopify: client_id and client_secret go together (client-credentials grant)")
        if not access_token and not client_id:
            raise ConfigurationError(
                "shopify: an access token (the connection password) or client_id + client_secret is required"
            )
        if max_query_cost < 10:
            raise ConfigurationError(f"shopify: max_query_cost {max_query_cost} is too small")
        super().__init__(base_url, timeout=timeout, retry=retry, transport=transport, sleep=sleep)
        self.api_version = api_version
        self.graphql_path = f"/admin/api/{api_version}/graphql.json"
        self.max_query_cost = int(max_query_cost)
        self._token = access_token or None
        self._token_expires_at: float | None = None
        self._client_id = client_id or None
        self._client_secret = client_secret or None
        self._secret_sink = secret_sink
        self.tiktok_order_id = tiktok_order_id  # where this shop's orders carry the TikTok id (staging reads it)
        self._auth_lock = threading.Lock()
        self._order_node_cost = ORDER_NODE_COST
        # the client's clock, even one set later (a test's)
        self._bucket = PointsBucket(restore_rate, maximum_available, clock=lambda: self.clock(), sleep=sleep)
        self.points: dict[str, float] = {}  # actual cost per operation, as Shopify reported it
        self.throttle_status: dict[str, Any] | None = None
        # the version Shopify last said served this client (X-Shopify-API-Version); None before any answer
        self.served_version: str | None = None
        if secret_sink is not None:
            for secret in (access_token, client_secret):
                if secret:
                    secret_sink(secret)

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, **overrides: Any) -> ShopifyClient:
        """Build from a connection: host = the shop's admin host, password = access token, extra = below.

        extra: api_version, client_id, client_secret, timeout, max_attempts, maximum_available,
        restore_rate, max_query_cost, tiktok_order_id (docs/tiktok-order-id.md).
        """
        extra = settings.extra
        kwargs: dict[str, Any] = dict(
            api_version=str(extra.get("api_version") or DEFAULT_VERSION),
            client_id=extra.get("client_id") or None,
            client_secret=extra.get("client_secret") or None,
            timeout=settings.timeout(),
            retry=settings.retry(),
            # the tops are typo guards, far above any plan's bucket and refill rate
            maximum_available=settings.number("maximum_available", DEFAULT_BUCKET, 1, 1_000_000),
            restore_rate=settings.number("restore_rate", DEFAULT_RESTORE_RATE, 0, 100_000, above=True),
            max_query_cost=settings.count("max_query_cost", MAX_QUERY_COST, 10, MAX_QUERY_COST),
        )
        kwargs.update(overrides)
        try:
            kwargs.setdefault("tiktok_order_id", TikTokIdRules.from_extra(extra.get(EXTRA_KEY)))
            return cls(settings.base_url, settings.password, **kwargs)
        except ConfigurationError as exc:
            raise ConfigurationError(f"connection {settings.conn_id!r}: {exc}") from None

    # ------------------------------------------------------------------ PlatformClient hooks
    def limiter(self, operation: str) -> RateLimiter | None:
        # One bucket per app and shop for every GraphQL call; the token grant is not metered.
        return None if operation == TOKEN_OPERATION else self._bucket

    def share_quotas(self, quotas: Any) -> None:
        self._bucket.share(quotas, self.platform)

    @property
    def bucket(self) -> PointsBucket:
        return self._bucket

    def _prepare(self, request: httpx.Request, operation: str) -> httpx.Request:
        if operation == TOKEN_OPERATION:
            return request
        self._ensure_token()
        request.headers["X-Shopify-Access-Token"] = self._token or ""
        request.headers["Accept"] = "application/json"
        return request

    @property
    def can_refresh(self) -> bool:
        return self._client_id is not None and self._client_secret is not None

    def _ensure_token(self) -> None:
        expired = self._token_expires_at is not None and time.monotonic() >= self._token_expires_at
        if self._token is None or expired:
            self._refresh_auth()

    def _refresh_auth(self) -> None:
        """Client-credentials grant: a new access token for the app on this shop."""
        if not self.can_refresh:
            raise AuthError(
                self.platform,
                "auth",
                "the access token was refused and the connection has no client_id/client_secret to obtain a new one",
                status=401,
            )
        used = self._token
        with self._auth_lock:
            if self._token != used and self._token is not None:
                return  # another thread already replaced it
            form = urlencode(
                {"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret}
            ).encode()
            reply = self.call(
                TOKEN_OPERATION,
                "POST",
                "/admin/oauth/access_token",
                content=form,
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            )
            token = reply.data["access_token"]
            if self._secret_sink is not None:
                self._secret_sink(token)
            lifetime = _number(reply.data.get("expires_in"))
            self._token = token
            # renew a little before the platform's own expiry
            self._token_expires_at = time.monotonic() + lifetime - min(60.0, lifetime / 10) if lifetime else None
            log.info(
                "shopify: obtained a new access token by the client-credentials grant (expires in %s s)",
                int(lifetime) if lifetime else "?",
            )

    def _safe(self, text: Any, limit: int = 500) -> str:
        """Platform text for an exception: never a secret, and not too much of it."""
        safe = str(text)
        for secret in (self._token, self._client_secret):
            if secret:
                safe = safe.replace(secret, "***")
        return safe[:limit]

    def _sync_cost(self, cost: Any, operation: str) -> None:
        if not isinstance(cost, dict):
            return
        actual = _number(cost.get("actualQueryCost"))
        if actual is not None:
            self.points[operation] = self.points.get(operation, 0.0) + actual
        status = cost.get("throttleStatus")
        if isinstance(status, dict):
            available = _number(status.get("currentlyAvailable"))
            if available is not None:
                self._bucket.sync(
                    available,
                    _number(status.get("restoreRate")),
                    _number(status.get("maximumAvailable")),
                    actual=actual,
                )
                self.throttle_status = dict(status)

    def _check(self, response: httpx.Response, operation: str) -> Reply:
        if operation == TOKEN_OPERATION:
            return self._check_token(response)
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        kw = dict(status=status, request_id=request_id)
        try:
            body = response.json()
        except ValueError:
            body = None
        envelope = body if isinstance(body, dict) else {}
        extensions = envelope.get("extensions")
        cost = extensions.get("cost") if isinstance(extensions, dict) else None
        self._sync_cost(cost, operation)
        self._note_served_version(response)
        errors = envelope.get("errors")
        if status == 401:
            text = "access token refused (401): check the connection password"
            if self.can_refresh:
                raise TokenExpiredError(self.platform, operation, text, **kw)
            raise AuthError(self.platform, operation, text, **kw)
        if status == 403:
            raise AuthError(
                self.platform, operation, "access refused (403): the app lacks a scope or the shop blocks it", **kw
            )
        if status == 404:
            raise NotFoundError(
                self.platform,
                operation,
                f"no Admin API at {self.graphql_path} (HTTP 404): check "
                "the host (the shop's myshopify.com domain) and extra.api_version",
                **kw,
            )
        if status == 429 or self._throttled(errors):
            raise self._throttled_error(response, operation, cost, **kw)
        if status >= 500 or status == 408:
            raise RetryableError(
                self.platform,
                operation,
                self._error_message(errors) or f"server error {status}",
                code=self._error_code(errors),
                **kw,
            )
        if status != 200:
            # 400 bad request, 402 shop frozen for payment, 423 shop locked
            raise BusinessError(
                self.platform,
                operation,
                self._error_message(errors) or f"HTTP {status}",
                code=self._error_code(errors),
                **kw,
            )
        if body is None:
            raise MalformedResponseError(
                self.platform, operation, "response body is not JSON (truncated or from a proxy)", **kw
            )
        if not isinstance(body, dict):
            raise MalformedResponseError(
                self.platform, operation, f"expected a JSON object, got {type(body).__name__}", **kw
            )
        if errors:
            code = self._error_code(errors)
            message = self._error_message(errors)
            if code == "ACCESS_DENIED":
                raise AuthError(self.platform, operation, message, code=code, **kw)
            if code == "MAX_COST_EXCEEDED":
                first = errors[0].get("extensions") or {}
                raise QueryCostError(
                    self.platform,
                    operation,
                    message.split("\n")[0],
                    code=code,
                    requested=_number(first.get("cost")),
                    limit=_number(first.get("maxCost")),
                    **kw,
                )
            if code in ("INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"):
                raise RetryableError(self.platform, operation, message, code=code, **kw)
            raise BusinessError(self.platform, operation, message, code=code, **kw)
        if not isinstance(body.get("data"), dict):
            raise MalformedResponseError(self.platform, operation, "answer without data", **kw)
        return Reply(body, request_id, status, dict(response.headers))

    @staticmethod
    def _throttled(errors: Any) -> bool:
        return isinstance(errors, list) and any(
            isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
        )

    def _throttled_error(self, response: httpx.Response, operation: str, cost: Any, **kw: Any) -> ThrottledError:
        hint = None
        if isinstance(cost, dict) and isinstance(cost.get("throttleStatus"), dict):
            requested = _number(cost.get("requestedQueryCost"))
            status = cost["throttleStatus"]
            available = _number(status.get("currentlyAvailable"))
            rate = _number(status.get("restoreRate"))
            maximum = _number(status.get("maximumAvailable"))
            # a cost above the whole bucket gives no usable hint (pages are sized to fit the bucket)
            fits = requested is not None and (maximum is None or requested <= maximum)
            if fits and requested is not None and available is not None and rate:
                hint = max(0.0, (requested - available) / rate)
        header = response.headers.get("retry-after")
        if header:
            try:
                hint = max(hint or 0.0, float(header))
            except ValueError:
                pass
        return ThrottledError(
            self.platform,
            operation,
            "throttled: the shop's query-cost bucket is empty",
            code="THROTTLED",
            retry_after=hint,
            **kw,
        )

    @staticmethod
    def _error_code(errors: Any) -> str | None:
        if isinstance(errors, list):
            for error in errors:
                if isinstance(error, dict) and isinstance(error.get("extensions"), dict):
                    code = error["extensions"].get("code")
                    if code:
                        return str(code)
        return None

    def _error_message(self, errors: Any) -> str:
        """Shopify's error text in any of its shapes: a string, {"field": ...} or [{"message": ...}]."""
        if errors is None:
            return ""
        if isinstance(errors, str):
            return self._safe(errors)
        if isinstance(errors, dict):
            return self._safe("; ".join(f"{k}: {v}" for k, v in errors.items()))
        if isinstance(errors, list):
            parts = [str(e.get("message")) if isinstance(e, dict) else str(e) for e in errors[:3]]
            return self._safe(" | ".join(parts))
        return self._safe(errors)

    @property
    def effective_version(self) -> str:
        """The version whose contract the next document follows: the one Shopify last served, else the one asked."""
        return self.served_version or self.api_version

    def _note_served_version(self, response: httpx.Response) -> None:
        served = response.headers.get("x-shopify-api-version", "").strip()
        if not served or served == self.served_version:
            return
        if not _VERSION.fullmatch(served):
            log.warning("shopify: ignoring X-Shopify-API-Version %r, which is not a version", served[:40])
            return
        if served != self.api_version:
            log.warning(
                "shopify: asked for API %s, served %s (a version past its support falls forward); "
                "orderops now shapes its requests for %s: set extra.api_version to a supported version",
                self.api_version,
                served,
                served,
            )
        self.served_version = served

    def _check_token(self, response: httpx.Response) -> Reply:
        status = response.status_code
        kw = dict(status=status, request_id=response.headers.get("x-request-id"))
        if status in (400, 401, 403):
            # a plain AuthError: a refused grant must not trigger another refresh
            raise AuthError(
                self.platform,
                TOKEN_OPERATION,
                "client credentials refused: check extra.client_id and extra.client_secret",
                **kw,
            )
        if status == 429:
            raise self._throttled_error(response, TOKEN_OPERATION, None, **kw)
        if status >= 500:
            raise RetryableError(self.platform, TOKEN_OPERATION, f"server error {status}", **kw)
        if status != 200:
            raise AuthError(self.platform, TOKEN_OPERATION, f"token grant failed (HTTP {status})", **kw)
        try:
            body = response.json()
        except ValueError:
            raise MalformedResponseError(self.platform, TOKEN_OPERATION, "token answer is not JSON", **kw) from None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise MalformedResponseError(self.platform, TOKEN_OPERATION, "token answer without access_token", **kw)
        return Reply(body, kw["request_id"], status, dict(response.headers))

    # ------------------------------------------------------------------ GraphQL plumbing
    def graphql(
        self,
        operation: str,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        cost: float,
        retry_safe: bool = True,
    ) -> Reply:
        """One GraphQL document; `operation` is its root field (the call counter's key).

        Reply.data is the whole envelope {data, extensions}; `cost` is the requested cost the
        client expects (taken from the points bucket before sending).
        """
        payload = {"query": query, "variables": variables or {}}
        return self.call(operation, "POST", self.graphql_path, json=payload, retry_safe=retry_safe, cost=cost)

    def _page_first(self, page_size: int) -> int:
        """The largest page whose requested cost stays well under the cap and the bucket."""
        budget = COST_HEADROOM * min(self.max_query_cost, self._bucket.burst)
        fit = int((budget - CONNECTION_COST) // max(1, self._order_node_cost))
        return max(1, min(page_size, MAX_PAGE_SIZE, fit))

    def _learn_node_cost(self, requested: float | None, first: int) -> None:
        if requested is not None and first > 0 and requested > CONNECTION_COST:
            self._order_node_cost = max(1, math.ceil((requested - CONNECTION_COST) / first))

    # ------------------------------------------------------------------ reads
    def orders(
        self,
        query: str = "",
        page_size: int = MAX_PAGE_SIZE,
        *,
        sort_key: str = "ID",
        reverse: bool = False,
        strict_search: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Orders matching a search query (Shopify's search syntax), lazily, as Shopify's Order objects.

        Sorted by ID by default: a cursor then stays put while orders are updated during paging
        (an UPDATED_AT sort would move an order edited mid-walk). `page_size` is an upper bound:
        the page shrinks when the cost per order makes a 250-order page too expensive.
        Shopify drops a filter it does not understand (and says so in `extensions.search`),
        which turns a window into the whole shop: with `strict_search` that raises BusinessError.
        """
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: expected 1-{MAX_PAGE_SIZE}, got {page_size!r}")
        if sort_key not in SORT_KEYS:
            raise ValueError(f"sort_key: expected one of {', '.join(SORT_KEYS)}, got {sort_key!r}")
        search = query.strip() if query else None

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            for _ in range(3):
                first = self._page_first(page_size)
                variables = {
                    "first": first,
                    "after": cursor,
                    "query": search,
                    "sortKey": sort_key,
                    "reverse": bool(reverse),
                }
                try:
                    reply = self.graphql(
                        "orders", ORDERS_QUERY, variables, cost=CONNECTION_COST + first * self._order_node_cost
                    )
                    break
                except QueryCostError as exc:
                    # the platform prices orders higher than assumed: learn its numbers, ask for fewer
                    self._learn_node_cost(exc.requested, first)
                    if exc.limit:
                        self.max_query_cost = min(self.max_query_cost, int(exc.limit))
                    if self._page_first(page_size) >= first:
                        raise
            else:
                raise PagingError(self.platform, "orders", "no page size fits the query-cost limits")
            extensions = reply.data.get("extensions") or {}
            cost = extensions.get("cost") or {}
            self._learn_node_cost(_number(cost.get("requestedQueryCost")), first)
            problems = [
                w
                for entry in extensions.get("search") or []
                if isinstance(entry, dict)
                for w in entry.get("warnings") or []
                if isinstance(w, dict)
            ]
            if problems:
                text = "; ".join(f"{w.get('field')}: {w.get('message')}" for w in problems)
                if strict_search:
                    raise BusinessError(
                        self.platform,
                        "orders",
                        f"search {search!r} was not understood: {text}",
                        code=problems[0].get("code"),
                        request_id=reply.request_id,
                    )
                log.warning("shopify orders: search %r: %s", search, text)
            connection = reply.data["data"].get("orders")
            if (
                not isinstance(connection, dict)
                or not isinstance(connection.get("nodes"), list)
                or not isinstance(connection.get("pageInfo"), dict)
            ):
                raise MalformedResponseError(
                    self.platform, "orders", "expected orders { nodes pageInfo }", request_id=reply.request_id
                )
            info = connection["pageInfo"]
            if info.get("hasNextPage"):
                if not info.get("endCursor"):
                    raise PagingError(self.platform, "orders", "hasNextPage without an endCursor")
                return connection["nodes"], info["endCursor"]
            return connection["nodes"], None

        return self.listing(fetch, "orders", key=lambda node: record_id(node, "id"))

    def order(self, order_gid_or_legacy_id: Any) -> dict[str, Any]:
        """One order by gid or numeric (REST) id; NotFoundError when the shop does not show it."""
        gid = order_gid(order_gid_or_legacy_id)
        reply = self.graphql("order", ORDER_QUERY, {"id": gid}, cost=ORDER_NODE_COST)
        node = reply.data["data"].get("order")
        if node is None:
            raise NotFoundError(
                self.platform,
                "order",
                f"order {gid} not found (or older than 60 days without the read_all_orders scope)",
                request_id=reply.request_id,
            )
        if not isinstance(node, dict):
            raise MalformedResponseError(self.platform, "order", "order is not an object", request_id=reply.request_id)
        return node

    def shop(self) -> dict[str, Any]:
        shop: dict[str, Any] = self.graphql("shop", SHOP_QUERY, cost=1).data["data"]["shop"]
        return shop

    def access_scopes(self) -> set[str]:
        """The access scopes the shop granted this app (`currentAppInstallation.accessScopes`)."""
        reply = self.graphql("currentAppInstallation", ACCESS_SCOPES_QUERY, cost=1)
        scopes = (reply.data["data"].get("currentAppInstallation") or {}).get("accessScopes")
        if not isinstance(scopes, list) or not all(
            isinstance(s, dict) and isinstance(s.get("handle"), str) for s in scopes
        ):
            raise MalformedResponseError(
                self.platform,
                "currentAppInstallation",
                "expected accessScopes[] of {handle}",
                request_id=reply.request_id,
            )
        return {s["handle"] for s in scopes}

    def job(self, job_id: str) -> dict[str, Any]:
        reply = self.graphql("job", JOB_QUERY, {"id": job_id}, cost=1)
        job = reply.data["data"].get("job")
        if not isinstance(job, dict):
            raise NotFoundError(self.platform, "job", f"job {job_id} not found", request_id=reply.request_id)
        return job

    # ------------------------------------------------------------------ writes
    def cancel_order(
        self,
        order_id: Any,
        reason: str = "CUSTOMER",
        refund_method: str = "original_payment",
        restock: bool = True,
        notify_customer: bool = False,
        staff_note: str | None = None,
    ) -> Reply:
        """Start `orderCancel`; Reply.data is its payload ({job {id done}, orderCancelUserErrors}).

        Sent once: only a throttle or a refused connection (the request never reached Shopify) is
        retried. A refusal (already cancelled, fulfilled, not found...) raises BusinessError /
        NotFoundError with Shopify's code. The cancel runs as a job: see `cancel_order_and_wait`.
        """
        gid = order_gid(order_id)
        reason = str(reason).upper()
        if reason not in CANCEL_REASONS:
            raise ValueError(f"reason: expected one of {', '.join(CANCEL_REASONS)}, got {reason!r}")
        if refund_method not in REFUND_METHODS:
            raise ValueError(f"refund_method: expected one of {', '.join(REFUND_METHODS)}, got {refund_method!r}")
        if staff_note is not None and len(staff_note) > 255:
            raise ValueError("staff_note: at most 255 characters")
        variables: dict[str, Any] = {
            "orderId": gid,
            "reason": reason,
            "restock": bool(restock),
            "notifyCustomer": bool(notify_customer),
            "staffNote": staff_note,
        }
        version = self.effective_version
        if _version_at_least(version, REFUND_METHOD_SINCE):
            document = CANCEL_MUTATION
            variables["refundMethod"] = (
                {"storeCreditRefund": {}}
                if refund_method == "store_credit"
                else {"originalPaymentMethodsRefund": refund_method == "original_payment"}
            )
        else:
            if refund_method == "store_credit":
                raise ValueError(
                    f"refund_method store_credit needs API {REFUND_METHOD_SINCE} or later "
                    f"(this connection speaks {version})"
                )
            document = CANCEL_MUTATION_LEGACY
            variables["refund"] = refund_method == "original_payment"
        reply = self.graphql("orderCancel", document, variables, cost=MUTATION_COST, retry_safe=False)
        payload = reply.data["data"].get("orderCancel")
        if not isinstance(payload, dict):
            raise MalformedResponseError(
                self.platform, "orderCancel", "answer without orderCancel", request_id=reply.request_id
            )
        self._raise_user_errors("orderCancel", payload.get("orderCancelUserErrors"), reply)
        job = payload.get("job")
        if not isinstance(job, dict) or not job.get("id"):
            raise MalformedResponseError(
                self.platform, "orderCancel", "accepted without a job", request_id=reply.request_id
            )
        return Reply(payload, reply.request_id, reply.status, reply.headers)

    def _raise_user_errors(self, operation: str, errors: Any, reply: Reply) -> None:
        if not errors:
            return
        first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
        code = first.get("code")
        where = ".".join(first.get("field") or [])
        message = self._safe(f"{where}: {first.get('message')}" if where else first.get("message"))
        error_class = NotFoundError if code == "NOT_FOUND" or "does not exist" in message else BusinessError
        raise error_class(
            self.platform, operation, message, code=code, status=reply.status, request_id=reply.request_id
        )

    def cancel_order_and_wait(
        self,
        order_id: Any,
        reason: str = "CUSTOMER",
        refund_method: str = "original_payment",
        restock: bool = True,
        notify_customer: bool = False,
        staff_note: str | None = None,
        *,
        timeout: float = 60.0,
        poll_interval: float = 1.0,
        max_sends: int = 2,
    ) -> CancelResult:
        """Cancel an order and return it once Shopify shows it cancelled.

        Reads first: an order already cancelled is returned without sending anything. After an
        ambiguous failure (timeout after sending, 5xx, unreadable answer) the order is read again;
        still not cancelled, the cancel is sent again (at most `max_sends` in all), which is safe
        because Shopify refuses a second cancel while one runs or after it is done. Then polls
        `job(id:)` until done and reads the order until `cancelledAt` is set, within `timeout`.
        Polls come after 0.2, 0.4, 0.8 ... s, at most `poll_interval` apart: most jobs finish
        within a second, and a job poll costs one point, so waiting a whole interval first would
        only add latency to every cancel (each saga waits on it).
        """
        gid = order_gid(order_id)
        order = self.order(gid)
        if order.get("cancelledAt"):
            return CancelResult(order, None, 0, already_cancelled=True)
        deadline = time.monotonic() + timeout
        sent = 0
        ambiguous: PlatformError | None = None
        job_id: str | None = None
        request_id: str | None = None
        while True:
            sent += 1
            try:
                reply = self.cancel_order(gid, reason, refund_method, restock, notify_customer, staff_note)
                job_id, request_id = reply.data["job"]["id"], reply.request_id
                break
            except (BusinessError, NotFoundError) as exc:
                order = self.order(gid)
                if order.get("cancelledAt"):
                    return CancelResult(order, None, sent, already_cancelled=ambiguous is None)
                if ambiguous is None:
                    raise
                # refused after an ambiguous send: that send most likely started the job
                log.info(
                    "shopify orderCancel %s: resend refused (%s); waiting for the first one", gid, exc.platform_message
                )
                break
            except ThrottledError:
                raise  # already retried; never processed
            except RetryableError as exc:
                ambiguous = exc
                order = self.order(gid)
                if order.get("cancelledAt"):
                    return CancelResult(order, None, sent)
                if sent >= max_sends:
                    raise
                log.info(
                    "shopify orderCancel %s: %s; the order is not cancelled, sending again", gid, exc.platform_message
                )
        waits = _growing_waits(poll_interval)
        if job_id is not None:
            while not self.job(job_id).get("done"):
                if time.monotonic() >= deadline:
                    raise CancelTimeoutError(
                        self.platform,
                        "orderCancel",
                        f"job {job_id} not done after {timeout:.0f} s",
                        request_id=request_id,
                    )
                self._sleep(next(waits))
        while True:
            order = self.order(gid)
            if order.get("cancelledAt"):
                return CancelResult(order, job_id, sent, request_id=request_id)
            if time.monotonic() >= deadline:
                if job_id is not None:  # the job ran and the order stayed open: it failed
                    raise BusinessError(
                        self.platform,
                        "orderCancel",
                        f"job {job_id} finished but order {gid} is not cancelled",
                        request_id=request_id,
                    )
                raise CancelTimeoutError(
                    self.platform,
                    "orderCancel",
                    f"order {gid} not cancelled after {timeout:.0f} s",
                    request_id=request_id,
                )
            self._sleep(next(waits))

    def add_note_and_tags(self, order_id: Any, note_line: str | None, tags: Iterable[str] | str = ()) -> NoteResult:
        """Append `note_line` to the order's note and add `tags`, skipping what is already there.

        Reads the order first; the note is rewritten as old note + new line (a line already
        present is not added again) and tags go through `tagsAdd` (additive, so a concurrent
        tag edit is not lost). Running it twice changes nothing the second time.
        """
        gid = order_gid(order_id)
        line = (note_line or "").strip()
        if "\n" in line:
            raise ValueError("note_line: one line, without newlines")
        wanted = _split_tags(tags)
        order = self.order(gid)
        # the note is rewritten whole: a read that did not carry it would replace it by our line
        if "note" not in order or not isinstance(order["note"], (str, type(None))):
            raise MalformedResponseError(
                self.platform, "order", f"order {gid} was read without its note: not rewriting it"
            )
        if not isinstance(order.get("tags"), list):
            raise MalformedResponseError(self.platform, "order", f"order {gid} was read without its tags")
        note = order["note"] or ""
        have_lines = {existing.strip() for existing in note.splitlines()}
        have_tags = {str(t).strip().lower() for t in order["tags"]}
        missing = [t for t in wanted if t.lower() not in have_tags]
        request_ids: list[str] = []
        note_added = False
        if line and line not in have_lines:
            new_note = f"{note.rstrip()}\n{line}" if note.strip() else line
            reply = self.graphql(
                "orderUpdate", NOTE_MUTATION, {"input": {"id": gid, "note": new_note}}, cost=MUTATION_COST
            )
            payload = reply.data["data"].get("orderUpdate") or {}
            self._raise_user_errors("orderUpdate", payload.get("userErrors"), reply)
            note_added = True
            if reply.request_id:
                request_ids.append(reply.request_id)
        if missing:
            reply = self.graphql("tagsAdd", TAGS_MUTATION, {"id": gid, "tags": missing}, cost=MUTATION_COST)
            payload = reply.data["data"].get("tagsAdd") or {}
            self._raise_user_errors("tagsAdd", payload.get("userErrors"), reply)
            if reply.request_id:
                request_ids.append(reply.request_id)
        return NoteResult(gid, note_added, tuple(missing), tuple(request_ids))
