"""The whole pipeline against the sandbox over real HTTP, on SQLite and on PostgreSQL.

Every rule of the README's table is exercised by a generated scenario (plus one fulfiller that
accepts a cancel but never shows it, for C4); each rule's effect is checked in the sandbox's write
log. A second run over the same window writes nothing new; a dry run writes nothing at all.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import pytest
import sqlalchemy as sa

from include.act.ledger import Ledger
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse, decisions
from orderops_provider.tiktok_versions import path as api_path
from sandbox.connections import connection_env
from sandbox.core import Settings, changes_orders
from sandbox.generate import generate
from sandbox.tiktok import shipped_with
from tests.support import NOW_ISO as NOW

pytestmark = pytest.mark.slow


def scenario() -> dict:
    doc = generate(260, seed=2026, now=NOW)
    # C4: a buyer cancellation whose fulfiller accepts the cancel but never shows it cancelled
    base = next(
        o
        for o in doc["orders"]
        if o["fulfiller"] == "amazon_mcf"
        and o["tiktok"]["cancellation"]
        and o["amazon_mcf"]["status"] in ("Received", "Planning")
    )
    c4 = copy.deepcopy(base)
    c4["tiktok"]["id"] = "576999999999999001"
    c4["tiktok"]["line_items"] = [{"id": "577999999999999001", "seller_sku": "OSL-TEE-M"}]
    c4["tiktok"]["cancellation"]["cancel_id"] = "4035999999999999001"
    c4["shopify"] = {"id": 6199999001, "name": "#99001", "tiktok_id_in": "source_identifier", "cancelled": False}
    c4["amazon_mcf"] = {**base["amazon_mcf"], "seller_fulfillment_order_id": "99001", "cancel_ignored": True}
    doc["orders"].append(c4)
    return doc


def side_effects(server, since: int = 0) -> list:
    """Writes that change orders, as the sandbox's write log recorded them."""
    return [w for w in server.sandbox.writes[since:] if changes_orders(w.operation) and w.outcome != "THROTTLED"]


@pytest.fixture
def pipeline(run_sandbox, warehouse_url, monkeypatch):
    # quotas x20 on both sides (the simulator's and the clients' pacing) and reports built in a blink:
    # what is tested here is what the runs decide and write, not the pacing (tests/contract)
    # Amazon's early numbers off: the scenario's orders were received long before its "now", so which
    # run meets one depends on whether it read the order by id (tests/e2e/test_preflight.py,
    # tests/simulation/test_shop_day.py and the contract tests cover the numbers)
    fast_reports = {"amazon_mcf": {"report_queue_seconds": 0.2, "report_processing_seconds": 0.2, "aftn_minutes": 0}}
    server = run_sandbox(scenario(), settings=Settings(clock_rate=0, rate_scale=20, platforms=fast_reports))
    for key, value in connection_env(server.urls, rate_scale=20).items():
        monkeypatch.setenv(key, value)
    wh = Warehouse(warehouse_url)

    def run(run_id: str, **params):
        params = {
            "now": NOW,
            "window_start": "2026-11-20T14:30:00Z",
            "window_end": NOW,
            "policy": {"cancel_verify_timeout_minutes": 0.05},
            **params,
        }
        settings = run_settings(dag_id="orderops_sla", run_id=run_id, params=params)
        platforms = Platforms(settings)
        try:
            return run_all(settings, platforms, wh)
        finally:
            platforms.close()

    yield server, wh, run
    wh.dispose()


def orders_by_rule(wh: Warehouse, run_id: str) -> dict[str, set[str]]:
    with wh.engine.connect() as conn:
        rows = conn.execute(
            sa.select(decisions.c.rule, decisions.c.tiktok_order_id).where(decisions.c.run_id == run_id)
        )
        found = defaultdict(set)
        for rule, order_id in rows:
            found[rule].add(order_id)
    return found


