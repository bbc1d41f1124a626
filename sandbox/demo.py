"""`make demo`: the pipeline once, on embedded defaults, against the sandbox.

Generates a scenario of a few hundred orders (or reads `--scenario`), serves the four simulators
on free loopback ports with `--faults` installed, runs the `orderops_sla` DAG once with
`airflow dags test` (Airflow's metadata on the embedded PostgreSQL of sandbox/metadata_db.py; the
warehouse under state/demo or at `--warehouse`), prints what happened and where everything is,
writes `--json`, then stops the sandbox and the database server.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from include.decide.rules import RULES
from include.report.figures import COUNTS, day_figures, inbox_figures, run_figures
from include.report.sla_ui import load_overview
from include.run.runconfig import STATE_DIR
from include.run.steps import pools_file
from include.store.warehouse import Warehouse, action_ledger, runs
from sandbox.connections import connection_env
from sandbox.core import Sandbox, Settings, parse_fault
from sandbox.generate import generate, order_count
from sandbox.metadata_db import EmbeddedPostgres
from sandbox.scenario import parse_json, parse_scenario, read_json
from sandbox.server import SandboxServer

REPO = Path(__file__).resolve().parents[1]
# A SQLite metadata DB (the tests' Airflow) is shared by several processes: wait for locks instead of failing
SQLITE_CONNECT_ARGS = {"timeout": 60}
# Airflow's default layout of task log files ([logging] log_filename_template), set explicitly: the
# demo writes its tasks' logs in it, and `make ui`'s API server reads them from there
TASK_LOG_TEMPLATE = (
    "dag_id={{ ti.dag_id }}/run_id={{ ti.run_id }}/task_id={{ ti.task_id }}/"
    "{% if ti.map_index >= 0 %}map_index={{ ti.map_index }}/{% endif %}"
    "attempt={{ try_number|default(ti.try_number) }}.log"
)


def airflow_env(
    home: Path, urls: dict[str, str], warehouse: Path | dict, lineage: Path, metadata: str | None = None
) -> dict[str, str]:
    """Everything `airflow` needs to run orderops against a sandbox, on embedded defaults; the
    warehouse a SQLite file or a connection (`warehouse_connection`); the metadata DB at the URL
    `metadata`, else a SQLite file in `home`."""
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__CORE__UNIT_TEST_MODE"}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(lineage), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "orderops",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__LOG_FILENAME_TEMPLATE": TASK_LOG_TEMPLATE,
            "ORDEROPS_SANDBOX_CLOCK_URL": f"{urls['tiktok']}/_sandbox/clock",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "TQDM_DISABLE": "1",
            # `airflow dags test` fails at the end of a run of a DAG with a deadline (Airflow 3.3.2); the
            # scheduler-driven runs keep it
            "ORDEROPS_RUN_DEADLINE_MINUTES": "0",
        }
    )
    if metadata:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = metadata
    else:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "sandbox.demo.SQLITE_CONNECT_ARGS"
    if isinstance(warehouse, Path):
        warehouse = {"conn_type": "sqlite", "host": str(warehouse)}
    env.update(connection_env(urls, warehouse=warehouse))
    return env


AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
# `airflow dags test` logs each task's start, the task instance it runs, and its end
TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
TASK_RUN = re.compile(r"\[DAG TEST\] running task <TaskInstance: \S+ (\S+) ")
TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")


def airflow(env: dict[str, str], *args: str, log=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIRFLOW_BIN), *args], env=env, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


class TaskLogFiles:
    """Each task's lines of `airflow dags test` output, from its start to its end, in the file the
    API server reads for that task's attempt: `dags test` runs the tasks in its own process, which
    writes no task log files (the UI said "Log file not found on worker")."""

    def __init__(self, folder: Path, dag_id: str):
        import jinja2

        self.folder, self.dag_id = folder, dag_id
        self.template = jinja2.Environment(autoescape=False).from_string(TASK_LOG_TEMPLATE)
        self.attempts: dict[tuple[str, str, int], int] = {}
        self.task: tuple[str, int] | None = None
        self.pending: list[str] = []
        self.file: TextIO | None = None

    def feed(self, line: str) -> None:
        started = TASK_START.search(line)
        if started:
            self.close()
            self.task = (started.group(1), int(started.group(2)))
        if self.task is None:
            return
        running = TASK_RUN.search(line)
        if running and self.file is None:
            self.open(running.group(1), *self.task)
        if self.file is None:
            self.pending.append(line)
        else:
            self.file.write(line)
        if TASK_END.search(line):
            self.close()

    def open(self, run_id: str, task_id: str, map_index: int) -> None:
        # a task's nth start in a run is its nth try (dags test starts a retry as a new try)
        key = (run_id, task_id, map_index)
        self.attempts[key] = try_number = self.attempts.get(key, 0) + 1
        ti = {"dag_id": self.dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
        path = self.folder / self.template.render(ti=ti, try_number=try_number)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a")
        self.file.writelines(self.pending)
        self.pending = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.task, self.file, self.pending = None, None, []


def dags_test(env: dict[str, str], log, *args: str) -> int:
    """`airflow dags test DAG_ID ...`, its output to `log` and each task's part to that task's log
    file, each finished task printed as it ends."""
    started = time.monotonic()
    task_logs = TaskLogFiles(Path(env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]), args[0])
    with subprocess.Popen(
        [str(AIRFLOW_BIN), "dags", "test", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            log.write(line)
            task_logs.feed(line)
            ended = TASK_END.search(line)
            if ended:
                task, index = ended.groups()
                # (Airflow logs a task's end whatever its state: the summary below says how it went)
                print(
                    f"  {time.monotonic() - started:5.0f} s  {task}{'' if index == '-1' else f'[{index}]'} ended",
                    flush=True,
                )
    task_logs.close()
    return proc.returncode


def report_run_args(now: datetime) -> list[str]:
    """`airflow dags test` arguments of the report run for the sandbox's day: the day as the DAG's
    `day` param, no logical date. A test run starts at its logical date, so a date on the sandbox's
    clock would show the run lasting from then to now (days) beside its real start."""
    return ["orderops_sla_report", "-c", json.dumps({"day": f"{now:%Y-%m-%d}"})]


def keep_home_usable(home: Path, metadata: str) -> None:
    """Write the demo's folders and its metadata DB (the port of the server's last start) into the
    Airflow home's own airflow.cfg, so that an `airflow` command with only AIRFLOW_HOME set finds
    the DAGs, the plugin and, while `make ui` runs, the metadata."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(home / "airflow.cfg")
    for section, key, value in (
        ("core", "dags_folder", str(REPO / "dags")),
        ("core", "plugins_folder", str(REPO / "plugins")),
        ("core", "load_examples", "False"),
        ("database", "sql_alchemy_conn", metadata),
    ):
        if not cfg.has_section(section):
            cfg.add_section(section)
        cfg.set(section, key, value)
    with (home / "airflow.cfg").open("w") as f:
        cfg.write(f)


