"""ShipBob Developer API client and Airflow hook (docs/architecture.md §5).

Contract: ShipBob's developer documentation and its OpenAPI file (2026-01; 2026-07 keeps its order
contract). Versions: see END_OF_SUPPORT and docs/api-versions.md.

* Auth: `Authorization: Bearer <token>`, the token being a Personal Access Token (or an OAuth
  access token) kept in the connection password. PATs do not expire but can be revoked; when a
  `token_source` is given (the hook passes one that re-reads the connection), a token refused as
  `invalid_token` is replaced once by whatever the source holds now.
* `shipbob_channel_id` header from the connection extra `channel_id`: sent on every call when set
  (harmless on reads) and required here for cancels (it names the channel whose write scope the
  cancel uses).
* Quota: 150 requests per minute per token, sliding window, across every ShipBob API. One token
  bucket is shared by all operations of a client, sized so that no 60 s window can hold more than
  the quota: burst + rate x window < limit (5 + 2.4/s x 60 s = 149, one kept spare for jitter).
  A plain 2.5/s bucket with a burst would allow 150 + burst in the window that starts right after
  an idle spell, and the sliding window would answer those with a 429 of up to a minute.
* Order lists are a bare JSON array with paging headers (`Next-Page`, `Total-Pages`), which the
  order spec does not declare: the client follows `Next-Page` when it names a page of the same
  listing, else `Total-Pages`, else stops on a page shorter than `Limit`.
* Cancels carry no idempotency key, so they are never resent blindly (`retry_safe=False`): after
  an ambiguous failure the ledger's executor reads the order before anything is sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import product
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PagingError,
    PlatformClient,
    RateLimiter,
    Reply,
    RetryableError,
    RetryPolicy,
    ThrottledError,
    TokenExpiredError,
    record_id,
)
from orderops_provider.connection import ConnectionSettings

log = logging.getLogger(__name__)
# a listing page's query string, as (name, value) pairs
Query = tuple[tuple[str, str], ...]

# Last supported day of each version (developer.shipbob.com/versioning); afterwards a version is "no
# longer accessible". 2026-07's end is not published: ShipBob's ~18 months is assumed (UNCERTAIN).
END_OF_SUPPORT = {
    "1.0": date(2026, 7, 31),
    "2.0": date(2026, 7, 31),
    "2025-07": date(2026, 7, 31),
    "2026-01": date(2027, 1, 31),
    "2026-07": date(2028, 1, 31),
}
# Versions whose order, shipment and cancel contract (colon verbs, paged channels) this client speaks.
VERSIONS = ("2025-07", "2026-01", "2026-07")
DEFAULT_VERSION = "2026-07"
MAX_LIMIT = 250
DEFAULT_RATE_LIMIT = 150  # requests per window, per token (documented)
DEFAULT_RATE_WINDOW = 60.0
# Encoded characters of ReferenceIds / IDs per request: keeps URLs well under the ~2 kB that
# gateways and proxies commonly accept.
MAX_FILTER_CHARS = 1500
SECRET_EXTRA_KEYS: tuple[str, ...] = ()  # the only secret is the password (the token)

_LIST_OPERATIONS = frozenset({"orders"})


def _cancelled(status: Any) -> bool:
    """A ShipBob order or shipment status reading Cancelled, in any case."""
    return isinstance(status, str) and status.lower() == "cancelled"


@dataclass(frozen=True)
class CancelOutcome:
    """What an order cancel achieved, from the platform's answer.

    `status` keeps ShipBob's words (Success, PartialSuccess, Failure). `cancelled` lists the
    shipments now cancelled (by this request or an earlier one), `refused` the others with the
    platform's reason.
    """

    order_id: int
    status: str
    cancelled: tuple[int, ...]
    refused: dict[int, str]
    order: dict[str, Any] | None
    request_id: str | None = None

    @property
    def fully_cancelled(self) -> bool:
        if self.order is not None and _cancelled(self.order.get("status")):
            return True
        return bool(self.cancelled) and not self.refused

    @classmethod
    def from_reply(cls, order_id: int, reply: Reply) -> CancelOutcome:
        data = reply.data if isinstance(reply.data, dict) else {}
        order = data.get("order") if isinstance(data.get("order"), dict) else None
        now_cancelled = {
            s.get("id")
            for s in (order or {}).get("shipments") or []
            if isinstance(s, dict) and _cancelled(s.get("status"))
        }
        cancelled: list[int] = []
        refused: dict[int, str] = {}
        # only is_success matters here, whatever `action` says
        for result in data.get("canceled_shipment_results") or []:
            if not isinstance(result, dict):
                continue
            sid: Any = result.get("shipment_id")  # the platform's, as sent
            if result.get("is_success") or sid in now_cancelled:
                cancelled.append(sid)
            else:
                refused[sid] = str(result.get("reason") or "")
        return cls(
            order_id=int(data.get("order_id") or order_id),
            status=str(data.get("status") or ""),
            cancelled=tuple(cancelled),
            refused=refused,
            order=order,
            request_id=reply.request_id,
        )


def check_version(version: str, today: date) -> None:
    """Refuse a version this client does not speak or that ShipBob no longer serves on `today`."""
    live = [v for v in VERSIONS if END_OF_SUPPORT[v] >= today]
    choices = ", ".join(f"{v} (supported until {END_OF_SUPPORT[v]})" for v in live) or "none: upgrade orderops"
    end = END_OF_SUPPORT.get(version)
    if end is not None and end < today:
        raise ConfigurationError(
            f"shipbob: api_version {version!r} reached end of support on {end} and is no "
            f"longer accessible; use {choices}"
        )
    if version not in VERSIONS:
        raise ConfigurationError(f"shipbob: api_version {version!r} is not one this client speaks; use {choices}")


def _quota(limit: float, window: float) -> tuple[float, float]:
    """(rate per second, burst) such that burst + rate x window stays under `limit`.

    One request of the window is kept spare: the platform counts arrivals, and uneven network
    delay can bring requests sent 1/rate apart closer together.
    """
    if limit < 2 or window <= 0:
        raise ConfigurationError(f"shipbob: rate limit {limit} per {window} s must be at least 2 per positive window")
    burst = max(1.0, min(5.0, limit / 30))
    spare = 1.0 if limit - burst > 2 else 0.0
    return (limit - burst - spare) / window, burst


def _when(value: datetime | str | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError(f"{name}: a datetime without a time zone is ambiguous; give an aware datetime")
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _positive_id(value: Any, name: str) -> int:
    """An id that goes into a URL path: a positive integer and nothing else."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return number


