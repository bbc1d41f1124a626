"""The production shape, for real: Airflow metadata and the warehouse on PostgreSQL, CeleryExecutor
on Redis with two workers, API server, scheduler, DAG processor and triggerer as separate processes
(deploy/prod_local.py, what `make prod-up` starts), two shops each with its own sandbox (own ports,
own credentials), one manual run per shop through the REST API, then a stop in the middle of a
third run.

Slow: 6-9 minutes measured on 2 cores shared with other test suites (about 1.5 min to start,
5 min for the two runs, 40 s to stop); most of it is task processes starting. Everything started
here is stopped at the end, also on failure.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg2
import pytest

from deploy.prod_local import Deployment, Processes, api_token, down, free_port, session_members, up
from include.run.steps import POOLS
from sandbox.generate import DEFAULT_NOW
from sandbox.scenario import parse_time

pytestmark = pytest.mark.slow

PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/8"  # prod-up uses db 7: the test never touches a running prod-up
AIRFLOW_DB, WAREHOUSE_DB = "orderops_prodtest_airflow", "orderops_prodtest_warehouse"
SHOPS = {"shop-1": "orderops_sla_shop_1", "shop-2": "orderops_sla_shop_2"}
# The machine's own start commands, used only when a service is not listening.
START = {
    5432: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    6379: 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_service(port: int) -> None:
    if listening(port):
        return
    subprocess.run(START[port], shell=True, check=False, timeout=60)
    for _ in range(60):
        if listening(port):
            return
        time.sleep(1)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} and `{START[port]}` did not start it")


def query(database: str, sql: str, *params) -> list[tuple]:
    conn = psycopg2.connect(f"{PG}/{database}")
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def tiktok_ids(scenario: dict) -> set[str]:
    """Every TikTok id (orders, line items, cancellations) of one shop's scenario."""
    return set(re.findall(r'"(\d{15,20})"', json.dumps([o["tiktok"] for o in scenario["orders"]])))


