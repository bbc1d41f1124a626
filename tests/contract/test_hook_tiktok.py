"""TikTok Shop client and hook against the TikTok Shop simulator over real HTTP.

Everything here talks to `sandbox/tiktok.py` (open API and token host) on loopback ports.
The only stand-in is `Rewrite`, a transport that forwards to the simulator and then edits its
answer: the simulator always sends correct page tokens, so a cursor that loops cannot be served
by it.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import httpx
import pytest

from orderops_provider.base import (
    AuthError,
    BusinessError,
    ConfigurationError,
    NotFoundError,
    PagingError,
    RetryableError,
    RetryPolicy,
    ThrottledError,
)
from orderops_provider.connection import ConnectionSettings
from orderops_provider.tiktok import TikTokShopClient, TokenSet
from orderops_provider.tiktok_signing import sign
from orderops_provider.tiktok_versions import path as api_path
from sandbox.core import Settings
from sandbox.generate import generate
from sandbox.tiktok import DEFAULT_CREDENTIALS as CREDS
from tests.conftest import connection_json, settled_count
from tests.support import NOW, cancel_id, iso, line_id
from tests.support import tiktok_order_id as oid

FAST = RetryPolicy(max_attempts=6, base=0.01, cap=0.05)
FROZEN = Settings(clock_rate=0)
SEARCH = ("tiktok", "search_orders")
# A request answered by an injected fault never reaches the handler that names its operation, so
# the simulator counts it under the route instead.
SEARCH_ROUTE = ("tiktok", f"POST {api_path('search_orders')}")
MARK = "mark_package_shipped"
SB_MARK = "mark_package_as_shipped"  # the simulator's name for the operation
SECOND_SHOP = {
    "cipher": "TTP_SbxShopCipher0002",
    "id": "7494000000000000002",
    "name": "Second shop",
    "code": "USSBXSHOP2",
}


# ---------------------------------------------------------------- scenarios


def order(n: int, status: str = "AWAITING_SHIPMENT", *, lines: int = 1, pending_cancel: bool = False) -> dict:
    create = NOW - timedelta(days=3) + timedelta(minutes=n)
    tt = {
        "id": oid(n),
        "status": status,
        "create_time": iso(create),
        "rts_sla_time": iso(create + timedelta(days=4)),
        "shipping_due_time": iso(create + timedelta(days=7)),
        "line_items": [{"id": line_id(n, k), "seller_sku": "OSL-TEE-M"} for k in range(lines)],
    }
    if pending_cancel:
        tt["cancellation"] = {
            "cancel_id": cancel_id(n),
            "status": "CANCELLATION_REQUEST_PENDING",
            "create_time": iso(NOW - timedelta(hours=1)),
            "deadline": iso(NOW + timedelta(hours=47)),
        }
    return {"tiktok": tt, "shopify": None, "fulfiller": None}


def scenario(orders) -> dict:
    return {"now": iso(NOW), "orders": list(orders)}


def make_client(server, **kwargs) -> TikTokShopClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("access_token", CREDS["access_token"])
    kwargs.setdefault("refresh_token", CREDS["refresh_token"])
    kwargs.setdefault("shop_cipher", CREDS["shop_cipher"])
    kwargs.setdefault("auth_base_url", server.urls["tiktok_auth"])
    return TikTokShopClient(
        server.urls["tiktok"],
        kwargs.pop("app_key", CREDS["app_key"]),
        kwargs.pop("app_secret", CREDS["app_secret"]),
        **kwargs,
    )


def fault(server, **spec) -> None:
    response = httpx.post(server.urls["tiktok"] + "/_sandbox/faults", json={"platform": "tiktok", **spec}, timeout=10)
    assert response.status_code == 200, response.text


def writes(server, operation: str | None = None, order_id: str | None = None) -> list[dict]:
    """The simulator's write log, read through its admin API (`GET /_sandbox/writes`)."""
    server.sandbox.wait_idle()  # a write is logged once the handler has run; let a garbled answer's handler finish
    rows = httpx.get(server.urls["tiktok"] + "/_sandbox/writes", params={"platform": "tiktok"}, timeout=10).json()
    return [
        w
        for w in rows
        if (operation is None or w["operation"] == operation)
        and (order_id is None or f"/orders/{order_id}/" in w["path"])
    ]


def shop_state(server) -> dict:
    return server.sandbox.platforms["tiktok"].state()["shops"][0]


