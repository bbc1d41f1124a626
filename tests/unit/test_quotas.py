"""Shared quotas in the warehouse (SQLite and PostgreSQL): reservations, refunds, limits."""

import threading

import pytest
import sqlalchemy as sa

from include.store.quotas import SharedQuotas
from include.store.warehouse import Warehouse, quota_buckets
from orderops_provider.base import RateLimiter
from orderops_provider.shopify import PointsBucket


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wh(warehouse_url):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    yield wh
    wh.dispose()


def level(wh: Warehouse, shop: str, bucket: str) -> float:
    with wh.engine.connect() as conn:
        return conn.execute(
            sa.select(quota_buckets.c.tokens).where(quota_buckets.c.shop == shop, quota_buckets.c.bucket == bucket)
        ).scalar_one()


def test_two_processes_draw_from_one_bucket_and_queue_behind_each_other(wh):
    clock = Clock()
    one, two = SharedQuotas(wh, "shop-a", clock=clock), SharedQuotas(wh, "shop-a", clock=clock)
    waits = [q.reserve("amazon_mcf:getFulfillmentOrder", rate=2.0, burst=3.0) for q in (one, two, one, two, one)]
    # the burst of 3 is shared, then each call gets the next free half-second slot
    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0]
    clock.now += 2.0  # four tokens refilled, two of them owed
    assert one.reserve("amazon_mcf:getFulfillmentOrder", 2.0, 3.0) == 0.0
    assert level(wh, "shop-a", "amazon_mcf:getFulfillmentOrder") == pytest.approx(1.0)


def test_buckets_are_per_shop_and_per_operation(wh):
    clock = Clock()
    a, b = SharedQuotas(wh, "shop-a", clock=clock), SharedQuotas(wh, "shop-b", clock=clock)
    assert a.reserve("tiktok:search_orders", 1.0, 1.0) == 0.0
    assert b.reserve("tiktok:search_orders", 1.0, 1.0) == 0.0  # another shop: its own quota
    assert a.reserve("tiktok:mark_package_as_shipped", 1.0, 1.0) == 0.0  # another endpoint: its own quota
    assert a.reserve("tiktok:search_orders", 1.0, 1.0) == pytest.approx(1.0)


def test_refill_never_exceeds_the_burst_and_a_clock_behind_adds_nothing(wh):
    clock = Clock()
    quotas = SharedQuotas(wh, "shop-a", clock=clock)
    quotas.reserve("shipbob", rate=2.5, burst=150.0, cost=150.0)
    clock.now += 3600
    assert quotas.reserve("shipbob", 2.5, 150.0, cost=0.0) == 0.0
    assert level(wh, "shop-a", "shipbob") == pytest.approx(150.0)
    behind = SharedQuotas(wh, "shop-a", clock=lambda: clock.now - 30)  # another host's clock, 30 s slow
    behind.reserve("shipbob", 2.5, 150.0, cost=10.0)
    clock.now += 1
    quotas.reserve("shipbob", 2.5, 150.0, cost=0.0)
    assert level(wh, "shop-a", "shipbob") == pytest.approx(142.5)  # 140 + one second at 2.5/s


def test_settle_gives_back_and_lowers_but_never_raises_to_the_platform_figure(wh):
    clock = Clock()
    quotas = SharedQuotas(wh, "shop-a", clock=clock)
    quotas.reserve("shopify", rate=100.0, burst=2000.0, cost=1000.0)
    quotas.settle("shopify", 100.0, 2000.0, refund=400.0, at_most=5000.0)
    assert level(wh, "shop-a", "shopify") == pytest.approx(1400.0)
    quotas.settle("shopify", 100.0, 2000.0, at_most=300.0)  # someone else spent the store's quota
    assert level(wh, "shop-a", "shopify") == pytest.approx(300.0)


def test_concurrent_reservations_each_get_their_own_slot(wh):
    quotas = [SharedQuotas(wh, "shop-a", clock=lambda: 5_000_000.0) for _ in range(4)]
    waits: list[float] = []
    lock = threading.Lock()

    def take(q: SharedQuotas) -> None:
        for _ in range(10):
            wait = q.reserve("tiktok:search_orders", rate=10.0, burst=5.0)
            with lock:
                waits.append(round(wait, 6))

    threads = [threading.Thread(target=take, args=(q,)) for q in quotas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 calls at a frozen instant: 5 from the burst, then one slot every 0.1 s, none shared
    assert sorted(waits) == [0.0] * 5 + [round(0.1 * k, 6) for k in range(1, 36)]


def test_a_limiter_sharing_a_bucket_sleeps_for_its_slot_and_a_throttle_empties_the_bucket(wh):
    clock = Clock()
    slept: list[float] = []
    limiter = RateLimiter(2.0, 1.0, sleep=slept.append)
    limiter.share(SharedQuotas(wh, "shop-a", clock=clock), "amazon_mcf:cancelFulfillmentOrder")
    assert limiter.acquire() == 0.0 and limiter.acquire() == pytest.approx(0.5)
    assert slept == [pytest.approx(0.5)]
    clock.now += 10
    limiter.drain()
    assert level(wh, "shop-a", "amazon_mcf:cancelFulfillmentOrder") == 0.0


def test_shopify_bucket_shared_gives_back_the_points_not_charged(wh):
    clock = Clock()
    bucket = PointsBucket(100.0, 2000.0, clock=clock, sleep=lambda s: None)
    bucket.share(SharedQuotas(wh, "shop-a", clock=clock), "shopify")
    bucket.acquire(500.0)  # requested cost taken
    bucket.sync(1880.0, 100.0, 2000.0, actual=120.0)  # what Shopify reports after charging 120
    assert level(wh, "shop-a", "shopify") == pytest.approx(1880.0)  # 1500 + 380 not charged
    bucket.acquire(100.0)
    bucket.sync(900.0, 100.0, 2000.0, actual=100.0)  # the store's level is lower than ours
    assert level(wh, "shop-a", "shopify") == pytest.approx(900.0)
