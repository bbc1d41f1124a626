"""SLA breach reports: daily figures (`sla_daily`), breached orders with their ledger chain, and
self-contained HTML/CSV files per day with a 30-day trend.

Each day is computed from what orderops knows now about every order due that day: the latest
staged state of each platform record (staging keeps one row per record, refreshed by every run
that reads it) and the ledger's own record of what orderops did and when (a tracking post or a
cancellation answer of the last run is known before a later run reads it back).

Definitions (seller-shipped TikTok orders, TikTok-label ones included; the sandbox's ground truth,
sandbox/life.py `day_figures`, uses the same):
- due on day D: `rts_sla_time` falls on D (UTC), unless the order was cancelled without being dispatched;
- two clocks. Upload clock: dispatched = tracking on TikTok (TikTok's `rts_time`, else the ledger's
  successful `post_tracking`). Carrier-scan clock (TikTok's rule since 01/2026): dispatched = In
  Transit on TikTok, TikTok's `collection_time` (the carrier's scan of tracking TikTok has). On each:
  on time / late: at or before / after `rts_sla_time`; past ship-by: not dispatched and `rts_sla_time`
  already passed when the report runs;
- Late Dispatch Rate = (late + past ship-by) / due orders, per clock; TikTok recommends at most 4% and
  may enforce above 10% (the carrier-scan rate is the one TikTok counts);
- at risk of auto-cancellation: no tracking and `shipping_due_time` within 24 h of the report; at risk
  of a late scan: tracking on TikTok, no scan, and `rts_sla_time` within the next 24 h;
- buyer cancellation requests created on D; answered when orderops' approve or reject succeeded
  (ledger) or TikTok shows the request closed (its update time); late when answered at or after
  the deadline, or still open once the deadline passed;
- hours from the fulfiller's shipment to tracking on TikTok, for orders dispatched on D (median
  and 95th percentile).
Every figure is also split by fulfiller and carrier.
"""

from __future__ import annotations

import base64
import csv
import io
import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from markupsafe import Markup, escape

from include.decide.carriers import carrier_group
from include.decide.model import as_utc
from include.report.figures import inbox_figures
from include.report.inbox import OPEN, latest_reviews
from include.report.templates import template
from include.run.runconfig import STATE_DIR
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    latest_rows,
    order_links,
    sla_daily,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
    utcnow,
)

LDR_LINE = 0.04  # TikTok's recommended most
LDR_ENFORCEMENT_LINE = 0.10  # above it TikTok "may apply enforcement actions" (LDR guide, 03/02/2026)
REPORTS_DIR_ENV = "ORDEROPS_REPORTS_DIR"
ANSWERS = ("approve_cancellation", "reject_cancellation")


def reports_dir() -> Path:
    return Path(os.environ.get(REPORTS_DIR_ENV) or STATE_DIR / "reports")


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _rows(conn, query) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(query)]