def test_every_rule_acts_once_and_reruns_write_nothing(pipeline):
    server, wh, run = pipeline
    summary = run("run-1")
    assert summary["state"] in ("succeeded", "attention")
    rules = orders_by_rule(wh, "run-1")
    assert {"T1", "T2", "N1", "E1", "C1", "C2", "C3"} <= set(rules), dict(rules)
    # the fulfiller that never shows the cancel holds nothing: its saga waits for a later run
    (verify,) = [
        r
        for r in Ledger(wh).rows("default", kind="verify_fulfillment_cancel")
        if r["tiktok_order_id"] == "576999999999999001"
    ]
    assert verify["state"] == "pending" and verify["detail"].startswith("waiting:")
    # a second run over the same window writes nothing new
    before = len(server.sandbox.writes)
    run("run-2")
    assert side_effects(server, before) == []
    # a run after the verify timeout (on the run's clock) gives the saga up: C4, escalated
    run("run-3", now="2026-11-20T15:10:00Z")
    assert side_effects(server, before) == []
    rules["C4"] = {r["tiktok_order_id"] for r in Ledger(wh).rows("default", kind="escalate") if r["rule"] == "C4"}
    rules["C1"] -= rules["C4"]
    scen = {o["tiktok"]["id"]: o for o in server.sandbox.scenario.raw["orders"]}
    writes = side_effects(server)
    by_path = defaultdict(list)
    for w in writes:
        by_path[w.path].append(w)

    # T1: tracking posted once per order, with the fulfiller's tracking number
    for order_id in rules["T1"]:
        posted = [w for w in by_path[api_path("mark_package_shipped", order_id=order_id)] if w.outcome == "ok"]
        assert len(posted) == 1, order_id
        assert shipped_with(posted[0].body)["tracking_number"]
    # T2 and E1: escalated, nothing written for them
    ledger = Ledger(wh)
    escalated = {r["tiktok_order_id"]: r for r in ledger.rows("default", kind="escalate")}
    for order_id in rules["T2"] | rules["E1"]:
        assert order_id in escalated and escalated[order_id]["state"] == "succeeded"
        assert not by_path[api_path("mark_package_shipped", order_id=order_id)]
    assert {escalated[o]["request"]["reason_code"] for o in rules["T2"]} == {"carrier_unmapped"}
    # N1: a note and tag on the Shopify order, once
    shopify_writes = [w for w in writes if w.platform == "shopify"]
    for order_id in rules["N1"]:
        shopify_id = str(scen[order_id]["shopify"]["id"])
        touching = [w for w in shopify_writes if shopify_id in str(w.body)]
        assert touching and all(w.outcome == "ok" for w in touching), order_id
        assert len({w.operation for w in touching}) == len(touching)  # no operation repeated
    # C1: fulfiller cancel, TikTok approve, Shopify cancel, in that order (a Shopify cancel first could
    # be copied to TikTok as a seller cancellation)
    for order_id in rules["C1"]:
        o = scen[order_id]
        cancel_id = o["tiktok"]["cancellation"]["cancel_id"]
        approve = [w for w in writes if w.path.endswith(f"/cancellations/{cancel_id}/approve") and w.outcome == "ok"]
        assert len(approve) == 1, order_id
        shopify_cancel = [
            w for w in shopify_writes if w.operation == "orderCancel" and str(o["shopify"]["id"]) in str(w.body)
        ]
        assert len(shopify_cancel) == 1 and approve[0].seq < shopify_cancel[0].seq
        if o["fulfiller"] == "amazon_mcf":
            fulfiller = [
                w
                for w in writes
                if w.path.endswith(f"/fulfillmentOrders/{o['amazon_mcf']['seller_fulfillment_order_id']}/cancel")
            ]
        else:
            fulfiller = [w for w in writes if w.platform == "shipbob" and str(o["shipbob"]["order_id"]) in w.path]
        assert len(fulfiller) == 1 and fulfiller[0].seq < approve[0].seq
    # C2: no fulfiller write; TikTok approved, then the Shopify order cancelled
    for order_id in rules["C2"]:
        cancel_id = scen[order_id]["tiktok"]["cancellation"]["cancel_id"]
        assert [w.outcome for w in writes if w.path.endswith(f"/cancellations/{cancel_id}/approve")] == ["ok"]
    # C3: rejected with the US shop's "packed" reason (read from TikTok for the request), never approved
    for order_id in rules["C3"]:
        cancel_id = scen[order_id]["tiktok"]["cancellation"]["cancel_id"]
        rejects = [w for w in writes if w.path.endswith(f"/cancellations/{cancel_id}/reject")]
        assert (
            len(rejects) == 1 and rejects[0].body["reject_reason"] == "ecom_reverse_reject_cancel_reason_product_packed"
        )
        assert not [w for w in writes if w.path.endswith(f"/cancellations/{cancel_id}/approve")]
    # C4: cancel requested, never verified: escalated, never refunded or approved
    assert rules["C4"] == {"576999999999999001"}
    assert not [w for w in writes if "4035999999999999001" in w.path]
    assert not [w for w in shopify_writes if "6199999001" in str(w.body) and w.operation == "orderCancel"]
    assert escalated["576999999999999001"]["request"]["reason_code"] == "fulfiller_cancel_not_verified"


