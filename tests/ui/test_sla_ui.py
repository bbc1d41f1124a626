"""The SLA breaches page as a plain app (no Airflow): days, figures, escalations, report files, guards.

Runs on SQLite and on the machine's PostgreSQL (the `warehouse_url` fixture). The plugin module
itself is checked for a light import; the page inside a real Airflow API server and browser is
tests/ui/test_sla_page_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import Depends, HTTPException
from fastapi.testclient import TestClient

from include.report.sla_ui import (
    MAX_ESCALATIONS,
    PAGE_CSP,
    create_app,
    data_docs_path,
    load_overview,
    report_path,
)
from include.store.warehouse import Warehouse, action_ledger, extraction_cursors, runs, sla_daily

REPO = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 20)


def at_hour(hour: int) -> datetime:
    return datetime(2026, 11, 20, hour, tzinfo=timezone.utc)


def daily(
    shop: str, day: date, *, fulfiller="all", carrier="all", due=10, late=0, past=0, late_scan=None, **extra
) -> dict:
    """A day's sla_daily row; by carrier scan the same orders are late, or `late_scan` more scanned late."""
    live = due - extra.pop("cancelled", 0)
    ldr = round((late + past) / live, 4) if live else 0.0
    late_scan = late if late_scan is None else late_scan
    row = {
        "shop": shop,
        "day": day,
        "fulfiller": fulfiller,
        "carrier": carrier,
        "orders_due": due,
        "dispatched_on_time": due - late - past,
        "dispatched_late": late,
        "past_due_no_tracking": past,
        "at_risk_auto_cancel": 0,
        "late_dispatch_rate": ldr,
        "ldr_over_line": ldr > 0.04,
        "dispatched_on_time_scan": due - late_scan - past,
        "dispatched_late_scan": late_scan,
        "past_due_no_scan": past,
        "at_risk_no_scan": 0,
        "late_dispatch_rate_scan": round((late_scan + past) / live, 4) if live else 0.0,
        "cancel_requests": 0,
        "cancels_on_time": 0,
        "cancels_late": 0,
        "ship_to_tracking_median_h": None,
        "ship_to_tracking_p95_h": None,
        "computed_at": datetime(2026, 11, 21, tzinfo=timezone.utc),
    }
    row.update(extra)
    return row


def escalation(
    shop: str,
    order_id: str,
    at: datetime | None,
    *,
    reason="no_shopify_match",
    detail="no Shopify order",
    created: datetime | None = None,
    state="succeeded",
) -> dict:
    created = created or at or datetime(2026, 11, 26, tzinfo=timezone.utc)
    return {
        "shop": shop,
        "idempotency_key": f"escalate:{order_id}:{reason}",
        "kind": "escalate",
        "target": f"tiktok:{order_id}",
        "tiktok_order_id": order_id,
        "rule": "E1",
        "decision_run_id": "run-1",
        "request": {"reason_code": reason, "detail": detail},
        "state": state,
        "acted_at": at,
        "attempts": 1,
        "run_id": "run-1",
        "created_at": created,
        "updated_at": created,
    }


@pytest.fixture
def seeded(warehouse_url, tmp_path):
    """Two shops, five days of figures (one over the 4% line), escalations, and report files for some days."""
    wh = Warehouse(warehouse_url)
    wh.migrate()
    rows = [
        daily(
            "default",
            DAY,
            due=50,
            late=1,
            past=2,
            late_scan=4,  # three more of the tracking in time were scanned after their ship-by time
            at_risk_auto_cancel=3,
            at_risk_no_scan=5,
            cancel_requests=4,
            cancels_on_time=3,
            cancels_late=1,
            ship_to_tracking_median_h=2.25,
            ship_to_tracking_p95_h=9.5,
        ),
        daily("default", DAY, fulfiller="shipbob", carrier="USPS", due=20, late=1, past=2),  # a split row: not listed
        daily("default", DAY - timedelta(days=1), due=40, late=1),  # 2.5%: within the line
        daily("default", DAY - timedelta(days=2), due=30),
        daily("default", DAY - timedelta(days=40), due=30, late=30),  # outside 30 days
        daily("eu-shop", DAY - timedelta(days=1), due=8, past=1),
    ]
    with wh.engine.begin() as conn:
        conn.execute(sla_daily.insert(), rows)
        conn.execute(
            action_ledger.insert(),
            [
                escalation("default", "576000000000000001", datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)),
                escalation(
                    "default",
                    "576000000000000002",
                    datetime(2026, 11, 20, 14, 0, tzinfo=timezone.utc),
                    reason="carrier_unmapped",
                    detail="carrier <b>Regional</b> & Co maps to no TikTok provider",
                ),
                # decided on the 19th (a backfill), written a week later: belongs to the 19th
                escalation(
                    "default",
                    "576000000000000003",
                    datetime(2026, 11, 19, 23, 59, tzinfo=timezone.utc),
                    reason="fulfiller_failed",
                    detail="amazon_mcf order 1048 is Invalid",
                    created=datetime(2026, 11, 26, 8, 0, tzinfo=timezone.utc),
                ),
                escalation(
                    "eu-shop",
                    "576000000000000009",
                    None,
                    reason="ambiguous_shopify_match",
                    state="pending",
                    created=datetime(2026, 11, 19, 7, 0, tzinfo=timezone.utc),
                ),
            ],
        )
        # another kind of action is not an escalation
        conn.execute(
            action_ledger.insert(),
            {
                **escalation("default", "576000000000000004", at_hour(10)),
                "kind": "add_note",
                "idempotency_key": "add_note:576000000000000004",
            },
        )
    reports = tmp_path / "reports"
    for day in (DAY, DAY - timedelta(days=1)):
        folder = reports / "default" / f"{day:%Y-%m-%d}"
        folder.mkdir(parents=True)
        (folder / "report.html").write_text(f"<html><body><h1>SLA report {day}</h1></body></html>")
        (folder / "breaches.csv").write_text("tiktok_order_id,kind,reason\n576000000000000001,dispatch,late\n")
    (tmp_path / "secret.txt").write_text("not for the page")
    yield wh, reports
    wh.dispose()


