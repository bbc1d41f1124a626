"""Many shops: each shop's DAG from its own share of the DAG files, one refused entry costing one
shop, a task building only the DAG it runs, and DAGs that do not carry a copy of their params per task."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

# the graph the one-file DAG built (every shop alike) before the shops were spread over files:
# task -> its upstream tasks
GRAPH = {
    "prepare_run": [],
    "extract_tiktok": ["prepare_run"],
    "extract_shopify": ["extract_tiktok", "prepare_run"],
    "extract_amazon": ["extract_tiktok", "prepare_run"],
    "extract_shipbob": ["extract_tiktok", "prepare_run"],
    "validate_staged": ["extract_amazon", "extract_shipbob", "extract_shopify", "prepare_run"],
    "join_and_decide": ["prepare_run", "validate_staged"],
    "plan_tracking": ["join_and_decide"],
    "post_tracking": ["join_and_decide", "plan_tracking", "prepare_run"],
    "plan_notes": ["join_and_decide"],
    "add_notes": ["join_and_decide", "plan_notes", "prepare_run"],
    "plan_rejections": ["join_and_decide"],
    "reject_cancellations": ["join_and_decide", "plan_rejections", "prepare_run"],
    "plan_escalations": ["join_and_decide"],
    "record_escalations": ["join_and_decide", "plan_escalations", "prepare_run"],
    "plan_cancellations": ["join_and_decide"],
    "cancel_at_fulfiller": ["join_and_decide", "plan_cancellations", "prepare_run"],
    "verify_fulfiller_cancel": ["cancel_at_fulfiller", "plan_cancellations", "prepare_run"],
    "refund_and_approve": ["plan_cancellations", "prepare_run", "verify_fulfiller_cancel"],
    "summarize_run": [
        "add_notes",
        "post_tracking",
        "prepare_run",
        "record_escalations",
        "refund_and_approve",
        "reject_cancellations",
    ],
    "check_run": [
        "add_notes",
        "post_tracking",
        "record_escalations",
        "refund_and_approve",
        "reject_cancellations",
        "summarize_run",
    ],
}
SHOPS = [
    {"name": "shop-a", "events": {"redis_conn_id": "orderops_redis"}},
    {"name": "shop-b", "dry_run": True, "policy": {"horizon_hours": 6}},
    {"name": "shop-c", "schedule": "*/15 * * * *"},
    {"name": "shop-d"},
    {"name": "shop-e"},
]


@pytest.fixture
def shops_file(tmp_path, monkeypatch):
    """Writes a shops file and points ORDEROPS_SHOPS_FILE at it."""

    def write(doc) -> None:
        path = tmp_path / "shops.json"
        path.write_text(json.dumps(doc))
        monkeypatch.setenv("ORDEROPS_SHOPS_FILE", str(path))

    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)
    return write


def bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_the_dag_files_are_the_shards():
    """dags/ holds one file per shard, each building its own shard, and the shops file's check."""
    from include.airflow.sla_dag import SHARDS

    shards = sorted(p.name for p in (REPO / "dags").glob("orderops_sla_shard_*.py"))
    assert shards == sorted(f"orderops_sla_shard_{n}.py" for n in range(SHARDS))
    for n in range(SHARDS):
        assert f"shard_dags({n})" in (REPO / "dags" / f"orderops_sla_shard_{n}.py").read_text()


def test_every_shop_has_its_dag_with_the_same_tasks_as_before(shops_file, airflow_db):
    from include.airflow.sla_dag import shard_of

    shops_file(SHOPS)
    dagbag = bag()
    assert dagbag.import_errors == {}
    dag_ids = [f"orderops_sla_shop_{s['name'][-1]}" for s in SHOPS]
    # shop-a takes platform events: its event DAG, one task per wake, lives in its pipeline's file
    assert set(dagbag.dag_ids) == {*dag_ids, "orderops_events_shop_a", "orderops_sla_report"}
    events = dagbag.dags["orderops_events_shop_a"]
    assert events.fileloc == dagbag.dags["orderops_sla_shop_a"].fileloc
    assert [t.task_id for t in events.tasks] == ["handle_events"] and events.max_active_runs == 1
    # the shops are spread over the files (five shops land in more than one of them here)
    assert len({dagbag.dags[d].fileloc for d in dag_ids}) > 1
    for dag_id in dag_ids:
        dag = dagbag.dags[dag_id]
        assert dag.fileloc == str(REPO / "dags" / f"orderops_sla_shard_{shard_of(dag_id)}.py")
        assert {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} == GRAPH
    assert dagbag.dags["orderops_sla_shop_b"].params["dry_run"] is True
    assert dagbag.dags["orderops_sla_shop_b"].params["sla_horizon_hours"] == 6
    assert dagbag.dags["orderops_sla_shop_c"].timetable.expression == "*/15 * * * *"


