"""The current day's report at the end of a pipeline run: built when the run changed the day's inputs
and the last build is old enough, on SQLite and PostgreSQL; and the report DAG no longer runs after
every pipeline run (daily only)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from include.report.current import last_built, report_due, report_if_due
from include.report.reports import report_days
from include.store.warehouse import Warehouse, sla_daily, stg_tiktok_orders
from tests.conftest import REPO
from tests.unit.test_reports import tiktok

QUIET = {"orders_seen": {"tiktok_orders": 0, "shopify_orders": 0}, "actions": {}}
STAGED = {"orders_seen": {"tiktok_orders": 3, "shopify_orders": 0}, "actions": {}}
ACTED = {"orders_seen": {"tiktok_orders": 0}, "actions": {"post_tracking:succeeded": 1}}


def test_due_only_after_changes_and_at_most_every_n_minutes():
    wall = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    assert report_due(QUIET, None, 30, wall) is None  # nothing staged or done: the figures did not move
    assert report_due(STAGED, None, 30, wall) == "first build of the day"
    assert report_due(ACTED, wall - timedelta(minutes=29), 30, wall) is None
    assert report_due(ACTED, wall - timedelta(minutes=31), 30, wall) == "last built 31 min ago"
    assert report_due(STAGED, wall, 0, wall) == "last built 0 min ago"  # 0: after every run that changed something


def test_a_run_builds_the_day_then_waits_out_the_interval(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("ORDEROPS_REPORTS_DIR", str(tmp_path / "reports"))
    wh = Warehouse(warehouse_url)
    wh.migrate()
    now = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
    row = {**tiktok("o1", "2026-11-20T10:00"), "shop": "s"}
    with wh.engine.begin() as conn:
        conn.execute(stg_tiktok_orders.insert(), [row])
    try:
        assert report_if_due(wh, "s", now, QUIET, 30) == {"day": "2026-11-20", "built": False}
        assert last_built(wh, "s", date(2026, 11, 20)) is None
        first = report_if_due(wh, "s", now, STAGED, 30)
        assert first["built"] and first["reason"] == "first build of the day"
        assert (tmp_path / "reports" / "s" / "2026-11-20" / "report.html").exists()
        built = last_built(wh, "s", date(2026, 11, 20))
        assert built is not None and abs(datetime.now(timezone.utc) - built) < timedelta(minutes=5)
        with wh.engine.connect() as conn:
            due = conn.execute(
                sa.select(sla_daily.c.orders_due).where(sla_daily.c.shop == "s", sla_daily.c.fulfiller == "all")
            ).scalar()
        assert due == 1
        assert report_if_due(wh, "s", now, ACTED, 30)["built"] is False  # built a moment ago
        assert report_if_due(wh, "s", now, ACTED, 0)["built"] is True
        assert report_if_due(wh, "other", now, STAGED, 30)["built"] is True  # each shop's own
    finally:
        wh.dispose()


def test_the_report_dag_runs_daily_not_after_every_pipeline_run(airflow_db):
    """No asset starts the report DAG (it made 1 + shops task instances after every pipeline run):
    its cron alone, at midnight, one mapped task per shop."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import CronDataIntervalTimetable

    dag = DagBag(dag_folder=str(REPO / "dags" / "orderops_sla_report.py")).dags["orderops_sla_report"]
    assert type(dag.timetable) is CronDataIntervalTimetable and dag.timetable.expression == "0 0 * * *"
    assert {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} == {
        "list_shops": [],
        "build_reports": ["list_shops"],
    }
    # a person (or the demo) may ask for one day's report by name
    assert dag.params["day"] is None and "YYYY-MM-DD" in dag.params.get_param("day").description


def test_a_report_run_builds_the_day_it_is_asked_for_else_its_interval_else_today():
    # the sandbox's day, far from the wall clock: asked for by name, never through the run's own dates
    sandbox_now = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
    midnight = datetime(2031, 3, 5, tzinfo=timezone.utc)
    assert report_days("2026-11-19", midnight - timedelta(days=1), midnight, sandbox_now) == [date(2026, 11, 19)]
    assert report_days(None, midnight - timedelta(days=1), midnight, sandbox_now) == [date(2031, 3, 4)]
    assert report_days(None, None, None, sandbox_now) == [date(2026, 11, 20)]
    with pytest.raises(ValueError, match="param day: '20/11/2026' is not a day"):
        report_days("20/11/2026", None, None, sandbox_now)
