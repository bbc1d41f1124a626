"""One run, one set of numbers: the demo's pipeline against the sandbox (the demo's generated shop, its
window), the day's report, then the figures the demo's terminal prints, the SLA page shows, the
report holds and the run summary logs are equal wherever they share a name; the inbox's open count
counts open escalations only (a person resolved one, acknowledged another)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from include.report.figures import COUNTS, DAY_FIGURES, INBOX_FIGURES, RUN_FIGURES, day_figures, inbox_figures
from include.report.inbox import review
from include.report.reports import build_day
from include.report.sla_ui import create_app
from include.run.pipeline import run_all, summary_table
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse
from sandbox import demo
from sandbox.connections import connection_env
from sandbox.generate import generate
from sandbox.server import SandboxServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
NAMED = re.compile(r"^  (?P<name>[a-z_]+) (?P<n>\d+): ", re.M)
SUMMARY_ROW = re.compile(r"^  (?P<name>[a-z_]+) +(?P<n>\d+)  \(", re.M)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figures")
    sandbox = demo.scenario_sandbox(json.dumps(generate(200, 1)).encode(), "generated")
    now = sandbox.clock.now()
    server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()}).start()
    wh = Warehouse(f"sqlite:///{tmp / 'warehouse.db'}")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in connection_env(server.urls).items():
                mp.setenv(key, value)
            # the demo's one run: the half hour up to the sandbox's clock, decided on that clock (the
            # demo's DAG reads it from the sandbox)
            settings = run_settings(
                dag_id="orderops_sla",
                run_id="demo-figures",
                params={
                    "now": now.isoformat(),
                    "window_start": (now - timedelta(minutes=30)).isoformat(),
                    "window_end": now.isoformat(),
                },
            )
            platforms = Platforms(settings)
            try:
                summary = run_all(settings, platforms, wh)
            finally:
                platforms.close()
        built = build_day(wh, "default", now.date(), now=now, out_dir=tmp / "reports")
        yield {"wh": wh, "now": now, "summary": summary, "report": built, "reports": tmp / "reports"}
    finally:
        server.stop()
        wh.dispose()


def named(text: str, pattern: re.Pattern = NAMED) -> dict[str, int]:
    return {m["name"]: int(m["n"]) for m in pattern.finditer(text) if m["name"] in COUNTS}


def test_the_terminal_the_sla_page_the_report_and_the_run_summary_agree(demo_run):
    wh, now, summary = demo_run["wh"], demo_run["now"], demo_run["summary"]
    # a person works the inbox: one escalation resolved, one acknowledged
    escalated = summary["escalations"]
    assert len(escalated) >= 3
    keys = [f"escalate:{e['tiktok_order_id']}:" for e in escalated[:2]]
    page = TestClient(create_app(wh.url, demo_run["reports"]))
    listed = {e["key"]: e for e in page.get("/api/days").json()["shops"][0]["escalations"]}
    first, second = (next(k for k in listed if k.startswith(prefix)) for prefix in keys)
    review(wh, "default", first, "resolved", "lead", "called the fulfiller")
    review(wh, "default", second, "acknowledged", "lead")
    # the day's report as the next build writes it (a run's end or midnight), the figures unchanged
    report = build_day(wh, "default", now.date(), now=now, out_dir=demo_run["reports"])
    assert day_figures(report.rows[0]) == day_figures(demo_run["report"].rows[0])

    terminal = "\n".join(demo.report(wh, now, demo_run["reports"]))
    printed = named(terminal)
    logged = named(summary_table(summary), SUMMARY_ROW)
    api = page.get("/api/days").json()["shops"][0]
    [day] = [d for d in api["days"] if d["day"] == f"{now:%Y-%m-%d}"]
    shown_day = day_figures(day)
    shown_inbox = inbox_figures(e["review"] for e in api["escalations"])
    reported_day = day_figures(report.rows[0])

    # every name the terminal prints is one of the shared figures, and it prints them all
    assert set(printed) == set(COUNTS)
    assert {name: printed[name] for name in RUN_FIGURES} == {name: logged[name] for name in RUN_FIGURES}
    assert {name: printed[name] for name in DAY_FIGURES} == shown_day == reported_day
    assert {name: printed[name] for name in INBOX_FIGURES} == shown_inbox
    # the figures that differ in meaning differ here, under their own names
    assert printed["tracking_posted"] >= printed["tracking_orders_decided"] > 0
    assert printed["cancellation_records_read"] >= printed["cancel_requests"] > 0
    # the card and the heading say open and count open: the resolved and the acknowledged are out
    assert shown_inbox["escalations_resolved"] == 1 and shown_inbox["escalations_acknowledged"] == 1
    html = page.get("/", params={"shop": "default"}).text
    opened = shown_inbox["escalations_open"]
    assert f"<b>{opened}</b><span>open escalation{'s' if opened != 1 else ''}</span>" in html
    assert f"({opened} open, 1 acknowledged, 1 resolved of {opened + 2})" in html
    # the report's escalations say the same
    report_html = report.html_path.read_text()
    assert f"Escalations ({opened + 2}: {opened} open)" in report_html
    # the page says what each counts
    for name in ("orders_due", "past_due_no_tracking", "cancel_requests", "escalations_open"):
        assert f'title="{COUNTS[name]}"' in html