def _parse(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


@dataclass
class DayData:
    orders: pd.DataFrame  # one row per due order, with dispatch facts and fulfiller/carrier
    cancellations: pd.DataFrame  # one row per cancellation request created on the day
    dispatched: pd.DataFrame  # orders dispatched on the day, with hours from fulfiller shipment
    chains: dict[str, list[dict]]  # ledger rows per TikTok order


def load_day(wh: Warehouse, shop: str, day: date, now: datetime) -> DayData:
    start, end = _day_bounds(day)
    o, c, a = stg_tiktok_orders.c, stg_tiktok_cancellations.c, action_ledger.c
    with wh.engine.connect() as conn:
        due = _rows(
            conn,
            sa.select(stg_tiktok_orders).where(
                o.shop == shop,
                o.fulfillment_type == "FULFILLMENT_BY_SELLER",
                o.rts_sla_time >= start,
                o.rts_sla_time < end,
            ),
        )
        # dispatched on the day as TikTok says, or by orderops' own post that no read has staged yet
        posted = sa.select(a.tiktok_order_id).where(
            a.shop == shop, a.kind == "post_tracking", a.state == "succeeded", a.acted_at >= start, a.acted_at < end
        )
        shipped = _rows(
            conn,
            sa.select(stg_tiktok_orders).where(
                o.shop == shop,
                o.fulfillment_type == "FULFILLMENT_BY_SELLER",
                sa.or_(sa.and_(o.rts_time >= start, o.rts_time < end), o.tiktok_order_id.in_(posted)),
            ),
        )
        cancels = _rows(
            conn,
            sa.select(stg_tiktok_cancellations).where(
                c.shop == shop, c.cancel_type == "BUYER_CANCEL", c.create_time >= start, c.create_time < end
            ),
        )
        ids = sorted({r["tiktok_order_id"] for r in due + shipped} | {r["tiktok_order_id"] for r in cancels})
        links = {o: dict(row) for o, row in latest_rows(conn, order_links, shop, ids).items()}
        chains: dict[str, list[dict]] = {}
        for batch in range(0, len(ids), 500):
            part = ids[batch : batch + 500]
            for row in _rows(
                conn,
                sa.select(
                    a.tiktok_order_id,
                    a.kind,
                    a.rule,
                    a.state,
                    a.idempotency_key,
                    a.acted_at,
                    a.detail,
                    a.platform_request_id,
                    a.run_id,
                    a.request,
                )
                .where(a.shop == shop, a.tiktok_order_id.in_(part))
                .order_by(a.id),
            ):
                chains.setdefault(row["tiktok_order_id"], []).append(row)
        shipments = _fulfillment_shipments(conn, shop, links)

    def facts(r: dict) -> dict:
        return _order_facts(r, links.get(r["tiktok_order_id"]), chains.get(r["tiktok_order_id"], []), shipments, now)

    orders = pd.DataFrame([facts(r) for r in due], columns=ORDER_COLUMNS)
    dispatched = pd.DataFrame(
        [f for f in map(facts, shipped) if f["rts_time"] is not None and start <= f["rts_time"] < end],
        columns=ORDER_COLUMNS,
    )
    cancellations = pd.DataFrame(
        [
            _cancel_facts(r, chains.get(r["tiktok_order_id"], []), links.get(r["tiktok_order_id"]), shipments, now)
            for r in cancels
        ],
        columns=CANCEL_COLUMNS,
    )
    return DayData(orders, cancellations, dispatched, chains)


ORDER_COLUMNS = [
    "tiktok_order_id",
    "status",
    "rts_sla_time",
    "rts_time",
    "in_transit_time",
    "shipping_due_time",
    "tracking_number",
    "fulfiller",
    "carrier",
    "shipped_at",
    "on_time",
    "late",
    "past_due_no_tracking",
    "on_time_scan",
    "late_scan",
    "past_due_no_scan",
    "at_risk",
    "at_risk_no_scan",
    "cancelled",
    "hours_to_tracking",
    "link_problem",
]
CANCEL_COLUMNS = [
    "cancel_id",
    "tiktok_order_id",
    "status",
    "deadline",
    "handled_at",
    "on_time",
    "late",
    "fulfiller",
    "carrier",
]


def _fulfillment_shipments(conn, shop: str, links: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """First shipment time and carrier (include.decide.carriers.carrier_group) per linked fulfillment order."""
    wanted: dict[str, set[str]] = {"amazon_mcf": set(), "shipbob": set()}
    for link in links.values():
        if link["fulfiller"] in wanted and link["fulfillment_order_id"]:
            wanted[link["fulfiller"]].add(link["fulfillment_order_id"])
    found: dict[tuple[str, str], dict] = {}
    for fulfiller, table, key in (
        ("amazon_mcf", stg_amazon_fulfillment_orders, "seller_fulfillment_order_id"),
        ("shipbob", stg_shipbob_orders, "shipbob_order_id"),
    ):
        ids = sorted(wanted[fulfiller])
        for batch in range(0, len(ids), 500):
            for row in conn.execute(
                sa.select(table.c[key], table.c.shipments).where(
                    table.c.shop == shop, table.c[key].in_(ids[batch : batch + 500])
                )
            ):
                carrier, shipped_at = "", None
                for shipment in row.shipments or []:
                    packages = shipment.get("packages") or [shipment]
                    carrier = carrier or next((p.get("carrier") for p in packages if p.get("carrier")), "")
                    moment = _parse(shipment.get("shipped_at"))
                    if moment and (shipped_at is None or moment < shipped_at):
                        shipped_at = moment
                # one row per carrier however a fulfiller spells it (`FEDEX`, `FedEx`)
                found[(fulfiller, row[0])] = {"carrier": carrier_group(carrier), "shipped_at": shipped_at}
    return found


def _done_at(chain: list[dict], kinds: tuple[str, ...], now: datetime, cancel_id: str | None = None) -> datetime | None:
    """When orderops' first successful action of these kinds took effect (by the report's now)."""
    moments = [
        as_utc(a["acted_at"])
        for a in chain
        if a["kind"] in kinds
        and a["state"] == "succeeded"
        and a["acted_at"] is not None
        and (cancel_id is None or (a["request"] or {}).get("cancel_id") == cancel_id)
    ]
    moments = [m for m in moments if m <= now]
    return min(moments) if moments else None


def _order_facts(row: dict, link: dict | None, chain: list[dict], shipments: dict, now: datetime) -> dict:
    sla = as_utc(row["rts_sla_time"])
    rts = as_utc(row.get("rts_time"))
    if rts is None or rts > now:
        rts = _done_at(chain, ("post_tracking",), now)
    fulfiller = (link or {}).get("fulfiller") or "unlinked"
    ship = shipments.get((fulfiller, (link or {}).get("fulfillment_order_id")), {})
    # cancelled as staged, or by orderops' own approval since the last read
    cancelled = rts is None and (
        row["status"] == "CANCELLED" or _done_at(chain, ("approve_cancellation",), now) is not None
    )
    due_time = as_utc(row.get("shipping_due_time"))
    moving = as_utc(row.get("collection_time"))
    moving = moving if moving is not None and moving <= now else None
    pending = rts is None and not cancelled
    hours = None
    if rts is not None and ship.get("shipped_at") is not None and rts >= ship["shipped_at"]:
        hours = (rts - ship["shipped_at"]).total_seconds() / 3600
    return {
        "tiktok_order_id": row["tiktok_order_id"],
        "status": "CANCELLED" if cancelled else row["status"],
        "rts_sla_time": sla,
        "rts_time": rts,
        "in_transit_time": moving,
        "shipping_due_time": due_time,
        "tracking_number": row["tracking_number"],
        "fulfiller": fulfiller,
        "carrier": ship.get("carrier") or "unknown",
        "shipped_at": ship.get("shipped_at"),
        "on_time": rts is not None and rts <= sla,
        "late": rts is not None and rts > sla,
        "past_due_no_tracking": pending and sla < now,
        "on_time_scan": moving is not None and moving <= sla,
        "late_scan": moving is not None and moving > sla,
        "past_due_no_scan": moving is None and not cancelled and sla < now,
        "at_risk": pending and due_time is not None and due_time - now <= timedelta(hours=24),
        "at_risk_no_scan": rts is not None and moving is None and now <= sla <= now + timedelta(hours=24),
        "cancelled": cancelled,
        "hours_to_tracking": hours,
        "link_problem": (link or {}).get("link_problem"),
    }


def _cancel_facts(row: dict, chain: list[dict], link: dict | None, shipments: dict, now: datetime) -> dict:
    deadline = as_utc(row.get("deadline"))
    answers = [
        m
        for m in (
            _done_at(chain, ANSWERS, now, row["cancel_id"]),
            as_utc(row["update_time"]) if row["status"] != "CANCELLATION_REQUEST_PENDING" else None,
        )
        if m is not None and m <= now
    ]
    handled = min(answers) if answers else None
    fulfiller = (link or {}).get("fulfiller") or "unlinked"
    ship = shipments.get((fulfiller, (link or {}).get("fulfillment_order_id")), {})
    on_time = handled is not None and (deadline is None or handled < deadline)
    late = (handled is not None and deadline is not None and handled >= deadline) or (
        handled is None and deadline is not None and deadline <= now
    )
    return {
        "cancel_id": row["cancel_id"],
        "tiktok_order_id": row["tiktok_order_id"],
        "status": row["status"],
        "deadline": deadline,
        "handled_at": handled,
        "on_time": on_time,
        "late": late,
        "fulfiller": fulfiller,
        "carrier": ship.get("carrier") or "unknown",
    }


def _figures(orders: pd.DataFrame, dispatched: pd.DataFrame, cancels: pd.DataFrame) -> dict:
    orders = orders[~orders["cancelled"].astype(bool)] if len(orders) else orders  # cancelled undispatched: not due
    late = int(orders["late"].sum() + orders["past_due_no_tracking"].sum()) if len(orders) else 0

    def count(column: str) -> int:
        return int(orders[column].sum()) if len(orders) else 0

    hours = dispatched["hours_to_tracking"].dropna().astype(float) if len(dispatched) else pd.Series(dtype=float)
    return {
        "orders_due": int(len(orders)),
        "dispatched_on_time": int(orders["on_time"].sum()) if len(orders) else 0,
        "dispatched_late": int(orders["late"].sum()) if len(orders) else 0,
        "past_due_no_tracking": int(orders["past_due_no_tracking"].sum()) if len(orders) else 0,
        "at_risk_auto_cancel": int(orders["at_risk"].sum()) if len(orders) else 0,
        "late_dispatch_rate": round(late / len(orders), 4) if len(orders) else 0.0,
        "dispatched_on_time_scan": count("on_time_scan"),
        "dispatched_late_scan": count("late_scan"),
        "past_due_no_scan": count("past_due_no_scan"),
        "at_risk_no_scan": count("at_risk_no_scan"),
        "late_dispatch_rate_scan": round((count("late_scan") + count("past_due_no_scan")) / len(orders), 4)
        if len(orders)
        else 0.0,
        "cancel_requests": int(len(cancels)),
        "cancels_on_time": int(cancels["on_time"].sum()) if len(cancels) else 0,
        "cancels_late": int(cancels["late"].sum()) if len(cancels) else 0,
        "ship_to_tracking_median_h": round(float(hours.median()), 2) if len(hours) else None,
        "ship_to_tracking_p95_h": round(float(hours.quantile(0.95)), 2) if len(hours) else None,
    }


def daily_rows(data: DayData, shop: str, day: date) -> list[dict]:
    """sla_daily rows for one day: the whole shop, then by fulfiller, then by fulfiller and carrier
    (the carriers of the orders due or dispatched; a cancellation counts under its order's carrier)."""
    computed = utcnow()
    frames = (data.orders, data.dispatched, data.cancellations)

    def by(keys) -> list[dict]:
        """Each frame's rows per group (a group a frame lacks is absent from its dict)."""
        return [dict(list(frame.groupby(keys, sort=False))) if len(frame) else {} for frame in frames]

    def pick(groups: list[dict], key) -> list[pd.DataFrame]:
        return [found.get(key, frame.iloc[0:0]) for found, frame in zip(groups, frames, strict=True)]

    per_fulfiller, per_carrier = by("fulfiller"), by(["fulfiller", "carrier"])
    carriers = sorted(set(per_carrier[0]) | set(per_carrier[1]))
    groups: list[tuple[str, str, list[pd.DataFrame]]] = [("all", "all", list(frames))]
    for fulfiller in sorted(set().union(*per_fulfiller)):
        groups.append((fulfiller, "all", pick(per_fulfiller, fulfiller)))
        groups += [
            (fulfiller, carrier, pick(per_carrier, (fulfiller, carrier))) for f, carrier in carriers if f == fulfiller
        ]
    rows = []
    for fulfiller, carrier, (orders, dispatched, cancels) in groups:
        figures = _figures(orders, dispatched, cancels)
        rows.append(
            {
                "shop": shop,
                "day": day,
                "fulfiller": fulfiller,
                "carrier": carrier,
                **figures,
                "ldr_over_line": figures["late_dispatch_rate"] > LDR_LINE,  # the upload clock's, as before
                "computed_at": computed,
            }
        )
    return rows


def breaches(data: DayData) -> list[dict]:
    """Breached orders with the reason and the ledger chain that explains them."""
    out = []
    for _, o in data.orders.iterrows():
        kind, reason = "dispatch", None
        scan = (
            f"; carrier scan {o['in_transit_time']:%Y-%m-%d %H:%M}"
            if pd.notna(o["in_transit_time"])
            else "; no carrier scan yet"
        )
        if o["late"]:
            reason = (
                f"dispatched late: tracking at {o['rts_time']:%Y-%m-%d %H:%M}, due {o['rts_sla_time']:%Y-%m-%d %H:%M}"
                + scan
            )
        elif o["past_due_no_tracking"]:
            reason = f"past ship-by {o['rts_sla_time']:%Y-%m-%d %H:%M} with no tracking"
            if isinstance(o["link_problem"], str) and o["link_problem"]:  # pandas holds a missing one as NaN
                reason += f" ({o['link_problem']})"
        elif o["late_scan"] or o["past_due_no_scan"]:  # the upload was in time; TikTok counts the scan
            kind = "carrier_scan"
            reason = (
                f"tracking at {o['rts_time']:%Y-%m-%d %H:%M} in time, but "
                + (
                    f"the carrier's first scan came {o['in_transit_time']:%Y-%m-%d %H:%M}"
                    if o["late_scan"]
                    else "no carrier scan"
                )
                + f" after ship-by {o['rts_sla_time']:%Y-%m-%d %H:%M}"
            )
        if reason:
            out.append(
                {
                    "tiktok_order_id": o["tiktok_order_id"],
                    "kind": kind,
                    "reason": reason,
                    "fulfiller": o["fulfiller"],
                    "carrier": o["carrier"],
                    "chain": _chain_text(data.chains.get(o["tiktok_order_id"], [])),
                }
            )
    for _, c in data.cancellations.iterrows():
        if c["late"]:
            when = (
                f"handled {c['handled_at']:%Y-%m-%d %H:%M}"
                if c["handled_at"] is not None and not pd.isna(c["handled_at"])
                else "still pending"
            )
            out.append(
                {
                    "tiktok_order_id": c["tiktok_order_id"],
                    "kind": "cancellation",
                    "reason": f"cancellation {c['cancel_id']} {when}, deadline {c['deadline']:%Y-%m-%d %H:%M}",
                    "fulfiller": c["fulfiller"],
                    "carrier": c["carrier"],
                    "chain": _chain_text(data.chains.get(c["tiktok_order_id"], [])),
                }
            )
    return out


def _chain_text(chain: list[dict]) -> str:
    return (
        "; ".join(
            f"{a['kind']}[{a['rule']}] {a['state']}"
            + (f" ({a['detail']})" if a["detail"] else "")
            + (f" req {a['platform_request_id']}" if a["platform_request_id"] else "")
            for a in chain
        )
        or "no action"
    )


def escalations(wh: Warehouse, shop: str, day: date) -> list[dict]:
    """The day's escalations with where the inbox stands on each (open, acknowledged, resolved by whom)."""
    start, end = _day_bounds(day)
    a = action_ledger.c
    with wh.engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.tiktok_order_id, a.rule, a.request, a.run_id, a.idempotency_key)
            .where(
                # dated by the run's decision clock, so a backfilled day lists its own escalations
                a.shop == shop,
                a.kind == "escalate",
                sa.func.coalesce(a.acted_at, a.created_at) >= start,
                sa.func.coalesce(a.acted_at, a.created_at) < end,
            )
            .order_by(a.id)
        ).all()
        reviews = latest_reviews(conn, shop, [r.idempotency_key for r in rows])
    out = []
    for r in rows:
        seen = reviews.get(r.idempotency_key)
        if not seen:
            inbox = "open"
        elif seen["state"] == "open":  # decided again after it was resolved
            inbox = f"open: {seen['note']}"
        else:
            inbox = f"{seen['state']} by {seen['reviewed_by']}" + (f": {seen['note']}" if seen["note"] else "")
        out.append(
            {
                "tiktok_order_id": r.tiktok_order_id,
                "rule": r.rule,
                "reason_code": r.request.get("reason_code"),
                "detail": r.request.get("detail"),
                "run_id": r.run_id,
                "inbox": inbox,
                "review": seen["state"] if seen else OPEN,
            }
        )
    return out