def test_one_refused_shop_costs_that_shop_only(shops_file, airflow_db):
    """A bad entry, and one sharing another shop's TikTok connection: the other shops' DAGs load;
    the shops file's check file reports both as its import error, naming each and what was wrong."""
    shops_file(
        [
            *SHOPS[:2],
            {"name": "shop-x", "schedule": "every hour"},
            {"name": "shop-y", "connections": {"tiktok": "orderops_shop_a_tiktok"}},
            *SHOPS[2:],
        ]
    )
    dagbag = bag()
    assert set(dagbag.dag_ids) == {f"orderops_sla_shop_{s['name'][-1]}" for s in SHOPS} | {
        "orderops_events_shop_a",
        "orderops_sla_report",
    }
    assert list(dagbag.import_errors) == [str(REPO / "dags" / "orderops_shops_file.py")]
    error = dagbag.import_errors[str(REPO / "dags" / "orderops_shops_file.py")]
    assert "the shops file refuses 2 shop(s), whose DAGs are not loaded" in error
    assert "shops[2] (shop-x).schedule: 'every hour' is not a cron expression" in error
    assert "shops: 'shop-y' and 'shop-a' share the tiktok connection 'orderops_shop_a_tiktok'" in error


def test_a_shops_file_that_cannot_be_read_is_an_import_error_of_every_file(tmp_path, monkeypatch, airflow_db):
    monkeypatch.setenv("ORDEROPS_SHOPS_FILE", str(tmp_path / "missing.json"))
    dagbag = bag()
    assert dagbag.dag_ids == ["orderops_sla_report"]
    assert len(dagbag.import_errors) == len(list((REPO / "dags").glob("*.py"))) - 1
    assert all("ORDEROPS_SHOPS_FILE=" in e and "missing.json" in e for e in dagbag.import_errors.values())


def test_a_task_builds_only_the_dag_it_runs(shops_file, monkeypatch):
    """With Airflow's parsing context naming a DAG (a task's start-up), its file builds that DAG
    alone and the other files none; the other entries are not checked in full (a bad one among
    them costs the task nothing), and a task of a refused shop fails with the entry's error."""
    from include.airflow.sla_dag import SHARDS, shard_dags, shard_of
    from include.run.runconfig import RunConfigError

    # shop_a repeats shop-a's DAG id: refused, and shop-a's tasks run all the same
    shops_file([*SHOPS, {"name": "shop-x", "schedule": "every hour"}, {"name": "shop_a"}])
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orderops_sla_shop_a")
    home = shard_of("orderops_sla_shop_a")
    assert list(shard_dags(home)) == ["orderops_sla_shop_a"]
    assert [shard_dags(n) for n in range(SHARDS) if n != home] == [{}] * (SHARDS - 1)
    # a task of the shop's event DAG: that DAG alone, from its pipeline's file
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orderops_events_shop_a")
    assert list(shard_dags(home)) == ["orderops_events_shop_a"]
    assert [shard_dags(n) for n in range(SHARDS) if n != home] == [{}] * (SHARDS - 1)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "orderops_sla_shop_x")
    with pytest.raises(RunConfigError, match=r"shops\[5\] \(shop-x\).schedule: 'every hour' is not a cron"):
        shard_dags(shard_of("orderops_sla_shop_x"))
    # without the context (the DAG processor) a file builds every shop of its shard
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID")
    built = {dag_id for n in range(SHARDS) for dag_id in shard_dags(n)}
    assert built == {f"orderops_sla_shop_{s['name'][-1]}" for s in SHOPS} | {"orderops_events_shop_a"}


def test_tasks_carry_no_copy_of_the_params_and_read_the_dags_at_run_time(shops_file, airflow_db):
    """The DAG declares every setting an operator sets (the trigger form validates each); its tasks
    carry none, and a task's params at run time are the DAG's, the shop's defaults and the run's
    conf, validated."""
    from airflow.sdk.definitions.param import ParamValidationError, process_params

    from include.run.runconfig import DEFAULTS, SETTINGS

    shown = [s.name for s in SETTINGS if s.for_operators]
    shops_file(SHOPS)
    dag = bag().dags["orderops_sla_shop_b"]
    assert list(dag.params.keys()) == shown
    assert all(not task.params for task in dag.tasks)
    task = dag.task_dict["prepare_run"]
    assert process_params(dag, task, {}, suppress_exception=False) == {
        **{name: DEFAULTS[name] for name in shown},
        "dry_run": True,
        "sla_horizon_hours": 6,
    }
    assert process_params(dag, task, {"dry_run": False}, suppress_exception=False)["dry_run"] is False
    with pytest.raises(ParamValidationError):
        process_params(dag, task, {"sla_horizon_hours": -1}, suppress_exception=False)


def test_read_shops_names_each_refused_entry_and_keeps_the_others():
    """The first entry with a name or connection keeps it; a later one is refused, whatever else is
    wrong with the first, so fixing one entry never refuses another."""
    from include.run.shops import read_shops

    found = read_shops(
        [
            {"name": "a", "schedule": "nope"},
            {"name": "a"},
            {"name": "b", "connections": {"shopify": "orderops_a_shopify"}},
            {"name": "c"},
            "d",
        ]
    )
    assert [s.name for s in found.shops] == ["c"]
    assert found.refused == (
        "shops[0] (a).schedule: 'nope' is not a cron expression",
        "shops[1].name: 'a' is listed twice (- and _ count as one: the DAG id spells both _)",
        "shops: 'b' and 'a' share the shopify connection 'orderops_a_shopify'; each shop needs its own",
        "shops[4].name: expected lower-case letters, digits, - or _ (got 'd')",
    )
    only = read_shops([{"name": "a", "schedule": "nope"}, {"name": "c"}], dag_id="orderops_sla_c")
    assert [s.name for s in only.shops] == ["c"] and only.refused == ()
