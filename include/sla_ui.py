"""The "SLA breaches" page: days with their key figures, each day's report files, and the
escalation inbox.

A plain FastAPI app (no Airflow import) so it can be tested on its own; `plugins/orderops_sla_plugin.py`
mounts it in the Airflow API server behind Airflow's login. It reads `sla_daily` (the shop-wide
rows), `action_ledger` escalations with their reviews, and the files `include.reports.build_day`
wrote under the reports folder (served by name from a fixed list, for validated shop names and dates
only). Its only writes are the inbox's (include/inbox.py): plain HTML forms, accepted from the page's
own origin, from a user the `write_dependencies` allow, named by `reviewer`.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from include.inbox import OPEN, REVIEW_STATES, InboxError, latest_reviews, map_carrier, review
from include.warehouse import TS, Warehouse, action_ledger, as_utc, at_risk_alerts, sla_daily, stg_tiktok_orders

# The shop names include.shops accepts; anything else is never turned into a path.
SHOP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
REPORT_FILES = {"report.html": "text/html; charset=utf-8", "breaches.csv": "text/csv; charset=utf-8",
                "trend_30d.csv": "text/csv; charset=utf-8"}
MAX_ESCALATIONS = 500
# Reports embed their charts as data: URLs and need nothing else; scripts never run in them.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
FIGURES = ("orders_due", "dispatched_on_time", "dispatched_late", "past_due_no_tracking", "at_risk_auto_cancel",
           "late_dispatch_rate", "ldr_over_line", "cancel_requests", "cancels_on_time", "cancels_late",
           "ship_to_tracking_median_h", "ship_to_tracking_p95_h")


@dataclass
class ShopDays:
    shop: str
    days: list[dict] = field(default_factory=list)          # newest first, sla_daily figures + files
    escalations: list[dict] = field(default_factory=list)   # newest first
    at_risk: list[dict] = field(default_factory=list)        # alerted before their ship-by time, newest first


@dataclass
class Overview:
    since: date | None
    until: date | None
    shops: list[ShopDays]
    escalations_truncated: bool = False


def _escalation_time():
    a = action_ledger.c
    # the run's decision clock (a backfilled day escalates on that day), else when the row was written
    return sa.func.coalesce(a.acted_at, a.created_at, type_=TS)


def load_overview(engine: sa.Engine, reports_dir: Path, days: int = 30, shop: str | None = None) -> Overview:
    """The last `days` days that have figures or escalations, per shop, newest first."""
    inspector = sa.inspect(engine)
    has_daily, has_ledger = inspector.has_table("sla_daily"), inspector.has_table("action_ledger")
    s, a = sla_daily.c, action_ledger.c
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
        if not newest:
            return Overview(None, None, [])
        until = max(newest)
        since = until - timedelta(days=days - 1)
        shops: dict[str, ShopDays] = {}
        if has_daily:
            q = (sa.select(s.shop, s.day, *(s[name] for name in FIGURES))
                 .where(s.fulfiller == "all", s.carrier == "all", s.day >= since, s.day <= until)
                 .order_by(s.shop, s.day.desc()))
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
            q = (sa.select(a.shop, a.tiktok_order_id, a.rule, a.state, a.request, a.run_id, a.idempotency_key,
                           when.label("at"))
                 .where(a.kind == "escalate", when >= start, when < end)
                 .order_by(when.desc(), a.id.desc()).limit(MAX_ESCALATIONS + 1))
            if shop:
                q = q.where(a.shop == shop)
            rows = conn.execute(q).all()
            truncated = len(rows) > MAX_ESCALATIONS
            reviews: dict[tuple[str, str], dict] = {}
            for name in {row.shop for row in rows[:MAX_ESCALATIONS]}:
                found = latest_reviews(conn, name, [r.idempotency_key for r in rows[:MAX_ESCALATIONS]
                                                    if r.shop == name])
                reviews |= {(name, key): value for key, value in found.items()}
            for row in rows[:MAX_ESCALATIONS]:
                request = row.request if isinstance(row.request, dict) else {}
                at = as_utc(row.at)
                seen = reviews.get((row.shop, row.idempotency_key)) or {}
                shops.setdefault(row.shop, ShopDays(row.shop)).escalations.append({
                    "tiktok_order_id": row.tiktok_order_id, "rule": row.rule, "state": row.state,
                    "reason_code": request.get("reason_code") or "", "detail": request.get("detail") or "",
                    "carriers": [c for c in request.get("carriers") or [] if isinstance(c, str)],
                    "run_id": row.run_id, "at": at, "day": at.date(), "key": row.idempotency_key,
                    "review": seen.get("state", OPEN), "reviewed_by": seen.get("reviewed_by"),
                    "reviewed_at": as_utc(seen.get("reviewed_at")), "review_note": seen.get("note")})
        if inspector.has_table("at_risk_alerts"):
            start = datetime.combine(since, time.min, tzinfo=timezone.utc)
            r, o = at_risk_alerts.c, stg_tiktok_orders.c
            q = (sa.select(r.shop, r.tiktok_order_id, r.threshold_hours, r.alerted_at, o.rts_sla_time, o.status,
                           o.tracking_number)
                 .join(stg_tiktok_orders, sa.and_(o.shop == r.shop, o.tiktok_order_id == r.tiktok_order_id), isouter=True)
                 .where(r.sent.is_(True), r.alerted_at >= start).order_by(r.alerted_at.desc()).limit(MAX_ESCALATIONS))
            if shop:
                q = q.where(r.shop == shop)
            for row in conn.execute(q):
                shops.setdefault(row.shop, ShopDays(row.shop)).at_risk.append({
                    "tiktok_order_id": row.tiktok_order_id, "threshold_hours": row.threshold_hours,
                    "alerted_at": as_utc(row.alerted_at), "rts_sla_time": as_utc(row.rts_sla_time),
                    "status": row.status, "tracking_number": row.tracking_number or ""})
        if has_ledger:
            for entry in shops.values():
                per_day: dict[date, int] = {}
                for e in entry.escalations:
                    per_day[e["day"]] = per_day.get(e["day"], 0) + 1
                for d in entry.days:
                    d["escalations"] = per_day.get(d["day"], 0)
    return Overview(since, until, [shops[k] for k in sorted(shops)], truncated)


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


# ---------------------------------------------------------------- rendering

def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _rate(d: dict) -> str:
    """The day's Late Dispatch Rate, or "no orders due": 0 % of nothing is not a good day."""
    return f'{d["late_dispatch_rate"] * 100:.1f}%' if d["orders_due"] else "no orders due"


