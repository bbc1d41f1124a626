"""Extraction cursors: where a listing starts, when it moves, when a run sweeps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from include.decide.model import as_utc
from include.extract import cursors, listings
from include.run import pipeline
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse, extraction_cursors
from orderops_provider.tiktok_order_id import TikTokIdRules

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def settings(end: datetime, **params):
    return run_settings(
        dag_id="orderops_sla",
        run_id=f"scheduled__{end:%H%M}",
        params={"now": end.isoformat(), **params},
        data_interval_start=end - timedelta(minutes=30),
        data_interval_end=end,
        run_type="scheduled",
    )


def listed(wh, s, source="shopify_orders"):
    listing = cursors.listing_for(s, wh, source)
    cursors.advance_cursor(wh, s, listing, listed=1, findings=0)
    return listing


def test_listings_follow_the_cursor_and_a_failed_run_leaves_no_gap(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    first = listed(wh, settings(T0))
    assert first.sweep == "first listing" and first.changed_since == T0 - timedelta(minutes=45)
    # the next run lists from where the last listing began, minus the overlap
    second = cursors.listing_for(settings(T0 + timedelta(minutes=30)), wh, "shopify_orders")
    assert second.sweep is None and second.changed_since == T0 - timedelta(minutes=15)
    # that run fails before its listing completes: the cursor stays, so the run after it
    # lists from the last good listing, not from its own window
    third = cursors.listing_for(settings(T0 + timedelta(minutes=60)), wh, "shopify_orders")
    assert third.changed_since == T0 - timedelta(minutes=15)
    cursors.advance_cursor(wh, settings(T0 + timedelta(minutes=60)), third, listed=1, findings=0)
    assert cursors.listing_for(
        settings(T0 + timedelta(minutes=90)), wh, "shopify_orders"
    ).changed_since == T0 + timedelta(minutes=45)


def test_a_backfill_lists_its_window_and_never_moves_the_cursor_back(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    listed(wh, settings(T0))
    past = T0 - timedelta(days=2)
    backfill = run_settings(
        dag_id="orderops_sla",
        run_id="backfill__x",
        params={"now": T0.isoformat()},
        data_interval_start=past - timedelta(minutes=30),
        data_interval_end=past,
        run_type="backfill",
    )
    assert backfill.extraction.sweep == "backfill"
    listing = listed(wh, backfill)
    assert listing.changed_since == past - timedelta(minutes=45)
    assert listing.changed_until == past + timedelta(seconds=1)
    assert cursors.listing_for(
        settings(T0 + timedelta(minutes=30)), wh, "shopify_orders"
    ).changed_since == T0 - timedelta(minutes=15)


def test_a_run_sweeps_first_then_every_sweep_hours(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    s = settings(T0)
    assert cursors.sweep_reason(s, wh).startswith("no sweep yet")
    for source in cursors.sources(s):
        cursors.advance_cursor(wh, s, cursors.listing_for(s, wh, source), listed=0, findings=0)
    assert cursors.sweep_reason(settings(T0 + timedelta(hours=5, minutes=30)), wh) is None
    assert cursors.sweep_reason(settings(T0 + timedelta(hours=6)), wh) == "6 h since the last sweep"
    assert cursors.sweep_reason(settings(T0 + timedelta(minutes=30), sweep_hours=0), wh).startswith("every run")
    assert cursors.sweep_reason(settings(T0 + timedelta(minutes=30), sweep=True), wh) == "asked"


def sweep_all(wh, s):
    """prepare_run's decision, then a listing of every source (as the extract steps do)."""
    s = pipeline.prepare_run(s, wh)
    for source in cursors.sources(s):
        cursors.advance_cursor(wh, s, cursors.listing_for(s, wh, source), listed=0, findings=0)
    return s


