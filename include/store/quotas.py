"""One shop's API quotas, shared by every task process of that shop, kept in the warehouse.

Airflow runs a shop's tasks in separate processes (on several workers), each with its own
clients. A client's own token bucket assumes it alone spends the quota, so tasks of one shop
running at once overspend it together and are throttled. `SharedQuotas` keeps one bucket per
quota in `quota_buckets`: a call reserves its cost with one atomic UPDATE and is told how long to
wait for its slot. The level may go below zero: those are calls promised a later slot, so calls
of all processes queue in the order they asked. A reservation is one round trip to the
warehouse, small beside an API call.

Stamps are the callers' clocks: hosts kept in time by NTP differ by milliseconds, which shifts a
slot by as much; a stamp is never moved back, so a slow clock cannot refill a bucket twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from include.store.warehouse import Warehouse, quota_buckets


class SharedQuotas:
    def __init__(self, wh: Warehouse, shop: str, clock: Callable[[], float] = time.time):
        self.wh = wh
        self.shop = shop
        self._clock = clock
        self._known: set[str] = set()
        self._lock = threading.Lock()
        pg = wh.dialect == "postgresql"
        self._least: Any = sa.func.least if pg else sa.func.min
        self._greatest: Any = sa.func.greatest if pg else sa.func.max
        self._insert = postgresql.insert if pg else sqlite.insert

    def _change(
        self,
        bucket: str,
        rate: float,
        burst: float,
        cost: float = 0.0,
        refund: float = 0.0,
        at_most: float | None = None,
    ) -> float:
        """Refill the bucket to now, then apply the change; returns the level after it."""
        now = self._clock()
        t = quota_buckets.c
        level = self._least(burst, t.tokens + self._greatest(0.0, now - t.stamp) * rate + refund) - cost
        if at_most is not None:
            level = self._least(level, at_most)
        self._create(bucket, burst, now)
        with self.wh.engine.begin() as conn:
            return conn.execute(
                quota_buckets.update()
                .where(t.shop == self.shop, t.bucket == bucket)
                .values(tokens=level, stamp=self._greatest(t.stamp, now))
                .returning(t.tokens)
            ).scalar_one()

    def _create(self, bucket: str, burst: float, now: float) -> None:
        """A full bucket the first time anyone asks, committed before any thread updates it (an
        uncommitted row is invisible to the other connections' UPDATEs)."""
        with self._lock:
            if bucket in self._known:
                return
        with self.wh.engine.begin() as conn:
            conn.execute(
                self._insert(quota_buckets)
                .values(shop=self.shop, bucket=bucket, tokens=burst, stamp=now)
                .on_conflict_do_nothing(index_elements=["shop", "bucket"])
            )
        with self._lock:
            self._known.add(bucket)

    def reserve(self, bucket: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Take `cost` now; returns the seconds to wait before the call may go."""
        return max(0.0, -self._change(bucket, rate, burst, cost=cost) / rate)

    def settle(self, bucket: str, rate: float, burst: float, refund: float = 0.0, at_most: float | None = None) -> None:
        """Give back what a call was charged beyond its actual cost, and lower the level to what
        the platform reported (`at_most`; never raised by it: other processes' calls in flight
        are not in the platform's figure yet, and are already taken here)."""
        self._change(bucket, rate, burst, refund=refund, at_most=at_most)