def _day_row(d: dict, shop: str) -> str:
    over = bool(d["ldr_over_line"])
    tone = "bad" if over else "ok" if d["orders_due"] else "none"
    ldr = f'<span class="pill {tone}" title="{"over" if over else "within"} the 4% line">{_rate(d)}</span>'
    links = " ".join(f'<a href="{_e(url)}" target="_blank" rel="noopener">{label}</a>'
                     for name, label in (("report.html", "report"), ("breaches.csv", "breaches CSV"))
                     if (url := d["files"].get(name))) or '<span class="muted">not written</span>'
    esc = d["escalations"]
    esc_cell = f'<a href="#esc-{_e(shop)}-{d["day"]:%Y-%m-%d}">{esc}</a>' if esc else "0"
    warn = lambda n: f'<td class="num{" warn" if n else ""}">{n}</td>'  # noqa: E731
    return (f'<tr class="{"over" if over else ""}" data-day="{d["day"]:%Y-%m-%d}" data-ldr-over="{str(over).lower()}">'
            f'<td class="day">{d["day"]:%Y-%m-%d}<span class="muted"> {d["day"]:%a}</span></td>'
            f'<td class="num">{d["orders_due"]}</td><td class="num">{d["dispatched_on_time"]}</td>'
            f'{warn(d["dispatched_late"])}{warn(d["past_due_no_tracking"])}<td class="num">{ldr}</td>'
            f'{warn(d["at_risk_auto_cancel"])}'
            f'<td class="num">{d["cancel_requests"]}</td>{warn(d["cancels_late"])}'
            f'<td class="num">{_hours(d["ship_to_tracking_median_h"])} / {_hours(d["ship_to_tracking_p95_h"])}</td>'
            f'<td class="num">{esc_cell}</td><td class="links">{links}</td></tr>')


