"""What every platform simulator shares: clock, write log, call counts, faults, quotas, admin API.

Every simulator app is built with `Sandbox.new_app`, which mounts the admin router under
`/_sandbox` and wraps the app in a middleware that counts calls, applies injected faults and
records throttles. All handlers are `async def` and run on one event loop, so simulator state
needs no locks.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sandbox.scenario import (
    LAST_YEAR,
    TIME_RANGE,
    Scenario,
    ScenarioError,
    format_time,
    parse_json,
    parse_scenario,
    scenario_time,
)

ADMIN_PREFIX = "/_sandbox"
# Query parameters and body fields that carry secrets: never kept in the write log.
SECRET_KEYS = frozenset(
    {
        "sign",
        "access_token",
        "app_secret",
        "refresh_token",
        "client_secret",
        "auth_code",
    }
)


# Scenario seconds per wall second the clock may run at: from 0 (frozen) to about a week a minute.
MAX_CLOCK_RATE = 10_000.0
# Quotas ten thousand times the platforms' own are no quotas at all.
MAX_RATE_SCALE = 10_000.0
# A simulator state lasting longer than a year (Settings.durations) is a slip of the keyboard.
MAX_DURATION = 366 * 86_400.0


def within(value: Any, low: float, high: float) -> bool:
    """Whether `value` is a number (not a bool) from `low` to `high`: NaN and infinities never are."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high


def check_clock_rate(value: Any) -> float:
    """A clock rate given from outside (admin API, command line, settings file); ValueError says what is wrong."""
    if not within(value, 0, MAX_CLOCK_RATE):
        raise ValueError(f"expected a number from 0 (frozen) to {MAX_CLOCK_RATE:g}, got {value!r}")
    return float(value)


def check_rate_scale(value: Any) -> float:
    """A quota multiplier given from outside (command line, settings file); ValueError says what is wrong."""
    if not (within(value, 0, MAX_RATE_SCALE) and value > 0):
        raise ValueError(f"expected a number above 0, up to {MAX_RATE_SCALE:g}, got {value!r}")
    return float(value)


class SandboxClock:
    """Scenario time: starts at the scenario's `now` and runs at `rate` x wall time (0 = frozen).

    Only business state (SLA deadlines, fulfiller progress) follows this clock. Request
    signatures and token lifetimes are checked against the wall clock, as the real platforms
    do, because clients stamp requests with real time.
    """

    def __init__(self, start: datetime, rate: float = 1.0):
        self._base = start
        self._mono = time.monotonic()
        self.rate = rate
        # While a living shop replays its events, the clock reads each event's time (see life.py).
        self.pinned: datetime | None = None
        self._skipped = 0.0  # scenario seconds jumped forward by set(), beyond what wall time covered
        # where quota time comes from: the wall clock, or a test's own (shared with a client's pacing)
        self.quota_source: Callable[[], float] = time.monotonic
        # the wall clock of the platforms' own timers (report processing, token and download-link
        # lifetimes); a test sets its own to step through them without waiting on the machine
        self.wall_source: Callable[[], float] = time.time

    def wall(self) -> float:
        return self.wall_source()

    def quota_seconds(self) -> float:
        """The clock the platforms' rate limits refill on: wall time plus every forward jump of the
        scenario clock. Time a simulation skips between two runs refills the buckets as the same
        time would have in production; within a run, quotas pass at wall speed."""
        return self.quota_source() + self._skipped

    def now(self) -> datetime:
        if self.pinned is not None:
            return self.pinned
        return self._base + timedelta(seconds=(time.monotonic() - self._mono) * self.rate)

    def set(self, moment: datetime, rate: float | None = None) -> None:
        self._skipped += max(0.0, (moment - self.now()).total_seconds())
        self._base = moment
        self._mono = time.monotonic()
        if rate is not None:
            self.rate = rate

    def advance(self, seconds: float) -> datetime:
        self.set(self.now() + timedelta(seconds=seconds))
        return self.now()


