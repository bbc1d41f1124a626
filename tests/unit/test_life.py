"""The living shop's plan: a backlog of open orders beside the same daily stream."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sandbox.life import LifeSettings, ShopLife

START = datetime(2026, 11, 16, tzinfo=timezone.utc)


def test_a_backlog_is_open_orders_before_the_start_that_stay_with_their_fulfiller():
    plain = ShopLife(LifeSettings(start=START, days=2, orders_per_day=100))
    busy = ShopLife(LifeSettings(start=START, days=2, orders_per_day=100, backlog_orders=300))
    backlog = [p for p in busy.plans if p.create < START]
    assert len(backlog) == 300 and all(START - timedelta(days=3) <= p.create < START for p in backlog)
    assert all(p.kind == "seller" and p.fulfiller for p in backlog)
    # stuck for longer than the stream lasts; never failed, never asked to be cancelled
    assert all(sum(p.durations.values()) > 30 * 86400 for p in backlog)
    kinds = {(kind, index) for _, _, kind, index in busy.events}
    stuck = {busy.plans.index(p) for p in backlog}
    assert not {i for kind, i in kinds if kind in ("fulfiller_fails", "cancel_request")} & stuck
    # the daily stream keeps its moments and its choices
    daily = [p for p in busy.plans if p.create >= START]
    assert [(p.create, p.kind, p.fulfiller) for p in daily] == [(p.create, p.kind, p.fulfiller) for p in plain.plans]


@pytest.mark.parametrize("value", [-1, 1.5, 300_000])
def test_a_bad_backlog_is_named(value):
    with pytest.raises(ValueError, match="backlog_orders"):
        LifeSettings(start=START, backlog_orders=value)
