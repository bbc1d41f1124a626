"""TikTok Shop Open API client and Airflow hook (docs/architecture.md §5).

Contract: TikTok Shop's Partner Center documentation (Open API 202309+ paths, US seller); each operation at the
version tiktok_versions names (the current documented one unless the connection pins another).

* Every attempt is stamped (`timestamp`, Unix seconds) and signed (`sign`, see tiktok_signing)
  again: a retry after a backoff would otherwise fall outside the platform's -5 min / +30 s window.
  The JSON body is serialized once, compactly, and those exact bytes are both signed and sent.
* The access token travels in the `x-tts-access-token` header, never in the query. On 105002
  (expired) the client refreshes it on the auth host (`GET /api/v2/token/refresh`, app secret and
  refresh token in the query, as the platform defines it) and retries the call once; it also
  refreshes ahead of time when the expiry is known. New tokens stay in the client and are handed
  to `on_token_refresh` so a caller can persist them (the access token lasts about 7 days).
* `shop_cipher` comes from the connection or, when absent, from GET /authorization/202309/shops
  (the shop matching `shop_id`, else the first one), once per client.
* Quota: the platform publishes 50 QPS per app and API as a starting point (dynamic in practice),
  so each endpoint gets its own token bucket at `qps`, and 429 / 36009002 drains it and backs off.
* Mark Package As Shipped has no idempotency key: it is sent once (`retry_safe=False`); after an
  ambiguous failure the ledger's executor reads the order back before anything is sent again.
  Cancellation approve/reject carry an `idempotency_key`, so they are retried like reads.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PlatformClient,
    Reply,
    RetryableError,
    RetryPolicy,
    ThrottledError,
    TokenExpiredError,
    chunked,
    record_id,
)
from orderops_provider.connection import ConnectionSettings
from orderops_provider.tiktok_signing import sign
from orderops_provider.tiktok_versions import path as versioned_path
from orderops_provider.tiktok_versions import resolve as resolve_versions

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://open-api.tiktokglobalshop.com"
DEFAULT_AUTH_BASE_URL = "https://auth.tiktok-shops.com"
TOKEN_HEADER = "x-tts-access-token"
DEFAULT_QPS = 50.0
# Refresh this long before a known expiry, so that a long page walk does not run into it.
DEFAULT_REFRESH_MARGIN = 300.0
MAX_DETAIL_IDS = 50
MAX_ORDER_PAGE = 100
MAX_CANCELLATION_PAGE = 50
SECRET_EXTRA_KEYS = ("access_token", "refresh_token")

OP_REFRESH = "refresh_access_token"
# Operations that must not carry shop_cipher (the platform refuses it there).
_UNSCOPED = frozenset({"shops", OP_REFRESH})

ORDER_FILTERS = frozenset(
    {
        "order_status",
        "create_time_ge",
        "create_time_lt",
        "update_time_ge",
        "update_time_lt",
        "is_buyer_request_cancel",
        "shipping_type",
        "buyer_user_id",
        "warehouse_ids",
    }
)
CANCELLATION_FILTERS = frozenset(
    {
        "cancel_ids",
        "order_ids",
        "buyer_user_ids",
        "cancel_types",
        "cancel_status",
        "create_time_ge",
        "create_time_lt",
        "update_time_ge",
        "update_time_lt",
        "locale",
    }
)
_TIME_FILTERS = frozenset({"create_time_ge", "create_time_lt", "update_time_ge", "update_time_lt"})

# Codes from the platform's common-errors page.
THROTTLED_CODES = frozenset({36009002})
RETRYABLE_CODES = frozenset({36009003, 36009007, 10002014, 10002015, 10037002, 10037003, 10037004, 10006402})
TOKEN_EXPIRED_CODE = 105002
AUTH_CODES = frozenset({106001, 101000, 36009033, 36009043, 36009044, 36004001, 36004004, 36004005})
NOT_FOUND_CODES = frozenset({21008111})

_DIGITS = re.compile(r"^[0-9]{1,30}$")
# Query parameters of the token host that carry secrets (the only URLs that hold any).
_SECRET_QUERY = re.compile(r"((?:^|[?&])(?:app_secret|refresh_token|access_token|auth_code)=)[^&#\s\"]*")


class _RedactSecretQuery(logging.Filter):
    """httpx logs every request URL at INFO; the token host's URLs carry the app secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("token/" in str(a) for a in record.args):
            record.args = tuple(
                _SECRET_QUERY.sub(r"\1***", str(a)) if isinstance(a, (httpx.URL, str)) else a for a in record.args
            )
        return True


