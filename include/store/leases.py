"""One run of a shop at a time, across the shop's two DAGs.

A shop's pipeline DAG (its scheduled, manual and backfill runs, many tasks each) and its event DAG
(one task per wake) are separate DAGs, so Airflow's `max_active_runs` cannot keep them apart. Every
guarantee of a run (cursors, claims of platform events, the decisions an action rests on) was proven
with one run of a shop at a time, so a run holds the shop's lease while it works: taken with one
conditional UPDATE (atomic on SQLite and PostgreSQL), held until the run releases it or its
`expires_at` (the wall clock) passes, so a holder that died frees it on its own.

An event task that finds the lease held does not wait in a worker slot: it marks the lease
`wake_after` and ends; the holder rings the shop's doorbell when it releases (the events it left
wait in the inbox, and the ring starts the event task again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from include.store.warehouse import Warehouse, shop_leases, utcnow


@dataclass(frozen=True)
class Holder:
    run_id: str
    dag_id: str
    expires_at: datetime


class ShopLease:
    def __init__(self, wh: Warehouse, shop: str, now: Callable[[], datetime] = utcnow):
        self.wh, self.shop, self.now = wh, shop, now

    def take(self, run_id: str, dag_id: str, ttl: timedelta, *, wake_after: bool = False) -> Holder | None:
        """Take (or renew, for the same run) the shop's lease for `ttl`; None when taken, else who
        holds it. `wake_after`: when another holds it, ask that holder to ring the doorbell when done."""
        t = shop_leases.c
        now = self.now()
        with self.wh.engine.begin() as conn:
            self.wh.upsert(shop_leases, [{"shop": self.shop}], conn=conn)  # the row exists (free) from here on
            took = conn.execute(
                shop_leases.update()
                .where(
                    t.shop == self.shop,
                    sa.or_(t.holder.is_(None), t.holder == run_id, t.expires_at < now),
                )
                .values(
                    holder=run_id,
                    dag_id=dag_id,
                    # a new holder claims the waiting events itself: no ring is owed
                    wake_after=sa.case((t.holder == run_id, t.wake_after), else_=sa.false()),
                    taken_at=sa.case((t.holder == run_id, t.taken_at), else_=now),
                    expires_at=now + ttl,
                )
            ).rowcount
            if took:
                return None
            if wake_after:
                conn.execute(shop_leases.update().where(t.shop == self.shop).values(wake_after=True))
            row = conn.execute(sa.select(t.holder, t.dag_id, t.expires_at).where(t.shop == self.shop)).one()
        return Holder(row.holder, row.dag_id, row.expires_at)

    def release(self, run_id: str) -> bool:
        """Free the lease if `run_id` holds it; returns whether an event task asked to be woken."""
        t = shop_leases.c
        with self.wh.engine.begin() as conn:
            row = conn.execute(
                sa.select(t.wake_after).where(t.shop == self.shop, t.holder == run_id).with_for_update()
            ).one_or_none()
            if row is None:
                return False
            conn.execute(
                shop_leases.update()
                .where(t.shop == self.shop, t.holder == run_id)
                .values(holder=None, dag_id=None, expires_at=None, wake_after=False)
            )
        return bool(row.wake_after)
