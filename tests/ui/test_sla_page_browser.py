"""The "SLA breaches" page in a real Airflow API server, seen through headless Chromium.

Seeds a warehouse the way production does (the pipeline against the sandbox, then the daily
reports for several days), starts `airflow api-server` with this repo's plugins folder and
SimpleAuthManager, checks `airflow plugins` lists the plugin, then in Chromium: the page sends a
visitor to Airflow's login form, a viewer logs in by typing, the page shows the days and
escalations that are in the warehouse, a day's report and CSV open, and the page is reachable from
Airflow's own Browse menu; on the operations page a viewer's retry is refused, a lead's is taken.
Screenshots go to the test's tmp dir and to state/screenshots/.
Chromium comes from Debian (installed here when missing). About 1.5 minutes with Chromium present.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import struct
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from include.act.ledger import FAILED, Ledger, RunContext
from include.decide.model import POST_TRACKING, Action
from include.report.reports import build_day
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse, action_ledger, sla_daily
from sandbox.connections import connection_env
from sandbox.core import Sandbox, Settings
from sandbox.generate import generate
from sandbox.scenario import parse_scenario, parse_time
from sandbox.server import SandboxServer
from tests.support import NOW_ISO as NOW
from tests.support import free_port
from tests.ui.browser import Browser, ensure_chromium, keep

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")
LATER = "2026-11-20T15:30:00Z"
USER = "ops"  # a viewer: the page needs only read access to DAG runs
EDITOR = "lead"  # may change DAG runs: the escalation inbox's actions are hers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a fresh machine installs Chromium first (about 2 minutes)


def seed(warehouse_url: str, reports: Path) -> dict:
    """One pipeline run against the sandbox, then the daily reports around it."""
    # Amazon's shipment report is ready at once: the client would otherwise wait its 15 s poll per run
    simulator = Settings(
        clock_rate=0, platforms={"amazon_mcf": {"report_queue_seconds": 0, "report_processing_seconds": 0}}
    )
    sandbox = Sandbox(parse_scenario(generate(90, seed=11, now=NOW)), simulator)
    server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()}).start()
    wh = Warehouse(warehouse_url)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in connection_env(server.urls).items():
                mp.setenv(key, value)
            # two half-hour runs: the second stages what the first posted (tracking, cancellations)
            for run_id, start, end in (("ui-seed-1", "2026-11-20T14:30:00Z", NOW), ("ui-seed-2", NOW, LATER)):
                if run_id == "ui-seed-2":
                    httpx.post(
                        f"{server.urls['tiktok']}/_sandbox/clock", json={"now": LATER}, timeout=10
                    ).raise_for_status()
                settings = run_settings(
                    dag_id="orderops_sla",
                    run_id=run_id,
                    params={
                        "now": end,
                        "window_start": start,
                        "window_end": end,
                        "policy": {"cancel_verify_timeout_minutes": 0.05},
                    },
                )
                platforms = Platforms(settings)
                try:
                    run_all(settings, platforms, wh)
                finally:
                    platforms.close()
        now = parse_time(LATER, "now")
        built = {}
        for offset in range(-2, 2):
            day = now.date() + timedelta(days=offset)
            built[f"{day:%Y-%m-%d}"] = build_day(wh, "default", day, now=now, out_dir=reports)
        return built
    finally:
        server.stop()
        wh.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A seeded warehouse and a running Airflow API server with the plugin; stopped afterwards."""
    tmp = tmp_path_factory.mktemp("sla-ui")
    installer_error: list[BaseException] = []

    def install():
        try:
            ensure_chromium()
        except BaseException as exc:  # reported when the browser is needed
            installer_error.append(exc)

    installer = threading.Thread(target=install, daemon=True)
    installer.start()  # apt-get downloads while the pipeline runs

    home, reports, warehouse_db = tmp / "airflow", tmp / "reports", tmp / "warehouse.db"
    home.mkdir()
    password, editor_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: password, EDITOR: editor_password}))
    port = free_port()
    # this session's Airflow settings (unit-test mode, connections) stay out of the server's
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer,{EDITOR}:user",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "ORDEROPS_REPORTS_DIR": str(reports),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
    )
    log = (tmp / "airflow.log").open("w")
    timings = {}
    started = time.monotonic()
    migrate = subprocess.Popen([str(AIRFLOW), "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        built = seed(f"sqlite:///{warehouse_db}", reports)
        timings["seed"] = time.monotonic() - started
        assert migrate.wait(timeout=300) == 0, (tmp / "airflow.log").read_text()[-3000:]
    finally:
        if migrate.poll() is None:
            migrate.kill()
            migrate.wait()
    timings["migrate"] = time.monotonic() - started

    api = subprocess.Popen(
        [str(AIRFLOW), "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # the warehouse connection lives in Airflow's metadata DB, as one made in the UI or CLI would
        # (as JSON: without the SQLite provider, `--conn-type sqlite` is stored as "generic")
        conn_json = json.dumps({"conn_type": "sqlite", "host": str(warehouse_db)})
        connection = subprocess.Popen(
            [str(AIRFLOW), "connections", "add", "orderops_warehouse", "--conn-json", conn_json],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        listed = subprocess.run(
            [str(AIRFLOW), "plugins", "-o", "json"], env=env, capture_output=True, text=True, timeout=180
        )
        assert connection.wait(timeout=180) == 0, (tmp / "airflow.log").read_text()[-3000:]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert api.poll() is None, f"api-server exited:\n{(tmp / 'airflow.log').read_text()[-4000:]}"
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"api-server not healthy:\n{(tmp / 'airflow.log').read_text()[-4000:]}"
            time.sleep(0.5)
        timings["api_up"] = time.monotonic() - started
        installer.join(timeout=900)
        if installer_error:
            raise installer_error[0]
        timings["chromium_ready"] = time.monotonic() - started
        yield {
            "base": base,
            "password": password,
            "editor_password": editor_password,
            "tmp": tmp,
            "warehouse": f"sqlite:///{warehouse_db}",
            "built": built,
            "plugins": listed,
            "timings": timings,
        }
    finally:
        # the API server and its workers share a process group of their own
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if api.poll() is not None:
                break
            try:
                os.killpg(api.pid, sig)
            except ProcessLookupError:
                break
            try:
                api.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        log.close()
        print("timings (s from start):", {k: round(v, 1) for k, v in timings.items()})


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_airflow_lists_the_plugin(site):
    listed = site["plugins"]
    assert listed.returncode == 0, listed.stderr[-3000:]
    document = next(line for line in reversed(listed.stdout.splitlines()) if line.startswith("[{"))
    plugins = {p["name"]: p for p in json.loads(document)}
    plugin = plugins["orderops_sla"]
    assert plugin["source"].endswith("orderops_sla_plugin.py")
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/orderops-sla", "/orderops-events"]
    assert plugin["external_views"][0]["href"] == "/orderops-sla/"
    assert plugin["external_views"][0]["url_route"] == "sla_breaches"


def test_plugin_routes_need_an_airflow_login(site):
    base = site["base"]
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/orderops-sla/api/days").status_code == 401
        assert http.get("/orderops-sla/reports/default/2026-11-20/report.html").status_code == 401
        page = http.get("/orderops-sla/?days=7", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")
        assert "orderops-sla" in page.headers["location"]
        token = http.post("/auth/token", json={"username": USER, "password": site["password"]}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        days = http.get("/orderops-sla/api/days", headers=auth)
        assert days.status_code == 200 and days.json()["shops"][0]["shop"] == "default"
        assert http.get("/orderops-sla/reports/default/2026-11-20/report.html", headers=auth).status_code == 200
        assert (
            http.get("/orderops-sla/reports/default/..%2F..%2F..%2Fairflow/airflow.db", headers=auth).status_code == 404
        )
        # the seed runs' Great Expectations Data Docs (ORDEROPS_GX_DIR, tests/conftest.py), behind the same login
        assert http.get("/orderops-sla/data-docs/").status_code == 401
        assert http.get("/orderops-sla/data-docs/default/").status_code == 401
        sites = http.get("/orderops-sla/data-docs/", headers=auth)
        assert sites.status_code == 200 and 'href="default/"' in sites.text
        docs = http.get("/orderops-sla/data-docs/default/", headers=auth)
        assert docs.status_code == 200 and "validations/tiktok_orders/default_ui-seed-1" in docs.text
        assert docs.headers["content-security-policy"].startswith("sandbox")
        assert http.get("/orderops-sla/data-docs/default/..%2F.lock", headers=auth).status_code == 404
        assert http.get("/orderops-sla/api/days", headers={"Authorization": "Bearer not-a-token"}).status_code == 403


def test_the_inbox_acts_for_an_editor_and_refuses_a_viewer(site):
    base = site["base"]
    _, escalations = expected(site)
    order = escalations[0].tiktok_order_id
    key = f"escalate:{order}:{escalations[0].request['reason_code']}"
    form = {"shop": "default", "key": key, "state": "acknowledged", "note": "called the fulfiller"}
    host = {"origin": base}
    with httpx.Client(base_url=base, timeout=30) as http:

        def login(user, password):
            token = http.post("/auth/token", json={"username": user, "password": password}).json()["access_token"]
            return {"Authorization": f"Bearer {token}"}

        viewer, editor = login(USER, site["password"]), login(EDITOR, site["editor_password"])
        assert http.post("/orderops-sla/escalations", data=form).status_code == 401  # no login
        assert http.post("/orderops-sla/escalations", data=form, headers={**viewer, **host}).status_code == 403
        assert http.post("/orderops-sla/escalations", data=form, headers=editor).status_code == 403  # no origin
        done = http.post("/orderops-sla/escalations", data=form, headers={**editor, **host}, follow_redirects=False)
        assert done.status_code == 303, done.text
        listed = {
            e["key"]: e
            for s in http.get("/orderops-sla/api/days", headers=viewer).json()["shops"]
            for e in s["escalations"]
        }
        assert (listed[key]["review"], listed[key]["reviewed_by"], listed[key]["review_note"]) == (
            "acknowledged",
            EDITOR,
            "called the fulfiller",
        )


def expected(site) -> tuple[list, list]:
    wh = Warehouse(site["warehouse"])
    with wh.engine.connect() as conn:
        s, a = sla_daily.c, action_ledger.c
        days = conn.execute(
            sa.select(sla_daily)
            .where(s.shop == "default", s.fulfiller == "all", s.carrier == "all")
            .order_by(s.day.desc())
        ).all()
        escalations = conn.execute(sa.select(a.tiktok_order_id, a.request).where(a.kind == "escalate")).all()
    wh.dispose()
    return days, escalations


def test_sla_page_in_a_browser(site):
    base, tmp = site["base"], site["tmp"]
    days, escalations = expected(site)
    # the seed must give the page something to show: a day over the line and escalations
    assert any(d.ldr_over_line for d in days) and any(not d.ldr_over_line for d in days) and escalations
    browser = Browser()
    try:
        # a visitor without a session is sent to Airflow's login form and, once signed in, back to the page
        browser.goto(f"{base}/orderops-sla/")
        browser.wait_for("location.pathname === '/auth/login' && document.querySelector('input[name=password]')")
        browser.type_into("input[name=username]", USER)
        browser.type_into("input[name=password]", site["password"])
        browser.wait_for("!document.querySelector('button[type=submit]').disabled", 15)
        browser.js("document.querySelector('button[type=submit]').click()")
        browser.wait_for("location.pathname === '/orderops-sla/' && document.querySelector('table.days tbody tr')")

        rows = browser.js("""Array.from(document.querySelectorAll('table.days tbody tr')).map(tr => ({
            day: tr.dataset.day, over: tr.dataset.ldrOver,
            cells: Array.from(tr.cells).map(td => td.innerText.trim()),
            pill: getComputedStyle(tr.querySelector('.pill')).backgroundColor,
            report: (tr.querySelector('a[href$="report.html"]') || {}).href,
            csv: (tr.querySelector('a[href$="breaches.csv"]') || {}).href}))""")
        assert [r["day"] for r in rows] == [f"{d.day:%Y-%m-%d}" for d in days]  # newest first
        for row, day in zip(rows, days, strict=True):
            assert row["cells"][1:6] == [
                str(day.orders_due),
                str(day.dispatched_on_time),
                str(day.dispatched_late),
                str(day.past_due_no_tracking),
                f"{day.late_dispatch_rate * 100:.1f}%" if day.orders_due else "no orders due",
            ]
            assert row["over"] == str(day.ldr_over_line).lower()
            # the highlight is really drawn: red for over the 4% line, green within it, grey for no orders due
            assert row["pill"] == (
                "rgb(255, 227, 227)"
                if day.ldr_over_line
                else "rgb(227, 249, 229)"
                if day.orders_due
                else "rgb(238, 240, 243)"
            ), row
            assert row["report"] and row["csv"], row
        listed = browser.js("""Array.from(document.querySelectorAll('table.escalations tbody tr[data-order]'))
            .map(tr => [tr.dataset.order, tr.querySelector('.reason').innerText, tr.cells[4].innerText])""")
        assert sorted(map(tuple, listed)) == sorted(
            (e.tiktok_order_id, e.request["reason_code"], e.request["detail"]) for e in escalations
        )
        # the page read the warehouse the Airflow connection names (not a fallback)
        assert str(site["warehouse"].removeprefix("sqlite:///")) in browser.js("document.body.innerText")
        shot = browser.screenshot(tmp / "sla_page.png", full_page=True)
        width, height = png_size(shot)
        assert width == 1440 and height > 800 and shot.stat().st_size > 30_000
        keep(shot, "sla_page.png")

        # a day's report opens with its charts
        worst = next(r for r, d in zip(rows, days, strict=True) if d.ldr_over_line)
        browser.goto(worst["report"])
        browser.wait_for("document.images.length >= 1 && Array.from(document.images).every(i => i.complete)")
        # the 30-day trend charts, or the sentence saying there is no trend yet
        assert browser.js("document.images.length >= 3 || !!document.querySelector('.no-trend')")
        assert browser.js("document.querySelector('h1').innerText") == f"SLA report: shop default, {worst['day']} (UTC)"
        assert browser.js("Array.from(document.images).every(i => i.naturalWidth > 300)")
        browser.screenshot(tmp / "report.png")

        # Airflow's own navigation: Browse -> SLA breaches shows the page inside the Airflow UI
        browser.goto(f"{base}/")
        # (the page's own policy allows no script requests, so the CSV is fetched from Airflow's page)
        csv_text = browser.js(f"fetch({json.dumps(worst['csv'])}).then(r => r.text())")
        assert csv_text.splitlines()[0] == "tiktok_order_id,kind,reason,fulfiller,carrier,chain"
        assert sorted(line.split(",")[0] for line in csv_text.splitlines()[1:]) == sorted(
            b["tiktok_order_id"] for b in site["built"][worst["day"]].breaches
        )
        browser.wait_for("document.querySelector('button[aria-label=Browse]')")
        browser.click("button", "Browse")
        browser.wait_for(
            "Array.from(document.querySelectorAll('[role=menuitem]')).some(e => e.innerText.trim() === 'SLA breaches')",
            30,
        )
        browser.click("menuitem", "SLA breaches")
        # Airflow then adds the framed page's own path (/plugin/sla_breaches/orderops-sla/) once it has
        # loaded: a loaded machine may first look after that
        browser.wait_for("location.pathname.startsWith('/plugin/sla_breaches')", 30)
        frame = "document.querySelector('iframe')"
        browser.wait_for(
            f"{frame} && {frame}.contentDocument && "
            f"{frame}.contentDocument.querySelectorAll('table.days tbody tr').length === {len(days)}",
            60,
        )
        assert browser.js(f"{frame}.getAttribute('src')").rstrip("/").endswith("/orderops-sla")
        assert browser.js(f"{frame}.getBoundingClientRect().width") > 1000
        time.sleep(0.5)  # let the frame paint before the picture
        embedded = browser.screenshot(tmp / "sla_page_in_airflow.png")
        keep(embedded, "sla_page_in_airflow.png")
    finally:
        browser.close()


def login(browser: Browser, base: str, user: str, password: str) -> None:
    browser.goto(f"{base}/orderops-sla/")
    browser.wait_for("location.pathname === '/auth/login' && document.querySelector('input[name=password]')")
    browser.type_into("input[name=username]", user)
    browser.type_into("input[name=password]", password)
    browser.wait_for("!document.querySelector('button[type=submit]').disabled", 15)
    browser.js("document.querySelector('button[type=submit]').click()")
    browser.wait_for("location.pathname === '/orderops-sla/' && document.querySelector('table.escalations tbody tr')")


def test_a_lead_resolves_an_escalation_in_the_browser_a_viewer_cannot(site):
    base, tmp = site["base"], site["tmp"]
    open_row = "document.querySelector('table.escalations tr[data-review=open]')"
    viewer = Browser()
    try:
        login(viewer, base, USER, site["password"])
        order = viewer.js(f"{open_row}.dataset.order")
        viewer.js(f"{open_row}.querySelector('button[value=resolved]').click()")
        viewer.wait_for("location.pathname === '/orderops-sla/escalations' && document.body.innerText.length > 0")
        assert "Forbidden" in viewer.js("document.body.innerText")  # a viewer may read, not act
    finally:
        viewer.close()
    lead = Browser()
    try:
        login(lead, base, EDITOR, site["editor_password"])
        row = f"document.querySelector('table.escalations tr[data-order=\"{order}\"]')"
        assert lead.js(f"{row}.dataset.review") == "open"  # the viewer changed nothing
        lead.type_into(f"table.escalations tr[data-order='{order}'] input[name=note]", "fulfiller says it ships today")
        lead.js(f"{row}.querySelector('button[value=resolved]').click()")
        lead.wait_for(f"location.pathname === '/orderops-sla/' && {row} && {row}.dataset.review === 'resolved'", 30)
        cell = lead.js(f"{row}.cells[5].innerText")
        assert "resolved" in cell and f"by {EDITOR}" in cell and "fulfiller says it ships today" in cell
        keep(lead.screenshot(tmp / "inbox.png", full_page=True), "inbox.png")
    finally:
        lead.close()


def test_a_lead_filters_the_inbox_takes_an_escalation_and_gets_a_styled_refusal(site):
    base, tmp = site["base"], site["tmp"]
    lead = Browser()
    try:
        login(lead, base, EDITOR, site["editor_password"])
        # the filter is a plain form (the page runs no script): open escalations only
        lead.js("document.querySelector('form.filters select[name=review]').value = 'open'")
        lead.js("document.querySelector('form.filters button[type=submit]').click()")
        lead.wait_for("location.search.includes('review=open') && document.querySelector('table.escalations')", 30)
        reviews = lead.js(
            "Array.from(document.querySelectorAll('table.escalations tr[data-order]')).map(tr => tr.dataset.review)"
        )
        assert reviews and set(reviews) == {"open"}
        order = lead.js("document.querySelector('table.escalations tr[data-review=open]').dataset.order")
        row = f"document.querySelector('table.escalations tr[data-order=\"{order}\"]')"
        # each order shows the command printing its chain and links to its pages on the platforms
        assert f"python -m include.cli trace {order}" in lead.js(f"{row}.cells[1].innerText")
        assert lead.js(f"{row}.querySelector('.order-links a').href").endswith(f"order_no={order}")
        # she takes it: owner and acknowledgement in one form
        lead.type_into(f"table.escalations tr[data-order='{order}'] input[name=owner]", EDITOR)
        lead.js(f"{row}.querySelector('button[value=acknowledged]').click()")
        lead.wait_for(f"location.pathname === '/orderops-sla/' && {row} && {row}.dataset.review === 'acknowledged'", 30)
        assert f"owner {EDITOR}" in lead.js(f"{row}.cells[5].innerText")
        keep(lead.screenshot(tmp / "inbox_owner.png", full_page=True), "inbox_owner.png")
        # a filter the page does not know: its own styled page names what was wrong, with the way back
        lead.goto(f"{base}/orderops-sla/?review=closed")
        lead.wait_for("document.querySelector('section.refused')")
        text = lead.js("document.body.innerText")
        assert "review 'closed': expected one of open, acknowledged, resolved" in text and "Nothing was changed" in text
        assert lead.js("getComputedStyle(document.querySelector('section.refused')).borderLeftColor") == (
            "rgb(214, 69, 69)"
        )
        keep(lead.screenshot(tmp / "inbox_refused.png"), "inbox_refused.png")
    finally:
        lead.close()


def failed_post(site) -> str:
    """A tracking post TikTok refused, recorded as a run records one; returns its key."""
    wh = Warehouse(site["warehouse"])
    try:
        ledger = Ledger(wh)
        ctx = RunContext(shop="default", dag_id="orderops_sla", run_id="ui-seed-2", task_id="post_tracking")
        action = Action(
            POST_TRACKING,
            "tiktok:order/576999000000000001",
            {"tiktok_order_id": "576999000000000001", "tracking_number": "1ZREFUSED1", "shipping_provider_id": "P"},
            "post_tracking:576999000000000001:1ZREFUSED1",
        )
        ledger.record(ctx, action, rule="T1", decision_run_id="ui-seed-2", tiktok_order_id="576999000000000001")
        claim = ledger.claim(ctx, action.idempotency_key)
        assert claim is not None
        ledger.finish(claim, FAILED, detail="TikTok refused: tracking number invalid (21011013)")
        return action.idempotency_key
    finally:
        wh.dispose()


def test_operations_page_a_viewer_cannot_retry_a_lead_can(site):
    base, tmp = site["base"], site["tmp"]
    key = failed_post(site)
    row = f"document.querySelector('table.actions tr[data-key=\"{key}\"]')"
    viewer = Browser()
    try:
        login(viewer, base, USER, site["password"])
        # from the SLA page's header to the operations page
        viewer.js("document.querySelector('a#operations').click()")
        viewer.wait_for(f"location.pathname === '/orderops-sla/operations' && {row}", 30)
        assert viewer.js(f"{row}.dataset.status") == "failed"
        assert "tracking number invalid" in viewer.js(f"{row}.innerText")
        # the seed's shop has a good run a moment ago: its data is current, as of the runs' clock
        assert viewer.js("document.querySelector('table.freshness tr[data-shop=default]').dataset.stale") == "false"
        assert viewer.js("document.querySelectorAll('table.calls tr[data-platform]').length") > 0
        keep(viewer.screenshot(tmp / "operations.png", full_page=True), "operations.png")
        viewer.js(f"{row}.querySelector('button').click()")
        viewer.wait_for("location.pathname === '/orderops-sla/retry' && document.querySelector('section.refused')", 30)
        text = viewer.js("document.body.innerText")
        assert "may read DAG runs but not change them" in text and "nothing was changed" in text
        assert viewer.js("getComputedStyle(document.querySelector('section.refused')).borderLeftColor") == (
            "rgb(214, 69, 69)"
        )
        keep(viewer.screenshot(tmp / "operations_refused.png"), "operations_refused.png")
        viewer.js("document.querySelector('a#back').click()")
        viewer.wait_for(f"location.pathname === '/orderops-sla/operations' && {row}", 30)
        assert viewer.js(f"{row}.dataset.status") == "failed"  # the viewer changed nothing
    finally:
        viewer.close()
    lead = Browser()
    try:
        login(lead, base, EDITOR, site["editor_password"])
        lead.goto(f"{base}/orderops-sla/operations")
        lead.wait_for(f"{row} && {row}.dataset.status === 'failed'", 30)
        lead.js(f"{row}.querySelector('button').click()")
        lead.wait_for(
            f"location.pathname === '/orderops-sla/operations' && {row} && {row}.dataset.status === 'retry_asked'", 30
        )
        assert f"retry asked by {EDITOR}" in lead.js(f"{row}.innerText")
        assert not lead.js(f"{row}.querySelector('button')")  # asked once; the next run carries it out
        keep(lead.screenshot(tmp / "operations_retry.png", full_page=True), "operations_retry.png")
    finally:
        lead.close()
    wh = Warehouse(site["warehouse"])
    try:
        [row_after] = Ledger(wh).rows("default", idempotency_key=key)
        assert (row_after["state"], row_after["attempts"]) == ("pending", 1)  # same key, nothing sent yet
    finally:
        wh.dispose()