def test_dry_run_writes_nothing(pipeline):
    server, wh, run = pipeline
    summary = run("dry-1", dry_run=True)
    assert side_effects(server) == []
    assert summary["dry_run"] and sum(summary["decisions"].values()) > 100
    assert Ledger(wh).rows("default") == []
    rules = orders_by_rule(wh, "dry-1")
    assert {"T1", "N1", "C1"} <= set(rules)


def to_post(o: dict) -> bool:
    """Shipped by Amazon, its tracking not yet on TikTok."""
    return (
        (o.get("amazon_mcf") or {}).get("status") == "Complete"
        and not o["tiktok"]["tracking_number"]
        and o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and not o["tiktok"]["cancellation"]
    )


def few_shipped() -> dict:
    """The e2e scenario with only four Amazon orders that may have shipped: three to post, one Processing."""
    doc = scenario()
    kept = [o for o in doc["orders"] if to_post(o)][:3] + [
        o for o in doc["orders"] if (o.get("amazon_mcf") or {}).get("status") == "Processing"
    ][:1]
    doc["orders"] = [
        o
        for o in doc["orders"]
        if any(o is k for k in kept) or (o.get("amazon_mcf") or {}).get("status") not in ("Complete", "Processing")
    ]
    return doc


def nothing_shipped() -> dict:
    """The e2e scenario without its shipped Amazon orders: two dozen Processing, none shipped yet."""
    doc = scenario()
    doc["orders"] = [o for o in doc["orders"] if (o.get("amazon_mcf") or {}).get("status") != "Complete"]
    return doc


def tracking_run(run_sandbox, tmp_path, monkeypatch, case: str, runs: int = 1) -> tuple[set[str], int, int]:
    """Runs on a fresh sandbox and warehouse: the TikTok orders tracking was posted for, the
    getFulfillmentOrder calls made (by the last run) and the shipments reports stored."""
    from include.store.warehouse import amazon_shipment_reports

    # Amazon's early numbers off, as in `pipeline`: these runs count the reads of the carriers' tracking
    amazon = {"aftn_minutes": 0, **({"upper_case_statuses": True} if case == "upper case" else {})}
    # quotas x20: one-by-one reads are paced by getFulfillmentOrder's 2 a second otherwise
    doc = {
        "few shipped": few_shipped,
        "nothing shipped": nothing_shipped,
        "nothing shipped, asked lately": nothing_shipped,
    }.get(case, scenario)()
    server = run_sandbox(doc, settings=Settings(clock_rate=0, rate_scale=20, platforms={"amazon_mcf": amazon}))
    for key, value in connection_env(server.urls, rate_scale=20).items():
        monkeypatch.setenv(key, value)
    wh = Warehouse(f"sqlite:///{tmp_path / f'{case}.db'}")
    reads = 0
    try:
        for run in range(1, runs + 1):
            settings = run_settings(
                dag_id="orderops_sla",
                run_id=f"{case}-{run}",
                params={
                    "now": NOW,
                    "window_start": "2026-11-20T14:30:00Z",
                    "window_end": NOW,
                    # no reads for early numbers either: the count is the carriers' tracking's
                    "policy": {"cancel_verify_timeout_minutes": 0.05, "post_aftn": False},
                },
            )
            platforms = Platforms(settings)
            try:
                if case in ("cancelled report", "nothing shipped, asked lately"):  # someone else asked a minute ago
                    platforms.amazon_mcf().request_fulfilled_shipments("2026-11-19T00:00:00Z", NOW)
                before = server.sandbox.calls[("amazon_mcf", "getFulfillmentOrder")]
                run_all(settings, platforms, wh)
                reads = server.sandbox.calls[("amazon_mcf", "getFulfillmentOrder")] - before
            finally:
                platforms.close()
        with wh.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(amazon_shipment_reports)).scalar()
    finally:
        wh.dispose()
    posted = {w.path.split("/")[-2] for w in side_effects(server) if w.operation == "mark_package_as_shipped"}
    asked_lately = case in ("cancelled report", "nothing shipped, asked lately")
    assert server.sandbox.calls[("amazon_mcf", "createReport")] == (2 * runs if asked_lately else stored)
    return posted, reads, stored


