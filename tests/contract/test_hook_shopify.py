"""Shopify client and hook against the Shopify simulator over real HTTP.

Everything here talks to `sandbox/shopify.py` on a loopback port; nothing is mocked.
Some tests subclass the client to record what it saw (`Recording`) or to switch off its bucket
resync (`Deaf`, a client that ignores the platform's cost signals): both still send real
requests to the simulator. The one stand-in is `Replay`, a transport that forwards to the
simulator and answers every page with the first one: the simulator's cursors never loop, so a
looping cursor cannot be served by it.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import subprocess
import sys
import time

import httpx
import pytest

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PagingError,
    RetryableError,
    RetryPolicy,
    ThrottledError,
)
from orderops_provider.connection import ConnectionSettings
from orderops_provider.shopify import CancelResult, NoteResult, ShopifyClient, order_gid
from sandbox.core import Settings
from sandbox.generate import generate
from sandbox.shopify import DEFAULT_CREDENTIALS, TIKTOK_NOTE_PREFIX
from tests.conftest import connection_json, settled_count
from tests.support import NOW_ISO as NOW
from tests.support import gid, set_day

pytestmark = pytest.mark.slow

TOKEN = DEFAULT_CREDENTIALS["access_token"]
CLIENT_ID = DEFAULT_CREDENTIALS["client_id"]
CLIENT_SECRET = DEFAULT_CREDENTIALS["client_secret"]
FAST = RetryPolicy(max_attempts=6, base=0.01, cap=0.05)
PLACES = ("source_identifier", "custom_attribute", "note", "name")
ORDERS_OP = ("shopify", "query orders")


# ---------------------------------------------------------------- scenarios
def tiktok_id(i: int) -> str:
    return f"576{i:015d}"


def shop_entry(i: int, place: str = "source_identifier", **extra) -> dict:
    return {"id": 6100000000 + i, "name": f"#{1000 + i}", "tiktok_id_in": place, "cancelled": False, **extra}


def tt_order(
    i: int, shopify=None, *, place: str | None = None, created: str | None = None, amazon: dict | None = None
) -> dict:
    if shopify is None:
        shopify = shop_entry(i, place or PLACES[i % 4])
    day, hour = 1 + i % 19, i % 24
    return {
        "tiktok": {
            "id": tiktok_id(i),
            "status": "AWAITING_SHIPMENT",
            "create_time": created or f"2026-11-{day:02d}T{hour:02d}:00:00Z",
            "rts_sla_time": "2026-11-21T23:59:00Z",
            "shipping_due_time": "2026-11-27T23:59:00Z",
            "tracking_number": "",
            "line_items": [{"id": f"577{i:015d}", "seller_sku": "OSL-TEE-M"}],
        },
        "shopify": shopify,
        "fulfiller": "amazon_mcf" if amazon else None,
        "amazon_mcf": amazon,
        "shipbob": None,
    }


def many(n: int) -> dict:
    return {"now": NOW, "orders": [tt_order(i) for i in range(1, n + 1)]}


def shop_ids(server) -> list[str]:
    return sorted(f"gid://shopify/Order/{k}" for k in server.sandbox.platforms["shopify"].orders)


def make_client(server, cls=ShopifyClient, **kwargs) -> ShopifyClient:
    kwargs.setdefault("retry", FAST)
    token = kwargs.pop("token", TOKEN)
    return cls(server.urls["shopify"], token, **kwargs)


def fault(server, **spec) -> None:
    spec.setdefault("path", "graphql")
    response = httpx.post(f"{server.urls['shopify']}/_sandbox/faults", json={"platform": "shopify", **spec})
    assert response.status_code == 200, response.text


def writes(server) -> list:
    return [w for w in server.sandbox.writes if w.platform == "shopify"]


def arm_before_cancel(client: ShopifyClient, server, **spec) -> None:
    """Inject a fault just before the client's next orderCancel leaves (the reads before it pass)."""
    armed = [spec]

    def hook(request: httpx.Request) -> None:
        if armed and b"orderCancel" in request.content:
            fault(server, **armed.pop())

    client.http.event_hooks["request"] = [hook]


class Recording(ShopifyClient):
    """Records each answer's cost extension next to the send times (a spy on the real client)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.costs: list[dict] = []
        self.sent: list[float] = []
        self.http.event_hooks["request"] = [lambda request: self.sent.append(self.clock())]

    def _sync_cost(self, cost, operation):
        super()._sync_cost(cost, operation)
        if isinstance(cost, dict):
            self.costs.append(cost)


class Deaf(ShopifyClient):
    """A client that ignores throttleStatus: its own bucket never learns the shop's level."""

    def _sync_cost(self, cost, operation):
        pass


