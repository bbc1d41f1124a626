"""
### orderops SLA breach report

Daily at midnight UTC, for the day that ended: per shop (one mapped task each), writes `sla_daily`
(orders due, on time, late, Late Dispatch Rate against TikTok's 4% line, past ship-by without
tracking, at risk of auto-cancellation, cancellation requests handled on time or late, hours from
fulfiller shipment to tracking; split by fulfiller and carrier) and a self-contained HTML report, a
CSV of breached orders and a 30-day trend under the reports folder (README "Reading the reports").
The current day's report is each shop's own: its pipeline run rebuilds it at its end when due
(run setting `report_every_minutes`), so this DAG runs once a day, not after every run of every shop.
"""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from include.airflow.lineage import assets, tables
from include.run.shops import REPORT_DAG_ID, task_timeout

SLA_REPORT = assets()["sla_daily"]
log = logging.getLogger(__name__)


@dag(
    dag_id=REPORT_DAG_ID,
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["orderops", "report"],
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="The day to build (YYYY-MM-DD, UTC). Empty: the run's data interval's days "
            "(a scheduled run: the day that ended).",
        )
    },
    default_args={"retries": 1, "retry_delay": pendulum.duration(seconds=30), "execution_timeout": task_timeout()},
)
def orderops_sla_report():
    @task
    def list_shops() -> list[dict]:
        """The shops to report on (the shops file's, but for the entries it refuses; or the default shop)."""
        from include.run.shops import shops_file

        return [{"name": s.name, "warehouse": s.connections.warehouse} for s in shops_file().shops]

    @task(
        inlets=tables("stg_tiktok_orders", "stg_tiktok_cancellations", "order_links", "action_ledger"),
        outlets=[SLA_REPORT, *tables("sla_daily")],
    )
    def build_reports(shop: dict, **context) -> list[dict]:
        """Build the day(s) of this run for one shop: the data interval's days, else today."""
        from include.airflow.glue import sandbox_now, task_warehouse
        from include.report.reports import build_day, report_days
        from include.store.warehouse import utcnow

        now = sandbox_now() or utcnow()
        days = report_days(
            context["params"].get("day"), context.get("data_interval_start"), context.get("data_interval_end"), now
        )
        wh = task_warehouse(context, shop["warehouse"])
        try:
            wh.migrate()
            reports = [build_day(wh, shop["name"], day, now=now) for day in days]
        finally:
            wh.dispose()
        for r in reports:
            total = r.rows[0]
            # through the task's logger: the UI's log view shows it with the task's other lines
            log.info(
                "%s %s: due %s, LDR %.2f%%%s, breaches %d -> %s",
                shop["name"],
                r.day,
                total["orders_due"],
                100 * total["late_dispatch_rate"],
                " OVER 4%" if total["ldr_over_line"] else "",
                len(r.breaches),
                r.html_path,
            )
        return [{"day": str(r.day), "html": str(r.html_path), "breaches": len(r.breaches)} for r in reports]

    build_reports.expand(shop=list_shops())


orderops_sla_report()
