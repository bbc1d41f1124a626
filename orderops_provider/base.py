"""What every platform client shares: typed errors, client-side quotas, retries, call counts.

Each platform client (tiktok.py, shopify.py, amazon_mcf.py, shipbob.py) is a plain class built on
httpx that works without Airflow (tests, benchmarks); its Airflow hook only turns a connection into
client settings. One place (`PlatformClient.call`) does rate limiting, retries and counting.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, as httpx builds by default (SSL_CERT_FILE/DIR, else
    certifi): building one reads the CA bundle, some 50 ms, and a run opens a client per platform."""
    return httpx.create_ssl_context()


def http_client(**options: Any) -> httpx.Client:
    """An httpx client on the shared TLS context."""
    return httpx.Client(verify=tls_context(), **options)


class PlatformError(Exception):
    """A call that failed; carries the platform's own code, message and request id (never secrets)."""

    retryable = False

    def __init__(
        self,
        platform: str,
        operation: str,
        message: str,
        *,
        code: str | int | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ):
        self.platform = platform
        self.operation = operation
        self.code = code
        self.status = status
        self.request_id = request_id
        self.platform_message = message
        detail = ", ".join(
            f"{k} {v}" for k, v in (("code", code), ("HTTP", status), ("request id", request_id)) if v is not None
        )
        super().__init__(f"{platform} {operation}: {message}" + (f" ({detail})" if detail else ""))


class RetryableError(PlatformError):
    """Worth trying again: 5xx, timeouts, connection errors, unreadable bodies."""

    retryable = True


class ThrottledError(RetryableError):
    """The platform said slow down; `retry_after` is its own hint in seconds when it gave one."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class MalformedResponseError(RetryableError):
    """A body that is not the documented shape (truncated, HTML from a proxy, wrong JSON)."""


class AuthError(PlatformError):
    """Credentials refused: fix the connection (or refresh the token) before retrying."""


class TokenExpiredError(AuthError):
    """An access token that expired: the client refreshes it and retries once."""


class NotFoundError(PlatformError):
    """The object does not exist on the platform."""


class BusinessError(PlatformError):
    """The platform understood the request and refused it (state, validation, rules)."""

    # ShipBob's validation dictionary ({field: [messages]}) when it sent one: set by its client
    errors: dict[str, Any] | None


class PagingError(PlatformError):
    """A page that repeats or a cursor that loops: stopped instead of followed forever."""


class ConfigurationError(ValueError):
    """A connection or setting that cannot work; the message names the field."""


@dataclass(frozen=True)
class Reply:
    """A decoded answer and the platform's request id (for the ledger and lineage)."""

    data: Any
    request_id: str | None = None
    status: int = 200
    headers: dict[str, Any] = field(default_factory=dict)


