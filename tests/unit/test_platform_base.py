"""Shared client machinery: quotas, backoff, paging guards, connection parsing."""

from __future__ import annotations

import json
import random
import ssl

import httpx
import pytest

from orderops_provider.base import (
    ConfigurationError,
    PagingError,
    RateLimiter,
    RetryPolicy,
    chunked,
    http_client,
    pages,
    tls_context,
)
from orderops_provider.connection import ConnectionSettings, base_url_of


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_rate_limiter_burst_then_steady_rate():
    clock = FakeClock()
    limiter = RateLimiter(rate=2, burst=30, clock=clock, sleep=clock.sleep)
    for _ in range(30):
        assert limiter.acquire() == 0
    # the next 10 calls are paced at 2/s: 5 seconds in all
    for _ in range(10):
        limiter.acquire()
    assert clock.now == pytest.approx(5.0)


def test_rate_limiter_cost_and_drain():
    clock = FakeClock()
    limiter = RateLimiter(rate=100, burst=2000, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(1500) == 0
    assert limiter.acquire(600) == pytest.approx(1.0)  # 100 short, 100/s
    limiter.drain()
    assert limiter.acquire(50) == pytest.approx(0.5)


def test_rate_limiter_rejects_nonsense():
    for rate, burst in ((0, 1), (float("nan"), 10), (2, float("nan")), (float("inf"), 10), (2, float("inf"))):
        with pytest.raises(ConfigurationError):
            RateLimiter(rate=rate, burst=burst)


def test_backoff_grows_caps_and_honours_hint():
    policy = RetryPolicy(base=1, cap=8, rng=random.Random(1))
    delays = [policy.delay(n) for n in range(1, 7)]
    assert all(
        lo <= d <= hi for d, (lo, hi) in zip(delays, [(0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8), (4, 8)], strict=True)
    )
    assert policy.delay(1, hint=25) == 25


def test_pages_follows_cursors_to_the_end():
    book = {None: ([1, 2], "a"), "a": ([3, 4], "b"), "b": ([5], "")}
    assert list(pages(lambda c: book[c], platform="p", operation="op", key=lambda x: x)) == [1, 2, 3, 4, 5]


def test_pages_detects_cursor_loop():
    book = {None: ([1], "a"), "a": ([2], "b"), "b": ([3], "a")}
    with pytest.raises(PagingError, match="cursor 'a' came back"):
        list(pages(lambda c: book[c], platform="p", operation="op"))


def test_pages_detects_repeated_page():
    book = {None: ([1, 2], "a"), "a": ([1, 2], "b")}
    with pytest.raises(PagingError, match="repeats 2 items"):
        list(pages(lambda c: book[c], platform="p", operation="op", key=lambda x: x))


def test_pages_stops_at_empty_pages_that_keep_pointing_further():
    fetched = []

    def fetch(cursor):  # every page empty, each with a fresh token
        fetched.append(cursor)
        return [], f"t{len(fetched)}"

    with pytest.raises(PagingError, match="3 empty pages in a row"):
        list(pages(fetch, platform="p", operation="op"))
    assert len(fetched) == 3
    # an empty page between full ones, or an empty last page, is fine
    book = {None: ([1], "a"), "a": ([], "b"), "b": ([2], "c"), "c": ([], None)}
    assert list(pages(lambda c: book[c], platform="p", operation="op")) == [1, 2]


def test_pages_stops_when_a_listing_runs_past_its_time():
    """Pages that each take 10 minutes on the listing's clock (full ones, fresh cursors: nothing
    else would stop it): the 7th begins at the hour, the 8th would begin past it and is not asked for."""
    now = [0.0]
    fetched = []

    def fetch(cursor):
        fetched.append(cursor)
        now[0] += 600
        return [len(fetched)], len(fetched)

    listing = pages(fetch, platform="p", operation="op", max_seconds=3600, clock=lambda: now[0])
    got = []
    with pytest.raises(PagingError, match="still listing after 3600 s"):
        for item in listing:
            got.append(item)
    assert got == [1, 2, 3, 4, 5, 6, 7] and len(fetched) == 7
    # a quick listing is not touched by the bound
    assert list(pages(lambda c: ([1], None), platform="p", operation="op", max_seconds=0, clock=lambda: 0.0)) == [1]


def test_clients_bound_their_listings_on_their_clock():
    from orderops_provider.shipbob import ShipBobClient

    class Endless(httpx.BaseTransport):  # full pages of new orders, for ever
        def __init__(self):
            self.served = 0

        def handle_request(self, request):
            self.served += 1
            body = [{"id": self.served * 1000 + i} for i in range(250)]
            return httpx.Response(200, json=body, request=request)

    transport, now = Endless(), [0.0]
    client = ShipBobClient("https://api.shipbob.invalid", "token", transport=transport)
    client.clock = lambda: now[0]
    listing = client.orders()
    with pytest.raises(PagingError, match="still listing after 3600 s"):
        for n, _ in enumerate(listing):
            now[0] = n * 1.0  # a second an order: an hour is 3,600 orders, 15 pages in
    assert transport.served == 15
    client.close()


def test_pages_stops_after_max_pages():
    with pytest.raises(PagingError, match="more than 4 pages"):
        list(pages(lambda c: ([c or 0], (c or 0) + 1), platform="p", operation="op", max_pages=4))
    assert list(
        pages(lambda c: ([c or 0], (c or 0) + 1 if (c or 0) < 3 else None), platform="p", operation="op", max_pages=4)
    ) == [0, 1, 2, 3]


def test_chunked():
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_base_url_forms():
    assert base_url_of("c", "127.0.0.1", "http", 8801) == "http://127.0.0.1:8801"
    assert base_url_of("c", "https://open-api.example.com/", None, None) == "https://open-api.example.com"
    assert base_url_of("c", "api.example.com", None, None) == "https://api.example.com"
    with pytest.raises(ConfigurationError, match="connection 'c': host is required"):
        base_url_of("c", None, "http", None)
    with pytest.raises(ConfigurationError, match="schema must be http or https"):
        base_url_of("c", "h", "ftp", None)


def test_connection_numbers_are_finite_in_their_range_and_whole_where_counted():
    settings = ConnectionSettings(
        "conn", "https://x", None, None, {"timeout": "12", "max_attempts": 3.0, "huge": 10**400, "flag": True}
    )
    assert settings.timeout() == 12.0 and settings.retry().max_attempts == 3
    assert settings.number("absent", 7.5, 0, 10) == 7.5 and settings.count("absent", 4, 1, 5) == 4
    assert ConnectionSettings("conn", "https://x", None, None).retry() is None  # the client's default
    for value in (-1, 0, "nan", "inf", float("nan"), 601, "soon", None, [5], True):
        with pytest.raises(ConfigurationError) as refused:
            ConnectionSettings("conn", "https://x", None, None, {"timeout": value}).timeout()
        assert str(refused.value) == (
            f"connection 'conn': extra.timeout must be a number above 0 and at most 600, got {value!r}"
        )
    for value in (0, -3, 2.5, "2.5", 21, "inf"):
        with pytest.raises(ConfigurationError, match="extra.max_attempts must be a whole number from 1 to 20"):
            ConnectionSettings("conn", "https://x", None, None, {"max_attempts": value}).retry()
    for key in ("huge", "flag"):
        with pytest.raises(ConfigurationError, match=f"extra.{key} must be a number from 0 to 1,000"):
            settings.number(key, 1, 0, 1000)


# values once accepted, each then failing every call (or changing what the client does, unnamed)
@pytest.mark.parametrize(
    "platform,key,value,named",
    [
        ("tiktok", "timeout", -1, "extra.timeout must be a number above 0 and at most 600, got -1"),
        ("shopify", "timeout", 0, "extra.timeout must be a number above 0 and at most 600, got 0"),
        ("amazon_mcf", "timeout", "nan", "extra.timeout must be a number above 0 and at most 600, got 'nan'"),
        ("shipbob", "max_attempts", 0, "extra.max_attempts must be a whole number from 1 to 20, got 0"),
        ("tiktok", "max_attempts", -3, "extra.max_attempts must be a whole number from 1 to 20, got -3"),
        ("shopify", "max_attempts", 2.5, "extra.max_attempts must be a whole number from 1 to 20, got 2.5"),
        (
            "shopify",
            "restore_rate",
            "nan",
            "extra.restore_rate must be a number above 0 and at most 100,000, got 'nan'",
        ),
        ("shipbob", "rate_limit", "nan", "extra.rate_limit must be a number from 2 to 100,000, got 'nan'"),
        ("tiktok", "qps", "inf", "extra.qps must be a number above 0 and at most 10,000, got 'inf'"),
        ("amazon_mcf", "marketplace_id", "", "marketplace_id must be a marketplace id"),
        ("amazon_mcf", "quotas", {"nope": [1, 2]}, "quotas.nope: not an operation with a quota"),
        (
            "shopify",
            "tiktok_order_id",
            {"note_patterns": {"connector": "Ref: \\d+"}},
            "extra.tiktok_order_id.note_patterns.connector: 'Ref: \\\\d+' "
            "must have exactly one group (the id), it has 0",
        ),
        (
            "shopify",
            "tiktok_order_id",
            {"attribute_keys": ["ok"], "name_prefix": "TT-"},
            "extra.tiktok_order_id: unknown key(s) name_prefix",
        ),
    ],
)
def test_a_bad_connection_extra_fails_the_runs_check_naming_connection_and_key(
    monkeypatch, platform, key, value, named
):
    """Platforms.check (prepare_run's, before any call) builds each client through its hook."""
    from include.run.platforms import Platforms
    from include.run.runconfig import run_settings
    from sandbox.connections import CONNECTION_IDS, sandbox_connections

    urls = dict.fromkeys(
        ("tiktok", "tiktok_auth", "shopify", "amazon_mcf", "amazon_lwa", "shipbob"), "http://127.0.0.1:9"
    )  # never called
    for name, doc in sandbox_connections(urls).items():
        if name == platform:
            doc["extra"][key] = value
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONNECTION_IDS[name].upper()}", json.dumps(doc))
    platforms = Platforms(run_settings(dag_id="orderops_sla", run_id="r", params={"now": "2026-11-20T15:00:00Z"}))
    try:
        with pytest.raises(ConfigurationError) as refused:
            platforms.check()
    finally:
        platforms.close()
    assert str(refused.value).startswith(f"connection '{CONNECTION_IDS[platform]}': ") and named in str(refused.value)


