"""The shared sandbox machinery: clock, quotas, faults, write log, call counts, admin API.

A minimal platform (EchoSandbox) is registered for these tests only, so the shared mechanics
are tested on their own; each real simulator has its own contract tests.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from sandbox import core
from sandbox.core import PlatformSandbox, Settings, SlidingWindow, TokenBucket, parse_fault
from tests.unit.test_scenario import DESIGN_EXAMPLE

# A SKU the echo simulator cannot hold: a limit of a simulator's own that the scenario checks miss.
UNLOADABLE_SKU = "ECHO-NO-ROOM"


class EchoSandbox(PlatformSandbox):
    name = "echo"

    def load(self, scenario):
        if any(line["seller_sku"] == UNLOADABLE_SKU for o in scenario.orders for line in o.tiktok["line_items"]):
            raise ValueError(f"no room for {UNLOADABLE_SKU}")
        self.orders = {o.tiktok_id: o.tiktok["status"] for o in scenario.orders}
        self.token_valid = True

    def apps(self):
        app = self.sandbox.new_app("echo", "echo")

        @app.get("/orders/{order_id}")
        async def get_order(order_id: str):
            if not self.token_valid:
                return JSONResponse({"error": "expired"}, status_code=401)
            return {"id": order_id, "status": self.orders.get(order_id), "pad": "x" * 200}

        @app.post("/orders/{order_id}/ship")
        async def ship(order_id: str, request: Request):
            request.state.operation = "shipOrder"
            body = await request.json()
            self.orders[order_id] = "SHIPPED"
            self.record_write(request, body, 200, "ok", request_id="R1")
            return {"ok": True}

        return {"echo": app}

    def throttled_response(self, retry_after=1.0):
        return JSONResponse({"error": "slow down"}, status_code=429)

    def server_error_response(self, status):
        return JSONResponse({"error": "boom"}, status_code=status)

    def expire_tokens(self):
        self.token_valid = False

    def state(self):
        return {"orders": self.orders}


@pytest.fixture
def echo(run_sandbox, monkeypatch):
    monkeypatch.setitem(core.PLATFORM_MODULES, "echo", f"{__name__}:EchoSandbox")
    server = run_sandbox(DESIGN_EXAMPLE, platforms=("echo",))
    with httpx.Client(base_url=server.urls["echo"], timeout=10) as client:
        yield server, client


ORDER = "576000000000000001"


def test_token_bucket_grants_burst_then_rate():
    seconds = [0.0]
    bucket = TokenBucket(rate=2, burst=30, clock=lambda: seconds[0])
    assert all(bucket.take() == 0 for _ in range(30))
    assert bucket.take() == pytest.approx(0.5)
    seconds[0] += 0.5
    assert bucket.take() == 0


def test_sliding_window_counts_last_window():
    seconds = [0.0]
    window = SlidingWindow(limit=3, window=0.3, clock=lambda: seconds[0])
    assert [window.take() for _ in range(3)] == [0, 0, 0]
    assert window.take() == pytest.approx(0.3) and window.remaining() == 0
    seconds[0] += 0.3
    assert window.take() == 0


def test_quotas_refill_over_time_the_scenario_clock_skips():
    clock = core.SandboxClock(datetime(2026, 11, 16, tzinfo=timezone.utc), rate=0)
    bucket = TokenBucket(rate=1 / 60, burst=15, clock=clock.quota_seconds)
    assert all(bucket.take() == 0 for _ in range(15)) and bucket.take() > 50
    clock.set(clock.now() + timedelta(minutes=30))  # the next scheduled run, half an hour later
    assert all(bucket.take() == 0 for _ in range(15))
    clock.set(clock.now() - timedelta(hours=1))  # going back refills nothing
    assert bucket.take() > 50


@pytest.mark.parametrize(
    "data, message",
    [
        ({"platform": "echo", "kind": "teapot"}, "fault.kind: 'teapot' is not one of"),
        ({"kind": "429"}, "fault.platform: is required"),
        ({"platform": "echo", "kind": "429", "count": 0}, "fault.count: expected a positive integer"),
        ({"platform": "echo", "kind": "5xx", "status": 404}, "fault.status: expected 500-599"),
        ({"platform": "echo", "kind": "429", "path": "("}, "fault.path: '(' is not a regular expression"),
        ({"platform": "echo", "kind": "429", "colour": "red"}, "unknown field(s) colour"),
        ({"platform": "echo", "kind": "drop_field"}, "fault.field: the key to drop is required"),
        (
            {"platform": "echo", "kind": "latency", "seconds": float("nan")},
            "fault.seconds: expected 0 to 86400 seconds, got nan",
        ),
        (
            {"platform": "echo", "kind": "hang", "seconds": float("inf")},
            "fault.seconds: expected 0 to 86400 seconds, got inf",
        ),
        ({"platform": "echo", "kind": "latency", "seconds": 1e300}, "fault.seconds: expected 0 to 86400 seconds"),
        (
            {"platform": "echo", "kind": "429", "count": float("nan")},
            "fault.count: expected a positive integer, got nan",
        ),
        (
            {"platform": "echo", "kind": "429", "count": float("inf")},
            "fault.count: expected a positive integer, got inf",
        ),
        ({"platform": "echo", "kind": "429", "count": 2.5}, "fault.count: expected a positive integer, got 2.5"),
        ({"platform": "echo", "kind": "429", "count": True}, "fault.count: expected a positive integer, got True"),
    ],
)
def test_bad_fault_named(data, message):
    with pytest.raises(ValueError) as err:
        parse_fault(data)
    assert message in str(err.value)


def test_clock_admin(echo):
    server, client = echo
    server.sandbox.clock.set(server.sandbox.clock.now(), rate=0)
    assert client.get("/_sandbox/clock").json()["now"] == "2026-11-20T15:00:00Z"
    moved = client.post("/_sandbox/clock", json={"advance_seconds": 3600}).json()
    assert moved["now"] == "2026-11-20T16:00:00Z"
    assert client.post("/_sandbox/clock", json={"now": "2026-11-21T00:00:00Z"}).json()["now"] == "2026-11-21T00:00:00Z"
    bad = client.post("/_sandbox/clock", json={"advance_seconds": -5})
    assert bad.status_code == 400 and "advance_seconds" in bad.json()["detail"]
    assert client.post("/_sandbox/clock", json={"now": "tomorrow"}).status_code == 400


@pytest.mark.parametrize(
    "body, named",
    [
        ({"rate": 1e300}, "clock.rate: expected a number from 0 (frozen) to 10000, got 1e+300"),
        ({"rate": -2}, "clock.rate: expected a number from 0 (frozen) to 10000, got -2"),
        ({"rate": float("inf")}, "clock.rate: expected a number from 0 (frozen) to 10000, got inf"),
        (
            {"now": "2030-01-01T00:00:00Z", "rate": float("nan")},
            "clock.rate: expected a number from 0 (frozen) to 10000, got nan",
        ),
        (
            {"advance_seconds": 1e308},
            "clock.advance_seconds: expected 0 to 2338793999 seconds (to the end of 2100), got 1e+308",
        ),
        ({"advance_seconds": float("inf")}, "clock.advance_seconds: expected 0 to"),
        ({"advance_seconds": float("nan")}, "clock.advance_seconds: expected 0 to"),
        ({"now": "2030-01-01T00:00:00Z", "advance_seconds": -5}, "clock.advance_seconds: expected 0 to"),
        ({"now": "2100-12-31T23:59:59Z", "advance_seconds": 1}, "clock.advance_seconds: expected 0 to 0 seconds"),
        ({"now": "9999-12-31T23:59:59Z"}, "clock.now: '9999-12-31T23:59:59Z' is outside the years 2000-2100"),
        ({"now": "2030-01-01T00:00:00Z", "rate": 0, "speed": 2}, "clock: unknown field(s) speed"),
    ],
)
def test_a_refused_clock_change_changes_nothing(echo, body, named):
    server, client = echo
    client.post("/_sandbox/clock", json={"now": "2026-11-20T15:00:00Z", "rate": 0})
    refused = client.post("/_sandbox/clock", content=json.dumps(body))  # NaN and Infinity as JSON writers put them
    assert refused.status_code == 400 and refused.json()["detail"].startswith(named)
    # every field was checked before anything changed: the clock reads as it did and takes what is sane
    assert client.get("/_sandbox/clock").json() == {"now": "2026-11-20T15:00:00Z", "rate": 0}
    assert client.get("/_sandbox/info").json()["now"] == "2026-11-20T15:00:00Z"
    assert client.post("/_sandbox/clock", json={"advance_seconds": 60}).json()["now"] == "2026-11-20T15:01:00Z"
    assert client.post("/_sandbox/scenario", json=DESIGN_EXAMPLE).status_code == 200


def test_clock_runs_at_rate(echo):
    server, client = echo
    client.post("/_sandbox/clock", json={"now": "2026-11-20T15:00:00Z", "rate": 3600})
    time.sleep(0.5)
    # 0.5 wall seconds at 3600x is about half an hour of scenario time
    assert client.get("/_sandbox/clock").json()["now"] >= "2026-11-20T15:25:00Z"


def test_write_log_records_and_scrubs(echo):
    server, client = echo
    client.post(
        f"/orders/{ORDER}/ship",
        params={"sign": "abc", "app_key": "k"},
        json={"tracking": "1Z", "refresh_token": "secret-rt"},
    )
    writes = client.get("/_sandbox/writes", params={"platform": "echo"}).json()
    assert len(writes) == 1
    write = writes[0]
    assert write["operation"] == "shipOrder" and write["path"] == f"/orders/{ORDER}/ship"
    assert write["query"] == {"sign": "***", "app_key": "k"}
    assert write["body"] == {"tracking": "1Z", "refresh_token": "***"}
    assert write["outcome"] == "ok" and write["request_id"] == "R1"
    assert client.get("/_sandbox/writes", params={"since": 1}).json() == []
    assert client.get("/_sandbox/state/echo").json()["orders"][ORDER] == "SHIPPED"
    assert client.get("/_sandbox/state/nope").status_code == 404


def test_calls_counted_per_operation(echo):
    server, client = echo
    for _ in range(3):
        client.get(f"/orders/{ORDER}")
    client.post(f"/orders/{ORDER}/ship", json={})
    calls = {(c["platform"], c["operation"]): c["count"] for c in client.get("/_sandbox/calls").json()["calls"]}
    assert calls == {("echo", "GET /orders/{order_id}"): 3, ("echo", "shipOrder"): 1}
    client.delete("/_sandbox/calls")
    assert client.get("/_sandbox/calls").json()["calls"] == []


def test_fault_429_counts_as_throttle_then_clears(echo):
    server, client = echo
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "429", "count": 2, "path": "/orders/"})
    statuses = [client.get(f"/orders/{ORDER}").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    throttled = client.get("/_sandbox/calls").json()["throttled"]
    assert throttled == [{"platform": "echo", "operation": "GET /orders/{order_id}", "count": 2}]


def test_fault_only_matching_path(echo):
    server, client = echo
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "5xx", "status": 502, "path": "/ship$"})
    assert client.get(f"/orders/{ORDER}").status_code == 200
    failed = client.post(f"/orders/{ORDER}/ship", json={})
    assert failed.status_code == 502 and failed.json() == {"error": "boom"}
    # the handler never ran: nothing shipped, nothing recorded
    assert server.sandbox.platforms["echo"].orders[ORDER] == "AWAITING_SHIPMENT"
    assert client.get("/_sandbox/writes").json() == []


def test_fault_latency_and_hang(echo):
    server, client = echo
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "latency", "seconds": 0.4})
    started = time.monotonic()
    assert client.get(f"/orders/{ORDER}").status_code == 200
    assert time.monotonic() - started >= 0.4
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "hang"})
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"/orders/{ORDER}", timeout=0.5)


def test_fault_malformed_and_truncated_bodies_after_real_write(echo):
    server, client = echo
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "truncated", "path": "/ship$"})
    reply = client.post(f"/orders/{ORDER}/ship", json={})
    assert reply.status_code == 200
    with pytest.raises(ValueError):
        reply.json()
    # the write happened even though the client could not read the answer
    assert server.sandbox.platforms["echo"].orders[ORDER] == "SHIPPED"
    assert len(client.get("/_sandbox/writes").json()) == 1
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "malformed"})
    assert client.get(f"/orders/{ORDER}").text.startswith("<html>")


def test_fault_token_expiry(echo):
    server, client = echo
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "token_expiry"})
    assert client.get(f"/orders/{ORDER}").status_code == 401


@pytest.mark.parametrize("seconds", ["NaN", "Infinity", "-Infinity"])
def test_a_fault_of_no_finite_seconds_is_refused_and_not_installed(echo, seconds):
    server, client = echo
    refused = client.post(
        "/_sandbox/faults", content=f'{{"platform": "echo", "kind": "latency", "seconds": {seconds}}}'
    )
    assert refused.status_code == 400 and refused.json()["detail"].startswith("fault.seconds: expected 0 to 86400")
    assert client.get("/_sandbox/faults").json() == []
    assert client.get(f"/orders/{ORDER}").status_code == 200


def test_fault_listing_and_unknown_platform(echo):
    server, client = echo
    added = client.post("/_sandbox/faults", json={"platform": "echo", "kind": "429", "count": 5}).json()
    assert [f["id"] for f in client.get("/_sandbox/faults").json()] == [added["id"]]
    assert client.post("/_sandbox/faults", json={"platform": "ebay", "kind": "429"}).status_code == 400
    client.delete("/_sandbox/faults")
    assert client.get("/_sandbox/faults").json() == []


@pytest.mark.parametrize("path", ["/_sandbox/scenario", "/_sandbox/faults", "/_sandbox/clock"])
@pytest.mark.parametrize(
    "body, named",
    [
        (b"[" * 100_000, "body: not JSON: nested too deeply"),
        (b'{"platform": "echo", "kind": "caf\xe9"}', "body: not JSON: 'utf-8' codec can't decode byte 0xe9"),
        (b'{"count": ' + b"9" * 5000 + b"}", "body: not JSON: Exceeds the limit (4300 digits)"),
    ],
)
def test_an_admin_body_that_is_not_json_gets_400(echo, path, body, named):
    server, client = echo
    refused = client.post(path, content=body)
    assert refused.status_code == 400 and refused.json()["detail"].startswith(named)


def test_scenario_reload_and_refusal(echo):
    server, client = echo
    client.post(f"/orders/{ORDER}/ship", json={})
    bad = client.post("/_sandbox/scenario", json={"now": "2026-11-20T15:00:00Z", "orders": [{"tiktok": {}}]})
    assert bad.status_code == 400 and "orders[0]: tiktok.id: is required" in bad.json()["detail"]
    # a refused file leaves the running state alone
    assert server.sandbox.platforms["echo"].orders[ORDER] == "SHIPPED"
    ok = client.post("/_sandbox/scenario", json=DESIGN_EXAMPLE)
    assert ok.status_code == 200 and ok.json()["orders"] == 1 and ok.json()["writes"] == 0
    assert server.sandbox.platforms["echo"].orders[ORDER] == "AWAITING_SHIPMENT"


def test_a_scenario_a_simulator_cannot_load_is_refused_whole(echo):
    server, client = echo
    client.post("/_sandbox/clock", json={"rate": 0})
    client.post(f"/orders/{ORDER}/ship", json={})
    client.post("/_sandbox/faults", json={"platform": "echo", "kind": "429", "path": "/nothing-yet"})

    def serving() -> list:
        return [client.get(f"/_sandbox/{what}").json() for what in ("info", "clock", "writes", "faults", "state/echo")]

    before = serving()
    doc = copy.deepcopy(DESIGN_EXAMPLE)
    doc["now"] = "2030-01-01T00:00:00Z"
    doc["orders"][0]["tiktok"]["line_items"][0]["seller_sku"] = UNLOADABLE_SKU
    refused = client.post("/_sandbox/scenario", json=doc)
    assert refused.status_code == 400
    assert (
        refused.json()["detail"]
        == f"scenario: the echo simulator cannot load it: ValueError: no room for {UNLOADABLE_SKU}"
    )
    # nothing of it was taken: the clock, the write log, the faults and the simulator are as they were
    assert serving() == before


def served(url: str) -> dict:
    """What a sandbox serves, as its admin API shows it: clock, counts, each simulator's orders."""
    tiktok = httpx.get(f"{url}/_sandbox/state/tiktok", timeout=10).json()
    shopify = httpx.get(f"{url}/_sandbox/state/shopify", timeout=10).json()
    return {
        "info": httpx.get(f"{url}/_sandbox/info", timeout=10).json(),
        "tiktok": [o["id"] for shop in tiktok["shops"] for o in shop["orders"]],
        "shopify": [o["id"] for o in shopify["orders"]],
    }


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda o: o["tiktok"].update(id="9" * 5000), "orders[0] (tiktok id 99999999999999999999...): tiktok.id"),
        (
            lambda o: o["tiktok"].update(rts_sla_time="9999-12-31T23:59:59Z"),
            "orders[0] (tiktok id 576000000000000001): tiktok.rts_sla_time",
        ),
    ],
)
def test_a_scenario_beyond_what_the_simulators_hold_is_refused_and_changes_nothing(run_sandbox, mutate, named):
    server = run_sandbox(DESIGN_EXAMPLE, platforms=("tiktok", "shopify", "amazon_mcf"), settings=Settings(clock_rate=0))
    url = server.urls["tiktok"]
    before = served(url)
    doc = copy.deepcopy(DESIGN_EXAMPLE)
    doc["now"] = "2030-01-01T00:00:00Z"
    mutate(doc["orders"][0])
    refused = httpx.post(f"{url}/_sandbox/scenario", json=doc, timeout=10)
    assert refused.status_code == 400 and named in refused.json()["detail"]
    assert served(url) == before
