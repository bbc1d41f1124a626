"""Extraction cursors: where a listing starts, when it moves, when a run sweeps."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from include import pipeline
from include.runconfig import run_settings
from include.warehouse import Warehouse

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def settings(end: datetime, **params):
    return run_settings(dag_id="orderops_sla", run_id=f"scheduled__{end:%H%M}", params={"now": end.isoformat(), **params},
                        data_interval_start=end - timedelta(minutes=30), data_interval_end=end, run_type="scheduled")


def listed(wh, s, source="shopify_orders"):
    listing = pipeline.listing_for(s, wh, source)
    pipeline.advance_cursor(wh, s, listing, listed=1, findings=0)
    return listing


def test_listings_follow_the_cursor_and_a_failed_run_leaves_no_gap(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    first = listed(wh, settings(T0))
    assert first.sweep == "first listing" and first.changed_since == T0 - timedelta(minutes=45)
    # the next run lists from where the last listing began, minus the overlap
    second = pipeline.listing_for(settings(T0 + timedelta(minutes=30)), wh, "shopify_orders")
    assert second.sweep is None and second.changed_since == T0 - timedelta(minutes=15)
    # that run fails before its listing completes: the cursor stays, so the run after it
    # lists from the last good listing, not from its own window
    third = pipeline.listing_for(settings(T0 + timedelta(minutes=60)), wh, "shopify_orders")
    assert third.changed_since == T0 - timedelta(minutes=15)
    pipeline.advance_cursor(wh, settings(T0 + timedelta(minutes=60)), third, listed=1, findings=0)
    assert pipeline.listing_for(settings(T0 + timedelta(minutes=90)), wh, "shopify_orders").changed_since \
        == T0 + timedelta(minutes=45)


def test_a_backfill_lists_its_window_and_never_moves_the_cursor_back(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    listed(wh, settings(T0))
    past = T0 - timedelta(days=2)
    backfill = run_settings(dag_id="orderops_sla", run_id="backfill__x", params={"now": T0.isoformat()},
                            data_interval_start=past - timedelta(minutes=30), data_interval_end=past, run_type="backfill")
    assert backfill.sweep == "backfill"
    listing = listed(wh, backfill)
    assert listing.changed_since == past - timedelta(minutes=45)
    assert listing.changed_until == past + timedelta(seconds=1)
    assert pipeline.listing_for(settings(T0 + timedelta(minutes=30)), wh, "shopify_orders").changed_since \
        == T0 - timedelta(minutes=15)


def test_a_run_sweeps_first_then_every_sweep_hours(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    s = settings(T0)
    assert pipeline.sweep_reason(s, wh).startswith("no sweep yet")
    for source in pipeline._sources(s):
        pipeline.advance_cursor(wh, s, pipeline.listing_for(s, wh, source), listed=0, findings=0)
    assert pipeline.sweep_reason(settings(T0 + timedelta(hours=5, minutes=30)), wh) is None
    assert pipeline.sweep_reason(settings(T0 + timedelta(hours=6)), wh) == "6 h since the last sweep"
    assert pipeline.sweep_reason(settings(T0 + timedelta(minutes=30), sweep_hours=0), wh).startswith("every run")
    assert pipeline.sweep_reason(settings(T0 + timedelta(minutes=30), sweep=True), wh) == "asked"
