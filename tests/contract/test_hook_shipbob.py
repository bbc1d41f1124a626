"""ShipBob client and hook against the ShipBob simulator over real HTTP.

Everything here talks to `sandbox/shipbob.py` on a loopback port. The only stand-in is
`Rewrite`, a transport that forwards to the simulator and then edits the paging headers of its
answers: the simulator always sends correct headers, so lists without headers, links that loop
and links to another host cannot be served by it.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import time
from datetime import date, datetime, timedelta

import httpx
import pytest

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    PagingError,
    Reply,
    RetryableError,
    RetryPolicy,
    ThrottledError,
)
from orderops_provider.connection import ConnectionSettings
from orderops_provider.shipbob import CancelOutcome, ShipBobClient, _csv_batches
from sandbox.core import Settings
from sandbox.generate import generate
from sandbox.shipbob import DEFAULT_CREDENTIALS
from tests.conftest import connection_json, settled_count
from tests.support import NOW, iso

PAT = DEFAULT_CREDENTIALS["personal_access_tokens"][0]
CHANNEL = DEFAULT_CREDENTIALS["channel_id"]
READONLY_CHANNEL = DEFAULT_CREDENTIALS["readonly_channel_id"]
FAST = RetryPolicy(max_attempts=6, base=0.01, cap=0.05)
# Quotas x20 on both sides so that bulk tests are not paced at 2.5 requests a second.
SCALE = 20
SCALED = Settings(rate_scale=SCALE, clock_rate=0)
LIST = ("shipbob", "GET /2026-07/order")


# ---------------------------------------------------------------- scenarios


def sb_order(
    i: int,
    status: str = "Processing",
    shipments: list | None = None,
    reference: str | None = None,
    created: datetime | None = None,
) -> dict:
    created = created or NOW - timedelta(days=3) + timedelta(seconds=37 * i)
    doc = {
        "tiktok": {
            "id": str(576000000000000000 + i),
            "status": "AWAITING_SHIPMENT",
            "create_time": iso(created),
            "rts_sla_time": iso(NOW + timedelta(days=1)),
            "shipping_due_time": iso(NOW + timedelta(days=7)),
            "line_items": [{"id": str(577000000000000000 + i), "seller_sku": "OSL-TEE-M"}],
        },
        "shopify": {"id": 6100000000 + i, "name": f"#{1000 + i}", "tiktok_id_in": "name", "cancelled": False},
        "fulfiller": "shipbob",
        "shipbob": {"order_id": 9000000 + i, "reference_id": reference or str(6100000000 + i), "status": status},
    }
    if shipments is not None:
        doc["shipbob"]["shipments"] = shipments
    return doc


def ship(i: int, k: int = 0, status: str = "Processing", detail: str | None = None) -> dict:
    doc = {"id": 20000000 + i * 10 + k, "status": status}
    if detail:
        doc["status_detail"] = detail
    return doc


def scenario(orders: list[dict]) -> dict:
    return {"now": iso(NOW), "orders": orders}


def shipbob_ids(doc: dict) -> set[int]:
    return {o["shipbob"]["order_id"] for o in doc["orders"] if o.get("shipbob")}


def make_client(server, *, scaled: bool = True, **kwargs) -> ShipBobClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("channel_id", CHANNEL)
    kwargs.setdefault("today", NOW.date)  # versions retire on the scenario's day, not the machine's
    if scaled:
        kwargs.setdefault("rate_limit", 150 * SCALE)
    return ShipBobClient(server.urls["shipbob"], kwargs.pop("token", PAT), **kwargs)


def admin(server) -> httpx.Client:
    return httpx.Client(base_url=server.urls["shipbob"], timeout=10)


def fault(server, **spec) -> None:
    with admin(server) as api:
        response = api.post("/_sandbox/faults", json={"platform": "shipbob", **spec})
        assert response.status_code == 200, response.text


def mint_token(server) -> str:
    with admin(server) as api:
        return api.post("/_sandbox/shipbob/tokens").json()["token"]


def writes(server) -> list:
    return list(server.sandbox.writes)


class Rewrite(httpx.BaseTransport):
    """Forwards to the simulator, then lets a test edit the answer (see the module docstring)."""

    def __init__(self, edit):
        self.inner = httpx.HTTPTransport()
        self.edit = edit
        self.urls: list[httpx.URL] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        response = self.inner.handle_request(request)
        response.read()
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        headers = self.edit(request, dict(headers))
        return httpx.Response(response.status_code, headers=headers, content=response.content, request=request)

    def close(self) -> None:
        self.inner.close()


# ---------------------------------------------------------------- paging at size
@pytest.mark.parametrize("version", ("2026-01", "2026-07"))
def test_paging_thousands_of_orders_is_complete_lazy_and_counted(run_sandbox, version):
    doc = generate(8000, seed=11)
    expected = shipbob_ids(doc)
    assert 2500 < len(expected) < 3500
    server = run_sandbox(doc, platforms=("shipbob",), settings=SCALED)
    with make_client(server, api_version=version) as client:
        first = list(itertools.islice(client.orders(), 10))
        assert len(first) == 10 and client.stats.calls["orders"] == 1  # lazy: one page so far

        got = [o["id"] for o in client.orders()]
        pages = math.ceil(len(expected) / 250)
        assert len(got) == len(expected) and set(got) == expected
        assert client.stats.calls["orders"] == 1 + pages
        assert settled_count(server, ("shipbob", f"GET /{version}/order")) == 1 + pages
        created = [o["created_date"] for o in client.orders(limit=200)]
        assert created == sorted(created)  # Oldest first, so new orders only ever land on the last page
        assert client.stats.calls["orders"] == 1 + pages + math.ceil(len(expected) / 200)
        rows = {r["operation"]: r for r in client.stats.as_rows("shipbob")}
        assert rows["orders"]["calls"] == client.stats.calls["orders"] and rows["orders"]["failures"] == 0
        # The payloads are ShipBob's own objects, untouched.
        sample = client.order(first[0]["id"])
        assert sample == first[0]


def test_reference_ids_are_batched_into_short_urls(run_sandbox):
    orders = [sb_order(i, reference=f"TTS-{576000000000000000 + i}-REF") for i in range(900)]
    server = run_sandbox(scenario(orders), platforms=("shipbob",), settings=SCALED)
    wanted = [o["shipbob"]["reference_id"] for o in orders[::2]]  # 450 references
    asked = wanted + wanted[:20] + ["NO-SUCH-REFERENCE-1", "NO-SUCH-REFERENCE-2"]
    urls: list[str] = []
    with make_client(server) as client:
        client.http.event_hooks["request"] = [lambda request: urls.append(str(request.url))]
        got = list(client.orders(reference_ids=asked))
        assert sorted(o["reference_id"] for o in got) == sorted(wanted)
        assert len(urls) > 1 and max(len(u) for u in urls) < 2000
        assert len(urls) == len(_csv_batches(asked, "reference_ids"))

        ids = [9000000 + i for i in range(0, 900, 3)]
        assert sorted(o["id"] for o in client.orders(ids=ids)) == ids

        before = len(urls)
        assert list(client.orders(reference_ids=[])) == []  # an empty filter is "no order", not "all"
        assert len(urls) == before
        with pytest.raises(ValueError, match="comma"):
            list(client.orders(reference_ids=["A,B"]))
        with pytest.raises(ValueError, match="time zone"):
            list(client.orders(last_update_start=datetime(2026, 11, 1)))


def test_filters_reach_the_platform(run_sandbox):
    t = NOW - timedelta(days=1)
    orders = [
        sb_order(1, created=t, shipments=[ship(1)]),
        sb_order(2, status="Fulfilled", created=t + timedelta(hours=2), shipments=[ship(2, status="Completed")]),
        sb_order(3, status="Fulfilled", created=t + timedelta(hours=3), shipments=[ship(3, status="Completed")]),
        sb_order(4, created=t + timedelta(hours=4), shipments=[ship(4)]),
    ]
    server = run_sandbox(scenario(orders), platforms=("shipbob",), settings=SCALED)
    with make_client(server) as client:
        assert [o["id"] for o in client.orders(has_tracking=True)] == [9000002, 9000003]
        assert [o["id"] for o in client.orders(has_tracking=False)] == [9000001, 9000004]
        window = client.orders(start_date=t + timedelta(hours=1), end_date=t + timedelta(hours=4))
        assert [o["id"] for o in window] == [9000002, 9000003]
        assert [o["id"] for o in client.orders(start_date=iso(t + timedelta(hours=3)), sort="Newest")] == [
            9000004,
            9000003,
        ]
        # every order was updated since the first was created (a shipment is dated when it shipped)
        updated = client.orders(last_update_start=t)
        assert sorted(o["id"] for o in updated) == [9000001, 9000002, 9000003, 9000004]
        assert list(client.orders(last_update_start=NOW + timedelta(hours=1))) == []
        assert {c["id"] for c in client.channels()} == {READONLY_CHANNEL, CHANNEL, 100300}


# ---------------------------------------------------------------- paging guards
def test_paging_without_headers_falls_back_to_short_pages(run_sandbox):
    server = run_sandbox(scenario([sb_order(i) for i in range(1000)]), platforms=("shipbob",), settings=SCALED)
    strip = Rewrite(
        lambda request, headers: {k: v for k, v in headers.items() if k not in ("next-page", "total-pages")}
    )
    with make_client(server, transport=strip) as client:
        got = [o["id"] for o in client.orders()]
    assert sorted(got) == [9000000 + i for i in range(1000)]
    assert len(strip.urls) == 5  # four full pages, then an empty one says "no more"


def test_total_pages_alone_is_enough(run_sandbox):
    server = run_sandbox(scenario([sb_order(i) for i in range(1000)]), platforms=("shipbob",), settings=SCALED)
    only_total = Rewrite(lambda request, headers: {k: v for k, v in headers.items() if k != "next-page"})
    with make_client(server, transport=only_total) as client:
        assert len({o["id"] for o in client.orders()}) == 1000
    assert len(only_total.urls) == 4


@pytest.mark.parametrize(
    "link",
    [
        "/2026-07/fulfillment-order?Page=2&Limit=250",  # another listing
        "/2026-07/order?cursor=abc",  # no page in it
        "page 2",
    ],
)
def test_a_next_page_link_of_unexpected_form_falls_back_to_page_numbers(run_sandbox, link, caplog):
    server = run_sandbox(scenario([sb_order(i) for i in range(600)]), platforms=("shipbob",), settings=SCALED)
    odd = Rewrite(lambda request, headers: {**headers, "next-page": link} if "next-page" in headers else headers)
    with make_client(server, transport=odd) as client, caplog.at_level(logging.WARNING):
        assert len({o["id"] for o in client.orders()}) == 600
    assert [dict(u.params)["Page"] for u in odd.urls] == ["1", "2", "3"]
    assert "paging by page number" in caplog.text


def test_a_next_page_that_loops_or_leaves_the_host_is_refused(run_sandbox):
    server = run_sandbox(scenario([sb_order(i) for i in range(600)]), platforms=("shipbob",), settings=SCALED)

    def loop(request, headers):
        if "next-page" in headers:
            headers["next-page"] = "/2026-07/order?Page=2&Limit=250&SortOrder=Oldest"
        return headers

    looping = Rewrite(loop)
    with make_client(server, transport=looping) as client:
        with pytest.raises(PagingError, match="came back|repeats"):
            list(client.orders())
    assert len(looping.urls) <= 3

    def elsewhere(request, headers):
        if "next-page" in headers:
            headers["next-page"] = "https://collector.invalid/2026-07/order?Page=2"
        return headers

    leaving = Rewrite(elsewhere)
    with make_client(server, transport=leaving) as client:
        with pytest.raises(PagingError, match="another host"):
            list(client.orders())
    assert [u.host for u in leaving.urls] == ["127.0.0.1"]  # the token never went anywhere else


def test_empty_pages_that_always_point_further_are_stopped(run_sandbox):
    """The sandbox's `endless` fault: every page an empty list whose Next-Page names the next one."""
    server = run_sandbox(scenario([sb_order(i) for i in range(30)]), platforms=("shipbob",), settings=SCALED)
    fault(server, kind="endless", path="/order$", count=50)
    with make_client(server) as client:
        with pytest.raises(PagingError, match="3 empty pages in a row"):
            list(client.orders())
    assert client.stats.calls["orders"] == 3