def trend(wh: Warehouse, shop: str, day: date, days: int = 30) -> pd.DataFrame:
    s = sla_daily.c
    with wh.engine.connect() as conn:
        rows = _rows(
            conn,
            sa.select(sla_daily)
            .where(
                s.shop == shop,
                s.fulfiller == "all",
                s.carrier == "all",
                s.day > day - timedelta(days=days),
                s.day <= day,
            )
            .order_by(s.day),
        )
    return pd.DataFrame(rows)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", transform=ax.transAxes, ha="center", va="center", color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def _daily_axis(ax, day: date, days: int) -> None:
    """One tick per day (or per few days) over the whole window, whatever days have data."""
    import matplotlib.dates as mdates

    ax.set_xlim(
        pd.Timestamp(day - timedelta(days=days - 1)) - pd.Timedelta(hours=12),
        pd.Timestamp(day) + pd.Timedelta(hours=12),
    )
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, days // 10)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))


# Fewer days with orders due than this draw no trend chart (one day is a dot, not a trend): a
# sentence says so instead.
MIN_TREND_DAYS = 2


def _days_due(history: pd.DataFrame) -> pd.DataFrame:
    """The history's days with orders due, their scan-clock columns as numbers (empty on days
    computed before the scan clock was counted)."""
    due = history[history["orders_due"] > 0] if len(history) else history
    for column in ("late_dispatch_rate_scan", "dispatched_late_scan", "past_due_no_scan"):
        if column in due:
            due = due.assign(**{column: pd.to_numeric(due[column], errors="coerce")})
    return due


