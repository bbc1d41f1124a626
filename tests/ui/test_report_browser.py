"""The daily SLA report in headless Chromium at A4 width (794 px) and on a laptop screen (1366 px):
no id, name or number broken across lines, no header word split, tables as wide as the page and no
wider. Screenshots go to the test's tmp dir and to state/screenshots/."""

from __future__ import annotations

import pytest

from include.report.reports import build_day
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    order_links,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_tiktok_orders,
)
from tests.support import NOW
from tests.ui.browser import Browser, keep
from tests.unit.test_reports import DAY, amazon, link, shipbob, t, tiktok

pytestmark = pytest.mark.timeout(300)

RUN = "scheduled__2026-11-19T23:30:00+00:00"  # an Airflow run id as long as they come
ORDERS = [f"5769{n:014d}" for n in range(1, 9)]  # TikTok's 18-digit order ids

# Per id cell (and header word): does its text lie on one line, inside its cell?
ONE_LINE = """(() => {
  const lines = (node, from, to) => { const r = document.createRange(); r.setStart(node, from); r.setEnd(node, to);
    return new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top))).size; };
  const broken = [];
  for (const td of document.querySelectorAll('td.id, td.num')) {
    const text = td.firstChild;
    if (!text) continue;
    if (lines(text, 0, text.length) !== 1 || td.scrollWidth > td.clientWidth) broken.push(td.innerText);
  }
  for (const th of document.querySelectorAll('th')) {
    const texts = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let text = texts.nextNode(); text; text = texts.nextNode())
      for (const word of text.data.matchAll(/\\S+/g))
        if (lines(text, word.index, word.index + word[0].length) !== 1) broken.push(th.innerText + ': ' + word[0]);
  }
  return broken;
})()"""
TABLES = """Array.from(document.querySelectorAll('table')).map(t => ({
  name: t.className, width: t.getBoundingClientRect().width, room: t.parentElement.clientWidth,
  overflow: t.parentElement.scrollWidth - t.parentElement.clientWidth,
  ids: t.querySelectorAll('td.id').length}))"""


@pytest.fixture
def report(tmp_path):
    """A day with late orders of both fulfillers, each with its chain, and escalations of a run."""
    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
    wh.migrate()
    fulfillers = ["amazon_mcf" if i % 2 else "shipbob" for i in range(len(ORDERS))]
    wh.upsert(
        stg_tiktok_orders,
        [
            tiktok(order, "2026-11-19T12:00", "2026-11-19T14:00" if i % 3 else None, scanned=None)
            for i, order in enumerate(ORDERS)
        ],
    )
    wh.upsert(
        order_links, [link(order, f, f"F{i}") for i, (order, f) in enumerate(zip(ORDERS, fulfillers, strict=True))]
    )
    wh.upsert(
        stg_amazon_fulfillment_orders,
        [
            amazon(f"F{i}", "FedEx Ground", "2026-11-19T09:00:00Z")
            for i, f in enumerate(fulfillers)
            if f == "amazon_mcf"
        ],
    )
    wh.upsert(
        stg_shipbob_orders,
        [shipbob(f"F{i}", "USPS", "2026-11-19T09:00:00Z") for i, f in enumerate(fulfillers) if f == "shipbob"],
    )
    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert(),
            [
                dict(
                    shop="s",
                    idempotency_key=f"escalate:{order}:CARRIER_UNMAPPED",
                    kind="escalate",
                    target=f"tiktok:order/{order}",
                    tiktok_order_id=order,
                    rule="T2",
                    decision_run_id=RUN,
                    request={
                        "reason_code": "CARRIER_UNMAPPED",
                        "detail": "the fulfiller's carrier Regional Courier Co is not among TikTok's providers",
                    },
                    state="succeeded",
                    attempts=1,
                    acted_at=t("2026-11-19T13:00"),
                    created_at=NOW,
                    updated_at=NOW,
                    run_id=RUN,
                )
                for order in ORDERS[:4]
            ],
        )
    built = build_day(wh, "s", DAY, now=NOW, out_dir=tmp_path / "reports")
    wh.dispose()
    return built


@pytest.mark.parametrize("width, name", [(794, "report_a4.png"), (1366, "report_laptop.png")])
def test_the_report_reads_at_a4_and_on_a_laptop(report, tmp_path, width, name):
    assert len(report.breaches) >= 6  # the page has long tables to lay out
    browser = Browser(width=width, height=1100)
    try:
        outside = browser.only_loopback()
        browser.goto(report.html_path.as_uri())
        browser.wait_for("document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)")
        broken = browser.js(ONE_LINE)
        assert broken == [], broken
        tables = browser.js(TABLES)
        assert {t["name"] for t in tables} == {"split", "breaches", "escalations"}
        assert sum(t["ids"] for t in tables if t["name"] == "escalations") == 4 * 4  # order, rule, reason, run
        for table in tables:
            assert table["width"] >= table["room"] - 1, table  # the page's whole width, none left unused
            assert table["overflow"] <= 0, table  # and no wider: nothing to scroll sideways, nothing cut in print
        body = browser.js("document.body.innerText")
        assert "How each figure is counted" in body and "README" not in body
        keep(browser.screenshot(tmp_path / name, full_page=True), name)
        assert outside == []
    finally:
        browser.close()
