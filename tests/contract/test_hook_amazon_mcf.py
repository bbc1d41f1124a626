"""Amazon SP-API MCF client and hook against the Amazon simulator over real HTTP.

Everything talks to `sandbox/amazon_mcf.py` (SP-API host with Reports and the presigned
document host, and the LWA token host) on loopback ports. No mocks: faults are injected through
the simulator's admin API, and requests are observed with httpx event hooks.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from datetime import datetime, timedelta

import httpx
import pytest

from orderops_provider.amazon_mcf import (
    CANCEL,
    CREATE_REPORT,
    DOWNLOAD,
    GET,
    GET_DOCUMENT,
    GET_REPORT,
    GET_REPORTS,
    LIST,
    LWA,
    AlreadyCancelledError,
    AmazonMcfClient,
    NotCancellableError,
    ReportFailedError,
    ReportTimeoutError,
    parse_flat_file,
)
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
    TokenExpiredError,
)
from orderops_provider.connection import ConnectionSettings
from sandbox.amazon_mcf import DEFAULT_CREDENTIALS, SHIPMENT_REPORT_COLUMNS
from sandbox.core import Settings
from sandbox.generate import generate
from tests.conftest import VirtualTime, connection_json, settled_count
from tests.support import NOW, iso

FAST = RetryPolicy(max_attempts=6, base=0.01, cap=0.05)
# Quotas x10 on both sides so that bulk tests are not paced at 2 requests a second.
SCALE = 10
SCALED = Settings(rate_scale=SCALE, clock_rate=0)
P = "amazon_mcf"
SECRETS = (DEFAULT_CREDENTIALS["client_secret"], DEFAULT_CREDENTIALS["refresh_token"])


# ---------------------------------------------------------------- scenarios and helpers


def mcf_order(i: int, status: str = "Planning", **mcf) -> dict:
    return {
        "tiktok": {
            "id": str(576000000000000000 + i),
            "status": "AWAITING_SHIPMENT",
            "create_time": iso(NOW - timedelta(days=2)),
            "rts_sla_time": iso(NOW + timedelta(days=1)),
            "shipping_due_time": iso(NOW + timedelta(days=6)),
            "tracking_number": "",
            "cancellation": None,
            "line_items": [{"id": str(577000000000000000 + i), "seller_sku": "OSL-TEE-M"}],
        },
        "shopify": {
            "id": 6100000000 + i,
            "name": f"#{1000 + i}",
            "tiktok_id_in": "source_identifier",
            "cancelled": False,
        },
        "fulfiller": "amazon_mcf",
        "amazon_mcf": {"seller_fulfillment_order_id": str(1000 + i), "status": status, **mcf},
        "shipbob": None,
    }


def scenario(orders: list[dict]) -> dict:
    return {"now": iso(NOW), "orders": orders}


def amazon_ids(doc: dict) -> set[str]:
    return {o["amazon_mcf"]["seller_fulfillment_order_id"] for o in doc["orders"] if o.get("amazon_mcf")}


def start(run_sandbox, orders_or_doc, settings: Settings = SCALED):
    doc = orders_or_doc if isinstance(orders_or_doc, dict) else scenario(orders_or_doc)
    return run_sandbox(doc, platforms=(P,), settings=settings)


def make_client(server, *, scaled: bool = True, **kwargs) -> AmazonMcfClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("lwa_url", server.urls["amazon_lwa"] + "/auth/o2/token")
    if scaled:
        kwargs.setdefault("rate_scale", SCALE)
    return AmazonMcfClient(
        server.urls[P],
        kwargs.pop("client_id", DEFAULT_CREDENTIALS["client_id"]),
        kwargs.pop("client_secret", DEFAULT_CREDENTIALS["client_secret"]),
        kwargs.pop("refresh_token", DEFAULT_CREDENTIALS["refresh_token"]),
        **kwargs,
    )


def fault(server, **spec) -> None:
    with httpx.Client(base_url=server.urls[P], timeout=10) as admin:
        response = admin.post("/_sandbox/faults", json={"platform": P, **spec})
        assert response.status_code == 200, response.text


# Requests a fault answers never reach a handler: the simulator counts them under the route.
ROUTES = {
    LIST: "GET /fba/outbound/2020-07-01/fulfillmentOrders",
    GET: "GET /fba/outbound/2020-07-01/fulfillmentOrders/{sfo_id}",
    CANCEL: "PUT /fba/outbound/2020-07-01/fulfillmentOrders/{sfo_id}/cancel",
}


def counted(server, operation: str, table: str = "calls") -> int:
    """Requests the simulator saw for an operation, once settled (see `settled_count`)."""
    keys = [(P, operation)] + ([(P, ROUTES[operation])] if operation in ROUTES else [])
    return sum(settled_count(server, key, table) for key in keys)


def writes(server, operation: str) -> list:
    return [w for w in server.sandbox.writes if w.operation == operation]


def record(client: AmazonMcfClient) -> list[httpx.Request]:
    seen: list[httpx.Request] = []
    client.http.event_hooks["request"] = [seen.append]
    return seen


# ---------------------------------------------------------------- listing
def test_listing_two_thousand_orders_is_complete_lazy_and_counted(run_sandbox):
    doc = generate(3500, seed=11)
    expected = amazon_ids(doc)
    assert 1900 <= len(expected) <= 2200
    server = start(run_sandbox, doc)
    with make_client(server) as client:
        sent = record(client)
        listing = client.list_fulfillment_orders()
        first = list(itertools.islice(listing, 10))
        assert client.stats.calls[LIST] == 1  # lazy: one page for ten orders
        got = [o["sellerFulfillmentOrderId"] for o in first + list(listing)]
        pages = math.ceil(len(expected) / 50)
        assert len(got) == len(set(got)) == len(expected) and set(got) == expected
        assert client.stats.calls[LIST] == pages == counted(server, LIST)
        assert client.stats.calls[LWA] == 1 == counted(server, LWA)  # one token for the whole walk
        assert not client.stats.retries and not client.stats.failures
        rows = {r["operation"]: r for r in client.stats.as_rows(P)}
        assert rows[LIST]["calls"] == pages and rows[LWA]["calls"] == 1
        # Every SP-API request had the token and a user-agent; the token request had no access token.
        api = [r for r in sent if r.url.path.startswith("/fba/")]
        assert len(api) == pages and all(r.headers["x-amz-access-token"].startswith("Atza|") for r in api)
        assert all(r.headers["user-agent"].startswith("orderops/") for r in sent)
        (token_request,) = [r for r in sent if r.url.path == "/auth/o2/token"]
        assert "x-amz-access-token" not in token_request.headers
        assert "grant_type=refresh_token" in token_request.content.decode()
        # The raw platform objects come back unmodified.
        assert set(first[0]) >= {
            "sellerFulfillmentOrderId",
            "fulfillmentOrderStatus",
            "statusUpdatedDate",
            "displayableOrderId",
            "destinationAddress",
        }


def test_query_start_date_is_sent_and_validated(run_sandbox):
    orders = [mcf_order(i, "Received") for i in range(60)]
    orders += [mcf_order(i, "Complete", received_time="2026-11-10T00:00:00Z") for i in range(60, 80)]
    server = start(run_sandbox, orders)
    with make_client(server) as client:
        since = [o["sellerFulfillmentOrderId"] for o in client.list_fulfillment_orders(NOW - timedelta(hours=1))]
        assert sorted(since) == sorted(str(1000 + i) for i in range(60))
        assert client.stats.calls[LIST] == 2
        assert list(client.list_fulfillment_orders("2027-01-01T00:00:00Z")) == []
        with pytest.raises(ValueError, match="time zone"):
            client.list_fulfillment_orders(datetime(2026, 11, 20))
        with pytest.raises(BusinessError) as caught:
            list(client.list_fulfillment_orders("20 Nov 2026"))
        error = caught.value
        assert (error.code, error.status, error.platform_message) == (
            "InvalidInput",
            400,
            "timestamp must follow ISO8601",
        )
        assert error.request_id and not error.retryable
        assert client.stats.calls[LIST] == 4  # a business refusal is not retried


# ---------------------------------------------------------------- auth
def test_empty_pages_that_always_point_further_are_stopped(run_sandbox):
    """The sandbox's `endless` fault: every page empty, each with a fresh nextToken."""
    server = start(run_sandbox, generate(200, seed=11))
    fault(server, kind="endless", path="/fulfillmentOrders$", count=50)
    with make_client(server) as client:
        with pytest.raises(PagingError, match="3 empty pages in a row"):
            list(client.list_fulfillment_orders())
        assert client.stats.calls[LIST] == 3


