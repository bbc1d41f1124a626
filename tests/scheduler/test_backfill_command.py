"""`make backfill` as docs/operations/backfills.md says: `make demo`, `make ui` (its Airflow on the
embedded PostgreSQL: API server, scheduler, DAG processor, triggerer), then `make backfill FROM TO
SHOP` beside it. The range is the smallest that shows the whole path: two windows of a shop whose
schedule is hourly (the shops file's `schedule`), then the report of their day. The backfill's
runs must all succeed, the runs must be in the warehouse's `runs` and the day in `sla_daily`, and
the UI must still answer afterwards.

Slow: 4.5 minutes measured on 2 cores shared with other work (the demo about 2 min, the UI 30 s,
the backfill 2.5 min).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from include.store.warehouse import Warehouse, runs, sla_daily

pytestmark = pytest.mark.slow

# the demo's sandbox clock is 2026-11-20T15:00Z (sandbox.generate); the day before it has ended there
DAY = "2026-11-19"


def api_login(state) -> httpx.Client:
    base = json.loads((state / "ui.json").read_text())["url"]
    password = json.loads((state / "airflow" / "orderops_ui_passwords.json").read_text())["admin"]
    token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=60)
    return httpx.Client(
        base_url=f"{base}/api/v2", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=60
    )


@pytest.fixture
def demo_folder():
    """A folder outside pytest's: run as root, PostgreSQL runs as `nobody`, which needs search access
    to the folders above its data, and a pytest session starting beside this one makes its
    temporary root private again."""
    folder = Path(tempfile.mkdtemp(prefix="orderops-backfill-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def in_a_terminal() -> None:
    """`make ui` as a terminal starts it, Ctrl-C delivered: a suite started in the background (nohup,
    `cmd &` in a script) ignores SIGINT, and the processes it starts would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.timeout(1500)
def test_make_backfill_beside_make_ui_runs_the_range_then_its_report(demo_folder):
    state = demo_folder / "demo"
    shops = demo_folder / "shops.json"
    shops.write_text(json.dumps([{"name": "default", "schedule": "0 * * * *"}]))
    env = {**os.environ, "ORDEROPS_SHOPS_FILE": str(shops)}
    python = [sys.executable, "-m"]
    # make demo
    demo = subprocess.run(
        [*python, "sandbox.demo", "--orders", "20", "--seed", "3", "--state", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    # make ui, left running
    ui = subprocess.Popen(
        [*python, "sandbox.demo", "ui", "--state", str(state), "--port", "0"],
        env=env,
        stdout=(demo_folder / "ui.out").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=in_a_terminal,
    )
    try:
        deadline = time.monotonic() + 300
        while not (state / "ui.json").exists():
            assert ui.poll() is None and time.monotonic() < deadline, (demo_folder / "ui.out").read_text()[-3000:]
            time.sleep(1)
        # make backfill FROM=2026-11-19T00:00 TO=2026-11-19T02:00 SHOP=default
        started = time.monotonic()
        done = subprocess.run(
            [*python, "deploy.backfill", "--from", f"{DAY}T00:00", "--to", f"{DAY}T02:00", "--shop", "default"]
            + ["--state", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        print(done.stdout, done.stderr, f"backfill took {time.monotonic() - started:.0f} s", sep="\n")
        ui_log = (state / "logs" / "ui.log").read_text()[-3000:]
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + ui_log
        # progress and an estimate as it went
        assert "orderops_sla: backfill" in done.stdout and "2 run(s) to do" in done.stdout
        assert "1/2 runs done" in done.stdout and "a run so far, about" in done.stdout
        assert "orderops_sla: 2/2 runs done" in done.stdout and "orderops_sla_report: 1/1 runs done" in done.stdout

        # the UI is still up, and Airflow says the same
        api = api_login(state)
        assert api.get("/monitor/health").status_code == 200
        pipeline = api.get(
            "/dags/orderops_sla/dagRuns",
            params={"logical_date_gte": f"{DAY}T00:00:00Z", "logical_date_lte": f"{DAY}T23:59:59Z"},
        ).json()["dag_runs"]
        assert sorted((r["logical_date"][:16], r["run_type"], r["state"]) for r in pipeline) == [
            (f"{DAY}T00:00", "backfill", "success"),
            (f"{DAY}T01:00", "backfill", "success"),
        ]
        report = api.get("/dags/orderops_sla_report/dagRuns", params={"run_type": "backfill"}).json()["dag_runs"]
        assert [(r["logical_date"][:10], r["state"]) for r in report] == [(DAY, "success")]
        # paused again, as the demo left them
        assert (
            api.get("/dags/orderops_sla").json()["is_paused"]
            and api.get("/dags/orderops_sla_report").json()["is_paused"]
        )
        api.close()
    finally:
        os.killpg(ui.pid, signal.SIGINT)  # Ctrl-C
        ui.wait(120)
    assert not (state / "ui.json").exists() and not (state / "postgres" / "postmaster.pid").exists()

    wh = Warehouse(f"sqlite:///{state / 'warehouse.db'}")
    with wh.engine.connect() as conn:
        windows = sorted(
            str(w)[:16]
            for (w,) in conn.execute(sa.select(runs.c.window_start).where(runs.c.run_id.like("backfill__%")))
        )
        days = {str(d) for (d,) in conn.execute(sa.select(sla_daily.c.day).where(sla_daily.c.shop == "default"))}
    wh.dispose()
    assert windows == [f"{DAY} 00:00", f"{DAY} 01:00"]
    assert str(date.fromisoformat(DAY)) in days