def test_everything_in_play_is_swept_first_then_once_per_full_sweep_hours(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    first = sweep_all(wh, settings(T0))
    assert first.extraction.sweep.startswith("no sweep yet") and first.extraction.full
    later = sweep_all(wh, settings(T0 + timedelta(hours=6)))
    assert later.extraction.sweep == "6 h since the last sweep" and not later.extraction.full
    assert not sweep_all(wh, settings(T0 + timedelta(hours=12))).extraction.full
    # a day after the last full sweep, the next sweep lists everything in play again
    assert sweep_all(wh, settings(T0 + timedelta(hours=24))).extraction.full
    assert sweep_all(wh, settings(T0 + timedelta(hours=30), full_sweep_hours=0)).extraction.full  # every sweep
    assert pipeline.prepare_run(settings(T0 + timedelta(hours=31), sweep=True), wh).extraction.full  # asked
    assert not pipeline.prepare_run(settings(T0 + timedelta(hours=31)), wh).extraction.full  # no sweep at all


class Recorded:
    """The platforms as far as their listings: what each listing asked for."""

    tiktok_order_id = TikTokIdRules()  # what a Shopify client tells staging

    def __init__(self):
        self.asked: list = []
        self.tiktok: list = []

    def orders(self, query=None, **filters):
        self.asked.append(query if query is not None else filters)
        return iter(())

    def search_orders(self, filters, page_size):
        self.tiktok.append(filters)
        return iter(())

    def search_cancellations(self, filters, page_size):
        self.tiktok.append(filters)
        return iter(())


def test_a_sweep_between_full_ones_lists_the_changes_since_the_last_sweep(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    in_play_since = T0 - timedelta(days=5)  # a stalled order keeps five days in play

    tiktok: dict = {}

    def extract(end):
        s = pipeline.prepare_run(settings(end, fulfillers=["shipbob"]), wh)
        recorded = Recorded()
        platforms = Platforms(s, factory=lambda platform: recorded)
        listings.extract_tiktok(s, platforms, wh)
        listings.extract_shopify(s, platforms, wh, in_play_since)
        listings.extract_shipbob(s, platforms, wh, in_play_since)
        tiktok[end] = recorded.tiktok
        return recorded.asked

    def unix(moment: datetime) -> int:
        return int(moment.timestamp())

    assert extract(T0) == [  # the first: by creation, everything in play
        "created_at:>='2026-11-15T12:00:00Z' OR updated_at:>='2026-11-20T11:15:00Z'",
        {"start_date": in_play_since},
        {"last_update_start": T0 - timedelta(minutes=45)},
    ]
    assert extract(T0 + timedelta(minutes=30)) == [  # incremental: from the cursor
        "updated_at:>='2026-11-20T11:45:00Z'",
        {"last_update_start": T0 - timedelta(minutes=15)},
    ]
    for n in range(2, 12):
        extract(T0 + timedelta(minutes=30 * n))
    # six hours on: what changed since an hour before the last sweep, by update time
    assert extract(T0 + timedelta(hours=6)) == [
        "updated_at:>='2026-11-20T11:00:00Z'",
        {"last_update_start": T0 - timedelta(hours=1)},
    ]
    # TikTok: the first sweep lists every actionable order and pending request; the one between
    # full sweeps only the changes since an hour before the last sweep
    assert {"order_status": "AWAITING_SHIPMENT"} in tiktok[T0] and {"is_buyer_request_cancel": True} in tiktok[T0]
    assert {"cancel_status": ["CANCELLATION_REQUEST_PENDING"]} in tiktok[T0]
    six = T0 + timedelta(hours=6)
    assert tiktok[six] == [{"update_time_ge": unix(T0 - timedelta(hours=1)), "update_time_lt": unix(six) + 1}] * 2
    with wh.engine.connect() as conn:
        cursor = conn.execute(
            sa.select(extraction_cursors).where(extraction_cursors.c.source == "shopify_orders")
        ).one()
    assert as_utc(cursor.swept_at) == T0 + timedelta(hours=6) and as_utc(cursor.full_swept_at) == T0
