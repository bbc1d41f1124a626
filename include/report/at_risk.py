"""At-risk alerts: orders still without tracking as their ship-by time nears reach a person while
there is time to call the fulfiller, before the breach rather than after it.

At the end of each run, every seller-shipped order waiting for tracking whose `rts_sla_time` is at
most a threshold away (policy `at_risk_alert_hours`, default 12 and 4 hours) and not yet past, with
no tracking posted or on its way, is alerted once per threshold: one alert per threshold and run,
listing each order with its fulfiller, the fulfiller's status and how long it has been in it. An
order first seen under a tighter threshold is alerted under that one only. Alerts go through
`include/report/notify.py` (log, warehouse, Slack, e-mail); `at_risk_alerts` remembers what was sent.
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
    order_links,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_tiktok_orders,
)

BATCH = 500


@dataclass(frozen=True)
class AtRisk:
    tiktok_order_id: str
    rts_sla_time: datetime
    hours_left: float
    fulfiller: str | None = None
    fulfillment_order_id: str | None = None
    fulfiller_status: str | None = None
    status_since: datetime | None = None  # when the fulfiller's order entered that status

    def line(self, now: datetime) -> str:
        where = (
            f"{self.fulfiller} {self.fulfillment_order_id}: {self.fulfiller_status}"
            + (f" for {_duration(now - self.status_since)}" if self.status_since else "")
            if self.fulfiller
            else "no fulfillment order linked"
        )
        return (
            f"{self.tiktok_order_id} ship by {self.rts_sla_time:%Y-%m-%d %H:%M} UTC "
            f"({self.hours_left:.1f} h left); {where}"
        )


def _duration(span: timedelta) -> str:
    hours = max(span.total_seconds(), 0) / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def _batches(ids: list[str]):
    for i in range(0, len(ids), BATCH):
        yield ids[i : i + BATCH]


def orders_at_risk(wh: Warehouse, shop: str, run_id: str, now: datetime, within_hours: float) -> list[AtRisk]:
    """Orders waiting for the seller's tracking, due within `within_hours` and not yet past, with no
    tracking on TikTok and none posted or being posted by orderops; soonest first."""
    o, a, link = stg_tiktok_orders.c, action_ledger.c, order_links.c
    with wh.engine.connect() as conn:
        waiting = [
            r
            for r in conn.execute(
                sa.select(o.tiktok_order_id, o.rts_sla_time, o.raw).where(
                    o.shop == shop, o.status.in_(TIKTOK_SHIPPABLE_STATUSES), o.tracking_number == ""
                )
            )
            if r.rts_sla_time is not None
            and status_of(r.raw, "shipping_type", SHIPPING_TYPES) != "TIKTOK"
            and now < as_utc(r.rts_sla_time) <= now + timedelta(hours=within_hours)
        ]
        ids = [r.tiktok_order_id for r in waiting]
        posting: set[str] = set()
        links: dict[str, Any] = {}  # TikTok order id -> its link row
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
            links |= {
                r.tiktok_order_id: r
                for r in conn.execute(
                    sa.select(link.tiktok_order_id, link.fulfiller, link.fulfillment_order_id).where(
                        link.shop == shop, link.run_id == run_id, link.tiktok_order_id.in_(part)
                    )
                )
            }
        statuses: dict[tuple[str, str], tuple[str, datetime | None]] = {}
        for fulfiller, table, key, since_column in (
            ("amazon_mcf", stg_amazon_fulfillment_orders, "seller_fulfillment_order_id", "status_updated_at"),
            ("shipbob", stg_shipbob_orders, "shipbob_order_id", "last_update_at"),
        ):
            wanted = sorted(
                {
                    linked.fulfillment_order_id
                    for linked in links.values()
                    if linked.fulfiller == fulfiller and linked.fulfillment_order_id
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
        if r.tiktok_order_id in posting:
            continue
        linked = links.get(r.tiktok_order_id)
        status, since = (
            statuses.get((linked.fulfiller, linked.fulfillment_order_id), (None, None)) if linked else (None, None)
        )
        due = as_utc(r.rts_sla_time)
        found.append(
            AtRisk(
                r.tiktok_order_id,
                due,
                (due - now).total_seconds() / 3600,
                linked.fulfiller if linked else None,
                linked.fulfillment_order_id if linked else None,
                status,
                since,
            )
        )
    return sorted(found, key=lambda x: (x.rts_sla_time, x.tiktok_order_id))


def alert_at_risk(
    wh: Warehouse, warehouse_url: str, shop: str, dag_id: str, run_id: str, now: datetime, thresholds: tuple[float, ...]
) -> dict[float, list[str]]:
    """Send this run's at-risk alerts; returns the orders alerted per threshold."""
    if not thresholds:
        return {}
    tightest_first = sorted(thresholds)
    at_risk = orders_at_risk(wh, shop, run_id, now, max(thresholds))
    t = at_risk_alerts.c
    with wh.engine.connect() as conn:
        done = {
            (r.tiktok_order_id, r.threshold_hours)
            for part in _batches([x.tiktok_order_id for x in at_risk])
            for r in conn.execute(
                sa.select(t.tiktok_order_id, t.threshold_hours).where(t.shop == shop, t.tiktok_order_id.in_(part))
            )
        }
    alerted: dict[float, list[AtRisk]] = {}
    dialect = postgresql if wh.dialect == "postgresql" else sqlite
    with wh.engine.begin() as conn:
        for order in at_risk:
            crossed = [h for h in tightest_first if order.hours_left <= h]
            for hours in crossed:
                if (order.tiktok_order_id, hours) in done:
                    continue
                # alerted under the tightest threshold it has crossed; the wider ones count as passed
                sent = hours == crossed[0]
                claimed = conn.execute(
                    dialect.insert(at_risk_alerts)
                    .values(
                        shop=shop,
                        tiktok_order_id=order.tiktok_order_id,
                        threshold_hours=hours,
                        run_id=run_id,
                        alerted_at=now,
                        sent=sent,
                    )
                    .on_conflict_do_nothing(index_elements=["shop", "tiktok_order_id", "threshold_hours"])
                ).rowcount
                if sent and claimed:  # a run beside this one that got there first sends it instead
                    alerted.setdefault(hours, []).append(order)
    for hours, orders in sorted(alerted.items(), reverse=True):
        detail = (
            f"{len(orders)} order(s) of shop {shop} still without tracking {hours:g} h or less before "
            "their ship-by time:\n" + "\n".join(order.line(now) for order in orders)
        )
        notify(Alert(kind="at_risk", dag_id=dag_id, run_id=run_id, detail=detail), warehouse_url)
    return {hours: [o.tiktok_order_id for o in orders] for hours, orders in alerted.items()}