# ---------------------------------------------------------------- auth
def test_token_revoked_mid_paging_is_replaced_and_no_page_is_lost(run_sandbox):
    orders = [sb_order(i) for i in range(1200)]
    server = run_sandbox(scenario(orders), platforms=("shipbob",), settings=SCALED)
    fresh: list[str] = []

    def source() -> str:
        fresh.append(mint_token(server))  # the operator put a new token in the connection
        return fresh[-1]

    with make_client(server, token_source=source) as client:
        listing = client.orders()
        got = [o["id"] for o in itertools.islice(listing, 500)]  # two pages of 250
        fault(server, kind="token_expiry", path="/order$")
        got += [o["id"] for o in listing]
        assert sorted(got) == [9000000 + i for i in range(1200)] and len(got) == 1200
        assert len(fresh) == 1 and client._token == fresh[0]
        assert client.stats.calls["orders"] == 5 + 1  # five pages, one refused attempt
        assert client.stats.failures["orders"] == 0 and client.stats.retries["orders"] == 0
    assert settled_count(server, LIST) == 6
    assert server.sandbox.platforms["shipbob"].state()["tokens"] == {"active": 1, "revoked": 1}


def test_revoked_token_without_a_new_one_fails_fast_without_leaking_it(run_sandbox):
    server = run_sandbox(scenario([sb_order(i) for i in range(600)]), platforms=("shipbob",), settings=SCALED)
    secret = mint_token(server)
    with make_client(server, token=secret, token_source=lambda: secret) as client:
        listing = client.orders()
        next(listing)
        fault(server, kind="token_expiry", path="/order$")
        with pytest.raises(AuthError) as caught:
            list(listing)
        assert secret not in str(caught.value) and secret not in repr(caught.value.__context__)
        assert client.stats.calls["orders"] == 2 and client.stats.failures["orders"] == 1
    assert settled_count(server, LIST) == 2  # one refused request, not a retry loop

    with make_client(server, token="shipbob-sandbox-pat-wrong-0000") as client:  # no token source at all
        with pytest.raises(AuthError) as caught:
            client.order(9000001)
        assert caught.value.status == 401 and "wrong" not in str(caught.value)
        assert client.stats.calls["order"] == 1


