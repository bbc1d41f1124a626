"""The one list of a run's steps: the DAG's tasks and their order, `run_all` and `make simulate`.

The DAG (dags/orderops_sla.py) makes a task of each step and wires it after the steps named in
`after`; `pipeline.run_all` runs the same steps in the same order in one process. A step with
`each` runs once per chunk of one of the plan's action groups.
A step with `fulfiller` runs only when that fulfiller is configured. Kept free of heavy imports:
the DAG file reads it at parse time.
"""
from __future__ import annotations

from dataclasses import dataclass

BATCHES = ("tiktok_orders", "tiktok_cancellations", "shopify_orders", "amazon_fulfillment_orders", "shipbob_orders")


@dataclass(frozen=True)
class Step:
    name: str                         # the DAG's task id
    after: tuple[str, ...] = ()       # steps that must have ended first
    each: str | None = None           # a plan group: one run per chunk
    fulfiller: str | None = None      # runs only when this fulfiller is configured


EXTRACTS = ("extract_shopify", "extract_amazon", "extract_shipbob")
ACTS = ("post_tracking", "add_notes", "reject_cancellations", "record_escalations")

STEPS: tuple[Step, ...] = (
    Step("prepare_run"),
    Step("extract_tiktok", ("prepare_run",)),
    Step("extract_shopify", ("extract_tiktok",)),
    Step("extract_amazon", ("extract_tiktok",), fulfiller="amazon_mcf"),
    Step("extract_shipbob", ("extract_tiktok",), fulfiller="shipbob"),
    # one task for the five batches: Great Expectations takes seconds to import in each task process
    Step("validate_staged", EXTRACTS),
    Step("join_and_decide", ("validate_staged",)),
    Step("post_tracking", ("join_and_decide",), each="tracking"),
    Step("add_notes", ("join_and_decide",), each="notes"),
    Step("reject_cancellations", ("join_and_decide",), each="rejections"),
    Step("record_escalations", ("join_and_decide",), each="escalations"),
    # the cancellation saga, one chain per chunk
    Step("cancel_at_fulfiller", ("join_and_decide",), each="cancellations"),
    Step("verify_fulfiller_cancel", ("cancel_at_fulfiller",), each="cancellations"),
    Step("refund_and_approve", ("verify_fulfiller_cancel",), each="cancellations"),
    Step("summarize_run", (*ACTS, "refund_and_approve")),
)
BY_NAME = {step.name: step for step in STEPS}

# Airflow pools the tasks draw from: how many tasks call a platform at once (pacing is the quotas' job).
POOLS = {"tiktok_api": 4, "shopify_api": 2, "amazon_api": 1, "shipbob_api": 1, "fulfiller_api": 2}


def pools_file(shops: int = 1) -> dict:
    """The pools for a deployment serving `shops` shops (they share them), in the form
    `airflow pools import` reads."""
    return {name: {"slots": slots * shops, "description": f"orderops: calls to {name.split('_')[0]}",
                   "include_deferred": False} for name, slots in POOLS.items()}


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
