"""Amazon SP-API Multi-Channel Fulfillment client and Airflow hook (docs/architecture.md §5).

Contract: Amazon's SP-API documentation and its models in
tests/fixtures/vendor-specs/amazon-sp-api (Fulfillment Outbound 2020-07-01, Reports 2021-06-30).

* Auth: the LWA refresh token is exchanged for an access token (`POST {lwa_url}`, form-encoded
  refresh_token grant); the token is cached until shortly before `expires_in` runs out and sent
  as `x-amz-access-token` on every SP-API request. No SigV4: SP-API stopped requiring it in
  October 2023. A 403 whose details say the token expired (or is unknown) triggers one new
  exchange and one resend.
* Every request carries a `user-agent` ("You must include a User-Agent header").
* Quotas: a token bucket per operation at the rate and burst of its Usage Plan table; when a
  response carries `x-amzn-RateLimit-Limit` (the rate actually applied to this seller), the
  bucket's rate follows it. One token of each burst is held back for network jitter. 429
  QuotaExceeded has no Retry-After, so the bucket is emptied and the retry waits for it to refill.
* Secrets: client secret, refresh token, access tokens and presigned document URLs are masked
  (the hook passes Airflow's mask_secret), scrubbed from exception text, and presigned query
  strings are cut from httpx's request log lines.
* Errors: 400 InvalidInput -> BusinessError (code, message, request id); "Requested order 'x'
  not found" (a 400 on this API) and 404 -> NotFoundError; 403 -> AuthError / TokenExpiredError;
  429 -> ThrottledError; 5xx -> RetryableError.
* cancelFulfillmentOrder has no idempotency key: sent with retry_safe=False. A repeat answered
  "Reason: DuplicateCancelRequest" becomes AlreadyCancelledError (code DuplicateCancelRequest);
  after an ambiguous failure the ledger's executor reads the order before anything is sent again.
* Bulk tracking: GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL through the Reports API (create,
  poll, document, download from the presigned URL without the access token, gunzip, TSV).
"""

from __future__ import annotations

import gzip
import logging
import math
import platform as _platform
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PlatformClient,
    PlatformError,
    Reply,
    RetryableError,
    RetryPolicy,
    ThrottledError,
    TokenExpiredError,
    record_id,
)
from orderops_provider.connection import ConnectionSettings

log = logging.getLogger(__name__)

DEFAULT_LWA_URL = "https://api.amazon.com/auth/o2/token"
DEFAULT_MARKETPLACE_ID = "ATVPDKIKX0DER"  # amazon.com (US)
USER_AGENT = f"orderops/1.0 (Language=Python/{_platform.python_version()}; Platform={_platform.system() or 'unknown'})"
SECRET_EXTRA_KEYS = ("refresh_token",)

# The SP-API versions this client speaks (fixed in its paths; docs/api-versions.md)
VERSIONS = {"fulfillment_outbound": "2020-07-01", "reports": "2021-06-30"}
FBA = f"/fba/outbound/{VERSIONS['fulfillment_outbound']}"
REPORTS = f"/reports/{VERSIONS['reports']}"
SHIPMENTS_REPORT = "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL"

LWA = "lwa:token"
LIST = "listAllFulfillmentOrders"
GET = "getFulfillmentOrder"
CANCEL = "cancelFulfillmentOrder"
CREATE_REPORT = "createReport"
GET_REPORT = "getReport"
GET_REPORTS = "getReports"
GET_DOCUMENT = "getReportDocument"
DOWNLOAD = "downloadReportDocument"