def test_token_expiry_mid_paging_is_refreshed_once_and_no_page_is_lost(run_sandbox):
    server = start(run_sandbox, [mcf_order(i) for i in range(600)])
    with make_client(server) as client:
        listing = client.list_fulfillment_orders()
        got = [o["sellerFulfillmentOrderId"] for o in itertools.islice(listing, 260)]  # 6 pages read
        old_token = client.access_token()
        fault(server, kind="token_expiry", path="/fulfillmentOrders$")
        got += [o["sellerFulfillmentOrderId"] for o in listing]
        assert sorted(got) == sorted(str(1000 + i) for i in range(600)) and len(got) == 600
        assert client.token_exchanges == 2 and client.access_token() != old_token
        assert client.stats.calls[LWA] == 2 == counted(server, LWA)
        # 12 pages plus the one refused as expired; the refusal is neither a retry nor a failure.
        assert client.stats.calls[LIST] == 13 == counted(server, LIST)
        assert not client.stats.retries and not client.stats.failures


def test_token_is_reused_until_shortly_before_it_expires(run_sandbox):
    settings = Settings(rate_scale=SCALE, clock_rate=0, platforms={P: {"token_lifetime_seconds": 2}})
    server = start(run_sandbox, [mcf_order(1)], settings)
    with make_client(server) as client:
        sent = record(client)
        for _ in range(3):
            client.get_fulfillment_order("1001")
        assert client.token_exchanges == 1
        time.sleep(1.9)  # within the last tenth of its life: not used any more
        client.get_fulfillment_order("1001")
        assert client.token_exchanges == 2
        # Exchanged ahead of expiry: the simulator never had to refuse a request.
        assert counted(server, GET) == 4 == client.stats.calls[GET]
        tokens = [r.headers["x-amz-access-token"] for r in sent if r.url.path.startswith("/fba/")]
        assert len(set(tokens[:3])) == 1 and tokens[3] != tokens[0]


