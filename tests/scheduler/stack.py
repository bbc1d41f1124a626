"""A real Airflow on this machine for scheduler tests: API server, scheduler, DAG processor and
triggerer as separate processes on SQLite (as `airflow standalone` runs them), LocalExecutor,
pointed at a sandbox, with orderops's DAGs and plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from sandbox.demo import airflow_env, prepare_airflow, stop_process_groups
from tests.support import free_port


@contextmanager
def airflow_stack(
    tmp_path: Path,
    server,
    shops: list[dict],
    extra_env: dict[str, str] | None = None,
    before_start: Callable[[Callable], None] | None = None,
) -> Iterator[dict]:
    """Yields {cli, api, server, env, tmp, logs}; `before_start(cli)` runs once the metadata DB is
    ready and the DAGs are serialized, before any component starts."""
    shops_file = tmp_path / "shops.json"
    shops_file.write_text(json.dumps(shops))
    env = airflow_env(tmp_path / "airflow", server.urls, tmp_path / "warehouse.db", tmp_path / "events.jsonl")
    env.update(
        {
            "ORDEROPS_SHOPS_FILE": str(shops_file),
            "ORDEROPS_REPORTS_DIR": str(tmp_path / "reports"),
            "ORDEROPS_RUN_DEADLINE_MINUTES": "30",  # the scheduler handles deadlines (unlike `dags test`)
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **(extra_env or {}),
        }
    )
    airflow = str(Path(sys.executable).with_name("airflow"))
    logs = tmp_path / "logs"
    logs.mkdir()

    def cli(*args, check=True):
        done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=300)
        if check and done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    with (logs / "prepare.log").open("w") as log:
        prepare_airflow(env, log)
    cli("dags", "reserialize")
    if before_start is not None:
        before_start(cli)
    processes = []

    def start(*component: str) -> subprocess.Popen:
        log = (logs / f"{component[0]}.log").open("w")
        processes.append(
            subprocess.Popen(
                [airflow, *component], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        return processes[-1]

    try:
        # The API server first, on a port picked just before it binds: another test process may take
        # a port found free a while ago (seen in a two-worker run), and then it is tried on another.
        for attempt in range(3):
            port = free_port()
            env.update(
                {
                    "AIRFLOW__API__PORT": str(port),
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                }
            )
            api_server, api = start("api-server", "--port", str(port)), f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and api_server.poll() is None:
                try:
                    if httpx.get(f"{api}/api/v2/monitor/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            else:
                log = (logs / "api-server.log").read_text()
                if api_server.poll() is not None and "address already in use" in log and attempt < 2:
                    continue
                raise AssertionError("api server did not come up: " + log[-2000:])
            break
        for component in ("scheduler", "dag-processor", "triggerer"):
            start(component)
        yield {"cli": cli, "api": api, "server": server, "env": env, "tmp": tmp_path, "logs": logs}
    finally:
        stop_process_groups(processes)


def runs(api: str, dag_id: str) -> list[dict]:
    for _ in range(5):  # the API server shares a SQLite file with the scheduler: allow a slow answer
        try:
            reply = httpx.get(f"{api}/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}, timeout=60)
            reply.raise_for_status()
            return reply.json()["dag_runs"]
        except httpx.TimeoutException:
            time.sleep(2)
    raise AssertionError(f"the API server did not answer for {dag_id}")