_REDACT_FILTER = _RedactSecretQuery()


def _install_log_filter() -> None:
    logger = logging.getLogger("httpx")
    if _REDACT_FILTER not in logger.filters:
        logger.addFilter(_REDACT_FILTER)


@dataclass(frozen=True)
class TokenSet:
    """Tokens from the auth host. Expiries are absolute Unix seconds (the platform's `*_expire_in`)."""

    access_token: str = field(repr=False)
    access_token_expire_in: int | None
    refresh_token: str = field(repr=False)
    refresh_token_expire_in: int | None


def _path_id(value: Any, name: str) -> str:
    """An id that goes into a URL path or the ids list: digits only."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    if not _DIGITS.match(text):
        raise ValueError(f"{name}: expected a numeric id, got {value!r}")
    return text


def _unix(value: Any, name: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name}: a datetime without a time zone is ambiguous; give an aware datetime")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected Unix seconds or an aware datetime, got {value!r}")
    return value


def _body(filters: dict[str, Any] | None, allowed: frozenset[str], what: str) -> dict[str, Any]:
    filters = dict(filters or {})
    unknown = set(filters) - allowed
    if unknown:
        raise ValueError(
            f"{what} filters: unknown field(s) {', '.join(sorted(unknown))}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )
    return {k: (_unix(v, k) if k in _TIME_FILTERS else v) for k, v in filters.items() if v is not None}


def _compact(body: Any) -> bytes:
    # Signed byte for byte: these are the bytes sent, never re-serialized.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class TikTokShopClient(PlatformClient):
    """TikTok Shop orders, logistics, fulfillment and cancellations over httpx, signed per attempt."""

    platform = "tiktok"

    def __init__(
        self,
        base_url: str,
        app_key: str,
        app_secret: str,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        access_token_expire_in: int | None = None,
        shop_cipher: str | None = None,
        shop_id: str | None = None,
        auth_base_url: str = DEFAULT_AUTH_BASE_URL,
        qps: float = DEFAULT_QPS,
        limits: dict[str, tuple[float, float]] | None = None,
        on_token_refresh: Callable[[TokenSet], None] | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        timeout: float = 30.0,
        api_versions: dict[str, str] | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not app_key:
            raise ConfigurationError("tiktok: app_key (the connection login) is required")
        if not app_secret:
            raise ConfigurationError("tiktok: app_secret (the connection password) is required")
        if not access_token and not refresh_token:
            raise ConfigurationError("tiktok: extra.access_token or extra.refresh_token is required")
        if not auth_base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"tiktok: auth_base_url {auth_base_url!r} must start with http:// or https://")
        if isinstance(qps, bool) or not qps > 0:
            raise ConfigurationError(f"tiktok: qps must be a positive number, got {qps!r}")
        try:
            self.versions = resolve_versions(api_versions)
        except ValueError as exc:
            raise ConfigurationError(f"tiktok: {exc}") from None
        # Half the quota as burst: the platform's bucket starts when our first request lands, so a
        # full-size burst on our side could arrive a hair early and be refused.
        super().__init__(
            base_url,
            timeout=timeout,
            retry=retry,
            limits=limits,
            default_limit=(float(qps), max(1.0, float(qps) / 2)),
            transport=transport,
            sleep=sleep,
        )
        self.app_key = app_key
        self.auth_base_url = auth_base_url.rstrip("/")
        self.shop_id = str(shop_id) if shop_id not in (None, "") else None
        self.on_token_refresh = on_token_refresh
        self.refresh_margin = refresh_margin
        self._secret = app_secret
        self._access_token = access_token or None
        self._refresh_token = refresh_token or None
        self._expires_at = int(access_token_expire_in) if access_token_expire_in else None
        self._refresh_expires_at: int | None = None
        self._shop_cipher = shop_cipher or None
        self._clock = clock
        self._auth_lock = threading.Lock()
        self._sent = threading.local()  # the token each thread last sent, to spot a refresh done elsewhere
        self.shop: dict[str, Any] | None = None
        _install_log_filter()

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, **overrides: Any) -> TikTokShopClient:
        """Build from a connection: host = open API URL, login = app_key, password = app_secret,
        extra = auth_base_url, access_token, refresh_token, access_token_expire_in, shop_cipher,
        shop_id, qps, timeout, max_attempts, api_versions ({operation: version} to pin)."""
        extra = settings.extra
        kwargs: dict[str, Any] = dict(
            access_token=extra.get("access_token") or None,
            refresh_token=extra.get("refresh_token") or None,
            shop_cipher=extra.get("shop_cipher") or None,
            shop_id=extra.get("shop_id") or None,
            auth_base_url=str(extra.get("auth_base_url") or DEFAULT_AUTH_BASE_URL),
            qps=settings.number("qps", DEFAULT_QPS, 0, 10_000, above=True),  # bound: a typo guard
            timeout=settings.timeout(),
            retry=settings.retry(),
            api_versions=extra.get("api_versions"),
        )
        if extra.get("access_token_expire_in") not in (None, ""):
            # unix seconds: milliseconds, 1,000 times too far ahead, would never refresh
            kwargs["access_token_expire_in"] = settings.count("access_token_expire_in", 0, 0, 10_000_000_000)
        kwargs.update(overrides)
        try:
            return cls(settings.base_url, settings.login or "", settings.password or "", **kwargs)
        except ConfigurationError as exc:
            raise ConfigurationError(f"connection {settings.conn_id!r}: {exc}") from None

    # ------------------------------------------------------------------ tokens
    @property
    def tokens(self) -> TokenSet:
        """The tokens in use now (after any refresh)."""
        return TokenSet(self._access_token or "", self._expires_at, self._refresh_token or "", self._refresh_expires_at)

    def _expiring(self) -> bool:
        if not self._access_token:
            return True
        return self._expires_at is not None and self._clock() >= self._expires_at - self.refresh_margin

    def call(self, operation: str, method: str, path: str, **kwargs: Any) -> Reply:
        if operation != OP_REFRESH and self._expiring():
            with self._auth_lock:
                if self._expiring():
                    self.refresh_access_token()
        return super().call(operation, method, path, **kwargs)

    def refresh_access_token(self) -> TokenSet:
        """Get a new access token with the refresh token; keeps it and reports it to on_token_refresh."""
        if not self._refresh_token:
            raise AuthError(
                self.platform,
                OP_REFRESH,
                "the access token expired and the connection holds no "
                "refresh_token: authorize the shop again and store both tokens",
            )
        reply = super().call(
            OP_REFRESH,
            "GET",
            f"{self.auth_base_url}/api/v2/token/refresh",
            params={
                "app_key": self.app_key,
                "app_secret": self._secret,
                "refresh_token": self._refresh_token,
                "grant_type": "refresh_token",
            },
        )
        data = reply.data
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise MalformedResponseError(
                self.platform, OP_REFRESH, "the token answer has no access_token", request_id=reply.request_id
            )
        refresh = data.get("refresh_token") if isinstance(data.get("refresh_token"), str) else None
        tokens = TokenSet(
            access,
            data.get("access_token_expire_in") if isinstance(data.get("access_token_expire_in"), int) else None,
            refresh or self._refresh_token,
            data.get("refresh_token_expire_in") if isinstance(data.get("refresh_token_expire_in"), int) else None,
        )
        self._access_token, self._refresh_token = tokens.access_token, tokens.refresh_token
        self._expires_at = tokens.access_token_expire_in
        self._refresh_expires_at = tokens.refresh_token_expire_in
        log.info(
            "tiktok: access token refreshed (request id %s); it now expires at %s",
            reply.request_id,
            tokens.access_token_expire_in,
        )
        if self.on_token_refresh is not None:
            self.on_token_refresh(tokens)
        return tokens

    def _refresh_auth(self) -> None:
        with self._auth_lock:
            if getattr(self._sent, "token", None) not in (None, self._access_token):
                return  # another thread already refreshed since this attempt was sent
            self.refresh_access_token()

    # ------------------------------------------------------------------ PlatformClient hooks
    def _prepare(self, request: httpx.Request, operation: str) -> httpx.Request:
        if operation == OP_REFRESH:
            return request  # the token host is not signed; its secrets are its query
        query = [
            (k, v)
            for k, v in request.url.params.multi_items()
            if k not in ("app_key", "timestamp", "sign", "access_token")
        ]
        query += [("app_key", self.app_key), ("timestamp", str(int(self._clock())))]
        content_type = request.headers.get("content-type", "application/json")
        query.append(("sign", sign(self._secret, request.url.path, query, request.content, content_type)))
        request.url = request.url.copy_with(params=httpx.QueryParams(tuple(query)))
        request.headers[TOKEN_HEADER] = self._access_token or ""
        self._sent.token = self._access_token
        return request

    def _safe(self, text: str, limit: int = 500) -> str:
        """Platform text for an exception: never a secret, and not too much of it."""
        for secret in (self._secret, self._access_token, self._refresh_token):
            if secret:
                text = text.replace(secret, "***")
        return text[:limit]

    def _check(self, response: httpx.Response, operation: str) -> Reply:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("code"), int):
            rid = response.headers.get("x-tt-logid")
            kw = dict(status=status, request_id=rid)
            if status == 429:
                raise ThrottledError(
                    self.platform, operation, "rate limit exceeded", retry_after=_retry_after(response), **kw
                )
            if status >= 500 or status == 408:
                raise RetryableError(self.platform, operation, f"server error HTTP {status}", **kw)
            if 200 <= status < 300:
                raise MalformedResponseError(
                    self.platform, operation, "response is not the JSON envelope (truncated or from a proxy)", **kw
                )
            if status in (401, 403):
                raise AuthError(self.platform, operation, f"refused with HTTP {status}", **kw)
            raise BusinessError(self.platform, operation, f"HTTP {status} without the platform's envelope", **kw)
        code = body["code"]
        rid = body.get("request_id") or response.headers.get("x-tt-logid")
        message = self._safe(str(body.get("message") or ""))
        kw = dict(code=code, status=status, request_id=rid)
        if code == 0 and 200 <= status < 300:
            data = body.get("data")
            if data is None:
                data = {}
            if not isinstance(data, dict):
                raise MalformedResponseError(self.platform, operation, "data is not a JSON object", **kw)
            return Reply(data, rid, status, dict(response.headers))
        if code in THROTTLED_CODES or status == 429:
            raise ThrottledError(
                self.platform, operation, message or "rate limit exceeded", retry_after=_retry_after(response), **kw
            )
        if code in RETRYABLE_CODES or status >= 500:
            raise RetryableError(self.platform, operation, message or "internal error", **kw)
        if code == TOKEN_EXPIRED_CODE and operation != OP_REFRESH:
            raise TokenExpiredError(self.platform, operation, message or "access token expired", **kw)
        if code in AUTH_CODES or 105000 <= code < 106000 or (code == 36009004 and "credentials" in message.lower()):
            raise AuthError(self.platform, operation, message or "credentials refused", **kw)
        if code in NOT_FOUND_CODES:
            raise NotFoundError(self.platform, operation, message or "not found", **kw)
        raise BusinessError(self.platform, operation, message or f"error code {code}", **kw)

    # ------------------------------------------------------------------ plumbing
    @property
    def shop_cipher(self) -> str:
        """The cipher of the shop this client works on (looked up once when not configured)."""
        if self._shop_cipher is None:
            shops = self.shops()
            if self.shop_id is not None:
                match = [s for s in shops if str(s.get("id")) == self.shop_id]
                if not match:
                    raise ConfigurationError(
                        f"tiktok: shop_id {self.shop_id} is not among the {len(shops)} "
                        "shop(s) this token is authorized for"
                    )
                chosen = match[0]
            elif shops:
                chosen = shops[0]
            else:
                raise ConfigurationError("tiktok: the token is authorized for no shop")
            if not chosen.get("cipher"):
                raise MalformedResponseError(self.platform, "shops", "the shop has no cipher")
            self.shop, self._shop_cipher = chosen, chosen["cipher"]
        return self._shop_cipher

    def _path(self, operation: str, **ids: str) -> str:
        return versioned_path(operation, self.versions[operation], **ids)

    def _api(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: Any = None,
        retry_safe: bool = True,
    ) -> Reply:
        query = list(params or [])
        if operation not in _UNSCOPED:
            query.append(("shop_cipher", self.shop_cipher))
        content = None
        headers = {"content-type": "application/json"}
        if body is not None:
            content = body if isinstance(body, bytes) else _compact(body)
        return self.call(operation, method, path, params=query, content=content, headers=headers, retry_safe=retry_safe)

    def _listing(
        self, operation: str, path: str, key: str, id_field: str, body: dict[str, Any], base: list[tuple[str, str]]
    ) -> Iterator[dict[str, Any]]:
        raw = _compact(body)  # the same bytes for every page: the page token belongs to this query

        def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
            params = base + ([("page_token", cursor)] if cursor else [])
            data = self._api(operation, "POST", path, params=params, body=raw).data
            items = data.get(key)
            token = data.get("next_page_token")
            if not isinstance(items, list) or not (token is None or isinstance(token, str)):
                raise MalformedResponseError(self.platform, operation, f"expected {key}[] and next_page_token")
            return items, token or None

        return self.listing(fetch, operation, key=lambda item: record_id(item, id_field))

    # ------------------------------------------------------------------ reads
    def shops(self) -> list[dict[str, Any]]:
        """The shops the token is authorized for ({id, name, region, seller_type, cipher, code})."""
        data = self._api("shops", "GET", self._path("shops")).data
        shops = data.get("shops")
        if not isinstance(shops, list):
            raise MalformedResponseError(self.platform, "shops", "expected shops[]")
        return shops

    def search_orders(
        self,
        filters: dict[str, Any] | None = None,
        page_size: int = MAX_ORDER_PAGE,
        sort_field: str = "create_time",
        sort_order: str = "ASC",
    ) -> Iterator[dict[str, Any]]:
        """Orders matching `filters` (the body fields: order_status, create_time_ge/lt, update_time_ge/lt,
        is_buyer_request_cancel, shipping_type, buyer_user_id, warehouse_ids), lazily, as TikTok's own
        order objects. Times are Unix seconds or aware datetimes; `ge` inclusive, `lt` exclusive."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_ORDER_PAGE:
            raise ValueError(f"page_size: expected 1-{MAX_ORDER_PAGE}, got {page_size!r}")
        if sort_field not in ("create_time", "update_time"):
            raise ValueError(f"sort_field: expected create_time or update_time, got {sort_field!r}")
        if sort_order not in ("ASC", "DESC"):
            raise ValueError(f"sort_order: expected ASC or DESC, got {sort_order!r}")
        body = _body(filters, ORDER_FILTERS, "order")
        base = [("page_size", str(page_size)), ("sort_field", sort_field), ("sort_order", sort_order)]
        return self._listing("search_orders", self._path("search_orders"), "orders", "id", body, base)

    def get_orders(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Order details for `ids` (asked 50 at a time), in the order asked, each once.
        An id that is not the shop's raises NotFoundError (21008111)."""
        wanted = list(dict.fromkeys(_path_id(i, "ids") for i in ids))
        found: list[dict[str, Any]] = []
        for batch in chunked(wanted, MAX_DETAIL_IDS):
            data = self._api("get_orders", "GET", self._path("get_orders"), params=[("ids", ",".join(batch))]).data
            orders = data.get("orders")
            if not isinstance(orders, list):
                raise MalformedResponseError(self.platform, "get_orders", "expected orders[]")
            found.extend(orders)
        return found

    def search_cancellations(
        self,
        filters: dict[str, Any] | None = None,
        page_size: int = MAX_CANCELLATION_PAGE,
        sort_field: str = "create_time",
        sort_order: str = "ASC",
    ) -> Iterator[dict[str, Any]]:
        """Cancellations matching `filters` (cancel_ids, order_ids, buyer_user_ids, cancel_types,
        cancel_status, create_time_ge/lt, update_time_ge/lt, locale), lazily, as TikTok's objects."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_CANCELLATION_PAGE:
            raise ValueError(f"page_size: expected 1-{MAX_CANCELLATION_PAGE}, got {page_size!r}")
        if sort_field not in ("create_time", "update_time"):
            raise ValueError(f"sort_field: expected create_time or update_time, got {sort_field!r}")
        if sort_order not in ("ASC", "DESC"):
            raise ValueError(f"sort_order: expected ASC or DESC, got {sort_order!r}")
        body = _body(filters, CANCELLATION_FILTERS, "cancellation")
        base = [("page_size", str(page_size)), ("sort_field", sort_field), ("sort_order", sort_order)]
        return self._listing(
            "search_cancellations", self._path("search_cancellations"), "cancellations", "cancel_id", body, base
        )

    def _list(
        self, operation: str, path: str, key: str, params: list[tuple[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        items = self._api(operation, "GET", path, params=params).data.get(key)
        if not isinstance(items, list):
            raise MalformedResponseError(self.platform, operation, f"expected {key}[]")
        return items

    def warehouses(self) -> list[dict[str, Any]]:
        """The shop's warehouses ({id, name, effect_status, type, sub_type, is_default, address})."""
        return self._list("warehouses", self._path("warehouses"), "warehouses")

    def reject_reasons(self, cancel_id: str) -> list[tuple[str, str]]:
        """The (code, text) pairs TikTok offers to reject this cancellation request with. They
        differ per market and change over time, so they are read for each request before rejecting."""
        cid = _path_id(cancel_id, "cancel_id")
        reasons = self._list(
            "reject_reasons",
            self._path("reject_reasons"),
            "reasons",
            params=[("return_or_cancel_id", cid), ("locale", "en-US")],
        )
        if not all(isinstance(r, dict) and isinstance(r.get("name"), str) and r["name"] for r in reasons):
            raise MalformedResponseError(self.platform, "reject_reasons", "expected reasons[] of {name, text}")
        return [(r["name"], str(r.get("text") or "")) for r in reasons]

    def shipping_providers(self, delivery_option_id: str) -> list[dict[str, Any]]:
        """Carriers of a delivery option ({id, name}); an order's own delivery_option_id works here."""
        did = _path_id(delivery_option_id, "delivery_option_id")
        return self._list(
            "shipping_providers", self._path("shipping_providers", delivery_option_id=did), "shipping_providers"
        )

    # ------------------------------------------------------------------ writes
    def mark_package_shipped(
        self,
        order_id: str,
        tracking_number: str,
        shipping_provider_id: str,
        order_line_item_ids: Iterable[str] | None = None,
    ) -> Reply:
        """Mark Package As Shipped (seller-shipped US orders); Reply.data = {order_id,
        order_line_item_ids, package_id}. Omit `order_line_item_ids` to ship every unshipped line.

        No idempotency key exists, so it is sent once: only a throttle or a refused connection (the
        request never got processed) is retried. Anything ambiguous is raised (the ledger's executor
        reads the order back before anything is sent again).
        """
        oid = _path_id(order_id, "order_id")
        if not isinstance(tracking_number, str) or not tracking_number.strip():
            raise ValueError("tracking_number: required")
        shipping = {
            "tracking_number": tracking_number.strip(),
            "shipping_provider_id": _path_id(shipping_provider_id, "shipping_provider_id"),
        }
        lines = None
        if order_line_item_ids is not None:
            lines = [_path_id(i, "order_line_item_ids") for i in order_line_item_ids]
            if not lines:
                raise ValueError("order_line_item_ids: give at least one id, or None for the whole order")
        version = self.versions["mark_package_shipped"]
        if version == "202309":
            body: dict[str, Any] = dict(shipping, **({"order_line_item_ids": lines} if lines else {}))
        else:  # one package, one tracking number: shipping_info_list holds more only for allowlisted splits
            body = dict(
                {"order_line_list": [{"order_line_id": i} for i in lines]} if lines else {},
                shipping_info_list=[shipping],
            )
        return self._api(
            "mark_package_shipped",
            "POST",
            self._path("mark_package_shipped", order_id=oid),
            body=body,
            retry_safe=False,
        )

    @staticmethod
    def _key(idempotency_key: str) -> str:
        if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 255:
            raise ValueError(
                "idempotency_key: expected 1-255 characters (the same key for every resend of one decision)"
            )
        return idempotency_key

    def approve_cancellation(self, cancel_id: str, idempotency_key: str) -> Reply:
        """Approve a buyer's cancellation request. Keyed, so safe to retry (same key, one effect)."""
        cid = _path_id(cancel_id, "cancel_id")
        return self._api(
            "approve_cancellation",
            "POST",
            self._path("approve_cancellation", cancel_id=cid),
            params=[("idempotency_key", self._key(idempotency_key))],
        )

    def reject_cancellation(
        self, cancel_id: str, reject_reason: str, idempotency_key: str, comment: str | None = None
    ) -> Reply:
        """Reject a buyer's cancellation request with a reason `name` (TikTok's reject reasons; the
        policy's `reject_reason`). Keyed."""
        cid = _path_id(cancel_id, "cancel_id")
        if not isinstance(reject_reason, str) or not reject_reason:
            raise ValueError("reject_reason: required (a name from TikTok's reject reasons)")
        body: dict[str, Any] = {"reject_reason": reject_reason}
        if comment is not None:
            body["comment"] = comment
        return self._api(
            "reject_cancellation",
            "POST",
            self._path("reject_cancellation", cancel_id=cid),
            params=[("idempotency_key", self._key(idempotency_key))],
            body=body,
        )