def test_forbidden_channel_and_missing_channel(run_sandbox):
    server = run_sandbox(scenario([sb_order(1)]), platforms=("shipbob",), settings=SCALED)
    with make_client(server, channel_id=READONLY_CHANNEL) as client:
        assert client.order(9000001)["id"] == 9000001  # reads work on a read-only channel
        with pytest.raises(AuthError, match="permission") as caught:
            client.cancel_order(9000001)
        assert caught.value.status == 403 and client.stats.calls["cancel_order"] == 1
    with make_client(server, channel_id=None) as client:
        with pytest.raises(ConfigurationError, match="channel_id"):
            client.cancel_order(9000001)
        assert client.stats.calls == {}
    assert [(w.status, w.outcome) for w in writes(server)] == [(403, "forbidden")]
    assert server.sandbox.platforms["shipbob"].state()["orders"][0]["status"] == "Processing"


# ---------------------------------------------------------------- faults
def test_5xx_and_garbled_pages_are_retried_without_losing_a_page(run_sandbox):
    server = run_sandbox(scenario([sb_order(i) for i in range(1000)]), platforms=("shipbob",), settings=SCALED)
    with make_client(server) as client:
        listing = client.orders()
        got = [o["id"] for o in itertools.islice(listing, 250)]
        fault(server, kind="5xx", status=503, path="/order$", count=2)
        got += [o["id"] for o in itertools.islice(listing, 250)]
        fault(server, kind="truncated", path="/order$")
        got += [o["id"] for o in itertools.islice(listing, 250)]
        fault(server, kind="malformed", path="/order$")
        fault(server, kind="5xx", status=500, path="/order$")
        got += [o["id"] for o in listing]
        assert sorted(got) == [9000000 + i for i in range(1000)] and len(got) == 1000
        assert client.stats.retries["orders"] == 5 and client.stats.calls["orders"] == 4 + 5
    assert settled_count(server, LIST) == 9


