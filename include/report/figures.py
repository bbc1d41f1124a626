"""One definition per figure. The demo's terminal, the SLA page, the day's report and the run summary
show each number through one function here, under one name, with what it counts; two numbers that
count different things have different names (the run's tracking decisions are orders, its tracking
posts are packages; the day's cancel requests are those created that day, the run's cancellation
records read are any it listed).

Day figures are the shop-wide `sla_daily` row the report computes (include/report/reports.py) and the
SLA page lists; run figures come from the run summary (include/run/pipeline.py `summarize_run`);
inbox figures from the escalations as the SLA page lists them, with where people stand on each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from include.act.ledger import SUCCEEDED
from include.decide.model import POST_TRACKING
from include.report.inbox import OPEN

# what each figure counts, by name: the surfaces print it beside the number
COUNTS = {
    # a day (the SLA page's row, the report's totals)
    "orders_due": "seller-shipped orders whose ship-by time falls on the day (cancelled undispatched ones left out)",
    "dispatched_late": "of those, tracking reached TikTok after the ship-by time",
    "past_due_no_tracking": "of those, past the ship-by time with no tracking on TikTok",
    "late_upload_breaches": "orders due that day with tracking late or missing past ship-by (the upload clock)",
    "late_scan_breaches": "orders due that day scanned late or past ship-by with no carrier scan (TikTok's clock)",
    "cancel_requests": "buyer cancellation requests created on the day",
    "cancels_late": "of those, answered at or after the deadline, or still open past it",
    # a run (the run summary)
    "orders_decided": "orders the run decided (every order in play, whatever the rule)",
    "decisions_recorded": "of those, orders whose decision or link changed, recorded as a new row",
    "tracking_orders_decided": "orders the run decided to post tracking for (rule T1)",
    "tracking_posted": "tracking posts TikTok took from the run (one per package: an order may have several)",
    "escalated_by_run": "escalations the run made (orders it handed to a person)",
    "cancellation_records_read": "TikTok cancellation records the run read (any day they were created)",
    # the inbox (the SLA page's escalations in its period)
    "escalations_open": "escalations no one has acknowledged or resolved",
    "escalations_acknowledged": "escalations a person acknowledged and has not resolved",
    "escalations_resolved": "escalations resolved, by a person or by a later run",
}
DAY_FIGURES = (
    "orders_due",
    "dispatched_late",
    "past_due_no_tracking",
    "late_upload_breaches",
    "late_scan_breaches",
    "cancel_requests",
    "cancels_late",
)
RUN_FIGURES = (
    "orders_decided",
    "decisions_recorded",
    "tracking_orders_decided",
    "tracking_posted",
    "escalated_by_run",
    "cancellation_records_read",
)
INBOX_FIGURES = ("escalations_open", "escalations_acknowledged", "escalations_resolved")


def _known(value: Any) -> int:
    return int(value or 0)


def late_upload_breaches(day: Mapping[str, Any]) -> int:
    return _known(day.get("dispatched_late")) + _known(day.get("past_due_no_tracking"))


def late_scan_breaches(day: Mapping[str, Any]) -> int:
    return _known(day.get("dispatched_late_scan")) + _known(day.get("past_due_no_scan"))


def day_figures(day: Mapping[str, Any]) -> dict[str, int]:
    """A day's figures by name, from its shop-wide `sla_daily` row."""
    stored = {name: _known(day.get(name)) for name in DAY_FIGURES if name in day}
    return {**stored, "late_upload_breaches": late_upload_breaches(day), "late_scan_breaches": late_scan_breaches(day)}


def run_figures(summary: Mapping[str, Any]) -> dict[str, int]:
    """A run's figures by name, from its summary (`summarize_run`)."""
    actions = summary.get("actions") or {}
    return {
        "orders_decided": sum(_known(n) for n in (summary.get("decisions") or {}).values()),
        "decisions_recorded": _known(summary.get("decisions_recorded")),
        "tracking_orders_decided": _known((summary.get("decisions") or {}).get("T1")),
        "tracking_posted": _known(actions.get(f"{POST_TRACKING}:{SUCCEEDED}")),
        "escalated_by_run": len(summary.get("escalations") or ()),
        "cancellation_records_read": _known((summary.get("orders_seen") or {}).get("tiktok_cancellations")),
    }


def inbox_figures(reviews: Iterable[str]) -> dict[str, int]:
    """How many escalations stand where (`review` of each escalation the SLA page lists)."""
    found = dict.fromkeys(INBOX_FIGURES, 0)
    for review in reviews:
        found["escalations_open" if review == OPEN else f"escalations_{review}"] += 1
    return found