# operationId -> (rate per second, burst), from each operation's Usage Plan table.
QUOTAS: dict[str, tuple[float, float]] = {
    LIST: (2.0, 30),
    GET: (2.0, 30),
    CANCEL: (2.0, 30),
    "getPackageTrackingDetails": (2.0, 30),
    "createFulfillmentOrder": (2.0, 30),
    CREATE_REPORT: (0.0167, 15),
    GET_REPORT: (2.0, 15),
    GET_REPORTS: (0.0222, 10),
    GET_DOCUMENT: (0.0167, 15),
    "cancelReport": (0.0222, 10),
}
# Operations that do not go to the SP-API host with an access token.
_NO_TOKEN = frozenset({LWA, DOWNLOAD})
# Where each operation's answer must have something, or the body is not the documented shape.
_SHAPES: dict[str, tuple[tuple[str, type], ...]] = {
    LIST: (("payload", dict),),
    GET: (("payload", dict), ("fulfillmentOrder", dict)),
    CREATE_REPORT: (("reportId", str),),
    GET_REPORT: (("processingStatus", str),),
    GET_REPORTS: (("reports", list),),
    GET_DOCUMENT: (("url", str),),
}
TOKEN_MARGIN_SECONDS = 60.0
JITTER_RESERVE = 1.0
_REASON = re.compile(r"Reason:\s*([A-Za-z]+)\.?\s*$")
_NOT_FOUND = re.compile(r"^Requested (order|package) '.*' not found$")
_ID = re.compile(r"^[^\x00-\x1f/\\?#]{1,40}$")
_MARKETPLACE_ID = re.compile(r"^[A-Z0-9]{1,20}$")
FIRST_REPORT_POLL = 1.0  # seconds before the first getReport; doubles up to poll_interval
MAX_FIRST_REPORT_POLL = 120.0  # the longest first wait a slow last report may set
_REQUIRED_REPORT_COLUMNS = ("amazon-order-id", "merchant-order-id", "tracking-number")


class AlreadyCancelledError(BusinessError):
    """cancelFulfillmentOrder on an order already cancelled (the platform's DuplicateCancelRequest)."""


class NotCancellableError(BusinessError):
    """cancelFulfillmentOrder refused: the order is past Planning (picking started or shipped)."""


class ReportFailedError(PlatformError):
    """A report that ended FATAL: asking again gives the same answer (range, type, permissions)."""


class ReportTimeoutError(RetryableError):
    """A report still processing when the caller's timeout ran out."""


def _timestamp(value: datetime | str | None, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, datetime):
        raise TypeError(f"{name}: expected a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError(f"{name}: a datetime without a time zone is ambiguous; give an aware datetime")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _order_id(value: Any) -> str:
    """A sellerFulfillmentOrderId for a URL path: 1-40 characters, nothing that changes the path."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None or not _ID.match(text) or text.strip(".") == "":
        raise ValueError(f"seller_fulfillment_order_id: expected 1-40 characters without / \\ ? #, got {value!r}")
    return text


def parse_flat_file(content: bytes) -> list[dict[str, str]]:
    """Rows of a tab-delimited report, keyed by its header row (cells are not quoted)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = content.decode("cp1252", errors="replace")  # some marketplaces deliver Windows-1252
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return []
    header = lines[0].split("\t")
    if len(header) < 2 or any(not name.strip() for name in header):
        raise MalformedResponseError("amazon_mcf", DOWNLOAD, "report document has no tab-separated header row")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) > len(header):
            raise MalformedResponseError(
                "amazon_mcf", DOWNLOAD, f"report line {number} has {len(cells)} cells for {len(header)} columns"
            )
        cells += [""] * (len(header) - len(cells))  # trailing empty cells may be cut
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


