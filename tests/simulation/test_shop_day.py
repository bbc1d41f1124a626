"""One day of a small living shop, run on its schedule against the sandbox (real HTTP, a sandbox
process, the pipeline's own steps), checked against the sandbox's ground truth.

Settings make every order due the day it is placed (ship-by at 23:59:59 UTC the same day) and
auto-cancel the next business day, and the fulfillers work three times their usual pace, so one
simulated day holds arrivals, shipments, stalls, failures, cancellation requests, tracking posts and
breaches. The scheduled runs of the day are then run again as a backfill would, and every day is
rebuilt: the report must still equal the truth.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from bench.simulate import FIGURES, simulate

pytestmark = pytest.mark.slow

START = datetime(2026, 11, 16, tzinfo=timezone.utc)  # a Monday
LIFE = {
    "handling_business_days": 0,
    "shop_utc_offset_hours": 0,
    "auto_cancel_business_days": 1,
    "fulfiller_speed": 3,
    "cancel_request_share": 0.15,
    "stall_share": 0.1,
    "fail_share": 0.05,
    "tiktok_label_share": 0.05,
}


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    # buyers' requests need orders still without tracking: Amazon's early tracking number, posted
    # within the hour, would close most of them (`early` below is the day with it)
    return simulate(
        1,
        40,
        "0 * * * *",
        7,
        tmp_path_factory.mktemp("simulate"),
        None,
        START,
        life_overrides=LIFE,
        backfill_day=date(2026, 11, 16),
        policy={"post_aftn": False},
    )


@pytest.fixture(scope="module")
def early(tmp_path_factory):
    """The same day with Amazon's early tracking numbers posted (the default), every 30 minutes."""
    return simulate(1, 40, "*/30 * * * *", 7, tmp_path_factory.mktemp("early"), None, START, life_overrides=LIFE)


def test_amazons_early_numbers_reach_tiktok_within_the_hour_and_the_report_still_equals_the_truth(early):
    for day in early["days"]:
        assert day["report"] == day["truth"], day["day"]
    assert early["duplicate_effects"] == 0 and early["missed_tracking"] == 0
    assert early["tracking_posted_by_source"]["aftn"] >= 5
    by_source = early["order_to_tracking_minutes"]["by_source"]
    # from Awaiting Shipment: the channel app, the fulfillment order, Amazon's minutes, the next run
    assert by_source["aftn"]["p95"] < 90 and by_source["aftn"]["median"] < by_source["carrier"]["median"]


def test_both_clocks_are_counted_and_the_scan_never_comes_before_the_upload(summary):
    day = next(d for d in summary["days"] if d["day"] == "2026-11-16")["truth"]
    upload = day["dispatched_on_time"] + day["dispatched_late"]
    scanned = day["dispatched_on_time_scan"] + day["dispatched_late_scan"]
    # TikTok shows an order In Transit only once it has the tracking and the carrier scanned it
    assert 0 < scanned <= upload and day["dispatched_on_time_scan"] <= day["dispatched_on_time"]
    assert day["late_dispatch_rate_scan"] >= day["late_dispatch_rate"]


def test_the_day_happened(summary):
    day = next(d for d in summary["days"] if d["day"] == "2026-11-16")
    truth = day["truth"]
    # the stream is not trivial: orders due, some dispatched, some late or past due, requests made
    assert truth["orders_due"] >= 25 and truth["dispatched_on_time"] >= 15
    assert truth["dispatched_late"] + truth["past_due_no_tracking"] >= 1
    assert truth["cancellations"] >= 1


def test_report_equals_truth_at_the_day_end_and_after_a_backfill(summary):
    for day in summary["days"]:
        assert day["report"] == day["truth"], day["day"]  # rebuilt after the backfill
    first = next(d for d in summary["days"] if d["day"] == "2026-11-16")
    assert first["at_day_end"]["report"] == first["at_day_end"]["truth"]  # the report DAG's run at midnight
    assert set(first["truth"]) == set(FIGURES)


def test_no_effect_twice_and_no_tracking_missed(summary):
    assert summary["duplicate_effects"] == 0, summary["duplicates"]
    assert summary["missed_tracking"] == 0, summary["missed_tracking_orders"]
    latency = summary["tracking_latency_minutes"]
    assert latency["count"] >= 10 and latency["max"] <= 60  # hourly runs: within one interval
    assert summary["sop_baseline"]["tracking_latency_minutes"]["median"] > latency["median"]


def test_the_runs_late_dispatch_rate_is_the_truths_over_the_complete_days(summary):
    """An open day's orders are mostly not due yet: counting them would dilute the rate."""
    complete = [d["truth"] for d in summary["days"] if d["complete"]]
    due = sum(t["orders_due"] for t in complete)
    assert complete and due > 0
    late = sum(t["dispatched_late"] + t["past_due_no_tracking"] for t in complete)
    assert summary["late_dispatch_rate"] == round(late / due, 4)


def test_runs_list_what_changed_and_sweeps_find_nothing_missed(summary):
    extraction = summary["extraction"]
    # hourly runs, a sweep on the first run and every 6 h: the rest list only changes
    assert extraction["sweep"] >= 4 and extraction["incremental"] >= 2 * extraction["sweep"]
    assert extraction["missed_by_cursor"] == 0


def test_what_seldom_changes_is_read_again_only_by_a_sweep(summary):
    """TikTok's shipping providers per delivery option: read once, reused by the incremental runs
    (for up to 6 h), read anew by every sweep. Two delivery options exist."""
    extraction = summary["extraction"]
    orders = summary["settings"]["orders"]
    providers = round(summary["extraction_calls_by_operation"]["tiktok"]["get_shipping_providers"] * orders)
    runs = extraction["sweep"] + extraction["incremental"]
    assert 1 <= providers <= 2 * extraction["sweep"] + 2 < runs