def test_429_storm_honours_x_retry_after(run_sandbox):
    server = run_sandbox(scenario([sb_order(i) for i in range(600)]), platforms=("shipbob",), settings=SCALED)
    waits: list[float] = []

    def nap(seconds: float) -> None:  # record every wait; sleep only the short ones
        waits.append(seconds)
        time.sleep(min(seconds, 0.05))

    policy = RetryPolicy(max_attempts=8, base=0.01, cap=0.05)
    with make_client(server, retry=policy, sleep=nap) as client:
        fault(server, kind="429", path="/order$", count=5)
        assert len({o["id"] for o in client.orders()}) == 600
        assert client.stats.throttled["orders"] == 5 and client.stats.retries["orders"] == 5
        # The simulator says x-retry-after: 1; the backoff alone would wait at most 0.05 s.
        assert sum(1 for w in waits if w >= 1.0) == 5
        fault(server, kind="429", path="/order/9000001$", count=8)
        with pytest.raises(ThrottledError) as caught:
            client.order(9000001)
        assert caught.value.retry_after == 1.0 and client.stats.failures["order"] == 1
    assert settled_count(server, ("shipbob", "GET /2026-07/order"), "throttles") == 5
    assert settled_count(server, ("shipbob", "GET /2026-07/order/{orderId}"), "throttles") == 8


