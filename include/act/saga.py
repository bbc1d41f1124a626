"""The buyer-cancellation saga (docs/architecture.md §3): cancel at the fulfiller, verify the cancel,
then approve on TikTok and cancel and refund the Shopify order (the policy's sequence), each step
only after the one before it succeeded. `decide` makes the saga's actions and keys; these are its
three steps, one task each per chunk of orders, and the rule that gives up a cancel that never
shows (C4).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

from include.act.actions import Executor, Handlers, log_outcome
from include.act.ledger import DONE_STATES, FAILED, IN_FLIGHT, SUCCEEDED, WAITING, Ledger, RunContext
from include.decide.join import saga_states
from include.decide.model import (
    APPROVE_CANCELLATION,
    CANCEL_FULFILLMENT,
    CANCEL_SHOPIFY,
    VERIFY_FULFILLMENT_CANCEL,
    SagaState,
    as_utc,
)
from include.decide.rules import CANCEL_NOT_VERIFIED, cancel_fulfillment_key, escalation
from include.run.runconfig import RunSettings
from include.store.warehouse import Warehouse, decisions, latest_rows

log = logging.getLogger(__name__)
KINDS = (CANCEL_FULFILLMENT, VERIFY_FULFILLMENT_CANCEL, CANCEL_SHOPIFY, APPROVE_CANCELLATION)


def states(ledger: Ledger, shop: str) -> dict[str, SagaState]:
    """What earlier runs did on each order's cancellation, for the decisions of this run."""
    return saga_states(
        row
        for kind, state in (
            (CANCEL_FULFILLMENT, SUCCEEDED),
            (CANCEL_SHOPIFY, SUCCEEDED),
            (CANCEL_SHOPIFY, FAILED),
            (APPROVE_CANCELLATION, SUCCEEDED),
            (APPROVE_CANCELLATION, IN_FLIGHT),
        )
        for row in ledger.rows(shop, kind=kind, state=state)
    )


def cancel_at_fulfiller(
    settings: RunSettings, platforms, wh: Warehouse, ctx: RunContext, sagas: list[dict]
) -> list[dict]:
    """Step 1: ask the fulfiller to cancel (only where the decision said so)."""
    ledger = Ledger(wh)
    executor = Executor(ledger, ctx, Handlers(platforms))
    results = []
    for saga in sagas:
        rows = ledger.rows_by_key(settings.shop, saga["keys"])
        for key in saga["keys"]:
            if rows.get(key, {}).get("kind") == CANCEL_FULFILLMENT:
                results.append(log_outcome(executor.run(rows[key])))
    return results


def verify_cancellations(settings: RunSettings, platforms, wh: Warehouse, ctx: RunContext, sagas: list[dict]) -> dict:
    """Step 2: read each fulfiller cancel once. A saga whose cancel shows goes on to its refund in
    this run; one that does not yet waits for a later run (its decision asks again), so a slow
    fulfiller holds no other saga, action group or run. A cancel that does not show within the
    policy's timeout, on the run's clock from when it took effect, is given up: the verify row
    fails and the order is escalated (C4); it is never refunded or approved."""
    ledger = Ledger(wh)
    executor = Executor(ledger, ctx, Handlers(platforms))
    timeout = timedelta(minutes=settings.policy.cancel_verify_timeout_minutes)
    counts: Counter = Counter()
    for saga in sagas:
        tiktok_order_id = saga["tiktok_order_id"]
        rows = ledger.rows_by_key(settings.shop, saga["keys"])
        verify = next((r for r in rows.values() if r["kind"] == VERIFY_FULFILLMENT_CANCEL), None)
        if verify is None or verify["state"] in DONE_STATES or given_up(ledger, settings.shop, tiktok_order_id):
            continue
        request = verify["request"]
        cancel_key = cancel_fulfillment_key(request["fulfiller"], request["fulfillment_order_id"])
        cancel = ledger.rows_by_key(settings.shop, [cancel_key]).get(cancel_key)
        if cancel is None or cancel["state"] != SUCCEEDED:
            continue  # the cancel request itself did not go through: nothing to verify yet
        outcome = executor.run(verify)
        if outcome.state == SUCCEEDED:
            counts["verified"] += 1
        elif ctx.now - as_utc(cancel["acted_at"] or cancel["updated_at"]) >= timeout:
            give_up(ledger, ctx, verify, tiktok_order_id, settings)
            counts["given_up"] += 1
        else:
            ledger.wait(
                settings.shop,
                verify["idempotency_key"],
                f"waiting: {outcome.detail} (read at {ctx.now:%Y-%m-%dT%H:%M:%SZ}; a later run reads again)",
            )
            counts["waiting"] += 1
    return {"step": "verify_fulfiller_cancel", **counts}


