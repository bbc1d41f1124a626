"""Great Expectations' Data Docs as the SLA page serves them, in headless Chromium with every request
to a host other than loopback refused and recorded: the index lists each validation result, a
validation page shows its tables in orderops' own style, and neither asks anything of the internet.
Screenshots go to the test's tmp dir and to state/screenshots/."""

from __future__ import annotations

import pytest

from include.quality.checkpoints import GX_DIR_ENV, docs_dir, validate_batches
from include.report.sla_ui import create_app
from tests.support import NOW, free_port
from tests.ui.browser import Browser, keep, serving
from tests.unit.test_quality import tiktok_row

pytestmark = pytest.mark.timeout(300)

RUNS = {  # run name -> (batch, rows): one that fails its suite, one that passes
    "default/run-1": ("tiktok_orders", [tiktok_row(), tiktok_row("576000000000000002", status="TELEPORTED")]),
    "north_shop/run-2": ("shipbob_orders", [{"shipbob_order_id": "1", "status": "Processing"}]),
}


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setenv(GX_DIR_ENV, str(tmp_path / "gx"))
    outcomes = {run: validate_batches({batch: rows}, NOW, run)[batch] for run, (batch, rows) in RUNS.items()}
    app = create_app(f"sqlite:///{tmp_path / 'warehouse.db'}", tmp_path / "reports", data_docs_dir=docs_dir())
    with serving(app, free_port()) as base:
        yield base, outcomes


def test_data_docs_work_offline_in_a_browser(site, tmp_path):
    base, outcomes = site
    browser = Browser(width=1366, height=900)
    try:
        outside = browser.only_loopback()
        browser.goto(f"{base}/data-docs/")
        browser.wait_for("document.readyState === 'complete'")
        listed = browser.js("""Array.from(document.querySelectorAll('table.validations tbody tr')).map(tr => ({
            batch: tr.dataset.batch, run: tr.dataset.run, result: tr.cells[0].innerText.trim(),
            page: tr.querySelector('a').href, shown: tr.getBoundingClientRect().height > 0}))""")
        expected = {
            (batch, run.replace("/", "_"), "passed" if outcomes[run].success else "failed")
            for run, (batch, _) in RUNS.items()
        }
        assert {(r["batch"], r["run"], r["result"]) for r in listed} == expected
        assert all(r["shown"] for r in listed) and not outcomes["default/run-1"].success
        keep(browser.screenshot(tmp_path / "data_docs_index.png", full_page=True), "data_docs_index.png")

        failed = next(r for r in listed if r["result"] == "failed")
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
