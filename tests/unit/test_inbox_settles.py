"""The inbox keeps itself true: the rule by which a later run's decision resolves an escalation it no
longer makes (`settled_by_run`), and the rows it writes (`close_settled`), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from include.report.inbox import (
    SYSTEM_REVIEWER,
    close_settled,
    latest_reviews,
    resolved_but_decided,
    review,
    settled_by_run,
)
from include.store.warehouse import Warehouse, action_ledger, decisions, escalation_reviews

T2 = "escalate:1001:carrier_unmapped"
E1 = "escalate:1002:no_shopify_match"


def decision(order: str, rule: str, reason: str, *actions: str) -> dict:
    return {"tiktok_order_id": order, "rule": rule, "reason": reason, "actions": list(actions)}


def test_an_escalation_the_run_no_longer_makes_is_settled_with_what_it_decided_instead():
    notes = settled_by_run(
        {T2: "1001", E1: "1002"},
        [
            decision("1001", "T1", "amazon_mcf shipped with tracking", "post_tracking:1001:1Z1"),
            decision("1002", "-", "TikTok status CANCELLED"),
        ],
        "run-2",
    )
    assert notes == {
        T2: "resolved by run run-2: now T1, amazon_mcf shipped with tracking",
        E1: "resolved by run run-2: nothing to do now, TikTok status CANCELLED",
    }


def test_an_escalation_made_again_held_back_or_not_decided_stays_open():
    open_ = {T2: "1001", E1: "1002", "escalate:1003:fulfiller_failed": "1003"}
    decided = [
        decision("1001", "T2", "carrier_unmapped: still", T2),  # escalated again for the same reason
        decision("1002", "-", "blocked: validation failed for shopify (E1: no_shopify_match)"),
    ]
    # 1002's actions were held back: its decision is not the one it would have made; 1003 was not decided
    assert settled_by_run(open_, decided, "run-2", held={"1002"}) == {}


def test_another_reason_on_the_same_order_closes_the_old_one_only():
    notes = settled_by_run(
        {T2: "1001"},
        [decision("1001", "T3", "tracking_on_other_order: 1Z1", "escalate:1001:tracking_on_other_order")],
        "run-2",
    )
    assert notes == {T2: "resolved by run run-2: now T3, tracking_on_other_order: 1Z1"}


def escalation_row(key: str) -> dict:
    order, code = key.split(":")[1:]
    at = datetime(2026, 11, 20, 9, tzinfo=timezone.utc)
    return {
        "shop": "default",
        "idempotency_key": key,
        "kind": "escalate",
        "target": f"ledger:escalation/{order}",
        "tiktok_order_id": order,
        "rule": "E1",
        "decision_run_id": "run-1",
        "request": {"reason_code": code, "detail": "x"},
        "state": "succeeded",
        "attempts": 1,
        "run_id": "run-1",
        "created_at": at,
        "updated_at": at,
    }


@pytest.fixture
def wh(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    with wh.engine.begin() as conn:
        conn.execute(action_ledger.insert(), [escalation_row(k) for k in (T2, E1, "escalate:1001:no_shopify_match")])
    yield wh
    wh.dispose()


def test_close_settled_writes_one_review_by_orderops_and_keeps_the_owner(wh):
    review(wh, "default", T2, "acknowledged", by="kim", owner="ana")
    decided = [decision("1001", "T1", "shipbob shipped with tracking", "post_tracking:1001:1Z1")]
    notes = close_settled(wh, "default", "run-2", decided)
    # both of 1001's escalations are settled; 1002 was not decided
    assert set(notes) == {T2, "escalate:1001:no_shopify_match"}
    with wh.engine.connect() as conn:
        latest = latest_reviews(conn, "default", [T2, E1])
    assert latest[T2]["state"] == "resolved" and latest[T2]["reviewed_by"] == SYSTEM_REVIEWER
    assert latest[T2]["owner"] == "ana" and E1 not in latest
    assert close_settled(wh, "default", "run-3", decided) == {}  # resolved once
    # a shop without the escalation writes nothing
    assert close_settled(wh, "other-shop", "run-3", decided) == {}
    with wh.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(escalation_reviews)).scalar() == 3


def test_each_resolved_escalation_of_an_order_reopens_on_its_own(wh):
    close_settled(wh, "default", "run-2", [decision("1001", "T1", "shipped", "post_tracking:1001:1Z1")])
    with wh.engine.begin() as conn:
        conn.execute(
            decisions.insert(),
            {
                "shop": "default",
                "run_id": "run-3",
                "tiktok_order_id": "1001",
                "rule": "T2",
                "reason": "carrier_unmapped",
                "actions": [T2],
                "inputs": {},
                "policy_version": "x",
                "decided_at": datetime.now(timezone.utc) + timedelta(minutes=1),
            },
        )
        latest = latest_reviews(conn, "default", [T2, "escalate:1001:no_shopify_match"])
    assert latest[T2]["state"] == "open" and "decided again after it was resolved by orderops" in latest[T2]["note"]
    assert latest["escalate:1001:no_shopify_match"]["state"] == "resolved"
    # and the next run that no longer makes it closes it again
    assert set(close_settled(wh, "default", "run-4", [decision("1001", "-", "tracking already on TikTok")])) == {T2}


def test_an_unchanged_decision_still_making_an_escalation_a_person_resolved_is_recorded_again(wh):
    # runs record only changed decisions: this one must be written again, or the inbox keeps it resolved
    still = [decision("1001", "T2", "carrier_unmapped", T2), decision("1002", "E1", "no_shopify_match", E1)]
    assert resolved_but_decided(wh, "default", still) == set()  # nothing resolved yet
    review(wh, "default", T2, "resolved", by="kim", note="mapped UPS")
    review(wh, "default", E1, "acknowledged", by="kim")
    assert resolved_but_decided(wh, "default", still) == {"1001"}
    assert resolved_but_decided(wh, "default", [decision("1001", "T1", "shipped", "post_tracking:1001:1Z1")]) == set()