class TokenBucket:
    """Rate `rate` per second, capacity `burst`; `take` returns 0 if granted, else seconds to wait."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock  # seconds; tests inject their own so refills don't depend on the machine's speed
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        # a clock swapped for another (a test's) may read earlier: time never runs backwards here
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def available(self) -> float:
        self._refill()
        return self.tokens

    def take(self, cost: float = 1.0) -> float:
        self._refill()
        if self.tokens >= cost - 1e-9:  # a refill computed to exactly the cost can fall short by rounding
            self.tokens = max(0.0, self.tokens - cost)
            return 0.0
        return (cost - self.tokens) / self.rate

    def give_back(self, amount: float) -> None:
        self._refill()
        self.tokens = min(self.burst, self.tokens + amount)


class SlidingWindow:
    """At most `limit` requests in any `window` seconds; `take` returns 0 or seconds to wait."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.hits: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - self.window:
            self.hits.popleft()

    def remaining(self) -> int:
        self._trim(self.clock())
        return max(0, self.limit - len(self.hits))

    def take(self) -> float:
        now = self.clock()
        self._trim(now)
        if len(self.hits) < self.limit:
            self.hits.append(now)
            return 0.0
        return self.hits[0] + self.window - now


@dataclass
class Fault:
    """An injected fault: the next `count` requests to `platform` whose path matches `path` get it."""

    platform: str
    kind: str  # see FAULT_KINDS
    path: str = ".*"  # regular expression searched in the request path
    count: int = 1
    status: int = 503  # for kind 5xx
    seconds: float = 2.0  # for latency; hang waits this long (default 1 h) for its client to leave, then a 504
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    fired: int = 0
    # last, so that `id` above still reads dataclasses.field: for drop_field, the key removed
    # wherever it appears in the JSON answer
    field: str = ""

    def matches(self, platform: str, path: str) -> bool:
        return self.platform == platform and self.count > 0 and re.search(self.path, path) is not None


FAULT_KINDS = ("429", "5xx", "latency", "hang", "malformed", "truncated", "token_expiry", "drop_field", "endless")
# The longest a latency or hang fault waits: a day (anything longer is a slip of the keyboard).
MAX_FAULT_SECONDS = 86_400.0


def parse_fault(data: Any) -> Fault:
    """Validate an admin fault request; raise ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError("fault: expected a JSON object")
    unknown = set(data) - {"platform", "kind", "path", "count", "status", "seconds", "field"}
    if unknown:
        raise ValueError(f"fault: unknown field(s) {', '.join(sorted(unknown))}")
    kind = str(data.get("kind", ""))
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault.kind: {kind!r} is not one of {', '.join(FAULT_KINDS)}")
    platform = data.get("platform")
    if not isinstance(platform, str) or not platform:
        raise ValueError("fault.platform: is required")
    path = data.get("path", ".*")
    try:
        re.compile(path)
    except (re.error, TypeError):
        raise ValueError(f"fault.path: {path!r} is not a regular expression") from None
    count = data.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"fault.count: expected a positive integer, got {count!r}")
    status = data.get("status", 503)
    if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
        raise ValueError(f"fault.status: expected 500-599, got {status!r}")
    default_seconds = 3600.0 if kind == "hang" else 2.0
    seconds = data.get("seconds", default_seconds)
    if not within(seconds, 0, MAX_FAULT_SECONDS):
        raise ValueError(f"fault.seconds: expected 0 to {MAX_FAULT_SECONDS:g} seconds, got {seconds!r}")
    name = data.get("field", "")
    if kind == "drop_field" and (not isinstance(name, str) or not name):
        raise ValueError("fault.field: the key to drop is required for drop_field")
    return Fault(
        platform=platform,
        kind=kind,
        path=path,
        count=count,
        status=status,
        seconds=float(seconds),
        field=name if isinstance(name, str) else "",
    )


# Writes the sandbox logs that change no order: token exchanges and report requests.
NOT_ORDER_WRITES = ("token", "createReport")


def changes_orders(operation: str) -> bool:
    """Whether a logged write's operation can change an order (what "an effect" means in checks)."""
    return not any(n in operation for n in NOT_ORDER_WRITES)


@dataclass
class WriteRecord:
    seq: int
    platform: str
    operation: str
    method: str
    path: str
    query: dict
    body: Any
    time: str  # scenario clock
    wall_time: str
    status: int
    outcome: str  # "ok" or the platform's error code / reason
    request_id: str | None = None


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if k in SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