class _PresignedUrlFilter(logging.Filter):
    """httpx logs every request URL at INFO; a presigned report URL is a credential for 5 minutes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("x-amz-signature" in str(a).lower() for a in record.args):
            record.args = tuple(
                str(a).split("?", 1)[0] + "?<presigned query redacted>" if "x-amz-signature" in str(a).lower() else a
                for a in record.args
            )
        return True


def _guard_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _PresignedUrlFilter) for f in logger.filters):
        logger.addFilter(_PresignedUrlFilter())


class AmazonMcfClient(PlatformClient):
    """Fulfillment Outbound 2020-07-01 and the shipments report over httpx, paced per operation."""

    platform = "amazon_mcf"

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        marketplace_id: str = DEFAULT_MARKETPLACE_ID,
        lwa_url: str = DEFAULT_LWA_URL,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_scale: float = 1.0,
        quotas: dict[str, tuple[float, float]] | None = None,
        user_agent: str = USER_AGENT,
        mask: Callable[[str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        first_report_poll: float | None = None,
    ):
        for name, value in (
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("refresh_token", refresh_token),
        ):
            if not value:
                raise ConfigurationError(f"amazon_mcf: {name} is required")
        if not isinstance(marketplace_id, str) or not _MARKETPLACE_ID.match(marketplace_id):
            raise ConfigurationError(
                f"amazon_mcf: marketplace_id must be a marketplace id (capital letters and "
                f"digits, as {DEFAULT_MARKETPLACE_ID}), got {marketplace_id!r}"
            )
        if not str(lwa_url).startswith(("http://", "https://")):
            raise ConfigurationError(f"amazon_mcf: lwa_url {lwa_url!r} must start with http:// or https://")
        if not rate_scale > 0:
            raise ConfigurationError(f"amazon_mcf: rate_scale must be positive, got {rate_scale!r}")
        if first_report_poll is not None and not 0 <= first_report_poll <= MAX_FIRST_REPORT_POLL:
            raise ConfigurationError(
                f"amazon_mcf: first_report_poll must be 0 to {MAX_FIRST_REPORT_POLL:g} seconds, "
                f"got {first_report_poll!r}"
            )
        plans = {op: (rate * rate_scale, max(1.0, round(burst * rate_scale))) for op, (rate, burst) in QUOTAS.items()}
        for op, spec in (quotas or {}).items():
            if op not in QUOTAS:  # a misspelt operation would leave the real one at its default
                raise ConfigurationError(
                    f"amazon_mcf: quotas.{op}: not an operation with a quota; known: {', '.join(QUOTAS)}"
                )
            try:
                rate, burst = (float(v) for v in spec)
            except (TypeError, ValueError):
                raise ConfigurationError(f"amazon_mcf: quotas.{op} must be [rate per second, burst]") from None
            if not (rate > 0 and burst >= 1 and math.isfinite(rate) and math.isfinite(burst)):
                raise ConfigurationError(f"amazon_mcf: quotas.{op} must be a positive rate and a burst of 1 or more")
            plans[op] = (rate, burst)
        # One token of the burst is held back: Amazon's bucket starts counting when our first
        # request arrives, ours when it leaves, so a later request that travels faster than the
        # first would otherwise find Amazon's bucket empty. One token absorbs 1/rate s of jitter.
        limits = {op: (rate, max(1.0, burst - JITTER_RESERVE)) for op, (rate, burst) in plans.items()}
        self.quotas = plans
        super().__init__(base_url, timeout=timeout, retry=retry, limits=limits, transport=transport, sleep=sleep)
        self.client_id = client_id
        self.marketplace_id = marketplace_id
        self.lwa_url = lwa_url
        self.user_agent = user_agent
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._mask = mask
        self._access_token: str | None = None
        self._token_deadline = 0.0  # monotonic time after which the cached token is not used
        self._token_lock = threading.RLock()
        self._download_compression: dict[str, str | None] = {}
        self.token_exchanges = 0
        self.build_seconds: float | None = None  # how long the last collected report took Amazon to build
        self.first_report_poll = first_report_poll  # set: the wait before a report's first poll, whatever was learned
        _guard_httpx_log()

    @classmethod
    def from_settings(cls, settings: ConnectionSettings, **overrides: Any) -> AmazonMcfClient:
        """login = LWA client id, password = client secret, extra = refresh_token, marketplace_id, ..."""
        extra = settings.extra
        where = f"connection {settings.conn_id!r}"
        if not settings.login:
            raise ConfigurationError(f"{where}: login (the LWA client id) is required")
        if not settings.password:
            raise ConfigurationError(f"{where}: password (the LWA client secret) is required")
        kwargs: dict[str, Any] = dict(
            # unset or null: amazon.com; a blank or malformed one is refused (__init__), not read as amazon.com
            marketplace_id=DEFAULT_MARKETPLACE_ID if extra.get("marketplace_id") is None else extra["marketplace_id"],
            lwa_url=str(extra.get("lwa_url") or DEFAULT_LWA_URL),
            timeout=settings.timeout(),
            retry=settings.retry(),
            rate_scale=settings.number("rate_scale", 1.0, 0, 1000, above=True),
        )
        if "first_report_poll" in extra:
            kwargs["first_report_poll"] = settings.number(
                "first_report_poll", FIRST_REPORT_POLL, 0, MAX_FIRST_REPORT_POLL
            )
        if extra.get("quotas") is not None:
            if not isinstance(extra["quotas"], dict):
                raise ConfigurationError(f"{where}: extra.quotas must map operationId to [rate, burst]")
            kwargs["quotas"] = extra["quotas"]
        if extra.get("user_agent"):
            kwargs["user_agent"] = str(extra["user_agent"])
        kwargs.update(overrides)
        refresh_token = settings.require("refresh_token", "the LWA refresh token")
        try:
            return cls(settings.base_url, settings.login, settings.password, refresh_token, **kwargs)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None

    # ------------------------------------------------------------------ auth
    def _secret(self, value: str | None) -> None:
        if value and self._mask is not None:
            self._mask(value)

    def _safe(self, text: Any, limit: int = 500) -> str:
        """Platform text for an exception or a log line: no credential, not too long."""
        safe = str(text)
        for secret in (self._client_secret, self._refresh_token, self._access_token):
            if secret:
                safe = safe.replace(secret, "***")
        return safe[:limit]

    def access_token(self) -> str:
        """The cached LWA access token, exchanged anew shortly before it expires."""
        with self._token_lock:
            if self._access_token is None or time.monotonic() >= self._token_deadline:
                return self._exchange()
            return self._access_token

    def _exchange(self) -> str:
        form = urlencode(
            {
                "grant_type": "refresh_token",
                "refresh_token": self._refresh_token,
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            }
        )
        asked = time.monotonic()
        data = self.call(
            LWA,
            "POST",
            self.lwa_url,
            content=form.encode(),
            headers={"content-type": "application/x-www-form-urlencoded;charset=UTF-8"},
        ).data
        token: str = data["access_token"]
        lifetime = float(data["expires_in"])
        self._secret(token)
        self._access_token = token
        # Stop using a token a minute before it expires (a tenth of its life when that is short).
        self._token_deadline = asked + lifetime - min(TOKEN_MARGIN_SECONDS, lifetime / 10)
        self.token_exchanges += 1
        return token

    def _refresh_auth(self) -> None:
        with self._token_lock:
            self._access_token = None
            self._exchange()
        log.info("amazon_mcf: access token refused as expired; exchanged the refresh token again")

    def _prepare(self, request: httpx.Request, operation: str) -> httpx.Request:
        request.headers["user-agent"] = self.user_agent
        if operation not in _NO_TOKEN:
            request.headers["x-amz-access-token"] = self.access_token()
            request.headers["accept"] = "application/json"
        return request

    # ------------------------------------------------------------------ answers
    def _adapt_rate(self, response: httpx.Response, operation: str) -> None:
        value = response.headers.get("x-amzn-RateLimit-Limit")
        limiter = self.limiter(operation) if value else None
        if limiter is None:
            return
        try:
            rate = float(value)
        except ValueError:
            return
        if math.isfinite(rate) and rate > 0 and abs(rate - limiter.rate) > 1e-9 * max(rate, 1.0):
            log.info(
                "amazon_mcf %s: rate limit %s/s applied by Amazon (was pacing at %s/s)", operation, rate, limiter.rate
            )
            limiter.rate = rate

    def _errors(self, response: httpx.Response) -> tuple[str | None, str, str]:
        """(code, message, details) of the first error of an SP-API error body."""
        try:
            body = response.json()
        except ValueError:
            text = response.text.strip()
            return (
                None,
                (
                    self._safe(text)
                    if text and not text.startswith("<")
                    else response.reason_phrase or f"HTTP {response.status_code}"
                ),
                "",
            )
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, dict):  # Reports: {"errors": {"errors": [...]}} in some answers
            errors = errors.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            return (
                str(first.get("code") or "") or None,
                self._safe(first.get("message") or ""),
                self._safe(first.get("details") or ""),
            )
        return None, self._safe(body), ""

    def _check(self, response: httpx.Response, operation: str) -> Reply:
        if operation == LWA:
            return self._check_lwa(response)
        if operation == DOWNLOAD:
            return self._check_download(response)
        status = response.status_code
        request_id = response.headers.get("x-amzn-RequestId")
        kw = dict(status=status, request_id=request_id)
        self._adapt_rate(response, operation)
        if 200 <= status < 300:
            try:
                data = response.json() if response.content else {}
            except ValueError:
                raise MalformedResponseError(
                    self.platform, operation, "response body is not JSON (truncated or from a proxy)", **kw
                ) from None
            if not isinstance(data, dict):
                raise MalformedResponseError(self.platform, operation, "expected a JSON object", **kw)
            node: Any = data
            for key, kind in _SHAPES.get(operation, ()):
                node = node.get(key) if isinstance(node, dict) else None
                if not isinstance(node, kind):
                    raise MalformedResponseError(self.platform, operation, f"answer has no {key} {kind.__name__}", **kw)
            return Reply(data, request_id, status, dict(response.headers))
        code, message, details = self._errors(response)
        text = f"{message} ({details})" if details else message
        kw["code"] = code or status
        if status == 429:
            raise ThrottledError(self.platform, operation, text or "quota exceeded", retry_after=None, **kw)
        if status >= 500:
            raise RetryableError(self.platform, operation, text or "server error", **kw)
        if status in (401, 403):
            hint = details.lower()
            if "expired" in hint or "revoked, malformed or invalid" in hint:
                raise TokenExpiredError(self.platform, operation, text, **kw)
            raise AuthError(self.platform, operation, text, **kw)
        if status == 404 or (status == 400 and _NOT_FOUND.match(message)):
            raise NotFoundError(self.platform, operation, text, **kw)
        reason = _REASON.search(message)
        if operation == CANCEL and reason:
            kw["code"] = reason.group(1)
            cls = AlreadyCancelledError if reason.group(1) == "DuplicateCancelRequest" else NotCancellableError
            raise cls(self.platform, operation, text, **kw)
        raise BusinessError(self.platform, operation, text or f"HTTP {status}", **kw)

    def _check_lwa(self, response: httpx.Response) -> Reply:
        status = response.status_code
        request_id = response.headers.get("x-amzn-RequestId")
        try:
            body = response.json()
        except ValueError:
            body = None
        if status == 200:
            if (
                not isinstance(body, dict)
                or not isinstance(body.get("access_token"), str)
                or not isinstance(body.get("expires_in"), (int, float))
            ):
                raise MalformedResponseError(
                    self.platform,
                    LWA,
                    "token answer has no access_token/expires_in",
                    status=status,
                    request_id=request_id,
                )
            return Reply(body, request_id, status, {})
        error = body.get("error") if isinstance(body, dict) else None
        description = self._safe(body.get("error_description") or error or "") if isinstance(body, dict) else ""
        kw = dict(code=error or status, status=status, request_id=request_id)
        if status == 429:
            raise ThrottledError(self.platform, LWA, description or "too many token requests", **kw)
        if status >= 500 or not isinstance(body, dict):
            raise RetryableError(self.platform, LWA, description or f"token endpoint answered HTTP {status}", **kw)
        # invalid_client / invalid_grant / unauthorized_client: the connection's credentials are wrong.
        raise AuthError(self.platform, LWA, f"token exchange refused: {description}", **kw)

    def _check_download(self, response: httpx.Response) -> Reply:
        status = response.status_code
        url = str(response.request.url)
        if status == 200:
            content = response.content
            expected = self._download_compression.get(url)
            if expected == "GZIP" and content[:2] == b"\x1f\x8b":
                try:
                    content = gzip.decompress(content)
                except (OSError, EOFError, zlib.error):
                    raise MalformedResponseError(
                        self.platform,
                        DOWNLOAD,
                        "report document is not complete gzip (truncated download?)",
                        status=status,
                    ) from None
            elif expected == "GZIP" and response.headers.get("content-encoding", "").lower() != "gzip":
                raise MalformedResponseError(
                    self.platform, DOWNLOAD, "report document should be gzip and is not", status=status
                )
            return Reply(content, None, status, {})
        # Presigned-URL hosts answer in XML: <Error><Code>AccessDenied</Code><Message>...</Message>
        code = re.search(r"<Code>([^<]*)</Code>", response.text or "")
        message = re.search(r"<Message>([^<]*)</Message>", response.text or "")
        kw: dict[str, Any] = {"code": code.group(1) if code else status, "status": status}
        text = self._safe(message.group(1) if message else f"HTTP {status}")
        if status == 429 or (status == 503 and code and code.group(1) == "SlowDown"):
            raise ThrottledError(self.platform, DOWNLOAD, text, **kw)
        if status >= 500:
            raise RetryableError(self.platform, DOWNLOAD, text, **kw)
        if status in (401, 403):
            raise AuthError(self.platform, DOWNLOAD, f"report document URL refused: {text}", **kw)
        if status == 404:
            raise NotFoundError(self.platform, DOWNLOAD, text, **kw)
        raise BusinessError(self.platform, DOWNLOAD, text, **kw)

    # ------------------------------------------------------------------ Fulfillment Outbound
    def list_fulfillment_orders(self, query_start_date: datetime | str | None = None) -> Iterator[dict[str, Any]]:
        """Every fulfillment order updated at or after `query_start_date` (all when None), lazily.

        Yields the platform's FulfillmentOrder objects as they come (50 a page in the simulator;
        the model states no page size), following nextToken.
        """
        start = _timestamp(query_start_date, "query_start_date")

        def fetch(token: str | None) -> tuple[list[Any], str | None]:
            params: dict[str, str] | None
            if token:
                params = {"nextToken": token}
            else:
                params = {"queryStartDate": start} if start else None
            payload = self.call(LIST, "GET", f"{FBA}/fulfillmentOrders", params=params).data["payload"]
            orders = payload.get("fulfillmentOrders") or []
            if not isinstance(orders, list):
                raise MalformedResponseError(self.platform, LIST, "fulfillmentOrders is not a list")
            return orders, payload.get("nextToken") or None

        return self.listing(fetch, LIST, key=lambda o: record_id(o, "sellerFulfillmentOrderId"))

    def get_fulfillment_order(self, seller_fulfillment_order_id: str) -> dict[str, Any]:
        """getFulfillmentOrder's payload: fulfillmentOrder, fulfillmentOrderItems, fulfillmentShipments, ..."""
        sfo_id = _order_id(seller_fulfillment_order_id)
        payload: dict[str, Any] = self.call(GET, "GET", f"{FBA}/fulfillmentOrders/{quote(sfo_id, safe='')}").data[
            "payload"
        ]
        return payload

    def cancel_fulfillment_order(self, seller_fulfillment_order_id: str) -> Reply:
        """Ask Amazon to cancel; Reply.data is the empty 200 body.

        Raises AlreadyCancelledError (code DuplicateCancelRequest) when the order is already
        cancelled and NotCancellableError (code OrderNotCancellable, or Amazon's reason) once
        picking has started. Sent once: only a 429 or a refused connection is retried; any
        other failure is raised for the caller to read the order first.
        """
        sfo_id = _order_id(seller_fulfillment_order_id)
        return self.call(CANCEL, "PUT", f"{FBA}/fulfillmentOrders/{quote(sfo_id, safe='')}/cancel", retry_safe=False)

    # ------------------------------------------------------------------ Reports
    def create_report(
        self, data_start: datetime | str, data_end: datetime | str, report_type: str = SHIPMENTS_REPORT
    ) -> str:
        """createReport; returns the reportId. No idempotency key: after an ambiguous failure the
        report list is read, and the request resent only when no matching report is in flight."""
        body = {
            "reportType": report_type,
            "marketplaceIds": [self.marketplace_id],
            "dataStartTime": _timestamp(data_start, "data_start"),
            "dataEndTime": _timestamp(data_end, "data_end"),
        }
        sent = 0
        while True:
            sent += 1
            try:
                reply = self.call(CREATE_REPORT, "POST", f"{REPORTS}/reports", json=body, retry_safe=False)
                report_id: str = reply.data["reportId"]
                return report_id
            except ThrottledError:
                raise
            except RetryableError as exc:
                found = self._report_in_flight(body)
                if found is not None:
                    log.info(
                        "amazon_mcf createReport: %s; report %s was created, not resending", exc.platform_message, found
                    )
                    return found
                if sent >= 3:
                    raise
                log.info("amazon_mcf createReport: %s; no such report in flight, sending again", exc.platform_message)

    def _report_in_flight(self, body: dict[str, Any]) -> str | None:
        """The newest queued or running report of the same type, marketplace and data range."""
        params = {
            "reportTypes": body["reportType"],
            "processingStatuses": "IN_QUEUE,IN_PROGRESS",
            "marketplaceIds": self.marketplace_id,
            "pageSize": 10,
        }
        start, end = _parse_time(body["dataStartTime"]), _parse_time(body["dataEndTime"])
        for report in self.call(GET_REPORTS, "GET", f"{REPORTS}/reports", params=params).data["reports"]:
            if (
                isinstance(report, dict)
                and _parse_time(report.get("dataStartTime")) == start
                and _parse_time(report.get("dataEndTime")) == end
                and report.get("reportId")
            ):
                return str(report["reportId"])
        return None

    def get_report(self, report_id: str) -> dict[str, Any]:
        report: dict[str, Any] = self.call(
            GET_REPORT, "GET", f"{REPORTS}/reports/{quote(str(report_id), safe='')}"
        ).data
        return report

    def get_report_document(self, document_id: str) -> dict[str, Any]:
        """{reportDocumentId, url, compressionAlgorithm?}; the url is a short-lived credential."""
        doc: dict[str, Any] = self.call(
            GET_DOCUMENT, "GET", f"{REPORTS}/documents/{quote(str(document_id), safe='')}"
        ).data
        url = doc["url"]
        self._secret(url)
        for key, value in parse_qsl(urlsplit(url).query):
            if key.lower() in ("x-amz-signature", "x-amz-security-token", "x-amz-credential"):
                self._secret(value)
        return doc

    def download_report_document(self, document: dict[str, Any]) -> bytes:
        """The document's bytes, gunzipped when compressionAlgorithm is GZIP. The presigned URL
        may be on another host and gets no access token."""
        url = document["url"]
        if not url.startswith(("https://", "http://")):
            raise MalformedResponseError(self.platform, GET_DOCUMENT, "report document url is not http(s)")
        self._download_compression[url] = str(document.get("compressionAlgorithm") or "").upper() or None
        try:
            content: bytes = self.call(DOWNLOAD, "GET", url).data
            return content
        finally:
            self._download_compression.pop(url, None)

    def report_rows(self, document_id: str) -> list[dict[str, str]]:
        """Download and parse a report document; a refused URL (expired: 5 minutes) is asked for again once."""
        document = self.get_report_document(document_id)
        try:
            content = self.download_report_document(document)
        except AuthError as exc:
            log.info("amazon_mcf: %s; asking for a fresh document URL", exc.platform_message)
            content = self.download_report_document(self.get_report_document(document_id))
        return parse_flat_file(content)

    def fulfilled_shipments(
        self,
        data_start: datetime | str,
        data_end: datetime | str,
        *,
        poll_interval: float = 15.0,
        timeout: float = 900.0,
    ) -> list[dict[str, str]] | None:
        """Rows of GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL for shipments in [data_start, data_end].

        Each row is a dict keyed by the file's header (amazon-order-id, merchant-order-id,
        shipment-id, sku, carrier, tracking-number, ...). A report Amazon CANCELLED gives None:
        Amazon cancels one with no data and one asked for too soon after the last (it regenerates
        this report at most every 30 minutes), so it says nothing about tracking. FATAL raises
        ReportFailedError; still processing after `timeout` seconds raises ReportTimeoutError
        (retryable; the report keeps running on Amazon).
        The same as `request_fulfilled_shipments` then `collect_fulfilled_shipments`, which a
        caller can split to do other work (the order listing) while Amazon builds the report.
        """
        report_id = self.request_fulfilled_shipments(data_start, data_end)
        return self.collect_fulfilled_shipments(report_id, poll_interval=poll_interval, timeout=timeout)

    def others_requested_since(self, report_id: str, since: datetime) -> bool:
        """Whether a shipments report other than `report_id` was asked for since `since` (by anyone
        on this seller's account): Amazon cancels one asked for too soon after another, as it
        cancels one with no data, so only this tells the two apart."""
        params = {
            "reportTypes": SHIPMENTS_REPORT,
            "marketplaceIds": self.marketplace_id,
            "pageSize": 10,
            "createdSince": _timestamp(since, "since"),
        }
        reports = self.call(GET_REPORTS, "GET", f"{REPORTS}/reports", params=params).data.get("reports") or []
        return any(isinstance(r, dict) and str(r.get("reportId")) != str(report_id) for r in reports)

    def request_fulfilled_shipments(self, data_start: datetime | str, data_end: datetime | str) -> str:
        """Ask for the shipments report; returns its reportId (collect it with `collect_fulfilled_shipments`)."""
        return self.create_report(data_start, data_end)

    def collect_fulfilled_shipments(
        self,
        report_id: str,
        *,
        poll_interval: float = 15.0,
        timeout: float = 900.0,
        expected_seconds: float | None = None,
    ) -> list[dict[str, str]] | None:
        """Wait for a requested shipments report and return its rows (see `fulfilled_shipments`).

        Polls after 1, 2, 4, ... seconds, at most `poll_interval` apart: a quick report is read
        as soon as it is done, a slow one costs a poll per `poll_interval` (getReport allows
        2 per second, so the few early polls cost nothing that matters). The first poll waits too:
        a report is never done the moment it was asked for, and each run asks for one. Given how long
        the last one took to build (`expected_seconds`, see `build_seconds`), the first poll waits that
        long, so a report that builds as fast as the last is read with one poll. A client made with
        `first_report_poll` waits that long instead (a simulator that builds reports at once).
        """
        deadline = self.clock() + timeout
        wait = min(FIRST_REPORT_POLL, poll_interval)
        self.build_seconds = None
        if self.first_report_poll is not None:
            self._sleep(self.first_report_poll)
        else:
            # Amazon's times are whole seconds: a second more than the last build, and a tenth for drift
            self._sleep(
                wait if expected_seconds is None else min(max(expected_seconds * 1.1 + 1, wait), MAX_FIRST_REPORT_POLL)
            )
        while True:
            report = self.get_report(report_id)
            state = report["processingStatus"]
            if state == "DONE":
                created, ended = _parse_time(report.get("createdTime")), _parse_time(report.get("processingEndTime"))
                if created is not None and ended is not None and ended >= created:
                    self.build_seconds = (ended - created).total_seconds()
                break
            if state == "CANCELLED":
                return None
            if state == "FATAL":
                raise ReportFailedError(self.platform, GET_REPORT, self._fatal_detail(report), code="FATAL")
            if self.clock() + wait > deadline:
                raise ReportTimeoutError(
                    self.platform, GET_REPORT, f"report {report_id} still {state} after {timeout:g} s"
                )
            self._sleep(wait)
            wait = min(poll_interval, wait * 2)
        document_id = report.get("reportDocumentId")
        if not document_id:
            raise MalformedResponseError(self.platform, GET_REPORT, f"report {report_id} is DONE without a document")
        rows = self.report_rows(document_id)
        if rows and any(column not in rows[0] for column in _REQUIRED_REPORT_COLUMNS):
            raise MalformedResponseError(self.platform, DOWNLOAD, "report document lacks the shipment columns")
        return rows

    def _fatal_detail(self, report: dict[str, Any]) -> str:
        text = f"report {report.get('reportId')} ended FATAL"
        if report.get("reportDocumentId"):
            # A FATAL report may carry an error document saying why.
            try:
                raw = self.download_report_document(self.get_report_document(report["reportDocumentId"]))
                text += ": " + self._safe(raw.decode("utf-8", errors="replace"), 300)
            except PlatformError:
                pass
        return text
