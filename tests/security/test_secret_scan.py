"""No secret and no buyer data anywhere orderops writes.

The real DAG runs once with `airflow dags test` against the sandbox with every platform configured,
while access tokens expire mid-run on TikTok, Shopify and Amazon (so refresh requests, which carry
the app secret and refresh tokens, and freshly issued tokens are part of the run) and one TikTok
write comes back garbled (so error paths log too). Then every place is scanned for every secret
of the connections and every token the sandbox issued, as sent or URL-encoded:

- the `airflow dags test` output and every file under AIRFLOW_HOME (task logs, the metadata DB's
  bytes), the XCom table of the metadata DB,
- the warehouse (staging raw JSON, quarantine, links, decisions, the ledger's requests and
  responses, run summaries, API call counts) row by row and as file bytes,
- the OpenLineage events.
Buyer names, emails, phone numbers and street lines the simulators serve must not be in the
warehouse, XCom or lineage either. A second, in-process run captures every log record at DEBUG
(httpx and httpcore included) and every exception text, under failures of every kind.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa

from include.store.warehouse import Warehouse, metadata
from sandbox.demo import airflow, airflow_env, prepare_airflow
from sandbox.scenario import parse_time
from tests.chaos.harness import (
    NOW,
    SandboxRig,
    chaos_scenario,
    fresh_warehouse,
    is_order_write,
    platform_secrets,
    scenario_pii,
)

pytestmark = pytest.mark.slow

SCENARIO = chaos_scenario()
PRESIGNED = ("x-amz-signature=", "x-amz-signature%3d")


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote_plus(secret)}


def leaks(text: str, secrets: dict[str, str]) -> list[str]:
    found = [name for name, secret in secrets.items() if any(f in text for f in forms(secret))]
    lowered = text.lower()
    for marker in PRESIGNED:
        at = lowered.find(marker)
        while at >= 0:
            value = lowered[at + len(marker) : at + len(marker) + 16]
            if value and all(c in "0123456789abcdef" for c in value):
                found.append("a presigned report URL signature")
            at = lowered.find(marker, at + 1)
    return found


def warehouse_text(wh: Warehouse) -> dict[str, str]:
    """Every row of every warehouse table, as JSON text per table."""
    out = {}
    with wh.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(table))]
            out[table.name] = json.dumps(rows, default=str)
    return out


@pytest.fixture(scope="module")
def dag_run(tmp_path_factory):
    """One `airflow dags test` run of the real DAG, with token expiries and a garbled write."""
    tmp = tmp_path_factory.mktemp("secret-scan")
    rig = SandboxRig(SCENARIO)
    rig.fault({"platform": "tiktok", "kind": "token_expiry", "path": "/packages$"})
    rig.fault({"platform": "tiktok", "kind": "malformed", "path": "/packages$", "count": 1})
    rig.fault({"platform": "amazon_mcf", "kind": "token_expiry", "path": "/fulfillmentOrders$"})
    rig.arm(
        lambda w: is_order_write(w) and w.outcome == "ok", [{"platform": "shopify", "kind": "token_expiry", "count": 1}]
    )
    home, warehouse_db, lineage = tmp / "airflow", tmp / "warehouse.db", tmp / "lineage.jsonl"
    env = airflow_env(home, rig.urls, warehouse_db, lineage)
    # Airflow's default log level. (At DEBUG, Airflow 3.3.2's task supervisor itself logs every value a
    # task registers with mask_secret, in its "Sending request ... MaskSecret(value=...)" lines: see the
    # README. orderops' own DEBUG logging is scanned by the in-process test below.)
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
    now = parse_time(NOW, "now")
    conf = json.dumps({"window_start": (now - timedelta(minutes=30)).isoformat(), "window_end": now.isoformat()})
    output = tmp / "airflow.log"
    with output.open("w") as log:
        prepare_airflow(env, log)
        done = airflow(env, "dags", "test", "orderops_sla", "-c", conf, log=log)
    fired = [f for f in rig.faults()]
    secrets = platform_secrets(rig)
    pii = scenario_pii(rig.sandbox)
    writes = rig.writes
    rig.stop()
    assert done.returncode == 0, output.read_text()[-4000:]
    yield {
        "home": home,
        "warehouse": warehouse_db,
        "lineage": lineage,
        "output": output,
        "secrets": secrets,
        "pii": pii,
        "fired": fired,
        "writes": writes,
    }


def test_the_run_did_what_the_scan_needs(dag_run):
    assert all(f["fired"] for f in dag_run["fired"]), dag_run["fired"]
    # tokens were refreshed during the run: more than the connections' own
    assert sum(1 for n in dag_run["secrets"] if n.startswith("tiktok access token")) >= 2
    assert sum(1 for n in dag_run["secrets"] if n.startswith("amazon access token")) >= 2
    assert sum(1 for n in dag_run["secrets"] if n.startswith("shopify access token")) >= 2
    assert any(is_order_write(w) and w.outcome == "ok" for w in dag_run["writes"])
    assert len(dag_run["pii"]) > 50


def test_no_secret_in_logs_or_any_file_airflow_wrote(dag_run):
    files = [dag_run["output"], *(p for p in Path(dag_run["home"]).rglob("*") if p.is_file())]
    # `airflow dags test` runs the tasks in its own process: their logs are in its output (and in
    # log files under AIRFLOW_HOME/logs when a deployment writes them; both are scanned)
    output = dag_run["output"].read_text()
    for task_line in ("post_tracking          succeeded", "tiktok: access token refreshed", "orderops run manual__"):
        assert task_line in output, task_line
    scanned = 0
    for path in files:
        text = path.read_bytes().decode("latin-1")
        scanned += len(text)
        assert leaks(text, dag_run["secrets"]) == [], path
    assert scanned > 100_000


def test_no_secret_or_buyer_data_in_xcom(dag_run):
    with sqlite3.connect(Path(dag_run["home"]) / "airflow.db") as db:
        values = db.execute("SELECT key, task_id, value FROM xcom").fetchall()
    assert len(values) > 10 and {"prepare_run", "join_and_decide", "summarize_run"} <= {t for _, t, _ in values}
    text = "\n".join(str(v) for row in values for v in row)
    assert leaks(text, dag_run["secrets"]) == []
    assert [p for p in dag_run["pii"] if p in text] == []


def test_no_secret_or_buyer_data_in_the_warehouse(dag_run):
    wh = Warehouse(f"sqlite:///{dag_run['warehouse']}")
    tables = warehouse_text(wh)
    wh.dispose()
    assert json.loads(tables["action_ledger"]) and json.loads(tables["stg_tiktok_orders"])
    for name, text in tables.items():
        assert leaks(text, dag_run["secrets"]) == [], name
        assert [p for p in dag_run["pii"] if p in text] == [], name
    raw = Path(dag_run["warehouse"]).read_bytes().decode("latin-1")
    assert leaks(raw, dag_run["secrets"]) == []
    assert [p for p in dag_run["pii"] if p in raw] == []


def test_no_secret_or_buyer_data_in_lineage_events(dag_run):
    text = Path(dag_run["lineage"]).read_text()
    assert text.count("\n") > 20
    assert leaks(text, dag_run["secrets"]) == []
    assert [p for p in dag_run["pii"] if p in text] == []


class _Keep(logging.Handler):
    """Keeps every record, formatted with its exception text."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()} {self.format(record)}")


