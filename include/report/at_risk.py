"""At-risk alerts: orders nearing one of TikTok's two deadlines reach a person while there is time
to call the fulfiller or the carrier, before the breach rather than after it.

The two deadlines (TikTok's rules of 2026):
- the ship-by time (`rts_sla_time`): TikTok counts a late dispatch unless the carrier has scanned the
  parcel (the order In Transit) by then. At risk: no tracking yet, or tracking on TikTok and no scan.
- the auto-cancellation (`shipping_due_time`): TikTok cancels an order still without tracking.
At the end of each run, every seller-shipped order at most a threshold (policy `at_risk_alert_hours`,
default 12 and 4 hours) before a deadline it has not met is alerted once per deadline and threshold:
one alert per deadline, threshold and run, listing each order with what is missing, its fulfiller,
the fulfiller's status and how long it has been in it. An order first seen under a tighter threshold
is alerted under that one only. Alerts go through `include/report/notify.py` (log, warehouse,
Slack, e-mail); `at_risk_alerts` remembers what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from include.act.ledger import FAILED, SKIPPED
from include.decide.enums import SHIPPING_TYPES, TIKTOK_SHIPPABLE_STATUSES, status_of
from include.decide.model import POST_TRACKING, as_utc
from include.report.notify import Alert, notify
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    at_risk_alerts,
    latest_rows,
    order_links,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_tiktok_orders,
)

BATCH = 500
SHIP_BY, AUTO_CANCEL = "ship_by", "auto_cancel"
DEADLINES = {
    SHIP_BY: "the ship-by time (a carrier scan by then, or a late dispatch)",
    AUTO_CANCEL: "TikTok's auto-cancellation (tracking by then, or the order is cancelled)",
}


@dataclass(frozen=True)
class AtRisk:
    tiktok_order_id: str
    due: datetime  # the deadline's moment
    hours_left: float
    fulfiller: str | None = None
    fulfillment_order_id: str | None = None
    fulfiller_status: str | None = None
    status_since: datetime | None = None  # when the fulfiller's order entered that status
    deadline: str = SHIP_BY
    missing: str = "no tracking"  # or "tracking on TikTok, no carrier scan"

    def line(self, now: datetime) -> str:
        where = (
            f"{self.fulfiller} {self.fulfillment_order_id}: {self.fulfiller_status}"
            + (f" for {_duration(now - self.status_since)}" if self.status_since else "")
            if self.fulfiller
            else "no fulfillment order linked"
        )
        what = "ship by" if self.deadline == SHIP_BY else "auto-cancel at"
        return (
            f"{self.tiktok_order_id} {what} {self.due:%Y-%m-%d %H:%M} UTC "
            f"({self.hours_left:.1f} h left): {self.missing}; {where}"
        )


def _duration(span: timedelta) -> str:
    hours = max(span.total_seconds(), 0) / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def _batches(ids: list[str]):
    for i in range(0, len(ids), BATCH):
        yield ids[i : i + BATCH]


def orders_at_risk(wh: Warehouse, shop: str, now: datetime, within_hours: float) -> list[AtRisk]:
    """Seller-shipped orders within `within_hours` of a deadline they have not met and not yet past
    it: the ship-by time without a carrier scan (no tracking yet, none posted or being posted; or
    tracking and no scan), the auto-cancellation without tracking; soonest first."""
    o, a = stg_tiktok_orders.c, action_ledger.c
    horizon = now + timedelta(hours=within_hours)
    with wh.engine.connect() as conn:
        open_orders = [
            r
            for r in conn.execute(
                sa.select(
                    o.tiktok_order_id, o.rts_sla_time, o.shipping_due_time, o.tracking_number, o.collection_time, o.raw
                ).where(
                    o.shop == shop,
                    o.status.in_((*TIKTOK_SHIPPABLE_STATUSES, "AWAITING_COLLECTION")),
                    o.collection_time.is_(None),
                    sa.or_(
                        sa.and_(o.rts_sla_time > now, o.rts_sla_time <= horizon),
                        sa.and_(o.tracking_number == "", o.shipping_due_time > now, o.shipping_due_time <= horizon),
                    ),
                )
            )
            if status_of(r.raw, "shipping_type", SHIPPING_TYPES) != "TIKTOK"
        ]

        def near(moment) -> bool:
            return moment is not None and now < as_utc(moment) <= horizon

        waiting = [
            r for r in open_orders if near(r.rts_sla_time) or (not r.tracking_number and near(r.shipping_due_time))
        ]
        ids = [r.tiktok_order_id for r in waiting]
        posting: set[str] = set()
        links = latest_rows(conn, order_links, shop, ids)  # TikTok order id -> its current link
        for part in _batches(ids):
            posting |= set(
                conn.execute(
                    sa.select(a.tiktok_order_id).where(
                        a.shop == shop,
                        a.kind == POST_TRACKING,
                        a.tiktok_order_id.in_(part),
                        a.state.not_in((FAILED, SKIPPED)),
                    )
                ).scalars()
            )
        statuses: dict[tuple[str, str], tuple[str, datetime | None]] = {}
        for fulfiller, table, key, since_column in (
            ("amazon_mcf", stg_amazon_fulfillment_orders, "seller_fulfillment_order_id", "status_updated_at"),
            ("shipbob", stg_shipbob_orders, "shipbob_order_id", "last_update_at"),
        ):
            wanted = sorted(
                {
                    linked["fulfillment_order_id"]
                    for linked in links.values()
                    if linked["fulfiller"] == fulfiller and linked["fulfillment_order_id"]
                }
            )
            for part in _batches(wanted):
                for row in conn.execute(
                    sa.select(table.c[key], table.c.status, table.c[since_column]).where(
                        table.c.shop == shop, table.c[key].in_(part)
                    )
                ):
                    statuses[(fulfiller, row[0])] = (row[1], as_utc(row[2]))
    found = []
    for r in waiting:
        linked: Any = links.get(r.tiktok_order_id) or {"fulfiller": None, "fulfillment_order_id": None}
        status, since = statuses.get((linked["fulfiller"], linked["fulfillment_order_id"]), (None, None))
        # tracking on TikTok, or orderops's post of it on its way: what can still be missing is the scan
        tracked = bool(r.tracking_number) or r.tiktok_order_id in posting
        risks = []
        if near(r.rts_sla_time):
            risks.append((SHIP_BY, r.rts_sla_time, "tracking on TikTok, no carrier scan" if tracked else "no tracking"))
        if not tracked and near(r.shipping_due_time):
            risks.append((AUTO_CANCEL, r.shipping_due_time, "no tracking"))
        for deadline, moment, missing in risks:
            due = as_utc(moment)
            found.append(
                AtRisk(
                    r.tiktok_order_id,
                    due,
                    (due - now).total_seconds() / 3600,
                    linked["fulfiller"],
                    linked["fulfillment_order_id"],
                    status,
                    since,
                    deadline,
                    missing,
                )
            )
    return sorted(found, key=lambda x: (x.due, x.tiktok_order_id, x.deadline))


def alert_at_risk(
    wh: Warehouse, warehouse_url: str, shop: str, dag_id: str, run_id: str, now: datetime, thresholds: tuple[float, ...]
) -> dict[tuple[str, float], list[str]]:
    """Send this run's at-risk alerts; returns the orders alerted per deadline and threshold."""
    if not thresholds:
        return {}
    tightest_first = sorted(thresholds)
    at_risk = orders_at_risk(wh, shop, now, max(thresholds))
    t = at_risk_alerts.c
    with wh.engine.connect() as conn:
        done = {
            (r.tiktok_order_id, r.deadline, r.threshold_hours)
            for part in _batches(sorted({x.tiktok_order_id for x in at_risk}))
            for r in conn.execute(
                sa.select(t.tiktok_order_id, t.deadline, t.threshold_hours).where(
                    t.shop == shop, t.tiktok_order_id.in_(part)
                )
            )
        }
    alerted: dict[tuple[str, float], list[AtRisk]] = {}
    dialect = postgresql if wh.dialect == "postgresql" else sqlite
    with wh.engine.begin() as conn:
        for order in at_risk:
            crossed = [h for h in tightest_first if order.hours_left <= h]
            for hours in crossed:
                if (order.tiktok_order_id, order.deadline, hours) in done:
                    continue
                # alerted under the tightest threshold it has crossed; the wider ones count as passed
                sent = hours == crossed[0]
                claimed = conn.execute(
                    dialect.insert(at_risk_alerts)
                    .values(
                        shop=shop,
                        tiktok_order_id=order.tiktok_order_id,
                        deadline=order.deadline,
                        threshold_hours=hours,
                        run_id=run_id,
                        alerted_at=now,
                        sent=sent,
                    )
                    .on_conflict_do_nothing(index_elements=["shop", "tiktok_order_id", "deadline", "threshold_hours"])
                ).rowcount
                if sent and claimed:  # a run beside this one that got there first sends it instead
                    alerted.setdefault((order.deadline, hours), []).append(order)
    for (deadline, hours), orders in sorted(alerted.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        detail = (
            f"{len(orders)} order(s) of shop {shop} {hours:g} h or less before {DEADLINES[deadline]}:\n"
            + "\n".join(order.line(now) for order in orders)
        )
        notify(Alert(kind="at_risk", dag_id=dag_id, run_id=run_id, detail=detail), warehouse_url)
    return {key: [o.tiktok_order_id for o in orders] for key, orders in alerted.items()}