def test_the_listing_bound_is_a_setting_named_when_bad(monkeypatch):
    from include.run.platforms import LISTING_TIMEOUT_ENV, Platforms
    from include.run.runconfig import RunConfigError, run_settings
    from orderops_provider.shipbob import ShipBobClient

    settings = run_settings(dag_id="orderops_sla", run_id="r", params={"now": "2026-11-20T15:00:00Z"})

    def build(platform):
        return ShipBobClient("https://api.shipbob.invalid", "token")

    monkeypatch.setenv(LISTING_TIMEOUT_ENV, "5")
    assert Platforms(settings, factory=build).get("shipbob").listing_seconds == 300
    monkeypatch.setenv(LISTING_TIMEOUT_ENV, "0")
    assert Platforms(settings, factory=build).get("shipbob").listing_seconds is None
    monkeypatch.setenv(LISTING_TIMEOUT_ENV, "soon")
    with pytest.raises(RunConfigError, match=LISTING_TIMEOUT_ENV):
        Platforms(settings, factory=build).get("shipbob")


def test_clients_share_one_verifying_tls_context():
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # a CA bundle is loaded
    with http_client(timeout=5) as first, http_client(timeout=5) as second:
        pools = [c._transport._pool._ssl_context for c in (first, second)]
    assert pools[0] is context and pools[1] is context
