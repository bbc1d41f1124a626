"""
### orderops SLA pipeline

Every 30 minutes, for one TikTok shop: extract orders from TikTok Shop, Shopify, Amazon MCF and
ShipBob into staging tables, validate each batch (Great Expectations), join them on order ids,
decide per order (rules T1 T2 N1 E1 C1-C4), then post tracking, add notes, run the cancellation
saga, reject or escalate. Every side effect goes through the action ledger with an idempotency
key, so reruns and backfills never repeat one.

Params (declared once, in include/run/runconfig.py `SETTINGS`): `sla_horizon_hours` (near-SLA
horizon), `dry_run` (decide only, no platform writes), `policy` (overrides; docs: Params and
policy), `window_start`/`window_end` (an explicit window for a manual run). `shop` is fixed: each shop has its own DAG and connections (the shops file), and no
param picks other connections.

Trace one order: `python -m include.cli trace <tiktok_order_id>`.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import (
    AsyncCallback, DeadlineAlert, DeadlineReference, Param,
    TriggerRule, dag, task,
)

from include.airflow.lineage import assets, endpoints, tables as warehouse_tables
from include.run.runconfig import SETTINGS
from include.run.shops import Shop, load_shops, minutes_setting, schedule_for, task_timeout
from include.run.steps import BY_NAME, STEPS

ASSETS = assets()
RUN_SUMMARY, DECISIONS, LEDGER = ASSETS["run_summary"], ASSETS["decisions"], ASSETS["ledger"]
STAGING = ("stg_tiktok_orders", "stg_tiktok_cancellations", "stg_shopify_orders", "stg_amazon_fulfillment_orders",
           "stg_shipbob_orders")


def on_task_failure(context):
    from include.airflow.glue import on_task_failure as alert

    alert(context)


def run_deadline(shop: Shop):
    """Alert when a run is not finished N minutes after it was queued (ORDEROPS_RUN_DEADLINE_MINUTES, 0 = off)."""
    minutes = minutes_setting("ORDEROPS_RUN_DEADLINE_MINUTES", 25)
    if minutes <= 0:
        return None
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=minutes),
                         callback=AsyncCallback("orderops_callbacks.run_deadline_missed",
                                                kwargs={"detail": f"{shop.dag_id} run not finished {minutes:g} min after queueing",
                                                        "warehouse_conn": shop.connections.warehouse}))


def build(shop: Shop):
    """One DAG per shop: its own id, schedule, connections and policy; nothing shared but the code."""

    def tables(*names: str) -> list:   # lineage datasets of this shop's warehouse
        return warehouse_tables(*names, conn_id=shop.connections.warehouse)

    @dag(
        dag_id=shop.dag_id,
        schedule=schedule_for(shop),
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        doc_md=__doc__,
        tags=["orderops"],
        default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30), "on_failure_callback": on_task_failure,
                      "execution_timeout": task_timeout()},
        deadline=run_deadline(shop),
        params={s.name: Param(shop.param_defaults().get(s.name, s.default), description=s.description, **s.schema)
                for s in SETTINGS},
    )
    def orderops_sla():
        @task(outlets=tables("runs"))
        def prepare_run(**context) -> dict:
            """Validate params, policy and connections, derive the window, create or upgrade the warehouse schema."""
            from include.airflow.glue import checked_settings, task_warehouse
            from include.run.pipeline import prepare_run as prepare

            settings = checked_settings(context, shop)   # a bad setting fails here, without retries
            wh = task_warehouse(context, settings.connections.warehouse)
            try:
                if settings.event_driven and shop.events is not None:
                    from include.events.platform_events import EventInbox, wait_for_burst

                    wait_for_burst(EventInbox(wh), shop.name, shop.events.debounce_seconds)
                return prepare(settings, wh).to_xcom()
            finally:
                wh.dispose()

        @task(pool="tiktok_api", inlets=endpoints("tiktok_orders", "tiktok_cancellations"),
              outlets=tables("stg_tiktok_orders", "stg_tiktok_cancellations", "quarantine"))
        def extract_tiktok(**context) -> dict:
            """TikTok orders and cancellation requests changed since the cursors (a sweep: all in play)."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import extract_tiktok as run

            with task_resources(context) as (s, platforms, wh, _):
                return run(s, platforms, wh)

        @task(pool="shopify_api", inlets=endpoints("shopify_orders"), outlets=tables("stg_shopify_orders", "quarantine"))
        def extract_shopify(tiktok: dict, **context) -> dict:
            """Shopify orders updated since the cursor (a sweep: created since the oldest TikTok order in play)."""
            from datetime import datetime

            from include.airflow.glue import task_resources
            from include.run.pipeline import extract_shopify as run

            with task_resources(context) as (s, platforms, wh, _):
                return run(s, platforms, wh, datetime.fromisoformat(tiktok["since"]))

        @task(pool="amazon_api", inlets=endpoints("amazon_orders", "amazon_shipments_report"),
              outlets=tables("stg_amazon_fulfillment_orders", "quarantine"))
        def extract_amazon(tiktok: dict, **context) -> dict:
            """Amazon MCF orders (listing) and tracking (fulfilled-shipments report)."""
            from datetime import datetime

            from include.airflow.glue import task_resources
            from include.run.pipeline import extract_amazon as run

            with task_resources(context) as (s, platforms, wh, _):
                if "amazon_mcf" not in s.fulfillers:
                    return {"step": "extract_amazon", "skipped": "not configured"}
                return run(s, platforms, wh, datetime.fromisoformat(tiktok["since"]))

        @task(pool="shipbob_api", inlets=endpoints("shipbob_orders"), outlets=tables("stg_shipbob_orders", "quarantine"))
        def extract_shipbob(tiktok: dict, **context) -> dict:
            """ShipBob orders with their shipments and tracking."""
            from datetime import datetime

            from include.airflow.glue import task_resources
            from include.run.pipeline import extract_shipbob as run

            with task_resources(context) as (s, platforms, wh, _):
                if "shipbob" not in s.fulfillers:
                    return {"step": "extract_shipbob", "skipped": "not configured"}
                return run(s, platforms, wh, datetime.fromisoformat(tiktok["since"]))

        @task(inlets=tables(*STAGING), outlets=tables("validation_results"))
        def validate_staged(**context) -> list:
            """Great Expectations on each staged batch; failures block dependent actions, not the run."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import validate_staged as run

            with task_resources(context) as (s, _, wh, _ctx):
                return run(s, wh)

        @task(pool="tiktok_api", inlets=[*tables(*STAGING, "validation_results"), *endpoints("tiktok_providers")],
              outlets=[DECISIONS, *tables("order_links", "decisions", "action_ledger")])
        def join_and_decide(**context) -> dict:
            """Join the platforms on order ids, decide per order, record pending actions in the ledger."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import join_and_decide as run

            with task_resources(context) as (s, platforms, wh, _):
                plan = run(s, platforms, wh)
            return plan

        # Airflow maps a task only over another task's return value: one small task per action group
        # hands that group's chunks of the plan to the group's mapped task
        @task
        def chunks_for(plan: dict, group: str) -> list:
            """The plan's chunks of one action group, for mapping the act tasks over."""
            return plan["chunks"][group]

        @task(pool="tiktok_api", inlets=tables("action_ledger"), outlets=[LEDGER, *endpoints("tiktok_packages")])
        def post_tracking(keys: list, **context) -> list:
            """Mark packages as shipped on TikTok with the fulfiller's tracking (T1, C3)."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import act

            with task_resources(context) as (s, platforms, wh, ctx):
                return act(s, platforms, wh, ctx, keys)

        @task(pool="shopify_api", inlets=tables("action_ledger"), outlets=[LEDGER, *endpoints("shopify_order_update")])
        def add_notes(keys: list, **context) -> list:
            """Note "Shipping, no tracking ID yet" on the Shopify order (N1)."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import act

            with task_resources(context) as (s, platforms, wh, ctx):
                return act(s, platforms, wh, ctx, keys)

        @task(pool="tiktok_api", inlets=tables("action_ledger"), outlets=[LEDGER, *endpoints("tiktok_reject")])
        def reject_cancellations(keys: list, **context) -> list:
            """Reject buyer cancellations of orders already packed or shipped (C3)."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import act

            with task_resources(context) as (s, platforms, wh, ctx):
                return act(s, platforms, wh, ctx, keys)

        @task(inlets=tables("action_ledger"), outlets=[LEDGER, *tables("action_ledger")])
        def record_escalations(keys: list, **context) -> list:
            """Record orders a person must look at, with the reason (E1, T2, C3/C4 by policy)."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import act

            with task_resources(context) as (s, platforms, wh, ctx):
                return act(s, platforms, wh, ctx, keys)

        @task(pool="fulfiller_api", inlets=tables("action_ledger"),
              outlets=[LEDGER, *endpoints("amazon_cancel", "shipbob_cancel")])
        def cancel_at_fulfiller(sagas: list, **context) -> list:
            """Cancellation saga, step 1: cancel the fulfillment order (C1)."""
            from include.airflow.glue import task_resources
            from include.act.saga import cancel_at_fulfiller as run

            with task_resources(context) as (s, platforms, wh, ctx):
                return run(s, platforms, wh, ctx, sagas)

        # one read per saga, never a wait: a cancel that does not show yet is read again by the next
        # run (its decision asks again), so a slow fulfiller holds no other saga and no later run
        @task(pool="fulfiller_api", inlets=endpoints("amazon_orders", "shipbob_orders"), outlets=tables("action_ledger"))
        def verify_fulfiller_cancel(sagas: list, **context) -> dict:
            """Cancellation saga, step 2: does the fulfiller show the order cancelled (C4 after the timeout)?"""
            from include.airflow.glue import task_resources
            from include.act.saga import verify_cancellations

            with task_resources(context) as (s, platforms, wh, ctx):
                return verify_cancellations(s, platforms, wh, ctx, sagas)

        @task(pool="shopify_api", inlets=tables("action_ledger"),
              outlets=[LEDGER, *endpoints("shopify_order_cancel", "tiktok_approve")])
        def refund_and_approve(sagas: list, **context) -> list:
            """Cancellation saga, step 3: approve on TikTok and cancel and refund in Shopify (policy's sequence)."""
            from include.airflow.glue import task_resources
            from include.act.saga import refund_and_approve as run

            with task_resources(context) as (s, platforms, wh, ctx):
                return run(s, platforms, wh, ctx, sagas)

        @task(trigger_rule=TriggerRule.ALL_DONE, inlets=tables("action_ledger", "decisions", "api_calls", *STAGING),
              outlets=[RUN_SUMMARY, *tables("runs")])
        def summarize_run(**context) -> dict:
            """Orders seen, actions by kind and outcome, escalations, validation, API calls; log as a table."""
            from include.airflow.glue import task_resources
            from include.run.pipeline import summarize_run as run
            from include.run.pipeline import summary_table

            with task_resources(context) as (s, _, wh, _ctx):
                summary = run(s, wh)
            print(summary_table(summary))
            context["outlet_events"][RUN_SUMMARY].extra = {k: summary[k] for k in
                                                           ("shop", "run_id", "state", "decisions", "actions", "api")}
            return summary

        # Data flows as arguments; the order comes from the one list of steps (include/run/steps.py). The
        # run's settings are not an argument: each task reads prepare_run's result itself, so the
        # graph shows the data flow instead of an edge from prepare_run into every task.
        tiktok = extract_tiktok()
        plan = join_and_decide()

        def chunks(group: str):
            return chunks_for.override(task_id=f"plan_{group}")(plan, group)

        sagas = chunks("cancellations")
        made = {
            "prepare_run": prepare_run(), "extract_tiktok": tiktok,
            "extract_shopify": extract_shopify(tiktok), "extract_amazon": extract_amazon(tiktok),
            "extract_shipbob": extract_shipbob(tiktok),
            "validate_staged": validate_staged(),
            "join_and_decide": plan,
            "post_tracking": post_tracking.expand(keys=chunks("tracking")),
            "add_notes": add_notes.expand(keys=chunks("notes")),
            "reject_cancellations": reject_cancellations.expand(keys=chunks("rejections")),
            "record_escalations": record_escalations.expand(keys=chunks("escalations")),
            "cancel_at_fulfiller": cancel_at_fulfiller.expand(sagas=sagas),
            "verify_fulfiller_cancel": verify_fulfiller_cancel.expand(sagas=sagas),
            "refund_and_approve": refund_and_approve.expand(sagas=sagas),
            "summarize_run": summarize_run(),
        }
        for step in STEPS:
            for upstream in step.after:
                made[upstream] >> made[step.name]
        summary = made["summarize_run"]
        acted = [made[name] for name in BY_NAME["summarize_run"].after]

        @task(trigger_rule=TriggerRule.NONE_FAILED)
        def check_run(summary: dict) -> None:
            """Second leaf: upstream_failed (so the run fails) when any step failed, as the summary always runs."""
            if summary.get("state") == "attention":
                print("run needs attention: see the summary's failed actions or validation failures")

        # a second leaf: the run fails when a step failed, even though the summary ran
        acted >> check_run(summary)


    return orderops_sla()


for _shop in load_shops():
    globals()[_shop.dag_id] = build(_shop)