class Page(HTMLParser):
    """Just enough of the DOM: rows of each table by class, with their attributes and cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[tuple[dict, list[str]]]] = {}
        self.links: list[str] = []
        self._table = None
        self._row = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = (attrs, [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a":
            self.links.append(attrs.get("href", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row[1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._row[1] and self._row[0].get("data-day") or {"data-order", "data-batch"} & self._row[0].keys():
                self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def client(wh: Warehouse, reports: Path, **kwargs) -> TestClient:
    return TestClient(create_app(wh.url, reports, **kwargs))


def test_index_lists_days_newest_first_with_figures_and_escalations(seeded):
    wh, reports = seeded
    page = client(wh, reports).get("/")
    assert page.status_code == 200
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    dom = Page(page.text)
    days = dom.tables["days"]
    # one row per shop-wide day inside the 30 days up to the newest day, per shop, newest first
    assert [(r[0]["data-day"]) for r in days] == ["2026-11-20", "2026-11-19", "2026-11-18", "2026-11-19"]
    top = days[0][1]
    assert top[:5] == ["2026-11-20 Fri", "50", "47", "1", "2"]
    assert top[5] == "6.0%" and days[0][0]["data-ldr-over"] == "true" and days[0][0]["class"] == "over"
    # the carrier-scan clock TikTok counts: scanned late, past ship-by without a scan, the rate (12%: over
    # TikTok's 10% enforcement line, so drawn as bad)
    assert top[6:9] == ["4", "2", "12.0%"]
    assert "pill bad" in page.text.split('data-day="2026-11-20"')[1].split("</tr>")[0].split("scan")[1]
    # at risk (auto-cancel, late scan), cancels, cancels late, hours, escalations
    assert top[9:15] == ["3", "5", "4", "1", "2.2 / 9.5", "2"]
    assert days[1][1][5] == "2.5%" and days[1][0]["data-ldr-over"] == "false"
    assert days[1][1][14] == "1"  # the backfilled escalation counts on the day it was decided
    assert days[2][1][-1] == "not written"  # no report files for that day
    assert "reports/default/2026-11-20/report.html" in dom.links
    assert "reports/default/2026-11-20/breaches.csv" in dom.links
    assert "#esc-default-2026-11-20" in dom.links
    # escalations with their reason, newest first, escaped; add_note rows are not escalations
    escalated = [(r[0]["data-order"], r[1][3], r[1][4]) for r in dom.tables["escalations"]]
    assert escalated == [
        ("576000000000000002", "carrier_unmapped", "carrier <b>Regional</b> & Co maps to no TikTok provider"),
        ("576000000000000001", "no_shopify_match", "no Shopify order"),
        ("576000000000000003", "fulfiller_failed", "amazon_mcf order 1048 is Invalid"),
        ("576000000000000009", "ambiguous_shopify_match", "no Shopify order"),
    ]
    assert "<b>Regional</b>" not in page.text and "&lt;b&gt;Regional&lt;/b&gt; &amp; Co" in page.text
    assert '"Segoe UI"' in page.text  # the style sheet is the template's own text: never escaped
    assert "576000000000000004" not in page.text


def test_filters_and_json(seeded):
    wh, reports = seeded
    c = client(wh, reports)
    doc = c.get("/api/days", params={"shop": "eu-shop"}).json()
    assert doc["until"] == "2026-11-19" and [s["shop"] for s in doc["shops"]] == ["eu-shop"]
    assert doc["shops"][0]["days"][0]["files"] == {}
    assert doc["shops"][0]["escalations"][0]["state"] == "pending"
    # the pending escalation has no acted_at: it counts on the day it was written
    assert doc["shops"][0]["days"][0]["escalations"] == 1
    wide = c.get("/api/days", params={"days": 60}).json()
    assert "2026-10-11" in [d["day"] for d in wide["shops"][0]["days"]]
    narrow = c.get("/api/days", params={"days": 1}).json()
    assert [(s["shop"], [d["day"] for d in s["days"]]) for s in narrow["shops"]] == [("default", ["2026-11-20"])]
    assert c.get("/api/days", params={"days": 0}).status_code == 422
    page = Page(c.get("/", params={"shop": "eu-shop"}).text)
    assert [r[0]["data-day"] for r in page.tables["days"]] == ["2026-11-19"]


def test_report_files_are_served_and_nothing_else(seeded):
    wh, reports = seeded
    c = client(wh, reports)
    report = c.get("/reports/default/2026-11-20/report.html")
    assert report.status_code == 200 and "SLA report 2026-11-20" in report.text
    assert report.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in report.headers["content-security-policy"]
    csv = c.get("/reports/default/2026-11-20/breaches.csv")
    assert (
        csv.status_code == 200 and csv.text.startswith("tiktok_order_id,") and "text/csv" in csv.headers["content-type"]
    )
    (reports / "default" / "2026-11-18").mkdir()
    (reports / "default" / "2026-11-18" / "report.html").symlink_to(reports.parent / "secret.txt")
    for path in (
        "/reports/default/2026-11-18/report.html",  # a link out of the reports folder
        "/reports/default/2026-11-17/report.html",  # no such day
        "/reports/default/2026-11-20/other.txt",  # not a report file
        "/reports/default/2026-13-45/report.html",  # not a date
        "/reports/..%2F..%2F/2026-11-20/report.html",
        "/reports/%2e%2e/2026-11-20/report.html",
        "/reports/Default/2026-11-20/report.html",
        "/reports/default/..%2Fsecret.txt/report.html",
        "/reports/default/2026-11-20/..%2F..%2F..%2Fsecret.txt",
        "/../secret.txt",
    ):
        answer = c.get(path)
        assert answer.status_code == 404, path
        assert "not for the page" not in answer.text
    with pytest.raises(HTTPException):
        report_path(reports, "default", "2026-11-20", "../../secret.txt")


def test_routes_are_guarded_by_the_given_dependencies(seeded):
    wh, reports = seeded

    def deny():
        raise HTTPException(401, "Not authenticated")

    c = client(wh, reports, dependencies=[Depends(deny)])
    for path in ("/", "/api/days", "/reports/default/2026-11-20/report.html"):
        assert c.get(path).status_code == 401, path


PAGE = "validations/tiktok_orders/default_run-1/20261120T150000.000000Z/tiktok_orders_source-tiktok_orders.html"


def docs_site(root: Path, shop: str, listed: tuple[str, ...] = ()) -> Path:
    """A shop's Data Docs site as include.quality.checkpoints builds it in the shop's GX folder: the
    index (a row per result, "true"/"false"), a run's page, static files and the GX lock beside it."""
    docs = root / "shops" / shop / "data_docs"
    page = docs / PAGE.replace("default_", f"{shop}_")
    page.parent.mkdir(parents=True)
    page.write_text(f"<html><body>{shop}: tiktok_orders: TELEPORTED</body></html>")
    rows = "".join(
        f'<tr data-batch="tiktok_orders" data-run="{shop}_run-{n}" data-success="{success}">'
        for n, success in enumerate(listed)
    )
    (docs / "index.html").write_text(f"<html><body>{shop}'s Data Docs index{rows}</body></html>")
    (docs / "static" / "styles").mkdir(parents=True)
    (docs / "static" / "styles" / "data_docs_default_styles.css").write_text("body{}")
    (docs.parent / ".lock").write_text("")
    (docs / "notes.txt").write_text("not a Data Docs file")
    return docs


