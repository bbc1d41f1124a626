"""The operations view: what failed or is stuck in the action ledger (with a retry), how fresh each
shop's data is, and each platform's throttles and quota use over the last day.

A retry never sends anything from the web page and never makes a new key: it marks the ledger row
so the shop's next run carries it out through the same idempotency key, as a fresh attempt (the
claim counts it). A failed row goes back to `pending`: the next run that decides the order so claims
it (a refused Shopify cancel no longer stops its saga). A row stuck `in_flight` stays in flight: the
next run reads the platform before anything else (`Executor.run` reconciles a recovering claim,
`Executor.settle` one no decision asks for), so an attempt that did take effect is never sent twice.
Each retry leaves an audit row of kind `retry_action` in the ledger (who, when, what the row was).

Clocks: ledger, run and API-call times are the wall clock (`utcnow` where they are written); a
platform's "data as of" is the run's clock (the sandbox's in demos). Each figure here is computed
within one of them and says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from include.act.ledger import FAILED, IN_FLIGHT, PENDING, RETRY_ASKED, SUCCEEDED
from include.decide.model import as_utc
from include.store.warehouse import Warehouse, action_ledger, api_calls, extraction_cursors, quota_buckets, runs, utcnow

RETRY = "retry_action"
# an action is stuck when it has been in flight, lease run out, this long (two half-hour runs)
STUCK_AFTER = timedelta(hours=1)
DEFAULT_INTERVAL = timedelta(minutes=30)
# a shop or platform is stale after this many schedule intervals without a good run or listing
STALE_INTERVALS = 2
MAX_ACTIONS = 200
# kinds a retry can carry out: the ledger's platform actions (not escalations or audit rows)
RETRYABLE = (
    "post_tracking",
    "add_note",
    "cancel_fulfillment",
    "verify_fulfillment_cancel",
    "cancel_shopify_order",
    "approve_cancellation",
    "reject_cancellation",
)


class OperationsError(ValueError):
    """A retry that cannot be asked for; the message says why."""


def span_text(span: timedelta | None) -> str:
    """A time span as the pages write it: minutes, hours or days."""
    if span is None:
        return "–"
    minutes = int(span.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 2880 else f"{minutes // 1440} days"


def failed_and_stuck(
    conn, shop: str | None = None, now: datetime | None = None, stuck_after: timedelta = STUCK_AFTER
) -> list[dict]:
    """Ledger rows that failed, that are stuck in flight (lease run out, unchanged for `stuck_after`
    on the wall clock) or that wait for the retry a person asked: newest change first, MAX_ACTIONS
    at most, with their error. `status` says which: failed, stuck or retry_asked."""
    now = now or utcnow()
    a = action_ledger.c
    stuck = sa.and_(
        a.state == IN_FLIGHT,
        sa.or_(a.lease_until.is_(None), a.lease_until < now),
        a.updated_at < now - stuck_after,
    )
    asked = sa.and_(a.state == PENDING, a.detail.startswith(RETRY_ASKED))
    q = (
        sa.select(
            a.shop,
            a.tiktok_order_id,
            a.kind,
            a.rule,
            a.idempotency_key,
            a.state,
            a.detail,
            a.attempts,
            a.run_id,
            a.lease_until,
            a.updated_at,
        )
        .where(a.kind.in_(RETRYABLE), sa.or_(a.state == FAILED, stuck, asked))
        .order_by(a.updated_at.desc(), a.id.desc())
        .limit(MAX_ACTIONS)
    )
    if shop:
        q = q.where(a.shop == shop)
    found = []
    for row in conn.execute(q):
        status = "failed" if row.state == FAILED else "stuck" if row.state == IN_FLIGHT else "retry_asked"
        found.append(
            {
                **row._mapping,
                "status": status,
                "updated_at": as_utc(row.updated_at),
                "lease_until": as_utc(row.lease_until),
            }
        )
    return found


def retry(
    wh: Warehouse,
    shop: str,
    key: str,
    by: str,
    now: datetime | None = None,
    stuck_after: timedelta = STUCK_AFTER,
) -> dict:
    """Ask the shop's next run to carry out the action `key` again, through its own key: a failed row
    goes back to pending; a stuck one stays in flight for the run to read the platform first.
    Returns the audit row written."""
    if not isinstance(by, str) or not by.strip():
        raise OperationsError("a retry needs the name of who asks for it")
    now = now or utcnow()
    a = action_ledger.c
    with wh.engine.begin() as conn:
        row = conn.execute(sa.select(action_ledger).where(a.shop == shop, a.idempotency_key == key)).mappings().first()
        if row is None:
            raise OperationsError(f"no action {key!r} in shop {shop!r}")
        if row["kind"] not in RETRYABLE:
            raise OperationsError(f"a {row['kind']} is not an action a run carries out: nothing to retry")
        was, error = row["state"], row["detail"] or ""
        if was == FAILED:
            changed = conn.execute(
                action_ledger.update()
                .where(a.id == row["id"], a.state == FAILED)
                .values(
                    state=PENDING,
                    detail=f"{RETRY_ASKED}{by.strip()} at {now:%Y-%m-%d %H:%M} UTC; it had failed: {error}",
                    lease_until=None,
                    updated_at=now,
                )
            ).rowcount
            note = "the next run that decides the order so carries it out, through the same key"
        elif was == IN_FLIGHT:
            lease = as_utc(row["lease_until"])
            if lease is not None and lease >= now:
                raise OperationsError(f"{key} is being carried out now (a runner holds it until {lease:%H:%M} UTC)")
            if as_utc(row["updated_at"]) >= now - stuck_after:
                raise OperationsError(
                    f"{key} was in flight {(now - as_utc(row['updated_at'])).seconds // 60} minutes ago: "
                    "the next run reads what became of it; it is not stuck yet"
                )
            # the state stays: the next run reads the platform before anything is sent again
            changed = 1
            note = "the next run reads the platform first and sends it again only if it did not take effect"
        else:
            raise OperationsError(f"{key} is {was}: nothing to retry")
        if changed != 1:
            raise OperationsError(f"{key} changed meanwhile: reload the page")
        audit = dict(
            shop=shop,
            idempotency_key=f"{RETRY}:{key}:{now.isoformat()}",
            kind=RETRY,
            target=f"warehouse:action_ledger/{key}"[:255],
            tiktok_order_id=row["tiktok_order_id"],
            rule=row["rule"],
            decision_run_id=row["decision_run_id"],
            request={"key": key, "by": by.strip(), "was": was, "error": error, "attempts": row["attempts"]},
            state=SUCCEEDED,
            detail=f"retry of {row['kind']} asked by {by.strip()} ({was}): {note}",
            acted_at=now,
            attempts=1,
            created_at=now,
            updated_at=now,
        )
        conn.execute(action_ledger.insert().values(audit))
    return audit


@dataclass(frozen=True)
class Freshness:
    """A shop's last runs (wall clock) and each platform listing's "data as of" (the run's clock)."""

    shop: str
    interval: timedelta
    last_run: dict | None  # the newest run, any state
    last_good: dict | None  # the newest run that finished succeeded (not a dry run)
    stale: bool  # no good run within STALE_INTERVALS intervals, on the wall clock
    platforms: list[dict]  # source, data_as_of, run_id, lag (the run's clock), stale


def freshness(
    conn,
    now: datetime | None = None,
    intervals: Mapping[str, timedelta] | None = None,
    shop: str | None = None,
) -> list[Freshness]:
    """Per shop, its last run and last good run, stale when the good one finished more than
    STALE_INTERVALS schedule intervals ago (wall clock: `finished_at` is); per platform listing, its
    data as of (`listed_until`, the run's clock), stale when it lags the shop's newest window end
    (the same clock) by more than as many intervals: a listing that stopped while runs go on."""
    now = now or utcnow()
    intervals = intervals or {}
    r, c = runs.c, extraction_cursors.c
    inspector = sa.inspect(conn)
    if not inspector.has_table("runs"):
        return []
    real = [r.dry_run.is_(False), *([r.shop == shop] if shop else [])]
    good_run = sa.and_(r.state == "succeeded", r.finished_at.is_not(None))
    # per shop: its newest run, its newest good run (the newest stamps, then their rows: the runs
    # table grows by a row per run, never read whole) and its newest window end
    newest = _latest_runs(conn, r.started_at, real)
    good = _latest_runs(conn, r.finished_at, [*real, good_run])
    window_end = {
        name: as_utc(end)
        for name, end in conn.execute(sa.select(r.shop, sa.func.max(r.window_end)).where(*real).group_by(r.shop))
        if end is not None
    }
    cursors: dict[str, list[dict]] = {}
    if inspector.has_table("extraction_cursors"):
        cq = sa.select(c.shop, c.source, c.listed_until, c.run_id).order_by(c.shop, c.source)
        if shop:
            cq = cq.where(c.shop == shop)
        for row in conn.execute(cq):
            cursors.setdefault(row.shop, []).append(
                {"source": row.source, "data_as_of": as_utc(row.listed_until), "run_id": row.run_id}
            )
    found = []
    for name in sorted(set(newest) | set(cursors)):
        interval = intervals.get(name, DEFAULT_INTERVAL)
        limit = interval * STALE_INTERVALS
        last_good = good.get(name)
        platforms = []
        for cursor in cursors.get(name, []):
            end = window_end.get(name)
            lag = end - cursor["data_as_of"] if end is not None else None
            platforms.append({**cursor, "lag": lag, "stale": lag is not None and lag > limit})
        found.append(
            Freshness(
                shop=name,
                interval=interval,
                last_run=newest.get(name),
                last_good=last_good,
                stale=last_good is None or now - last_good["finished_at"] > limit,
                platforms=platforms,
            )
        )
    return found


def _latest_runs(conn, stamp: sa.Column, where: list) -> dict[str, dict]:
    """Per shop, the run with the newest `stamp` among those `where` keeps."""
    r = runs.c
    newest = sa.select(r.shop, sa.func.max(stamp).label("at")).where(*where).group_by(r.shop).subquery()
    rows = conn.execute(
        sa.select(r.shop, r.run_id, r.state, r.started_at, r.finished_at, r.window_end)
        .join(newest, sa.and_(r.shop == newest.c.shop, stamp == newest.c.at))
        .where(*where)
        .order_by(r.shop, r.run_id)
    ).mappings()
    found: dict[str, dict] = {}
    for row in rows:
        found.setdefault(
            row["shop"],
            {
                "run_id": row["run_id"],
                "state": row["state"],
                "started_at": as_utc(row["started_at"]),
                "finished_at": as_utc(row["finished_at"]),
                "window_end": as_utc(row["window_end"]),
            },
        )
    return found


def quota_use(conn, now: datetime | None = None, shop: str | None = None, since: timedelta = timedelta(days=1)) -> dict:
    """API calls, retries, throttles and failures per shop and platform of the runs started in the
    last `since` (wall clock), and each shared quota bucket's level now: {"calls": [...], "buckets": [...]}."""
    now = now or utcnow()
    inspector = sa.inspect(conn)
    calls: list[dict] = []
    buckets: list[dict] = []
    if inspector.has_table("api_calls") and inspector.has_table("runs"):
        c, r = api_calls.c, runs.c
        q = (
            sa.select(
                c.shop,
                c.platform,
                sa.func.count(sa.distinct(c.run_id)).label("runs"),
                sa.func.sum(c.calls).label("calls"),
                sa.func.sum(c.retries).label("retries"),
                sa.func.sum(c.throttled).label("throttled"),
                sa.func.sum(c.failures).label("failures"),
            )
            .select_from(api_calls.join(runs, sa.and_(r.shop == c.shop, r.run_id == c.run_id)))
            .where(r.started_at >= now - since)
            .group_by(c.shop, c.platform)
            .order_by(c.shop, c.platform)
        )
        if shop:
            q = q.where(c.shop == shop)
        calls = [
            {k: (int(v or 0) if k not in ("shop", "platform") else v) for k, v in row._mapping.items()}
            for row in conn.execute(q)
        ]
    if inspector.has_table("quota_buckets"):
        b = quota_buckets.c
        bq = sa.select(b.shop, b.bucket, b.tokens, b.stamp).order_by(b.shop, b.bucket)
        if shop:
            bq = bq.where(b.shop == shop)
        for row in conn.execute(bq):
            buckets.append(
                {
                    "shop": row.shop,
                    "bucket": row.bucket,
                    "tokens": row.tokens,
                    # the bucket's stamp is epoch seconds on the callers' (wall) clock
                    "idle": now - datetime.fromtimestamp(row.stamp, tz=now.tzinfo),
                }
            )
    return {"calls": calls, "buckets": buckets}