@pytest.mark.timeout(1200)
def test_two_shops_on_celery_postgres_redis(tmp_path):
    for port in (5432, 6379):
        ensure_service(port)
    dep = Deployment(
        state=str(tmp_path / "prod"),
        api_port=free_port(),
        pg_url=PG,
        redis_url=REDIS,
        airflow_db=AIRFLOW_DB,
        warehouse_db=WAREHOUSE_DB,
        workers=2,
        concurrency=3,
        schedule=False,
        sandbox_shops=2,
        sandbox_orders=60,
    )
    sessions: list[int] = []
    timings = {}
    try:
        t0 = time.monotonic()
        up(dep, fresh=True, timeout=420)
        sessions = [record["pid"] for record in Processes(dep).records().values()]
        timings["up"] = time.monotonic() - t0
        client = httpx.Client(base_url=dep.api_url, headers={"Authorization": f"Bearer {api_token(dep)}"}, timeout=60)

        # both shops' DAGs exist, unpaused, with pools sized for two shops
        dags = {d["dag_id"]: d for d in client.get("/api/v2/dags", params={"tags": "orderops"}).json()["dags"]}
        assert set(SHOPS.values()) <= set(dags), sorted(dags)
        pools = {p["name"]: p["slots"] for p in client.get("/api/v2/pools").json()["pools"]}
        assert {name: pools.get(name) for name in POOLS} == {name: 2 * slots for name, slots in POOLS.items()}

        # one manual run per shop, as of the sandboxes' frozen scenario clock
        now = parse_time(DEFAULT_NOW, "now")
        conf = {
            "window_start": (now - timedelta(minutes=30)).isoformat(),
            "window_end": now.isoformat(),
            "now": now.isoformat(),
        }
        t1 = time.monotonic()
        runs = {}
        for shop, dag_id in SHOPS.items():
            answer = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
            assert answer.status_code == 200, answer.text
            runs[shop] = answer.json()["dag_run_id"]
        states = {}
        deadline = time.monotonic() + 660
        while time.monotonic() < deadline:
            states = {
                shop: client.get(f"/api/v2/dags/{SHOPS[shop]}/dagRuns/{run_id}").json()["state"]
                for shop, run_id in runs.items()
            }
            if all(s in ("success", "failed") for s in states.values()):
                break
            time.sleep(5)
        timings["runs"] = time.monotonic() - t1
        assert states == {"shop-1": "success", "shop-2": "success"}, (states, _failed_tasks(client, runs))

        # tasks ran on both Celery workers (task instance hostnames, from the REST API)
        hosts = {}
        for shop, run_id in runs.items():
            tis = client.get(
                f"/api/v2/dags/{SHOPS[shop]}/dagRuns/{run_id}/taskInstances", params={"limit": 200}
            ).json()["task_instances"]
            assert tis and all(ti["state"] == "success" for ti in tis), [(t["task_id"], t["state"]) for t in tis]
            for ti in tis:
                hosts.setdefault(ti["hostname"], []).append(f"{shop}:{ti['task_id']}")
        assert set(hosts) == {"worker-1", "worker-2"}, {h: len(v) for h, v in hosts.items()}

        # the Airflow metadata is in PostgreSQL: the runs, the task instances and the Celery results
        dag_ids = tuple(SHOPS.values())
        meta_runs = query(
            AIRFLOW_DB, "SELECT dag_id, state, run_type FROM dag_run WHERE dag_id IN %s ORDER BY dag_id", dag_ids
        )
        assert meta_runs == [(SHOPS["shop-1"], "success", "manual"), (SHOPS["shop-2"], "success", "manual")]
        meta_hosts = dict(
            query(
                AIRFLOW_DB, "SELECT hostname, count(*) FROM task_instance WHERE dag_id IN %s GROUP BY hostname", dag_ids
            )
        )
        assert {h: len(v) for h, v in hosts.items()} == meta_hosts
        # a Celery result is stored once the task process has exited, moments after Airflow has the task's state
        deadline = time.monotonic() + 60
        while (
            query(AIRFLOW_DB, "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")[0][0]
            < sum(meta_hosts.values())
            and time.monotonic() < deadline
        ):
            time.sleep(2)
        assert query(AIRFLOW_DB, "SELECT count(*) FROM celery_taskmeta WHERE status = 'SUCCESS'")[0][0] >= sum(
            meta_hosts.values()
        )

        # the warehouse is in PostgreSQL, and each shop's run, staging and ledger carry that shop
        assert query(WAREHOUSE_DB, "SELECT shop, state FROM runs ORDER BY shop") == [
            ("shop-1", "succeeded"),
            ("shop-2", "succeeded"),
        ]
        scenarios = {s: json.loads(Path(dep.root, "sandbox", s, "scenario.json").read_text()) for s in SHOPS}
        ids = {s: tiktok_ids(sc) for s, sc in scenarios.items()}
        assert not ids["shop-1"] & ids["shop-2"]
        for shop, other in (("shop-1", "shop-2"), ("shop-2", "shop-1")):
            staged = {
                r[0] for r in query(WAREHOUSE_DB, "SELECT tiktok_order_id FROM stg_tiktok_orders WHERE shop = %s", shop)
            }
            assert staged and staged <= ids[shop]
            ledger = query(
                WAREHOUSE_DB, "SELECT kind, state, tiktok_order_id, dag_id FROM action_ledger WHERE shop = %s", shop
            )
            assert ledger and all(state == "succeeded" for _, state, _, _ in ledger), ledger
            assert {order for _, _, order, _ in ledger} <= ids[shop]
            assert {dag for _, _, _, dag in ledger} == {SHOPS[shop]}

            # each shop's writes went only to its own sandbox, with its own credentials
            urls = json.loads(Path(dep.root, "sandbox", shop, "urls.json").read_text())
            writes = httpx.get(f"{urls['tiktok']}/_sandbox/writes", timeout=30).json()
            order_writes = [w for w in writes if "token" not in w["operation"] and w["operation"] != "createReport"]
            assert order_writes and all(w["status"] < 400 for w in writes), [w for w in writes if w["status"] >= 400]
            tiktok_writes = [w for w in order_writes if w["platform"] == "tiktok"]
            in_paths = {i for w in tiktok_writes for i in re.findall(r"\d{15,20}", w["path"])}
            assert in_paths and in_paths <= ids[shop] and not in_paths & ids[other]
            posted = sum(1 for w in tiktok_writes if w["operation"] == "mark_package_as_shipped")
            assert posted == sum(1 for kind, *_ in ledger if kind == "post_tracking") > 0
            approved = sum(1 for w in tiktok_writes if w["operation"] == "approve_cancellation")
            assert approved == sum(1 for kind, *_ in ledger if kind == "approve_cancellation")

        # OpenLineage events from the workers reached the file transport, for both shops' tasks
        events = [json.loads(line) for line in dep.lineage_file.read_text().splitlines()]
        completed = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
        for dag_id in SHOPS.values():
            assert f"{dag_id}.join_and_decide" in completed
            # the warehouse connection is in the secrets backend, unread at parse time: the task named
            # its tables after it (OpenLineage naming of a PostgreSQL table)
            outputs = {(d["namespace"], d["name"]) for d in completed[f"{dag_id}.join_and_decide"]["outputs"]}
            host = urlsplit(PG)
            assert (f"postgres://{host.hostname}:{host.port or 5432}", f"{WAREHOUSE_DB}.public.decisions") in outputs, (
                outputs
            )

        # stopping is clean even with tasks running: start another run and stop mid-way
        answer = client.post(f"/api/v2/dags/{SHOPS['shop-1']}/dagRuns", json={"logical_date": None, "conf": conf})
        rerun = answer.json()["dag_run_id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(
            ti["state"] == "running"
            for ti in client.get(f"/api/v2/dags/{SHOPS['shop-1']}/dagRuns/{rerun}/taskInstances").json()[
                "task_instances"
            ]
        ):
            time.sleep(1)
    finally:
        t2 = time.monotonic()
        stopped = down(dep, purge=True)
        timings["down"] = time.monotonic() - t2
        print(
            f"\nproduction shape: up {timings.get('up', 0):.0f} s, two runs {timings.get('runs', 0):.0f} s, "
            f"down {timings['down']:.0f} s; stopped {', '.join(stopped)}"
        )
    # nothing left running: no process in any session started here (task processes included), no pid file
    assert len(sessions) == 8 and not [sid for sid in sessions if session_members(sid)]
    assert not Processes(dep).records()
    assert not query("postgres", "SELECT datname FROM pg_database WHERE datname IN (%s, %s)", AIRFLOW_DB, WAREHOUSE_DB)
    shutil.rmtree(dep.root, ignore_errors=True)


def _failed_tasks(client: httpx.Client, runs: dict) -> list:
    failed = []
    for shop, run_id in runs.items():
        for ti in (
            client.get(f"/api/v2/dags/{SHOPS[shop]}/dagRuns/{run_id}/taskInstances", params={"limit": 200})
            .json()
            .get("task_instances", [])
        ):
            if ti["state"] not in ("success",):
                failed.append((shop, ti["task_id"], ti["map_index"], ti["state"], ti["hostname"]))
    return failed