@pytest.mark.parametrize(
    "override, code",
    [
        ({"client_secret": "amzn1.oa2-cs.v1.wrong-secret-value"}, "invalid_client"),
        ({"refresh_token": "Atzr|revoked-refresh-token-value"}, "invalid_grant"),
    ],
)
def test_refused_credentials_fail_fast_with_the_oauth_code_and_no_secret(run_sandbox, override, code):
    server = start(run_sandbox, [mcf_order(1)])
    with make_client(server, **override) as client:
        with pytest.raises(AuthError) as caught:
            client.get_fulfillment_order("1001")
    error = caught.value
    assert error.code == code and error.operation == LWA and not error.retryable
    assert client.stats.calls[LWA] == 1 and counted(server, GET) == 0  # not retried, nothing sent to SP-API
    text = str(error) + repr(error) + str(error.__dict__)
    for secret in SECRETS + tuple(override.values()):
        assert secret not in text


def test_a_token_the_platform_keeps_refusing_ends_the_call(run_sandbox):
    server = start(run_sandbox, [mcf_order(1)])
    with make_client(server) as client:
        client.get_fulfillment_order("1001")
        # Every token, the fresh one too, is refused as expired: one new exchange, then give up.
        fault(server, kind="token_expiry", path="/fulfillmentOrders/1001$", count=2)
        with pytest.raises(TokenExpiredError) as caught:
            client.get_fulfillment_order("1001")
    assert "expired" in str(caught.value) and caught.value.status == 403 and caught.value.code == "Unauthorized"
    assert client.stats.calls[LWA] == 2 and client.stats.calls[GET] == 3
    assert client.stats.failures[GET] == 1 and counted(server, GET) == 3


# ---------------------------------------------------------------- faults
def test_5xx_garbled_and_throttled_pages_are_retried_without_losing_a_page(run_sandbox):
    server = start(run_sandbox, [mcf_order(i) for i in range(500)])
    with make_client(server) as client:
        listing = client.list_fulfillment_orders()
        got = [o["sellerFulfillmentOrderId"] for o in itertools.islice(listing, 120)]
        # Three failures on the next page, three on the one after (the policy allows five retries).
        fault(server, kind="5xx", status=503, path="/fulfillmentOrders$", count=2)
        fault(server, kind="malformed", path="/fulfillmentOrders$")
        got += [o["sellerFulfillmentOrderId"] for o in itertools.islice(listing, 80)]
        fault(server, kind="truncated", path="/fulfillmentOrders$")
        fault(server, kind="429", path="/fulfillmentOrders$", count=2)
        got += [o["sellerFulfillmentOrderId"] for o in listing]
        assert sorted(got) == sorted(str(1000 + i) for i in range(500)) and len(got) == 500
        assert client.stats.retries[LIST] == 6 and client.stats.throttled[LIST] == 2
        assert client.stats.calls[LIST] == 10 + 6 == counted(server, LIST)
        assert not client.stats.failures


