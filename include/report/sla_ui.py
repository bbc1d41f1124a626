"""The "SLA breaches" page: days with their key figures, each day's report files, the escalation
inbox, and the batches that failed their data quality suite, with Great Expectations' Data Docs.

A plain FastAPI app (no Airflow import) so it can be tested on its own; `plugins/orderops_sla_plugin.py`
mounts it in the Airflow API server behind Airflow's login. It reads `sla_daily` (the shop-wide
rows), `action_ledger` escalations with their reviews, failed `validation_results`, the files
`include.report.reports.build_day` wrote under the reports folder (served by name from a fixed list, for
validated shop names and dates only) and each shop's Great Expectations Data Docs
`include.quality.checkpoints` builds (served read-only, sandboxed, from the shop's GX folder, with a
list of the shops' sites). Its only writes are the inbox's (include/report/inbox.py): plain HTML
forms, accepted from the page's own origin, from a user the `write_dependencies` allow, named by
`reviewer`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from include.decide.model import as_utc
from include.quality.checkpoints import (
    ShopSite,
    docs_dir,
    run_name,
    shared_site_left,
    shop_sites,
    shops_with_docs,
    validation_page,
)
from include.report.figures import COUNTS, inbox_figures, late_scan_breaches
from include.report.inbox import (
    OPEN,
    REVIEW_STATES,
    InboxError,
    latest_reviews,
    map_carrier,
    providers_offered,
    review,
)
from include.report.operations import (
    MAX_ACTIONS,
    STALE_INTERVALS,
    STUCK_AFTER,
    Freshness,
    OperationsError,
    failed_and_stuck,
    freshness,
    quota_use,
    retry,
    span_text,
)
from include.report.reports import LDR_ENFORCEMENT_LINE, LDR_LINE
from include.report.templates import template
from include.run.shops import SHOP_NAME
from include.store.warehouse import (
    TS,
    Warehouse,
    action_ledger,
    at_risk_alerts,
    order_links,
    sla_daily,
    stg_tiktok_orders,
    utcnow,
    validation_results,
)

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REPORT_FILES = {
    "report.html": "text/html; charset=utf-8",
    "breaches.csv": "text/csv; charset=utf-8",
    "trend_30d.csv": "text/csv; charset=utf-8",
}
MAX_ESCALATIONS = 500
MAX_VALIDATIONS = 100
# The inbox's filter on where people stand (the `review` query parameter)
REVIEW_FILTERS = (OPEN, *REVIEW_STATES)
RULE = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")
# An order's pages in each platform's seller tools. Not documented by the platforms as stable
# links: UNCERTAIN (docs/operations/inbox.md); a changed pattern opens the platform's own error page.
TIKTOK_ORDER_PAGE = "https://seller-us.tiktok.com/order/detail?order_no={order}"
SHOPIFY_ORDER_PAGE = "https://{domain}/admin/orders/{order}"
FULFILLER_ORDER_PAGES = {
    "amazon_mcf": "https://sellercentral.amazon.com/orders-v3/mcf/order/{order}",
    "shipbob": "https://web.shipbob.com/app/merchant/#/orders/{order}",
}
SHOPIFY_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\.myshopify\.com$")
# Data Docs files by type; anything else in their folder is not served.
DOCS_FILES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".otf": "font/otf",
}
# Data Docs show values from platform data: they run sandboxed (an origin of their own, no access to
# Airflow's session). Their pages carry their own styles and run no script (include/quality/gx_views.py),
# so nothing outside this server is allowed.
DOCS_CSP = (
    "sandbox allow-popups; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'"
)
# Reports embed their charts as data: URLs and need nothing else; scripts never run in them.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
FIGURES = (
    "orders_due",
    "dispatched_on_time",
    "dispatched_late",
    "past_due_no_tracking",
    "at_risk_auto_cancel",
    "late_dispatch_rate",
    "ldr_over_line",
    "dispatched_on_time_scan",
    "dispatched_late_scan",
    "past_due_no_scan",
    "at_risk_no_scan",
    "late_dispatch_rate_scan",
    "cancel_requests",
    "cancels_on_time",
    "cancels_late",
    "ship_to_tracking_median_h",
    "ship_to_tracking_p95_h",
)


@dataclass
class ShopDays:
    shop: str
    days: list[dict] = field(default_factory=list)  # newest first, sla_daily figures + files
    escalations: list[dict] = field(default_factory=list)  # newest first
    at_risk: list[dict] = field(default_factory=list)  # alerted before a deadline, least time left first
    failures: list[dict] = field(default_factory=list)  # failed or stuck ledger rows, newest first
    validations: list[dict] = field(default_factory=list)  # batches that failed their suite, newest first
    data_docs: str | None = None  # the shop's Data Docs index, relative to the page, once built


@dataclass
class Overview:
    since: date | None
    until: date | None
    shops: list[ShopDays]
    escalations_truncated: bool = False
    rules: list[str] = field(default_factory=list)  # the rules of the period's escalations, for the filter


@dataclass(frozen=True)
class Filters:
    """What the inbox lists: where people stand on an escalation, its rule (None: all)."""

    review: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        if self.review is not None and self.review not in REVIEW_FILTERS:
            raise InboxError(f"review {self.review!r}: expected one of {', '.join(REVIEW_FILTERS)}")
        if self.rule is not None and not RULE.match(self.rule):
            raise InboxError(f"rule {self.rule!r}: expected a rule name such as T2 or E1")

    def keeps(self, escalation: dict) -> bool:
        return (self.review is None or escalation["review"] == self.review) and (
            self.rule is None or escalation["rule"] == self.rule
        )


def order_pages(
    tiktok_order_id: str,
    shopify_domain: str | None,
    shopify_order_ids: Sequence[str],
    fulfiller: str | None,
    fulfillment_order_id: str | None,
) -> list[tuple[str, str]]:
    """(label, URL) of an order's pages on each platform known for it: TikTok always, Shopify where
    the shop's domain is a myshopify.com one, the fulfiller where its order is linked."""
    pages = [("TikTok", TIKTOK_ORDER_PAGE.format(order=quote(tiktok_order_id, safe="")))]
    if shopify_domain and SHOPIFY_DOMAIN.match(shopify_domain):
        for shopify_id in shopify_order_ids:
            pages.append(
                ("Shopify", SHOPIFY_ORDER_PAGE.format(domain=shopify_domain, order=quote(shopify_id, safe="")))
            )
    if fulfiller in FULFILLER_ORDER_PAGES and fulfillment_order_id:
        label = "Amazon MCF" if fulfiller == "amazon_mcf" else "ShipBob"
        pages.append((label, FULFILLER_ORDER_PAGES[fulfiller].format(order=quote(fulfillment_order_id, safe=""))))
    return pages