@dataclass
class Settings:
    """Simulator settings; `rate_scale` multiplies every quota (reported whenever it is not 1)."""

    rate_scale: float = 1.0
    clock_rate: float = 1.0
    # Fulfiller progress in scenario seconds, per platform and state; platforms read their own.
    durations: dict[str, dict[str, float]] = field(default_factory=dict)
    # Per-platform overrides of credentials and quotas (e.g. {"shopify": {"restore_rate": 200}}).
    platforms: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self):
        """ValueError naming the first setting out of bounds, whoever gave it (a settings file, a caller)."""
        for name, check in (("rate_scale", check_rate_scale), ("clock_rate", check_clock_rate)):
            try:
                check(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        for name in ("durations", "platforms"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                raise ValueError(f"{name}: expected an object of platform -> object, got {value!r}")
        for platform, states in self.durations.items():
            for state, seconds in states.items():
                if not within(seconds, 0, MAX_DURATION):
                    raise ValueError(
                        f"durations.{platform}.{state}: expected 0 to {MAX_DURATION:.0f} seconds, got {seconds!r}"
                    )

    def for_platform(self, name: str, defaults: dict[str, Any]) -> dict[str, Any]:
        merged = dict(defaults)
        merged.update(self.platforms.get(name, {}))
        return merged

    def duration(self, platform: str, state: str, default: float) -> float:
        return float(self.durations.get(platform, {}).get(state, default))


class PlatformSandbox:
    """Base of one platform's simulator. Subclasses build their apps and state from a scenario."""

    name = "platform"
    # The key beside a listing page's items that names the next page, where a last page omits it
    # (the `endless` fault adds it); None where the cursor is always present or sent in headers.
    page_cursor: str | None = None

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    def load(self, scenario: Scenario) -> None:
        """Replace all state with what the scenario describes."""
        raise NotImplementedError

    def apps(self) -> dict[str, FastAPI]:
        """App name -> app; each gets its own port."""
        raise NotImplementedError

    def throttled_response(self, retry_after: float = 1.0) -> Response:
        """The platform's own answer to a request over quota."""
        raise NotImplementedError

    def server_error_response(self, status: int) -> Response:
        """The platform's own answer for an internal error."""
        return JSONResponse({"message": "Internal Server Error"}, status_code=status)

    def expire_tokens(self) -> None:
        """Make every access token issued so far expired (fault `token_expiry`)."""
        raise NotImplementedError

    def state(self) -> dict:
        """A JSON-able dump of the simulator state, for tests and outside checks."""
        raise NotImplementedError

    # Helpers for subclasses.
    def now(self) -> datetime:
        return self.sandbox.clock.now()

    def wall(self) -> float:
        return self.sandbox.clock.wall()

    def record_write(
        self,
        request: Request,
        body: Any,
        status: int,
        outcome: str,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> WriteRecord:
        return self.sandbox.record_write(
            self.name, request, body, status, outcome, request_id=request_id, operation=operation
        )


def operation_of(scope: dict, router=None) -> str:
    """The operation a request is counted under: set by the handler, else the route template."""
    state = scope.get("state") or {}
    if "operation" in state:
        return state["operation"]
    route = scope.get("route")
    if route is None and router is not None:
        # the request never reached routing (an injected fault answered it): match it here
        route = next((r for r in router.routes if r.matches(scope)[0] == Match.FULL), None)
    template = getattr(route, "path", None) or scope.get("path", "")
    return f"{scope.get('method', '')} {template}"


async def _client_left_within(receive, seconds: float) -> bool:
    """Wait up to `seconds` for the client to go away (ignoring the body it sent)."""

    async def left():
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(left(), seconds)
        return True
    except TimeoutError:
        return False


class _PlatformMiddleware:
    """Counts calls per operation, applies injected faults, counts throttles (pure ASGI)."""

    def __init__(self, app, sandbox: Sandbox, platform: str, router=None):
        self.app = app
        self.sandbox = sandbox
        self.platform = platform
        self.router = router
        self._endless_pages: dict[str, Any] = {}  # fault id -> the first good page it emptied

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.sandbox.catch_up()
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            return await self.app(scope, receive, send)
        self.sandbox.in_progress += 1
        try:
            await self._answer(scope, receive, send)
        finally:
            self.sandbox.in_progress -= 1

    async def _answer(self, scope, receive, send):
        sandbox = self.sandbox
        fault = sandbox.take_fault(self.platform, scope["path"])
        status_seen: list[int] = []

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status_seen.append(message["status"])
            await send(message)

        impl = sandbox.platforms[self.platform]
        if fault is not None:
            if fault.kind == "429":
                await impl.throttled_response()(scope, receive, counting_send)
                return self._count(scope, status_seen)
            if fault.kind == "5xx":
                await impl.server_error_response(fault.status)(scope, receive, counting_send)
                return self._count(scope, status_seen)
            if fault.kind == "hang":
                if await _client_left_within(receive, fault.seconds):
                    return self._count(scope, status_seen)  # nobody to answer, as at a gateway
                await JSONResponse({"message": "Gateway Timeout"}, status_code=504)(scope, receive, counting_send)
                return self._count(scope, status_seen)
            if fault.kind == "latency":
                await asyncio.sleep(fault.seconds)
            if fault.kind == "token_expiry":
                impl.expire_tokens()
            if fault.kind in ("malformed", "truncated", "drop_field", "endless"):
                await self._garbled(scope, receive, counting_send, fault, impl)
                return self._count(scope, status_seen)
        await self.app(scope, receive, counting_send)
        self._count(scope, status_seen)

    def _count(self, scope, status_seen: list[int]) -> None:
        operation = operation_of(scope, self.router)
        self.sandbox.calls[(self.platform, operation)] += 1
        if status_seen and status_seen[0] == 429:
            self.sandbox.throttles[(self.platform, operation)] += 1

    async def _garbled(self, scope, receive, send, fault: Fault, impl: PlatformSandbox) -> None:
        """Run the real handler (its writes happen), then send a broken body with status 200, or
        (drop_field) the real answer without the named key, or (endless) the real answer with every
        list emptied and a fresh cursor to a further page."""
        parts: list[bytes] = []
        start: dict = {}

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(parts)
        status = 200
        if fault.kind == "drop_field":
            status = start.get("status", 200)
            try:
                broken = json.dumps(_without(json.loads(body), fault.field)).encode()
            except ValueError:
                broken = body
        elif fault.kind == "truncated":
            broken = body[: max(1, len(body) // 2)]
        elif fault.kind == "endless":
            # The fresh cursors are not the platform's: the real answer to one is an error, so each
            # further page is made from the first good page this fault saw.
            status = start.get("status", 200)
            try:
                page = json.loads(body)
            except ValueError:
                page = None
            if 200 <= status < 300 and page is not None:
                self._endless_pages.setdefault(fault.id, page)
            if fault.id in self._endless_pages:
                status = 200
                page = self._endless_pages[fault.id]
                broken = json.dumps(_endless(page, impl.page_cursor)).encode()
                if isinstance(page, list):
                    start["headers"] = _endless_headers(start.get("headers", []), scope)
            else:
                broken = body
        else:
            broken = b"<html><body>502 Bad Gateway</body></html>"
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(broken)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": broken})


def _without(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


# The cursor keys of the four platforms' listings (TikTok, Amazon, Shopify).
CURSOR_KEYS = ("next_page_token", "nextToken", "endCursor")


def _endless(value: Any, page_cursor: str | None) -> Any:
    """A listing page with nothing on it that still points to another page, a new one each time."""
    if isinstance(value, list):
        return []
    if not isinstance(value, dict):
        return value
    out = {k: _endless(v, page_cursor) for k, v in value.items()}
    # a cursor where the page has one, and the platform's own beside the items of a last page
    wanted = {k for k in CURSOR_KEYS if k in out}
    if page_cursor and any(isinstance(v, list) for v in value.values()):
        wanted.add(page_cursor)
    out.update({k: uuid.uuid4().hex for k in wanted})
    if "hasNextPage" in out:
        out["hasNextPage"] = True
    return out


def _endless_headers(headers: list, scope) -> list:
    """A bare-list page (ShipBob) pages by headers: point Next-Page and Total-Pages one page further."""
    query = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
    page = next((int(v) for k, v in query if k.lower() == "page" and v.isdigit()), 1)
    rest = [(k, v) for k, v in query if k.lower() != "page"]
    link = f"{scope['path']}?" + urlencode([("Page", str(page + 1))] + rest)
    kept = [(k, v) for k, v in headers if k.lower() not in (b"next-page", b"total-pages")]
    return kept + [(b"next-page", link.encode()), (b"total-pages", str(page + 1).encode())]


class Sandbox:
    """All simulators, their shared clock, write log, call counts and fault queue."""

    def __init__(self, scenario: Scenario, settings: Settings | None = None, platforms: tuple[str, ...] | None = None):
        self.settings = settings or Settings()
        self.clock = SandboxClock(scenario.now, self.settings.clock_rate)
        self.scenario = scenario
        self.writes: list[WriteRecord] = []
        self.calls: Counter = Counter()
        self.throttles: Counter = Counter()
        self.charged: Counter = Counter()  # quota units beyond one a call (Shopify: points actually charged)
        self.faults: list[Fault] = []
        self.in_progress = 0  # platform requests being answered (hung or delayed ones included)
        self.platforms: dict[str, PlatformSandbox] = {}
        self._apps: dict[str, FastAPI] | None = None
        self.life = None  # a ShopLife when the shop lives through time (sandbox/life.py)
        from sandbox.webhooks import Outbox

        self.outbox = Outbox(self)  # webhooks and Amazon's notification queue (sandbox/webhooks.py)
        for name in PLATFORM_MODULES:
            if platforms is None or name in platforms:
                self.platforms[name] = platform_factory(name)(self)
        self._start(scenario)

    def live(self, life) -> None:
        """Let `life` move the shop forward on the clock: its events happen as the clock passes them."""
        self.life = life
        life.attach(self)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until no platform request is being answered (a hung one has seen its client leave)."""
        deadline = time.monotonic() + timeout
        while self.in_progress:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.in_progress} sandbox requests still being answered after {timeout} s")
            time.sleep(0.01)

    def catch_up(self) -> None:
        if self.life is not None:
            self.life.advance(self.clock.now())

    # Scenario and state
    def load(self, scenario: Scenario) -> None:
        """Serve `scenario` from its start: all of it, or none of it when a simulator cannot hold it."""
        # A throwaway sandbox with the same settings takes it first: a simulator that fails on what
        # validation let through does so before anything served here has changed.
        Sandbox(scenario, self.settings, tuple(self.platforms))
        self._start(scenario)

    def _start(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.life = None
        self.clock.set(scenario.now)
        self.writes.clear()
        self.calls.clear()
        self.throttles.clear()
        self.charged.clear()
        self.faults.clear()
        self.outbox.clear()  # a scenario's initial states are not changes: nothing is sent for them
        for impl in self.platforms.values():
            try:
                impl.load(scenario)
            except Exception as exc:  # a simulator's own limit the scenario checks do not know of
                raise ScenarioError(
                    f"scenario: the {impl.name} simulator cannot load it: {type(exc).__name__}: {exc}"
                ) from exc

    def apps(self) -> dict[str, FastAPI]:
        if self._apps is None:
            self._apps = {}
            for impl in self.platforms.values():
                self._apps.update(impl.apps())
            if "amazon_mcf" in self.platforms:
                from sandbox.webhooks import queue_app

                self._apps["amazon_sqs"] = queue_app(self.outbox)
        return self._apps

    def new_app(
        self, platform: str, title: str, unrouted: Callable[[Request, StarletteHTTPException], Any] | None = None
    ) -> FastAPI:
        """A platform's app with the admin API beside it. `unrouted(request, exc)` answers what the
        routing refused (a path it does not serve: 404, a method: 405) in the platform's own error
        format; the admin API keeps its own."""
        app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(admin_router(self), prefix=ADMIN_PREFIX)
        app.add_middleware(_PlatformMiddleware, sandbox=self, platform=platform, router=app.router)
        if unrouted is not None:

            @app.exception_handler(StarletteHTTPException)
            async def platform_shaped(request: Request, exc: StarletteHTTPException):
                if request.url.path.startswith(ADMIN_PREFIX):
                    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
                answer = unrouted(request, exc)
                return await answer if inspect.isawaitable(answer) else answer

        return app

    # Faults
    def add_fault(self, fault: Fault) -> Fault:
        if fault.platform not in self.platforms:
            raise ValueError(f"fault.platform: {fault.platform!r} is not one of {', '.join(self.platforms)}")
        self.faults.append(fault)
        return fault

    def take_fault(self, platform: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(platform, path):
                fault.count -= 1
                fault.fired += 1
                return fault
        return None

    # Write log
    def record_write(
        self,
        platform: str,
        request: Request,
        body: Any,
        status: int,
        outcome: str,
        request_id: str | None = None,
        operation: str | None = None,
    ) -> WriteRecord:
        record = WriteRecord(
            seq=len(self.writes) + 1,
            platform=platform,
            operation=operation or operation_of(request.scope),
            method=request.method,
            path=request.url.path,
            query=_scrub(dict(request.query_params)),
            body=_scrub(body),
            time=format_time(self.clock.now()),
            wall_time=format_time(datetime.now(timezone.utc)),
            status=status,
            outcome=outcome,
            request_id=request_id,
        )
        self.writes.append(record)
        return record

    def info(self) -> dict:
        return {
            "now": format_time(self.clock.now()),
            "clock_rate": self.clock.rate,
            "rate_scale": self.settings.rate_scale,
            "orders": len(self.scenario.orders) if self.life is None else self.life.arrived,
            "platforms": list(self.platforms),
            "writes": len(self.writes),
        }


CLOCK_FIELDS = frozenset({"advance_seconds", "now", "rate"})


def parse_clock_change(body: dict, now: datetime) -> tuple[datetime, float | None]:
    """Where a POST /_sandbox/clock body moves the clock (from `now`) and the rate it sets, every
    field checked before anything changes; ValueError naming the field."""
    unknown = body.keys() - CLOCK_FIELDS
    if unknown:
        raise ValueError(f"clock: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    rate = body.get("rate")
    if rate is not None:
        try:
            rate = check_clock_rate(rate)
        except ValueError as exc:
            raise ValueError(f"clock.rate: {exc}") from None
    moment = scenario_time(body["now"], "clock.now") if "now" in body else now
    if "advance_seconds" in body:
        step = body["advance_seconds"]
        # the clock stays in the years a scenario's times are in
        most = max(0, int((TIME_RANGE[1] - moment).total_seconds()) - 1)
        if not within(step, 0, most):
            raise ValueError(
                f"clock.advance_seconds: expected 0 to {most} seconds (to the end of {LAST_YEAR}), got {step!r}"
            )
        moment += timedelta(seconds=step)
    return moment, rate


def admin_router(sandbox: Sandbox) -> APIRouter:
    """Control plane, outside every platform's paths; served on every simulator port."""
    router = APIRouter()

    async def json_body(request: Request) -> Any:
        try:
            return parse_json(await request.body() or b"null")
        except ValueError as exc:
            raise HTTPException(400, f"body: {exc}") from None

    @router.get("/info")
    async def info():
        return sandbox.info()

    @router.post("/scenario")
    async def load_scenario(request: Request):
        try:
            sandbox.load(parse_scenario(await json_body(request)))
        except ScenarioError as exc:
            raise HTTPException(400, str(exc)) from None
        return sandbox.info()

    def clock_info() -> dict:
        now = sandbox.clock.now()
        info = {"now": format_time(now), "rate": sandbox.clock.rate}
        if sandbox.life is not None:  # when a living shop's platforms will next announce a shipment or request
            wake = sandbox.life.next_wake(now)
            if wake is not None and wake.microsecond:  # times are whole seconds: the second it has happened by
                wake += timedelta(microseconds=1_000_000 - wake.microsecond)
            info["next_wake"] = format_time(wake) if wake else None
        return info

    @router.get("/clock")
    async def get_clock():
        return clock_info()

    @router.post("/clock")
    async def set_clock(request: Request):
        body = await json_body(request)
        if not isinstance(body, dict) or not body.keys() & CLOCK_FIELDS:
            raise HTTPException(400, "clock: give advance_seconds, now and/or rate")
        try:
            moment, rate = parse_clock_change(body, sandbox.clock.now())
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        sandbox.clock.set(moment, rate)
        return clock_info()

    @router.get("/faults")
    async def list_faults():
        return [asdict(f) for f in sandbox.faults]

    @router.post("/faults")
    async def add_fault(request: Request):
        try:
            fault = sandbox.add_fault(parse_fault(await json_body(request)))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return asdict(fault)

    @router.delete("/faults")
    async def clear_faults():
        sandbox.faults.clear()
        return []

    @router.get("/writes")
    async def writes(platform: str | None = None, since: int = 0):
        return [asdict(w) for w in sandbox.writes if w.seq > since and (platform is None or w.platform == platform)]

    @router.get("/calls")
    async def calls():
        return {
            "calls": [{"platform": p, "operation": o, "count": n} for (p, o), n in sorted(sandbox.calls.items())],
            "throttled": [
                {"platform": p, "operation": o, "count": n} for (p, o), n in sorted(sandbox.throttles.items())
            ],
            "charged": [{"platform": p, "operation": o, "units": n} for (p, o), n in sorted(sandbox.charged.items())],
        }

    @router.delete("/calls")
    async def reset_calls():
        sandbox.calls.clear()
        sandbox.throttles.clear()
        sandbox.charged.clear()
        return {}

    @router.get("/webhooks")
    async def webhooks():
        return sandbox.outbox.info()

    @router.post("/webhooks")
    async def subscribe(request: Request):
        """Subscribe orderops to a platform's events: {platform, url, secret?, topics?} (Amazon:
        no url, its notifications go to the queue)."""
        body = await json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(400, "webhooks: expected an object {platform, url, secret?, topics?}")
        topics = body.get("topics") or []
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise HTTPException(400, f"webhooks.topics: expected a list of topic names, got {topics!r}")
        try:
            sandbox.outbox.subscribe(body.get("platform"), body.get("url"), body.get("secret"), tuple(topics))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return sandbox.outbox.info()

    @router.post("/webhooks/faults")
    async def webhook_faults(request: Request):
        """Mix faults into the webhook stream: {"faults": [stale, replay, cross_shop, old]} (sandbox/webhooks.py)."""
        body = await json_body(request)
        try:
            sandbox.outbox.set_faults(body.get("faults") if isinstance(body, dict) else body)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return sandbox.outbox.info()

    @router.post("/webhooks/flush")
    async def flush(timeout: float = 30.0):
        """Wait until every webhook sent so far was answered or given up."""
        import asyncio

        done = await asyncio.to_thread(sandbox.outbox.flush, min(max(timeout, 0.0), 300.0))
        return {"flushed": done, **sandbox.outbox.info()}

    @router.get("/truth")
    async def truth(interval_minutes: float = 30.0):
        """What really happened to every order of a living shop, and TikTok's own daily figures."""
        if sandbox.life is None:
            raise HTTPException(404, "truth: this sandbox serves a fixed scenario, not a living shop")
        if not 0 < interval_minutes <= 24 * 60:
            raise HTTPException(400, f"truth.interval_minutes: expected 0 < minutes <= 1440, got {interval_minutes!r}")
        return sandbox.life.truth(sandbox.clock.now(), timedelta(minutes=interval_minutes))

    @router.get("/state/{platform}")
    async def state(platform: str):
        if platform not in sandbox.platforms:
            raise HTTPException(404, f"no platform {platform!r}; one of {', '.join(sandbox.platforms)}")
        return sandbox.platforms[platform].state()

    return router


PLATFORM_MODULES = {
    "tiktok": "sandbox.tiktok:TikTokSandbox",
    "shopify": "sandbox.shopify:ShopifySandbox",
    "amazon_mcf": "sandbox.amazon_mcf:AmazonMcfSandbox",
    "shipbob": "sandbox.shipbob:ShipBobSandbox",
}


def platform_factory(name: str) -> Callable[[Sandbox], PlatformSandbox]:
    """A simulator class by platform name, imported only when used."""
    module, _, attr = PLATFORM_MODULES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def new_request_id() -> str:
    return uuid.uuid4().hex.upper()