def test_429_storm_is_waited_out_and_gives_up_as_throttled(run_sandbox):
    server = start(run_sandbox, [mcf_order(1)])
    with make_client(server) as client:
        fault(server, kind="429", path="/fulfillmentOrders/1001$", count=5)
        assert client.get_fulfillment_order("1001")["fulfillmentOrder"]["sellerFulfillmentOrderId"] == "1001"
        assert client.stats.throttled[GET] == 5 and client.stats.calls[GET] == 6 == counted(server, GET)
        # The limiter was emptied after each 429, so the retries waited for it to refill (1/20 s each).
        assert client.stats.wait_seconds >= 5 * 0.05 * 0.9
        fault(server, kind="429", path="/fulfillmentOrders/1001$", count=10)
        with pytest.raises(ThrottledError) as caught:
            client.get_fulfillment_order("1001")
        assert caught.value.code == "QuotaExceeded" and caught.value.retryable
        assert client.stats.calls[GET] == 12 and client.stats.failures[GET] == 1


def test_the_real_quota_throttles_a_greedy_client_and_the_header_rate_is_adopted(run_sandbox):
    quotas = {GET: [2, 3]}
    server = start(run_sandbox, [mcf_order(1)], Settings(clock_rate=0, platforms={P: {"quotas": quotas}}))
    # A client that believes in a much larger quota runs into the simulator's 429s and recovers.
    with make_client(
        server, scaled=False, quotas={GET: (1000, 1000)}, retry=RetryPolicy(max_attempts=8, base=0.05, cap=0.4)
    ) as greedy:
        for _ in range(6):
            greedy.get_fulfillment_order("1001")
        assert greedy.stats.throttled[GET] >= 1 and not greedy.stats.failures
        # ... and from the first answer on, it paces at the rate Amazon said it applies.
        assert greedy.limiter(GET).rate == 2.0
    assert counted(server, GET, "throttles") == greedy.stats.throttled[GET]
    # A seller with a higher usage plan: the header raises the client's pace.
    server = start(run_sandbox, [mcf_order(1)], Settings(clock_rate=0, platforms={P: {"quotas": {GET: [5, 30]}}}))
    with make_client(server, scaled=False) as client:
        assert client.limiter(GET).rate == 2.0
        client.get_fulfillment_order("1001")
        assert client.limiter(GET).rate == 5.0 and client.limiter(LIST).rate == 2.0


def test_a_hang_times_out_and_the_read_is_retried(run_sandbox):
    server = start(run_sandbox, [mcf_order(1)])
    with make_client(server, timeout=2.0) as client:
        fault(server, kind="hang", path="/fulfillmentOrders/1001$", seconds=30)
        assert client.get_fulfillment_order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Planning"
        assert client.stats.retries[GET] == 1 and client.stats.calls[GET] == 2


def test_errors_are_typed_with_code_message_and_request_id(run_sandbox):
    server = start(run_sandbox, [mcf_order(1)])
    with make_client(server) as client:
        with pytest.raises(NotFoundError) as caught:
            client.get_fulfillment_order("9999")
        assert (caught.value.code, caught.value.status) == ("InvalidInput", 400)  # Amazon answers 400 here
        assert caught.value.platform_message == "Requested order '9999' not found" and caught.value.request_id
        with pytest.raises(NotFoundError) as caught:
            client.call("getFeatures", "GET", "/fba/outbound/2020-07-01/features")  # not simulated: 404
        assert caught.value.status == 404 and caught.value.code == "NotFound"
        fault(server, kind="5xx", status=500, path="/fulfillmentOrders/1001$", count=6)
        with pytest.raises(RetryableError) as caught:
            client.get_fulfillment_order("1001")
        assert caught.value.code == "InternalFailure" and caught.value.status == 500
        assert client.stats.calls[GET] == 1 + 6  # the not-found, then every attempt of the retry policy
        for bad in ("", "a/b", "../x", "x" * 41, None, True):
            with pytest.raises(ValueError):
                client.get_fulfillment_order(bad)


