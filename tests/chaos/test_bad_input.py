"""Bad input: broken platform records never crash a run and never lead to an action; bad scenario
files, policies and connections fail with an error naming what is wrong, before any side effect.

The simulators only serve valid data, so broken records are put into real sandbox answers on their
way back to the client (`RewritingTransport`, a stand-in for a platform serving bad data), and the
staging transforms are also fed broken copies of real platform objects directly.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from include.decide.model import as_utc
from include.extract import staging
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import RunConfigError, run_settings
from include.store.run_store import RunStore, natural_key
from include.store.warehouse import (
    action_ledger,
    decisions,
    latest_rows,
    quarantine,
    runs,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_tiktok_orders,
    validation_results,
)
from orderops_provider.base import ConfigurationError
from sandbox.scenario import ScenarioError, parse_scenario
from tests.chaos.harness import (
    NOW,
    POLICY,
    WINDOW,
    SandboxRig,
    audit,
    chaos_scenario,
    fresh_warehouse,
    hook_client,
    patched_env,
    unfinished,
)

pytestmark = pytest.mark.slow

SCENARIO = chaos_scenario()


@pytest.fixture(scope="module")
def rig():
    rig = SandboxRig(SCENARIO)
    # small Amazon pages, so that a record can come back on a later page
    rig.sandbox.platforms["amazon_mcf"].config["page_size"] = 10
    yield rig
    rig.stop()


@pytest.fixture(scope="module")
def samples(rig):
    """Real objects as each platform serves them, to break one field at a time."""
    rig.load(SCENARIO)
    with patched_env(rig.connection_env()):
        tiktok, shopify = hook_client("tiktok"), hook_client("shopify")
        amazon, shipbob = hook_client("amazon_mcf"), hook_client("shipbob")
        try:
            cancellations = list(tiktok.search_cancellations({"cancel_status": ["CANCELLATION_REQUEST_PENDING"]}))
            sample = {
                "tiktok": next(tiktok.search_orders({"order_status": "AWAITING_SHIPMENT"})),
                "cancellation": cancellations[0],
                "shopify": next(shopify.orders("")),
                "amazon": next(
                    o for o in amazon.list_fulfillment_orders() if o["fulfillmentOrderStatus"] == "Planning"
                ),
                "shipbob": next(o for o in shipbob.orders() if o["shipments"]),
            }
            sample["amazon_detail"] = amazon.get_fulfillment_order(sample["amazon"]["sellerFulfillmentOrderId"])
        finally:
            for client in (tiktok, shopify, amazon, shipbob):
                client.close()
    return sample


def set_path(obj: dict, path: str, value) -> dict:
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return obj


DELETE = object()
ROW = {
    "tiktok": staging.tiktok_order_row,
    "cancellation": staging.tiktok_cancellation_row,
    "shopify": staging.shopify_order_row,
    "amazon": lambda o: staging.amazon_row_from_listing(o, []),
    "amazon_detail": staging.amazon_order_row,
    "shipbob": staging.shipbob_order_row,
}
BROKEN = [
    # (sample, field path, bad value, words the reason must contain)
    ("tiktok", "status", DELETE, "status is missing"),
    ("tiktok", "id", 576000000000000001, "id has the wrong type"),
    ("tiktok", "id", "576-abc", "id is not numeric"),
    ("tiktok", "create_time", "2026-11-18T16:00:00Z", "create_time has the wrong type"),
    ("tiktok", "rts_sla_time", 10**12, "rts_sla_time=1000000000000 is not a plausible time"),
    ("tiktok", "update_time", -5, "update_time=-5 is not a plausible time"),
    ("tiktok", "line_items", "OSL-TEE-M", "line_items has the wrong type"),
    ("tiktok", "line_items.0", {"seller_sku": "OSL-TEE-M"}, "line_items has an entry without an id"),
    ("tiktok", "line_items.0", None, "line_items has an entry without an id"),
    ("tiktok", "is_buyer_request_cancel", "yes", "is_buyer_request_cancel has the wrong type"),
    ("tiktok", "tracking_number", 12345, "tracking_number has the wrong type"),
    ("cancellation", "order_id", DELETE, "order_id is missing"),
    ("cancellation", "cancel_status", 5, "cancel_status has the wrong type"),
    ("cancellation", "create_time", 99999999999, "create_time=99999999999 is not a plausible time"),
    ("cancellation", "seller_next_action_response", 7, "seller_next_action_response has the wrong type"),
    ("shopify", "legacyResourceId", "61000x", "legacyResourceId is missing"),
    ("shopify", "name", DELETE, "name is missing"),
    # a name without the order number links no fulfillment order: never read as "none exists" (C2)
    ("shopify", "name", "", "name '' carries no order number"),
    ("shopify", "name", "\u202e", "carries no order number"),
    ("shopify", "updatedAt", "yesterday", "updatedAt='yesterday' is not an ISO-8601 time"),
    ("shopify", "updatedAt", "0001-01-01T00:00:00Z", "is not a plausible time"),
    ("shopify", "cancelledAt", 5, "cancelledAt has the wrong type"),
    ("shopify", "tags", 42, "tags has the wrong type"),
    ("shopify", "customAttributes", 7, "customAttributes has the wrong type"),
    ("shopify", "sourceIdentifier", {"id": 1}, "sourceIdentifier has the wrong type"),
    ("amazon", "fulfillmentOrderStatus", DELETE, "fulfillmentOrderStatus is missing"),
    ("amazon", "sellerFulfillmentOrderId", 1001, "sellerFulfillmentOrderId has the wrong type"),
    ("amazon", "receivedDate", "9999-12-31T00:00:00Z", "receivedDate='9999-12-31T00:00:00Z' is not a plausible time"),
    ("amazon", "statusUpdatedDate", "last tuesday", "is not an ISO-8601 time"),
    ("amazon", "displayableOrderId", {"id": "#1001"}, "displayableOrderId has the wrong type"),
    ("amazon_detail", "fulfillmentShipments", 5, "fulfillmentShipments has the wrong type"),
    ("amazon_detail", "fulfillmentOrder", "1001", "fulfillmentOrder is missing"),
    ("shipbob", "id", "9000001", "id has the wrong type"),
    ("shipbob", "status", DELETE, "status is missing"),
    ("shipbob", "shipments", 5, "shipments has the wrong type"),
    ("shipbob", "shipments.0.tracking", "1Z999AA10123456784", "tracking has the wrong type"),
    ("shipbob", "shipments.0.status_details", 3, "status_details has the wrong type"),
    ("shipbob", "shipments.0.status", ["Completed"], "status has the wrong type"),
    ("shipbob", "shipments.0.products", {"sku": "OSL-TEE-M"}, "products has the wrong type"),
    ("tiktok", "line_items.0.seller_sku", 12345, "seller_sku has the wrong type (int)"),
    ("tiktok", "line_items.0.tracking_number", "9" * 65, "tracking_number is 65 characters long (at most 64)"),
    ("tiktok", "line_items.0.id", "", "line_items has an entry without an id"),
    ("tiktok", "shipping_type", DELETE, "shipping_type is missing"),
    ("tiktok", "shipping_type", "PLATFORM", "shipping_type 'PLATFORM' is not one of SELLER, TIKTOK"),
    ("tiktok", "delivery_option_id", 7091146663229654785, "delivery_option_id has the wrong type (int)"),
    ("shipbob", "created_date", "2026-13-45T00:00:00Z", "is not an ISO-8601 time"),
    ("shipbob", "reference_id", ["6100000001"], "reference_id has the wrong type"),
]


@pytest.mark.parametrize(
    "sample,path,value,reason",
    BROKEN,
    ids=[f"{s}.{p}={'deleted' if v is DELETE else repr(v)[:20]}" for s, p, v, _ in BROKEN],
)
def test_each_broken_field_is_refused_with_its_name(samples, sample, path, value, reason):
    ROW[sample](samples[sample])  # the real object stages
    with pytest.raises(staging.BadRecord) as refused:
        ROW[sample](set_path(samples[sample], path, value))
    assert reason in str(refused.value)


@pytest.mark.parametrize("sample", list(ROW))
def test_not_an_object_is_refused(sample):
    for junk in ("garbage", 42, None, ["a", "list"]):
        with pytest.raises(staging.BadRecord):
            ROW[sample](junk)


# ----------------------------------------------------------------------------------- whole runs
def tid(o: dict) -> str:
    return o["tiktok"]["id"]


def pick(pred, n: int = 1) -> list[dict]:
    found = [o for o in SCENARIO["orders"] if pred(o)]
    assert len(found) >= n, "the scenario lacks the case this test needs"
    return found[:n]


def shipped(o: dict) -> bool:
    return (
        o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and not o["tiktok"]["cancellation"]
        and isinstance(o["shopify"], dict)
        and ((o["amazon_mcf"] or {}).get("status") == "Complete" or (o["shipbob"] or {}).get("status") == "Fulfilled")
    )


T1_AMAZON = pick(lambda o: shipped(o) and o["fulfiller"] == "amazon_mcf", 3)
T1_SHIPBOB = pick(lambda o: shipped(o) and o["fulfiller"] == "shipbob", 1)[0]
C1_AMAZON = pick(lambda o: o["tiktok"]["cancellation"] and (o["amazon_mcf"] or {}).get("status") == "Planning")[0]
AMBIGUOUS = pick(lambda o: isinstance(o["shopify"], list) and o["fulfiller"])[0]
N1 = pick(
    lambda o: (
        o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and not o["tiktok"]["cancellation"]
        and isinstance(o["shopify"], dict)
        and (o["amazon_mcf"] or {}).get("status") == "Planning"
    ),
    2,
)


def broken_answers(request: httpx.Request, data):
    """What a platform serving bad records would send: the real answer with broken entries."""
    path = request.url.path
    if path.endswith("/orders/search"):
        orders = data["data"]["orders"]
        for o in orders:
            if o["id"] == tid(T1_AMAZON[0]):
                del o["status"]
            elif o["id"] == tid(T1_AMAZON[1]):
                o["rts_sla_time"] = 10**12
            elif o["id"] == tid(T1_AMAZON[2]):
                o["line_items"][0].pop("id")
            elif o["id"] == tid(N1[0]):
                o["create_time"] = "2026-11-18T16:00:00Z"
        if orders:
            orders += [copy.deepcopy(orders[0]), {"note": "an entry without an id"}, "garbage"]
        return data
    if (
        path.endswith("/graphql.json")
        and isinstance(data.get("data"), dict)
        and isinstance(data["data"].get("orders"), dict)
    ):
        nodes = data["data"]["orders"]["nodes"]
        for node in nodes:
            if node["legacyResourceId"] == str(AMBIGUOUS["shopify"][1]["id"]):
                node["tags"] = 42
            if node["legacyResourceId"] == str(N1[1]["shopify"]["id"]):
                node["updatedAt"] = "0001-01-01T00:00:00Z"
        if nodes:
            nodes.append({"id": None, "name": 5})
        return data
    if path.endswith("/fulfillmentOrders"):
        orders = data["payload"]["fulfillmentOrders"]
        for o in orders:
            if o["sellerFulfillmentOrderId"] == C1_AMAZON["amazon_mcf"]["seller_fulfillment_order_id"]:
                o["receivedDate"] = "9999-12-31T00:00:00Z"
        if "nextToken" in str(request.url.params) and orders:
            orders.append(copy.deepcopy(FIRST_AMAZON_PAGE[0]))  # a record seen on an earlier page
            INJECTED["repeated across pages"] += 1
        elif orders:
            FIRST_AMAZON_PAGE[:] = copy.deepcopy(orders)
            orders.append("garbage")
        return data
    if re.search(r"/order$", path) and isinstance(data, list):
        for o in data:
            if o["id"] == T1_SHIPBOB["shipbob"]["order_id"]:
                o["shipments"] = 5
        if request.url.params.get("Page") == "1":
            # a huge page: thousands of orders nobody links to
            data += [
                {
                    "id": 99_000_000 + i,
                    "reference_id": f"other-channel-{i}",
                    "status": "Processing",
                    "created_date": "2026-11-19T10:00:00Z",
                    "shipments": [],
                }
                for i in range(5000)
            ]
            data.append({"reference_id": "no id at all"})
        return data
    return None


FIRST_AMAZON_PAGE: list = []
INJECTED: Counter = Counter()


def run_with(rig, wh, run_id: str, rewrite) -> dict:
    return rig.run(wh, run_id, rewrite=rewrite, now=NOW)


def touched_orders(rig) -> set[str]:
    """TikTok orders any successful order write was for."""
    checked = audit(rig)
    return {checked.order_of(e) for w, e in checked.effects if w.outcome == "ok"} - {None}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_broken_records_are_quarantined_and_never_acted_on(kind, rig, tmp_path):
    rig.load(SCENARIO)
    with fresh_warehouse(kind, tmp_path) as wh:
        summary = run_with(rig, wh, "bad-input-1", broken_answers)
        with wh.engine.connect() as conn:
            held = [dict(r._mapping) for r in conn.execute(sa.select(quarantine))]
            staged_amazon = conn.execute(sa.select(sa.func.count()).select_from(stg_amazon_fulfillment_orders)).scalar()
            staged_shipbob = conn.execute(sa.select(sa.func.count()).select_from(stg_shipbob_orders)).scalar()
            staged_tiktok = set(conn.execute(sa.select(stg_tiktok_orders.c.tiktok_order_id)).scalars())
    reasons = {(q["batch"], q["record_key"]): q["reason"] for q in held}
    # each broken record is held with the field at fault
    assert "status is missing" in reasons[("tiktok_orders", tid(T1_AMAZON[0]))]
    assert "rts_sla_time=1000000000000 is not a plausible time" in reasons[("tiktok_orders", tid(T1_AMAZON[1]))]
    assert "line_items has an entry without an id" in reasons[("tiktok_orders", tid(T1_AMAZON[2]))]
    assert "create_time has the wrong type" in reasons[("tiktok_orders", tid(N1[0]))]
    assert "tags has the wrong type" in reasons[("shopify_orders", str(AMBIGUOUS["shopify"][1]["id"]))]
    assert "not a plausible time" in reasons[("shopify_orders", str(N1[1]["shopify"]["id"]))]
    assert (
        "receivedDate" in reasons[("amazon_fulfillment_orders", C1_AMAZON["amazon_mcf"]["seller_fulfillment_order_id"])]
    )
    assert "shipments has the wrong type" in reasons[("shipbob_orders", str(T1_SHIPBOB["shipbob"]["order_id"]))]
    junk = [q for q in held if q["record_key"] is None]
    assert {q["batch"] for q in junk} >= {
        "tiktok_orders",
        "shopify_orders",
        "amazon_fulfillment_orders",
        "shipbob_orders",
    }
    assert all(q["reason"] for q in held) and summary["quarantined"] == len(held)
    # repeats (within a page and across pages) are staged once; the huge page is staged whole
    assert INJECTED["repeated across pages"] > 0
    assert staged_amazon == len([o for o in SCENARIO["orders"] if o.get("amazon_mcf")]) - 1
    assert staged_shipbob == len([o for o in SCENARIO["orders"] if o.get("shipbob")]) - 1 + 5000
    assert tid(T1_AMAZON[0]) not in staged_tiktok
    # nothing is done for an order whose records were broken, and the safety invariants hold:
    # a quarantined fulfillment order is not "no fulfillment order" (C2 would refund and approve),
    # and an ambiguous pair with one broken member is still ambiguous
    checked = audit(rig)
    assert checked.violations == [], checked.violations
    broken = {tid(o) for o in (*T1_AMAZON, T1_SHIPBOB, C1_AMAZON, AMBIGUOUS, *N1)}
    assert not broken & touched_orders(rig)
    assert rig.state("amazon_mcf") and C1_AMAZON["tiktok"]["cancellation"]["cancel_id"] not in {
        e.target for w, e in checked.effects
    }
    # the rest of the shop is served as usual
    assert sum(1 for w, e in checked.effects if e.kind == "post_tracking" and w.outcome == "ok") >= 5


def unknown_amazon_status(request: httpx.Request, data):
    if request.url.path.endswith("/fulfillmentOrders"):
        for o in data["payload"]["fulfillmentOrders"]:
            if o["sellerFulfillmentOrderId"] == T1_AMAZON[0]["amazon_mcf"]["seller_fulfillment_order_id"]:
                o["fulfillmentOrderStatus"] = "Teleported"
        return data
    return None


def test_an_unknown_status_fails_the_batch_and_blocks_what_rests_on_it(rig, tmp_path):
    rig.load(SCENARIO)
    with fresh_warehouse("sqlite", tmp_path) as wh:
        summary = run_with(rig, wh, "unknown-enum-1", unknown_amazon_status)
        with wh.engine.connect() as conn:
            failed = (
                conn.execute(sa.select(validation_results.c.checked_at).where(validation_results.c.success.is_(False)))
                .scalars()
                .all()
            )
            decided = conn.execute(sa.select(runs.c.decided_at)).scalar_one()
    assert summary["validation_failures"] == ["amazon_fulfillment_orders"] and summary["state"] == "attention"
    # recorded on the run's clock, as the SLA page lists it beside the run's days
    assert [as_utc(t) for t in failed] == [as_utc(decided)]
    amazon_orders = {tid(o) for o in SCENARIO["orders"] if o["fulfiller"] == "amazon_mcf"}
    shipbob_orders = {tid(o) for o in SCENARIO["orders"] if o["fulfiller"] == "shipbob"}
    touched = touched_orders(rig)
    assert not touched & amazon_orders  # nothing that rests on Amazon data is done
    assert touched & shipbob_orders  # ShipBob orders are served
    assert audit(rig).violations == []


# ----------------------------------------------------------------------------------- configuration
def test_bad_scenario_files_are_refused_naming_the_order_and_field(rig):
    good = chaos_scenario()
    bad = copy.deepcopy(good)
    bad["orders"][3]["amazon_mcf"] = {"seller_fulfillment_order_id": "1004", "status": "Teleported", "shipments": []}
    bad["orders"][3]["fulfiller"] = "amazon_mcf"
    bad["orders"][3]["shipbob"] = None
    answer = httpx.post(f"{rig.urls['tiktok']}/_sandbox/scenario", json=bad, timeout=30)
    assert answer.status_code == 400
    assert "orders[3]" in answer.text and "amazon_mcf.status" in answer.text and "Teleported" in answer.text
    for broken, words in [
        ({**good, "now": "tomorrow"}, "now"),
        ({"orders": []}, "now"),
        ({**good, "orders": [*good["orders"], good["orders"][0]]}, "is already used by orders"),
        ({**good, "orders": [{"tiktok": {"id": "x"}}]}, "tiktok.id"),
    ]:
        with pytest.raises(ScenarioError, match=words):
            parse_scenario(broken)
    # the refused file changed nothing: the sandbox still serves the scenario it had
    assert httpx.get(f"{rig.urls['tiktok']}/_sandbox/info", timeout=10).json()["orders"] == len(rig.scenario["orders"])


@pytest.mark.parametrize(
    "params,named",
    [
        ({"policy": {"c3_action": "refund"}}, "policy.c3_action"),
        ({"policy": {"horizon_hours": -1}}, "policy.horizon_hours"),
        ({"policy": {"refund_metod": "none"}}, "refund_metod"),
        ({"policy": {"carrier_overrides": {"LOCAL-COURIER-7": 5}}}, "policy.carrier_overrides"),
        ({"policy": {"restock": "yes"}}, "policy.restock"),
        ({"sla_horizon_hours": "a day"}, "param sla_horizon_hours: expected 0 to 720 hours, got 'a day'"),
        (
            {"window_start": "2026-11-20T14:30:00"},
            "param window_start: expected an ISO-8601 time with its offset, got '2026-11-20T14:30:00'",
        ),
        ({"window_start": None, "window_end": "2026-11-20T15:00:00Z"}, "window_start and window_end go together"),
        ({"fulfillers": ["fedex"]}, "fulfillers"),
        ({"now": "soon"}, "now"),
    ],
)
def test_bad_policy_and_params_are_named_before_any_call(rig, params, named):
    rig.load(SCENARIO)
    with pytest.raises(RunConfigError, match=re.escape(named)):
        run_settings(dag_id="orderops_sla", run_id="bad-policy", params={"now": NOW, **WINDOW, **params})
    assert rig.writes == [] and sum(rig.sandbox.calls.values()) == 0


@pytest.mark.parametrize(
    "platform,change,named",
    [
        ("tiktok", {"password": ""}, "app_secret"),
        ("tiktok", {"extra": {"qps": "fast"}}, "extra.qps"),
        ("shopify", {"extra": {"api_version": "2025-13"}}, "api_version"),
        ("shopify", {"extra": {"client_secret": ""}}, "client_id and client_secret"),
        ("amazon_mcf", {"extra": {"refresh_token": ""}}, "extra.refresh_token"),
        ("amazon_mcf", {"extra": {"lwa_url": "ftp://lwa"}}, "lwa_url"),
        ("shipbob", {"extra": {"channel_id": "channel-one"}}, "channel_id"),
        ("shipbob", {"extra": {"timeout": "soon"}}, "extra.timeout"),
        ("shipbob", {"host": "api.shipbob.com", "schema": "gopher"}, "schema"),
        ("shipbob", {"extra": {"channel_id": None}}, "extra.channel_id"),
        ("amazon_mcf", {"extra": "{'refresh_token': 'single quotes'"}, "extra is not JSON"),
    ],
)
def test_bad_connection_settings_are_named_before_any_write(rig, tmp_path, platform, change, named):
    rig.load(SCENARIO)
    env = rig.connection_env()
    key = f"AIRFLOW_CONN_ORDEROPS_{platform.upper()}"
    doc = json.loads(env[key])
    doc.update({k: v for k, v in change.items() if k != "extra"})
    if isinstance(change.get("extra"), str):
        doc["extra"] = change["extra"]  # an extra as typed in the UI, not parsable
    else:
        doc["extra"].update(change.get("extra", {}))
    if "schema" in change:
        doc["host"] = change["host"]
    env[key] = json.dumps(doc)
    with fresh_warehouse("sqlite", tmp_path) as wh, patched_env(env):
        settings = run_settings(
            dag_id="orderops_sla", run_id="bad-connection", params={"now": NOW, **WINDOW, "policy": POLICY}
        )
        platforms = Platforms(settings)
        try:
            with pytest.raises(ConfigurationError, match=re.escape(named)) as refused:
                run_all(settings, platforms, wh)
        finally:
            platforms.close()
    assert f"orderops_{platform}" in str(refused.value)
    # named at the start of the run: no platform was called, nothing was staged
    assert sum(rig.sandbox.calls.values()) == 0 and not rig.writes


# ------------------------------------------------------------- hostile values inside real answers
T1_SHIPBOB_MORE = pick(lambda o: shipped(o) and o["fulfiller"] == "shipbob", 3)
T1_AMAZON_MORE = pick(lambda o: shipped(o) and o["fulfiller"] == "amazon_mcf", 5)
LONG = "9" * 300


def hostile_answers(request: httpx.Request, data):
    """Well-formed answers carrying values of the wrong type or beyond any real size, one per
    order: what a platform change or a corrupt record would send."""
    path = request.url.path
    if path.endswith("/orders/search"):
        for o in data["data"]["orders"]:
            if o["id"] == tid(T1_AMAZON_MORE[3]):
                o["tracking_number"] = LONG
            elif o["id"] == tid(T1_AMAZON_MORE[4]):
                o["line_items"][0]["seller_sku"] = 12345
        return data
    if (
        path.endswith("/graphql.json")
        and isinstance(data.get("data"), dict)
        and isinstance(data["data"].get("orders"), dict)
    ):
        for node in data["data"]["orders"]["nodes"]:
            if node["legacyResourceId"] == str(T1_AMAZON_MORE[0]["shopify"]["id"]):
                node["name"] = "#" + "1" * 99
        return data
    if path.endswith("/fulfillmentOrders"):
        for o in data["payload"]["fulfillmentOrders"]:
            if o["sellerFulfillmentOrderId"] == T1_AMAZON_MORE[1]["amazon_mcf"]["seller_fulfillment_order_id"]:
                o["displayableOrderId"] = "D" * 100
        return data
    if re.search(r"/order$", path) and isinstance(data, list):
        for o in data:
            if o["id"] == T1_SHIPBOB_MORE[0]["shipbob"]["order_id"]:
                o["reference_id"] = "R" * 200
            elif o["id"] == T1_SHIPBOB_MORE[1]["shipbob"]["order_id"] and o["shipments"]:
                o["shipments"][0]["tracking"]["carrier"] = 7
            elif o["id"] == T1_SHIPBOB_MORE[2]["shipbob"]["order_id"] and o["shipments"]:
                o["shipments"][0]["tracking"]["tracking_number"] = 1234567890123
        return data
    return None


def posted_tracking(checked) -> set[str]:
    return {checked.order_of(e) for w, e in checked.effects if e.kind == "post_tracking" and w.outcome == "ok"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_oversized_and_wrong_typed_values_are_quarantined_on_either_database(kind, rig, tmp_path):
    rig.load(SCENARIO)
    with fresh_warehouse(kind, tmp_path) as wh:
        run_with(rig, wh, "clean-1", lambda request, data: None)
    clean = posted_tracking(audit(rig))  # what the same shop gets when every answer is sound
    rig.load(SCENARIO)
    with fresh_warehouse(kind, tmp_path) as wh:
        summary = run_with(rig, wh, "hostile-values-1", hostile_answers)
        with wh.engine.connect() as conn:
            held = {(q.batch, q.record_key): q.reason for q in conn.execute(sa.select(quarantine))}
    assert held[("tiktok_orders", tid(T1_AMAZON_MORE[3]))].endswith(
        "tracking_number is 300 characters long (at most 64)"
    )
    assert "seller_sku has the wrong type (int)" in held[("tiktok_orders", tid(T1_AMAZON_MORE[4]))]
    assert (
        "name is 100 characters long (at most 64)" in held[("shopify_orders", str(T1_AMAZON_MORE[0]["shopify"]["id"]))]
    )
    assert (
        "displayable_order_id is 100 characters long"
        in held[("amazon_fulfillment_orders", T1_AMAZON_MORE[1]["amazon_mcf"]["seller_fulfillment_order_id"])]
    )
    shipbob = {o["shipbob"]["order_id"]: o for o in T1_SHIPBOB_MORE}
    assert (
        "reference_id is 200 characters long (at most 128)"
        in held[("shipbob_orders", str(T1_SHIPBOB_MORE[0]["shipbob"]["order_id"]))]
    )
    assert (
        "carrier has the wrong type (int)" in held[("shipbob_orders", str(T1_SHIPBOB_MORE[1]["shipbob"]["order_id"]))]
    )
    assert (
        "tracking_number has the wrong type (int)"
        in held[("shipbob_orders", str(T1_SHIPBOB_MORE[2]["shipbob"]["order_id"]))]
    )
    assert summary["quarantined"] == len(held) == 7 and len(shipbob) == 3
    # the run went through: the orders behind the bad records are held, the rest of the shop served
    checked = audit(rig)
    assert checked.violations == [], checked.violations
    broken = {tid(o) for o in (*T1_AMAZON_MORE[:2], *T1_AMAZON_MORE[3:], *T1_SHIPBOB_MORE)}
    touched = touched_orders(rig)
    assert not broken & touched
    assert posted_tracking(checked) == clean - broken and clean & broken  # only the bad records cost work


# -------------------------------------------------- absence is not concluded beyond the listings
def test_a_cancellation_older_than_the_listings_reach_is_escalated_not_refunded(rig, tmp_path):
    """An order older than the lookback cap, found in Shopify (imported late): no fulfiller listing
    reached back to it, so finding no fulfillment order proves nothing; it is escalated, while a
    recent order with no fulfillment order is refunded."""
    old, recent = pick(
        lambda o: o["tiktok"]["cancellation"] and not o["fulfiller"] and isinstance(o["shopify"], dict), 2
    )
    scenario = copy.deepcopy(SCENARIO)
    for o in scenario["orders"]:
        if o["tiktok"]["id"] == tid(old):
            o["tiktok"]["create_time"] = "2026-09-01T10:00:00Z"  # 80 days before the run
            o["shopify"]["created_at"] = "2026-11-20T10:00:00Z"  # imported into Shopify only today
    rig.load(scenario)
    with fresh_warehouse("sqlite", tmp_path) as wh:
        run_with(rig, wh, "lookback-1", lambda request, data: None)
        with wh.engine.connect() as conn:
            rules = {r.tiktok_order_id: (r.rule, r.reason) for r in conn.execute(sa.select(decisions))}
            escalated = {
                r.tiktok_order_id: r.request["reason_code"]
                for r in conn.execute(sa.select(action_ledger).where(action_ledger.c.kind == "escalate"))
            }
    assert rules[tid(old)][0] == "E1" and escalated[tid(old)] == "fulfillment_not_listed"
    assert rules[tid(recent)][0] == "C2"
    refunded = {e.target for w, e in audit(rig).effects if w.outcome == "ok" and e.kind == "shopify_cancel"}
    assert f"gid://shopify/Order/{old['shopify']['id']}" not in refunded
    assert f"gid://shopify/Order/{recent['shopify']['id']}" in refunded


def test_a_fulfillment_order_a_listing_left_out_is_found_before_any_refund(rig, tmp_path):
    """Listings that answer well-formed but leave out a fulfillment order make its buyer
    cancellation look like one with nothing at a fulfiller (C2: approve and refund, no fulfiller
    cancel). The approval, the first write, asks each fulfiller by the order's own ids, finds the
    open order and stops; once the listings show it again, the saga cancels it at the fulfiller and
    only then approves and refunds."""
    scenario = chaos_scenario(shipbob_c1=1)
    sagas = [
        o
        for o in scenario["orders"]
        if o["tiktok"]["cancellation"]
        and ((o["amazon_mcf"] or {}).get("status") == "Planning" or (o["shipbob"] or {}).get("status") == "Processing")
    ]
    hidden_amazon = next(o["amazon_mcf"]["seller_fulfillment_order_id"] for o in sagas if o["amazon_mcf"])
    hidden_shipbob = next(o["shipbob"]["order_id"] for o in sagas if o["shipbob"])
    hidden = [
        o
        for o in sagas
        if (o["amazon_mcf"] or {}).get("seller_fulfillment_order_id") == hidden_amazon
        or (o["shipbob"] or {}).get("order_id") == hidden_shipbob
    ]
    refunds = {f"gid://shopify/Order/{o['shopify']['id']}": tid(o) for o in hidden}

    def leave_out(request, data):
        path, params = request.url.path, request.url.params
        if path.endswith("/fulfillmentOrders") and isinstance(data.get("payload"), dict):
            orders = data["payload"].get("fulfillmentOrders") or []
            data["payload"]["fulfillmentOrders"] = [o for o in orders if o["sellerFulfillmentOrderId"] != hidden_amazon]
            return data
        if path.endswith("/order") and isinstance(data, list) and "ReferenceIds" not in params:
            return [o for o in data if o["id"] != hidden_shipbob]
        return None

    rig.load(scenario)
    with fresh_warehouse("sqlite", tmp_path) as wh:
        rig.run(wh, "left-out-1", rewrite=leave_out, now=NOW)
        checked = audit(rig)
        assert checked.violations == []
        refunded = {e.target for w, e in checked.effects if w.outcome == "ok" and e.kind == "shopify_cancel"}
        assert refunded.isdisjoint(refunds)
        stopped = {
            r["tiktok_order_id"]: r
            for r in Ledger(wh).rows("default", kind="approve_cancellation")
            if r["tiktok_order_id"] in refunds.values()
        }
        assert set(stopped) == set(refunds.values())
        for row in stopped.values():
            assert row["rule"] == "C2" and row["state"] == "failed"
            assert "not cancelled: not approved, not refunded" in row["detail"]
            assert "fulfillment_order_found" in row["detail"]
        assert not [
            w
            for w, e in checked.effects
            if w.outcome == "ok"
            and e.kind == "approve_cancellation"
            and checked.by_cancel.get(e.target) in refunds.values()
        ]
        # the listings whole again: cancelled at the fulfiller, verified, then refunded and approved
        for run in range(2, 5):
            rig.advance(10)
            rig.run(wh, f"left-out-{run}")
        checked = audit(rig)
        assert checked.violations == []
        refunded = {e.target for w, e in checked.effects if w.outcome == "ok" and e.kind == "shopify_cancel"}
        assert set(refunds) <= refunded
        cancelled = {
            e.target for w, e in checked.effects if w.outcome == "ok" and e.kind in ("amazon_cancel", "shipbob_cancel")
        }
        assert {hidden_amazon, str(hidden_shipbob)} <= cancelled
        assert unfinished(wh) == []


def test_a_saga_begun_and_then_left_out_by_the_listings_is_not_refunded(rig, tmp_path):
    """A C1 saga records its approval row first (its request fixed by that decision); the fulfiller
    never shows the cancel; then its staged row is lost and the listings leave the fulfillment
    order out, so the order reads as C2. The approval still asks Amazon first, finds the order open
    and is not made, nor the refund after it."""
    scenario = chaos_scenario(cancel_ignored=True)
    saga = next(
        o for o in scenario["orders"] if o["tiktok"]["cancellation"] and (o["amazon_mcf"] or {}).get("cancel_ignored")
    )
    sfo, gid = saga["amazon_mcf"]["seller_fulfillment_order_id"], f"gid://shopify/Order/{saga['shopify']['id']}"

    def leave_out(request, data):
        if request.url.path.endswith("/fulfillmentOrders") and isinstance(data.get("payload"), dict):
            orders = data["payload"].get("fulfillmentOrders") or []
            data["payload"]["fulfillmentOrders"] = [o for o in orders if o["sellerFulfillmentOrderId"] != sfo]
            return data
        return None

    rig.load(scenario)
    with fresh_warehouse("sqlite", tmp_path) as wh:
        rig.run(wh, "begun-1", now=NOW, policy={"cancel_verify_timeout_minutes": 60})
        rules = {r["tiktok_order_id"]: r["rule"] for r in Ledger(wh).rows("default", kind="cancel_shopify_order")}
        assert rules[tid(saga)] == "C1"
        with wh.engine.begin() as conn:
            t = stg_amazon_fulfillment_orders.c
            assert conn.execute(
                stg_amazon_fulfillment_orders.delete().where(t.seller_fulfillment_order_id == sfo)
            ).rowcount
        rig.advance(10)
        rig.run(wh, "begun-2", rewrite=leave_out, now=rig.now(), policy={"cancel_verify_timeout_minutes": 60})
        with wh.engine.connect() as conn:
            # each order's current decision (a run records one only when it changed)
            decided = {o: r["rule"] for o, r in latest_rows(conn, decisions, "default").items()}
        approval, refund = (
            next(r for r in Ledger(wh).rows("default", kind=kind) if r["tiktok_order_id"] == tid(saga))
            for kind in ("approve_cancellation", "cancel_shopify_order")
        )
    assert decided[tid(saga)] == "C2"
    assert approval["state"] == "failed" and f"fulfillment order {sfo} is Planning" in approval["detail"]
    assert refund["state"] == "pending"
    checked = audit(rig)
    assert checked.violations == []
    assert gid not in {e.target for w, e in checked.effects if w.outcome == "ok" and e.kind == "shopify_cancel"}


# ------------------------------------------------ property: any broken field is staged or held
from hypothesis import HealthCheck, given  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from include.act.ledger import Ledger  # noqa: E402
from include.extract import listings  # noqa: E402
from include.store.warehouse import stg_shopify_orders, stg_tiktok_cancellations  # noqa: E402

STAGED_AS = {  # sample -> (table, batch, transform, id field)
    "tiktok": (stg_tiktok_orders, "tiktok_orders", staging.tiktok_order_row, "id"),
    "cancellation": (stg_tiktok_cancellations, "tiktok_cancellations", staging.tiktok_cancellation_row, "cancel_id"),
    "shopify": (stg_shopify_orders, "shopify_orders", staging.shopify_order_row, "legacyResourceId"),
    "amazon": (stg_amazon_fulfillment_orders, "amazon_fulfillment_orders", ROW["amazon"], "sellerFulfillmentOrderId"),
    "shipbob": (stg_shipbob_orders, "shipbob_orders", staging.shipbob_order_row, "id"),
}
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(max_size=30),
    st.text(min_size=60, max_size=400),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "1Z\x00999",
            "\u202e1Z999AA1",
            "🚚" * 70,
            "e\u0301" * 40,
            "9" * 300,
            "2026-13-45T25:61:00Z",
            "Infinity",
            "null",
            "#" * 65,
        ]
    ),
)


def paths_of(value, prefix=()):
    """Every key and list entry of a payload (the first two entries of a list), as paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:2]):
            yield prefix + (i,)
            yield from paths_of(item, prefix + (i,))