def test_a_hang_times_out_and_the_read_is_retried(run_sandbox):
    server = run_sandbox(scenario([sb_order(1)]), platforms=("shipbob",), settings=SCALED)
    with make_client(server, timeout=2.0) as client:
        fault(server, kind="hang", path="/order/9000001$", seconds=30)
        assert client.order(9000001)["id"] == 9000001
        assert client.stats.calls["order"] == 2 and client.stats.retries["order"] == 1


# ---------------------------------------------------------------- cancels
@pytest.mark.parametrize(
    "version,order_path",
    [
        ("2026-01", "/2026-01/order/9000001:cancel"),
        ("2026-07", "/2026-07/order/9000001:cancel"),
    ],
)
def test_cancel_paths_results_and_refusals(run_sandbox, version, order_path):
    server = run_sandbox(
        scenario(
            [
                sb_order(1, shipments=[ship(1, 0), ship(1, 1, status="OnHold")]),
                sb_order(2, shipments=[ship(2)]),
                sb_order(3, shipments=[ship(3, detail="Picked")]),
                sb_order(4, shipments=[ship(4, status="Completed"), ship(4, 1)]),
            ]
        ),
        platforms=("shipbob",),
        settings=SCALED,
    )
    with make_client(server, api_version=version) as client:
        reply = client.cancel_order(9000001)
        assert isinstance(reply, Reply) and reply.status == 200
        outcome = CancelOutcome.from_reply(9000001, reply)
        assert outcome.status == "Success" and outcome.fully_cancelled
        assert outcome.cancelled == (20000010, 20000011) and outcome.refused == {}

        refused = CancelOutcome.from_reply(9000003, client.cancel_order(9000003))
        assert refused.status == "Failure" and not refused.fully_cancelled
        assert "picked" in refused.refused[20000030]
        partial = CancelOutcome.from_reply(9000004, client.cancel_order(9000004))
        assert partial.status == "PartialSuccess" and partial.cancelled == (20000041,)

        with pytest.raises(NotFoundError):
            client.cancel_order(9999999)
        assert client.stats.calls["cancel_order"] == 4
    done = [(w.path, w.status, w.outcome) for w in writes(server)]
    assert done[0] == (order_path, 200, "ok")
    assert [w.status for w in writes(server)] == [200, 200, 200, 404]
    assert all(w.method == "POST" for w in writes(server))