# ---------------------------------------------------------------- cancel
def test_cancel_results_refusals_and_no_blind_resend(run_sandbox):
    server = start(
        run_sandbox,
        [mcf_order(1, "Received"), mcf_order(2, "Processing"), mcf_order(3, "Planning"), mcf_order(4, "Planning")],
    )
    with make_client(server) as client:
        reply = client.cancel_fulfillment_order("1001")
        assert reply.status == 200 and reply.data == {} and reply.request_id
        assert client.get_fulfillment_order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Cancelled"
        with pytest.raises(AlreadyCancelledError) as caught:
            client.cancel_fulfillment_order("1001")
        assert caught.value.code == "DuplicateCancelRequest" and "DuplicateCancelRequest" in str(caught.value)
        assert isinstance(caught.value, BusinessError) and caught.value.request_id
        with pytest.raises(NotCancellableError) as caught:
            client.cancel_fulfillment_order("1002")
        assert caught.value.code == "OrderNotCancellable" and not caught.value.retryable
        # A 5xx after sending is ambiguous: raised, never resent by the client.
        fault(server, kind="5xx", status=503, path="/1003/cancel$")
        with pytest.raises(RetryableError):
            client.cancel_fulfillment_order("1003")
        assert client.stats.calls[CANCEL] == 4 and not client.stats.retries[CANCEL]
        # A 429 proves the request was not processed: retried, and it lands once.
        fault(server, kind="429", path="/1004/cancel$", count=2)
        client.cancel_fulfillment_order("1004")
        assert client.stats.retries[CANCEL] == 2
    assert counted(server, CANCEL) == 7
    outcomes = [(w.path.rsplit("/", 2)[1], w.outcome) for w in writes(server, CANCEL)]
    assert outcomes == [("1001", "ok"), ("1001", "InvalidInput"), ("1002", "InvalidInput"), ("1004", "ok")]


# ---------------------------------------------------------------- quota
def test_limiter_paces_a_burst_at_the_documented_quota(run_sandbox, virtual_time):
    """Default client, default simulator: the burst at once, then 2 a second, and never a 429
    (both sides on one virtual clock: the quotas' arithmetic, not the machine's speed)."""
    server = start(run_sandbox, [mcf_order(1)], Settings(clock_rate=0))
    server.sandbox.clock.quota_source = virtual_time
    with make_client(server, scaled=False, sleep=virtual_time.sleep) as client:
        client.clock = virtual_time
        assert client.quotas[GET] == (2.0, 30) and client.quotas[CREATE_REPORT] == (0.0167, 15)
        # One token of the documented burst of 30 is kept back for network jitter.
        assert (client.limiter(GET).rate, client.limiter(GET).burst) == (2.0, 29)
        client.access_token()
        sent: list[float] = []
        client.http.event_hooks["request"] = [lambda request: sent.append(virtual_time())]
        for _ in range(60):
            client.get_fulfillment_order("1001")
        assert client.stats.throttled[GET] == 0 and client.stats.calls[GET] == 60
    assert counted(server, GET) == 60 and counted(server, GET, "throttles") == 0
    # Never more than the documented burst plus 2/s in any window.
    for i, began in enumerate(sent):
        later = [t for t in sent[i:] if t - began < 5.0]
        assert len(later) <= 30 + 2 * 5.0
    assert sent[59] - sent[0] >= 15.0


# ---------------------------------------------------------------- reports
# For a test that reads a report on the real clock and asserts nothing of how long it took.
QUICK_REPORTS = {"report_queue_seconds": 0.2, "report_processing_seconds": 0.2}


def on_one_clock(server, **kwargs) -> tuple[AmazonMcfClient, VirtualTime]:
    """A client and the simulator on one virtual clock: the simulator's report builds (1 s queued,
    then 2 s in progress), link lifetimes and quotas, and the client's pacing, polls and patience.
    What the test sees is arithmetic, never the machine's speed, and the waits take no time."""
    clock = VirtualTime(time.time())
    server.sandbox.clock.wall_source = server.sandbox.clock.quota_source = clock
    client = make_client(server, sleep=clock.sleep, **kwargs)
    client.clock = clock
    return client, clock


def shipped_in(server, start: datetime, end: datetime) -> set[tuple[str, str, str]]:
    """(sellerFulfillmentOrderId, shipment id, tracking) the simulator shipped in the window."""
    found = set()
    for order in server.sandbox.platforms[P].orders.values():
        for shipment in order.shipments:
            if shipment.status == "SHIPPED" and start <= shipment.ship_date <= end:
                found.add((order.sfo_id, shipment.shipment_id, shipment.packages[0].tracking))
    return found