def broken(sample: dict, path: tuple, value) -> dict:
    record = copy.deepcopy(sample)
    node = record
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return record


@pytest.fixture(scope="module")
def both_warehouses(tmp_path_factory):
    with (
        fresh_warehouse("sqlite", tmp_path_factory.mktemp("property")) as lite,
        fresh_warehouse("postgresql", tmp_path_factory.mktemp("property-pg")) as pg,
    ):
        for wh in (lite, pg):
            wh.migrate()
        yield lite, pg


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_broken_field_of_any_record_is_staged_or_quarantined_on_both_databases(samples, both_warehouses, data):
    """Every field staging, the join or an action reads, given a wrong type, null, absence, a huge or
    odd-unicode string: the record is staged (every string fitting its column) or quarantined with a
    reason, on SQLite and PostgreSQL alike; nothing raises."""
    kind = data.draw(st.sampled_from(sorted(STAGED_AS)), label="record")
    path = data.draw(st.sampled_from(list(paths_of(samples[kind]))), label="field")
    value = data.draw(st.one_of(st.just(DELETE), ODD_VALUES), label="value")
    record = broken(samples[kind], path, value)
    table, batch, to_row, id_field = STAGED_AS[kind]
    settings = run_settings(dag_id="orderops_sla", run_id="property", params={"now": NOW, **WINDOW})
    for wh in both_warehouses:
        staged, held, _ = RunStore(wh, settings).stage(table, batch, [record], to_row, listings.key_of(id_field))
        assert staged + held == 1, (kind, path, value)
        if staged:
            key = str(to_row(record)[natural_key(table).name])
            with wh.engine.connect() as conn:
                assert (
                    conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(natural_key(table) == key)
                    ).scalar()
                    == 1
                )