def trace_command(shop: str, tiktok_order_id: str) -> str:
    """The command that prints an order's whole chain (include/cli.py trace)."""
    return f"python -m include.cli trace {tiktok_order_id}" + (f" --shop {shop}" if shop != "default" else "")


def _escalation_time():
    a = action_ledger.c
    # the run's decision clock (a backfilled day escalates on that day), else when the row was written
    return sa.func.coalesce(a.acted_at, a.created_at, type_=TS)


def load_overview(
    engine: sa.Engine,
    reports_dir: Path,
    days: int = 30,
    shop: str | None = None,
    gx_root: Path | None = None,
    filters: Filters = Filters(),
    shopify_domains: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Overview:
    """The last `days` days that have figures, escalations or failed validations, per shop, newest
    first; a shop links its Data Docs site (in its GX folder under `gx_root`) once built, and a failed
    validation its page there while it is kept. The escalations listed are those `filters` keep (the
    days count them all); `shopify_domains` (shop -> its myshopify.com domain) links each order's
    Shopify page; `now` (wall clock) tells a stuck action."""
    inspector = sa.inspect(engine)
    has_daily, has_ledger = inspector.has_table("sla_daily"), inspector.has_table("action_ledger")
    has_checks = inspector.has_table("validation_results")
    s, a, v = sla_daily.c, action_ledger.c, validation_results.c
    when = _escalation_time()
    with engine.connect() as conn:
        newest: list[date] = []
        if has_daily:
            q = sa.select(sa.func.max(s.day)).where(s.fulfiller == "all", s.carrier == "all")
            if shop:
                q = q.where(s.shop == shop)
            if (d := conn.execute(q).scalar()) is not None:
                newest.append(d)
        if has_ledger:
            q = sa.select(sa.func.max(when)).where(a.kind == "escalate")
            if shop:
                q = q.where(a.shop == shop)
            if (t := conn.execute(q).scalar()) is not None:
                newest.append(_as_date(t))
        if has_checks:
            q = sa.select(sa.func.max(v.checked_at)).where(v.success.is_(False))
            if shop:
                q = q.where(v.shop == shop)
            if (t := conn.execute(q).scalar()) is not None:
                newest.append(_as_date(t))
        if not newest:
            return Overview(None, None, [])
        until = max(newest)
        since = until - timedelta(days=days - 1)
        shops: dict[str, ShopDays] = {}
        if has_daily:
            q = (
                sa.select(s.shop, s.day, *(s[name] for name in FIGURES))
                .where(s.fulfiller == "all", s.carrier == "all", s.day >= since, s.day <= until)
                .order_by(s.shop, s.day.desc())
            )
            if shop:
                q = q.where(s.shop == shop)
            for row in conn.execute(q):
                entry = dict(row._mapping)
                entry["files"] = _files(reports_dir, entry["shop"], entry["day"])
                entry["escalations"] = 0
                shops.setdefault(row.shop, ShopDays(row.shop)).days.append(entry)
        truncated = False
        if has_ledger:
            start = datetime.combine(since, time.min, tzinfo=timezone.utc)
            end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=timezone.utc)
            escalated = (
                sa.select(
                    a.shop,
                    a.tiktok_order_id,
                    a.rule,
                    a.state,
                    a.request,
                    a.run_id,
                    a.decision_run_id,
                    a.idempotency_key,
                    when.label("at"),
                )
                .where(a.kind == "escalate", when >= start, when < end)
                .order_by(when.desc(), a.id.desc())
                .limit(MAX_ESCALATIONS + 1)
            )
            if shop:
                escalated = escalated.where(a.shop == shop)
            rows = conn.execute(escalated).all()
            truncated = len(rows) > MAX_ESCALATIONS
            reviews: dict[tuple[str, str], dict] = {}
            for name in {row.shop for row in rows[:MAX_ESCALATIONS]}:
                found = latest_reviews(
                    conn, name, [r.idempotency_key for r in rows[:MAX_ESCALATIONS] if r.shop == name]
                )
                reviews |= {(name, key): value for key, value in found.items()}
            links = _links(conn, [(r.shop, r.decision_run_id, r.tiktok_order_id) for r in rows[:MAX_ESCALATIONS]])
            for row in rows[:MAX_ESCALATIONS]:
                request = row.request if isinstance(row.request, dict) else {}
                at = as_utc(row.at)
                seen = reviews.get((row.shop, row.idempotency_key)) or {}
                carriers = [c for c in request.get("carriers") or [] if isinstance(c, str)]
                review_state = seen.get("state", OPEN)
                link = links.get((row.shop, row.decision_run_id, row.tiktok_order_id)) or {}
                shops.setdefault(row.shop, ShopDays(row.shop)).escalations.append(
                    {
                        "tiktok_order_id": row.tiktok_order_id,
                        "rule": row.rule,
                        "state": row.state,
                        "reason_code": request.get("reason_code") or "",
                        "detail": request.get("detail") or "",
                        "carriers": carriers,
                        # TikTok's providers for the order's delivery option, for the mapping form
                        # (None: no run has read them)
                        "providers": sorted({str(p["name"]) for p in offered if p.get("name")})
                        if carriers
                        and review_state != "resolved"
                        and (offered := providers_offered(conn, row.shop, row.tiktok_order_id)) is not None
                        else None,
                        "run_id": row.run_id,
                        "at": at,
                        "day": at.date(),
                        "key": row.idempotency_key,
                        "review": review_state,
                        "reviewed_by": seen.get("reviewed_by"),
                        "reviewed_at": as_utc(seen.get("reviewed_at")),
                        "review_note": seen.get("note"),
                        "owner": seen.get("owner"),
                        "trace": trace_command(row.shop, row.tiktok_order_id),
                        "pages": order_pages(
                            row.tiktok_order_id,
                            (shopify_domains or {}).get(row.shop),
                            [str(i) for i in link.get("shopify_order_ids") or []],
                            link.get("fulfiller"),
                            link.get("fulfillment_order_id"),
                        ),
                    }
                )
        if inspector.has_table("at_risk_alerts"):
            start = datetime.combine(since, time.min, tzinfo=timezone.utc)
            r, o = at_risk_alerts.c, stg_tiktok_orders.c
            alerted = (
                sa.select(
                    r.shop,
                    r.tiktok_order_id,
                    r.threshold_hours,
                    r.deadline,
                    r.alerted_at,
                    o.rts_sla_time,
                    o.shipping_due_time,
                    o.status,
                    o.tracking_number,
                )
                .join(
                    stg_tiktok_orders, sa.and_(o.shop == r.shop, o.tiktok_order_id == r.tiktok_order_id), isouter=True
                )
                .where(r.sent.is_(True), r.alerted_at >= start)
                .order_by(r.alerted_at.desc())
                .limit(MAX_ESCALATIONS)
            )
            if shop:
                alerted = alerted.where(r.shop == shop)
            for row in conn.execute(alerted):
                shops.setdefault(row.shop, ShopDays(row.shop)).at_risk.append(
                    {
                        "tiktok_order_id": row.tiktok_order_id,
                        "threshold_hours": row.threshold_hours,
                        "deadline": row.deadline,
                        "alerted_at": as_utc(row.alerted_at),
                        # the moment of the deadline at risk
                        "due": as_utc(row.rts_sla_time if row.deadline == "ship_by" else row.shipping_due_time),
                        "status": row.status,
                        "tracking_number": row.tracking_number or "",
                    }
                )
            for shop_days in shops.values():
                # least time left first (an order whose deadline is unknown last)
                shop_days.at_risk.sort(key=lambda x: (x["due"] is None, x["due"] or x["alerted_at"]))
        if has_checks:
            start = datetime.combine(since, time.min, tzinfo=timezone.utc)
            failed = (
                sa.select(v.shop, v.run_id, v.batch, v.rows, v.failures, v.checked_at)
                .where(v.success.is_(False), v.checked_at >= start)
                .order_by(v.checked_at.desc())
                .limit(MAX_VALIDATIONS)
            )
            if shop:
                failed = failed.where(v.shop == shop)
            for row in conn.execute(failed):
                page = (
                    validation_page(docs_dir(row.shop, gx_root), row.batch, run_name(row.shop, row.run_id))
                    if gx_root and SHOP_NAME.match(row.shop)
                    else None
                )
                shops.setdefault(row.shop, ShopDays(row.shop)).validations.append(
                    {
                        "checked_at": as_utc(row.checked_at),
                        "run_id": row.run_id,
                        "batch": row.batch,
                        "rows": row.rows,
                        "failures": row.failures if isinstance(row.failures, list) else [],
                        "page": f"data-docs/{row.shop}/{page}" if page else None,
                    }
                )
        if has_ledger:
            for failure in failed_and_stuck(conn, shop, now):
                shops.setdefault(failure["shop"], ShopDays(failure["shop"])).failures.append(failure)
            for shop_days in shops.values():
                per_day: dict[date, int] = {}
                for e in shop_days.escalations:
                    per_day[e["day"]] = per_day.get(e["day"], 0) + 1
                for d in shop_days.days:
                    d["escalations"] = per_day.get(d["day"], 0)
    for name, shop_days in shops.items():
        if gx_root is not None and SHOP_NAME.match(name) and (docs_dir(name, gx_root) / "index.html").is_file():
            shop_days.data_docs = f"data-docs/{name}/"
    rules = sorted({e["rule"] for s in shops.values() for e in s.escalations})
    for shop_days in shops.values():
        shop_days.escalations = [e for e in shop_days.escalations if filters.keeps(e)]
    return Overview(since, until, [shops[k] for k in sorted(shops)], truncated, rules)


