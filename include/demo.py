"""`make demo`: the pipeline once, on embedded defaults, against the sandbox.

Generates a scenario of a few hundred orders, serves the four simulators on free loopback ports,
runs the `orderops_sla` DAG once with `airflow dags test` (SQLite metadata and warehouse under
state/demo), prints what happened and where everything is, then stops the sandbox.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from include.runconfig import STATE_DIR
from include.sandbox.connections import connection_env
from include.sandbox.core import Sandbox, Settings
from include.sandbox.generate import DEFAULT_NOW, generate
from include.sandbox.scenario import parse_scenario, parse_time
from include.sandbox.server import SandboxServer
from include.warehouse import Warehouse, action_ledger, runs, stg_tiktok_orders

REPO = Path(__file__).resolve().parents[1]
# Pools sized to the platforms' quotas: how many tasks may call each platform at once.
POOLS = {"tiktok_api": 4, "shopify_api": 2, "amazon_api": 1, "shipbob_api": 1, "fulfiller_api": 2}
# Airflow's SQLite metadata DB is shared by several processes: wait for locks instead of failing
SQLITE_CONNECT_ARGS = {"timeout": 60}


def airflow_env(home: Path, urls: dict[str, str], warehouse_db: Path, lineage: Path) -> dict[str, str]:
    """Everything `airflow` needs to run orderops against a sandbox, on embedded defaults."""
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(lineage), "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "orderops",
        "ORDEROPS_SANDBOX_CLOCK_URL": f"{urls['tiktok']}/_sandbox/clock",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        "TQDM_DISABLE": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "include.demo.SQLITE_CONNECT_ARGS",
        # `airflow dags test` fails at the end of a run of a DAG with a deadline (Airflow 3.3.2); the
        # scheduler-driven runs keep it
        "ORDEROPS_RUN_DEADLINE_MINUTES": "0",
    })
    env.update(connection_env(urls, warehouse={"conn_type": "sqlite", "host": str(warehouse_db)}))
    return env


def airflow(env: dict[str, str], *args: str, log=None) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).with_name("airflow")
    return subprocess.run([str(binary), *args], env=env, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def prepare_airflow(env: dict[str, str], log) -> None:
    """Migrate the metadata DB and create the pools (one import for all of them)."""
    pools = Path(env["AIRFLOW_HOME"]) / "orderops_pools.json"
    pools.parent.mkdir(parents=True, exist_ok=True)
    pools.write_text(json.dumps({name: {"slots": slots, "description": f"orderops: calls to {name[:-4]}"}
                                 for name, slots in POOLS.items()}))
    for step in (("db", "migrate"), ("pools", "import", str(pools))):
        done = airflow(env, *step, log=log)
        if done.returncode != 0:
            raise SystemExit(f"airflow {' '.join(step)} failed; see {log.name}")


def report(wh: Warehouse, now: datetime) -> list[str]:
    lines = []
    with wh.engine.connect() as conn:
        run = conn.execute(sa.select(runs).order_by(runs.c.started_at.desc())).first()
        if run is None:
            return ["no run recorded"]
        summary = run.summary or {}
        lines.append(f"run {run.run_id}: {run.state}, window {run.window_start:%Y-%m-%d %H:%M} .. {run.window_end:%H:%M} UTC")
        lines.append("orders seen: " + ", ".join(f"{k} {v}" for k, v in summary.get("orders_seen", {}).items()))
        lines.append("decisions by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.get("decisions", {}).items())))
        t = action_ledger.c
        lines.append("actions by kind and outcome:")
        for kind, state, n in conn.execute(sa.select(t.kind, t.state, sa.func.count()).group_by(t.kind, t.state).order_by(t.kind)):
            lines.append(f"  {kind:24s} {state:10s} {n}")
        lines.append("escalations (a person must look at these):")
        for order_id, rule, request in conn.execute(sa.select(t.tiktok_order_id, t.rule, t.request).where(t.kind == "escalate")):
            lines.append(f"  {order_id} [{rule}] {request['reason_code']}: {request['detail']}")
        o = stg_tiktok_orders.c
        late = conn.execute(sa.select(o.tiktok_order_id, o.rts_sla_time).where(
            o.status.in_(["AWAITING_SHIPMENT", "PARTIALLY_SHIPPING"]), o.tracking_number == "",
            o.rts_sla_time < now.replace(tzinfo=None) if wh.dialect == "sqlite" else o.rts_sla_time < now)).all()
        lines.append(f"SLA breaches as staged (past ship-by, no tracking before this run): {len(late)}")
        for order_id, due in late[:10]:
            lines.append(f"  {order_id} was due {due:%Y-%m-%d %H:%M} UTC")
        api = summary.get("api", {})
        lines.append("API calls: " + ", ".join(f"{p} {f['calls']} ({f['throttled']} throttled)" for p, f in sorted(api.items())))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.demo", description=__doc__)
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state", default=str(STATE_DIR / "demo"))
    args = parser.parse_args(argv)
    state = Path(args.state)
    shutil.rmtree(state, ignore_errors=True)
    (state / "logs").mkdir(parents=True)
    scenario_path = state / "scenario.json"
    scenario_path.write_text(json.dumps(generate(args.orders, args.seed), indent=1))
    sandbox = Sandbox(parse_scenario(json.loads(scenario_path.read_text())), Settings(clock_rate=0))
    server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()}).start()
    print(f"sandbox: {args.orders} orders (seed {args.seed}), clock frozen at {DEFAULT_NOW}")
    for name, url in server.urls.items():
        print(f"  {name:12s} {url}")
    warehouse_db, lineage = state / "warehouse.db", state / "lineage" / "events.jsonl"
    lineage.parent.mkdir()
    env = airflow_env(state / "airflow", server.urls, warehouse_db, lineage)
    now = parse_time(DEFAULT_NOW, "now")
    conf = {"window_start": (now - timedelta(minutes=30)).isoformat(), "window_end": now.isoformat()}
    log_path = state / "logs" / "airflow.log"
    try:
        with log_path.open("w") as log:
            print("preparing Airflow (SQLite metadata, pools) ...", flush=True)
            prepare_airflow(env, log)
            print("running orderops_sla once (airflow dags test) ...", flush=True)
            done = airflow(env, "dags", "test", "orderops_sla", "-c", json.dumps(conf), log=log)
        writes = [w for w in sandbox.writes if "token" not in w.operation and "Report" not in w.operation]
    finally:
        server.stop()
    wh = Warehouse(f"sqlite:///{warehouse_db}")
    print()
    print("\n".join(report(wh, now)))
    print(f"\nsandbox received {len(writes)} order writes: " + ", ".join(
        f"{p} {sum(1 for w in writes if w.platform == p)}" for p in sorted({w.platform for w in writes})))
    print(f"\nledger and staging: {warehouse_db}")
    print(f"  trace an order:   ORDEROPS_WAREHOUSE_URL=sqlite:///{warehouse_db} python -m include.orderops trace <tiktok_order_id>")
    print(f"lineage events:     {lineage}")
    print(f"Airflow log:        {log_path} (task logs under {state / 'airflow' / 'logs'})")
    print(f"scenario:           {scenario_path}")
    wh.dispose()
    if done.returncode != 0:
        print(f"\nthe DAG run failed (exit {done.returncode}); see {log_path}", file=sys.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
