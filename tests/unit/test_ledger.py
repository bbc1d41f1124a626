"""The action ledger on SQLite and PostgreSQL: claims, leases, crash recovery, concurrency."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from include.act.ledger import FAILED, IN_FLIGHT, SUCCEEDED, Ledger, RunContext
from include.decide.model import POST_TRACKING, Action
from include.store.warehouse import Warehouse, utcnow

ACTION = Action(POST_TRACKING, "tiktok:order/576", {"tracking_number": "1Z"}, "post_tracking:576:1Z")
CTX = RunContext(shop="shop-a", dag_id="orderops_sla", run_id="r1", task_id="post_tracking", try_number=1)


@pytest.fixture
def ledger(warehouse_url):
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    yield Ledger(warehouse, lease_seconds=60)
    warehouse.dispose()


def test_record_claim_finish_once(ledger):
    for _ in range(2):  # recording twice (a rerun) keeps one row
        ledger.record(CTX, ACTION, rule="T1", decision_run_id="r1", tiktok_order_id="576")
    claim = ledger.claim(CTX, ACTION.idempotency_key)
    assert claim is not None and claim.attempts == 1 and not claim.recovering
    ledger.finish(claim, SUCCEEDED, response={"package_id": "P1"}, request_id="REQ1")
    assert ledger.claim(CTX, ACTION.idempotency_key) is None  # done: never again
    [row] = ledger.rows("shop-a")
    assert row["state"] == SUCCEEDED and row["platform_request_id"] == "REQ1"
    assert row["response"] == {"package_id": "P1"} and row["task_id"] == "post_tracking"


def test_live_lease_blocks_second_runner_and_expired_lease_recovers(ledger):
    ledger.record(CTX, ACTION, rule="T1", decision_run_id="r1", tiktok_order_id="576")
    first = ledger.claim(CTX, ACTION.idempotency_key)
    other = RunContext(shop="shop-a", dag_id="orderops_sla", run_id="backfill", task_id="post_tracking")
    assert ledger.claim(other, ACTION.idempotency_key) is None
    # the first runner died mid-call: after the lease the next claim must reconcile first
    later = utcnow() + timedelta(seconds=61)
    recovered = ledger.claim(other, ACTION.idempotency_key, now=later)
    assert recovered is not None and recovered.recovering and recovered.attempts == 2
    assert first.row_id == recovered.row_id


def test_failed_action_can_be_claimed_again(ledger):
    ledger.record(CTX, ACTION, rule="T1", decision_run_id="r1", tiktok_order_id="576")
    claim = ledger.claim(CTX, ACTION.idempotency_key)
    ledger.finish(claim, FAILED, detail="tiktok 36009003 internal error")
    again = ledger.claim(CTX, ACTION.idempotency_key)
    assert again is not None and not again.recovering and again.attempts == 2


def test_shops_are_kept_apart(ledger):
    ledger.record(CTX, ACTION, rule="T1", decision_run_id="r1", tiktok_order_id="576")
    shop_b = RunContext(shop="shop-b")
    with pytest.raises(KeyError):
        ledger.claim(shop_b, ACTION.idempotency_key)
    ledger.record(shop_b, ACTION, rule="T1", decision_run_id="r1", tiktok_order_id="576")
    assert ledger.claim(shop_b, ACTION.idempotency_key) is not None
    assert ledger.claim(CTX, ACTION.idempotency_key) is not None


def test_concurrent_claims_have_one_winner(ledger):
    ledger.record(CTX, ACTION, rule="T1", decision_run_id="r1", tiktok_order_id="576")
    winners = []
    barrier = threading.Barrier(8)

    def race(i):
        ctx = RunContext(shop="shop-a", run_id=f"run-{i}")
        barrier.wait()
        if ledger.claim(ctx, ACTION.idempotency_key) is not None:
            winners.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert ledger.state_of("shop-a", ACTION.idempotency_key) == IN_FLIGHT


class TrackingThatBreaks:
    """Stands in for the platform handlers (a reply that is no platform error cannot be had from
    the sandbox on demand): the first order's write raises a TypeError, the second's works."""

    def __init__(self):
        self.sent = []

    def perform_post_tracking(self, params):
        self.sent.append(params["tiktok_order_id"])
        if params["tiktok_order_id"] == "576-broken":
            raise TypeError("tracking_number: expected str, got int")
        return {"package_id": "P2"}

    def reconcile_post_tracking(self, params):
        from include.act.actions import NotDone

        raise NotDone()


def test_any_error_after_the_claim_is_recorded_and_the_chunk_goes_on(ledger):
    from include.act.actions import Executor

    actions = [
        Action(POST_TRACKING, f"tiktok:{o}", {"tiktok_order_id": o}, f"post_tracking:{o}")
        for o in ("576-broken", "576-fine")
    ]
    for action in actions:
        ledger.record(CTX, action, rule="T1", decision_run_id="r1", tiktok_order_id=action.params["tiktok_order_id"])
    handlers = TrackingThatBreaks()
    executor = Executor(ledger, CTX, handlers)
    outcomes = [executor.run(row) for row in sorted(ledger.rows("shop-a"), key=lambda r: r["idempotency_key"])]
    assert [o.state for o in outcomes] == [IN_FLIGHT, SUCCEEDED] and handlers.sent == ["576-broken", "576-fine"]
    broken = next(r for r in ledger.rows("shop-a") if r["tiktok_order_id"] == "576-broken")
    assert broken["state"] == IN_FLIGHT and "TypeError: tracking_number: expected str, got int" in broken["detail"]
    # the next attempt reads the remote state first (reconcile), then sends again
    again = executor.run(broken)
    assert again.state == IN_FLIGHT and handlers.sent == ["576-broken", "576-fine", "576-broken"]
