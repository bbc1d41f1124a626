"""The pipeline DAG of each shop, built from the one table of steps; the DAG files in dags/ only
call `shard_dags`.

Shops are spread over `SHARDS` DAG files by a stable hash of their DAG id, so a parse failure or a
timeout of one file costs the shops of that file, not all; an entry the shops file refuses costs
its own shop (`dags/orderops_shops_file.py` reports it as an import error). During a task, Airflow
names the DAG being run (its parsing context) and the file builds that one DAG only, so a task's
start-up does not grow with the number of shops (docs: Performance, "Parsing").

A shop that takes platform events has a second DAG in the same file, its event DAG: one task per
wake (`handle_events`) that runs the same steps in one process, started by the shop's event asset
(the burst waited out in the triggerer). The shop's lease (include/store/leases.py) keeps its two
DAGs' runs apart.
"""

from __future__ import annotations

import logging
import zlib
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TriggerRule, dag, get_parsing_context, task
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
from airflow.sdk.definitions.param import ParamsDict

from include.airflow.tasks import chunks_for, events_task, prepare_run_task, step_task
from include.run.runconfig import SETTINGS, RunConfigError
from include.run.shops import Shop, event_assets, minutes_setting, pipeline_dag_id, shops_file, task_timeout
from include.run.steps import BY_NAME, PLAN, STEPS

log = logging.getLogger(__name__)

# dags/orderops_sla_<n>.py for n below this; changing it moves shops between files (docs: Performance)
SHARDS = 8

DOC = """### orderops SLA pipeline

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


def shard_of(dag_id: str) -> int:
    """The DAG file of a shop's DAG: stable across processes and releases (not Python's hash)."""
    return zlib.crc32(dag_id.encode()) % SHARDS


def shard_dags(shard: int) -> dict[str, DAG]:
    """The DAGs of one DAG file: its shops' DAGs; during a task, only the DAG being run.

    A task of a shop whose entry the shops file now refuses fails with that entry's error (a later
    entry refused for repeating the name leaves the first one's DAG in place)."""
    running = get_parsing_context().dag_id
    if running is not None and shard_of(pipeline_dag_id(running)) != shard:
        return {}
    found = shops_file(dag_id=running)
    if running is not None and not found.shops and found.refused:
        raise RunConfigError("; ".join(found.refused))
    dags = {}
    for shop in found.shops:
        if shard_of(shop.dag_id) != shard:
            continue
        if running in (None, shop.dag_id):
            dags[shop.dag_id] = build(shop)
        if shop.events is not None and running in (None, shop.events_dag_id):
            dags[shop.events_dag_id] = build_events(shop)
    return dags


def raise_refused_shops() -> None:
    """The shops file's refused entries as one import error, each naming its shop and what was wrong
    (the other shops' DAGs load as usual)."""
    refused = shops_file().refused
    if refused:
        raise RunConfigError(
            f"the shops file refuses {len(refused)} shop(s), whose DAGs are not loaded: " + "; ".join(refused)
        )


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


def params_of(shop: Shop) -> ParamsDict:
    """The trigger form: every setting an operator sets, with its schema, the shop's own defaults
    where it has them (the test-only ones stay settable through a run's conf)."""
    defaults = shop.param_defaults()
    return ParamsDict(
        {
            s.name: Param(defaults.get(s.name, s.default), description=s.description, **s.schema)
            for s in SETTINGS
            if s.for_operators
        }
    )


START = pendulum.datetime(2026, 11, 1, tz="UTC")


def task_defaults() -> dict:
    return {
        "retries": 2,
        "retry_delay": pendulum.duration(seconds=30),
        "on_failure_callback": on_task_failure,
        "execution_timeout": task_timeout(),
    }


def build(shop: Shop) -> DAG:
    """One DAG per shop: its own id, schedule, connections and policy; nothing shared but the code."""

    @dag(
        dag_id=shop.dag_id,
        schedule=CronDataIntervalTimetable(shop.schedule, timezone="UTC"),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        doc_md=DOC,
        tags=["orderops"],
        default_args=task_defaults(),
        deadline=run_deadline(shop),
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

    built = orderops_sla()
    # declared once the tasks exist: a task takes a copy of its DAG's params when it is made, and
    # 21 schema-checked copies were most of a DAG's serialized size and parse time; a task reads the
    # DAG's params all the same (Airflow merges the DAG's, the task's and the run's conf)
    built.params = params_of(shop)
    return built


EVENTS_DOC = """### orderops event wakes

One run per burst of a shop's platform events (webhooks through the receiver's doorbell, Amazon's
notification queue): the trigger waits the burst out (`events.debounce_seconds`), then one task,
`handle_events`, takes the waiting events and runs the pipeline's steps in one process: lists the
platforms the events came from (or reads their orders by id), validates, decides and acts through
the same ledger. While the shop's pipeline run holds the shop, the task leaves the events to it and
that run rings again when done. Trace one order: `python -m include.cli trace <tiktok_order_id>`.
"""


def build_events(shop: Shop) -> DAG:
    """The shop's event DAG: one task per wake (docs: Platform events, Performance)."""

    @dag(
        dag_id=shop.events_dag_id,
        schedule=event_assets(shop),
        start_date=START,
        catchup=False,
        max_active_runs=1,  # a wake during a run queues one more run, which takes what came meanwhile
        doc_md=EVENTS_DOC,
        tags=["orderops", "events"],
        default_args=task_defaults(),
    )
    def orderops_events():
        events_task(shop)()

    built = orderops_events()
    built.params = params_of(shop)
    return built
