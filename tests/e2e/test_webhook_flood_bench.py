"""`make bench-flood` works end to end on a small flood: the receiver in its own process keeps every
signed delivery once and the result holds the figures docs/performance.md renders. (The latency
itself is the benchmark's to measure, not a timed test's.)"""

from __future__ import annotations

import json

import pytest

from bench import webhook_flood


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_small_flood_is_kept_whole_and_measured(warehouse_url, tmp_path):
    out = tmp_path / "webhook-flood.json"
    code = webhook_flood.main(["--deliveries", "30", "--clients", "2", "--warehouse", warehouse_url, "--out", str(out)])
    result = json.loads(out.read_text())["result"]
    assert result["answers"] == {"200": 30} and result["kept"] == 30
    assert result["health_during_flood"]["count"] >= 1 and result["receiver_cpu_seconds"] > 0
    assert code == (0 if result["floor"]["met"] else 1)


def test_the_deliveries_are_signed_as_the_platforms_sign_them():
    from datetime import datetime, timezone

    from include.events import platform_events as events

    now = datetime.now(timezone.utc)
    read = {
        "tiktok": lambda b, h: events.tiktok_event(
            b, h, webhook_flood.TIKTOK_KEY, webhook_flood.TIKTOK_SECRET, now, webhook_flood.TIKTOK_SHOP
        ),
        "shopify": lambda b, h: events.shopify_event(b, h, webhook_flood.SHOPIFY_SECRET, webhook_flood.SHOPIFY_DOMAIN),
        "shipbob": lambda b, h: events.shipbob_event(b, h, webhook_flood.SHIPBOB_SECRET, now),
    }
    seen = set()
    for n in range(30):
        platform, body, headers = webhook_flood.delivery(n)
        seen.add(read[platform](body, headers).event_id)
    assert len(seen) == 30  # each a new event
