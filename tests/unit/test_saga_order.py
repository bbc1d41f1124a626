"""The saga's last step on the ledger: each write only after the one before it succeeded."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from include.act import saga
from include.act.ledger import IN_FLIGHT, SKIPPED, SUCCEEDED, Ledger, RunContext
from include.decide.model import APPROVE_CANCELLATION, CANCEL_SHOPIFY, Action
from include.decide.policy import Policy
from include.store.warehouse import Warehouse

NOW = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
CTX = RunContext(shop="default", dag_id="orderops_sla", run_id="r2", task_id="refund_and_approve", now=NOW)
APPROVE = Action(
    APPROVE_CANCELLATION,
    "tiktok:cancellation/4035",
    {"cancel_id": "4035", "tiktok_order_id": "576"},
    "approve_cancellation:4035",
)
CANCEL = Action(
    CANCEL_SHOPIFY,
    "shopify:order/61",
    {
        "shopify_order_id": "61",
        "reason": "CUSTOMER",
        "refund_method": "original_payment",
        "restock": True,
        "notify_customer": False,
    },
    "cancel_shopify_order:61",
)


class Platforms:
    """TikTok shows the buyer's request in `status`; Shopify records the cancels it is asked for."""

    def __init__(self, status: str):
        self.cancelled: list[str] = []
        self.settings = SimpleNamespace(fulfillers=())
        tiktok = SimpleNamespace(
            search_cancellations=lambda filters: [{"cancel_status": status}],
            approve_cancellation=lambda *a, **k: pytest.fail("approved a second time"),
        )
        shopify = SimpleNamespace(cancel_order_and_wait=lambda order_id, **kw: self.cancelled.append(order_id) or {})
        self.tiktok, self.shopify = (lambda: tiktok), (lambda: shopify)


@pytest.fixture
def ledger(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    wh.migrate()
    yield Ledger(wh)
    wh.dispose()


def left_in_flight(ledger: Ledger) -> None:
    """An earlier run sent the approval and died before recording what became of it."""
    earlier = RunContext(shop="default", dag_id="orderops_sla", run_id="r1", task_id="refund_and_approve", now=NOW)
    for action in (APPROVE, CANCEL):
        ledger.record(earlier, action, rule="C2", decision_run_id="r1", tiktok_order_id="576")
    claim = ledger.claim(earlier, APPROVE.idempotency_key)
    ledger.finish(claim, IN_FLIGHT, detail="outcome unknown")
    ledger.expire_lease(claim)


@pytest.mark.parametrize(
    "status, approval, cancels",
    [
        # TikTok shows the approval took: the Shopify cancel follows
        ("CANCELLATION_REQUEST_SUCCESS", SUCCEEDED, ["61"]),
        # the buyer withdrew the request meanwhile: the approval is skipped and the order is not cancelled
        ("CANCELLATION_REQUEST_CANCEL", SKIPPED, []),
    ],
)
def test_the_shopify_cancel_follows_only_an_approval_that_took(ledger, status, approval, cancels):
    left_in_flight(ledger)
    platforms = Platforms(status)
    settings = SimpleNamespace(shop="default", policy=Policy())
    results = saga.refund_and_approve(
        settings,
        platforms,
        ledger.warehouse,
        CTX,
        [{"tiktok_order_id": "576", "keys": [APPROVE.idempotency_key, CANCEL.idempotency_key]}],
    )
    assert ledger.state_of("default", APPROVE.idempotency_key) == approval
    assert platforms.cancelled == cancels
    assert [r["kind"] for r in results] == [APPROVE_CANCELLATION, CANCEL_SHOPIFY]
    assert results[-1]["state"] == (SUCCEEDED if cancels else "waiting")
    if not cancels:  # the waiting cancel names what stopped it
        assert results[-1]["detail"].startswith("approve_cancellation skipped: reconciled:")