class RateLimiter:
    """Client-side token bucket matched to a documented quota; `acquire` sleeps until allowed."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not (0 < rate < math.inf and 1 <= burst < math.inf):  # NaN fails too
            raise ConfigurationError(f"rate limit: rate {rate} and burst {burst} must be positive and finite")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()
        self.shared: tuple[Any, str] | None = None

    def share(self, quotas: Any, bucket: str) -> None:
        """Draw from `bucket` of a quota store shared with other processes (include.store.quotas.SharedQuotas)
        instead of this process's own copy."""
        self.shared = (quotas, bucket)

    def acquire(self, cost: float = 1.0) -> float:
        """Take `cost` tokens, sleeping as needed; returns the seconds waited."""
        if self.shared is not None:
            quotas, bucket = self.shared
            wait: float = quotas.reserve(bucket, self.rate, self.burst, cost)
            if wait > 0:
                self._sleep(wait)
            return wait
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                # max: a clock swapped for another (a test's) may read earlier; time never runs back here
                self._tokens = min(self.burst, self._tokens + max(0.0, now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= cost - 1e-9:  # a refill computed to exactly the wait can fall short by rounding
                    self._tokens = max(0.0, self._tokens - cost)
                    return waited
                wait = (cost - self._tokens) / self.rate
            self._sleep(wait)
            waited += wait

    def drain(self) -> None:
        """After a 429 the platform's bucket is empty; empty ours so we pace from zero."""
        if self.shared is not None:
            quotas, bucket = self.shared
            quotas.settle(bucket, self.rate, self.burst, at_most=0.0)
            return
        with self._lock:
            self._tokens = 0.0
            self._stamp = self._clock()


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, honouring the platform's retry hint when larger."""

    max_attempts: int = 6
    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, hint: float | None = None) -> float:
        backoff: float = min(self.cap, self.base * 2 ** (attempt - 1))
        jittered = backoff / 2 + self.rng.uniform(0, backoff / 2)
        return max(hint or 0.0, jittered)


@dataclass
class CallStats:
    """Requests sent per operation (every attempt), with retries, throttles and failures."""

    calls: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    wait_seconds: float = 0.0

    def as_rows(self, platform: str) -> list[dict[str, Any]]:
        ops = sorted(set(self.calls) | set(self.failures))
        return [
            {
                "platform": platform,
                "operation": op,
                "calls": self.calls[op],
                "retries": self.retries[op],
                "throttled": self.throttled[op],
                "failures": self.failures[op],
            }
            for op in ops
        ]


# A listing that goes on past these is broken, not long: 5,000 pages hold 250,000 orders or more.
MAX_PAGES = 5000
MAX_EMPTY_PAGES = 3
# ... and one still going after an hour is stuck, whatever its pages look like (outside Airflow no
# task timeout would stop it)
MAX_LISTING_SECONDS = 3600.0


class PlatformClient:
    """Base of the four clients. Subclasses implement `_prepare`, `_check` and their operations."""

    platform = "platform"
    # the client's clock: a listing's time bound and its pacing (tests give their own)
    listing_seconds = MAX_LISTING_SECONDS
    clock = staticmethod(time.monotonic)

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        limits: dict[str, tuple[float, float]] | None = None,
        default_limit: tuple[float, float] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{self.platform}: base URL {base_url!r} must start with http:// or https://")
        self.http = http_client(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport, follow_redirects=False
        )
        self.retry = retry or RetryPolicy()
        self.stats = CallStats()
        self._sleep = sleep
        self._limits_config = limits or {}
        self._default_limit = default_limit
        self._limiters: dict[str, RateLimiter] = {}
        self._quotas: Any = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def listing(
        self, fetch: Callable[[Any], tuple[list[Any], Any]], operation: str, key: Callable[[Any], Any] | None = None
    ) -> Iterator[Any]:
        """`pages` over this client's calls: bounded in pages and in time."""
        return pages(
            fetch,
            None,
            platform=self.platform,
            operation=operation,
            key=key,
            max_seconds=self.listing_seconds,
            clock=self.clock,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def limiter(self, operation: str) -> RateLimiter | None:
        with self._lock:
            if operation not in self._limiters:
                spec = self._limits_config.get(operation, self._default_limit)
                if spec is None:
                    return None
                self._limiters[operation] = RateLimiter(*spec, clock=self.clock, sleep=self._sleep)
                self._share(operation)
            return self._limiters[operation]

    def _share(self, operation: str) -> None:
        if self._quotas is not None:
            self._limiters[operation].share(self._quotas, f"{self.platform}:{operation}")

    def share_quotas(self, quotas: Any) -> None:
        """Draw every call from quotas shared with the shop's other task processes
        (include.store.quotas.SharedQuotas), one bucket per metered operation."""
        with self._lock:
            self._quotas = quotas
            for operation in self._limiters:
                self._share(operation)

    # Subclass hooks
    def _prepare(self, request: httpx.Request, operation: str) -> httpx.Request:
        """Add auth (and a fresh signature) to one attempt."""
        return request

    def _check(self, response: httpx.Response, operation: str) -> Reply:
        """Return the decoded answer as a Reply or raise a typed PlatformError."""
        raise NotImplementedError

    def _refresh_auth(self) -> None:
        """Get a new access token after TokenExpiredError (once per call)."""
        raise NotImplementedError

    def _cost(self, operation: str, kwargs: dict[str, Any]) -> float:
        return 1.0

    def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, Any] | None = None,
        retry_safe: bool = True,
        cost: float = 1.0,
    ) -> Reply:
        """One logical call: paced, authenticated per attempt, retried when safe, counted.

        `retry_safe=False` (a write without an idempotency key) retries only failures that
        prove the platform never processed the request (429, connect errors); anything
        ambiguous (timeout after sending, 5xx, unreadable body) is raised for the caller to
        reconcile from the remote state.
        """
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            limiter = self.limiter(operation)
            if limiter is not None:
                self.stats.wait_seconds += limiter.acquire(cost)
            request = self.http.build_request(method, path, params=params, json=json, content=content, headers=headers)
            request = self._prepare(request, operation)
            self.stats.calls[operation] += 1
            try:
                response = self.http.send(request)
            except httpx.ConnectError as exc:
                error: PlatformError = RetryableError(
                    self.platform, operation, f"connection failed: {type(exc).__name__}"
                )
                sent = False
            except httpx.TimeoutException as exc:
                error = RetryableError(self.platform, operation, f"timed out: {type(exc).__name__}")
                sent = not isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout))
            except httpx.TransportError as exc:
                error = RetryableError(self.platform, operation, f"transport error: {type(exc).__name__}")
                sent = True
            else:
                try:
                    return self._check(response, operation)
                except TokenExpiredError:
                    if refreshed:
                        self.stats.failures[operation] += 1
                        raise
                    refreshed = True
                    try:
                        self._refresh_auth()
                    except PlatformError:
                        self.stats.failures[operation] += 1  # a refresh that fails ends the call
                        raise
                    attempt -= 1  # a refresh is not a failed attempt
                    continue
                except PlatformError as exc:
                    error = exc
                    sent = not isinstance(exc, ThrottledError)
            if isinstance(error, ThrottledError):
                self.stats.throttled[operation] += 1
                if limiter is not None:
                    limiter.drain()
            may_retry = error.retryable and (retry_safe or not sent)
            if not may_retry or attempt >= self.retry.max_attempts:
                self.stats.failures[operation] += 1
                raise error
            wait = self.retry.delay(attempt, getattr(error, "retry_after", None))
            self.stats.retries[operation] += 1
            log.info("%s %s: %s; retry %d in %.1fs", self.platform, operation, error.platform_message, attempt, wait)
            self._sleep(wait)
            self.stats.wait_seconds += wait


