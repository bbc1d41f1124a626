"""The operations view's queries and its retry, on SQLite and PostgreSQL: failed and stuck actions,
a retry that goes through the same key (read first when stuck), freshness and platform calls."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from include.act.actions import Executor, NotDone
from include.act.ledger import FAILED, IN_FLIGHT, PENDING, SUCCEEDED, Ledger, RunContext
from include.decide.model import POST_TRACKING, Action
from include.report.operations import (
    RETRY,
    STUCK_AFTER,
    OperationsError,
    failed_and_stuck,
    freshness,
    quota_use,
    retry,
)
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    api_calls,
    extraction_cursors,
    quota_buckets,
    runs,
    utcnow,
)

SHOP = "shop-a"
CTX = RunContext(shop=SHOP, dag_id="orderops_sla_shop-a", run_id="r1", task_id="post_tracking", try_number=1)
# far from the wall clock: every figure must be computed on the clock it is given
NOW = datetime(2031, 3, 4, 12, 0, tzinfo=timezone.utc)


def post(order: str) -> Action:
    return Action(
        POST_TRACKING,
        f"tiktok:order/{order}",
        {"tiktok_order_id": order, "tracking_number": f"1Z{order}", "shipping_provider_id": "P"},
        f"post_tracking:{order}:1Z{order}",
    )


@pytest.fixture
def wh(warehouse_url):
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    yield warehouse
    warehouse.dispose()


def set_row(wh: Warehouse, key: str, **values) -> None:
    with wh.engine.begin() as conn:
        conn.execute(action_ledger.update().where(action_ledger.c.idempotency_key == key).values(**values))


def seed_actions(wh: Warehouse) -> Ledger:
    """576001 failed, 576002 stuck in flight, 576003 in flight a moment ago, 576004 succeeded."""
    ledger = Ledger(wh)
    for order in ("576001", "576002", "576003", "576004"):
        action = post(order)
        ledger.record(CTX, action, rule="T1", decision_run_id="r1", tiktok_order_id=order)
        claim = ledger.claim(CTX, action.idempotency_key, now=NOW - timedelta(hours=3))
        assert claim is not None
        state = {"576001": FAILED, "576004": SUCCEEDED}.get(order, IN_FLIGHT)
        ledger.finish(claim, state, detail="TikTok refused: tracking number invalid" if state == FAILED else None)
    set_row(wh, post("576001").idempotency_key, updated_at=NOW - timedelta(minutes=90))
    set_row(
        # the ledger's leases are on the wall clock (a runner's claim reads it): run out on both clocks
        wh,
        post("576002").idempotency_key,
        updated_at=NOW - timedelta(hours=2),
        lease_until=utcnow() - timedelta(hours=1),
    )
    set_row(wh, post("576003").idempotency_key, updated_at=NOW - timedelta(minutes=5), lease_until=None)
    return ledger


def test_failed_and_stuck_lists_what_needs_a_person_on_the_given_clock(wh):
    seed_actions(wh)
    with wh.engine.connect() as conn:
        listed = failed_and_stuck(conn, now=NOW)
        # an hour later the action in flight a moment ago is stuck too
        later = failed_and_stuck(conn, now=NOW + STUCK_AFTER)
    assert [(a["tiktok_order_id"], a["status"]) for a in listed] == [("576001", "failed"), ("576002", "stuck")]
    assert listed[0]["detail"] == "TikTok refused: tracking number invalid" and listed[0]["attempts"] == 1
    assert {a["tiktok_order_id"] for a in later} == {"576001", "576002", "576003"}


def test_a_failed_action_retried_goes_through_the_same_key_once(wh):
    ledger = seed_actions(wh)
    key = post("576001").idempotency_key
    audit = retry(wh, SHOP, key, "lead", now=NOW)
    row = ledger.rows_by_key(SHOP, [key])[key]
    assert row["state"] == PENDING and row["detail"].startswith("retry asked by lead at 2031-03-04 12:00")
    assert "tracking number invalid" in row["detail"]
    assert audit["kind"] == RETRY and audit["request"]["key"] == key and audit["request"]["was"] == FAILED
    with wh.engine.connect() as conn:
        assert [a["status"] for a in failed_and_stuck(conn, now=NOW) if a["idempotency_key"] == key] == ["retry_asked"]
    # the next run carries it out: the same row, a fresh attempt
    performed = []

    class Platform:
        def perform_post_tracking(self, params):
            performed.append(params["tracking_number"])
            return {"package_id": "PK1"}

        def reconcile_post_tracking(self, params):
            raise AssertionError("a failed row is not read first: it never reached the platform")

    outcome = Executor(ledger, CTX, Platform()).run(row)  # type: ignore[arg-type]
    after = ledger.rows_by_key(SHOP, [key])[key]
    assert outcome.state == SUCCEEDED and performed == ["1Z576001"]
    assert after["id"] == row["id"] and after["attempts"] == 2
    with wh.engine.connect() as conn:
        keys = conn.execute(sa.select(action_ledger.c.idempotency_key).where(action_ledger.c.kind == POST_TRACKING))
        assert sorted(keys.scalars()) == sorted(
            post(o).idempotency_key for o in ("576001", "576002", "576003", "576004")
        )
    with pytest.raises(OperationsError, match="is succeeded: nothing to retry"):
        retry(wh, SHOP, key, "lead", now=NOW)


def test_a_stuck_action_retried_is_read_first_and_never_sent_twice(wh):
    ledger = seed_actions(wh)
    key = post("576002").idempotency_key
    retry(wh, SHOP, key, "lead", now=NOW)
    row = ledger.rows_by_key(SHOP, [key])[key]
    assert row["state"] == IN_FLIGHT  # it stays in flight: only a read tells what became of it

    class TookEffect:
        def perform_post_tracking(self, params):
            raise AssertionError("sent twice")

        def reconcile_post_tracking(self, params):
            return {"reconciled": True}

    outcome = Executor(ledger, CTX, TookEffect()).run(row)  # type: ignore[arg-type]
    assert outcome.state == SUCCEEDED and "earlier attempt took effect" in outcome.detail


def test_a_stuck_action_that_did_not_take_effect_is_sent_after_the_read(wh):
    ledger = seed_actions(wh)
    key = post("576002").idempotency_key
    retry(wh, SHOP, key, "lead", now=NOW)
    calls = []

    class NotThere:
        def perform_post_tracking(self, params):
            calls.append("perform")
            return {"package_id": "PK2"}

        def reconcile_post_tracking(self, params):
            calls.append("read")
            raise NotDone

    row = ledger.rows_by_key(SHOP, [key])[key]
    assert Executor(ledger, CTX, NotThere()).run(row).state == SUCCEEDED  # type: ignore[arg-type]
    assert calls == ["read", "perform"]


def test_retries_refused(wh):
    seed_actions(wh)
    with pytest.raises(OperationsError, match="it is not stuck yet"):
        retry(wh, SHOP, post("576003").idempotency_key, "lead", now=NOW)
    with pytest.raises(OperationsError, match="no action"):
        retry(wh, SHOP, "post_tracking:nope", "lead", now=NOW)
    with pytest.raises(OperationsError, match="no action"):  # another shop's key is not this shop's
        retry(wh, "shop-b", post("576001").idempotency_key, "lead", now=NOW)
    with pytest.raises(OperationsError, match="name of who"):
        retry(wh, SHOP, post("576001").idempotency_key, " ", now=NOW)
    key = post("576002").idempotency_key
    set_row(wh, key, lease_until=NOW + timedelta(minutes=5))
    with pytest.raises(OperationsError, match="being carried out now"):
        retry(wh, SHOP, key, "lead", now=NOW)
    with wh.engine.connect() as conn:  # nothing was written by a refused retry
        assert conn.execute(sa.select(sa.func.count()).where(action_ledger.c.kind == RETRY)).scalar() == 0


def add_run(wh: Warehouse, shop: str, run_id: str, state: str, finished: datetime | None, window_end: datetime) -> None:
    with wh.engine.begin() as conn:
        conn.execute(
            runs.insert().values(
                shop=shop,
                run_id=run_id,
                dag_id=f"orderops_sla_{shop}",
                window_start=window_end - timedelta(minutes=30),
                window_end=window_end,
                started_at=(finished or NOW) - timedelta(minutes=2),
                finished_at=finished,
                state=state,
                dry_run=False,
            )
        )


def test_freshness_flags_a_stopped_pipeline_and_a_lagging_listing(wh):
    # the runs' clock (window ends, listings) is a simulated one, a year before the wall clock
    data_clock = datetime(2030, 3, 4, 12, 0, tzinfo=timezone.utc)
    add_run(wh, "fresh", "r1", "succeeded", NOW - timedelta(minutes=20), data_clock)
    add_run(wh, "fresh", "r2", "attention", NOW - timedelta(minutes=5), data_clock + timedelta(minutes=30))
    add_run(wh, "stopped", "r1", "succeeded", NOW - timedelta(hours=3), data_clock)
    with wh.engine.begin() as conn:
        for source, until in (
            ("tiktok_orders", data_clock + timedelta(minutes=30)),
            ("shopify_orders", data_clock - timedelta(hours=2)),
        ):
            conn.execute(
                extraction_cursors.insert().values(
                    shop="fresh",
                    source=source,
                    established_at=data_clock - timedelta(days=1),
                    listed_until=until,
                    run_id="r2",
                    mode="incremental",
                    listed=1,
                    findings=0,
                )
            )
    with wh.engine.connect() as conn:
        found = {f.shop: f for f in freshness(conn, NOW)}
        hourly = {f.shop: f for f in freshness(conn, NOW, {"stopped": timedelta(hours=2)})}
    fresh, stopped = found["fresh"], found["stopped"]
    assert not fresh.stale and fresh.last_good["run_id"] == "r1" and fresh.last_run["run_id"] == "r2"
    # staleness is on the wall clock alone: the simulated clock a year back does not make it stale
    assert stopped.stale and stopped.last_good["finished_at"] == NOW - timedelta(hours=3)
    assert not hourly["stopped"].stale  # two intervals of two hours have not passed
    lag = {p["source"]: (p["lag"], p["stale"]) for p in fresh.platforms}
    assert lag == {"shopify_orders": (timedelta(hours=2, minutes=30), True), "tiktok_orders": (timedelta(0), False)}


def test_quota_use_counts_the_last_day_of_runs_per_platform(wh):
    data_clock = datetime(2030, 3, 4, 12, 0, tzinfo=timezone.utc)
    add_run(wh, SHOP, "today", "succeeded", NOW - timedelta(hours=1), data_clock)
    add_run(wh, SHOP, "last-week", "succeeded", NOW - timedelta(days=7), data_clock)

    def calls(run_id: str, platform: str, operation: str, n: int, throttled: int) -> dict:
        return dict(
            shop=SHOP,
            run_id=run_id,
            task_id="extract",
            map_index=-1,
            platform=platform,
            operation=operation,
            calls=n,
            retries=throttled,
            throttled=throttled,
            failures=0,
        )

    with wh.engine.begin() as conn:
        conn.execute(
            api_calls.insert(),
            [
                calls("today", "tiktok", "search_orders", 10, 2),
                calls("today", "tiktok", "get_orders", 5, 1),
                calls("today", "shopify", "orders", 3, 0),
                calls("last-week", "tiktok", "search_orders", 100, 50),
            ],
        )
        conn.execute(
            quota_buckets.insert().values(
                shop=SHOP, bucket="tiktok", tokens=-2.0, stamp=(NOW - timedelta(minutes=3)).timestamp()
            )
        )
    with wh.engine.connect() as conn:
        used = quota_use(conn, NOW)
    by_platform = {c["platform"]: (c["runs"], c["calls"], c["throttled"], c["retries"]) for c in used["calls"]}
    assert by_platform == {"shopify": (1, 3, 0, 0), "tiktok": (1, 15, 3, 3)}
    [bucket] = used["buckets"]
    assert bucket["tokens"] == -2.0 and bucket["idle"] == timedelta(minutes=3)


def test_a_refused_mcf_upload_asked_to_retry_still_counts_toward_the_warehouse_limit(wh):
    from include.cli import trace
    from include.run.runconfig import run_settings
    from include.store.run_store import RunStore
    from include.store.warehouse import stg_tiktok_orders

    seed_actions(wh)
    with wh.engine.begin() as conn:
        conn.execute(
            stg_tiktok_orders.insert().values(
                shop=SHOP,
                tiktok_order_id="576001",
                status="AWAITING_SHIPMENT",
                fulfillment_type="FULFILLMENT_BY_SELLER",
                create_time=NOW,
                update_time=NOW,
                warehouse_id="7001",
                tracking_number="",
                shipping_provider_id="",
                is_buyer_request_cancel=False,
                line_items=[],
                raw={},
                snapshot_run_id="r1",
                extracted_at=NOW,
            )
        )
    settings = run_settings(
        dag_id="orderops_sla", run_id="r2", params={"shop": SHOP, "policy": {"mcf_warehouse_ids": ["7001"]}}
    )
    store = RunStore(wh, settings)
    assert store.warehouse_refusals() == {"7001": 1}
    retry(wh, SHOP, post("576001").idempotency_key, "lead", now=NOW)
    # a person's retry does not lift TikTok's count: the gate still holds one refusal short of it
    assert store.warehouse_refusals() == {"7001": 1}
    # the order's chain says who asked, and that the action waits for a run
    lines = trace(wh, "576001", SHOP)
    assert any("retry of post_tracking:576001:1Z576001 asked by lead (it was failed)" in line for line in lines)
    assert any(line.strip().startswith("open: post_tracking pending (retry asked by lead") for line in lines)


def test_a_refused_shopify_cancel_retried_no_longer_stops_its_saga(wh):
    from include.act import saga
    from include.decide.model import CANCEL_SHOPIFY

    ledger = Ledger(wh)
    action = Action(CANCEL_SHOPIFY, "shopify:order/S1", {"shopify_order_id": "S1"}, "cancel_shopify_order:S1")
    ledger.record(CTX, action, rule="C1", decision_run_id="r1", tiktok_order_id="576010")
    claim = ledger.claim(CTX, action.idempotency_key)
    assert claim is not None
    ledger.finish(claim, FAILED, detail="Shopify: Cannot cancel an order with open fulfillments")
    set_row(wh, action.idempotency_key, updated_at=NOW - timedelta(hours=2))
    assert saga.states(ledger, SHOP)["576010"].shopify_cancel_refused  # the saga stops: a person looks
    retry(wh, SHOP, action.idempotency_key, "lead", now=NOW)
    # the next run's decision plans the Shopify cancel again, under the same key (rules.finish_approved)
    assert "576010" not in saga.states(ledger, SHOP)


@pytest.mark.parametrize(
    ("schedule", "interval"),
    [("*/30 * * * *", timedelta(minutes=30)), ("0 * * * *", timedelta(hours=1)), ("15 2 * * *", timedelta(days=1))],
)
def test_a_shop_schedule_gives_the_interval_its_freshness_is_judged_by(schedule, interval):
    from include.run.shops import schedule_interval

    assert schedule_interval(schedule) == interval