def test_no_secret_in_any_log_record_or_exception_of_an_in_process_run(tmp_path, capfd):
    """Every log record down to DEBUG (httpx and httpcore included), everything printed, and every
    exception text, while things go wrong on every platform and credentials are refused."""
    import airflow.sdk  # noqa: F401  Airflow sets up logging when imported: listen after that

    rig = SandboxRig(SCENARIO)
    keep, root = _Keep(), logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "httpx", "httpcore", "include")}
    root.addHandler(keep)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        rig.fault({"platform": "tiktok", "kind": "token_expiry", "path": "/orders/search$"})
        rig.fault({"platform": "tiktok", "kind": "5xx", "path": "/packages$", "count": 2})
        rig.fault({"platform": "amazon_mcf", "kind": "token_expiry", "path": "/cancel$"})
        rig.fault({"platform": "amazon_mcf", "kind": "truncated", "path": "/_documents/", "count": 1})
        rig.fault({"platform": "shipbob", "kind": "malformed", "path": ":cancel$"})
        rig.arm(
            lambda w: is_order_write(w) and w.outcome == "ok",
            [
                {"platform": "shopify", "kind": "token_expiry", "count": 1},
                {"platform": "shopify", "kind": "5xx", "count": 1},
            ],
        )
        errors = []
        with fresh_warehouse("sqlite", tmp_path) as wh:
            summary = rig.run(wh, "logs-1")
            fired = [f["fired"] for f in rig.faults()]
            rig.clear_faults()
            # credentials refused outright: the errors name the field, never the value
            for platform, extra in (
                ("tiktok", {"access_token": "TTP_revoked", "refresh_token": "TTP_revoked-refresh"}),
                ("amazon_mcf", {"refresh_token": "Atzr|revoked-refresh"}),
            ):
                try:
                    rig.run(wh, f"logs-refused-{platform}", extras={platform: extra})
                except Exception as exc:  # the refusal itself is the point
                    errors.append(f"{type(exc).__name__}: {exc} {exc.__cause__!r} {exc.__context__!r}")
            text = json.dumps(warehouse_text(wh))
        secrets = platform_secrets(rig)
        secrets.update({"revoked tiktok token": "TTP_revoked", "revoked amazon token": "Atzr|revoked-refresh"})
    finally:
        root.removeHandler(keep)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        rig.stop()
    printed = "\n".join(capfd.readouterr())
    assert all(fired) and len(fired) == 7 and len(errors) == 2
    assert summary["actions"].get("post_tracking:in_flight") == 2
    records = "\n".join(keep.lines)
    assert len(keep.lines) > 200 and "access token refreshed" in records and "HTTP Request: GET" in records
    assert "refresh_token=***" in records  # the refresh URL is logged, its secrets are not
    assert leaks(records, secrets) == []
    assert leaks(printed, secrets) == []
    assert leaks("\n".join(errors), secrets) == []
    assert leaks(text, secrets) == []