def no_trend(history: pd.DataFrame, day: date, days: int = 30) -> str | None:
    """What the report says in place of the trend charts while there is no trend to draw, else None."""
    due = _days_due(history)
    if len(due) >= MIN_TREND_DAYS:
        return None
    if len(due) == 0:
        return f"No orders were due in the {days} days up to {day:%Y-%m-%d}: no trend to show yet."
    (only,) = pd.to_datetime(due["day"])
    return (
        f"Only {only:%Y-%m-%d} had orders due in the {days} days up to {day:%Y-%m-%d}: no trend yet. The Late "
        f"Dispatch Rate and orders-due charts appear once {MIN_TREND_DAYS} days have orders due."
    )


def charts(history: pd.DataFrame, data: DayData, day: date, days: int = 30) -> dict[str, str]:
    """The report's charts as base64 PNGs: the 30-day trends once there is one (`no_trend`), and the
    day's hours from shipment to tracking."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out = {}
    due = _days_due(history)
    if no_trend(history, day, days) is None:
        moments = pd.to_datetime(due["day"])
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.set_title(f"Late Dispatch Rate, last {days} days")
        ax.plot(moments, due["late_dispatch_rate_scan"] * 100, marker="o", label="by carrier scan (TikTok's)")
        ax.plot(moments, due["late_dispatch_rate"] * 100, marker=".", linestyle=":", label="by tracking upload")
        ax.axhline(LDR_LINE * 100, color="orange", linestyle="--", label="4% recommended")
        ax.axhline(LDR_ENFORCEMENT_LINE * 100, color="red", linestyle="--", label="10% enforcement")
        ax.set_ylabel("%")
        ax.legend(loc="upper left", fontsize=8)
        _daily_axis(ax, day, days)
        out["ldr_trend"] = _png(fig)
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.set_title("Orders due per day")
        # side by side, so that neither hides the other
        ax.bar(moments - pd.Timedelta(hours=5), due["orders_due"], width=0.4, label="due", color="#9bb7d4")
        ax.bar(
            moments + pd.Timedelta(hours=5),
            due["dispatched_late_scan"] + due["past_due_no_scan"],
            width=0.4,
            label="late or not scanned by ship-by",
            color="#d9534f",
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # orders come whole
        ax.legend(loc="upper left", fontsize=8)
        _daily_axis(ax, day, days)
        out["volume_trend"] = _png(fig)
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.set_title("Hours from fulfiller shipment to tracking on TikTok (this day)")
    hours = (
        data.dispatched["hours_to_tracking"].dropna().astype(float) if len(data.dispatched) else pd.Series(dtype=float)
    )
    if len(hours):
        ax.hist(hours, bins=20, color="#5cb85c")
        ax.set_xlabel("hours")
    else:
        _empty(ax, "shipment reached TikTok this day")
    out["ship_to_tracking"] = _png(fig)
    return out


# Column headers as a person reads them.
HEADERS = {
    "fulfiller": "Fulfiller",
    "carrier": "Carrier",
    "orders_due": "Due",
    "dispatched_on_time": "On time",
    "dispatched_late": "Late",
    "past_due_no_tracking": "Past ship-by, no tracking",
    "late_dispatch_rate": "Late Dispatch Rate (upload)",
    "dispatched_on_time_scan": "Scanned on time",
    "dispatched_late_scan": "Scanned late",
    "past_due_no_scan": "Past ship-by, no scan",
    "late_dispatch_rate_scan": "Late Dispatch Rate (carrier scan)",
    "at_risk_auto_cancel": "At risk of auto-cancel",
    "at_risk_no_scan": "At risk of a late scan",
    "cancel_requests": "Cancel requests",
    "cancels_on_time": "Answered on time",
    "cancels_late": "Answered late",
    "ship_to_tracking_median_h": "Hours to tracking (median)",
    "ship_to_tracking_p95_h": "Hours to tracking (p95)",
    "tiktok_order_id": "TikTok order",
    "kind": "Breach",
    "reason": "Why",
    "chain": "What orderops did",
    "rule": "Rule",
    "reason_code": "Reason",
    "detail": "Detail",
    "run_id": "Run",
    "inbox": "Inbox",
}


def _header(column: str) -> Markup:
    """A column's header; a hyphenated word (ship-by, auto-cancel) is kept whole, since a browser
    would break a line after its hyphen."""
    return Markup(" ").join(
        Markup('<span class="word">{}</span>').format(word) if "-" in word else escape(word)
        for word in HEADERS.get(column, column).split(" ")
    )


def _cell(column: str, value: Any) -> str:
    """A value as text: blanks for what is unknown, never None or NaN; rates as percentages."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if column in ("late_dispatch_rate", "late_dispatch_rate_scan"):
        return f"{value * 100:.2f} %"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


