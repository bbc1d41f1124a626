"""The client's copy of Shopify's points bucket when threads share it."""

import threading

from orderops_provider.shopify import PointsBucket


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def acquire_in_thread(bucket: PointsBucket, cost: float) -> None:
    worker = threading.Thread(target=bucket.acquire, args=(cost,))
    worker.start()
    worker.join()


def test_resync_counts_other_threads_requests_in_flight_as_spent():
    clock = Clock()
    bucket = PointsBucket(100.0, 2000.0, clock=clock, sleep=clock.sleep)
    acquire_in_thread(bucket, 300.0)  # another thread's query, sent, not yet answered
    bucket.acquire(50.0)
    # this thread's answer reports 1,500 available, computed before the other query was charged
    bucket.sync(1500.0)
    assert bucket._tokens == 1200.0


def test_answered_and_expired_requests_no_longer_count():
    clock = Clock()
    bucket = PointsBucket(100.0, 2000.0, clock=clock, sleep=clock.sleep)
    bucket.acquire(50.0)
    bucket.sync(1500.0)
    assert bucket._tokens == 1500.0  # its own request is the one answered
    acquire_in_thread(bucket, 300.0)
    clock.now += PointsBucket.IN_FLIGHT_TTL + 1  # that request never got an answer
    bucket.sync(1000.0)
    assert bucket._tokens == 1000.0


def test_cost_above_the_bucket_is_capped_and_level_never_negative():
    clock = Clock()
    bucket = PointsBucket(50.0, 1000.0, clock=clock, sleep=clock.sleep)
    assert bucket.acquire(5000.0) == 0.0  # capped at the bucket: the platform answers such a query itself
    acquire_in_thread(bucket, 900.0)  # waits (sleep stub) and is charged in flight
    bucket.sync(100.0)
    assert bucket._tokens == 0.0