def test_order_cancel_refused_as_422_is_a_business_error(run_sandbox):
    settings = Settings(rate_scale=SCALE, clock_rate=0, platforms={"shipbob": {"order_cancel_refused_as": "422"}})
    server = run_sandbox(
        scenario([sb_order(1, shipments=[ship(1, detail="Labeled")])]), platforms=("shipbob",), settings=settings
    )
    with make_client(server) as client:
        with pytest.raises(BusinessError, match="labeled") as caught:
            client.cancel_order(9000001)
        assert list(caught.value.errors) == ["OrderId"] and not caught.value.retryable
        with pytest.raises(BusinessError) as caught:
            client.order(2**31)  # beyond int32: ShipBob's validation dictionary
        assert caught.value.status == 400 and "orderId" in str(caught.value)
        assert client.stats.calls["cancel_order"] == 1 and client.stats.retries["cancel_order"] == 0


def test_a_cancel_is_never_resent_blindly(run_sandbox):
    server = run_sandbox(
        scenario([sb_order(i, shipments=[ship(i)]) for i in range(1, 5)]), platforms=("shipbob",), settings=SCALED
    )
    cancel_op = ("shipbob", "POST /2026-07/order/{orderId}:cancel")
    with make_client(server, timeout=2.0) as client:
        # Processed but the answer was cut: raised as is, not sent again.
        fault(server, kind="truncated", path=r"/order/9000001:cancel$")
        with pytest.raises(MalformedResponseError):
            client.cancel_order(9000001)
        assert client.stats.calls["cancel_order"] == 1 and client.stats.failures["cancel_order"] == 1
        # A 5xx from the gateway, a timeout: both ambiguous, both raised after one request.
        fault(server, kind="5xx", status=502, path=r"/order/9000002:cancel$")
        with pytest.raises(RetryableError):
            client.cancel_order(9000002)
        fault(server, kind="hang", seconds=30, path=r"/order/9000003:cancel$")
        with pytest.raises(RetryableError, match="timed out"):
            client.cancel_order(9000003)
        assert client.stats.calls["cancel_order"] == 3 and client.stats.retries["cancel_order"] == 0
        # Throttled requests never reached the handler: those are retried.
        fault(server, kind="429", path=r"/order/9000004:cancel$", count=2)
        assert client.cancel_order(9000004).data["status"] == "Success"
        assert client.stats.calls["cancel_order"] == 6 and client.stats.throttled["cancel_order"] == 2
    assert settled_count(server, cancel_op) == 6
    # Writes the simulator performed: the cut answer's cancel and the throttled one's, once each.
    assert [(w.path, w.outcome) for w in writes(server)] == [
        ("/2026-07/order/9000001:cancel", "ok"),
        ("/2026-07/order/9000004:cancel", "ok"),
    ]


# ---------------------------------------------------------------- quota
def test_limiter_paces_at_the_documented_quota(run_sandbox, virtual_time):
    """Default client, default simulator: 150/min means a burst of 5, then under 2.5 requests a
    second (both sides on one virtual clock)."""
    server = run_sandbox(scenario([sb_order(1)]), platforms=("shipbob",), settings=Settings(clock_rate=0))
    server.sandbox.clock.quota_source = virtual_time
    sent: list[float] = []
    with ShipBobClient(server.urls["shipbob"], PAT, retry=FAST, sleep=virtual_time.sleep, today=NOW.date) as client:
        client.clock = virtual_time
        client.http.event_hooks["request"] = [lambda request: sent.append(virtual_time())]
        began = virtual_time()
        remaining = [
            client.call("order", "GET", "/2026-01/order/9000001").headers["x-remaining-calls"] for _ in range(18)
        ]
    assert remaining[-1] == str(150 - 18) and not server.sandbox.throttles
    # 144 per 60 s after a burst of 5 (no minute can hold more than 149 of the 150 allowed): the 18th
    # request cannot leave before 13 more tokens came
    assert sent[-1] - began >= 13 / (144 / 60) * 0.99, sent[-1] - began