def test_fulfilled_shipments_report_is_created_polled_downloaded_and_parsed(run_sandbox):
    doc = generate(600, seed=5)
    server = start(run_sandbox, doc, Settings(rate_scale=SCALE, clock_rate=0))
    begin = NOW - timedelta(days=3)
    client, _ = on_one_clock(server)
    with client:
        sent = record(client)
        rows = client.fulfilled_shipments(begin, NOW, poll_interval=0.1, timeout=10)
        expected = shipped_in(server, begin, NOW)
        assert len(expected) > 50
        assert {(r["merchant-order-id"], r["shipment-id"], r["tracking-number"]) for r in rows} == expected
        assert list(rows[0]) == list(SHIPMENT_REPORT_COLUMNS)
        assert all(r["sales-channel"] == "Non-Amazon" and r["quantity-shipped"].isdigit() for r in rows)
        assert client.stats.calls[CREATE_REPORT] == 1 and client.stats.calls[GET_DOCUMENT] == 1
        assert client.stats.calls[DOWNLOAD] == 1 and client.stats.calls[GET_REPORT] >= 2
        (create,) = [r for r in sent if r.method == "POST" and r.url.path.endswith("/reports")]
        assert json.loads(create.content) == {
            "reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
            "marketplaceIds": ["ATVPDKIKX0DER"],
            "dataStartTime": iso(begin),
            "dataEndTime": iso(NOW),
        }
        (download,) = [r for r in sent if r.url.path.startswith("/_documents/")]
        assert "x-amz-access-token" not in download.headers and "X-Amz-Signature" in str(download.url)
        # Nothing in the window: Amazon cancels the report, which says nothing about tracking (None).
        assert client.fulfilled_shipments("2025-01-01T00:00:00Z", "2025-01-10T00:00:00Z", poll_interval=0.1) is None
        # More than a month: the report ends FATAL.
        with pytest.raises(ReportFailedError) as caught:
            client.fulfilled_shipments(NOW - timedelta(days=45), NOW, poll_interval=0.1)
        assert caught.value.code == "FATAL" and not caught.value.retryable
        # Asked again within 30 minutes of the first: cancelled, not empty; after them, built anew.
        assert client.fulfilled_shipments(begin, NOW, poll_interval=0.1, timeout=10) is None
        server.sandbox.clock.advance(30 * 60)
        assert client.fulfilled_shipments(begin, NOW, poll_interval=0.1, timeout=10) == rows
    assert len(writes(server, CREATE_REPORT)) == 5


def test_a_report_built_as_fast_as_the_last_is_read_with_one_poll(run_sandbox):
    server = start(run_sandbox, generate(300, seed=5), Settings(rate_scale=SCALE, clock_rate=0))
    begin = NOW - timedelta(days=3)
    client, _ = on_one_clock(server)
    with client:
        first = client.collect_fulfilled_shipments(client.request_fulfilled_shipments(begin, NOW), poll_interval=0.5)
        assert client.stats.calls[GET_REPORT] == 6  # every 0.5 s until the report is built, at 3 s
        assert client.build_seconds == 3.0  # createdTime -> processingEndTime (whole seconds)
        learned = client.build_seconds
    server.sandbox.clock.advance(30 * 60)
    client, _ = on_one_clock(server)
    with client:
        again = client.collect_fulfilled_shipments(
            client.request_fulfilled_shipments(begin, NOW), poll_interval=0.5, expected_seconds=learned
        )
        assert again == first and client.stats.calls[GET_REPORT] == 1


def test_a_set_first_report_poll_is_the_wait_before_the_first_poll_whatever_was_learned(run_sandbox):
    """A simulator that builds reports at once (`report_*_seconds` 0) is polled at once when the
    connection says so; the learned build time no longer sets the first wait."""
    instant = {"report_queue_seconds": 0, "report_processing_seconds": 0}
    server = start(run_sandbox, generate(300, seed=5), Settings(rate_scale=SCALE, clock_rate=0, platforms={P: instant}))
    begin = NOW - timedelta(days=3)
    for first_report_poll, expected_seconds, first_wait in ((None, None, 1.0), (None, 2.0, 3.2), (0.0, 2.0, 0.0)):
        slept: list[float] = []
        with make_client(server, first_report_poll=first_report_poll, sleep=slept.append) as client:
            report_id = client.request_fulfilled_shipments(begin, NOW)
            slept.clear()  # the waits of the report's collection only
            client.collect_fulfilled_shipments(report_id, expected_seconds=expected_seconds)
            assert client.stats.calls[GET_REPORT] == 1 and slept[0] == pytest.approx(first_wait)
        server.sandbox.clock.advance(30 * 60)


def test_report_faults_timeout_and_an_expired_document_url(run_sandbox):
    settings = Settings(rate_scale=SCALE, clock_rate=0, platforms={P: {"document_url_ttl_seconds": 2}})
    server = start(run_sandbox, generate(300, seed=8), settings)
    begin = NOW - timedelta(days=3)
    client, clock = on_one_clock(server)
    downloads = []

    def second_download_late(request: httpx.Request) -> None:
        if request.url.path.startswith("/_documents/"):
            downloads.append(request.url)
            if len(downloads) == 2:
                clock.sleep(3)  # past the 2 s link's life

    client.http.event_hooks["request"] = [second_download_late]
    with client:
        expected = shipped_in(server, begin, NOW)
        # createReport's answer is lost after the report was made: found by reading, not created twice.
        fault(server, kind="truncated", path="/reports$")
        # The download is cut off once, then the URL has expired by the time it is fetched again.
        fault(server, kind="truncated", path="^/_documents/")
        rows = client.fulfilled_shipments(begin, NOW, poll_interval=0.1, timeout=10)
        assert {(r["merchant-order-id"], r["shipment-id"], r["tracking-number"]) for r in rows} == expected
        assert client.stats.calls[CREATE_REPORT] == 1 and client.stats.calls[GET_REPORTS] == 1
        assert client.stats.calls[DOWNLOAD] == 3 and client.stats.calls[GET_DOCUMENT] == 2
        assert len(writes(server, CREATE_REPORT)) == 1 and len(server.sandbox.platforms[P].reports) == 1


