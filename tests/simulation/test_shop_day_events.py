"""The same small shop's day with platform events on: the sandbox sends its signed webhooks and
Amazon notifications to orderops's receiver, and the runs they start put tracking on TikTok within
two minutes of the fulfiller's shipment, with the hourly schedule as the safety net. The report
still equals the truth; nothing happens twice."""

from __future__ import annotations

import pytest

from bench.simulate import simulate
from tests.simulation.test_shop_day import LIFE, START

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return simulate(
        1, 40, "0 * * * *", 7, tmp_path_factory.mktemp("simulate-events"), None, START, life_overrides=LIFE, events=True
    )


def test_events_start_runs_and_tracking_reaches_tiktok_within_two_minutes(summary):
    assert summary["extraction"]["event"] >= 10
    latency = summary["tracking_latency_minutes"]
    assert latency["count"] >= 10 and latency["p95"] <= 2.0, latency


def test_report_equals_truth_with_no_effect_twice_and_nothing_missed(summary):
    for day in summary["days"]:
        assert day["report"] == day["truth"], day["day"]
    assert summary["duplicate_effects"] == 0, summary["duplicates"]
    assert summary["missed_tracking"] == 0, summary["missed_tracking_orders"]
    assert summary["extraction"]["missed_by_cursor"] == 0


def test_every_platform_announced_and_every_delivery_was_verified_and_kept(summary):
    sent, kept = summary["events"]["sent"], summary["events"]["kept"]
    assert set(kept) == {"tiktok", "shopify", "shipbob", "amazon_mcf"}
    for platform, outcomes in sent.items():
        # nothing refused (a signature orderops could not verify would answer 401 and be retried)
        assert set(outcomes) <= {"delivered", "queued"}, (platform, outcomes)
        assert outcomes["delivered"] == sum(kept[platform].values()), (platform, outcomes, kept[platform])
    # (buyers here ask to cancel too late: with tracking on TikTok within a minute, the orders have shipped)
    assert kept["shipbob"]["waking"] >= 1 and kept["amazon_mcf"]["waking"] >= 1


def test_an_event_driven_run_lists_only_the_platforms_its_events_came_from(summary):
    # a run per shipment or request would list every platform; these list the one that spoke
    ops = summary["extraction_calls_by_operation"]
    runs = summary["extraction"]["event"] + summary["extraction"]["incremental"] + summary["extraction"]["sweep"]
    orders = summary["settings"]["orders"]
    shopify_listings = round(sum(n for op, n in ops.get("shopify", {}).items()) * orders)
    assert shopify_listings < runs