def _links(conn, wanted: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], dict]:
    """The links (Shopify orders, fulfillment order) each escalation's decision was made on."""
    if not wanted or not sa.inspect(conn).has_table("order_links"):
        return {}
    lk = order_links.c
    found = {}
    for shop, run_id in sorted({(s, r) for s, r, _ in wanted}):
        ids = sorted({o for s, r, o in wanted if (s, r) == (shop, run_id)})
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                sa.select(order_links).where(
                    lk.shop == shop, lk.run_id == run_id, lk.tiktok_order_id.in_(ids[start : start + 500])
                )
            ).mappings():
                found[(shop, run_id, row["tiktok_order_id"])] = dict(row)
    return found


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return as_utc(value).date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value)).date()  # SQLite may hand back a string from an aggregate


def _files(reports_dir: Path, shop: str, day: date) -> dict[str, str]:
    """Report files present for a day, as links relative to the page."""
    if not SHOP_NAME.match(shop):
        return {}
    folder = reports_dir / shop / f"{day:%Y-%m-%d}"
    return {name: f"reports/{quote(shop)}/{day:%Y-%m-%d}/{name}" for name in REPORT_FILES if (folder / name).is_file()}


def report_path(reports_dir: Path, shop: str, day: str, name: str) -> Path:
    """The file to serve, or 404: known names only, validated shop and date, inside the reports folder."""
    if name not in REPORT_FILES or not SHOP_NAME.match(shop) or not DAY.match(day):
        raise HTTPException(404, "no such report")
    try:
        date.fromisoformat(day)
    except ValueError:
        raise HTTPException(404, "no such report") from None
    root = reports_dir.resolve()
    path = (root / shop / day / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such report")
    return path


def data_docs_path(gx_root: Path, shop: str, path: str) -> Path:
    """The file of `shop`'s Data Docs to serve, or 404: a validated shop name, known file types only,
    no hidden, empty or parent segments, inside the shop's Data Docs folder (a link out of it, into
    another shop's folder included, is refused too, and so is a shop folder that is itself a link)."""
    parts = path.split("/")
    if (
        not SHOP_NAME.match(shop)
        or any(not part or part.startswith(".") for part in parts)
        or Path(path).suffix not in DOCS_FILES
    ):
        raise HTTPException(404, "no such Data Docs page")
    site = docs_dir(shop, gx_root.resolve())  # resolved up to the GX root only: the rest must be real folders
    target = (site / path).resolve()
    if not target.is_relative_to(site) or not target.is_file():
        raise HTTPException(404, "no such Data Docs page")
    return target


# ---------------------------------------------------------------- rendering


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _rate(d: dict, clock: str = "") -> str:
    """The day's Late Dispatch Rate on a clock ("" upload, "_scan" carrier scan), or "no orders
    due": 0 % of nothing is not a good day; "not counted" for a day computed before the clock was."""
    rate = d["late_dispatch_rate" + clock]
    if not d["orders_due"]:
        return "no orders due"
    return "not counted" if rate is None else f"{rate * 100:.1f}%"


def _scan_tone(d: dict) -> str:
    """The carrier-scan rate against TikTok's lines: 4 % recommended, enforcement above 10 %."""
    rate = d["late_dispatch_rate_scan"]
    if not d["orders_due"] or rate is None:
        return "none"
    return "bad" if rate > LDR_ENFORCEMENT_LINE else "warn" if rate > LDR_LINE else "ok"


ACTIONS = {"acknowledged": "Acknowledge", "resolved": "Resolve"}


def render_index(
    overview: Overview,
    days: int,
    shop: str | None,
    all_shops: Sequence[str],
    source: str = "",
    editable: bool = False,
    data_docs: bool = False,
    filters: Filters = Filters(),
    freshness: Sequence[Freshness] = (),
    now: datetime | None = None,
) -> str:
    period = f"the {days} days up to {overview.until:%Y-%m-%d}" if overview.until else "no data yet"
    return template("sla_breaches.html").render(
        overview=overview,
        days=days,
        shop=shop,
        all_shops=all_shops,
        source=source,
        editable=editable,
        period=period,
        day_choices=sorted({7, 30, 90, days}),
        rate=_rate,
        scan_tone=_scan_tone,
        hours=_hours,
        data_docs=data_docs,
        open_state=OPEN,
        review_states=REVIEW_STATES,
        actions=ACTIONS,
        max_escalations=MAX_ESCALATIONS,
        max_failures=MAX_ACTIONS,
        filters=filters,
        review_filters=REVIEW_FILTERS,
        freshness=freshness,
        now=now or utcnow(),
        span=span_text,
        counts=COUNTS,
        inbox_figures=inbox_figures,
        late_scan_breaches_of=lambda days: sum(late_scan_breaches(d) for d in days),
    )


def render_data_docs(sites: Sequence[ShopSite], shared_left: bool = False) -> str:
    """The list of the shops' Data Docs sites, shops with failed results first (most first)."""
    ordered = sorted(sites, key=lambda site: (-site.failed, site.shop))
    return template("data_docs_shops.html").render(sites=ordered, shared_left=shared_left)


def render_operations(
    now: datetime,
    actions: Sequence[dict],
    fresh: Sequence[Freshness],
    quotas: dict,
    source: str = "",
    editable: bool = False,
) -> str:
    return template("operations.html").render(
        now=now,
        actions=actions,
        freshness=fresh,
        quotas=quotas,
        source=source,
        editable=editable,
        max_actions=MAX_ACTIONS,
        stuck_after=STUCK_AFTER,
        stale_intervals=STALE_INTERVALS,
        span=span_text,
    )


def render_refusal(message: str, shop: str | None = None, back: str = "./") -> str:
    """The page a refused change or query gets: what was wrong, and the way back (`back`: the page
    it came from, relative to the app)."""
    return template("sla_refused.html").render(
        message=message, shop=shop if shop and SHOP_NAME.match(shop) else None, back=back
    )


def _jsonable(overview: Overview) -> dict:
    def clean(row: dict) -> dict:
        return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in row.items()}

    return {
        "since": overview.since.isoformat() if overview.since else None,
        "until": overview.until.isoformat() if overview.until else None,
        "escalations_truncated": overview.escalations_truncated,
        "shops": [
            {
                "shop": e.shop,
                "days": [clean(d) for d in e.days],
                "escalations": [clean(x) for x in e.escalations],
                "at_risk": [clean(x) for x in e.at_risk],
                "failures": [clean(x) for x in e.failures],
                "validations": [clean(x) for x in e.validations],
                "data_docs": e.data_docs,
            }
            for e in overview.shops
        ],
    }