def record_id(item: Any, field_name: str) -> str | int | None:
    """An entry's id for spotting repeats, or None when the entry has no usable one. Such entries are
    still yielded: the caller quarantines what it cannot stage, one bad entry never ends a listing."""
    value = item.get(field_name) if isinstance(item, dict) else None
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "" else None


def pages(
    fetch: Callable[[Any], tuple[list[Any], Any]],
    first_cursor: Any = None,
    *,
    platform: str,
    operation: str,
    key: Callable[[Any], Any] | None = None,
    max_pages: int = MAX_PAGES,
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Any]:
    """Yield items page by page from `fetch(cursor) -> (items, next_cursor or None)`.

    Stops with PagingError when a cursor comes back twice, a page repeats items already seen,
    MAX_EMPTY_PAGES empty pages in a row still point further, `max_pages` is passed or a further
    page would begin more than `max_seconds` after the first (on `clock`): listings that would
    otherwise never end. Items whose key is None are not compared.
    """
    seen_cursors: set[Any] = set()
    seen_keys: set[Any] = set()
    cursor = first_cursor
    empty = 0
    began = clock()
    for page in range(1, max_pages + 2):
        if page > max_pages:
            raise PagingError(platform, operation, f"more than {max_pages} pages: the listing does not end")
        if max_seconds is not None and page > 1 and clock() - began > max_seconds:
            raise PagingError(platform, operation, f"still listing after {max_seconds:g} s ({page - 1} pages): stopped")
        items, next_cursor = fetch(cursor)
        empty = 0 if items else empty + 1
        if empty >= MAX_EMPTY_PAGES and next_cursor not in (None, ""):
            raise PagingError(platform, operation, f"{empty} empty pages in a row, each pointing to another")
        if key is not None:
            page_keys = [k for k in (key(item) for item in items) if k is not None]
            repeated = seen_keys.intersection(page_keys)
            if repeated and len(repeated) == len(page_keys):
                raise PagingError(
                    platform, operation, f"page after cursor {cursor!r} repeats {len(repeated)} items already seen"
                )
            seen_keys.update(page_keys)
        yield from items
        if next_cursor in (None, ""):
            return
        if next_cursor == cursor or next_cursor in seen_cursors:
            raise PagingError(platform, operation, f"cursor {next_cursor!r} came back: the listing loops")
        seen_cursors.add(next_cursor)
        cursor = next_cursor


def chunked(values: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for value in values:
        batch.append(value)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