def _shop_section(entry: ShopDays, editable: bool) -> str:
    days = entry.days
    over = sum(1 for d in days if d["ldr_over_line"])
    latest = days[0] if days else None
    cards = [
        (_rate(latest) if latest else "–",
         f'Late Dispatch Rate on {latest["day"]:%Y-%m-%d}' if latest else "no figures yet",
         "bad" if latest and latest["ldr_over_line"] else "ok" if latest and latest["orders_due"] else ""),
        (str(over), f"day{'s' if over != 1 else ''} over the 4% line", "bad" if over else "ok"),
        (str(sum(d["dispatched_late"] + d["past_due_no_tracking"] for d in days)), "late or past ship-by, no tracking", ""),
        (str(len(entry.escalations)), "escalations to look at", "warn" if entry.escalations else "ok"),
    ]
    card_html = "".join(f'<div class="card {cls}"><b>{_e(v)}</b><span>{_e(label)}</span></div>'
                        for v, label, cls in cards)
    head = ("<tr><th>Day (UTC)</th><th>Orders due</th><th>On time</th><th>Late</th><th>Past ship-by, no tracking</th>"
            "<th>Late Dispatch Rate</th><th>At risk of auto-cancel</th><th>Cancel requests</th><th>Cancels late</th>"
            "<th title=\"hours from the fulfiller's shipment to tracking on TikTok\">Ship → tracking h<br>median / p95</th>"
            "<th>Escalations</th><th>Files</th></tr>")
    body = "".join(_day_row(d, entry.shop) for d in days) or \
        '<tr><td colspan="12" class="muted">No daily figures in this period (the report DAG writes them).</td></tr>'
    return (f'<section class="shop" id="shop-{_e(entry.shop)}" data-shop="{_e(entry.shop)}">'
            f'<h2>Shop <code>{_e(entry.shop)}</code></h2><div class="cards">{card_html}</div>'
            f'<table class="days"><thead>{head}</thead><tbody>{body}</tbody></table>'
            f'{_escalation_section(entry, editable)}{_at_risk_section(entry)}</section>')


def _review_cell(e: dict) -> str:
    """Where a person stands with the escalation: open, or acknowledged / resolved by whom and when."""
    if e["review"] == OPEN:   # never reviewed, or decided again after it was resolved (the note says so)
        note = f'<div class="muted">{_e(e["review_note"])}</div>' if e["review_note"] else ""
        return f'<span class="pill warn">open</span>{note}'
    tone = "ok" if e["review"] == "resolved" else "none"
    who = f' by {_e(e["reviewed_by"])}, {e["reviewed_at"]:%Y-%m-%d %H:%M}' if e["reviewed_at"] else ""
    note = f'<div class="muted">{_e(e["review_note"])}</div>' if e["review_note"] else ""
    return f'<span class="pill {tone}">{_e(e["review"])}</span>{who}{note}'


ACTIONS = {"acknowledged": "Acknowledge", "resolved": "Resolve"}


def _inbox_forms(shop: str, e: dict) -> str:
    """The inbox's actions on one escalation: plain forms (the page runs no script)."""
    hidden = f'<input type="hidden" name="shop" value="{_e(shop)}"><input type="hidden" name="key" value="{_e(e["key"])}">'
    forms = []
    if e["review"] != "resolved":
        buttons = "".join(f'<button type="submit" name="state" value="{s}">{ACTIONS[s]}</button>'
                          for s in REVIEW_STATES if s != e["review"])
        forms.append(f'<form method="post" action="escalations" class="inbox">{hidden}'
                     f'<input name="note" maxlength="1000" placeholder="note" aria-label="note">{buttons}</form>')
        for carrier in e["carriers"]:
            forms.append(f'<form method="post" action="carriers" class="inbox">{hidden}'
                         f'<input type="hidden" name="carrier" value="{_e(carrier)}">'
                         f'<input name="provider" required maxlength="128" placeholder="TikTok provider for {_e(carrier)}"'
                         f' aria-label="TikTok provider for {_e(carrier)}"><button type="submit">Map carrier</button></form>')
    return "".join(forms)