def prepare_airflow(env: dict[str, str], log) -> None:
    """Migrate the metadata DB and create the pools (one import for all of them)."""
    pools = Path(env["AIRFLOW_HOME"]) / "orderops_pools.json"
    pools.parent.mkdir(parents=True, exist_ok=True)
    pools.write_text(json.dumps(pools_file()))
    for step in (("db", "migrate"), ("pools", "import", str(pools))):
        done = airflow(env, *step, log=log)
        if done.returncode != 0:
            raise SystemExit(f"airflow {' '.join(step)} failed; see {log.name}")


def warehouse_connection(url: str) -> dict:
    """An Airflow connection for a warehouse URL (sqlite:///PATH or postgresql://...); a schema
    asked for with `?options=-csearch_path=NAME` becomes the connection's `schema` extra."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise SystemExit(f"--warehouse: {url!r} is not a database URL") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return {"conn_type": "sqlite", "host": str(Path(parsed.database).resolve())}
    if parsed.get_backend_name() == "postgresql":
        options = str(parsed.query.get("options") or "")
        schema = options.split("search_path=", 1)[1].split(",")[0] if "search_path=" in options else None
        return {
            "conn_type": "postgres",
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or 5432,
            "login": parsed.username,
            "password": parsed.password,
            "schema": parsed.database or "postgres",
            **({"extra": json.dumps({"schema": schema})} if schema else {}),
        }
    raise SystemExit(f"--warehouse: {url!r}: expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")


def check_warehouse(url: str) -> None:
    """Open the warehouse once: one that cannot be reached is refused before anything is cleared."""
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise SystemExit(f"--warehouse {shown}: cannot be opened ({getattr(exc, 'orig', None) or exc})") from None
    finally:
        engine.dispose()


def check_state(state: Path) -> None:
    """The folder the demo clears: missing, empty or an earlier demo's (its demo.json), nothing else."""
    if state.exists() and (not state.is_dir() or (any(state.iterdir()) and not (state / "demo.json").exists())):
        raise SystemExit(
            f"--state {state}: not an earlier demo's folder (no demo.json) and not empty; "
            "refusing to clear it: give a new or empty folder"
        )