# ---------------------------------------------------------------- app


def _same_origin(request: Request) -> None:
    """A form post must come from this page: its Origin (or Referer) names this host."""
    from urllib.parse import urlsplit

    claimed = request.headers.get("origin") or request.headers.get("referer") or ""
    # behind a proxy the host the browser used is the forwarded one
    served = request.headers.get("x-forwarded-host") or request.headers.get("host")
    if not claimed or urlsplit(claimed).netloc != served:
        raise HTTPException(403, "inbox changes are accepted from the SLA page itself only")


def create_app(
    warehouse_url: str,
    reports_dir: Path,
    dependencies: Sequence[Any] = (),
    write_dependencies: Sequence[Any] = (),
    reviewer: Any = None,
    gx_root: Path | None = None,
    shopify_domains: Callable[[], Mapping[str, str]] | None = None,
    intervals: Callable[[], Mapping[str, timedelta]] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The page as a FastAPI app; `dependencies` guard every route (the plugin passes Airflow's login),
    `write_dependencies` the inbox's changes as well (the plugin: the right to edit DAG runs),
    `reviewer` is the dependency naming who makes one (without it, the page is read-only),
    `gx_root` the GX folder (include.quality.checkpoints.gx_dir): the list of the shops' Data Docs
    sites is served at data-docs/ and each shop's site under data-docs/<shop>/,
    `shopify_domains` what gives each shop's myshopify.com domain (for links to its orders),
    `intervals` each shop's schedule interval (when its data counts as stale) and `clock` the wall
    clock the page compares the warehouse's wall-clock stamps with."""
    # a long-lived server: connections PostgreSQL dropped meanwhile are noticed before use
    warehouse = Warehouse(warehouse_url, pool_pre_ping=True)
    engine = warehouse.engine
    reports_dir = Path(reports_dir)
    gx_root = Path(gx_root) if gx_root is not None else None
    app = FastAPI(
        title="orderops SLA breaches", docs_url=None, redoc_url=None, openapi_url=None, dependencies=list(dependencies)
    )
    app.state.engine = engine
    # which warehouse this is (never the credentials): the connection may point elsewhere than expected
    source = f"{engine.url.get_backend_name()} {engine.url.database or ''}".strip()

    def shops_known() -> list[str]:
        inspector = sa.inspect(engine)
        names: set[str] = set()
        with engine.connect() as conn:
            if inspector.has_table("sla_daily"):
                names |= set(conn.execute(sa.select(sla_daily.c.shop).distinct()).scalars())
            if inspector.has_table("action_ledger"):
                names |= set(
                    conn.execute(
                        sa.select(action_ledger.c.shop).where(action_ledger.c.kind == "escalate").distinct()
                    ).scalars()
                )
        return sorted(names)

    def headers(csp: str) -> dict[str, str]:
        return {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "same-origin",
        }

    def refused(message: str, shop: str | None = None, status: int = 400, back: str = "./") -> HTMLResponse:
        return HTMLResponse(render_refusal(message, shop, back), status_code=status, headers=headers(PAGE_CSP))

    def freshness_at(now: datetime, shop: str | None = None) -> list[Freshness]:
        with engine.connect() as conn:
            return freshness(conn, now, intervals() if intervals is not None else None, shop)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        if request.url.path.endswith("/api/days"):
            return await request_validation_exception_handler(request, exc)
        # a form or query the page cannot take: the styled page naming each field and what was wrong
        wrong = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ())[1:]) or 'the request'}: {error.get('msg', 'invalid')}"
            for error in exc.errors()
        )
        return refused(wrong, status=422)

    def overview_of(shop: str | None, days: int, filters: Filters, now: datetime) -> Overview:
        return load_overview(
            engine,
            reports_dir,
            days=days,
            shop=shop,
            gx_root=gx_root,
            filters=filters,
            shopify_domains=shopify_domains() if shopify_domains is not None else None,
            now=now,
        )

    @app.get("/", response_class=HTMLResponse)
    def index(
        shop: str | None = Query(None, max_length=64),
        days: int = Query(30, ge=1, le=366),
        review: str | None = Query(None, max_length=16),
        rule: str | None = Query(None, max_length=8),
    ) -> HTMLResponse:
        shop = shop or None
        try:
            filters = Filters(review or None, rule or None)
        except InboxError as exc:
            return refused(str(exc), shop)
        now = clock()  # one moment for the whole page
        overview = overview_of(shop, days, filters, now)
        docs = gx_root is not None and bool(shops_with_docs(gx_root))
        return HTMLResponse(
            render_index(
                overview,
                days,
                shop,
                shops_known(),
                source,
                editable=reviewer is not None,
                data_docs=docs,
                filters=filters,
                freshness=freshness_at(now, shop),
                now=now,
            ),
            headers=headers(PAGE_CSP),
        )

    @app.get("/operations", response_class=HTMLResponse)
    def operations() -> HTMLResponse:
        now = clock()
        with engine.connect() as conn:
            actions = failed_and_stuck(conn, now=now) if sa.inspect(conn).has_table("action_ledger") else []
            quotas = quota_use(conn, now)
        return HTMLResponse(
            render_operations(now, actions, freshness_at(now), quotas, source, editable=reviewer is not None),
            headers=headers(PAGE_CSP),
        )

    @app.get("/api/days")
    def api_days(
        shop: str | None = Query(None, max_length=64),
        days: int = Query(30, ge=1, le=366),
        review: str | None = Query(None, max_length=16),
        rule: str | None = Query(None, max_length=8),
    ) -> dict:
        try:
            filters = Filters(review or None, rule or None)
        except InboxError as exc:
            raise HTTPException(400, str(exc)) from None
        return _jsonable(overview_of(shop or None, days, filters, clock()))

    if reviewer is not None:
        migrated: list[bool] = []

        def writable() -> Warehouse:
            if not migrated:  # the inbox's tables may be newer than the last run that migrated
                warehouse.migrate()
                migrated.append(True)
            return warehouse

        def back(shop: str) -> RedirectResponse:
            return RedirectResponse(f"./?shop={quote(shop)}#shop-{quote(shop)}", status_code=303)

        @app.post("/escalations", dependencies=[Depends(_same_origin), *write_dependencies])
        def review_escalation(
            shop: str = Form(..., max_length=64),
            key: str = Form(..., max_length=255),
            state: str = Form(...),
            note: str = Form("", max_length=4000),
            owner: str = Form("", max_length=300),
            by: str = Depends(reviewer),
        ):
            try:
                review(writable(), shop, key, state, by, note, owner=owner)
            except InboxError as exc:
                return refused(str(exc), shop)
            return back(shop)

        @app.post("/carriers", dependencies=[Depends(_same_origin), *write_dependencies])
        def add_carrier_mapping(
            shop: str = Form(..., max_length=64),
            key: str = Form(..., max_length=255),
            carrier: str = Form(..., max_length=64),
            provider: str = Form(..., max_length=256),
            note: str = Form("", max_length=4000),
            by: str = Depends(reviewer),
        ):
            try:
                map_carrier(writable(), shop, key, carrier, provider, by, note)
            except InboxError as exc:
                return refused(str(exc), shop)
            return back(shop)

        @app.post("/retry", dependencies=[Depends(_same_origin), *write_dependencies])
        def retry_action(
            shop: str = Form(..., max_length=64),
            key: str = Form(..., max_length=255),
            by: str = Depends(reviewer),
        ):
            try:
                retry(writable(), shop, key, by, now=clock())
            except OperationsError as exc:
                return refused(str(exc), back="operations")
            return RedirectResponse("operations#actions", status_code=303)

    @app.get("/reports/{shop}/{day}/{name}")
    def report_file(shop: str, day: str, name: str) -> FileResponse:
        path = report_path(reports_dir, shop, day, name)
        extra = {"Content-Disposition": f'inline; filename="{shop}-{day}-{name}"'} if name.endswith(".csv") else {}
        return FileResponse(path, media_type=REPORT_FILES[name], headers={**headers(REPORT_CSP), **extra})

    if gx_root is not None:
        root = gx_root

        @app.get("/data-docs/", response_class=HTMLResponse)
        def data_docs_sites() -> HTMLResponse:
            return HTMLResponse(render_data_docs(shop_sites(root), shared_site_left(root)), headers=headers(PAGE_CSP))

        @app.get("/data-docs/{shop}/{path:path}")
        def data_docs_file(shop: str, path: str) -> FileResponse:
            target = data_docs_path(root, shop, path or "index.html")
            return FileResponse(target, media_type=DOCS_FILES[target.suffix], headers=headers(DOCS_CSP))

    return app
