"""Shared fixtures: Airflow test settings, a real sandbox on loopback ports, warehouses.

Airflow reads its settings at import, so they are set here, before any test imports it:
AIRFLOW_HOME in a fresh temp folder, examples off, this repo's dags/ and plugins/, and the
repo root importable (pytest.ini `pythonpath = .`); Great Expectations results and Data Docs in a
temp folder too. `airflow_db` migrates the metadata DB (SQLite in that folder) once per session for
the tests that need it.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="orderops-airflow-"))
# Great Expectations results and Data Docs of the runs tests make: never the repo's state/, and
# removed at the end. Ten results kept, not fifty: every run's validation rebuilds the Data Docs
# index from the newest kept results, and the suite's hundreds of runs share this one folder. The index
# then lists the newest ten results of all suites: two runs' five batches (the SLA page test seeds
# two runs and looks for the first one's page there; test_quality sets its own folder to look at pruning).
GX_DIR = tempfile.mkdtemp(prefix="orderops-gx-")
atexit.register(shutil.rmtree, GX_DIR, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "TQDM_DISABLE": "1",
        "ORDEROPS_GX_DIR": GX_DIR,
        "ORDEROPS_GX_KEEP": "10",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
)

from hypothesis import settings as hypothesis_settings

from sandbox.core import Sandbox, Settings
from sandbox.scenario import parse_scenario
from sandbox.server import SandboxServer

# Property tests draw the same examples on every run, so that `make test` (and CI) is repeatable;
# ORDEROPS_HYPOTHESIS_PROFILE=explore draws new ones each time (and keeps what failed) to look further.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("ORDEROPS_HYPOTHESIS_PROFILE", "repeatable"))


def pytest_collection_modifyitems(items):
    """The `slow` files first (a stable sort: each file keeps its order). pytest-xdist hands out
    files in this order, so the long ones start at once and the short ones even out the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A test's chaos-table rows go out on its teardown report (tests/chaos/report.py)."""
    if call.when == "teardown":
        from tests.chaos import report

        report.hand_over(item)


def pytest_runtest_logreport(report):
    """Rows are collected where the session ends: pytest-xdist replays its workers' reports in the main process."""
    from tests.chaos import report as tables

    tables.receive(report)


def pytest_terminal_summary(terminalreporter, config):
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: the main process prints
        return
    from tests.chaos import report

    for table, text in report.write_all():
        terminalreporter.section(f"orderops {table} (also in {report.REPORT_DIR / (table + '.txt')})")
        terminalreporter.write_line(text)


@pytest.fixture(autouse=True)
def airflow_deprecations_fail():
    """Airflow's and its providers' deprecation warnings fail the test that triggers them (other
    libraries' stay ignored, pytest.ini). Set here, inside each test, rather than in pytest.ini:
    pytest would import airflow to resolve the category before this file sets AIRFLOW_HOME."""
    import warnings

    from airflow.exceptions import AirflowProviderDeprecationWarning, RemovedInAirflow4Warning
    from airflow.sdk.exceptions import RemovedInAirflow4Warning as SdkRemovedInAirflow4Warning
    from airflow.utils.deprecation_tools import DeprecatedImportWarning

    with warnings.catch_warnings():
        for category in (
            RemovedInAirflow4Warning,
            SdkRemovedInAirflow4Warning,
            AirflowProviderDeprecationWarning,
            DeprecatedImportWarning,
        ):
            warnings.filterwarnings("error", category=category)
        yield


class VirtualTime:
    """Seconds that pass only when someone sleeps on them. A client's pacing (its clock and sleep)
    and the simulator's quotas (`clock.quota_source`) read the same one, so a pacing test checks the
    arithmetic of both sides, never the machine's speed, and takes no time. As a simulator's wall
    clock (`clock.wall_source`) it starts where the caller says, e.g. at the real time."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.seconds += max(0.0, seconds)


@pytest.fixture
def virtual_time() -> VirtualTime:
    return VirtualTime()


@pytest.fixture
def run_sandbox():
    """Start a sandbox for a scenario dict on free ports; stopped after the test.

    Usage: server = run_sandbox(scenario, platforms=("tiktok",), settings=Settings(...))
    then server.urls["tiktok"], server.sandbox (the live state).
    """
    started: list[SandboxServer] = []

    def start(
        scenario: dict, *, platforms: tuple[str, ...] | None = None, settings: Settings | None = None
    ) -> SandboxServer:
        sandbox = Sandbox(parse_scenario(scenario), settings or Settings(), platforms=platforms)
        server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


PG_BASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# A shop name for tests that listen on its Redis doorbell: pub/sub channels are shared by every
# process on the machine, and other test workers ring their shops' channels at the same time.
RINGING_SHOP = f"shop-{os.getpid()}"


@pytest.fixture(scope="module")
def rig(request):
    """One sandbox for a whole chaos or security module, serving the module's SCENARIO."""
    from tests.chaos.harness import SandboxRig

    rig = SandboxRig(request.module.SCENARIO)
    yield rig
    rig.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    """A fresh, empty warehouse on SQLite (a temp file) and on the machine's PostgreSQL (own schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    import uuid

    import sqlalchemy as sa

    schema = f"orderops_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite in the temp AIRFLOW_HOME), migrated once."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ)
    return AIRFLOW_HOME


def connection_json(
    host: str, *, login: str | None = None, password: str | None = None, extra: dict | None = None
) -> str:
    """An AIRFLOW_CONN_* value (JSON form) for an http connection, as a user would set one."""
    doc: dict[str, Any] = {"conn_type": "http", "host": host}
    if login is not None:
        doc["login"] = login
    if password is not None:
        doc["password"] = password
    if extra:
        doc["extra"] = extra
    return json.dumps(doc)


def settled_count(server, key: tuple, table: str = "calls") -> int:
    """A simulator's count for an operation, once settled: it counts after its answer has gone out,
    so the count is read once no request is being answered (an abandoned, hung one included)."""
    server.sandbox.wait_idle()
    return getattr(server.sandbox, table)[key]
