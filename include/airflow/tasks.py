"""One task factory for the steps of include/run/steps.py: each task's pool, lineage, docstring and
body come from its step. Every task takes the run's settings (prepare_run's result) as an argument,
so the graph shows where they come from."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import TriggerRule, task

from include.airflow.lineage import ENDPOINTS, assets, endpoints, tables
from include.run.steps import BY_NAME, STEPS, Step

log = logging.getLogger(__name__)
ASSETS = assets()


def lineage(names: tuple[str, ...], conn_id: str) -> list:
    """Platform endpoints and this shop's warehouse tables, by name."""
    return [
        *endpoints(*(n for n in names if n in ENDPOINTS)),
        *tables(*(n for n in names if n not in ENDPOINTS), conn_id=conn_id),
    ]


def _every(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def events_options(shop) -> dict[str, Any]:
    """The event task's lineage: every step's, as it runs them all."""
    conn_id = shop.connections.warehouse
    reads = _every([n for step in STEPS for n in step.reads])
    writes = _every([n for step in STEPS for n in step.writes])
    return {
        "task_id": "handle_events",
        "inlets": lineage(reads, conn_id),
        "outlets": [ASSETS[a] for a in _every([s.asset for s in STEPS if s.asset])] + lineage(writes, conn_id),
    }


def options(step: Step, shop) -> dict[str, Any]:
    found: dict[str, Any] = {
        "task_id": step.name,
        "inlets": lineage(step.reads, shop.connections.warehouse),
        "outlets": [*([ASSETS[step.asset]] if step.asset else []), *lineage(step.writes, shop.connections.warehouse)],
    }
    if step.pool:
        found["pool"] = step.pool
    if step.name == "summarize_run":
        found["trigger_rule"] = TriggerRule.ALL_DONE  # the summary of a run whose steps failed too
    return found


# Airflow maps a task only over another task's whole return value: over one key of it, it refuses
# ("cannot map over XCom with custom key"), so one small task per action group hands that group's
# chunks of the plan to the group's mapped task
@task
def chunks_for(plan: dict, group: str) -> list:
    """The plan's chunks of one action group, for mapping the group's task over."""
    return plan[group]


def prepare_run_task(shop):
    def prepare_run(**context) -> dict:
        from include.airflow.glue import prepare

        return prepare(context, shop)

    prepare_run.__doc__ = BY_NAME["prepare_run"].doc
    return task(**options(BY_NAME["prepare_run"], shop))(prepare_run)


def step_task(step: Step, shop):
    """The task of `step`: `settings` always; `tiktok` (extract_tiktok's result) for a step that
    lists from it; `chunk` for a step mapped over an action group."""

    def run(settings: dict | None, tiktok: dict | None = None, chunk: Any = None, **context) -> Any:
        from include.airflow import glue

        if step.name != "summarize_run":
            return glue.run_step(step.name, settings, context, tiktok=tiktok, chunk=chunk)
        from include.run.pipeline import summary_table

        result = glue.summarize(context, settings, shop)
        log.info("%s", summary_table(result))
        context["outlet_events"][ASSETS["run_summary"]].extra = {
            k: result[k] for k in ("shop", "run_id", "state", "decisions", "decisions_recorded", "actions", "api")
        }
        return result

    run.__doc__ = step.doc
    return task(**options(step, shop))(run)


def events_task(shop):
    def handle_events(**context) -> dict:
        """Take the shop's waiting platform events and run the pipeline's steps for them in this one
        task: list what they name, validate, decide, act through the ledger, summarize."""
        from include.airflow.glue import handle_events as run
        from include.run.pipeline import summary_table

        result = run(context, shop)
        if "run_id" in result:
            log.info("%s", summary_table(result))
            context["outlet_events"][ASSETS["run_summary"]].extra = {
                k: result[k] for k in ("shop", "run_id", "state", "decisions", "decisions_recorded", "actions", "api")
            }
        return result

    return task(**events_options(shop))(handle_events)