def test_a_report_still_built_when_patience_ends_is_a_retryable_timeout_naming_its_state(run_sandbox):
    """The client's patience and the simulator's build (1 s queued, 2 s in progress) run on one
    virtual clock: which state the timeout names is arithmetic, not the machine's speed."""
    server = start(run_sandbox, generate(300, seed=8), Settings(rate_scale=SCALE, clock_rate=0))
    begin = NOW - timedelta(days=3)
    client, _ = on_one_clock(server)
    with client:
        report_id = client.request_fulfilled_shipments(begin, NOW)
        for timeout, state in ((0.3, "IN_QUEUE"), (1.0, "IN_PROGRESS")):
            with pytest.raises(ReportTimeoutError) as caught:
                client.collect_fulfilled_shipments(report_id, poll_interval=0.1, timeout=timeout)
            assert caught.value.retryable and f"still {state} after {timeout:g} s" in str(caught.value)
        rows = client.collect_fulfilled_shipments(report_id, poll_interval=0.1, timeout=10)
        assert {(r["merchant-order-id"], r["shipment-id"], r["tracking-number"]) for r in rows} == shipped_in(
            server, begin, NOW
        )
    assert len(writes(server, CREATE_REPORT)) == 1


def test_flat_file_parsing():
    text = '\ufeffa\tb\tc\r\n1\t2\t3\r\n4\t"x\r\n\n'
    assert parse_flat_file(text.encode()) == [{"a": "1", "b": "2", "c": "3"}, {"a": "4", "b": '"x', "c": ""}]
    assert parse_flat_file("a\tb\ncaf\xe9\t1\n".encode("cp1252")) == [{"a": "café", "b": "1"}]
    assert parse_flat_file(b"") == []
    with pytest.raises(MalformedResponseError):
        parse_flat_file(b"a\tb\n1\t2\t3\n")
    with pytest.raises(MalformedResponseError):
        parse_flat_file(b"<html><body>502 Bad Gateway</body></html>")


# ---------------------------------------------------------------- configuration
def test_configuration_errors_name_the_field():
    base = ConnectionSettings(
        "mcf",
        "https://sellingpartnerapi-na.amazon.com",
        "amzn1.application-oa2-client.x",
        "secret",
        {"refresh_token": "Atzr|x"},
    )
    for change, field in (
        ({"login": None}, "login"),
        ({"password": None}, "password"),
        ({"extra": {}}, "refresh_token"),
        ({"extra": {"refresh_token": "Atzr|x", "lwa_url": "ftp://x"}}, "lwa_url"),
        ({"extra": {"refresh_token": "Atzr|x", "rate_scale": "fast"}}, "rate_scale"),
        ({"extra": {"refresh_token": "Atzr|x", "quotas": {GET: [1]}}}, "quotas"),
        ({"extra": {"refresh_token": "Atzr|x", "first_report_poll": -1}}, "first_report_poll"),
        ({"extra": {"refresh_token": "Atzr|x", "first_report_poll": "soon"}}, "first_report_poll"),
    ):
        settings = ConnectionSettings(**{**base.__dict__, **change})
        with pytest.raises(ConfigurationError, match=field):
            AmazonMcfClient.from_settings(settings)
    client = AmazonMcfClient.from_settings(
        ConnectionSettings(
            **{
                **base.__dict__,
                "extra": {
                    "refresh_token": "Atzr|x",
                    "marketplace_id": "A2EUQ1WTGCTBG2",
                    "timeout": "12",
                    "rate_scale": 0.5,
                    "quotas": {GET: [4, 40]},
                    "max_attempts": 3,
                    "first_report_poll": "0",
                },
            }
        )
    )
    assert (client.marketplace_id, client.http.timeout.read, client.retry.max_attempts) == ("A2EUQ1WTGCTBG2", 12.0, 3)
    assert client.first_report_poll == 0.0
    assert client.lwa_url == "https://api.amazon.com/auth/o2/token"
    assert client.quotas[GET] == (4.0, 40.0) and client.quotas[LIST] == (1.0, 15)
    assert (client.limiter(GET).rate, client.limiter(GET).burst) == (4.0, 39.0)
    assert (client.limiter(LIST).rate, client.limiter(LIST).burst) == (1.0, 14)
    assert client.limiter(CREATE_REPORT).rate == pytest.approx(0.0167 / 2)
    assert client.limiter(LWA) is None and client.limiter(DOWNLOAD) is None
    client.close()


