"""The one table of a run's steps: the DAG's tasks, their order, what each calls and touches.

The DAG (dags/orderops_sla.py) makes a task of each step through one factory
(include/airflow/tasks.py); `pipeline.run_all` runs the same steps in the same order in one process.
Each step names the function it calls ("module:function") and the arguments it takes, by name:
`settings`, `platforms`, `wh`, `ctx` (the run's), `since` (the oldest order in play, from
extract_tiktok's result) and `chunk` (for a step with `each`: one chunk of that action group of
join_and_decide's result, one task instance per chunk). A step with `fulfiller` runs only when that
fulfiller is configured. `reads` and `writes` are its lineage: platform endpoints
(include.airflow.lineage.ENDPOINTS) and warehouse tables. Kept free of heavy imports: the DAG file
reads it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

BATCHES = ("tiktok_orders", "tiktok_cancellations", "shopify_orders", "amazon_fulfillment_orders", "shipbob_orders")
STAGING = (
    "stg_tiktok_orders",
    "stg_tiktok_cancellations",
    "stg_shopify_orders",
    "stg_amazon_fulfillment_orders",
    "stg_shipbob_orders",
)
PIPELINE, SAGA = "include.run.pipeline", "include.act.saga"
LISTINGS, AMAZON = "include.extract.listings", "include.extract.amazon"
PLAN = "join_and_decide"  # its result holds each action group's chunks (the `each` of the acting steps)


@dataclass(frozen=True)
class Step:
    name: str  # the DAG's task id
    call: str  # "module:function"
    args: tuple[str, ...]  # what the function takes, by name (see the module's doc)
    doc: str  # the task's docstring
    after: tuple[str, ...] = ()  # steps that must have ended first
    each: str | None = None  # an action group of the plan: one run per chunk
    fulfiller: str | None = None  # runs only when this fulfiller is configured
    pool: str | None = None  # the Airflow pool of the platform it calls
    reads: tuple[str, ...] = ()  # lineage inlets
    writes: tuple[str, ...] = ()  # lineage outlets
    asset: str | None = None  # the Airflow Asset it updates for downstream DAGs (lineage.assets)

    @property
    def function(self):
        """The step's function, imported when the step runs (not when the DAG file is parsed)."""
        from importlib import import_module

        module, _, name = self.call.partition(":")
        return getattr(import_module(module), name)


EXTRACTS = ("extract_shopify", "extract_amazon", "extract_shipbob")
ACTS = ("post_tracking", "add_notes", "reject_cancellations", "record_escalations")
RUN = ("settings", "platforms", "wh")
ACT = ("settings", "platforms", "wh", "ctx", "chunk")
LEDGER = ("action_ledger",)