# ---------------------------------------------------------------- paging at size
def test_paging_5000_orders_flat_out_costs_one_call_per_250_and_is_never_throttled(run_sandbox):
    """Generated shop of ~5,000 orders; the shop's bucket is the default 2,000 points, refilled at
    1,000 points/s (10x the Standard plan, to keep the test short: the pacing still engages)."""
    doc = generate(5000, seed=23)
    settings = Settings(platforms={"shopify": {"restore_rate": 1000}})
    server = run_sandbox(doc, platforms=("shopify",), settings=settings)
    expected = shop_ids(server)
    assert 4900 < len(expected) < 5100
    with make_client(server) as client:  # default bucket 2,000 / 100 per s: it learns the shop's rate
        listing = client.orders()
        head = list(itertools.islice(listing, 10))
        assert len(head) == 10 and client.stats.calls["orders"] == 1  # lazy: one page so far
        started = time.monotonic()
        got = [o["id"] for o in head] + [o["id"] for o in listing]
        elapsed = time.monotonic() - started
        rows = client.stats.as_rows("shopify")
    pages = math.ceil(len(expected) / 250)
    assert sorted(got) == expected and len(set(got)) == len(got)
    print(f"\n{len(got)} orders in {pages} pages, {elapsed:.1f} s: {rows}")
    assert rows == [
        {"platform": "shopify", "operation": "orders", "calls": pages, "retries": 0, "throttled": 0, "failures": 0}
    ]
    assert settled_count(server, ORDERS_OP) == pages and settled_count(server, ORDERS_OP, "throttles") == 0
    assert client.bucket.rate == 1000.0 and client.bucket.burst == 2000.0  # learned from throttleStatus
    assert client.stats.wait_seconds > 0  # paced: flat out would have overrun the bucket
    # every page asked for 2 + 250 x 2 = 502 points: well under the 1,000-point single-query cap
    assert client.points["orders"] < pages * 502