# ---------------------------------------------------------------- the Airflow hook
@pytest.fixture
def hook_class():
    """The hook class, imported during setup: loading Airflow replaces the root log handlers, and
    the test's log capture must be installed after that to see anything."""
    from orderops_provider.hooks import AmazonMcfHook

    return AmazonMcfHook


def test_hook_from_env_connection_keeps_secrets_out_of_logs(run_sandbox, monkeypatch, caplog, capsys, hook_class):
    server = start(
        run_sandbox, generate(400, seed=3), Settings(rate_scale=SCALE, clock_rate=0, platforms={P: QUICK_REPORTS})
    )
    conn = connection_json(
        server.urls[P],
        login=DEFAULT_CREDENTIALS["client_id"],
        password=DEFAULT_CREDENTIALS["client_secret"],
        extra={
            "refresh_token": DEFAULT_CREDENTIALS["refresh_token"],
            "marketplace_id": DEFAULT_CREDENTIALS["marketplace_id"],
            "lwa_url": server.urls["amazon_lwa"] + "/auth/o2/token",
            "timeout": 5,
            "rate_scale": SCALE,
            "max_attempts": 3,
        },
    )
    monkeypatch.setenv("AIRFLOW_CONN_AMAZON_MCF_HOOKTEST", conn)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")

    hook = hook_class("amazon_mcf_hooktest")
    assert (hook.conn_type, hook.default_conn_name, hook.conn_name_attr) == (
        "amazon_mcf",
        "amazon_mcf_default",
        "amazon_mcf_conn_id",
    )
    ok, message = hook.test_connection()
    assert ok, message
    client = hook.get_client()
    assert client.marketplace_id == "ATVPDKIKX0DER" and client.retry.max_attempts == 3

    listing = client.list_fulfillment_orders()
    got = [o["sellerFulfillmentOrderId"] for o in itertools.islice(listing, 75)]
    fault(server, kind="token_expiry")
    got += [o["sellerFulfillmentOrderId"] for o in listing]
    assert set(got) == amazon_ids(generate(400, seed=3))
    sent = record(client)
    rows = client.fulfilled_shipments(NOW - timedelta(days=3), NOW, poll_interval=0.1)
    assert rows
    # The presigned document URL is a credential too (for 5 minutes): its signature is never logged.
    signatures = [r.url.params["X-Amz-Signature"] for r in sent if r.url.path.startswith("/_documents/")]
    assert len(signatures) == 1 and len(signatures[0]) == 64

    failures = []
    for call in (
        lambda: client.get_fulfillment_order("no-such-order"),
        lambda: client.cancel_fulfillment_order("no-such-order"),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        failures.append(caught.value)
    bad = connection_json(
        server.urls[P],
        login=DEFAULT_CREDENTIALS["client_id"],
        password="wrong-secret-123456",
        extra={
            "refresh_token": DEFAULT_CREDENTIALS["refresh_token"],
            "lwa_url": server.urls["amazon_lwa"] + "/auth/o2/token",
        },
    )
    monkeypatch.setenv("AIRFLOW_CONN_AMAZON_MCF_BAD", bad)
    with pytest.raises(AuthError) as caught:
        hook_class("amazon_mcf_bad").get_client().get_fulfillment_order("1001")
    failures.append(caught.value)
    logging.getLogger("orderops.test").info("hook run finished with %d failures", len(failures))
    client.close()

    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err + "".join(str(r.args) + r.getMessage() for r in caplog.records)
    assert "hook run finished" in logged and "amazon_mcf" in caplog.text  # the logs were captured
    access_tokens = list(server.sandbox.platforms[P].tokens)
    assert len(access_tokens) >= 3
    texts = [str(e) + repr(e) + repr(e.__context__) + str(e.__dict__) for e in failures]
    assert "/_documents/" in caplog.text and "<presigned query redacted>" in caplog.text
    for secret in SECRETS + ("wrong-secret-123456", *access_tokens, *signatures):
        assert secret not in logged
        assert not any(secret in text for text in texts)
    assert json.loads(conn)["password"] == DEFAULT_CREDENTIALS["client_secret"]
