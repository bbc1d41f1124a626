"""Great Expectations' Data Docs as the SLA page serves them, in headless Chromium with every request
to a host other than loopback refused and recorded: the list of the shops' sites puts the shop with
a failed result first, a shop's index lists its validation results, a validation page shows its
tables in orderops' own style, and none asks anything of the internet. Screenshots go to the test's
tmp dir and to state/screenshots/."""

from __future__ import annotations

import pytest

from include.quality.checkpoints import GX_DIR_ENV, gx_dir, validate_batches
from include.report.sla_ui import create_app
from tests.support import NOW, free_port
from tests.ui.browser import Browser, keep, serving
from tests.unit.test_quality import tiktok_row

pytestmark = pytest.mark.timeout(300)

RUNS = {  # run name -> (shop, batch, rows): one that fails its suite, two that pass
    "default/run-1": (
        "default",
        "tiktok_orders",
        [tiktok_row(), tiktok_row("576000000000000002", status="TELEPORTED")],
    ),
    "default/run-2": ("default", "shipbob_orders", [{"shipbob_order_id": "2", "status": "Processing"}]),
    "another/run-3": ("another", "shipbob_orders", [{"shipbob_order_id": "1", "status": "Processing"}]),
}


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv(GX_DIR_ENV, str(tmp_path / "gx"))
    outcomes = {
        run: validate_batches(shop, {batch: rows}, NOW, run)[batch] for run, (shop, batch, rows) in RUNS.items()
    }
    app = create_app(f"sqlite:///{tmp_path / 'warehouse.db'}", tmp_path / "reports", gx_root=gx_dir())
    with serving(app, free_port()) as base:
        yield base, outcomes


def test_data_docs_work_offline_in_a_browser(site, tmp_path):
    base, outcomes = site
    browser = Browser(width=1366, height=900)
    try:
        outside = browser.only_loopback()
        browser.goto(f"{base}/data-docs/")
        browser.wait_for("document.readyState === 'complete'")
        sites = browser.js("""Array.from(document.querySelectorAll('table.sites tbody tr')).map(tr => ({
            shop: tr.dataset.shop, failed: tr.cells[1].innerText.trim(), site: tr.querySelector('a').href}))""")
        # the shop with a failed result first, though "another" comes first by name
        assert [(s["shop"], s["failed"]) for s in sites] == [("default", "1 of 2"), ("another", "0 of 1")]
        keep(browser.screenshot(tmp_path / "data_docs_sites.png", full_page=True), "data_docs_sites.png")

        browser.goto(sites[0]["site"])
        browser.wait_for("document.readyState === 'complete'")
        listed = browser.js("""Array.from(document.querySelectorAll('table.validations tbody tr')).map(tr => ({
            batch: tr.dataset.batch, run: tr.dataset.run, result: tr.cells[0].innerText.trim(),
            page: tr.querySelector('a').href, shown: tr.getBoundingClientRect().height > 0}))""")
        expected = {  # the shop's own results only
            (batch, run.replace("/", "_"), "passed" if outcomes[run].success else "failed")
            for run, (shop, batch, _) in RUNS.items()
            if shop == "default"
        }
        assert {(r["batch"], r["run"], r["result"]) for r in listed} == expected
        assert all(r["shown"] for r in listed) and not outcomes["default/run-1"].success
        keep(browser.screenshot(tmp_path / "data_docs_index.png", full_page=True), "data_docs_index.png")

        failed = next(r for r in listed if r["result"] == "failed")
        assert failed["page"].startswith(f"{base}/data-docs/default/validations/")
        browser.goto(failed["page"])
        browser.wait_for("document.readyState === 'complete' && document.querySelector('table.table')")
        table = "document.querySelector('table.table')"
        style = browser.js(f"""(() => {{ const t = getComputedStyle({table}),
            th = getComputedStyle({table}.querySelector('th, td')), b = getComputedStyle(document.body);
            return {{collapse: t.borderCollapse, width: {table}.getBoundingClientRect().width,
                     pad: th.paddingLeft, font: b.fontFamily}}; }})()""")
        # a browser's own default would be separate borders, 1 px cells and a serif font
        assert style["collapse"] == "collapse" and style["pad"] == "8px", style
        assert "Times" not in style["font"] and style["width"] > 300, style
        assert "TELEPORTED" in browser.js("document.body.innerText")
        keep(browser.screenshot(tmp_path / "data_docs_validation.png", full_page=True), "data_docs_validation.png")
        assert outside == [], outside
        assert not any("Content Security Policy" in line for line in browser.console), browser.console
    finally:
        browser.close()