def provider_id(client: TikTokShopClient, order_obj: dict, name: str = "UPS") -> str:
    return next(p["id"] for p in client.shipping_providers(order_obj["delivery_option_id"]) if p["name"] == name)


# ---------------------------------------------------------------- the module
def test_signing_has_one_home_and_the_client_imports_without_airflow():
    import orderops_provider.tiktok_signing as signing
    import sandbox.tiktok as simulator

    assert simulator.sign is signing.sign  # the simulator checks with the very function the client signs with
    code = (
        "import sys, orderops_provider.tiktok as t; "
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith(('airflow.', 'sandbox'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


# ---------------------------------------------------------------- paging at size, token expiry
def test_paging_2000_orders_survives_a_token_expiry_midway_without_losing_a_page(run_sandbox):
    doc = generate(2000, seed=5)
    expected = {o["tiktok"]["id"] for o in doc["orders"]}
    assert len(expected) == 2000
    server = run_sandbox(doc, platforms=("tiktok",), settings=FROZEN)
    refreshed: list[TokenSet] = []
    with make_client(server, on_token_refresh=refreshed.append) as client:
        listing = client.search_orders()
        got = [o["id"] for o in itertools.islice(listing, 650)]
        assert client.stats.calls["search_orders"] == 7  # lazy: only the pages consumed so far
        fault(server, kind="token_expiry", path="orders/search")  # every token issued so far expires now
        got += [o["id"] for o in listing]

        assert len(got) == 2000 and set(got) == expected  # nothing lost, nothing twice
        created = {o["tiktok"]["id"]: o["tiktok"]["create_time"] for o in doc["orders"]}
        assert [created[i] for i in got] == sorted(created[i] for i in got)  # create_time ASC by default
        # 20 pages, plus the one attempt refused with 105002 and sent again after the refresh
        assert client.stats.calls["search_orders"] == 21 and client.stats.failures["search_orders"] == 0
        assert client.stats.calls["refresh_access_token"] == 1
        assert settled_count(server, SEARCH) == 21 and settled_count(server, ("tiktok", "refresh_access_token")) == 1
        # the new token is kept, reported once, and the refresh token (not rotated) stays
        assert len(refreshed) == 1 and refreshed[0].access_token != CREDS["access_token"]
        assert client.tokens.access_token == refreshed[0].access_token
        assert refreshed[0].refresh_token == CREDS["refresh_token"]
        assert refreshed[0].access_token_expire_in > time.time() + 6 * 86400
        assert "access_token" not in repr(refreshed[0]).replace("access_token_expire_in", "")
        # the payloads are TikTok's own objects, untouched; order detail at 202507 adds its fields
        sample = next(client.search_orders({"order_status": "CANCELLED"}, page_size=1))
        detail = client.get_orders([sample["id"]])[0]
        assert {k: detail[k] for k in sample} == sample
        assert set(detail) - set(sample) == {"is_subscription_order", "buyer_nickname", "recommended_shipping_time"}
        rows = {r["operation"]: r for r in client.stats.as_rows("tiktok")}
        assert rows["search_orders"]["calls"] == 21 + 1


def test_get_orders_asks_50_ids_at_a_time(run_sandbox):
    server = run_sandbox(scenario(order(n) for n in range(130)), platforms=("tiktok",), settings=FROZEN)
    urls: list[httpx.URL] = []
    with make_client(server) as client:
        client.http.event_hooks["request"] = [lambda request: urls.append(request.url)]
        asked = [oid(n) for n in reversed(range(120))] + [oid(3), oid(7)]  # duplicates asked once
        got = client.get_orders(asked)
        assert [o["id"] for o in got] == [oid(n) for n in reversed(range(120))]
        assert client.stats.calls["get_orders"] == 3
        assert [len(u.params["ids"].split(",")) for u in urls] == [50, 50, 20]
        with pytest.raises(NotFoundError) as caught:
            client.get_orders([oid(1), "576999999999999999"])
        assert caught.value.code == 21008111 and caught.value.request_id
        with pytest.raises(ValueError, match="ids"):
            client.get_orders(["1,2"])  # ids never reach the query unchecked


def test_filters_reach_the_platform(run_sandbox):
    orders = [order(n) for n in range(10)] + [order(10, "CANCELLED"), order(11, pending_cancel=True)]
    server = run_sandbox(scenario(orders), platforms=("tiktok",), settings=FROZEN)
    sent: list[bytes] = []
    with make_client(server) as client:
        client.http.event_hooks["request"] = [lambda request: sent.append(request.content)]
        assert [o["id"] for o in client.search_orders({"order_status": "CANCELLED"})] == [oid(10)]
        assert sent[-1] == b'{"order_status":"CANCELLED"}'  # compact, and signed as sent
        window = {
            "create_time_ge": NOW - timedelta(days=3) + timedelta(minutes=2),
            "create_time_lt": int((NOW - timedelta(days=3) + timedelta(minutes=5)).timestamp()),
        }
        assert [o["id"] for o in client.search_orders(window)] == [oid(2), oid(3), oid(4)]
        newest = client.search_orders(sort_order="DESC", page_size=3)
        assert [o["id"] for o in itertools.islice(newest, 2)] == [oid(11), oid(10)]
        assert [o["id"] for o in client.search_orders({"is_buyer_request_cancel": True})] == [oid(11)]
        with pytest.raises(ValueError, match="unknown field"):
            client.search_orders({"status": "CANCELLED"})
        with pytest.raises(ValueError, match="time zone"):
            client.search_orders({"update_time_ge": datetime(2026, 11, 1)})
        with pytest.raises(ValueError, match="page_size"):
            client.search_orders(page_size=101)
        with pytest.raises(BusinessError) as caught:  # the platform's own refusal, typed
            list(client.search_orders({"order_status": "SHIPPED"}))
        assert caught.value.code == 36009004 and "order_status" in caught.value.platform_message


def test_search_cancellations_pages_of_50(run_sandbox):
    orders = [order(n, pending_cancel=n % 2 == 0) for n in range(240)]
    server = run_sandbox(scenario(orders), platforms=("tiktok",), settings=FROZEN)
    with make_client(server) as client:
        got = [c["cancel_id"] for c in client.search_cancellations()]
        assert got == [cancel_id(n) for n in range(0, 240, 2)]
        assert client.stats.calls["search_cancellations"] == 3
        one = list(client.search_cancellations({"order_ids": [oid(4), oid(5)]}))
        assert [c["order_id"] for c in one] == [oid(4)] and one[0]["cancel_status"] == "CANCELLATION_REQUEST_PENDING"
        assert list(client.search_cancellations({"cancel_status": ["CANCELLATION_REQUEST_SUCCESS"]})) == []
        with pytest.raises(ValueError, match="page_size"):
            client.search_cancellations(page_size=51)


class Rewrite(httpx.BaseTransport):
    """Forwards to the simulator, then lets a test edit the decoded answer (see the module docstring)."""

    def __init__(self, edit):
        self.inner = httpx.HTTPTransport()
        self.edit = edit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        body = self.edit(request, json.loads(response.content))
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=json.dumps(body).encode(), request=request)

    def close(self) -> None:
        self.inner.close()


def test_a_page_token_that_loops_is_refused(run_sandbox):
    server = run_sandbox(scenario(order(n) for n in range(30)), platforms=("tiktok",), settings=FROZEN)
    tokens: list[str] = []

    def loop(request, body):
        token = body["data"].get("next_page_token")
        if token:
            tokens.append(token)
            if len(tokens) >= 3:
                body["data"]["next_page_token"] = tokens[0]  # back to page 2
        return body

    with make_client(server, transport=Rewrite(loop)) as client:
        listing = client.search_orders(page_size=5)
        with pytest.raises(PagingError, match="came back"):
            list(listing)
        assert client.stats.calls["search_orders"] == 3


def test_empty_pages_that_always_point_further_are_stopped(run_sandbox):
    """The sandbox's `endless` fault: every page empty, each with a fresh page token."""
    server = run_sandbox(scenario(order(n) for n in range(30)), platforms=("tiktok",), settings=FROZEN)
    fault(server, kind="endless", path="/orders/search$", count=50)
    with make_client(server) as client:
        with pytest.raises(PagingError, match="3 empty pages in a row"):
            list(client.search_orders(page_size=5))
        assert client.stats.calls["search_orders"] == 3


# ---------------------------------------------------------------- auth paths
def test_shop_cipher_is_looked_up_when_not_configured(run_sandbox):
    settings = Settings(clock_rate=0, platforms={"tiktok": {"extra_shops": [SECOND_SHOP]}})
    server = run_sandbox(scenario(order(n) for n in range(5)), platforms=("tiktok",), settings=settings)
    with make_client(server, shop_cipher=None) as client:
        assert len(list(client.search_orders())) == 5  # the first shop holds the scenario's orders
        assert client.shop_cipher == CREDS["shop_cipher"] and client.shop["id"] == CREDS["shop_id"]
        client.warehouses()
        assert client.stats.calls["shops"] == 1  # looked up once
    with make_client(server, shop_cipher=None, shop_id=SECOND_SHOP["id"]) as client:
        assert list(client.search_orders()) == []
        assert client.shop_cipher == SECOND_SHOP["cipher"]
    with make_client(server, shop_cipher=None, shop_id="7494000000000000999") as client:
        with pytest.raises(ConfigurationError, match="7494000000000000999"):
            client.warehouses()


def test_tokens_are_refreshed_up_front_when_missing_or_about_to_expire(run_sandbox):
    server = run_sandbox(scenario([order(1)]), platforms=("tiktok",), settings=FROZEN)
    with make_client(server, access_token=None) as client:  # only a refresh token: refresh first
        assert client.get_orders([oid(1)])[0]["id"] == oid(1)
        assert client.stats.calls["refresh_access_token"] == 1 and client.stats.calls["get_orders"] == 1
    soon = int(time.time()) + 60  # inside the 5 minute margin: refreshed before the call, no 105002
    refreshed: list[TokenSet] = []
    with make_client(server, access_token_expire_in=soon, on_token_refresh=refreshed.append) as client:
        client.warehouses()
        assert client.stats.calls["refresh_access_token"] == 1 and client.stats.calls["warehouses"] == 1
        assert refreshed[0].access_token_expire_in > soon
        client.warehouses()
        assert client.stats.calls["refresh_access_token"] == 1  # the new expiry is far away
    later = int(time.time()) + 3600
    with make_client(server, access_token_expire_in=later) as client:
        client.warehouses()
        assert client.stats.calls["refresh_access_token"] == 0


def test_refused_credentials_are_auth_errors_that_are_not_retried(run_sandbox):
    server = run_sandbox(scenario([order(1)]), platforms=("tiktok",), settings=FROZEN)
    wrong_secret = "sbx0wrong0secret0000000000000000000000"
    with make_client(server, app_secret=wrong_secret) as client:
        with pytest.raises(AuthError) as caught:
            client.warehouses()
        assert caught.value.code == 106001 and caught.value.status == 401
        assert client.stats.calls["warehouses"] == 1 and client.stats.failures["warehouses"] == 1
        assert wrong_secret not in str(caught.value) + repr(caught.value.__dict__)
    with make_client(server, access_token="TTP_not-a-token", refresh_token=None) as client:
        with pytest.raises(AuthError, match="x-tts-access-token") as caught:
            client.warehouses()
        assert caught.value.code == 36009004
    # expired access token and a refresh token the platform does not know: the call ends with AuthError
    fault(server, kind="token_expiry", path="warehouses")
    with make_client(server, refresh_token="TTP_unknown-refresh-token") as client:
        with pytest.raises(AuthError) as caught:
            client.warehouses()
        assert caught.value.code == 36004005 and caught.value.operation == "refresh_access_token"
        assert client.stats.calls["warehouses"] == 1 and client.stats.failures["warehouses"] == 1
        assert "TTP_unknown-refresh-token" not in str(caught.value)
    # with no refresh token at all there is nothing to try
    with make_client(server, refresh_token=None) as client:
        with pytest.raises(AuthError, match="refresh_token"):
            client.warehouses()


def test_every_attempt_is_stamped_and_signed_again(run_sandbox):
    server = run_sandbox(scenario([order(1)]), platforms=("tiktok",), settings=FROZEN)
    ticks = itertools.count()
    start = time.time() - 20
    seen: list[httpx.Request] = []
    with make_client(server, clock=lambda: start + next(ticks)) as client:
        client.http.event_hooks["request"] = [seen.append]
        fault(server, kind="5xx", status=503, path="orders/search")
        assert [o["id"] for o in client.search_orders({"order_status": "AWAITING_SHIPMENT"})] == [oid(1)]
    assert len(seen) == 2 and client.stats.retries["search_orders"] == 1
    first, second = (dict(r.url.params) for r in seen)
    assert int(second["timestamp"]) > int(first["timestamp"]) and second["sign"] != first["sign"]
    assert seen[0].content == seen[1].content == b'{"order_status":"AWAITING_SHIPMENT"}'
    # the signature covers path, every query parameter and the exact body bytes
    query = {k: v for k, v in second.items() if k != "sign"}
    assert second["sign"] == sign(CREDS["app_secret"], seen[1].url.path, query, seen[1].content)
    assert seen[1].headers["x-tts-access-token"] == CREDS["access_token"]
    assert "access_token" not in second and CREDS["access_token"] not in str(seen[1].url)


# ---------------------------------------------------------------- faults on reads
def test_429_storm_is_ridden_out_without_losing_a_page(run_sandbox):
    server = run_sandbox(scenario(order(n) for n in range(500)), platforms=("tiktok",), settings=FROZEN)
    fault(server, kind="429", path="orders/search", count=4)
    with make_client(server, retry=RetryPolicy(max_attempts=6, base=0.01, cap=0.05)) as client:
        got = [o["id"] for o in client.search_orders()]
        assert sorted(got) == [oid(n) for n in range(500)]
        assert client.stats.throttled["search_orders"] == 4 and client.stats.retries["search_orders"] == 4
        assert client.stats.calls["search_orders"] == 5 + 4
    assert settled_count(server, SEARCH_ROUTE, "throttles") == 4 and settled_count(server, SEARCH_ROUTE) == 4
    assert settled_count(server, SEARCH) == 5 and not server.sandbox.throttles[SEARCH]


def test_a_storm_longer_than_the_retries_fails_as_throttled(run_sandbox):
    server = run_sandbox(scenario([order(1)]), platforms=("tiktok",), settings=FROZEN)
    fault(server, kind="429", path="warehouses", count=10)
    with make_client(server, retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.02)) as client:
        with pytest.raises(ThrottledError) as caught:
            client.warehouses()
        assert caught.value.code == 36009002 and caught.value.status == 429
        assert client.stats.calls["warehouses"] == 3


def test_5xx_garbled_and_hung_reads_are_retried_without_losing_a_page(run_sandbox):
    server = run_sandbox(scenario(order(n) for n in range(450)), platforms=("tiktok",), settings=FROZEN)
    for spec in (
        {"kind": "5xx", "status": 503, "count": 2},
        {"kind": "5xx", "status": 500},
        {"kind": "malformed"},
        {"kind": "truncated"},
        {"kind": "hang", "seconds": 30},
    ):
        fault(server, path="orders/search", **spec)
    # all six faults land on the first page, one after the other: eight attempts are enough
    with make_client(server, timeout=2.0, retry=RetryPolicy(max_attempts=8, base=0.01, cap=0.05)) as client:
        got = [o["id"] for o in client.search_orders()]
        assert len(got) == 450 and set(got) == {oid(n) for n in range(450)}
        assert client.stats.retries["search_orders"] == 6
        assert client.stats.calls["search_orders"] == 5 + 6
        fault(server, path=api_path("get_orders") + "$", kind="truncated")
        assert client.get_orders([oid(3)])[0]["id"] == oid(3)
        assert client.stats.calls["get_orders"] == 2


# ---------------------------------------------------------------- writes
@pytest.mark.parametrize("kind,reached", [("5xx", False), ("hang", False), ("truncated", True)])
def test_mark_package_shipped_is_never_resent_blindly(run_sandbox, kind, reached):
    """An ambiguous failure of the unkeyed write is raised, not retried (the executor reads first)."""
    server = run_sandbox(scenario(order(n) for n in (1,)), platforms=("tiktok",), settings=FROZEN)
    spec = {"kind": kind, "path": "/packages$"}
    if kind == "hang":
        spec["seconds"] = 30
    with make_client(server, timeout=2.0) as client:
        first = client.get_orders([oid(1)])[0]
        ups = provider_id(client, first)

        fault(server, **spec)
        with pytest.raises(RetryableError):
            client.mark_package_shipped(oid(1), "1ZSANDBOX0000000001", ups)
        assert client.stats.calls[MARK] == 1 and client.stats.retries[MARK] == 0
        if kind == "hang":
            server.sandbox.wait_idle()  # the simulator counts a hung request once its client has left
        assert settled_count(server, ("tiktok", SB_MARK) if reached else ("tiktok", f"POST {api_path(MARK)}")) == 1
        # the garbled answer came from a handler that ran: one write, one package; else none
        assert len(writes(server, SB_MARK, oid(1))) == (1 if reached else 0)
        assert len(client.get_orders([oid(1)])[0]["packages"]) == (1 if reached else 0)


def test_a_throttled_write_is_retried_because_it_was_never_processed(run_sandbox):
    server = run_sandbox(scenario([order(1, lines=2)]), platforms=("tiktok",), settings=FROZEN)
    with make_client(server) as client:
        ups = provider_id(client, client.get_orders([oid(1)])[0])
        fault(server, kind="429", path="/packages$", count=2)
        reply = client.mark_package_shipped(oid(1), "1ZSANDBOX0000000003", ups, [line_id(1, 0)])
        assert reply.data["order_line_item_ids"] == [line_id(1, 0)] and reply.request_id
        assert client.stats.throttled[MARK] == 2 and client.stats.calls[MARK] == 3
        assert len(writes(server, SB_MARK)) == 1
        assert client.get_orders([oid(1)])[0]["status"] == "PARTIALLY_SHIPPING"
        with pytest.raises(BusinessError) as caught:  # the same line again: refused, typed, not retried
            client.mark_package_shipped(oid(1), "1ZSANDBOX0000000003", ups, [line_id(1, 0)])
        assert caught.value.code == 21019002 and caught.value.request_id
        assert client.stats.calls[MARK] == 4
        with pytest.raises(ValueError, match="order_id"):
            client.mark_package_shipped("1/../../x", "1Z", ups)


def test_keyed_cancellation_decisions_are_retried_with_one_effect(run_sandbox):
    orders = [order(1, pending_cancel=True), order(2, pending_cancel=True), order(3, pending_cancel=True)]
    server = run_sandbox(scenario(orders), platforms=("tiktok",), settings=FROZEN)
    with make_client(server) as client:
        fault(server, kind="5xx", status=503, path="/approve$", count=2)
        client.approve_cancellation(cancel_id(1), "approve-" + cancel_id(1))
        assert client.stats.retries["approve_cancellation"] == 2
        assert client.get_orders([oid(1)])[0]["status"] == "CANCELLED"

        # the handler runs and the answer is garbled: the resend with the same key is answered
        # from the first one, so the decision takes effect once
        fault(server, kind="truncated", path="/reject$")
        key = "reject-" + cancel_id(2)
        offered = client.reject_reasons(cancel_id(2))
        assert [code for code, _text in offered][0] == "ecom_reverse_reject_cancel_reason_product_packed"
        assert all(text for _code, text in offered)
        client.reject_cancellation(cancel_id(2), offered[0][0], key, comment="Already packed")
        assert client.stats.calls["reject_cancellation"] == 2
        logged = writes(server, "reject_cancellation")
        assert [w["outcome"] for w in logged] == ["ok", "ok"]
        assert {w["query"]["idempotency_key"] for w in logged} == {key}
        assert logged[0]["body"] == {"reject_reason": offered[0][0], "comment": "Already packed"}
        rec = next(c for c in client.search_cancellations({"cancel_ids": [cancel_id(2)]}))
        assert rec["cancel_status"] == "CANCELLATION_REQUEST_CANCEL"
        assert client.get_orders([oid(2)])[0]["status"] == "AWAITING_SHIPMENT"

        with pytest.raises(BusinessError) as caught:
            client.reject_cancellation(cancel_id(3), "not_a_reason", "reject-x")
        assert caught.value.code == 36009004 and caught.value.status == 400
        with pytest.raises(ValueError, match="idempotency_key"):
            client.approve_cancellation(cancel_id(3), "")


# ---------------------------------------------------------------- quota
def test_limiter_paces_at_the_documented_quota(run_sandbox, virtual_time):
    """Default client (50 QPS per endpoint) against the default simulator quota: never throttled.

    Six threads share the client so that round trips do not cap the rate below the quota: the
    client's bucket alone sets the pace. Client and simulator read one virtual clock (each thread's
    wait moves it, so it runs ahead of the pace, never behind): the arithmetic, not the machine.
    """
    server = run_sandbox(scenario([order(1)]), platforms=("tiktok",), settings=FROZEN)
    server.sandbox.clock.quota_source = virtual_time
    sent: list[float] = []
    with make_client(server, sleep=virtual_time.sleep) as client:
        client.clock = virtual_time
        client.http.event_hooks["request"] = [lambda request: sent.append(virtual_time())]

        def work() -> None:
            for _ in range(20):
                client.warehouses()

        workers = [threading.Thread(target=work) for _ in range(6)]
        began = virtual_time()  # after the client (and its full bucket) was made
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert client.limiter("warehouses") is not client.limiter("get_orders")  # a bucket per endpoint
        assert client.stats.throttled["warehouses"] == 0
    sent.sort()
    assert len(sent) == 120 and not server.sandbox.throttles
    # the pacing's guarantee: after the burst (half the quota, 25) the 120th request cannot leave
    # before 95 more tokens came at 50 a second
    assert sent[-1] - began >= (120 - 25) / 50 * 0.99, sent[-1] - began


# ---------------------------------------------------------------- configuration
def test_configuration_errors_name_the_field():
    with pytest.raises(ConfigurationError, match="app_secret"):
        TikTokShopClient("https://open-api.tiktokglobalshop.com", "key", "", access_token="t")
    with pytest.raises(ConfigurationError, match="refresh_token"):
        TikTokShopClient("https://open-api.tiktokglobalshop.com", "key", "secret")
    with pytest.raises(ConfigurationError, match="qps"):
        TikTokShopClient("https://open-api.tiktokglobalshop.com", "key", "secret", access_token="t", qps=0)
    with pytest.raises(ConfigurationError, match="'tt'.*login"):
        TikTokShopClient.from_settings(
            ConnectionSettings("tt", "https://open-api.tiktokglobalshop.com", None, "s", {"access_token": "t"})
        )
    client = TikTokShopClient.from_settings(
        ConnectionSettings(
            "tt",
            "https://open-api.tiktokglobalshop.com",
            "key",
            "secret",
            {
                "access_token": "t",
                "refresh_token": "r",
                "shop_cipher": "C",
                "qps": "20",
                "timeout": 7,
                "access_token_expire_in": 1900000000,
                "max_attempts": 4,
            },
        )
    )
    assert (client.auth_base_url, client.shop_cipher, client.http.timeout.read) == (
        "https://auth.tiktok-shops.com",
        "C",
        7.0,
    )
    assert (client.limiter("search_orders").rate, client.retry.max_attempts) == (20.0, 4)
    assert client.tokens.access_token_expire_in == 1900000000
    client.close()


# ---------------------------------------------------------------- API versions
@pytest.mark.parametrize(
    "pinned", [None, {"get_orders": "202309", "search_cancellations": "202309"}, {"mark_package_shipped": "202610"}]
)  # 202610: opt-in only
def test_each_operation_at_its_default_version_or_the_one_the_connection_pins(run_sandbox, pinned):
    server = run_sandbox(
        scenario([order(1, lines=2), order(2, pending_cancel=True)]), platforms=("tiktok",), settings=FROZEN
    )
    settings = ConnectionSettings(
        "tt",
        server.urls["tiktok"],
        CREDS["app_key"],
        CREDS["app_secret"],
        dict(
            access_token=CREDS["access_token"],
            shop_cipher=CREDS["shop_cipher"],
            **({"api_versions": pinned} if pinned else {}),
        ),
    )
    paths: list[str] = []
    with TikTokShopClient.from_settings(settings, retry=FAST) as client:
        client.http.event_hooks["request"] = [lambda request: paths.append(request.url.path)]
        first = client.get_orders([oid(1)])[0]
        assert [c["order_id"] for c in client.search_cancellations()] == [oid(2)]
        shipped = client.mark_package_shipped(
            oid(1), "1ZSANDBOX0000000001", provider_id(client, first), [line_id(1, 1)]
        )
        assert shipped.data["order_line_item_ids"] == [line_id(1, 1)]
        assert client.get_orders([oid(1)])[0]["line_items"][1]["tracking_number"] == "1ZSANDBOX0000000001"
    want = {"get_orders": "202507", "search_cancellations": "202602", "mark_package_shipped": "202309"}
    want.update(pinned or {})
    assert {p.split("/")[2] for p in paths if "orders" in p and "packages" not in p and "search" not in p} == {
        want["get_orders"]
    }
    assert [p.split("/")[2] for p in paths if p.endswith("cancellations/search")] == [want["search_cancellations"]]
    assert [p.split("/")[2] for p in paths if p.endswith("/packages")] == [want["mark_package_shipped"]]
    body = writes(server, SB_MARK, oid(1))[0]["body"]
    assert body == (
        {
            "tracking_number": "1ZSANDBOX0000000001",
            "shipping_provider_id": body.get("shipping_provider_id"),
            "order_line_item_ids": [line_id(1, 1)],
        }
        if want["mark_package_shipped"] == "202309"
        else {
            "order_line_list": [{"order_line_id": line_id(1, 1)}],
            "shipping_info_list": [
                {
                    "tracking_number": "1ZSANDBOX0000000001",
                    "shipping_provider_id": body["shipping_info_list"][0]["shipping_provider_id"],
                }
            ],
        }
    )


@pytest.mark.parametrize(
    "pinned,named",
    [
        ({"get_orders": "202401"}, "api_versions.get_orders: version '202401'"),
        ({"mark_shipped": "202309"}, "unknown operation 'mark_shipped'"),
        ("202309", "expected an object"),
    ],
)
def test_a_pinned_version_orderops_does_not_speak_is_refused_naming_it(pinned, named):
    with pytest.raises(ConfigurationError, match=re.escape(named)) as caught:
        TikTokShopClient.from_settings(
            ConnectionSettings(
                "tt", "https://open-api.tiktokglobalshop.com", "key", "s", {"access_token": "t", "api_versions": pinned}
            )
        )
    assert "'tt'" in str(caught.value)


# ---------------------------------------------------------------- the Airflow hook
@pytest.fixture
def hook_class():
    """The hook class, imported during setup: loading Airflow replaces the root log handlers, and
    the test's log capture must be installed after that to see anything."""
    from orderops_provider.hooks import TikTokShopHook

    return TikTokShopHook


def test_hook_from_env_connection_keeps_every_secret_out_of_logs(run_sandbox, monkeypatch, caplog, capsys, hook_class):
    server = run_sandbox(scenario(order(n) for n in range(300)), platforms=("tiktok",), settings=FROZEN)
    extra = {
        "auth_base_url": server.urls["tiktok_auth"],
        "access_token": CREDS["access_token"],
        "refresh_token": CREDS["refresh_token"],
        "shop_id": CREDS["shop_id"],
        "timeout": 5,
        "max_attempts": 3,
    }
    conn = connection_json(server.urls["tiktok"], login=CREDS["app_key"], password=CREDS["app_secret"], extra=extra)
    monkeypatch.setenv("AIRFLOW_CONN_TIKTOK_HOOKTEST", conn)
    caplog.set_level(logging.DEBUG)
    # Airflow quiets httpx; a deployment that turns it up gets every URL, the token host's included
    caplog.set_level(logging.DEBUG, logger="httpx")

    hook = hook_class("tiktok_hooktest")
    assert (hook.conn_type, hook.default_conn_name, hook.conn_name_attr) == (
        "tiktok_shop",
        "tiktok_default",
        "tiktok_conn_id",
    )
    ok, message = hook.test_connection()
    assert ok and CREDS["shop_cipher"] in message
    persisted: list[TokenSet] = []
    client = hook.get_client(on_token_refresh=persisted.append)
    listing = client.search_orders(page_size=50)
    got = [o["id"] for o in itertools.islice(listing, 120)]
    fault(server, kind="token_expiry", path="orders/search")
    got += [o["id"] for o in listing]
    assert sorted(got) == [oid(n) for n in range(300)] and len(persisted) == 1

    failures: list[Exception] = []
    with pytest.raises(NotFoundError) as caught:
        client.get_orders(["576999999999999999"])
    failures.append(caught.value)
    client.close()
    wrong = CREDS["app_secret"][:-6] + "WRONG0"
    monkeypatch.setenv("AIRFLOW_CONN_TIKTOK_HOOKTEST", conn.replace(CREDS["app_secret"], wrong))
    with hook_class("tiktok_hooktest").get_client() as bad:
        with pytest.raises(AuthError) as caught:
            bad.warehouses()
    failures.append(caught.value)
    assert hook_class("tiktok_hooktest").test_connection()[0] is False
    logging.getLogger("orderops.test").info("hook run finished with %d failures", len(failures))

    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err + "".join(str(r.args) + r.getMessage() for r in caplog.records)
    assert "hook run finished" in logged and "token/refresh" in logged  # the logs were captured
    texts = [str(e) + repr(e) + repr(e.__context__) + str(e.__dict__) for e in failures]
    secrets = (CREDS["app_secret"], wrong, CREDS["access_token"], CREDS["refresh_token"], persisted[0].access_token)
    for secret in secrets:
        assert secret not in logged, secret
        assert not any(secret in text for text in texts)
    assert json.loads(conn)["password"] == CREDS["app_secret"]  # (the connection really carried it)
