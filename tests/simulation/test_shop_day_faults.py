"""The one-day test shop with platform events, and with what platforms sometimes send mixed into
the sandbox's webhooks (`make simulate EVENTS=on WEBHOOK_FAULTS=stale,replay,cross_shop,old`):
bodies that disagree with the fulfiller, captured deliveries re-sent with fresh unsigned headers,
deliveries for another shop of the same app, deliveries past their platform's tolerance. None of it
puts wrong tracking on TikTok; each kind is refused (or, for a stale body, contradicted by the read
and counted), and the report still equals the truth."""

from __future__ import annotations

import pytest

from bench import webhook_faults
from bench.simulate import main, simulate
from tests.simulation.test_shop_day import LIFE, START

pytestmark = pytest.mark.slow

FAULTS = ("stale", "replay", "cross_shop", "old")


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return simulate(
        1,
        40,
        "0 * * * *",
        7,
        tmp_path_factory.mktemp("simulate-faults"),
        None,
        START,
        life_overrides=LIFE,
        events=True,
        webhook_faults=FAULTS,
    )


def test_no_fault_puts_tracking_on_tiktok_the_fulfiller_does_not_show(summary):
    assert summary["wrong_tracking"] == 0, summary["wrong_tracking_orders"]
    assert summary["settings"]["webhook_faults"] == list(FAULTS)


def test_each_fault_was_sent_and_refused_or_contradicted(summary):
    events = summary["events"]
    sent, refused = events["faults"]["sent"], events["refused"]
    assert set(sent) == set(FAULTS), sent
    # a captured body re-sent with fresh unsigned headers: kept once (TikTok, Shopify), or its
    # signature no longer matches (ShipBob signs its webhook-id and -timestamp)
    assert sent["replay"]["shopify"] == {"delivered": sent["replay"]["shopify"]["delivered"]}
    assert refused["duplicate"] == sum(n for p in ("tiktok", "shopify") for n in sent["replay"].get(p, {}).values())
    assert refused.get("signature", 0) == sum(sent["replay"].get("shipbob", {}).values())
    # another shop of the same app, and deliveries past the tolerance: 401, nothing kept
    assert refused["other_shop"] == sum(n for per in sent["cross_shop"].values() for n in per.values()) > 0
    assert refused["old"] == sum(n for per in sent["old"].values() for n in per.values()) > 0
    assert all(set(per) == {"http 401"} for f in ("cross_shop", "old") for per in sent[f].values())
    # a stale body is authentic, so kept; the run it wakes reads the fulfiller and counts it
    stale = sum(n for per in sent["stale"].values() for n in per.values())
    assert stale > 0 and events["disagreed"] == stale
    assert set(refused) <= {"duplicate", "signature", "other_shop", "old"}, refused  # no rate, no 400


def test_report_equals_truth_with_no_effect_twice_and_nothing_missed(summary):
    for day in summary["days"]:
        assert day["report"] == day["truth"], day["day"]
    assert summary["duplicate_effects"] == 0, summary["duplicates"]
    assert summary["missed_tracking"] == 0, summary["missed_tracking_orders"]
    latency = summary["tracking_latency_minutes"]
    assert latency["count"] >= 10 and latency["p95"] <= 2.0, latency


def test_an_unknown_fault_is_named_before_anything_starts():
    with pytest.raises(SystemExit, match="unknown fault\\(s\\) late; known: stale, replay, cross_shop, old"):
        webhook_faults.parse("stale,late")
    assert webhook_faults.parse(" stale, old ,") == ("stale", "old")
    assert webhook_faults.parse("") == ()
    with pytest.raises(SystemExit, match="unknown fault"):
        main(["--events", "on", "--webhook-faults", "stale,late"])
    with pytest.raises(SystemExit, match="WEBHOOK_FAULTS needs EVENTS=on or EVENTS=both"):
        main(["--webhook-faults", "stale"])