STEPS: tuple[Step, ...] = (
    Step(
        "prepare_run",
        f"{PIPELINE}:prepare_run",
        ("settings", "wh"),
        "Validate params, policy and connections, derive the window, create or upgrade the warehouse schema.",
        writes=("runs",),
    ),
    Step(
        "extract_tiktok",
        f"{LISTINGS}:extract_tiktok",
        RUN,
        "TikTok orders and cancellation requests changed since the cursors (a sweep: all in play).",
        ("prepare_run",),
        pool="tiktok_api",
        reads=("tiktok_orders", "tiktok_cancellations"),
        writes=("stg_tiktok_orders", "stg_tiktok_cancellations", "quarantine"),
    ),
    Step(
        "extract_shopify",
        f"{LISTINGS}:extract_shopify",
        (*RUN, "since"),
        "Shopify orders updated since the cursor (a sweep: created since the oldest TikTok order in play).",
        ("extract_tiktok",),
        pool="shopify_api",
        reads=("shopify_orders",),
        writes=("stg_shopify_orders", "quarantine"),
    ),
    Step(
        "extract_amazon",
        f"{AMAZON}:extract_amazon",
        (*RUN, "since"),
        "Amazon MCF orders (listing) and tracking (fulfilled-shipments report).",
        ("extract_tiktok",),
        fulfiller="amazon_mcf",
        pool="amazon_api",
        reads=("amazon_orders", "amazon_shipments_report"),
        writes=("stg_amazon_fulfillment_orders", "quarantine"),
    ),
    Step(
        "extract_shipbob",
        f"{LISTINGS}:extract_shipbob",
        (*RUN, "since"),
        "ShipBob orders with their shipments and tracking.",
        ("extract_tiktok",),
        fulfiller="shipbob",
        pool="shipbob_api",
        reads=("shipbob_orders",),
        writes=("stg_shipbob_orders", "quarantine"),
    ),
    # one task for the five batches: Great Expectations takes seconds to import in each task process
    Step(
        "validate_staged",
        f"{PIPELINE}:validate_staged",
        ("settings", "wh"),
        "Great Expectations on each staged batch; failures block dependent actions, not the run.",
        EXTRACTS,
        reads=STAGING,
        writes=("validation_results",),
    ),
    Step(
        "join_and_decide",
        f"{PIPELINE}:join_and_decide",
        RUN,
        "Join the platforms on order ids, decide per order, record pending actions in the ledger.",
        ("validate_staged",),
        pool="tiktok_api",
        reads=(*STAGING, "validation_results", "tiktok_providers"),
        writes=("order_links", "decisions", "action_ledger"),
        asset="decisions",
    ),
    Step(
        "post_tracking",
        f"{PIPELINE}:act",
        ACT,
        "Mark packages as shipped on TikTok with the fulfiller's tracking (T1, C3).",
        ("join_and_decide",),
        each="tracking",
        pool="tiktok_api",
        reads=LEDGER,
        writes=("tiktok_packages",),
        asset="ledger",
    ),
    Step(
        "add_notes",
        f"{PIPELINE}:act",
        ACT,
        'Note "Shipping, no tracking ID yet" on the Shopify order (N1).',
        ("join_and_decide",),
        each="notes",
        pool="shopify_api",
        reads=LEDGER,
        writes=("shopify_order_update",),
        asset="ledger",
    ),
    Step(
        "reject_cancellations",
        f"{PIPELINE}:act",
        ACT,
        "Reject buyer cancellations of orders already packed or shipped (C3).",
        ("join_and_decide",),
        each="rejections",
        pool="tiktok_api",
        reads=LEDGER,
        writes=("tiktok_reject",),
        asset="ledger",
    ),
    Step(
        "record_escalations",
        f"{PIPELINE}:act",
        ACT,
        "Record orders a person must look at, with the reason (E1, T2, C3/C4 by policy).",
        ("join_and_decide",),
        each="escalations",
        reads=LEDGER,
        writes=LEDGER,
        asset="ledger",
    ),
    # the cancellation saga, one chain per chunk; its check reads once and never waits: a cancel that
    # does not show yet is read again by the next run, so a slow fulfiller holds no other saga
    Step(
        "cancel_at_fulfiller",
        f"{SAGA}:cancel_at_fulfiller",
        ACT,
        "Cancellation saga, step 1: cancel the fulfillment order (C1).",
        ("join_and_decide",),
        each="cancellations",
        pool="fulfiller_api",
        reads=LEDGER,
        writes=("amazon_cancel", "shipbob_cancel"),
        asset="ledger",
    ),
    Step(
        "verify_fulfiller_cancel",
        f"{SAGA}:verify_cancellations",
        ACT,
        "Cancellation saga, step 2: does the fulfiller show the order cancelled (C4 after the timeout)?",
        ("cancel_at_fulfiller",),
        each="cancellations",
        pool="fulfiller_api",
        reads=("amazon_orders", "shipbob_orders"),
        writes=LEDGER,
    ),
    Step(
        "refund_and_approve",
        f"{SAGA}:refund_and_approve",
        ACT,
        "Cancellation saga, step 3: approve on TikTok and cancel and refund in Shopify (the policy's sequence).",
        ("verify_fulfiller_cancel",),
        each="cancellations",
        pool="shopify_api",
        reads=LEDGER,
        writes=("shopify_order_cancel", "tiktok_approve"),
        asset="ledger",
    ),
    Step(
        "summarize_run",
        f"{PIPELINE}:summarize_run",
        ("settings", "wh"),
        "Orders seen, actions by kind and outcome, escalations, validation, API calls; logged as a table. "
        "Then the shop's SLA report of the current day, when due (include/report/current.py).",
        (*ACTS, "refund_and_approve"),
        reads=("action_ledger", "decisions", "api_calls", "order_links", *STAGING),
        writes=("runs", "sla_daily"),
        asset="run_summary",
    ),
)
BY_NAME = {step.name: step for step in STEPS}
GROUPS = tuple(dict.fromkeys(step.each for step in STEPS if step.each))

# Airflow pools the tasks draw from: how many tasks call a platform at once (pacing is the quotas' job).
POOLS = {"tiktok_api": 4, "shopify_api": 2, "amazon_api": 1, "shipbob_api": 1, "fulfiller_api": 2}


def since_of(tiktok: dict) -> datetime:
    """The oldest TikTok order in play, from extract_tiktok's result: where the other listings start."""
    return datetime.fromisoformat(tiktok["since"])


def arguments(step: Step, values: dict[str, Any]) -> list[Any]:
    """The step's arguments, in its order, from the values of the run (see the module's doc)."""
    return [values[name] for name in step.args]


def pools_file(shops: int = 1) -> dict:
    """The pools for a deployment serving `shops` shops (they share them), in the form
    `airflow pools import` reads."""
    return {
        name: {
            "slots": slots * shops,
            "description": f"orderops: calls to {name.split('_')[0]}",
            "include_deferred": False,
        }
        for name, slots in POOLS.items()
    }


def waves(steps: tuple[Step, ...] = STEPS) -> list[list[Step]]:
    """The steps in order, grouped: each group's steps wait only on earlier groups, so a group's
    steps may run side by side."""
    done: set[str] = set()
    left = list(steps)
    out: list[list[Step]] = []
    while left:
        ready = [s for s in left if set(s.after) <= done]
        if not ready:
            raise ValueError(f"steps wait on each other or on no step: {[s.name for s in left]}")
        out.append(ready)
        done |= {s.name for s in ready}
        left = [s for s in left if s.name not in done]
    return out