def _csv_batches(values: Iterable[Any], name: str, max_chars: int = MAX_FILTER_CHARS) -> list[str]:
    """Distinct values joined into comma lists whose encoded length stays under `max_chars`."""
    batches: list[str] = []
    current: list[str] = []
    size = 0
    seen: set[str] = set()
    for raw in values:
        value = str(raw).strip()
        if not value or value in seen:
            continue
        if "," in value:
            raise ValueError(f"{name}: {value!r} contains a comma, which the comma-separated filter cannot carry")
        seen.add(value)
        cost = len(quote(value, safe="")) + 3  # an encoded comma is %2C
        if current and size + cost > max_chars:
            batches.append(",".join(current))
            current, size = [], 0
        current.append(value)
        size += cost
    if current:
        batches.append(",".join(current))
    return batches


class ShipBobClient(PlatformClient):
    """ShipBob orders, shipments and cancels over httpx, paced to the token's quota."""

    platform = "shipbob"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        api_version: str = DEFAULT_VERSION,
        channel_id: int | str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limit: float = DEFAULT_RATE_LIMIT,
        rate_window: float = DEFAULT_RATE_WINDOW,
        token_source: Callable[[], str | None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        today: Callable[[], date] = lambda: datetime.now(timezone.utc).date(),
    ):
        if not token:
            raise ConfigurationError("shipbob: a bearer token (the connection password) is required")
        check_version(api_version, today())
        if channel_id not in (None, ""):
            try:
                channel_id = _positive_id(channel_id, "channel_id")
            except ValueError as exc:
                raise ConfigurationError(f"shipbob: {exc}") from None
        else:
            channel_id = None
        rate, burst = _quota(rate_limit, rate_window)
        super().__init__(base_url, timeout=timeout, retry=retry, transport=transport, sleep=sleep)
        self.api_version = api_version
        self.channel_id: int | None = channel_id
        self._token = token
        self._token_source = token_source
        # ShipBob counts every call of a token in one window, so all operations share one bucket.
        self._bucket = RateLimiter(
            rate, burst, clock=lambda: self.clock(), sleep=sleep
        )  # the client's clock, even one set later

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, **overrides: Any) -> ShipBobClient:
        """Build from a connection: password = token, extra = api_version, channel_id, timeout, quota."""
        extra = settings.extra
        version = str(extra.get("api_version") or DEFAULT_VERSION)
        kwargs: dict[str, Any] = dict(
            api_version=version,
            channel_id=extra.get("channel_id"),
            timeout=settings.timeout(),
            retry=settings.retry(),
            # at least 2: one request of each window is kept spare (_quota); the top is a typo guard
            rate_limit=settings.number("rate_limit", DEFAULT_RATE_LIMIT, 2, 100_000),
            rate_window=settings.number("rate_window_seconds", DEFAULT_RATE_WINDOW, 0, 3600, above=True),
        )
        kwargs.update(overrides)
        if not settings.password:
            raise ConfigurationError(
                f"connection {settings.conn_id!r}: password (the ShipBob bearer token) is required"
            )
        try:
            return cls(settings.base_url, settings.password, **kwargs)
        except ConfigurationError as exc:
            raise ConfigurationError(f"connection {settings.conn_id!r}: {exc}") from None

    # ------------------------------------------------------------------ PlatformClient hooks
    def limiter(self, operation: str) -> RateLimiter:
        return self._bucket

    def share_quotas(self, quotas: Any) -> None:
        self._bucket.share(quotas, self.platform)

    def _prepare(self, request: httpx.Request, operation: str) -> httpx.Request:
        request.headers["Authorization"] = f"Bearer {self._token}"
        request.headers["Accept"] = "application/json"
        if self.channel_id is not None:
            request.headers["shipbob_channel_id"] = str(self.channel_id)
        return request

    def _refresh_auth(self) -> None:
        new = self._token_source() if self._token_source is not None else None
        if not new or new == self._token:
            raise AuthError(
                self.platform,
                "auth",
                "the token was refused (revoked?) and the connection holds no "
                "other one: put a valid token in the connection password",
                status=401,
            )
        self._token = new
        log.info("shipbob: token refused; continuing with the token the connection holds now")

    def _safe(self, text: str, limit: int = 500) -> str:
        """Platform text for an exception: the token never, and not too much of it."""
        if self._token:
            text = text.replace(self._token, "***")
        return text[:limit]

    def _error_text(self, response: httpx.Response) -> tuple[str, Any, dict[str, Any] | None]:
        """(message, code, validation dictionary) from any of ShipBob's error shapes."""
        try:
            body = response.json()
        except ValueError:
            text = response.text.strip()
            return (
                self._safe(text) if text and not text.startswith("<") else response.reason_phrase or "error",
                None,
                None,
            )
        if isinstance(body, dict):
            if isinstance(body.get("message"), str):
                # {code, message} (2026-01 ErrorResponse) or the gateway's {statusCode, message}
                code = body.get("code") if isinstance(body.get("code"), str) else None
                return self._safe(body["message"]), code, None
            if isinstance(body.get("title"), str) and "status" in body:  # problem+json
                return self._safe(body["title"]), None, None
            # The ASP.NET validation dictionary {"<field>": ["msg", ...]}
            parts = []
            for key, value in body.items():
                messages = value if isinstance(value, list) else [value]
                text = "; ".join(str(m) for m in messages)
                parts.append(f"{key}: {text}" if key else text)
            if parts:
                return self._safe(" | ".join(parts)), None, body
        return self._safe(str(body)), None, None

    def _check(self, response: httpx.Response, operation: str) -> Reply:
        status = response.status_code
        request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
        kw = dict(status=status, request_id=request_id)
        if 200 <= status < 300:
            try:
                data = response.json() if response.content else None
            except ValueError:
                raise MalformedResponseError(
                    self.platform, operation, "response body is not JSON (truncated or from a proxy)", **kw
                ) from None
            expected = list if operation in _LIST_OPERATIONS else dict
            if not isinstance(data, expected):
                raise MalformedResponseError(
                    self.platform, operation, f"expected a JSON {expected.__name__}, got {type(data).__name__}", **kw
                )
            return Reply(data, request_id, status, dict(response.headers))
        message, code, errors = self._error_text(response)
        if status == 401:
            invalid = "invalid_token" in response.headers.get("www-authenticate", "")
            text = "token refused: check the connection password (ShipBob bearer token)"
            if invalid and self._token_source is not None:
                raise TokenExpiredError(self.platform, operation, text, **kw)
            raise AuthError(self.platform, operation, text, **kw)
        if status == 403:
            where = f"channel {self.channel_id}" if self.channel_id is not None else "the token"
            raise AuthError(
                self.platform,
                operation,
                f"permission refused: {where} lacks the scope for this call "
                "(use a channel with *_write scopes for cancels)",
                **kw,
            )
        if status == 404:
            raise NotFoundError(self.platform, operation, message or "not found", **kw)
        if status == 429:
            raise ThrottledError(
                self.platform,
                operation,
                message or "rate limit exceeded",
                retry_after=self._retry_after(response),
                **kw,
            )
        if status >= 500 or status == 408:
            raise RetryableError(self.platform, operation, message or "server error", code=code, **kw)
        error = BusinessError(self.platform, operation, message or f"HTTP {status}", code=code, **kw)
        error.errors = errors  # the validation dictionary, when the platform sent one
        raise error

    @staticmethod
    def _retry_after(response: httpx.Response) -> float | None:
        """ShipBob's `x-retry-after` (seconds), else a standard `Retry-After` in seconds."""
        for name in ("x-retry-after", "retry-after"):
            raw = response.headers.get(name)
            if raw:
                try:
                    return max(0.0, float(raw))
                except ValueError:
                    continue
        return None

    # ------------------------------------------------------------------ paths
    def _path(self, *parts: str) -> str:
        return "/" + "/".join((self.api_version, *parts))

    def require_channel(self, operation: str) -> None:
        if self.channel_id is None:
            raise ConfigurationError(
                f"shipbob {operation}: extra.channel_id (the channel with write scope, "
                "sent as shipbob_channel_id) is required for cancels"
            )

    # ------------------------------------------------------------------ reads
    def orders(
        self,
        reference_ids: Iterable[str] | None = None,
        ids: Iterable[int] | None = None,
        last_update_start: datetime | str | None = None,
        last_update_end: datetime | str | None = None,
        start_date: datetime | str | None = None,
        end_date: datetime | str | None = None,
        has_tracking: bool | None = None,
        limit: int = MAX_LIMIT,
        *,
        sort: str = "Oldest",
    ) -> Iterator[dict[str, Any]]:
        """Orders matching every filter given (AND), lazily, each once, as ShipBob's OrderViewModel.

        Long `reference_ids` / `ids` lists are split into several listings so URLs stay short; an
        empty list means "no order" (not "every order") and sends nothing. Oldest-first keeps
        page boundaries still while new orders arrive (they land on the last page).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit: expected 1-{MAX_LIMIT}, got {limit!r}")
        if sort not in ("Oldest", "Newest"):
            raise ValueError(f"sort: expected Oldest or Newest, got {sort!r}")
        if isinstance(reference_ids, str):
            reference_ids = [reference_ids]
        ref_batches: list[str | None] = [None]
        id_batches: list[str | None] = [None]
        if reference_ids is not None:
            ref_batches = list(_csv_batches(reference_ids, "reference_ids"))
        if ids is not None:
            id_batches = list(_csv_batches((_positive_id(i, "ids") for i in ids), "ids"))
        if not ref_batches or not id_batches:
            return iter(())
        base: list[tuple[str, str]] = [("Limit", str(limit)), ("SortOrder", sort)]
        for name, value in (
            ("LastUpdateStartDate", _when(last_update_start, "last_update_start")),
            ("LastUpdateEndDate", _when(last_update_end, "last_update_end")),
            ("StartDate", _when(start_date, "start_date")),
            ("EndDate", _when(end_date, "end_date")),
        ):
            if value is not None:
                base.append((name, value))
        if has_tracking is not None:
            base.append(("HasTracking", "true" if has_tracking else "false"))
        return self._orders(base, ref_batches, id_batches, limit)

    def _orders(
        self, base: list[tuple[str, str]], ref_batches: list[str | None], id_batches: list[str | None], limit: int
    ) -> Iterator[dict[str, Any]]:
        seen: set[Any] = set()
        for refs, id_list in product(ref_batches, id_batches):
            params = list(base)
            if refs is not None:
                params.append(("ReferenceIds", refs))
            if id_list is not None:
                params.append(("IDs", id_list))
            for order in self._listing(params, limit):
                # Page-number paging over a list that changes can show an order twice: yield it once.
                oid = record_id(order, "id")
                if oid is not None and oid in seen:
                    continue
                seen.add(oid)
                yield order

    def _listing(self, params: list[tuple[str, str]], limit: int) -> Iterator[dict[str, Any]]:
        path = self._path("order")
        first = tuple([("Page", "1")] + params)

        def fetch(cursor: Query | None) -> tuple[list[Any], Query | None]:
            query = cursor or first
            reply = self.call("orders", "GET", path, params=list(query))
            return reply.data, self._next_page(reply, query, path, len(reply.data), limit)

        return self.listing(fetch, "orders", key=lambda order: record_id(order, "id"))

    def _next_page(self, reply: Reply, query: Query, path: str, count: int, limit: int) -> Query | None:
        """The next page's query: from Next-Page, else Total-Pages, else a full page means maybe more.

        ShipBob documents no Next-Page format, so a link that is not a page of this listing is set
        aside for page numbers; one to another host is refused (the token goes with the request)."""
        headers = reply.headers
        page = int(dict(query).get("Page", "1"))
        link = headers.get("next-page")
        if link:
            parts = urlsplit(link)
            if parts.netloc and parts.netloc != self.http.base_url.netloc.decode():
                raise PagingError(self.platform, "orders", f"Next-Page points to another host ({parts.netloc})")
            next_query = tuple(parse_qsl(parts.query, keep_blank_values=True))
            if (not parts.path or parts.path.rstrip("/").endswith(path)) and any(
                k.lower() == "page" for k, _ in next_query
            ):
                return next_query
            log.warning("ShipBob Next-Page %r is not a page of %s: paging by page number", link[:200], path)
        total = headers.get("total-pages")
        if total is not None and total.strip().isdigit():
            if page >= int(total):
                return None
        elif count < limit:
            return None
        return tuple((k, str(page + 1) if k == "Page" else v) for k, v in query)

    def order(self, order_id: int) -> dict[str, Any]:
        """One order (OrderViewModel, shipments included)."""
        oid = _positive_id(order_id, "order_id")
        order: dict[str, Any] = self.call("order", "GET", self._path("order", str(oid))).data
        return order

    def channels(self) -> list[dict[str, Any]]:
        """The channels the token sees ({id, name, application_name, scopes}), page by page."""
        path = self._path("channel")

        def fetch(cursor: Query | None) -> tuple[list[Any], Query | None]:
            data = self.call("channels", "GET", path, params=list(cursor) if cursor else None).data
            items = data.get("items")
            if not isinstance(items, list):
                raise MalformedResponseError(self.platform, "channels", "expected items[]")
            link = data.get("next")
            return items, tuple(parse_qsl(urlsplit(link).query)) if link else None

        return list(self.listing(fetch, "channels", key=lambda c: c.get("id") if isinstance(c, dict) else None))

    # ------------------------------------------------------------------ writes
    def cancel_order(self, order_id: int) -> Reply:
        """Cancel every shipment of an order; Reply.data is ShipBob's CanceledOrderViewModel.

        A 200 can still say `Failure` or `PartialSuccess` (shipments past picking are refused);
        see CancelOutcome.from_reply. Sent once: only a 429 or a refused connection (the request
        never reached ShipBob) is retried. Any other failure is raised for the caller to check the
        order first.
        """
        oid = _positive_id(order_id, "order_id")
        self.require_channel("cancel_order")
        return self.call("cancel_order", "POST", self._path(f"order/{oid}:cancel"), retry_safe=False)