LISTED = {  # sample -> (the listing's path, where its records are in the answer)
    "tiktok": (r"/orders/search$", lambda data: data["data"]["orders"]),
    "shopify": (
        r"/graphql\.json$",
        lambda data: (
            (data.get("data") or {}).get("orders", {}).get("nodes", [])
            if isinstance((data.get("data") or {}).get("orders"), dict)
            else []
        ),
    ),
    "amazon": (r"/fulfillmentOrders$", lambda data: data["payload"]["fulfillmentOrders"]),
    "shipbob": (r"/order$", lambda data: data if isinstance(data, list) else []),
}


@pytest.fixture(scope="module")
def clean_touched(rig, tmp_path_factory):
    rig.load(SCENARIO)
    with fresh_warehouse("sqlite", tmp_path_factory.mktemp("clean")) as wh:
        run_with(rig, wh, "clean-property", lambda request, data: None)
    return touched_orders(rig)


def run_over_broken_listing(kind, rig, clean_touched, tmp_path, which: str, path: tuple, value) -> None:
    """A whole run whose listing `which` carries `value` at `path` in every page's first record: the
    run finishes, no invariant breaks, and no order is written to that the sound answers left alone."""
    pattern, records_of = LISTED[which]

    def rewrite(request: httpx.Request, answer):
        if not re.search(pattern, request.url.path) or not isinstance(answer, (dict, list)):
            return None
        records = records_of(answer)
        if records and isinstance(records[0], dict):
            try:
                records[0] = broken(records[0], path, value)
            except (KeyError, IndexError, TypeError):
                return None  # this record has no such field
        return answer

    rig.load(SCENARIO)
    with fresh_warehouse(kind, tmp_path) as wh:
        summary = run_with(rig, wh, "property-run", rewrite)
        ledger = [
            (r["tiktok_order_id"], r["kind"], r["state"], r["idempotency_key"], r["detail"])
            for r in Ledger(wh).rows("default")
        ]
    assert summary["state"] in ("succeeded", "attention")
    checked = audit(rig)
    assert checked.violations == [], (checked.violations, [r for r in ledger if r[0] in str(checked.violations)])
    assert touched_orders(rig) <= clean_touched


@pytest.mark.parametrize("value", ["", "\u202e", "Order"])
def test_a_shopify_name_without_its_number_links_nothing_and_refunds_nothing(rig, clean_touched, tmp_path, value):
    """Found by the property test below: the Shopify order a fulfillment order is filed under, named
    without its number, once read as "no fulfillment order" (C2) and was cancelled and refunded."""
    run_over_broken_listing("sqlite", rig, clean_touched, tmp_path, "shopify", ("name",), value)


@hypothesis_settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_run_over_answers_with_broken_fields_finishes_and_writes_nothing_new(
    kind, rig, samples, clean_touched, tmp_path, data
):
    """Whole runs whose listings carry one broken field in every page's first record."""
    which = data.draw(st.sampled_from(sorted(LISTED)), label="listing")
    path = data.draw(st.sampled_from(list(paths_of(samples[which]))), label="field")
    value = data.draw(st.one_of(st.just(DELETE), ODD_VALUES), label="value")
    run_over_broken_listing(kind, rig, clean_touched, tmp_path, which, path, value)