def load_faults(path: Path, sandbox: Sandbox) -> int:
    """Install the sandbox faults listed in a JSON file (the admin API's fault objects)."""
    try:
        specs = read_json(path)
    except ValueError as exc:
        raise SystemExit(f"--faults {path}: {exc}") from None
    if not isinstance(specs, list):
        raise SystemExit(f"--faults {path}: expected a JSON list of faults")
    for index, spec in enumerate(specs):
        try:
            sandbox.add_fault(parse_fault(spec))
        except ValueError as exc:
            raise SystemExit(f"--faults {path}: entry {index}: {exc}") from None
    return len(specs)


def scenario_sandbox(data: bytes, origin: Path | str) -> Sandbox:
    """A sandbox serving the scenario file's `data` on a frozen clock."""
    try:
        return Sandbox(parse_scenario(parse_json(data)), Settings(clock_rate=0))
    except ValueError as exc:  # ScenarioError is a ValueError and names the order and field (or simulator)
        raise SystemExit(f"--scenario {origin}: {exc}") from None


def run_record(wh: Warehouse, sandbox: Sandbox) -> dict:
    """`--json`: the run summary, the sandbox's writes as `/_sandbox/writes` serves them and every
    ledger row (its request an object)."""
    with wh.engine.connect() as conn:
        run = conn.execute(sa.select(runs).order_by(runs.c.started_at.desc())).first()
        ledger = [dict(r._mapping) for r in conn.execute(sa.select(action_ledger).order_by(action_ledger.c.id))]
    summary = {**(run.summary or {}), "state": run.state} if run else None
    return {"summary": summary, "writes": [asdict(w) for w in sandbox.writes], "ledger": ledger}


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def report(wh: Warehouse, now: datetime, reports: Path) -> list[str]:
    """What the run did and the day's figures, each under the name and from the function the run
    summary, the SLA page and the report use (include/report/figures.py), with what it counts."""
    lines = []
    with wh.engine.connect() as conn:
        run = conn.execute(sa.select(runs).order_by(runs.c.started_at.desc())).first()
    if run is None:
        return ["no run recorded"]
    summary = run.summary or {}
    lines.append(
        f"run {run.run_id}: {run.state}, window {run.window_start:%Y-%m-%d %H:%M} .. {run.window_end:%H:%M} UTC"
    )
    lines.append("records read: " + ", ".join(f"{k} {v}" for k, v in summary.get("orders_seen", {}).items()))
    lines.append("decisions by rule (orders):")
    for rule, n in sorted(summary.get("decisions", {}).items()):
        lines.append(f"  {rule:3s} {n:6d}  {RULES.get(rule, '')}")
    lines.append("the run's actions by kind and outcome:")
    for key, n in sorted(summary.get("actions", {}).items()):
        kind, state = key.rsplit(":", 1)
        lines.append(f"  {kind:25s} {state:10s} {n}")
    lines.append("the run (as its summary says):")
    lines += [f"  {name} {n}: {COUNTS[name]}" for name, n in run_figures(summary).items()]
    for e in summary.get("escalations", []):
        lines.append(f"    escalated {e['tiktok_order_id']} [{e['rule']}] {e['reason']}")
    overview = load_overview(wh.engine, reports, shop=str(summary.get("shop") or "default"))
    shop = overview.shops[0] if overview.shops else None
    day = next((d for d in shop.days if d["day"] == now.date()), None) if shop else None
    lines.append(f"the day {now:%Y-%m-%d} (as the SLA page and the day's report show it):")
    if day is None:
        lines.append("  no figures: the report of the day was not built")
    else:
        lines += [f"  {name} {n}: {COUNTS[name]}" for name, n in day_figures(day).items()]
    lines.append("the escalation inbox (as the SLA page shows it):")
    reviews = [e["review"] for e in shop.escalations] if shop else []
    lines += [f"  {name} {n}: {COUNTS[name]}" for name, n in inbox_figures(reviews).items()]
    api = summary.get("api", {})
    lines.append(
        "API calls: " + ", ".join(f"{p} {f['calls']} ({f['throttled']} throttled)" for p, f in sorted(api.items()))
    )
    return lines