def _escalation_section(entry: ShopDays, editable: bool) -> str:
    rows, seen_days = [], set()
    for e in entry.escalations:
        anchor = ""
        if e["day"] not in seen_days:
            seen_days.add(e["day"])
            anchor = f' id="esc-{_e(entry.shop)}-{e["day"]:%Y-%m-%d}"'
        rows.append(f'<tr{anchor} data-order="{_e(e["tiktok_order_id"])}" data-review="{_e(e["review"])}">'
                    f'<td>{e["at"]:%Y-%m-%d %H:%M}</td>'
                    f'<td><code>{_e(e["tiktok_order_id"])}</code></td><td>{_e(e["rule"])}</td>'
                    f'<td><span class="reason">{_e(e["reason_code"])}</span></td><td class="detail">{_e(e["detail"])}</td>'
                    f'<td>{_review_cell(e)}</td><td>{_inbox_forms(entry.shop, e) if editable else ""}</td></tr>')
    body = "".join(rows) or '<tr><td colspan="7" class="muted">No escalations in this period.</td></tr>'
    still_open = sum(1 for e in entry.escalations if e["review"] != "resolved")
    return (f'<h3>Escalations: orders a person must look at ({still_open} not resolved of {len(entry.escalations)})</h3>'
            '<table class="escalations"><thead><tr><th>When (UTC)</th><th>TikTok order</th><th>Rule</th>'
            f'<th>Reason</th><th>Detail</th><th>Inbox</th><th>Act</th></tr></thead><tbody>{body}</tbody></table>')


def _at_risk_section(entry: ShopDays) -> str:
    """Orders an at-risk alert went out for: a person can still call the fulfiller."""
    if not entry.at_risk:
        return ""
    body = "".join(
        f'<tr data-order="{_e(a["tiktok_order_id"])}"><td>{a["alerted_at"]:%Y-%m-%d %H:%M}</td>'
        f'<td><code>{_e(a["tiktok_order_id"])}</code></td><td class="num">{a["threshold_hours"]:g} h</td>'
        f'<td>{a["rts_sla_time"]:%Y-%m-%d %H:%M}</td>'
        f'<td>{"tracking " + _e(a["tracking_number"]) if a["tracking_number"] else "still no tracking"}'
        f' ({_e(a["status"])})</td></tr>' if a["rts_sla_time"] else "" for a in entry.at_risk)
    return ('<h3>At risk: alerted before their ship-by time</h3><table class="at-risk"><thead><tr>'
            '<th>Alerted (UTC)</th><th>TikTok order</th><th>Threshold</th><th>Ship by (UTC)</th><th>Now</th>'
            f'</tr></thead><tbody>{body}</tbody></table>')


