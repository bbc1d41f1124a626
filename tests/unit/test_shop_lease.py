"""One run of a shop at a time across its pipeline DAG and its event DAG (include/store/leases.py),
on SQLite and on the real PostgreSQL; and the doorbell's trigger waiting a burst out on the real Redis."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from threading import Barrier, Thread

import pytest

from include.store.leases import ShopLease
from include.store.warehouse import Warehouse

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(minutes=2)


class Clock:
    def __init__(self):
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def wh(warehouse_url):
    warehouse = Warehouse(warehouse_url)
    warehouse.migrate()
    yield warehouse
    warehouse.dispose()


def test_one_holder_at_a_time_and_a_lapsed_lease_is_free(wh):
    clock = Clock()
    lease = ShopLease(wh, "shop-a", now=clock)
    assert lease.take("scheduled__1", "orderops_sla_shop_a", TTL) is None
    assert lease.take("scheduled__1", "orderops_sla_shop_a", TTL) is None  # its own tasks renew it
    held = lease.take("asset_triggered__1", "orderops_events_shop_a", TTL)
    assert held is not None and (held.run_id, held.dag_id) == ("scheduled__1", "orderops_sla_shop_a")
    # another shop is not held
    assert ShopLease(wh, "shop-b", now=clock).take("asset_triggered__1", "orderops_events_shop_b", TTL) is None
    # the holder died: once the lease lapses (no renewal) the next run takes it
    clock.at = T0 + TTL + timedelta(seconds=1)
    assert lease.take("asset_triggered__2", "orderops_events_shop_a", TTL) is None
    # the dead holder cannot free what it no longer holds
    assert lease.release("scheduled__1") is False
    assert lease.take("scheduled__2", "orderops_sla_shop_a", TTL) is not None


def test_an_event_task_that_found_the_shop_held_is_rung_for_when_it_is_freed(wh):
    lease = ShopLease(wh, "shop-a", now=Clock())
    assert lease.take("scheduled__1", "orderops_sla_shop_a", TTL) is None
    assert lease.take("asset_triggered__1", "orderops_events_shop_a", TTL, wake_after=True) is not None
    assert lease.release("scheduled__1") is True  # the holder rings
    assert lease.take("asset_triggered__2", "orderops_events_shop_a", TTL) is None
    assert lease.release("asset_triggered__2") is False  # no one asked this time


def test_runs_taking_the_shop_at_once_get_one_holder(wh):
    """Eight runs ask at the same moment, each from its own connection: exactly one holds it."""
    barrier = Barrier(8)
    got: list[str] = []

    def ask(i: int) -> None:
        lease = ShopLease(wh, "shop-a", now=Clock())
        barrier.wait()
        if lease.take(f"run-{i}", "orderops_sla_shop_a", TTL) is None:
            got.append(f"run-{i}")

    threads = [Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 1


def test_the_doorbell_trigger_fires_once_per_burst_after_the_debounce(monkeypatch):
    """The real Redis: three rings within the debounce make one event, fired once the debounce has
    passed since the first ring (by the event loop's clock), not before. (A shop name of its own:
    pub/sub channels are shared with every test process.)"""
    import uuid

    import redis
    from orderops_triggers import DoorbellTrigger

    from include.events.platform_events import channel, ring

    redis_conn = {"conn_type": "redis", "host": "127.0.0.1", "extra": {"db": 5}}  # the channel names the db
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_REDIS", json.dumps(redis_conn))
    shop = f"bell{uuid.uuid4().hex[:8]}"
    trigger = DoorbellTrigger(shop=shop, redis_conn_id="orderops_redis", debounce_seconds=1.5, poll_seconds=0.1)
    assert trigger.serialize() == (
        "orderops_triggers.DoorbellTrigger",
        {"shop": shop, "redis_conn_id": "orderops_redis", "debounce_seconds": 1.5, "poll_seconds": 0.1},
    )
    client = redis.Redis(host="127.0.0.1", db=5)

    async def scenario():
        loop = asyncio.get_running_loop()
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        while client.pubsub_numsub(channel(shop, 5))[0][1] == 0:  # subscribed
            assert not first.done(), first.exception()
            await asyncio.sleep(0.05)
        rung = loop.time()
        for _ in range(3):
            assert ring(None, shop, client=client)
            await asyncio.sleep(0.2)
        event = await asyncio.wait_for(first, timeout=30)
        return event, loop.time() - rung

    event, after = asyncio.run(scenario())
    assert event.payload == {"shop": shop, "source": "doorbell"}
    assert after >= 1.5
    client.close()


def _settings(run_id: str, dag_id: str = "orderops_sla_shop_a"):
    from include.run.runconfig import run_settings
    from include.run.shops import Shop

    return run_settings(
        dag_id=dag_id,
        run_id=run_id,
        params={"now": T0.isoformat()},
        data_interval_start=T0 - timedelta(minutes=30),
        data_interval_end=T0,
        shop=Shop("shop-a"),
        run_type="scheduled",
    )


def test_a_pipeline_task_waits_for_an_event_task_and_gives_up_after_a_while(tmp_path):
    """The event task holding the shop frees it: the pipeline's task takes it after the waits it
    took; an event task that never frees it (and keeps renewing) ends the try with who holds it."""
    from include.airflow.glue import LEASE_WAIT, hold_shop

    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    lease = ShopLease(wh, "shop-a")
    assert lease.take("asset_triggered__1", "orderops_events_shop_a", TTL) is None
    slept: list[float] = []

    def event_task_ends(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            lease.release("asset_triggered__1")

    hold_shop(wh, _settings("scheduled__1"), sleep=event_task_ends)
    assert len(slept) == 3
    assert ShopLease(wh, "shop-a").take("asset_triggered__2", "orderops_events_shop_a", TTL) is not None

    lease.release("scheduled__1")
    assert lease.take("asset_triggered__3", "orderops_events_shop_a", TTL) is None
    waits: list[float] = []
    with pytest.raises(RuntimeError, match=r"shop shop-a is held by run asset_triggered__3 of orderops_events_shop_a"):
        hold_shop(wh, _settings("scheduled__2"), sleep=waits.append)
    assert sum(waits) == LEASE_WAIT.total_seconds()
    wh.dispose()
