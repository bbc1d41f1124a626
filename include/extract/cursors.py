"""Extraction cursors (docs/architecture.md §2): per shop and source, how far the platform's
changes are staged, when it was last swept and fully swept. A run asks `sweep_reason` and
`full_sweep_due` once (prepare_run), then each listing asks `listing_for` what to list and, once it
completed, `advance_cursor`; `missed_by_cursor` counts what a sweep found the cursor had missed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from include.decide.model import as_utc
from include.run.runconfig import RunSettings, now_for
from include.store.run_store import FULFILLER_SOURCES, UPDATED, natural_key
from include.store.warehouse import Warehouse, extraction_cursors


def sources(settings: RunSettings) -> list[str]:
    return [
        "tiktok_orders",
        "tiktok_cancellations",
        "shopify_orders",
        *(FULFILLER_SOURCES[f] for f in settings.fulfillers),
    ]


def sweep_reason(settings: RunSettings, wh: Warehouse) -> str | None:
    """Why this run lists everything in play, or None: it lists what changed since the cursors."""
    if settings.extraction.sweep:
        return settings.extraction.sweep
    if settings.sweep_hours == 0:
        return "every run (sweep_hours 0)"
    with wh.engine.connect() as conn:
        swept = dict(
            conn.execute(
                sa.select(extraction_cursors.c.source, extraction_cursors.c.swept_at).where(
                    extraction_cursors.c.shop == settings.shop
                )
            ).all()
        )
    missing = [source for source in sources(settings) if swept.get(source) is None]
    if missing:
        return f"no sweep yet of {', '.join(missing)}"
    if now_for(settings) - min(as_utc(t) for t in swept.values()) >= timedelta(hours=settings.sweep_hours):
        return f"{settings.sweep_hours:g} h since the last sweep"
    return None


def full_sweep_due(settings: RunSettings, wh: Warehouse) -> bool:
    """Whether a sweeping run lists everything in play (a first listing, a backfill, an asked sweep,
    one per `full_sweep_hours`) rather than the changes since the last sweep."""
    if (
        settings.extraction.sweep in ("asked", "backfill", "explicit window")
        or settings.full_sweep_hours <= settings.sweep_hours
    ):
        return True
    with wh.engine.connect() as conn:
        full = dict(
            conn.execute(
                sa.select(extraction_cursors.c.source, extraction_cursors.c.full_swept_at).where(
                    extraction_cursors.c.shop == settings.shop
                )
            ).all()
        )
    if any(full.get(source) is None for source in sources(settings)):
        return True
    return now_for(settings) - min(as_utc(t) for t in full.values()) >= timedelta(hours=settings.full_sweep_hours)


# A sweep between full ones lists the changes since the last sweep began, this much earlier: what
# a cursor misses is a write that became visible late, minutes, not a day, after its update time
SWEEP_OVERLAP = timedelta(hours=1)


@dataclass(frozen=True)
class Listing:
    """How a run lists one source: changes in [changed_since, changed_until) (None: up to now), and,
    when it sweeps, everything in play too. Changes from `established` (where the shop's first listing
    began) to `changed_since` that a sweep finds missing from staging are the cursor's misses."""

    source: str
    sweep: str | None
    changed_since: datetime
    changed_until: datetime | None
    established: datetime | None
    listed_until: datetime | None
    swept_at: datetime | None
    started: datetime
    full: bool = False  # a sweep of everything in play (else of the changes since the last)
    full_swept_at: datetime | None = None

    @property
    def full_sweep(self) -> bool:
        return bool(self.sweep) and self.full

    @property
    def changes_from(self) -> datetime:
        """Where the listing of changes (by update time) begins: the cursor, or for a sweep between
        full ones the last sweep's start, an hour early."""
        if not self.sweep or self.full or self.swept_at is None:
            return self.changed_since
        return min(self.swept_at - SWEEP_OVERLAP, self.changed_since)


def listing_for(settings: RunSettings, wh: Warehouse, source: str) -> Listing:
    now = now_for(settings)
    start = settings.window_start - settings.overlap
    with wh.engine.connect() as conn:
        cursor = conn.execute(
            sa.select(extraction_cursors).where(
                extraction_cursors.c.shop == settings.shop, extraction_cursors.c.source == source
            )
        ).first()
    # a backfill or an explicit window lists that window's changes (and sweeps); other runs list every
    # change since the cursor, so a failed or skipped run leaves no gap
    windowed = settings.extraction.sweep in ("backfill", "explicit window")
    until = settings.window_end + timedelta(seconds=1) if windowed and settings.window_end < now else None
    if cursor is None:
        return Listing(
            source, settings.extraction.sweep or "first listing", start, until, None, None, None, now, full=True
        )
    listed_until = as_utc(cursor.listed_until)
    since = start if windowed else min(start, listed_until - settings.overlap)
    return Listing(
        source,
        settings.extraction.sweep,
        since,
        until,
        as_utc(cursor.established_at),
        listed_until,
        as_utc(cursor.swept_at),
        now,
        full=bool(settings.extraction.sweep) and settings.extraction.full,
        full_swept_at=as_utc(cursor.full_swept_at),
    )


def advance_cursor(
    wh: Warehouse,
    settings: RunSettings,
    listing: Listing,
    listed: int,
    findings: int,
    covered_from: datetime | None = None,
) -> None:
    """After a listing completed: changes up to its start are staged when it reached that moment
    and began no later than the cursor (no gap); the cursor never moves back. `covered_from` is
    where a sweep's listing began (before the changes, e.g. every order created since the oldest
    in play): a sweep that is not a backfill's carries the cursor's start (`established_at`, from
    which the source's orders are known) back to it."""
    until = listing.listed_until
    if listing.changed_until is None and (until is None or listing.changed_since <= until):
        until = listing.started if until is None else max(until, listing.started)
    established = listing.established
    reach = min(covered_from or listing.changed_since, listing.changed_since)
    if established is None:
        established = reach
    elif listing.sweep and listing.changed_until is None:
        established = min(established, reach)
    wh.upsert(
        extraction_cursors,
        [
            dict(
                shop=settings.shop,
                source=listing.source,
                established_at=established,
                listed_until=until or listing.started,
                swept_at=listing.started if listing.sweep else listing.swept_at,
                full_swept_at=listing.started if listing.full_sweep else listing.full_swept_at,
                run_id=settings.run_id,
                mode="sweep" if listing.sweep else "incremental",
                listed=listed,
                findings=findings,
            )
        ],
    )


def missed_by_cursor(
    wh: Warehouse, settings: RunSettings, table: sa.Table, listing: Listing
) -> Callable[[list[dict]], int] | None:
    """For a sweep: counts the rows about to be staged that changed between the cursor's start and
    this run's changes listing, yet were absent from staging or older there."""
    if not listing.sweep or listing.established is None:
        return None
    key = natural_key(table)
    updated = table.c[UPDATED[table.name]]

    def count(rows: list[dict]) -> int:
        changed = {
            row[key.name]: as_utc(row[updated.name])
            for row in rows
            if row.get(updated.name) is not None
            and listing.established <= as_utc(row[updated.name]) < listing.changed_since
        }
        if not changed:
            return 0
        with wh.engine.connect() as conn:
            stored = dict(
                conn.execute(sa.select(key, updated).where(table.c.shop == settings.shop, key.in_(list(changed)))).all()
            )
        return sum(1 for k, moment in changed.items() if stored.get(k) is None or as_utc(stored[k]) < moment)

    return count