def drain_bucket(server, below: float) -> None:
    """Another app on the same shop spends the bucket until less than `below` points are left,
    asking each time for no more than is available (so it is never throttled itself)."""

    def ask(query: str) -> float:
        body = httpx.post(
            f"{server.urls['shopify']}/admin/api/2026-07/graphql.json",
            headers={"X-Shopify-Access-Token": TOKEN},
            json={"query": query},
        ).json()
        assert "errors" not in body, body
        return body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]

    available = ask("{ shop { name } }")
    for _ in range(30):
        if available < below:
            return
        size = int(min(250, (available - 2) // 2))
        available = ask("{ orders(first: %d) { nodes { id customAttributes { key } } } }" % size)
    raise AssertionError("bucket not drained")


def test_limiter_paces_at_the_documented_quota(run_sandbox, virtual_time):
    """Default shop (2,000 points, 100/s) and default client, small pages paged flat out from an
    almost empty bucket: the client spends points at the restore rate and never above it (both
    buckets on one virtual clock: the arithmetic, not the machine's speed)."""
    server = run_sandbox(many(1000), platforms=("shopify",))
    server.sandbox.clock.quota_source = virtual_time
    drain_bucket(server, below=110)
    with make_client(server, cls=Recording, sleep=virtual_time.sleep) as client:
        client.clock = virtual_time
        got = [o["id"] for o in itertools.islice(client.orders(page_size=50), 400)]
    assert len(set(got)) == 400
    # Only the very first ask, sent before the client had seen the shop's level, is throttled.
    throttled = client.stats.throttled["orders"]
    assert throttled == 1 and settled_count(server, ORDERS_OP, "throttles") == throttled
    assert all(c["actualQueryCost"] is None for c in client.costs[:throttled]) and client.bucket.rate == 100.0
    pages, sent = client.costs[throttled:], client.sent[throttled:]
    assert [c["requestedQueryCost"] for c in pages] == [102] * 8 and len(sent) == 8
    actual = [c["actualQueryCost"] for c in pages]
    # from the second page on, each send waited for the points the page before had used
    rate = sum(actual[1:-1]) / (sent[-1] - sent[1])
    print(f"\nsteady spend {rate:.1f} points/s over {len(sent)} pages (quota 100/s)")
    assert 98 <= rate <= 100.5, rate
    assert client.stats.wait_seconds >= 0.9 * sum(actual[1:-1]) / 100 - 0.5


def test_bucket_follows_the_shops_plan_from_throttle_status(run_sandbox, virtual_time):
    """A shop on another plan (1,000 points, 400/s): the client learns both numbers from the first
    answer, is never throttled, and does not wait as if refills were 100/s. A client that ignores
    throttleStatus overruns the same bucket, is THROTTLED (HTTP 200) and recovers from the hints."""
    plan = Settings(platforms={"shopify": {"maximum_available": 1000, "restore_rate": 400}})
    server = run_sandbox(many(1500), platforms=("shopify",), settings=plan)
    expected = shop_ids(server)
    with make_client(server) as client:
        got = [o["id"] for o in client.orders()]
    assert sorted(got) == expected
    assert client.stats.throttled["orders"] == 0 and settled_count(server, ORDERS_OP, "throttles") == 0
    assert (client.bucket.burst, client.bucket.rate) == (1000.0, 400.0)
    # at 100/s the same walk would wait (points - 1,000) / 100 seconds at least (the client's own
    # waiting, not the walk's duration: that also depends on the machine)
    assert client.stats.wait_seconds < (client.points["orders"] - 1000) / 100 * 0.6, client.stats.wait_seconds

    server = run_sandbox(many(1000), platforms=("shopify",), settings=plan)  # a full bucket again
    server.sandbox.clock.quota_source = virtual_time  # refills only while the deaf client sleeps
    with make_client(
        server,
        cls=Deaf,
        maximum_available=100_000,
        restore_rate=100_000,
        sleep=virtual_time.sleep,
        retry=RetryPolicy(max_attempts=10, base=0.01, cap=0.05),
    ) as deaf:
        deaf.clock = virtual_time
        again = [o["id"] for o in deaf.orders()]
    assert sorted(again) == shop_ids(server)
    assert deaf.stats.throttled["orders"] > 0
    assert settled_count(server, ORDERS_OP, "throttles") == deaf.stats.throttled["orders"]
    assert deaf.stats.calls["orders"] == 4 + deaf.stats.throttled["orders"]


def test_throttled_answer_is_http_200_with_a_cost_based_retry_after(run_sandbox, virtual_time):
    """Another app spent the shop's bucket (600 points, 200/s): a 502-point page is THROTTLED with
    HTTP 200, the hint is (requested - available) / restore rate, and waiting it is enough."""
    plan = Settings(platforms={"shopify": {"maximum_available": 600, "restore_rate": 200}})
    server = run_sandbox(many(250), platforms=("shopify",), settings=plan)
    server.sandbox.clock.quota_source = virtual_time  # refills only while the client sleeps
    drain_bucket(server, below=150)
    with make_client(server, retry=RetryPolicy(max_attempts=1), sleep=virtual_time.sleep) as client:
        with pytest.raises(ThrottledError) as caught:
            list(client.orders())
    error = caught.value
    status = client.throttle_status
    assert (error.status, error.code) == (200, "THROTTLED")
    assert error.retry_after == pytest.approx((502 - status["currentlyAvailable"]) / 200)
    assert 0 < error.retry_after < 2.6
    drain_bucket(server, below=150)
    started = virtual_time()
    with make_client(server, sleep=virtual_time.sleep) as client:
        assert len(list(client.orders())) == 250
    assert client.stats.throttled["orders"] == 1 and client.stats.calls["orders"] == 2
    assert virtual_time() - started >= (502 - 150) / 200


def test_a_shop_that_prices_orders_higher_gets_smaller_pages(run_sandbox):
    """A lower single-query cap (300): the 502-point page is refused with MAX_COST_EXCEEDED once,
    the client learns the cap and walks on with pages that fit."""
    server = run_sandbox(
        many(400), platforms=("shopify",), settings=Settings(platforms={"shopify": {"max_query_cost": 300}})
    )
    with make_client(server, cls=Recording) as client:
        got = [o["id"] for o in client.orders()]
    assert sorted(got) == shop_ids(server)
    assert client.max_query_cost == 300
    first = [c["requestedQueryCost"] for c in client.costs]
    assert first[0] == 502 and all(cost <= 180 for cost in first[1:])
    assert client.stats.calls["orders"] == 1 + math.ceil(400 / 89)


# ---------------------------------------------------------------- auth
def test_token_expiry_mid_paging_uses_the_client_credentials_grant(run_sandbox):
    server = run_sandbox(many(1000), platforms=("shopify",))
    sunk: list[str] = []
    with make_client(server, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, secret_sink=sunk.append) as client:
        listing = client.orders(page_size=200)
        got = [o["id"] for o in itertools.islice(listing, 400)]
        fault(server, kind="token_expiry")
        got += [o["id"] for o in listing]
    assert sorted(got) == shop_ids(server) and len(got) == 1000
    assert client.stats.calls["access_token"] == 1
    assert client.stats.calls["orders"] == 5 + 1  # the page refused with 401, sent again
    assert client.stats.failures["orders"] == 0 and client.stats.retries["orders"] == 0
    live = set(server.sandbox.platforms["shopify"].tokens) - {TOKEN}
    assert len(live) == 1 and sunk == [TOKEN, CLIENT_SECRET, *live]  # every secret handed to the masker
    grant = [w for w in writes(server) if w.operation == "oauth access_token"]
    assert len(grant) == 1 and grant[0].outcome == "ok" and grant[0].body["client_secret"] == "***"


def test_client_credentials_alone_and_renewal_before_expiry(run_sandbox):
    server = run_sandbox(
        many(4), platforms=("shopify",), settings=Settings(platforms={"shopify": {"token_lifetime": 2}})
    )
    with make_client(server, token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as client:
        assert client.order(gid(1))["name"] == "#1001"
        assert client.stats.calls["access_token"] == 1
        time.sleep(2.0)
        assert client.order(6100000002)["name"] == "#1002"  # renewed before use, not after a 401
    assert client.stats.calls["access_token"] == 2
    assert client.stats.calls["order"] == 2 and client.stats.retries["order"] == 0


def test_refused_credentials_fail_fast_without_leaking(run_sandbox):
    server = run_sandbox(many(2), platforms=("shopify",))
    wrong = "shpat_" + "f" * 32
    with make_client(server, token=wrong) as client:
        with pytest.raises(AuthError) as caught:
            client.order(gid(1))
    assert client.stats.calls["order"] == 1 and client.stats.retries["order"] == 0
    assert caught.value.status == 401 and wrong not in str(caught.value)

    bad_secret = "shpss_not_the_secret"
    with make_client(server, token=wrong, client_id=CLIENT_ID, client_secret=bad_secret) as client:
        with pytest.raises(AuthError) as caught:
            client.order(gid(1))
    assert "client credentials refused" in str(caught.value)
    assert client.stats.calls["order"] == 1 and client.stats.calls["access_token"] == 1
    assert client.stats.failures["order"] == 1
    assert not any(s in str(caught.value) + repr(caught.value.__dict__) for s in (wrong, bad_secret))


# ---------------------------------------------------------------- faults while paging
def test_429_storm_is_retried_after_the_platforms_hint(run_sandbox):
    server = run_sandbox(many(600), platforms=("shopify",))
    with make_client(server) as client:
        listing = client.orders(page_size=200)
        got = [o["id"] for o in itertools.islice(listing, 200)]
        fault(server, kind="429", count=3)
        started = time.monotonic()
        got += [o["id"] for o in listing]
        elapsed = time.monotonic() - started
    assert sorted(got) == shop_ids(server)
    assert client.stats.throttled["orders"] == 3 and client.stats.retries["orders"] == 3
    assert client.stats.calls["orders"] == 3 + 3
    # an injected 429 never reaches the handler, so the simulator counts it under the route
    assert settled_count(server, ("shopify", "POST /admin/api/{version}/graphql.json"), "throttles") == 3
    assert elapsed >= 3 * 0.95  # Retry-After: 1.0 each time, not the 10 ms backoff


def test_5xx_hang_and_garbled_pages_are_retried_without_losing_a_page(run_sandbox):
    server = run_sandbox(many(1200), platforms=("shopify",))
    injected = [
        dict(kind="5xx", status=502, count=2),
        dict(kind="truncated"),
        dict(kind="malformed"),
        dict(kind="hang", seconds=4.0),
        dict(kind="5xx", status=503),
    ]
    with make_client(server, timeout=2.0) as client:  # a normal page has 2 s, the hung one 4
        listing = client.orders(page_size=100)
        got: list[str] = []
        for spec in injected:
            got += [o["id"] for o in itertools.islice(listing, 150)]
            fault(server, **spec)
        got += [o["id"] for o in listing]
    assert sorted(got) == shop_ids(server) and len(got) == 1200
    assert client.stats.calls["orders"] == 12 + 6 and client.stats.retries["orders"] == 6
    assert client.stats.failures["orders"] == 0


def test_empty_pages_that_always_point_further_are_stopped(run_sandbox):
    """The sandbox's `endless` fault: every page empty, each with a new cursor and hasNextPage."""
    server = run_sandbox(many(30), platforms=("shopify",))
    fault(server, kind="endless", count=50)
    with make_client(server) as client:
        with pytest.raises(PagingError, match="3 empty pages in a row"):
            list(client.orders(page_size=10))
    assert client.stats.calls["orders"] == 3


def test_a_loop_in_the_cursor_is_stopped(run_sandbox):
    """The simulator's cursors never loop; a proxy that replays the first page stands in for one."""
    server = run_sandbox(many(30), platforms=("shopify",))
    first_page: list[bytes] = []

    class Replay(httpx.BaseTransport):
        def __init__(self):
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request):
            response = self.inner.handle_request(request)
            body = response.read()
            if not first_page:
                first_page.append(body)
            return httpx.Response(
                response.status_code, headers=response.headers, content=first_page[0], request=request
            )

    with make_client(server, transport=Replay()) as client:
        with pytest.raises(PagingError):
            list(client.orders(page_size=10))
    assert client.stats.calls["orders"] == 2


def test_order_by_gid_or_legacy_id(run_sandbox):
    server = run_sandbox(many(3), platforms=("shopify",))
    with make_client(server) as client:
        assert client.order(gid(2)) == client.order(6100000002) == client.order("6100000002")
        assert client.order({"id": gid(2)})["name"] == "#1002"
        with pytest.raises(NotFoundError):
            client.order(6100009999)
        for bad in ("1/../../shop", "gid://shopify/Product/1", 0, True, "gid://shopify/Order/1 OR x"):
            with pytest.raises(ValueError):
                client.order(bad)
    assert client.stats.calls["order"] == 5 and order_gid(" 42 ") == "gid://shopify/Order/42"


def test_a_search_filter_shopify_does_not_know_is_refused_not_widened(run_sandbox):
    server = run_sandbox(many(30), platforms=("shopify",))
    with make_client(server) as client:
        with pytest.raises(BusinessError) as caught:
            list(client.orders("creatd_at:>='2026-11-10T00:00:00Z'"))  # typo: would match all 30
        assert caught.value.code == "invalid_field" and "creatd_at" in str(caught.value)
        assert len(list(client.orders("creatd_at:>=2026-11-10", strict_search=False))) == 30
        window = [o["createdAt"] for o in client.orders("created_at:>='2026-11-10T00:00:00Z'")]
        assert 0 < len(window) < 30 and min(window) >= "2026-11-10T00:00:00Z"


# ---------------------------------------------------------------- cancels
def cancel_scenario() -> dict:
    shipped = {
        "seller_fulfillment_order_id": "1009",
        "status": "Complete",
        "shipments": [
            {
                "status": "SHIPPED",
                "packages": [{"package_number": 1, "carrier_code": "UPS", "tracking_number": "1Z999AA10123456784"}],
            }
        ],
    }
    orders = [tt_order(i) for i in range(1, 9)]
    orders.append(tt_order(9, amazon=shipped))
    orders.append(tt_order(10, {**shop_entry(10), "cancelled": True}))
    return {"now": NOW, "orders": orders}


def jobs(server) -> dict[str, str]:
    return {f"gid://shopify/Order/{j.order_id}": j.refund for j in server.sandbox.platforms["shopify"].jobs.values()}


def test_cancel_arguments_follow_the_version_shopify_served(run_sandbox):
    server = run_sandbox(cancel_scenario(), platforms=("shopify",))
    with make_client(server) as client:  # 2026-07: refundMethod
        reply = client.cancel_order(gid(1), refund_method="original_payment", staff_note="buyer asked")
        assert reply.data["job"]["done"] is False and reply.data["job"]["id"].startswith("gid://shopify/Job/")
        assert reply.request_id and client.served_version == client.api_version == "2026-07"
        client.cancel_order(gid(2), reason="inventory", refund_method="store_credit")
        client.cancel_order(gid(3), refund_method="none", restock=False)
    # On 2026-11-20 2025-04 is long retired: Shopify serves 2026-01 and says so. Before any answer the
    # client can only follow the version asked (refund: Boolean!, still accepted though deprecated); from
    # the first answer on, the one served (refundMethod, so store credit too).
    with make_client(server, api_version="2025-04") as retired:
        assert retired.served_version is None and retired.effective_version == "2025-04"
        retired.cancel_order(gid(4), refund_method="original_payment")
        assert (retired.api_version, retired.served_version) == ("2025-04", "2026-01")
        retired.cancel_order(gid(5), refund_method="store_credit")
    # While 2025-04 was live (the scenario clock in May 2025), it was served as asked: refund: Boolean!.
    set_day(server, "2025-05-15T12:00:00Z")
    with make_client(server, api_version="2025-04") as legacy:
        legacy.cancel_order(gid(6), refund_method="none")
        assert legacy.served_version == "2025-04"
        with pytest.raises(ValueError, match="store_credit needs API 2025-07 or later .this connection speaks 2025-04"):
            legacy.cancel_order(gid(7), refund_method="store_credit")
    assert jobs(server) == {
        gid(1): "original",
        gid(2): "store_credit",
        gid(3): "none",
        gid(4): "original",
        gid(5): "store_credit",
        gid(6): "none",
    }
    sent = [w.body["variables"] for w in writes(server)]
    assert [("refundMethod" in v, v.get("refund")) for v in sent] == [
        (True, None),
        (True, None),
        (True, None),
        (False, True),
        (True, None),
        (False, False),
    ]
    assert sent[4]["refundMethod"] == {"storeCreditRefund": {}}
    assert sent[1]["reason"] == "INVENTORY" and sent[2]["restock"] is False
    assert [w.outcome for w in writes(server)] == ["ok"] * 6
    with pytest.raises(ValueError):
        client.cancel_order(gid(8), reason="BORED")


class GarbledVersion(httpx.HTTPTransport):
    """Forwards to the simulator, then names no version in X-Shopify-API-Version."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.headers["x-shopify-api-version"] = "latest"
        return response


def test_a_served_version_header_that_is_not_a_version_is_ignored(run_sandbox, caplog):
    server = run_sandbox(cancel_scenario(), platforms=("shopify",))
    with make_client(server, transport=GarbledVersion()) as client, caplog.at_level(logging.WARNING):
        client.order(gid(1))
        assert client.served_version is None and client.effective_version == "2026-07"
    assert "ignoring X-Shopify-API-Version 'latest'" in caplog.text


def test_cancel_refusals_carry_the_platform_code_and_are_not_retried(run_sandbox):
    server = run_sandbox(cancel_scenario(), platforms=("shopify",))
    with make_client(server) as client:
        with pytest.raises(BusinessError) as cancelled:
            client.cancel_order(gid(10))
        with pytest.raises(BusinessError) as fulfilled:
            client.cancel_order(gid(9))
        with pytest.raises(NotFoundError) as missing:
            client.cancel_order(6100009999)
    assert (cancelled.value.code, fulfilled.value.code, missing.value.code) == ("INVALID", "INVALID", "NOT_FOUND")
    assert "already been canceled" in str(cancelled.value) and cancelled.value.request_id
    assert client.stats.calls["orderCancel"] == 3 and client.stats.retries["orderCancel"] == 0
    assert [w.outcome for w in writes(server)] == ["INVALID", "INVALID", "NOT_FOUND"]


def test_cancel_order_and_wait_polls_the_job_and_confirms_cancelled_at(run_sandbox):
    server = run_sandbox(cancel_scenario(), platforms=("shopify",))
    with make_client(server) as client:
        result = client.cancel_order_and_wait(6100000001, staff_note="buyer asked", poll_interval=0.05)
        assert isinstance(result, CancelResult) and result.requests_sent == 1 and not result.already_cancelled
        assert result.order["cancelledAt"] and result.order["cancelReason"] == "CUSTOMER"
        assert result.order["displayFinancialStatus"] == "REFUNDED" and result.job_id
        assert client.stats.calls["job"] == 2  # done on the second poll
        again = client.cancel_order_and_wait(gid(1), poll_interval=0.05)
        assert again.already_cancelled and again.requests_sent == 0
        with pytest.raises(BusinessError):
            client.cancel_order_and_wait(gid(9), poll_interval=0.05)
    assert [(w.operation, w.outcome) for w in writes(server)] == [("orderCancel", "ok"), ("orderCancel", "INVALID")]


def test_a_cancel_is_never_resent_blindly(run_sandbox):
    settings = Settings(durations={"shopify": {"cancel_job": 1.0}})
    server = run_sandbox(cancel_scenario(), platforms=("shopify",), settings=settings)
    with make_client(server, timeout=2.0) as client:
        fault(server, kind="5xx", status=502)
        with pytest.raises(RetryableError):
            client.cancel_order(gid(1))
        assert client.stats.calls["orderCancel"] == 1 and client.stats.retries["orderCancel"] == 0

        fault(server, kind="latency", seconds=4.0)  # no answer in time: the client cannot know, so it stops
        with pytest.raises(RetryableError, match="timed out"):
            client.cancel_order(gid(2))
        assert client.stats.calls["orderCancel"] == 2 and client.stats.retries["orderCancel"] == 0

        fault(server, kind="truncated")  # processed, answer unreadable
        with pytest.raises(MalformedResponseError):
            client.cancel_order(gid(3))
        fault(server, kind="429")  # never processed: safe to send again
        client.cancel_order(gid(4))
        assert client.stats.calls["orderCancel"] == 5 and client.stats.throttled["orderCancel"] == 1
    # the simulator drops a request whose client has left (the late cancel of order 2 never runs);
    # the truncated answer hid a cancel that did run
    server.sandbox.wait_idle()
    assert set(jobs(server)) == {gid(3), gid(4)}
    assert [w.outcome for w in writes(server)] == ["ok", "ok"]


def test_cancel_order_and_wait_reads_before_it_resends(run_sandbox):
    # The shop's clock stands still until a cancel was sent again: the read before the resend always
    # finds the job still running, whatever the machine's speed; then the job ends a second later.
    settings = Settings(clock_rate=0, durations={"shopify": {"cancel_job": 1.0}})
    server = run_sandbox(cancel_scenario(), platforms=("shopify",), settings=settings)
    cancels = []

    def job_ends_after_the_resend(response: httpx.Response) -> None:
        if b"orderCancel" in response.request.content:
            cancels.append(response.status_code)
            if len(cancels) % 2 == 0:
                server.sandbox.clock.advance(2)

    with make_client(server) as client:
        client.http.event_hooks["response"] = [job_ends_after_the_resend]
        # never reached the handler: the read shows it open, so it is sent again, once
        arm_before_cancel(client, server, kind="5xx", status=503)
        first = client.cancel_order_and_wait(gid(1), poll_interval=0.05)
        assert first.requests_sent == 2 and first.order["cancelledAt"] and first.job_id
        # reached it, answer lost: the resend is refused (a job runs) and the first job's result is awaited
        arm_before_cancel(client, server, kind="truncated")
        mark = len(writes(server))
        second = client.cancel_order_and_wait(gid(2), poll_interval=0.1, timeout=10)
        assert second.requests_sent == 2 and second.order["cancelledAt"] and second.job_id is None
    outcomes = [w.outcome for w in writes(server)[mark:]]
    assert outcomes == ["ok", "INVALID"]
    assert sorted(jobs(server)) == [gid(1), gid(2)]  # one job per order
    assert [w.outcome for w in writes(server)[:mark]] == ["ok"]  # the 503 never reached the handler


# ---------------------------------------------------------------- note and tags
def test_add_note_and_tags_is_idempotent(run_sandbox):
    scenario = {
        "now": NOW,
        "orders": [tt_order(1, {**shop_entry(1, "note"), "note": "Gift wrap please", "tags": ["TikTok", "VIP"]})],
    }
    server = run_sandbox(scenario, platforms=("shopify",))
    line = "Shipping, no tracking ID yet"
    with make_client(server) as client:
        first = client.add_note_and_tags(gid(1), line, ["orderops", "no-tracking, vip", "late"])
        assert isinstance(first, NoteResult) and first.changed
        assert first.note_added and first.tags_added == ("orderops", "no-tracking", "late")
        assert len(first.request_ids) == 2
        order = client.order(gid(1))
        assert order["note"] == f"Gift wrap please\n{TIKTOK_NOTE_PREFIX}{tiktok_id(1)}\n{line}"
        assert order["tags"] == ["TikTok", "VIP", "orderops", "no-tracking", "late"]
        second = client.add_note_and_tags(gid(1), line, ["ORDEROPS", "late"])
        assert not second.changed and second.request_ids == ()
        third = client.add_note_and_tags(6100000001, "Escalated: carrier unknown", [])
        assert third.note_added and third.tags_added == ()
        assert client.order(gid(1))["note"].endswith(f"{line}\nEscalated: carrier unknown")
        with pytest.raises(NotFoundError):
            client.add_note_and_tags(6100009999, line, ["x"])
    assert [(w.operation, w.outcome) for w in writes(server)] == [
        ("orderUpdate", "ok"),
        ("tagsAdd", "ok"),
        ("orderUpdate", "ok"),
    ]
    assert client.stats.calls["orderUpdate"] == 2 and client.stats.calls["tagsAdd"] == 1


@pytest.mark.parametrize("field", ["note", "tags"])
def test_a_note_is_never_rewritten_from_a_read_that_lacked_it(run_sandbox, field):
    scenario = {"now": NOW, "orders": [tt_order(1, {**shop_entry(1, "note"), "note": "Gift wrap please"})]}
    server = run_sandbox(scenario, platforms=("shopify",))
    with make_client(server) as client:
        before = client.order(gid(1))["note"]
        fault(server, kind="drop_field", field=field, path="graphql")
        with pytest.raises(MalformedResponseError, match=f"without its {field}"):
            client.add_note_and_tags(gid(1), "Shipping, no tracking ID yet", ["orderops"])
        assert client.order(gid(1))["note"] == before  # the TikTok id the join uses is still there
    assert writes(server) == []


# ---------------------------------------------------------------- configuration
def test_configuration_errors_name_the_field():
    with pytest.raises(ConfigurationError, match="api_version"):
        ShopifyClient("https://shop.myshopify.com", TOKEN, api_version="2025-05")
    with pytest.raises(ConfigurationError, match="access token"):
        ShopifyClient("https://shop.myshopify.com", None)
    with pytest.raises(ConfigurationError, match="client_secret"):
        ShopifyClient("https://shop.myshopify.com", TOKEN, client_id="abc")
    with pytest.raises(ConfigurationError, match="'shop'.*http"):
        ShopifyClient.from_settings(ConnectionSettings("shop", "shop.myshopify.com", None, TOKEN, {}))
    client = ShopifyClient.from_settings(
        ConnectionSettings(
            "shop",
            "https://orderops.myshopify.com",
            None,
            None,
            {
                "api_version": "2025-04",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "timeout": "12",
                "max_attempts": 3,
                "restore_rate": 1000,
                "maximum_available": 20000,
            },
        )
    )
    assert client.graphql_path == "/admin/api/2025-04/graphql.json" and client.http.timeout.read == 12.0
    assert client.retry.max_attempts == 3 and client.can_refresh
    assert client.limiter("orders") is client.limiter("orderCancel") and client.limiter("access_token") is None
    assert (client.bucket.burst, client.bucket.rate) == (20000.0, 1000.0)
    with pytest.raises(ValueError, match="page_size"):
        client.orders(page_size=251)
    client.close()


def test_importing_the_client_does_not_load_airflow():
    code = (
        "import sys, orderops_provider.shopify as s; s.ShopifyClient; "
        "assert not any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules), 'airflow loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- the Airflow hook
@pytest.fixture
def hook_class():
    """Imported during setup: loading Airflow replaces the root log handlers, and the test's log
    capture must be installed after that to see anything."""
    from orderops_provider.hooks import ShopifyHook

    return ShopifyHook


def test_hook_from_env_connection_keeps_secrets_out_of_logs(run_sandbox, monkeypatch, caplog, capsys, hook_class):
    orders = cancel_scenario()["orders"] + [tt_order(i) for i in range(11, 300)]
    server = run_sandbox({"now": NOW, "orders": orders}, platforms=("shopify",))
    conn = connection_json(
        server.urls["shopify"],
        password=TOKEN,
        extra={
            "api_version": "2026-07",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "timeout": 5,
            "max_attempts": 3,
        },
    )
    wrong = "shpat_" + "e" * 32
    monkeypatch.setenv("AIRFLOW_CONN_SHOPIFY_HOOKTEST", conn)
    monkeypatch.setenv("AIRFLOW_CONN_SHOPIFY_WRONG", connection_json(server.urls["shopify"], password=wrong))
    caplog.set_level(logging.DEBUG)

    hook = hook_class("shopify_hooktest")
    assert (hook.conn_type, hook.default_conn_name) == ("shopify", "shopify_default")
    ok, message = hook.test_connection()
    assert ok and message == f"connected to {DEFAULT_CREDENTIALS['shop_domain']} (API 2026-07)"
    client = hook.get_client()
    assert client.api_version == "2026-07" and client.can_refresh

    listing = client.orders(page_size=100)
    got = [o["id"] for o in itertools.islice(listing, 150)]
    fault(server, kind="token_expiry")
    got += [o["id"] for o in listing]
    assert sorted(got) == shop_ids(server)
    assert client.stats.calls["access_token"] == 1
    renewed = next(iter(set(server.sandbox.platforms["shopify"].tokens) - {TOKEN}))

    failures = []
    for call in (lambda: client.order(6100009999), lambda: client.cancel_order(gid(10))):
        with pytest.raises((NotFoundError, BusinessError)) as caught:
            call()
        failures.append(caught.value)
    with pytest.raises(AuthError) as caught:
        hook_class("shopify_wrong").get_client().order(gid(1))
    failures.append(caught.value)
    logging.getLogger("orderops.test").info("hook run finished with %d failures", len(failures))
    client.close()

    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err + "".join(str(r.args) + r.getMessage() for r in caplog.records)
    assert "hook run finished" in logged and "client-credentials grant" in caplog.text  # logs were captured
    texts = [str(e) + repr(e) + repr(e.__context__) + str(e.__dict__) for e in failures]
    for secret in (TOKEN, CLIENT_SECRET, renewed, wrong):
        assert secret not in logged
        assert not any(secret in text for text in texts)
    assert json.loads(conn)["password"] == TOKEN  # (the connection really carried the token)