def test_sustained_load_never_trips_the_sliding_window(run_sandbox, virtual_time):
    """A compressed window (30 per 2 s) so that several windows pass (on one virtual clock)."""
    quota = {"shipbob": {"rate_limit": 30, "rate_window_seconds": 2.0}}
    server = run_sandbox(
        scenario([sb_order(1)]), platforms=("shipbob",), settings=Settings(clock_rate=0, platforms=quota)
    )
    server.sandbox.clock.quota_source = virtual_time
    sent: list[float] = []
    with make_client(server, scaled=False, rate_limit=30, rate_window=2.0, sleep=virtual_time.sleep) as client:
        client.clock = virtual_time
        client.http.event_hooks["request"] = [lambda request: sent.append(virtual_time())]
        for _ in range(50):
            client.order(9000001)
        assert client.stats.throttled["order"] == 0
    assert not server.sandbox.throttles
    assert max(sum(1 for t in sent if s <= t < s + 2.0) for s in sent) <= 29

    # The same load from a client that ignores the quota is throttled, and still gets through
    # by waiting as x-retry-after says.
    with make_client(
        server,
        scaled=False,
        rate_limit=100_000,
        rate_window=1.0,
        sleep=virtual_time.sleep,
        retry=RetryPolicy(max_attempts=10, base=0.01, cap=0.05),
    ) as greedy:
        greedy.clock = virtual_time
        for _ in range(40):
            greedy.order(9000001)
        assert greedy.stats.throttled["order"] > 0
    assert server.sandbox.throttles


# ---------------------------------------------------------------- configuration
def test_configuration_errors_name_the_field():
    with pytest.raises(ConfigurationError, match="api_version"):
        ShipBobClient("https://api.shipbob.com", PAT, api_version="2.0")
    with pytest.raises(ConfigurationError, match="channel_id"):
        ShipBobClient("https://api.shipbob.com", PAT, channel_id="abc", today=NOW.date)
    with pytest.raises(ConfigurationError, match="password"):
        ShipBobClient.from_settings(ConnectionSettings("sb", "https://api.shipbob.com", None, None, {}))
    client = ShipBobClient.from_settings(
        ConnectionSettings(
            "sb",
            "https://sandbox-api.shipbob.com",
            None,
            PAT,
            {"api_version": "2026-01", "channel_id": "100201", "timeout": "12", "rate_limit": 75},
        ),
        today=NOW.date,
    )
    assert (client.api_version, client.channel_id, client.http.timeout.read) == ("2026-01", 100201, 12.0)
    assert client.limiter("orders") is client.limiter("cancel_order")  # one quota per token
    assert client.limiter("orders").rate == pytest.approx((75 - 2.5 - 1) / 60)
    with pytest.raises(ValueError, match="order_id"):
        client.order("1/../../channel")  # ids never reach a path unchecked
    with pytest.raises(ValueError, match="limit"):
        client.orders(limit=251)
    client.close()


def test_versions_past_their_end_of_support_are_refused_naming_the_way_out(run_sandbox):
    url = "https://api.shipbob.com"

    def on(day: date):
        return lambda: day

    live = "use 2026-01 (supported until 2027-01-31), 2026-07 (supported until 2028-01-31)"
    for version in ("1.0", "2.0", "2025-07"):
        with pytest.raises(ConfigurationError) as retired:
            ShipBobClient(url, PAT, api_version=version, today=on(date(2026, 12, 7)))
        assert str(retired.value) == (
            f"shipbob: api_version {version!r} reached end of support on 2026-07-31 and is no longer accessible; {live}"
        )
    assert ShipBobClient(url, PAT, api_version="2025-07", today=on(date(2026, 7, 31))).api_version == "2025-07"
    with pytest.raises(
        ConfigurationError,
        match=r"'2026-01' reached end of support on 2027-01-31 and is no "
        r"longer accessible; use 2026-07 \(supported until 2028-01-31\)$",
    ):
        ShipBobClient(url, PAT, api_version="2026-01", today=on(date(2027, 2, 1)))
    with pytest.raises(ConfigurationError, match=f"'2026-04' is not one this client speaks; {re.escape(live)}$"):
        ShipBobClient(url, PAT, api_version="2026-04", today=on(date(2026, 12, 7)))
    with pytest.raises(ConfigurationError, match=r"^connection 'sb': shipbob: api_version '1.0' reached end"):
        ShipBobClient.from_settings(
            ConnectionSettings("sb", url, None, PAT, {"api_version": "1.0"}), today=on(date(2026, 12, 7))
        )
    assert ShipBobClient(url, PAT, today=on(date(2026, 12, 7))).api_version == "2026-07"  # the default

    # A client whose calendar lags behind the platform's hears ShipBob's own refusal, named.
    server = run_sandbox(scenario([sb_order(1)]), platforms=("shipbob",), settings=SCALED)
    with make_client(server, api_version="2025-07", today=on(date(2026, 7, 31))) as lagging:
        with pytest.raises(BusinessError, match="API version 2025-07 is no longer accessible") as refused:
            lagging.order(9000001)
    assert refused.value.status == 410 and lagging.stats.calls["order"] == 1  # not retried


