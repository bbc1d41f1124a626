"""A newcomer's two commands: `make demo` (the run, then the report of the demo's day, and what to
look at next) and `make ui` (the Airflow UI on that run: login, the DAG runs, the SLA page)."""

from __future__ import annotations

import configparser
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from include.run.runconfig import SETTINGS
from include.store.warehouse import Warehouse, sla_daily
from sandbox import demo
from sandbox.connections import sandbox_connections

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_demo_then_ui_show_the_run_the_report_and_the_sla_page(tmp_path, capsys):
    state = tmp_path / "demo"
    assert demo.main(["--orders", "40", "--seed", "3", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    # progress while it runs, then where to look next
    assert "prepare_run ended" in out and "summarize_run ended" in out and "build_reports[0] ended" in out
    report = state / "reports" / "default" / "2026-11-20" / "report.html"
    assert f"the report of 2026-11-20:  {report}" in out and report.exists()
    assert "make ui" in out
    wh = Warehouse(f"sqlite:///{state / 'warehouse.db'}")
    with wh.engine.connect() as conn:
        day = (
            conn.execute(
                sa.select(sla_daily).where(
                    sla_daily.c.day == date(2026, 11, 20), sla_daily.c.fulfiller == "all", sla_daily.c.carrier == "all"
                )
            )
            .mappings()
            .one()
        )
    wh.dispose()
    # the Airflow home is usable on its own: its config names the real DAG and plugin folders
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(state / "airflow" / "airflow.cfg")
    assert cfg["core"]["dags_folder"] == str(REPO / "dags") and cfg["core"]["plugins_folder"] == str(REPO / "plugins")
    # each task's log is a file in the Airflow home's log folder, the summary in summarize_run's
    logs = state / "airflow" / "logs"
    (summary_log,) = logs.glob("dag_id=orderops_sla/run_id=*/task_id=summarize_run/attempt=1.log")
    # the demo's window, a hidden param, reached the run through its conf
    assert "decisions by rule" in summary_log.read_text() and "sweep (explicit window)" in summary_log.read_text()
    assert "decisions by rule" not in "".join(p.read_text() for p in logs.rglob("task_id=check_run/*.log"))
    (report_log,) = logs.glob("dag_id=orderops_sla_report/run_id=*/task_id=build_reports/map_index=0/attempt=1.log")
    assert "default 2026-11-20: due " in report_log.read_text()

    ui = subprocess.Popen(
        [sys.executable, "-m", "sandbox.demo", "ui", "--state", str(state), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while not any("Ctrl-C stops it." in line for line in lines):
            line = ui.stdout.readline()
            assert line or ui.poll() is None, "".join(lines) + (state / "logs" / "ui.log").read_text()[-3000:]
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        head = next(line for line in lines if line.startswith("Airflow UI"))
        base, password = head.split()[2], head.split("password ")[1].strip()
        with httpx.Client(base_url=base, timeout=60) as http:
            # every component reports healthy, the triggerer too (it beats a few seconds after it starts)
            health: dict = {}
            while health.get("triggerer", {}).get("status") != "healthy":
                assert time.monotonic() < deadline, health
                health = http.get("/api/v2/monitor/health").json()
                time.sleep(0.5)
            assert {name: part["status"] for name, part in health.items()} == dict.fromkeys(
                ("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy"
            )
            token = http.post("/auth/token", json={"username": "admin", "password": password}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            assert http.get("/api/v2/dags/orderops_sla/dagRuns", headers=auth).status_code == 200
            runs = http.get("/api/v2/dags/orderops_sla/dagRuns", headers=auth).json()["dag_runs"]
            assert [r["state"] for r in runs] == ["success"]
            reports = http.get("/api/v2/dags/orderops_sla_report/dagRuns", headers=auth).json()["dag_runs"]
            assert [r["state"] for r in reports] == ["success"]
            # a run's times are all on the wall clock: the report of the sandbox's day (its `day` param)
            # lasts its minutes, not the days from the sandbox's day to now
            assert reports[0]["conf"] == {"day": "2026-11-20"}
            for run in (runs[0], reports[0]):
                started, ended = (
                    datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date")
                )
                assert timedelta(0) <= ended - started < timedelta(minutes=15), run
            # the UI's log view shows the demo's task logs: the run summary, the report's line
            for dag_id, run, task, extra, expect in (
                ("orderops_sla", runs[0], "summarize_run", "", "decisions by rule"),
                ("orderops_sla_report", reports[0], "build_reports", "?map_index=0", "default 2026-11-20: due "),
            ):
                path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances/{task}/logs/1"
                shown = http.get(path + extra, headers={**auth, "Accept": "application/json"})
                text = "\n".join(str(line.get("event", "")) for line in shown.json()["content"])
                assert expect in text and "Log file not found" not in text, text[-2000:]
            # the trigger form: an operator's settings, each described; the hidden ones still go in
            # through a run's conf, and the API refuses a bad policy before a run exists
            form = http.get("/api/v2/dags/orderops_sla/details", headers=auth).json()["params"]
            assert sorted(form) == sorted(s.name for s in SETTINGS if s.for_operators)
            assert all(param["description"] for param in form.values()), form
            hidden = {"now": "2026-11-20T15:00:00+00:00", "window_start": "2026-11-20T14:30:00+00:00"}
            conf = {**hidden, "window_end": hidden["now"], "dry_run": True}
            made = http.post(
                "/api/v2/dags/orderops_sla/dagRuns", headers=auth, json={"logical_date": None, "conf": conf}
            )
            assert made.status_code == 200 and made.json()["conf"] == conf, made.text
            bad = {"logical_date": None, "conf": {"policy": {"c3_action": "shrug"}}}
            refused = http.post("/api/v2/dags/orderops_sla/dagRuns", headers=auth, json=bad)
            assert refused.status_code == 400 and "c3_action" in refused.text, refused.text
            days = http.get("/orderops-sla/api/days", headers=auth).json()["shops"][0]["days"]
            shown = next(d for d in days if d["day"] == "2026-11-20")
            assert shown["orders_due"] == day["orders_due"]
            assert http.get("/orderops-sla/api/days").status_code in (401, 403)  # the page needs the login
            assert http.post("/auth/token", json={"username": "admin", "password": "wrong"}).status_code == 401
            # the provider's connection types, as the connection form gets them: fields named, main extras
            forms = {m["connection_type"]: m for m in http.get("/ui/connections/hook_meta", headers=auth).json()}
            assert forms["tiktok_shop"]["hook_name"] == "TikTok Shop"
            assert forms["shipbob"]["standard_fields"]["password"]["title"] == "Bearer token (PAT)"
            assert forms["shipbob"]["standard_fields"]["login"]["hidden"] is True
            assert {"access_token", "refresh_token", "shop_cipher"} <= set(forms["tiktok_shop"]["extra_fields"])
            assert forms["amazon_mcf"]["extra_fields"]["refresh_token"]["schema"]["format"] == "password"
            assert set(forms["shopify"]["extra_fields"]) >= {"api_version", "client_id", "client_secret"}
            # the form's Test button runs the platform's hook against the sandbox
            sandbox = dict(
                pair.split(" ")
                for pair in next(line for line in lines if line.strip().startswith("sandbox: "))
                .split(":", 1)[1]
                .strip()
                .split(", ")
            )
            documents = sandbox_connections(sandbox)
            for platform, expect in (
                ("shipbob", "can write orders"),
                ("tiktok", "signature and token accepted"),
                ("shopify", "connected to"),
                ("amazon_mcf", "token exchanged"),
            ):
                body = {**documents[platform], "connection_id": f"orderops_{platform}"}
                body["extra"] = json.dumps(body["extra"])
                answer = http.post("/api/v2/connections/test", headers=auth, json=body).json()
                assert answer["status"] is True and expect in answer["message"], (platform, answer)
            wrong = {
                **documents["shipbob"],
                "connection_id": "orderops_shipbob",
                "password": "not-a-token",
                "extra": json.dumps(documents["shipbob"]["extra"]),
            }
            answer = http.post("/api/v2/connections/test", headers=auth, json=wrong).json()
            assert answer["status"] is False and "not-a-token" not in answer["message"], answer
    finally:
        ui.send_signal(signal.SIGTERM)
        try:
            ui.wait(90)
        except subprocess.TimeoutExpired:
            ui.kill()
            raise
    assert ui.returncode == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/api/v2/monitor/health", timeout=2)  # everything it started has stopped
