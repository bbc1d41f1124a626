"""Reports per shop, when due, with a real scheduler: three shops' pipeline runs each build their own
shop's report of the day at their end and start no report DAG run (it was one run of 1 + shops task
instances after every pipeline run of every shop); the daily report DAG maps one task per shop.
"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from include.run.shops import default_connections
from include.store.warehouse import Warehouse, sla_daily
from sandbox.connections import connection_env
from sandbox.core import Settings
from sandbox.generate import generate
from tests.scheduler.stack import airflow_stack, runs

pytestmark = pytest.mark.slow

SHOPS = ("shop-a", "shop-b", "shop-c")
REPORT = "orderops_sla_report"


def finished(api: str, dag_id: str, timeout: float) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = runs(api, dag_id)
        if found and all(r["state"] in ("success", "failed") for r in found):
            return found
        time.sleep(3)
    raise AssertionError(f"{dag_id}: runs not finished in {timeout} s: {runs(api, dag_id)}")


def task_instances(api: str, dag_id: str, run_id: str) -> list[dict]:
    answer = httpx.get(
        f"{api}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 500}, timeout=60
    ).json()
    return answer["task_instances"]


def reported(tmp_path, day) -> set[str]:
    """The shops whose report of `day` is in sla_daily and on disk."""
    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with wh.engine.connect() as conn:
        shops = set(
            conn.execute(
                sa.select(sla_daily.c.shop).where(sla_daily.c.day == day, sla_daily.c.fulfiller == "all")
            ).scalars()
        )
    wh.dispose()
    return {s for s in shops if (tmp_path / "reports" / s / f"{day:%Y-%m-%d}" / "report.html").exists()}


@pytest.mark.timeout(1800)
def test_pipeline_runs_report_their_own_shop_and_start_no_report_run(run_sandbox, tmp_path):
    server = run_sandbox(generate(20, seed=7), settings=Settings(clock_rate=0))
    day = server.sandbox.clock.now().date()
    # the shops share the one sandbox under their own connection ids, and only decide (dry run)
    env: dict[str, str] = {}
    for shop in SHOPS:
        ids = {k: v for k, v in default_connections(shop).__dict__.items() if k != "warehouse"}
        env.update(connection_env(server.urls, ids=ids))
    shops = [{"name": s, "schedule": "0 0 1 1 *", "dry_run": True} for s in SHOPS]
    dag_ids = [f"orderops_sla_{s.replace('-', '_')}" for s in SHOPS]

    def unpause(cli) -> None:
        for dag_id in (*dag_ids, REPORT):
            cli("dags", "unpause", dag_id)

    with airflow_stack(tmp_path, server, shops, extra_env=env, before_start=unpause) as stack:
        api, cli = stack["api"], stack["cli"]
        for dag_id in dag_ids:
            cli("dags", "trigger", dag_id)
        pipeline = [run for dag_id in dag_ids for run in finished(api, dag_id, timeout=1200)]
        assert [r["state"] for r in pipeline] == ["success"] * 3, (stack["logs"] / "scheduler.log").read_text()[-3000:]

        # each run announced its summary (the asset the report DAG used to follow) ...
        (summary_asset,) = httpx.get(
            f"{api}/api/v2/assets", params={"name_pattern": "orderops_run_summary"}, timeout=60
        ).json()["assets"]
        events = httpx.get(f"{api}/api/v2/assets/events", params={"asset_id": summary_asset["id"]}, timeout=60).json()
        assert events["total_entries"] == 3
        # ... and nothing follows it: no report run made or queued, so no report task instance per
        # pipeline run (the report DAG's one run so far is its latest midnight's, made when unpaused)
        assert summary_asset["scheduled_dags"] == []
        queued = httpx.get(f"{api}/api/v2/dags/{REPORT}/assets/queuedEvents", timeout=60).json()
        assert queued["total_entries"] == 0
        assert {r["run_type"] for r in runs(api, REPORT)} <= {"scheduled"}

        # every shop's report of the day, built at the end of its own run
        assert reported(tmp_path, day) == set(SHOPS)

        # the midnight report of the day: one run, the shops listed, one mapped task per shop
        cli("dags", "trigger", REPORT, "--logical-date", f"{day + timedelta(days=1):%Y-%m-%d}T00:00:00+00:00")
        (daily,) = [r for r in finished(api, REPORT, timeout=600) if r["run_type"] == "manual"]
        assert daily["state"] == "success"
        tis = task_instances(api, REPORT, daily["dag_run_id"])
        per_run = len([t for r in pipeline for t in task_instances(api, r["dag_id"], r["dag_run_id"])]) / 3
        print(
            f"report DAG task instances: 0 per pipeline run (was 1 + {len(SHOPS)}), {len(tis)} per day; "
            f"pipeline run {per_run:.0f} task instances, the report of the day inside summarize_run"
        )
        assert sorted((t["task_id"], t["map_index"]) for t in tis) == [
            ("build_reports", 0),
            ("build_reports", 1),
            ("build_reports", 2),
            ("list_shops", -1),
        ]