# the triggerer runs deferred work and the run deadline alert (an async callback); without it Airflow's
# health check reports it missing
UI_COMPONENTS = (("api-server",), ("scheduler",), ("dag-processor",), ("triggerer",))
# the running UI's address, in the demo's folder
UI_FILE = "ui.json"


def write_private(path: Path, text: str) -> None:
    """A file only its owner reads, from its first byte (secrets: passwords, the JWT key, a URL)."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ui_environment(state: Path, urls: dict[str, str], port: int, metadata: str) -> tuple[dict[str, str], str]:
    """The demo's Airflow settings for serving its UI, and the admin password (made once, kept in
    the demo's Airflow home, mode 0600)."""
    settings = json.loads((state / "demo.json").read_text())
    home = state / "airflow"
    passwords = home / "orderops_ui_passwords.json"
    if not passwords.exists():
        write_private(passwords, json.dumps({"admin": secrets.token_urlsafe(12)}))
    env = airflow_env(
        home, urls, warehouse_connection(settings["warehouse"]), state / "lineage" / "events.jsonl", metadata
    )
    env.update(
        {
            "ORDEROPS_REPORTS_DIR": str(state / "reports"),
            "ORDEROPS_GX_DIR": str(state / "gx"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": settings["jwt_secret"],
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            # the connection form's Test button (off by default in Airflow); here it reaches only the sandbox
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # the triggerer's log server on a free port: its fixed default (8794) may be another Airflow's
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    # the scheduler handles run deadlines (`dags test` cannot): runs started from the UI get the
    # deadline alert, at the user's setting or the default
    deadline = os.environ.get("ORDEROPS_RUN_DEADLINE_MINUTES")
    if deadline is None:
        env.pop("ORDEROPS_RUN_DEADLINE_MINUTES")
    else:
        env["ORDEROPS_RUN_DEADLINE_MINUTES"] = deadline
    return env, json.loads(passwords.read_text())["admin"]


def ui_main(argv: list[str]) -> int:
    """`make ui`: the Airflow UI (API server with the SLA page, scheduler, DAG processor, triggerer) on the
    last demo's state, with its sandbox serving the demo's scenario on the demo's clock."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo ui", description=ui_main.__doc__)
    parser.add_argument("--state", default=str(STATE_DIR / "demo"))
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    state = Path(args.state)
    if not (state / "demo.json").exists():
        raise SystemExit(f"no demo state in {state}: run `make demo` first")
    if not (state / "postgres" / "PG_VERSION").exists():
        raise SystemExit(
            f"no Airflow metadata in {state / 'postgres'} (a demo made when it was kept in SQLite): "
            "run `make demo` again"
        )
    if args.port <= 0:
        args.port = free_port()
    # the sandbox starts again from the demo's scenario: what the demo wrote is in the ledger, so a
    # run started from the UI does not repeat it
    sandbox = scenario_sandbox((state / "scenario.json").read_bytes(), state / "scenario.json")
    metadata_db = EmbeddedPostgres(state / "postgres")
    try:
        return serve_ui(state, args.port, sandbox, metadata_db.start())
    finally:
        metadata_db.stop()


def serve_ui(state: Path, port: int, sandbox: Sandbox, metadata: str) -> int:
    """`make ui`'s Airflow components and sandbox on the started metadata DB, until Ctrl-C, a
    SIGTERM or a component's end."""
    keep_home_usable(state / "airflow", metadata)
    server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()}).start()
    env, password = ui_environment(state, server.urls, port, metadata)
    log_path = state / "logs" / "ui.log"
    procs: list[subprocess.Popen] = []
    base = f"http://127.0.0.1:{port}"

    def stop(*_):  # a terminal closed or a kill, at any moment: the finally below stops what started
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        with log_path.open("a") as log:
            print(
                "starting the Airflow UI (API server, scheduler, DAG processor, triggerer; about 30 s) ...", flush=True
            )
            for component in UI_COMPONENTS:
                procs.append(
                    subprocess.Popen(
                        [str(AIRFLOW_BIN), *component],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            if not wait_healthy(base, procs, timeout=180):
                print(f"the API server did not come up; see {log_path}", file=sys.stderr)
                return 1
            print(f"\nAirflow UI   {base}   user admin, password {password}")
            print(f"  the demo's run:  {base}/dags/orderops_sla/runs")
            print(f"  SLA page:        {base}/orderops-sla/   (also under Browse > SLA breaches)")
            print(f"  operations:      {base}/orderops-sla/operations   (failed actions, freshness, platform calls)")
            print(f"  sandbox clock:   {server.urls['tiktok']}/_sandbox/clock (frozen at the demo's time)")
            print("  sandbox:         " + ", ".join(f"{app} {url}" for app, url in server.urls.items()))
            print(f"  logs:            {log_path}")
            print("  backfill a range (runs beside this UI):  make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD")
            print("Ctrl-C stops it.", flush=True)
            # where `make backfill` finds this UI (removed when it stops)
            (state / UI_FILE).write_text(json.dumps({"url": base}))
            try:
                while all(p.poll() is None for p in procs):
                    time.sleep(0.5)
            except KeyboardInterrupt:
                return 0
        died = [" ".join(c) for c, p in zip(UI_COMPONENTS, procs, strict=True) if p.poll() is not None]
        print(f"{', '.join(died)} stopped on its own; see {log_path}", file=sys.stderr)
        return 1
    finally:
        (state / UI_FILE).unlink(missing_ok=True)
        stop_process_groups(procs)
        server.stop()


def stop_process_groups(procs: list[subprocess.Popen], grace: float = 30) -> None:
    """Stop Airflow components started in sessions of their own (each with its workers): SIGTERM
    to every group, then SIGKILL to any still there `grace` seconds after, for all of them together
    (waiting `grace` for each in turn made a loaded machine's Ctrl-C take minutes)."""
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def wait_healthy(base: str, procs: list[subprocess.Popen], timeout: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ui"]:
        return ui_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__)
    parser.add_argument("--orders", type=order_count, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state", default=str(STATE_DIR / "demo"))
    parser.add_argument("--scenario", type=Path, help="a scenario file to serve instead of a generated one")
    parser.add_argument("--faults", type=Path, help="a JSON list of sandbox faults to install before the run")
    parser.add_argument(
        "--warehouse",
        help="warehouse URL (default: SQLite under --state), e.g. "
        "postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%%3Ddemo",
    )
    parser.add_argument("--json", type=Path, help="write {summary, writes, ledger} of the run to this file")
    args = parser.parse_args(argv)
    state = Path(args.state)
    # everything given is checked before the state folder is cleared or anything is served
    try:
        scenario_data = (
            args.scenario.read_bytes()
            if args.scenario
            else json.dumps(generate(args.orders, args.seed), indent=1).encode()
        )
    except OSError as exc:
        raise SystemExit(f"--scenario {args.scenario}: {exc.strerror}") from None
    warehouse_url = args.warehouse or f"sqlite:///{(state / 'warehouse.db').resolve()}"
    warehouse = warehouse_connection(warehouse_url)
    sandbox = scenario_sandbox(scenario_data, args.scenario or "generated")
    faults = load_faults(args.faults, sandbox) if args.faults else 0
    check_state(state)
    if args.warehouse:
        check_warehouse(warehouse_url)
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SystemExit(f"--json {args.json}: {exc.strerror}") from None
    metadata_db = EmbeddedPostgres(state / "postgres")
    metadata_db.stop()  # an earlier demo's server, left by a killed `make ui`: its files go next
    shutil.rmtree(state, ignore_errors=True)
    (state / "logs").mkdir(parents=True)
    scenario_path = state / "scenario.json"
    scenario_path.write_bytes(scenario_data)
    # what `make ui` needs to serve this run again
    write_private(
        state / "demo.json", json.dumps({"warehouse": warehouse_url, "jwt_secret": secrets.token_urlsafe(32)})
    )
    now = sandbox.clock.now()
    server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()}).start()
    source = f"scenario {args.scenario}" if args.scenario else f"{args.orders} orders (seed {args.seed})"
    print(
        f"sandbox: {source}, clock frozen at {now:%Y-%m-%dT%H:%M:%SZ}"
        + (f", {faults} fault(s) armed" if faults else "")
    )
    for name, url in server.urls.items():
        print(f"  {name:12s} {url}")
    lineage = state / "lineage" / "events.jsonl"
    lineage.parent.mkdir()
    conf = {"window_start": (now - timedelta(minutes=30)).isoformat(), "window_end": now.isoformat()}
    log_path = state / "logs" / "airflow.log"
    began = time.monotonic()
    try:
        metadata = metadata_db.start()
        env = airflow_env(state / "airflow", server.urls, warehouse, lineage, metadata)
        env["ORDEROPS_REPORTS_DIR"] = str(state / "reports")
        env["ORDEROPS_GX_DIR"] = str(state / "gx")
        with log_path.open("w") as log:
            print("preparing Airflow (metadata on an embedded PostgreSQL, pools; about 20 s) ...", flush=True)
            prepare_airflow(env, log)
            keep_home_usable(state / "airflow", metadata)
            print("running orderops_sla once (airflow dags test; about a minute) ...", flush=True)
            done = dags_test(env, log, "orderops_sla", "-c", json.dumps(conf))
            print(f"building the SLA report of {now:%Y-%m-%d} (orderops_sla_report) ...", flush=True)
            reported = dags_test(env, log, *report_run_args(now)) if done == 0 else 1
        writes = [w for w in sandbox.writes if "token" not in w.operation and "Report" not in w.operation]
    finally:
        server.stop()
        metadata_db.stop()
    wh = Warehouse(warehouse_url)
    if args.json:
        args.json.write_text(json.dumps(run_record(wh, sandbox), indent=1, default=_iso))
    print()
    print("\n".join(report(wh, now, state / "reports")))
    print(
        f"\nsandbox received {len(writes)} order writes: "
        + ", ".join(f"{p} {sum(1 for w in writes if w.platform == p)}" for p in sorted({w.platform for w in writes}))
    )
    python = os.path.relpath(sys.executable) if Path(sys.executable).is_relative_to(Path.cwd()) else sys.executable
    shown_url = sa.engine.make_url(warehouse_url).render_as_string(hide_password=True)
    report_html = sorted((state / "reports").rglob("*.html"))
    print(f"\ndone in {time.monotonic() - began:.0f} s. Where to look next:")
    print(f"  the report of {now:%Y-%m-%d}:  " + (", ".join(str(p) for p in report_html) or "not built (see the log)"))
    print("  the Airflow UI on this run, with the SLA page:  make ui   (prints the URL and the login)")
    print(f"  trace an order:   ORDEROPS_WAREHOUSE_URL='{shown_url}' {python} -m include.cli trace <tiktok_order_id>")
    print(f"  ledger and staging: {shown_url}")
    print(f"  lineage events:     {lineage}")
    print(f"  Airflow log:        {log_path} (task logs under {state / 'airflow' / 'logs'})")
    print(f"  scenario:           {scenario_path}")
    if args.json:
        print(f"  run as JSON:        {args.json}")
    wh.dispose()
    if done != 0:
        print(f"\nthe DAG run failed (exit {done}); see {log_path}", file=sys.stderr)
        return done
    if reported != 0:
        print(f"\nthe report DAG failed (exit {reported}); see {log_path}", file=sys.stderr)
    return reported


if __name__ == "__main__":
    sys.exit(main())