def test_a_cancelled_report_or_upper_case_statuses_post_the_same_tracking(run_sandbox, tmp_path, monkeypatch):
    """Amazon regenerates the shipments report at most every 30 minutes and cancels one asked for
    sooner (as it cancels one with no data): the run then reads the shipped orders one by one and
    posts the same tracking as with the report, storing no copy of the cancelled one. Statuses
    in another case ("COMPLETE") are read as Amazon's own spelling."""
    posted, reads, stored = tracking_run(run_sandbox, tmp_path, monkeypatch, "report")
    assert len(posted) > 10 and stored == 1
    cancelled = tracking_run(run_sandbox, tmp_path, monkeypatch, "cancelled report")
    assert cancelled[0] == posted and cancelled[1] > reads + 10 and cancelled[2] == 0
    upper = tracking_run(run_sandbox, tmp_path, monkeypatch, "upper case")
    assert upper == (posted, reads, 1)


def test_a_report_cancelled_for_want_of_data_is_an_empty_one(run_sandbox, tmp_path, monkeypatch):
    """Two dozen Processing orders may have shipped: the report is asked for; nothing shipped in its
    range, so Amazon cancels it (no data), and with no other report asked for lately that is what it
    means: none of the orders is read one by one (a shop with thousands open would pay a call each)."""
    _, reads, stored = tracking_run(run_sandbox, tmp_path, monkeypatch, "nothing shipped")
    # the same with another report asked for a minute before: the cancel may mean "too soon", so
    # every order that may have shipped is read one by one
    _, reads_after_another, stored_after_another = tracking_run(
        run_sandbox, tmp_path, monkeypatch, "nothing shipped, asked lately"
    )
    processing = sum(
        1 for o in nothing_shipped()["orders"] if (o.get("amazon_mcf") or {}).get("status") == "Processing"
    )
    assert stored == 1 and stored_after_another == 0
    assert reads_after_another - reads >= processing >= 20


def test_a_few_orders_to_track_are_read_one_by_one_instead_of_asking_for_a_report(run_sandbox, tmp_path, monkeypatch):
    """A report costs about six calls (create, polls, document, download): four orders that may
    have shipped are cheaper read one by one, and their tracking is posted all the same."""
    with_report = tracking_run(run_sandbox, tmp_path, monkeypatch, "report")[0]
    posted, reads, stored = tracking_run(run_sandbox, tmp_path, monkeypatch, "few shipped")
    few = few_shipped()["orders"]
    shipped = {o["tiktok"]["id"] for o in few if to_post(o)} & with_report
    assert shipped and posted & {o["tiktok"]["id"] for o in few if o.get("amazon_mcf")} == shipped
    assert stored == 0 and 4 <= reads
