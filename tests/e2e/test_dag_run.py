"""The real DAG, run by Airflow (`airflow dags test`) against the sandbox: wiring, XCom, mapping,
the cancellation saga, OpenLineage events, and a second run that writes nothing."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

import pytest
import sqlalchemy as sa

from include.store.warehouse import Warehouse, action_ledger, decisions, quota_buckets, runs
from orderops_provider.tiktok_versions import path as api_path
from sandbox.core import Settings, changes_orders
from sandbox.demo import airflow, airflow_env, prepare_airflow
from sandbox.generate import DEFAULT_NOW, generate
from sandbox.scenario import parse_time

pytestmark = pytest.mark.slow


def order_writes(server, since=0):
    return [w for w in server.sandbox.writes[since:] if changes_orders(w.operation)]


@pytest.mark.timeout(1200)
def test_dag_runs_twice_acts_once_and_emits_lineage(run_sandbox, tmp_path):
    server = run_sandbox(generate(120, seed=5), settings=Settings(clock_rate=0))
    warehouse_db, lineage = tmp_path / "warehouse.db", tmp_path / "events.jsonl"
    env = airflow_env(tmp_path / "airflow", server.urls, warehouse_db, lineage)
    now = parse_time(DEFAULT_NOW, "now")
    conf = json.dumps({"window_start": (now - timedelta(minutes=30)).isoformat(), "window_end": now.isoformat()})
    with (tmp_path / "airflow.log").open("w") as log:
        prepare_airflow(env, log)
        first = airflow(env, "dags", "test", "orderops_sla", "-c", conf, log=log)
        writes_after_first = len(server.sandbox.writes)
        second = airflow(env, "dags", "test", "orderops_sla", "-c", conf, log=log)
    assert first.returncode == 0 and second.returncode == 0, (tmp_path / "airflow.log").read_text()[-3000:]

    wh = Warehouse(f"sqlite:///{warehouse_db}")
    with wh.engine.connect() as conn:
        run_rows = conn.execute(
            sa.select(runs.c.run_id, runs.c.state, runs.c.summary).order_by(runs.c.started_at)
        ).all()
        rules = dict(
            conn.execute(
                sa.select(decisions.c.rule, sa.func.count())
                .where(decisions.c.run_id == run_rows[0].run_id)
                .group_by(decisions.c.rule)
            ).all()
        )
        ledger = conn.execute(
            sa.select(action_ledger.c.kind, action_ledger.c.state, action_ledger.c.task_id, action_ledger.c.map_index)
        ).all()
        shared = set(conn.execute(sa.select(quota_buckets.c.bucket).where(quota_buckets.c.shop == "default")).scalars())
    wh.dispose()
    # the tasks paced their calls by the shop's shared quotas
    assert {
        "shopify",
        "tiktok:search_orders",
        "tiktok:mark_package_shipped",
        "amazon_mcf:listAllFulfillmentOrders",
        "shipbob",
    } <= shared, shared
    assert [r.state for r in run_rows] == ["succeeded", "succeeded"]
    assert {"T1", "N1", "E1"} <= set(rules)
    assert ledger and all(r.state == "succeeded" for r in ledger)
    # each side effect names the Airflow task (and map index) that made it
    assert {r.task_id for r in ledger if r.kind == "post_tracking"} == {"post_tracking"}
    assert all(r.map_index >= 0 for r in ledger)
    summary = run_rows[0].summary
    assert summary["api"]["tiktok"]["calls"] > 0 and summary["orders_seen"]["tiktok_orders"] > 0
    first_writes = order_writes(server)[:writes_after_first]
    posted = [w for w in first_writes if w.operation == "mark_package_as_shipped"]
    assert len(posted) == sum(1 for r in ledger if r.kind == "post_tracking")
    # the second run over the same window changes nothing on any platform
    assert order_writes(server, writes_after_first) == []

    events = [json.loads(line) for line in lineage.read_text().splitlines()]
    datasets = defaultdict(set)
    for event in events:
        if event["eventType"] == "COMPLETE":
            for side in ("inputs", "outputs"):
                for d in event.get(side, []):
                    datasets[event["job"]["name"].split(".")[-1]].add((side, d["namespace"], d["name"]))
    assert ("inputs", "https://open-api.tiktokglobalshop.com", api_path("search_orders")) in datasets["extract_tiktok"]
    assert ("outputs", "orderops-warehouse", "stg_tiktok_orders") in datasets["extract_tiktok"]
    assert ("outputs", "https://open-api.tiktokglobalshop.com", api_path("mark_package_shipped")) in datasets[
        "post_tracking"
    ]
    assert ("outputs", "orderops-warehouse", "decisions") in datasets["join_and_decide"]
    for task in (
        "prepare_run",
        "extract_shopify",
        "extract_amazon",
        "extract_shipbob",
        "validate_staged",
        "summarize_run",
    ):
        assert datasets[task], f"{task} emitted no datasets"