# The page's key figures, in order
FIGURES = (
    ("orders_due", "orders due"),
    ("dispatched_on_time_scan", "scanned on time"),
    ("dispatched_late_scan", "scanned late"),
    ("past_due_no_scan", "past ship-by, no scan"),
    ("dispatched_on_time", "tracking on time"),
    ("dispatched_late", "tracking late"),
    ("past_due_no_tracking", "past ship-by, no tracking"),
    ("at_risk_auto_cancel", "at risk of auto-cancel"),
    ("at_risk_no_scan", "at risk of a late scan"),
    ("cancels_on_time", "cancellations on time"),
    ("cancels_late", "cancellations late"),
)
# The split by fulfiller and carrier, one table per clock and one for cancellations and hours, so
# each fits an A4 page's width.
SPLITS = (
    (
        "By fulfiller and carrier: carrier-scan clock (TikTok's)",
        [
            "fulfiller",
            "carrier",
            "orders_due",
            "dispatched_on_time_scan",
            "dispatched_late_scan",
            "past_due_no_scan",
            "late_dispatch_rate_scan",
            "at_risk_no_scan",
        ],
    ),
    (
        "By fulfiller and carrier: tracking-upload clock",
        [
            "fulfiller",
            "carrier",
            "orders_due",
            "dispatched_on_time",
            "dispatched_late",
            "past_due_no_tracking",
            "late_dispatch_rate",
            "at_risk_auto_cancel",
        ],
    ),
    (
        "By fulfiller and carrier: cancellations and hours to tracking",
        [
            "fulfiller",
            "carrier",
            "cancel_requests",
            "cancels_on_time",
            "cancels_late",
            "ship_to_tracking_median_h",
            "ship_to_tracking_p95_h",
        ],
    ),
)
# How a column's cells are laid out: names and ids stay on one line, numbers too (right-aligned);
# free text wraps between words.
CELL_KINDS = {
    **{c: "id" for c in ("tiktok_order_id", "run_id", "fulfiller", "carrier", "kind", "rule", "reason_code")},
    **{c: "num" for _, columns in SPLITS for c in columns[2:]},
    **{c: "text" for c in ("reason", "chain", "detail")},
}
# What each figure counts, in the report itself (a reader has no other document); docs/reports.md
# holds the same wording (tests/unit/test_reports.py keeps them equal).
DEFINITIONS = (
    (
        "Orders due",
        "seller-shipped TikTok orders (TikTok-label ones included) whose ship-by time (TikTok's rts_sla_time) "
        "falls on the day, UTC; an order cancelled before it was dispatched is not due",
    ),
    (
        "Scanned on time / late",
        "the carrier-scan clock, the one TikTok counts since 01/2026: TikTok shows the order In Transit "
        "(its collection_time, the carrier's first scan of tracking TikTok has) at or before / after the ship-by time",
    ),
    ("Past ship-by, no scan", "not In Transit on TikTok and already past the ship-by time when the report was built"),
    (
        "Late Dispatch Rate (carrier scan)",
        "(scanned late + past ship-by without a scan) / orders due: the rate TikTok counts; TikTok recommends "
        "at most 4 % and may take enforcement actions above 10 %",
    ),
    (
        "Tracking on time / late",
        "the upload clock: tracking reached TikTok (TikTok's rts_time, or orderops' successful post before a later "
        "read shows it) at or before / after the ship-by time",
    ),
    ("Past ship-by, no tracking", "no tracking on TikTok and already past the ship-by time when the report was built"),
    ("Late Dispatch Rate (upload)", "(tracking late + past ship-by without tracking) / orders due; flagged over 4 %"),
    (
        "At risk of auto-cancel",
        "no tracking on TikTok yet and TikTok's auto-cancellation time (shipping_due_time) within 24 h of the report",
    ),
    ("At risk of a late scan", "tracking on TikTok, no carrier scan yet, and the ship-by time within the next 24 h"),
    (
        "Cancellations on time / late",
        "buyer cancellation requests created on the day: approved or rejected (by orderops or TikTok) before their "
        "deadline, or late: answered at or after it, or still open once it passed",
    ),
    (
        "Hours to tracking (median, p95)",
        "from the fulfiller's first shipment to tracking on TikTok, for the orders whose tracking reached TikTok "
        "on the day",
    ),
    (
        "Carrier",
        "the fulfiller's carrier under one name however the fulfiller spells it (FEDEX, FedEx and FedEx Ground "
        "are fedex); unknown until a shipment names one",
    ),
)