STYLE = """
*{box-sizing:border-box}body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;
margin:0;padding:20px 24px;background:#f7f8fa}h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
h3{font-size:15px;margin:20px 0 8px}.sub{color:#52606d;margin:0 0 16px}.muted{color:#7b8794}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace}
.shop{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:16px 18px;margin:0 0 20px;
box-shadow:0 1px 2px rgba(0,0,0,.04)}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 14px}
.card{border:1px solid #e4e7eb;border-left:4px solid #9aa5b1;border-radius:6px;padding:8px 14px;min-width:170px;background:#fff}
.card b{display:block;font-size:22px}.card span{font-size:12px;color:#52606d}.card.bad{border-left-color:#d64545}
.card.bad b{color:#ab091e}.card.ok{border-left-color:#3f9142}.card.warn{border-left-color:#e6a23c}
table{border-collapse:collapse;width:100%;font-size:13px}th{background:#f0f2f5;text-align:left;font-weight:600;
color:#3e4c59;position:sticky;top:0}th,td{border-bottom:1px solid #e4e7eb;padding:6px 8px;vertical-align:top}
tbody tr:hover{background:#f5f9ff}td.num{text-align:right;white-space:nowrap}td.day{white-space:nowrap;font-weight:600}
td.warn{color:#ab091e;font-weight:600}tr.over td.day{box-shadow:inset 4px 0 0 #d64545}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600}.pill.bad{background:#ffe3e3;color:#ab091e}
.pill.ok{background:#e3f9e5;color:#1f6f2b}.pill.none{background:#eef0f3;color:#555;font-weight:400}td.links{white-space:nowrap}td.links a{margin-right:10px}a{color:#0b63ce}
.reason{background:#fff3c4;color:#7c5e10;border-radius:4px;padding:1px 6px;font-weight:600;white-space:nowrap}
td.detail{color:#3e4c59;max-width:560px}form{margin:0 0 16px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
select,input{font:inherit;padding:3px 6px}button{font:inherit;padding:3px 12px;cursor:pointer}
.note{font-size:12px;color:#7b8794;margin-top:20px}.pill.warn{background:#fff3c4;color:#7c5e10}
form.inbox{margin:0 0 4px;gap:4px;flex-wrap:nowrap}form.inbox input{width:11em}
"""


def render_index(overview: Overview, days: int, shop: str | None, all_shops: Sequence[str], source: str = "",
                 editable: bool = False) -> str:
    period = (f"the {days} days up to {overview.until:%Y-%m-%d}" if overview.until else "no data yet")
    options = "".join(f'<option value="{_e(s)}"{" selected" if s == shop else ""}>{_e(s)}</option>' for s in all_shops)
    day_options = "".join(f'<option value="{n}"{" selected" if n == days else ""}>{n} days</option>'
                          for n in sorted({7, 30, 90, days}))
    sections = "".join(_shop_section(entry, editable) for entry in overview.shops) or \
        '<section class="shop"><p class="muted">No SLA figures or escalations yet. The daily report DAG writes ' \
        'them to <code>sla_daily</code> once it has run.</p></section>'
    truncated = (f'<p class="note">Only the newest {MAX_ESCALATIONS} escalations are listed.</p>'
                 if overview.escalations_truncated else "")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>SLA breaches · orderops</title>