@pytest.fixture
def gx_root(tmp_path) -> Path:
    """A GX folder with two shops' Data Docs: default's index lists a failed result, north's none."""
    root = tmp_path / "gx"
    docs_site(root, "default", ("false", "true"))
    docs_site(root, "north", ("true",))
    return root


def test_the_page_links_data_docs_and_the_route_serves_them_read_only(seeded, gx_root):
    wh, reports = seeded
    c = client(wh, reports, gx_root=gx_root)
    page = c.get("/")
    assert "data-docs/" in Page(page.text).links and "Data quality (Data Docs)" in page.text
    assert "data-docs/default/" in Page(page.text).links  # beside the shop's name too
    index = c.get("/data-docs/default/")
    assert index.status_code == 200 and "default's Data Docs index" in index.text
    assert index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-popups;")  # no access to the session, and no script runs
    assert "script-src" not in policy and "default-src 'none'" in policy and "http" not in policy  # nothing outside
    assert c.get("/data-docs/default/index.html").text == index.text
    assert "north's Data Docs index" in c.get("/data-docs/north/").text
    page = c.get(f"/data-docs/default/{PAGE}")
    assert page.status_code == 200 and "default: tiktok_orders: TELEPORTED" in page.text
    css = c.get("/data-docs/default/static/styles/data_docs_default_styles.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    default, north = gx_root / "shops" / "default" / "data_docs", gx_root / "shops" / "north" / "data_docs"
    (default / "validations" / "leak.html").symlink_to(reports.parent / "secret.txt")
    (default / "validations" / "north.html").symlink_to(north / "index.html")  # into another shop's site
    (gx_root / "shops" / "linked").symlink_to(gx_root / "shops" / "north")  # a shop folder that is a link
    (gx_root / "index.html").write_text("the GX root")
    assert 'data-shop="linked"' not in c.get("/data-docs/").text and 'data-shop="north"' in c.get("/data-docs/").text
    for path in (
        "/data-docs/../secret.txt",
        "/data-docs/..%2Fsecret.txt",
        "/data-docs/%2e%2e/%2e%2e/secret.txt",
        "/data-docs/default/../../secret.txt",
        "/data-docs/default/validations/../../../secret.txt",
        "/data-docs/default/validations/%2e%2e%2F%2e%2e%2F..%2Fsecret.txt",
        "/data-docs/default/validations/leak.html",  # a link out of the Data Docs folder
        "/data-docs/default/..%2F..%2Fnorth%2Fdata_docs%2Findex.html",  # up and into north's folder
        "/data-docs/default/%2e%2e/%2e%2e/north/data_docs/index.html",
        "/data-docs/default/validations/north.html",  # a link into north's folder
        "/data-docs/linked/index.html",
        "/data-docs/..%2Findex.html",
        "/data-docs/%2e%2e/index.html",
        "/data-docs/Default/index.html",
        "/data-docs/index.html",
        "/data-docs/default/.lock",
        "/data-docs/default/..%2F.lock",
        "/data-docs/default/notes.txt",
        "/data-docs/default/validations//index.html",
        "/data-docs/default/nothing.html",
        "/data-docs/default/static",
        "/data-docs/nobody/",
    ):
        answer = c.get(path)
        assert answer.status_code == 404, path
        assert "not for the page" not in answer.text and "not a Data Docs file" not in answer.text, path
        assert "north's Data Docs index" not in answer.text and "the GX root" not in answer.text, path
    for shop, path in (("default", "../../secret.txt"), ("default", "../north/index.html"), ("..", "index.html")):
        with pytest.raises(HTTPException):
            data_docs_path(gx_root, shop, path)

    def deny():
        raise HTTPException(401, "Not authenticated")

    guarded = client(wh, reports, gx_root=gx_root, dependencies=[Depends(deny)])
    for path in ("/data-docs/", "/data-docs/default/", f"/data-docs/default/{PAGE}"):
        assert guarded.get(path).status_code == 401, path


def test_the_shops_data_docs_are_listed_with_failed_results_first(seeded, gx_root):
    wh, reports = seeded
    docs_site(gx_root, "zeta", ("false", "false", "true"))
    c = client(wh, reports, gx_root=gx_root)
    sites = c.get("/data-docs/")
    assert sites.status_code == 200 and sites.headers["content-security-policy"] == PAGE_CSP
    rows = re.findall(r'<tr data-shop="([^"]+)" data-failed="(\d+)">', sites.text)
    assert rows == [("zeta", "2"), ("default", "1"), ("north", "0")]  # most failed results first
    links = Page(sites.text).links
    assert {"zeta/", "default/", "north/"} <= set(links) and "../?shop=zeta#shop-zeta" in links
    assert "2</span> of 3" in sites.text and "shared-site" not in sites.text


def test_failed_validations_are_listed_with_their_data_docs_page(seeded, gx_root):
    from include.store.warehouse import validation_results

    wh, reports = seeded
    failures = [
        {
            "expectation": "expect_column_values_to_be_in_set",
            "column": "status",
            "unexpected_count": 1,
            "examples": ["<b>TELEPORTED</b>"],
        }
    ]
    with wh.engine.begin() as conn:
        conn.execute(
            validation_results.insert(),
            [
                {
                    "shop": "default",
                    "run_id": "run-1",
                    "batch": "tiktok_orders",
                    "success": False,
                    "rows": 40,
                    "failures": failures,
                    "checked_at": at_hour(15),
                },
                {
                    "shop": "default",
                    "run_id": "run-2",
                    "batch": "shipbob_orders",
                    "success": False,
                    "rows": 3,
                    "failures": failures,
                    "checked_at": at_hour(16),
                },  # its page was pruned
                {
                    "shop": "default",
                    "run_id": "run-1",
                    "batch": "shopify_orders",
                    "success": True,
                    "rows": 9,
                    "failures": [],
                    "checked_at": at_hour(15),
                },
            ],
        )  # passed: not listed
    c = client(wh, reports, gx_root=gx_root)
    text = c.get("/").text
    rows = [(attrs["data-batch"], attrs["data-run"], cells) for attrs, cells in Page(text).tables["validations"]]
    assert [(batch, run) for batch, run, _ in rows] == [("shipbob_orders", "run-2"), ("tiktok_orders", "run-1")]
    assert rows[1][2][3:5] == [
        "40",
        "expect_column_values_to_be_in_set on status: 1 unexpected, e.g. <b>TELEPORTED</b>",
    ]
    assert "<b>TELEPORTED</b>" not in text and rows[0][2][5] == "not kept"
    link = f"data-docs/default/{PAGE}"  # in its shop's site
    assert link in Page(text).links and "TELEPORTED" in c.get(f"/{link}").text
    listed = c.get("/api/days").json()["shops"][0]["validations"]
    assert [(v["batch"], v["page"]) for v in listed] == [("shipbob_orders", None), ("tiktok_orders", link)]


def test_no_data_docs_link_before_any_validation(seeded, tmp_path):
    wh, reports = seeded
    c = client(wh, reports)  # not configured
    assert "data-docs/" not in Page(c.get("/").text).links
    assert c.get("/data-docs/").status_code == 404 and c.get("/data-docs/default/").status_code == 404
    # nothing built yet, but a site from before the shops' GX folders is left at the root: not served
    root = tmp_path / "gx"
    (root / "data_docs").mkdir(parents=True)
    (root / "data_docs" / "index.html").write_text("every shop's results")
    c = client(wh, reports, gx_root=root)
    links = Page(c.get("/").text).links
    assert not any(link.startswith("data-docs/") for link in links)
    sites = c.get("/data-docs/")
    assert sites.status_code == 200 and "No shop's Data Docs yet" in sites.text and 'id="shared-site"' in sites.text
    assert "every shop's results" not in sites.text
    for path in ("/data-docs/index.html", "/data-docs/data_docs/index.html", "/data-docs/default/"):
        assert c.get(path).status_code == 404, path


def test_empty_and_unmigrated_warehouse(tmp_path):
    empty = client(Warehouse(f"sqlite:///{tmp_path / 'none.db'}"), tmp_path)
    page = empty.get("/")
    assert page.status_code == 200 and "No SLA figures or escalations yet" in page.text
    assert empty.get("/api/days").json() == {"since": None, "until": None, "escalations_truncated": False, "shops": []}


def test_escalation_list_is_capped(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    wh.migrate()
    base = datetime(2026, 11, 20, tzinfo=timezone.utc)
    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert(),
            [
                escalation("default", f"5760000000{i:08d}", base + timedelta(seconds=i))
                for i in range(MAX_ESCALATIONS + 3)
            ],
        )
    overview = load_overview(wh.engine, tmp_path)
    assert overview.escalations_truncated and len(overview.shops[0].escalations) == MAX_ESCALATIONS
    assert overview.shops[0].escalations[0]["tiktok_order_id"] == f"5760000000{MAX_ESCALATIONS + 2:08d}"
    assert f"Only the newest {MAX_ESCALATIONS} escalations" in client(wh, tmp_path).get("/").text


def test_plugin_module_imports_light():
    """Every Airflow component imports plugins: the page, pandas and the pipeline load on first request only."""
    code = (
        "import sys, json; sys.path.insert(0, 'plugins'); import orderops_sla_plugin as p; "
        "print(json.dumps({'heavy': sorted(m for m in ('include.report.sla_ui', 'include.airflow.glue', "
        "'include.report.reports', 'pandas', 'matplotlib') if m in sys.modules), "
        "'views': p.OrderopsSlaPlugin.external_views, 'prefix': p.OrderopsSlaPlugin.fastapi_apps[0]['url_prefix']}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["heavy"] == []
    assert found["prefix"] == "/orderops-sla"
    assert found["views"] == [
        {
            "name": "SLA breaches",
            "href": "/orderops-sla/",
            "destination": "nav",
            "url_route": "sla_breaches",
            "category": "browse",
        },
        {
            "name": "orderops operations",
            "href": "/orderops-sla/operations",
            "destination": "nav",
            "url_route": "orderops_operations",
            "category": "browse",
        },
    ]


def test_figures_row_matches_the_table(seeded):
    """The page shows what sla_daily holds (read back independently), not a recomputation."""
    wh, reports = seeded
    with wh.engine.connect() as conn:
        row = conn.execute(
            sa.select(sla_daily).where(sla_daily.c.shop == "eu-shop", sla_daily.c.fulfiller == "all")
        ).one()
    cells = Page(client(wh, reports).get("/", params={"shop": "eu-shop"}).text).tables["days"][0][1]
    assert cells[1:6] == [
        str(row.orders_due),
        str(row.dispatched_on_time),
        str(row.dispatched_late),
        str(row.past_due_no_tracking),
        f"{row.late_dispatch_rate * 100:.1f}%",
    ]
    assert cells[6:9] == [
        str(row.dispatched_late_scan),
        str(row.past_due_no_scan),
        f"{row.late_dispatch_rate_scan * 100:.1f}%",
    ]


def test_a_day_without_orders_due_says_so_rather_than_0_percent(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    wh.migrate()
    with wh.engine.begin() as conn:
        conn.execute(
            sla_daily.insert(), [daily("default", DAY, due=0), daily("default", DAY - timedelta(days=1), due=5)]
        )
    text = client(wh, tmp_path).get("/").text
    rows = {attrs["data-day"]: cells for attrs, cells in Page(text).tables["days"]}
    assert rows[f"{DAY:%Y-%m-%d}"][5] == "no orders due"
    assert rows[f"{DAY - timedelta(days=1):%Y-%m-%d}"][5] == "0.0%"
    # the headline card for the latest day says it too, and is not green
    assert '<div class="card "><b>no orders due</b>' in text
    wh.dispose()


# ---------------------------------------------------------------- the escalation inbox


def inbox_client(wh: Warehouse, reports: Path, user: str = "kim", allowed: bool = True) -> TestClient:
    def may_edit():
        if not allowed:
            raise HTTPException(403, "Forbidden")

    app = create_app(wh.url, reports, write_dependencies=[Depends(may_edit)], reviewer=lambda: user)
    return TestClient(app, base_url="http://sla.test")


SAME_ORIGIN = {"origin": "http://sla.test"}


def escalation_rows(c: TestClient) -> dict[str, tuple[dict, list[str]]]:
    return {attrs["data-order"]: (attrs, cells) for attrs, cells in Page(c.get("/").text).tables["escalations"]}


def test_an_escalation_is_acknowledged_then_resolved_with_who_when_and_a_note(seeded):
    wh, reports = seeded
    c = inbox_client(wh, reports)
    key = "escalate:576000000000000001:no_shopify_match"
    rows = escalation_rows(c)
    assert rows["576000000000000001"][0]["data-review"] == "open"
    assert 'name="state" value="acknowledged"' in c.get("/").text  # the forms are there
    done = c.post(
        "/escalations",
        data={"shop": "default", "key": key, "state": "acknowledged", "note": "asked the 3PL"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("./?shop=default")
    attrs, cells = escalation_rows(c)["576000000000000001"]
    assert attrs["data-review"] == "acknowledged" and "by kim" in cells[5] and "asked the 3PL" in cells[5]
    c.post(
        "/escalations",
        data={"shop": "default", "key": key, "state": "resolved", "note": "order re-created"},
        headers=SAME_ORIGIN,
    )
    attrs, cells = escalation_rows(c)["576000000000000001"]
    assert attrs["data-review"] == "resolved" and "order re-created" in cells[5]
    assert "Acknowledge" not in cells[6] and "Resolve" not in cells[6]  # nothing left to do on it
    # the whole history stays, and a resolved escalation is still listed
    from include.store.warehouse import escalation_reviews

    with wh.engine.connect() as conn:
        history = [
            (r.state, r.reviewed_by, r.note)
            for r in conn.execute(sa.select(escalation_reviews).order_by(escalation_reviews.c.id))
        ]
    assert history == [("acknowledged", "kim", "asked the 3PL"), ("resolved", "kim", "order re-created")]
    days = c.get("/api/days").json()["shops"]
    listed = {e["tiktok_order_id"]: e for s in days for e in s["escalations"]}
    assert listed["576000000000000001"]["review"] == "resolved" and listed["576000000000000001"]["reviewed_by"] == "kim"


def test_a_carrier_escalation_maps_the_carrier_for_the_next_run_with_an_audit_row(seeded):
    from include.act.ledger import Ledger
    from include.report.inbox import mapped_carriers

    wh, reports = seeded
    key = "escalate:576000000000000005:carrier_unmapped"
    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert(),
            {
                **escalation(
                    "default",
                    "576000000000000005",
                    at_hour(12),
                    reason="carrier_unmapped",
                    detail="carrier LOCAL-7 maps to none",
                ),
                "request": {"reason_code": "carrier_unmapped", "detail": "carrier LOCAL-7", "carriers": ["LOCAL-7"]},
                "rule": "T2",
            },
        )
    from include.store.warehouse import decisions, stg_tiktok_orders, tiktok_shipping_providers

    with wh.engine.begin() as conn:
        conn.execute(
            stg_tiktok_orders.insert(),
            {
                "shop": "default",
                "tiktok_order_id": "576000000000000005",
                "status": "AWAITING_SHIPMENT",
                "fulfillment_type": "FULFILLMENT_BY_SELLER",
                "create_time": at_hour(1),
                "update_time": at_hour(2),
                "rts_sla_time": at_hour(23),
                "tracking_number": "",
                "shipping_provider_id": "",
                "is_buyer_request_cancel": False,
                "line_items": [],
                "raw": {"delivery_option_id": "7001"},
                "snapshot_run_id": "run-1",
                "extracted_at": at_hour(2),
            },
        )
        conn.execute(
            tiktok_shipping_providers.insert(),
            {
                "shop": "default",
                "delivery_option_id": "7001",
                "fetched_at": at_hour(2),
                "providers": [{"id": "69001", "name": "OnTrac"}, {"id": "69002", "name": "USPS"}],
            },
        )
    c = inbox_client(wh, reports, user="ana")
    page = c.get("/").text
    # the provider is chosen from the ones TikTok offers for the order's delivery option
    chooser = page.split('<select name="provider"')[1].split("</select>")[0]
    assert 'aria-label="TikTok provider for LOCAL-7"' in chooser
    assert '<option value="OnTrac">OnTrac</option><option value="USPS">USPS</option>' in chooser
    assert 'name="provider" required maxlength' not in page  # no free text where the list is known
    # a provider the order's delivery option does not offer would resolve it and post nothing: refused,
    # on the page's own styled page, naming what was wrong and the way back
    typo = c.post(
        "/carriers",
        data={"shop": "default", "key": key, "carrier": "LOCAL-7", "provider": "UPS Grnd"},
        headers=SAME_ORIGIN,
    )
    assert typo.status_code == 400 and "offers no provider" in typo.text and "OnTrac, USPS" in typo.text
    assert 'class="shop refused"' in typo.text and "Nothing was changed" in typo.text
    assert 'href="./?shop=default#shop-default"' in typo.text and '"Segoe UI"' in typo.text
    assert typo.headers["content-security-policy"].startswith("default-src 'none'")
    # a form missing its provider gets the same page, naming the field
    empty = c.post("/carriers", data={"shop": "default", "key": key, "carrier": "LOCAL-7"}, headers=SAME_ORIGIN)
    assert empty.status_code == 422 and "provider: Field required" in empty.text and "Not done" in empty.text
    done = c.post(
        "/carriers",
        data={
            "shop": "default",
            "key": key,
            "carrier": "LOCAL-7",
            "provider": "OnTrac",
            "note": "their regional partner",
        },
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert mapped_carriers(wh, "default") == {"LOCAL-7": "OnTrac"}
    audit = [r for r in Ledger(wh).rows("default") if r["kind"] == "map_carrier"]
    assert len(audit) == 1 and audit[0]["tiktok_order_id"] == "576000000000000005" and audit[0]["state"] == "succeeded"
    assert audit[0]["request"] == {
        "carrier": "LOCAL-7",
        "provider": "OnTrac",
        "by": "ana",
        "note": "their regional partner",
        "escalation": key,
    }
    assert escalation_rows(c)["576000000000000005"][0]["data-review"] == "resolved"
    # a run that decides the same escalation again after it was resolved opens it again, saying why
    with wh.engine.begin() as conn:
        conn.execute(
            decisions.insert(),
            {
                "shop": "default",
                "run_id": "run-9",
                "tiktok_order_id": "576000000000000005",
                "rule": "T2",
                "reason": "carrier_unmapped",
                "actions": [key],
                "inputs": {},
                "policy_version": "x",
                "decided_at": datetime(2099, 1, 1, tzinfo=timezone.utc),
            },
        )
    attrs, cells = escalation_rows(c)["576000000000000005"]
    assert attrs["data-review"] == "open" and "decided again after it was resolved by ana" in cells[5]
    # a carrier the escalation did not name is refused, saying so
    wrong = c.post(
        "/carriers", data={"shop": "default", "key": key, "carrier": "UPS", "provider": "UPS"}, headers=SAME_ORIGIN
    )
    assert wrong.status_code == 400 and "names no unmapped carrier &#39;UPS&#39;" in wrong.text


def test_inbox_changes_need_the_right_the_origin_and_a_real_escalation(seeded):
    wh, reports = seeded
    key = "escalate:576000000000000001:no_shopify_match"
    form = {"shop": "default", "key": key, "state": "resolved"}
    assert (
        inbox_client(wh, reports, allowed=False).post("/escalations", data=form, headers=SAME_ORIGIN).status_code == 403
    )
    c = inbox_client(wh, reports)
    assert c.post("/escalations", data=form).status_code == 403  # no Origin
    assert c.post("/escalations", data=form, headers={"origin": "http://evil.test"}).status_code == 403
    bad = c.post("/escalations", data={**form, "state": "ignored"}, headers=SAME_ORIGIN)
    assert bad.status_code == 400 and "expected one of acknowledged, resolved" in bad.text
    missing = c.post("/escalations", data={**form, "key": "escalate:1:nothing"}, headers=SAME_ORIGIN)
    assert missing.status_code == 400 and "no escalation" in missing.text
    assert escalation_rows(c)["576000000000000001"][0]["data-review"] == "open"
    # without a reviewer the page is read-only: no forms, no routes
    read_only = client(wh, reports)
    assert 'method="post"' not in read_only.get("/").text
    assert read_only.post("/escalations", data=form, headers={"origin": "http://testserver"}).status_code in (404, 405)


def test_orders_alerted_as_at_risk_are_marked_in_the_inbox(seeded):
    from include.store.warehouse import at_risk_alerts, stg_tiktok_orders

    wh, reports = seeded
    base = {
        "shop": "default",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "create_time": at_hour(1),
        "update_time": at_hour(2),
        "shipping_provider_id": "",
        "is_buyer_request_cancel": False,
        "line_items": [],
        "raw": {},
        "snapshot_run_id": "run-1",
        "extracted_at": at_hour(2),
    }
    with wh.engine.begin() as conn:
        conn.execute(
            stg_tiktok_orders.insert(),
            [
                {
                    **base,
                    "tiktok_order_id": "576000000000000007",
                    "status": "AWAITING_SHIPMENT",
                    "tracking_number": "",
                    "rts_sla_time": at_hour(20),
                },
                {
                    **base,
                    "tiktok_order_id": "576000000000000008",
                    "status": "AWAITING_COLLECTION",
                    "tracking_number": "1Z999AA10123456784",
                    "rts_sla_time": at_hour(21),
                },
            ],
        )
        conn.execute(
            at_risk_alerts.insert(),
            [
                {
                    "shop": "default",
                    "tiktok_order_id": "576000000000000007",
                    "deadline": "ship_by",
                    "threshold_hours": 4.0,
                    "run_id": "run-1",
                    "alerted_at": at_hour(16),
                    "sent": True,
                },
                {
                    "shop": "default",
                    "tiktok_order_id": "576000000000000007",
                    "deadline": "ship_by",
                    "threshold_hours": 12.0,
                    "run_id": "run-1",
                    "alerted_at": at_hour(16),
                    "sent": False,
                },  # passed, not sent: not listed
                {
                    "shop": "default",
                    "tiktok_order_id": "576000000000000008",
                    "deadline": "ship_by",
                    "threshold_hours": 12.0,
                    "run_id": "run-1",
                    "alerted_at": at_hour(9),
                    "sent": True,
                },
            ],
        )
    page = Page(client(wh, reports).get("/").text)
    rows = {attrs["data-order"]: cells for attrs, cells in page.tables["at-risk"]}
    assert rows == {
        "576000000000000007": [
            "2026-11-20 16:00",
            "576000000000000007",
            "ship-by (carrier scan)",
            "4 h",
            "2026-11-20 20:00",
            "still no tracking (AWAITING_SHIPMENT)",
        ],
        "576000000000000008": [
            "2026-11-20 09:00",
            "576000000000000008",
            "ship-by (carrier scan)",
            "12 h",
            "2026-11-20 21:00",
            "tracking 1Z999AA10123456784 (AWAITING_COLLECTION)",
        ],
    }
    listed = client(wh, reports).get("/api/days").json()["shops"][0]["at_risk"]
    assert [a["tiktok_order_id"] for a in listed] == ["576000000000000007", "576000000000000008"]


def test_a_day_computed_before_the_scan_clock_says_so(tmp_path):
    """Days in sla_daily from before the carrier-scan clock was counted: its figures read "–" and
    "not counted", never a perfect 0.0 %."""
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    old = {
        **daily("default", DAY, due=5, late=1),
        **dict.fromkeys(
            (
                "dispatched_on_time_scan",
                "dispatched_late_scan",
                "past_due_no_scan",
                "at_risk_no_scan",
                "late_dispatch_rate_scan",
            )
        ),
    }
    with wh.engine.begin() as conn:
        conn.execute(sla_daily.insert(), [old])
    (row,) = Page(client(wh, tmp_path).get("/").text).tables["days"]
    assert row[1][5] == "20.0%" and row[1][6:9] == ["–", "–", "not counted"]
    wh.dispose()


def test_the_inbox_filters_by_review_and_rule_and_refuses_a_filter_it_does_not_know(seeded):
    wh, reports = seeded
    c = inbox_client(wh, reports)
    c.post(
        "/escalations",
        data={"shop": "default", "key": "escalate:576000000000000001:no_shopify_match", "state": "resolved"},
        headers=SAME_ORIGIN,
    )
    c.post(
        "/escalations",
        data={"shop": "default", "key": "escalate:576000000000000003:fulfiller_failed", "state": "acknowledged"},
        headers=SAME_ORIGIN,
    )

    def listed(**params) -> list[str]:
        return [attrs["data-order"] for attrs, _ in Page(c.get("/", params=params).text).tables.get("escalations", [])]

    every = ["576000000000000002", "576000000000000001", "576000000000000003", "576000000000000009"]
    assert listed() == every
    assert listed(review="open") == ["576000000000000002", "576000000000000009"]
    assert listed(review="acknowledged") == ["576000000000000003"]
    assert listed(review="resolved") == ["576000000000000001"]
    assert listed(review="open", shop="eu-shop") == ["576000000000000009"]
    assert listed(rule="E1", review="resolved") == ["576000000000000001"]
    assert listed(rule="T2") == []
    page = c.get("/", params={"review": "open", "rule": "E1"}).text
    # the filters are a plain form on the page, showing what is chosen; the days still count every escalation
    assert '<option value="open" selected>' in page and '<option value="E1" selected>' in page
    assert Page(page).tables["days"][0][1][14] == "2"
    assert (
        c.get("/api/days", params={"review": "resolved"}).json()["shops"][0]["escalations"][0]["review"] == "resolved"
    )
    for bad in ({"review": "closed"}, {"rule": "t2;--"}):
        refused = c.get("/", params=bad)
        assert refused.status_code == 400 and "Not done" in refused.text and list(bad.values())[0] in refused.text
        assert c.get("/api/days", params=bad).status_code == 400


def test_an_owner_takes_an_escalation_and_keeps_it_until_someone_else_does(seeded):
    wh, reports = seeded
    c = inbox_client(wh, reports)
    key = "escalate:576000000000000002:carrier_unmapped"
    form = {"shop": "default", "key": key, "state": "acknowledged"}
    c.post("/escalations", data={**form, "owner": " ana "}, headers=SAME_ORIGIN)
    attrs, cells = escalation_rows(c)["576000000000000002"]
    assert attrs["data-review"] == "acknowledged" and "owner ana" in cells[5]
    assert 'name="owner" maxlength="250" value="ana"' in c.get("/").text  # the form shows who has it
    c.post("/escalations", data={**form, "state": "resolved", "note": "done"}, headers=SAME_ORIGIN)
    attrs, cells = escalation_rows(c)["576000000000000002"]
    assert attrs["data-review"] == "resolved" and "owner ana" in cells[5]
    listed = {e["key"]: e for s in c.get("/api/days").json()["shops"] for e in s["escalations"]}
    assert listed[key]["owner"] == "ana"
    too_long = c.post("/escalations", data={**form, "owner": "x" * 251}, headers=SAME_ORIGIN)
    assert too_long.status_code == 400 and "the owner is 251 characters long" in too_long.text


def test_each_escalated_order_links_its_trace_and_its_pages_on_the_platforms(seeded):
    from include.store.warehouse import order_links

    wh, reports = seeded
    with wh.engine.begin() as conn:
        conn.execute(
            order_links.insert(),
            {
                "shop": "default",
                "run_id": "run-1",
                "tiktok_order_id": "576000000000000003",
                "shopify_order_ids": ["5551234"],
                "match_rule": "custom_attribute:tiktok order id",
                "fulfiller": "shipbob",
                "fulfillment_order_id": "9000003",
                "decided_at": datetime(2026, 11, 20, 15, tzinfo=timezone.utc),
            },
        )
    app = create_app(wh.url, reports, shopify_domains=lambda: {"default": "acme-store.myshopify.com"})
    page = TestClient(app).get("/").text
    rows = {attrs["data-order"]: cells for attrs, cells in Page(page).tables["escalations"]}
    assert "trace: python -m include.cli trace 576000000000000003" in rows["576000000000000003"][1]
    assert "trace 576000000000000009 --shop eu-shop" in rows["576000000000000009"][1]
    row = page.split('data-order="576000000000000003"')[1].split("</tr>")[0]
    assert 'href="https://seller-us.tiktok.com/order/detail?order_no=576000000000000003"' in row
    assert 'href="https://acme-store.myshopify.com/admin/orders/5551234"' in row
    assert 'href="https://web.shipbob.com/app/merchant/#/orders/9000003"' in row
    assert 'rel="noopener noreferrer"' in row
    # an order without a link: its TikTok page only; a domain that is not a myshopify.com one links nothing
    other = page.split('data-order="576000000000000001"')[1].split("</tr>")[0]
    assert other.count('target="_blank"') == 1
    loopback = TestClient(create_app(wh.url, reports, shopify_domains=lambda: {"default": "127.0.0.1:8081"})).get("/")
    assert "/admin/orders/" not in loopback.text


def test_at_risk_orders_are_listed_by_time_left(seeded):
    from include.store.warehouse import at_risk_alerts, stg_tiktok_orders

    wh, reports = seeded
    base = {
        "shop": "default",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "create_time": at_hour(1),
        "update_time": at_hour(2),
        "shipping_provider_id": "",
        "is_buyer_request_cancel": False,
        "line_items": [],
        "raw": {},
        "snapshot_run_id": "run-1",
        "extracted_at": at_hour(2),
        "status": "AWAITING_SHIPMENT",
        "tracking_number": "",
    }
    due = {"576000000000000011": 23, "576000000000000012": 18, "576000000000000013": 21}
    alerted = {"576000000000000011": 19, "576000000000000012": 10, "576000000000000013": 15}
    with wh.engine.begin() as conn:
        conn.execute(
            stg_tiktok_orders.insert(),
            [{**base, "tiktok_order_id": o, "rts_sla_time": at_hour(h)} for o, h in due.items()],
        )
        conn.execute(
            at_risk_alerts.insert(),
            [
                {
                    "shop": "default",
                    "tiktok_order_id": o,
                    "deadline": "ship_by",
                    "threshold_hours": 4.0,
                    "run_id": "run-1",
                    "alerted_at": at_hour(h),
                    "sent": True,
                }
                for o, h in alerted.items()
            ],
        )
    page = Page(client(wh, reports).get("/").text)
    assert [attrs["data-order"] for attrs, _ in page.tables["at-risk"]] == [
        "576000000000000012",
        "576000000000000013",
        "576000000000000011",
    ]


def test_failed_and_stuck_actions_are_listed_with_their_error_newest_first(seeded):
    wh, reports = seeded
    past = datetime.now(timezone.utc) - timedelta(minutes=5)

    def action(order: str, state: str, updated: datetime, **extra) -> dict:
        return {
            **escalation("default", order, at_hour(10), created=updated),
            "kind": "post_tracking",
            "idempotency_key": f"post_tracking:{order}:1Z{order[-3:]}",
            "state": state,
            "updated_at": updated,
            "detail": None,
            "lease_until": None,
            **extra,
        }

    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert(),
            [
                action(
                    "576000000000000021",
                    "failed",
                    at_hour(11),
                    detail="TikTok refused: <b>tracking number invalid</b> (21011013)",
                ),
                action("576000000000000022", "in_flight", at_hour(12), lease_until=past),  # its runner died
                action(
                    "576000000000000023",
                    "in_flight",
                    at_hour(13),
                    lease_until=datetime.now(timezone.utc) + timedelta(minutes=10),
                ),  # still running: not stuck
                action("576000000000000024", "succeeded", at_hour(14)),
                {**action("576000000000000025", "failed", at_hour(15)), "shop": "eu-shop"},
            ],
        )
    c = client(wh, reports)
    page = c.get("/", params={"shop": "default"})
    rows = [(attrs["data-state"], cells) for attrs, cells in Page(page.text).tables["failures"]]
    assert [(state, cells[1]) for state, cells in rows] == [
        ("in_flight", "576000000000000022"),
        ("failed", "576000000000000021"),
    ]
    assert rows[1][1][6] == "TikTok refused: <b>tracking number invalid</b> (21011013)"  # as text, escaped
    assert "&lt;b&gt;tracking number invalid" in page.text and "stuck in flight" in rows[0][1][3]
    # the shop's card counts them and leads to the operations page, where they are retried
    assert '<b>2</b><span><a href="operations#actions">failed or stuck actions</a></span>' in page.text
    shops = {s["shop"]: s["failures"] for s in c.get("/api/days").json()["shops"]}
    assert [f["tiktok_order_id"] for f in shops["eu-shop"]] == ["576000000000000025"]


# ---------------------------------------------------------------- the operations page


def test_the_operations_page_lists_retries_and_flags_stale_data_on_its_own_clock(seeded):
    wh, reports = seeded
    # the page's wall clock, injected far from the real one; the runs' clock (the data) is the seed's
    now = datetime(2031, 3, 4, 12, 0, tzinfo=timezone.utc)
    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert().values(
                {
                    **escalation("default", "576000000000000031", at_hour(10), created=now - timedelta(hours=2)),
                    "kind": "post_tracking",
                    "rule": "T1",
                    "idempotency_key": "post_tracking:576000000000000031:1Z031",
                    "state": "failed",
                    "attempts": 1,
                    "updated_at": now - timedelta(hours=2),
                    "detail": "TikTok refused: tracking number invalid",
                }
            )
        )
        conn.execute(
            runs.insert(),
            [
                dict(
                    shop=shop,
                    run_id="r1",
                    dag_id=f"orderops_sla_{shop}",
                    window_end=at_hour(15),
                    started_at=finished - timedelta(minutes=2),
                    finished_at=finished,
                    state="succeeded",
                    dry_run=False,
                )
                for shop, finished in (("default", now - timedelta(minutes=10)), ("eu-shop", now - timedelta(hours=5)))
            ],
        )
        conn.execute(
            extraction_cursors.insert().values(
                shop="default",
                source="tiktok_orders",
                established_at=at_hour(0),
                listed_until=at_hour(15),
                run_id="r1",
                mode="incremental",
                listed=3,
                findings=0,
            )
        )
    c = TestClient(
        create_app(wh.url, reports, write_dependencies=[], reviewer=lambda: "kim", clock=lambda: now),
        base_url="http://sla.test",
    )
    page = c.get("/operations")
    assert page.status_code == 200 and page.headers["content-security-policy"] == PAGE_CSP
    [(attrs, cells)] = Page(page.text).tables["actions"]
    assert attrs["data-status"] == "failed" and cells[2:6] == [
        "576000000000000031",
        "post_tracking (T1)",
        "failed",
        "1",
    ]
    assert cells[6] == "TikTok refused: tracking number invalid"
    # ages on the page's clock: ten minutes since the good run, not years (the seed's day is 2026)
    assert 'data-shop="default" data-stale="false"' in page.text and "10 min ago" in page.text
    assert 'data-shop="eu-shop" data-stale="true"' in page.text and "stale: 5 h ago" in page.text
    assert 'data-source="tiktok_orders" data-stale="false">tiktok_orders: 2026-11-20 15:00' in page.text
    # the SLA page says what its figures are as of, and when they are stale
    index = c.get("/").text
    assert "data as of <b>2026-11-20 15:00 UTC</b>" in index and "the last good run finished 10 min ago" in index
    assert 'data-shop="eu-shop" data-stale="true"' in index
    assert "the last good run finished 5 h ago: these figures are not current" in index

    done = c.post(
        "/retry",
        data={"shop": "default", "key": "post_tracking:576000000000000031:1Z031"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "operations#actions"
    [(attrs, cells)] = Page(c.get("/operations").text).tables["actions"]
    assert attrs["data-status"] == "retry_asked" and cells[6].startswith("retry asked by kim at 2031-03-04 12:00")
    again = c.post(
        "/retry", data={"shop": "default", "key": "post_tracking:576000000000000031:1Z031"}, headers=SAME_ORIGIN
    )
    assert (
        again.status_code == 400
        and 'class="shop refused"' in again.text
        and "is pending: nothing to retry" in again.text
    )
    assert '<a href="operations" id="back">' in again.text and "<h1>Operations</h1>" in again.text
    # a user who may not change DAG runs, or a post from elsewhere, changes nothing
    for refused, headers in (
        (inbox_client(wh, reports, allowed=False), SAME_ORIGIN),
        (c, {"origin": "http://evil.test"}),
    ):
        assert refused.post("/retry", data={"shop": "default", "key": "x"}, headers=headers).status_code == 403
    wh.dispose()