# ---------------------------------------------------------------- the Airflow hook
@pytest.fixture
def hook_class():
    """The hook class, imported during setup: loading Airflow replaces the root log handlers, and
    the test's log capture must be installed after that to see anything."""
    from orderops_provider.hooks import ShipBobHook

    return ShipBobHook


def test_hook_from_env_connection_keeps_the_token_out_of_logs(run_sandbox, monkeypatch, caplog, capsys, hook_class):
    server = run_sandbox(scenario([sb_order(i) for i in range(300)]), platforms=("shipbob",), settings=SCALED)
    token = mint_token(server)
    conn = connection_json(
        server.urls["shipbob"],
        password=token,
        extra={
            "api_version": "2026-07",
            "channel_id": CHANNEL,
            "timeout": 5,
            "rate_limit": 150 * SCALE,
            "max_attempts": 3,
        },
    )
    monkeypatch.setenv("AIRFLOW_CONN_SHIPBOB_HOOKTEST", conn)
    caplog.set_level(logging.DEBUG)

    hook = hook_class("shipbob_hooktest")
    assert (hook.conn_type, hook.default_conn_name) == ("shipbob", "shipbob_default")
    assert hook.test_connection() == (True, f"token accepted; channel {CHANNEL} can write orders")
    client = hook.get_client()
    assert client.api_version == "2026-07" and client.channel_id == CHANNEL

    listing = client.orders(limit=100)
    got = [o["id"] for o in itertools.islice(listing, 150)]
    # The operator deletes the token in the dashboard and puts a new one in the connection.
    impl = server.sandbox.platforms["shipbob"]
    impl.active_tokens.discard(token)
    impl.revoked_tokens.add(token)
    rotated = mint_token(server)
    monkeypatch.setenv("AIRFLOW_CONN_SHIPBOB_HOOKTEST", conn.replace(token, rotated))
    got += [o["id"] for o in listing]
    assert sorted(got) == [9000000 + i for i in range(300)]
    assert client.stats.calls["orders"] == 3 + 1

    failures = []
    for call in (lambda: client.order(9999999), lambda: client.cancel_order(99999999)):
        with pytest.raises(NotFoundError) as caught:
            call()
        failures.append(caught.value)
    fault(server, kind="token_expiry")  # revoked again, and this time nobody rotates it
    with pytest.raises(AuthError) as caught:
        client.order(9000001)
    failures.append(caught.value)
    logging.getLogger("orderops.test").info("hook run finished with %d failures", len(failures))
    client.close()

    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err + "".join(str(r.args) + r.getMessage() for r in caplog.records)
    assert "hook run finished" in logged and "shipbob" in caplog.text  # the logs were captured
    texts = [str(e) + repr(e) + repr(e.__context__) + str(e.__dict__) for e in failures]
    for secret in (token, rotated):
        assert secret not in logged
        assert not any(secret in text for text in texts)
    assert json.loads(conn)["password"] == token  # (the connection really carried the first token)