<style>{STYLE}</style></head><body>
<h1>SLA breaches</h1>
<p class="sub">Seller-shipped TikTok orders by the day they were due (UTC), {_e(period)}. Late Dispatch Rate =
(late + past ship-by without tracking) / due orders not cancelled, against TikTok's 4% line.</p>
<form method="get" action="./"><label>Shop <select name="shop"><option value="">all shops</option>{options}</select></label>
<label>Period <select name="days">{day_options}</select></label><button type="submit">Show</button></form>
{sections}{truncated}
<p class="note">Figures from the warehouse table <code>sla_daily</code>{f" ({_e(source)})" if source else ""}; escalations from the action ledger.
Each day's report (charts, split by fulfiller and carrier, breached orders with their ledger chain) opens from its row.</p>
</body></html>"""


def _jsonable(overview: Overview) -> dict:
    def clean(row: dict) -> dict:
        return {k: (v.isoformat() if isinstance(v, (date, datetime)) else v) for k, v in row.items()}

    return {"since": overview.since.isoformat() if overview.since else None,
            "until": overview.until.isoformat() if overview.until else None,
            "escalations_truncated": overview.escalations_truncated,
            "shops": [{"shop": e.shop, "days": [clean(d) for d in e.days],
                       "escalations": [clean(x) for x in e.escalations],
                       "at_risk": [clean(x) for x in e.at_risk]} for e in overview.shops]}


# ---------------------------------------------------------------- app

def _same_origin(request: Request) -> None:
    """A form post must come from this page: its Origin (or Referer) names this host."""
    from urllib.parse import urlsplit

    claimed = request.headers.get("origin") or request.headers.get("referer") or ""
    # behind a proxy the host the browser used is the forwarded one
    served = request.headers.get("x-forwarded-host") or request.headers.get("host")
    if not claimed or urlsplit(claimed).netloc != served:
        raise HTTPException(403, "inbox changes are accepted from the SLA page itself only")


def create_app(warehouse_url: str, reports_dir: Path, dependencies: Sequence[Any] = (),
               write_dependencies: Sequence[Any] = (), reviewer: Any = None) -> FastAPI:
    """The page as a FastAPI app; `dependencies` guard every route (the plugin passes Airflow's login),
    `write_dependencies` the inbox's changes as well (the plugin: the right to edit DAG runs), and
    `reviewer` is the dependency naming who makes one (without it, the page is read-only)."""
    # a long-lived server: connections PostgreSQL dropped meanwhile are noticed before use
    warehouse = Warehouse(warehouse_url, pool_pre_ping=True)
    engine = warehouse.engine
    reports_dir = Path(reports_dir)
    app = FastAPI(title="orderops SLA breaches", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=list(dependencies))
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
                names |= set(conn.execute(sa.select(action_ledger.c.shop).where(
                    action_ledger.c.kind == "escalate").distinct()).scalars())
        return sorted(names)

    def headers(csp: str) -> dict[str, str]:
        return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                "Referrer-Policy": "same-origin"}

    @app.get("/", response_class=HTMLResponse)
    def index(shop: str | None = Query(None, max_length=64), days: int = Query(30, ge=1, le=366)) -> HTMLResponse:
        shop = shop or None
        overview = load_overview(engine, reports_dir, days=days, shop=shop)
        return HTMLResponse(render_index(overview, days, shop, shops_known(), source, editable=reviewer is not None),
                            headers=headers(PAGE_CSP))

    @app.get("/api/days")
    def api_days(shop: str | None = Query(None, max_length=64), days: int = Query(30, ge=1, le=366)) -> dict:
        return _jsonable(load_overview(engine, reports_dir, days=days, shop=shop or None))

    if reviewer is not None:
        migrated: list[bool] = []

        def writable() -> Warehouse:
            if not migrated:   # the inbox's tables may be newer than the last run that migrated
                warehouse.migrate()
                migrated.append(True)
            return warehouse

        def back(shop: str) -> RedirectResponse:
            return RedirectResponse(f"./?shop={quote(shop)}#shop-{quote(shop)}", status_code=303)

        def refused(exc: InboxError) -> HTMLResponse:
            return HTMLResponse(f"<p>{html.escape(str(exc))}</p><p><a href=\"./\">back</a></p>", status_code=400,
                                headers=headers(PAGE_CSP))

        @app.post("/escalations", dependencies=[Depends(_same_origin), *write_dependencies])
        def review_escalation(shop: str = Form(..., max_length=64), key: str = Form(..., max_length=255),
                              state: str = Form(...), note: str = Form("", max_length=4000),
                              by: str = Depends(reviewer)):
            try:
                review(writable(), shop, key, state, by, note)
            except InboxError as exc:
                return refused(exc)
            return back(shop)

        @app.post("/carriers", dependencies=[Depends(_same_origin), *write_dependencies])
        def add_carrier_mapping(shop: str = Form(..., max_length=64), key: str = Form(..., max_length=255),
                                carrier: str = Form(..., max_length=64), provider: str = Form(..., max_length=256),
                                note: str = Form("", max_length=4000), by: str = Depends(reviewer)):
            try:
                map_carrier(writable(), shop, key, carrier, provider, by, note)
            except InboxError as exc:
                return refused(exc)
            return back(shop)

    @app.get("/reports/{shop}/{day}/{name}")
    def report_file(shop: str, day: str, name: str) -> FileResponse:
        path = report_path(reports_dir, shop, day, name)
        extra = {"Content-Disposition": f'inline; filename="{shop}-{day}-{name}"'} if name.endswith(".csv") else {}
        return FileResponse(path, media_type=REPORT_FILES[name], headers={**headers(REPORT_CSP), **extra})

    return app