def render_html(
    shop: str,
    day: date,
    rows: list[dict],
    breached: list[dict],
    escalated: list[dict],
    images: dict[str, str],
    no_trend: str | None = None,
) -> str:
    return template("sla_report.html").render(
        shop=shop,
        day=day,
        total=rows[0],
        rows=rows,
        breached=breached,
        escalated=escalated,
        inbox=inbox_figures(e["review"] for e in escalated),
        images=images,
        no_trend=no_trend,
        figures=FIGURES,
        splits=SPLITS,
        kinds=CELL_KINDS,
        definitions=DEFINITIONS,
        header=_header,
        cell=_cell,
        generated=utcnow(),
    )


@dataclass
class DayReport:
    day: date
    rows: list[dict]
    breaches: list[dict]
    html_path: Path
    csv_path: Path


# What a spreadsheet takes for a formula at the start of a cell (OWASP's CSV-injection guidance): a
# text cell starting so, a carrier name such as =HYPERLINK(...) from a platform, is written with an
# apostrophe before it, which spreadsheets show as text and never evaluate.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """A CSV every spreadsheet opens as data: text cells that would start a formula are escaped."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows({key: spreadsheet_text(value) for key, value in row.items()} for row in rows)


def build_day(
    wh: Warehouse, shop: str, day: date, now: datetime | None = None, out_dir: Path | None = None
) -> DayReport:
    """Compute, store (`sla_daily`) and write one day's report files."""
    now = now or utcnow()
    data = load_day(wh, shop, day, now)
    rows = daily_rows(data, shop, day)
    with wh.engine.begin() as conn:
        conn.execute(sla_daily.delete().where(sla_daily.c.shop == shop, sla_daily.c.day == day))
        conn.execute(sla_daily.insert(), rows)
    breached = breaches(data)
    folder = (out_dir or reports_dir()) / shop / f"{day:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "breaches.csv"
    write_csv(csv_path, ["tiktok_order_id", "kind", "reason", "fulfiller", "carrier", "chain"], breached)
    history = trend(wh, shop, day)
    history.map(spreadsheet_text).to_csv(folder / "trend_30d.csv", index=False)
    html_path = folder / "report.html"
    html_path.write_text(
        render_html(
            shop, day, rows, breached, escalations(wh, shop, day), charts(history, data, day), no_trend(history, day)
        )
    )
    return DayReport(day, rows, breached, html_path, csv_path)


def report_days(day: str | None, start: datetime | None, end: datetime | None, now: datetime) -> list[date]:
    """The days a report run builds: the `day` it was asked for (YYYY-MM-DD), else its data
    interval's days, else `now`'s day. Asking for a day, rather than a logical date on that day,
    keeps a run's own times on the wall clock when the day is on the sandbox's."""
    if day:
        try:
            return [date.fromisoformat(day)]
        except ValueError:
            raise ValueError(f"param day: {day!r} is not a day (YYYY-MM-DD)") from None
    if start is not None and end is not None and start != end:
        return days_to_report(start, end)
    return [now.date()]


def days_to_report(window_start: datetime, window_end: datetime) -> list[date]:
    """Every UTC day the window touches (a daily run's interval is exactly one day)."""
    first, last = window_start.date(), (window_end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