def _c4(tiktok_order_id: str, detail: str = ""):
    return escalation(tiktok_order_id, CANCEL_NOT_VERIFIED, detail)


def given_up(ledger: Ledger, shop: str, tiktok_order_id: str) -> bool:
    """Whether the order's cancel was given up: its C4 escalation is recorded (by the saga or by a
    decision), so its verify row is never read again and nothing is refunded."""
    return ledger.state_of(shop, _c4(tiktok_order_id).idempotency_key) == SUCCEEDED


def give_up(ledger: Ledger, ctx: RunContext, verify: dict, tiktok_order_id: str, settings: RunSettings) -> None:
    """C4: the verify row fails and the order is escalated."""
    claim = ledger.claim(ctx, verify["idempotency_key"])
    detail = f"gave up: not cancelled at the fulfiller within {settings.policy.cancel_verify_timeout_minutes:g} min"
    if claim is not None:
        ledger.finish(claim, FAILED, detail=detail)
    action = _c4(tiktok_order_id, detail)
    # it rests on the order's recorded decision (to cancel), which an unchanged decision leaves earlier
    with ledger.warehouse.engine.connect() as conn:
        decided = latest_rows(conn, decisions, settings.shop, [tiktok_order_id]).get(tiktok_order_id)
    decision_run_id = decided["run_id"] if decided else settings.run_id
    ledger.record(ctx, action, rule="C4", decision_run_id=decision_run_id, tiktok_order_id=tiktok_order_id)
    escalated = ledger.claim(ctx, action.idempotency_key)
    if escalated is not None:
        ledger.finish(
            escalated, SUCCEEDED, response={"escalated": CANCEL_NOT_VERIFIED}, detail=detail, acted_at=ctx.now
        )
    log.warning("C4 %s: %s; escalated, not refunded, not approved", tiktok_order_id, detail)


def refund_and_approve(
    settings: RunSettings, platforms, wh: Warehouse, ctx: RunContext, sagas: list[dict]
) -> list[dict]:
    """Step 3: approve on TikTok and cancel the Shopify order (refund), in the decision's sequence,
    each only after the step before it succeeded (a verified fulfiller cancel, when there is one). An
    approval skipped because the request closed otherwise (the buyer withdrew it) stops the saga:
    that order is not to be cancelled."""
    ledger = Ledger(wh)
    executor = Executor(ledger, ctx, Handlers(platforms))
    results = []
    for saga in sagas:
        rows = ledger.rows_by_key(settings.shop, saga["keys"])
        ordered = [rows[k] for k in saga["keys"] if k in rows]
        ready = all(
            r["state"] == SUCCEEDED for r in ordered if r["kind"] in (CANCEL_FULFILLMENT, VERIFY_FULFILLMENT_CANCEL)
        )
        blocked = "fulfiller cancel not verified"
        for row in ordered:
            if row["kind"] not in (CANCEL_SHOPIFY, APPROVE_CANCELLATION):
                continue
            if not ready:
                results.append(
                    {"key": row["idempotency_key"], "kind": row["kind"], "state": WAITING, "detail": blocked}
                )
                break
            outcome = executor.run(row)
            results.append(log_outcome(outcome))
            ready, blocked = outcome.state == SUCCEEDED, f"{outcome.kind} {outcome.state}: {outcome.detail}"
    return results
