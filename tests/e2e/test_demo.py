"""`python -m sandbox.demo` (`make demo`) with a user's own scenario, faults and warehouse: the run
is rehearsed against the sandbox and written out as one JSON object; bad options are refused, naming
what is wrong, before anything is served or cleared."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import sqlalchemy as sa

from sandbox import demo
from sandbox.generate import generate
from sandbox.tiktok import REJECT_REASONS, shipped_with
from tests.conftest import PG_BASE

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_schema():
    schema = f"orderops_demo_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield schema
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.mark.timeout(600)
def test_demo_rehearses_a_scenario_with_faults_on_postgresql_and_writes_the_run_as_json(tmp_path, pg_schema, capsys):
    scenario, faults, out = tmp_path / "shop.json", tmp_path / "faults.json", tmp_path / "run.json"
    scenario.write_text(json.dumps(generate(40, 7)))  # C1 and C3 among its cancellations
    # TikTok takes the first tracking post and answers it with a broken body
    faults.write_text(json.dumps([{"platform": "tiktok", "kind": "malformed", "path": "/packages$", "count": 1}]))
    url = f"postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{pg_schema}"
    code = demo.main(
        [
            "--state",
            str(tmp_path / "state"),
            "--scenario",
            str(scenario),
            "--faults",
            str(faults),
            "--warehouse",
            url,
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "1 fault(s) armed" in printed and pg_schema in printed
    # each rule's count is printed with what the rule means
    assert re.search(r"^  T1 +\d+  post tracking$", printed, re.M) and re.search(
        r"^  - +\d+  nothing to do$", printed, re.M
    )

    run = json.loads(out.read_text())
    assert set(run) == {"summary", "writes", "ledger"}
    assert run["summary"]["state"] in ("succeeded", "attention") and run["summary"]["orders_seen"]["tiktok_orders"] > 0
    # the ledger lives in the given PostgreSQL schema, and the JSON holds all of it
    with sa.create_engine(f"{PG_BASE}?options=-csearch_path%3D{pg_schema}").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM action_ledger")).scalar() == len(run["ledger"]) > 0
    assert all(isinstance(row["request"], dict) for row in run["ledger"])
    # the post whose answer was broken took effect at TikTok, and the ledger says where it stopped
    posts = [w for w in run["writes"] if w["platform"] == "tiktok" and w["path"].endswith("/packages")]
    unknown = [row for row in run["ledger"] if row["kind"] == "post_tracking" and row["state"] == "in_flight"]
    assert len(unknown) == 1 and "outcome unknown, reconcile before retry" in unknown[0]["detail"]
    done = [row for row in run["ledger"] if row["kind"] == "post_tracking" and row["state"] == "succeeded"]
    assert len(posts) == len(done) + 1 and all(w["outcome"] == "ok" for w in posts)
    assert {shipped_with(w["body"])["tracking_number"] for w in posts} == {
        row["request"]["tracking_number"] for row in done + unknown
    }
    assert all(row["created_at"][10] == "T" for row in run["ledger"])  # times as ISO-8601
    # a C3 rejection carries a reason of the US shop's market list, read from TikTok for the request
    rejects = [w for w in run["writes"] if w["path"].endswith("/reject")]
    assert rejects and {w["body"]["reject_reason"] for w in rejects} <= set(dict(REJECT_REASONS["US"]))
    # a C1/C2 approval comes before its Shopify cancel in the write log
    approvals = {
        row["request"]["tiktok_order_id"]: row["request"]["cancel_id"]
        for row in run["ledger"]
        if row["kind"] == "approve_cancellation"
    }
    cancels = [row for row in run["ledger"] if row["kind"] == "cancel_shopify_order" and row["state"] == "succeeded"]
    assert cancels
    for row in cancels:
        cancel_id, shopify_id = approvals[row["tiktok_order_id"]], row["request"]["shopify_order_id"]
        (approved,) = [
            w["seq"]
            for w in run["writes"]
            if w["outcome"] == "ok" and w["path"].endswith(f"/cancellations/{cancel_id}/approve")
        ]
        (cancelled,) = [
            w["seq"]
            for w in run["writes"]
            if w["outcome"] == "ok"
            and w["operation"] == "orderCancel"
            and f"Order/{shopify_id}" in json.dumps(w["body"])
        ]
        assert approved < cancelled


@pytest.mark.parametrize(
    "option,content,named",
    [
        ("--scenario", "{not json", "--scenario"),
        ("--scenario", json.dumps({"now": "2026-11-20T15:00:00Z", "orders": [{"tiktok": {"id": "x"}}]}), "--scenario"),
        ("--faults", json.dumps({"platform": "tiktok"}), "expected a JSON list of faults"),
        ("--faults", json.dumps([{"platform": "tiktok", "kind": "melt"}]), "entry 0: fault.kind: 'melt' is not one of"),
        (
            "--faults",
            json.dumps([{"platform": "etsy", "kind": "5xx"}]),
            "entry 0: fault.platform: 'etsy' is not one of",
        ),
        (
            "--faults",
            '[{"platform": "tiktok", "kind": "latency", "seconds": NaN}]',
            "entry 0: fault.seconds: expected 0 to 86400 seconds, got nan",
        ),
        ("--scenario", "[" * 100_000, "not JSON: nested too deeply"),
        (
            "--faults",
            b'[{"platform": "tiktok", "kind": "5xx", "path": "caf\xe9"}]',
            "not JSON: 'utf-8' codec can't decode",
        ),
    ],
)
def test_bad_demo_files_are_refused_before_anything_runs(tmp_path, option, content, named):
    given = tmp_path / "given.json"
    given.write_bytes(content if isinstance(content, bytes) else content.encode())
    state = tmp_path / "state"
    state.mkdir()
    (state / "keep").write_text("an earlier demo")
    with pytest.raises(SystemExit) as refused:
        demo.main(["--state", str(state), option, str(given)])
    assert named in str(refused.value) and str(given) in str(refused.value)
    assert (state / "keep").exists()  # nothing was cleared


def test_a_folder_that_is_not_an_earlier_demos_is_never_cleared(tmp_path):
    state = tmp_path / "precious"
    state.mkdir()
    (state / "keep.txt").write_text("x")
    with pytest.raises(SystemExit, match="--state .*precious: not an earlier demo's folder"):
        demo.main(["--state", str(state), "--orders", "5"])
    assert (state / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/no/such/dir/w.db", "postgresql://nobody:secret@127.0.0.1:1/x"])
def test_a_warehouse_that_cannot_be_opened_is_refused_before_the_last_demo_is_cleared(tmp_path, url):
    state = tmp_path / "state"
    state.mkdir()
    (state / "demo.json").write_text("{}")  # an earlier demo's folder: the demo may clear it, but not yet
    (state / "warehouse.db").write_text("the last demo's warehouse")
    with pytest.raises(SystemExit, match="--warehouse .*cannot be opened") as refused:
        demo.main(["--state", str(state), "--orders", "5", "--warehouse", url.format(tmp=tmp_path)])
    assert "secret" not in str(refused.value)
    assert (state / "warehouse.db").read_text() == "the last demo's warehouse"


@pytest.mark.parametrize("url", ["mysql://root@127.0.0.1/test", "not a url", "sqlite://"])
def test_a_warehouse_that_is_not_sqlite_or_postgresql_is_refused(tmp_path, url):
    with pytest.raises(SystemExit, match="--warehouse"):
        demo.main(["--state", str(tmp_path / "state"), "--warehouse", url])
    assert not (tmp_path / "state").exists()
