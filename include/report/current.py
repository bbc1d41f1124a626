"""The current day's SLA report, rebuilt by the shop's own pipeline run at its end, when it is due.

Due when the run staged or acted on orders (what a day's figures are made of) and the day's report
was not built in the last `report_every_minutes` (a run setting): a shop woken hundreds of times a
day by platform events rebuilds it a few dozen times, and a quiet shop not at all until something
changes (its sweeps list everything in play every few hours). The day that ended is rebuilt for every
shop at midnight by the report DAG (dags/orderops_sla_report.py), with its final figures.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from include.store.warehouse import Warehouse, sla_daily, utcnow

log = logging.getLogger(__name__)


def last_built(wh: Warehouse, shop: str, day: date) -> datetime | None:
    """When the shop's report of `day` was last built (the wall clock), None when never."""
    with wh.engine.connect() as conn:
        built = conn.execute(
            sa.select(sa.func.max(sla_daily.c.computed_at)).where(sla_daily.c.shop == shop, sla_daily.c.day == day)
        ).scalar()
    if isinstance(built, str):  # SQLite hands an aggregate back as text
        built = datetime.fromisoformat(built)
    return built if built is None or built.tzinfo else built.replace(tzinfo=timezone.utc)


def changed(summary: dict) -> bool:
    """Whether the run staged orders or cancellations, or recorded actions: the day's inputs."""
    return any(summary["orders_seen"].values()) or bool(summary["actions"])


def report_due(summary: dict, built: datetime | None, every_minutes: float, wall_now: datetime) -> str | None:
    """Why the current day's report is due at the end of this run, or None when it is not."""
    if not changed(summary):
        return None
    if built is None:
        return "first build of the day"
    age = wall_now - built
    if age < timedelta(minutes=every_minutes):
        return None
    return f"last built {age.total_seconds() / 60:.0f} min ago"


def report_if_due(wh: Warehouse, shop: str, now: datetime, summary: dict, every_minutes: float) -> dict:
    """Build the shop's report of `now`'s day when due; what was done, for the task's result."""
    from include.report.reports import build_day

    day = now.date()
    reason = report_due(summary, last_built(wh, shop, day), every_minutes, utcnow())
    if reason is None:
        return {"day": str(day), "built": False}
    report = build_day(wh, shop, day, now=now)
    total = report.rows[0]
    log.info(
        "SLA report of %s %s (%s): due %s, LDR %.2f%%, breaches %d -> %s",
        shop,
        day,
        reason,
        total["orders_due"],
        100 * total["late_dispatch_rate"],
        len(report.breaches),
        report.html_path,
    )
    return {"day": str(day), "built": True, "reason": reason, "html": str(report.html_path)}
