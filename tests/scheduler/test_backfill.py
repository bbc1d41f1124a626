"""Backfill three missed days with a real scheduler (api server, scheduler, dag processor and
triggerer as separate processes on SQLite, as `airflow standalone` runs them) against the sandbox.

The pipeline backfill is created with the CLI, the report backfill through the REST API; then every
run must succeed, the three days must be in `sla_daily`, and the sandbox's write log must show
each action exactly once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import date

import httpx
import pytest
import sqlalchemy as sa

from include.store.warehouse import Warehouse, action_ledger, sla_daily
from sandbox.core import Settings, changes_orders
from sandbox.generate import generate
from tests.scheduler.stack import airflow_stack as stack
from tests.scheduler.stack import runs

pytestmark = pytest.mark.slow

DAYS = ("2026-11-17", "2026-11-18", "2026-11-19")


@pytest.fixture
def airflow_stack(run_sandbox, tmp_path):
    server = run_sandbox(generate(90, seed=11), settings=Settings(clock_rate=0))

    def backfill_first(cli) -> None:
        # the missed days are backfilled before the scheduler starts (the CLI writes the runs directly)
        cli("dags", "unpause", "orderops_sla")
        cli(
            "backfill",
            "create",
            "--dag-id",
            "orderops_sla",
            "--from-date",
            DAYS[0],
            "--to-date",
            DAYS[-1],
            "--reprocess-behavior",
            "completed",
            "--max-active-runs",
            "1",
        )

    with stack(tmp_path, server, [{"name": "default", "schedule": "0 0 * * *"}], before_start=backfill_first) as s:
        yield s


def wait_for_backfill(api: str, dag_id: str, count: int, timeout: float) -> list[dict]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        backfill = [r for r in runs(api, dag_id) if r["run_type"] == "backfill"]
        if len(backfill) >= count and all(r["state"] in ("success", "failed") for r in backfill):
            return backfill
        time.sleep(3)
    raise AssertionError(f"{dag_id}: backfill runs not finished in {timeout} s: {runs(api, dag_id)}")


@pytest.mark.timeout(1800)
def test_backfill_three_missed_days(airflow_stack):
    cli, api, server = airflow_stack["cli"], airflow_stack["api"], airflow_stack["server"]
    started = time.monotonic()
    pipeline_runs = wait_for_backfill(api, "orderops_sla", 3, timeout=1200)
    print(f"three pipeline backfill runs finished in {time.monotonic() - started:.0f} s")
    cli("dags", "unpause", "orderops_sla_report")
    request = {
        "dag_id": "orderops_sla_report",
        "from_date": f"{DAYS[0]}T00:00:00Z",
        "to_date": f"{DAYS[-1]}T00:00:00Z",
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }
    deadline = time.monotonic() + 180
    while True:
        created = httpx.post(f"{api}/api/v2/backfills", timeout=120, json=request)
        # on SQLite Airflow refuses a backfill while the scheduler holds the database (503, or a 500
        # "Database error" when the lock wait runs out on a loaded machine): ask again
        locked = created.status_code == 503 or (created.status_code == 500 and '"Database error"' in created.text)
        if not locked or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert created.status_code in (200, 201), created.text
    report_runs = wait_for_backfill(api, "orderops_sla_report", 3, timeout=300)

    logs = airflow_stack["logs"]
    for run in pipeline_runs:  # what each run did, for the log of a failing test
        tis = httpx.get(
            f"{api}/api/v2/dags/orderops_sla/dagRuns/{run['dag_run_id']}/taskInstances",
            params={"limit": 200},
            timeout=60,
        ).json()["task_instances"]
        print(run["dag_run_id"], run["state"], sorted({(t["task_id"], t["state"]) for t in tis}))
        for t in tis:
            if t["state"] == "failed":
                for log in sorted(
                    (airflow_stack["tmp"] / "airflow" / "logs").glob(
                        f"dag_id=orderops_sla/run_id={run['dag_run_id']}/task_id={t['task_id']}/**/*.log"
                    )
                ):
                    print(f"--- {log}\n" + "\n".join(log.read_text().splitlines()[-40:]))
    assert sorted(r["logical_date"][:10] for r in pipeline_runs) == list(DAYS)
    assert all(r["state"] == "success" for r in pipeline_runs), (logs / "scheduler.log").read_text()[-3000:]
    assert all(r["state"] == "success" for r in report_runs)

    wh = Warehouse(f"sqlite:///{airflow_stack['tmp'] / 'warehouse.db'}")
    with wh.engine.connect() as conn:
        days = {d for (d,) in conn.execute(sa.select(sla_daily.c.day).where(sla_daily.c.fulfiller == "all"))}
        ledger = conn.execute(
            sa.select(action_ledger.c.idempotency_key, action_ledger.c.state, action_ledger.c.run_id)
        ).all()
    wh.dispose()
    assert {date.fromisoformat(d) for d in DAYS} <= {
        d if isinstance(d, date) else date.fromisoformat(str(d)) for d in days
    }
    for day in DAYS:
        assert (airflow_stack["tmp"] / "reports" / "default" / day / "report.html").exists()
    assert ledger and all(state == "succeeded" for _, state, _ in ledger)

    # every action exactly once in the sandbox's write log, whichever run made it
    writes = [w for w in server.sandbox.writes if changes_orders(w.operation) and w.outcome == "ok"]
    targets = Counter(
        (w.operation, w.path if w.platform != "shopify" else json.dumps(w.body.get("variables"), sort_keys=True))
        for w in writes
    )
    repeated = {k: n for k, n in targets.items() if n > 1}
    assert writes and not repeated
    assert len(writes) >= len(ledger) - sum(1 for k, _, _ in ledger if k.startswith(("escalate:", "verify_")))
