"""
### orderops SLA pipeline

Every 30 minutes, for one TikTok shop: extract orders from TikTok Shop, Shopify, Amazon MCF and
ShipBob into staging tables, validate each batch (Great Expectations), join them on order ids,
decide per order (rules T1 T2 N1 E1 C1-C4), then post tracking, add notes, run the cancellation
saga, reject or escalate. Every side effect goes through the action ledger with an idempotency
key, so reruns and backfills never repeat one.

Params (declared once, in include/run/runconfig.py `SETTINGS`): `sla_horizon_hours` (near-SLA
horizon), `dry_run` (decide only, no platform writes), `policy` (overrides; docs: Params and
policy), `window_start`/`window_end` (an explicit window for a manual run). `shop` is fixed: each
shop has its own DAG and connections (the shops file), and no param picks other connections.

Trace one order: `python -m include.cli trace <tiktok_order_id>`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import Param, TriggerRule, dag, task
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from include.airflow.tasks import chunks_for, prepare_run_task, step_task
from include.run.runconfig import SETTINGS
from include.run.shops import Shop, load_shops, minutes_setting, schedule_for, task_timeout
from include.run.steps import BY_NAME, PLAN, STEPS

log = logging.getLogger(__name__)


def on_task_failure(context):
    from include.airflow.glue import on_task_failure as alert

    alert(context)


def run_deadline(shop: Shop):
    """Alert when a run is not finished N minutes after it was queued (ORDEROPS_RUN_DEADLINE_MINUTES, 0 = off)."""
    minutes = minutes_setting("ORDEROPS_RUN_DEADLINE_MINUTES", 25)
    if minutes <= 0:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(
            "orderops_callbacks.run_deadline_missed",
            kwargs={
                "detail": f"{shop.dag_id} run not finished {minutes:g} min after queueing",
                "warehouse_conn": shop.connections.warehouse,
            },
        ),
    )


def build(shop: Shop):
    """One DAG per shop: its own id, schedule, connections and policy; nothing shared but the code."""

    @dag(
        dag_id=shop.dag_id,
        schedule=schedule_for(shop),
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["orderops"],
        default_args={
            "retries": 2,
            "retry_delay": pendulum.duration(seconds=30),
            "on_failure_callback": on_task_failure,
            "execution_timeout": task_timeout(),
        },
        deadline=run_deadline(shop),
        params={
            s.name: Param(shop.param_defaults().get(s.name, s.default), description=s.description, **s.schema)
            for s in SETTINGS
            if s.for_operators
        },
    )
    def orderops_sla():
        # the tasks come from the one table of steps (include/run/steps.py): settings, the listing's
        # start and each action group's chunks flow as arguments; the order is the table's
        settings = prepare_run_task(shop)()
        made, plans = {"prepare_run": settings}, {}
        for step in STEPS[1:]:
            make = step_task(step, shop)
            if step.each:
                if step.each not in plans:
                    plans[step.each] = chunks_for.override(task_id=f"plan_{step.each}")(made[PLAN], step.each)
                made[step.name] = make.partial(settings=settings).expand(chunk=plans[step.each])
            elif "since" in step.args:
                made[step.name] = make(settings, tiktok=made["extract_tiktok"])
            else:
                made[step.name] = make(settings)
        for step in STEPS:
            for upstream in step.after:
                made[upstream] >> made[step.name]

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def check_run(summary: dict) -> None:
            """Second leaf: upstream_failed (so the run fails) when any step failed, as the summary always runs."""
            if summary.get("state") == "attention":
                log.warning("run needs attention: see the summary's failed actions or validation failures")

        [made[name] for name in BY_NAME["summarize_run"].after] >> check_run(made["summarize_run"])

    return orderops_sla()


for _shop in load_shops():
    globals()[_shop.dag_id] = build(_shop)
