"""DAG files import cleanly, fast, and are wired as designed."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "orderops_sla" in dagbag.dags


def test_the_shops_file_knows_every_other_dag(dagbag):
    """A shop whose DAG id is another DAG's is refused by name (include/run/shops.py), so that list is
    every DAG of dags/ that is not a shop's."""
    from include.run.shops import OTHER_DAG_IDS, load_shops

    assert set(dagbag.dag_ids) - {shop.dag_id for shop in load_shops()} == set(OTHER_DAG_IDS)


def test_a_bad_setting_fails_prepare_run_at_once(dagbag, monkeypatch):
    """A bad param or connection setting fails every try alike: prepare_run raises Airflow's
    AirflowFailException (no retries), saying what is wrong, before any platform is called."""
    import json
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from sandbox.connections import sandbox_connections

    prepare_run = dagbag.dags["orderops_sla"].task_dict["prepare_run"].python_callable
    run = SimpleNamespace(dag_id="orderops_sla", run_id="manual__bad", run_after=None, run_type="manual")
    with pytest.raises(
        AirflowFailException,
        match="param connections: not accepted; a run uses its shop's connections, from the shops file",
    ):
        prepare_run(dag_run=run, params={"connections": {"tiktok": "orderops_tiktok"}})
    tiktok = sandbox_connections(
        dict.fromkeys(("tiktok", "tiktok_auth", "shopify", "amazon_mcf", "amazon_lwa", "shipbob"), "http://127.0.0.1:9")
    )["tiktok"]
    tiktok["extra"]["timeout"] = -1
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_TIKTOK", json.dumps(tiktok))
    with pytest.raises(AirflowFailException, match="connection 'orderops_tiktok': extra.timeout must be a number"):
        prepare_run(dag_run=run, params={})
    # the summary runs after a failed prepare_run too: without its settings it fails at once as well
    summarize_run = dagbag.dags["orderops_sla"].task_dict["summarize_run"].python_callable
    with pytest.raises(AirflowFailException, match="no settings from prepare_run"):
        summarize_run(None)


def test_pipeline_shape(dagbag):
    dag = dagbag.dags["orderops_sla"]
    assert dag.max_active_runs == 1 and dag.catchup is False and dag.doc_md
    tasks = dag.task_dict
    assert {
        "prepare_run",
        "extract_tiktok",
        "extract_shopify",
        "extract_amazon",
        "extract_shipbob",
        "validate_staged",
        "join_and_decide",
        "post_tracking",
        "add_notes",
        "reject_cancellations",
        "record_escalations",
        "cancel_at_fulfiller",
        "verify_fulfiller_cancel",
        "refund_and_approve",
        "summarize_run",
    } <= set(tasks)
    # the saga's check reads once and never waits: no sensor holds a slot, the run or the next run
    from airflow.sdk.bases.sensor import BaseSensorOperator

    assert not [
        t.task_id
        for t in tasks.values()
        if isinstance(t, BaseSensorOperator)
        or getattr(t, "operator_class", None)
        and issubclass(t.operator_class, BaseSensorOperator)
    ]
    assert "verify_fulfiller_cancel" in tasks["cancel_at_fulfiller"].downstream_task_ids
    assert tasks["check_run"].trigger_rule == "none_failed"
    assert "refund_and_approve" in tasks["verify_fulfiller_cancel"].downstream_task_ids
    assert tasks["summarize_run"].trigger_rule == "all_done"
    assert tasks["post_tracking"].partial_kwargs["pool"] == "tiktok_api"
    assert tasks["add_notes"].partial_kwargs["pool"] == "shopify_api"
    for task in tasks.values():
        callable_ = getattr(task, "python_callable", None) or task.partial_kwargs.get("python_callable")
        assert callable_ is not None and callable_.__doc__, f"{task.task_id} has no docstring"
    assert dag.params["sla_horizon_hours"] == 24 and dag.params["dry_run"] is False
    # no task holds its pool for ever: a hung call or endless listing fails the try
    timeouts = {
        t.task_id: getattr(t, "execution_timeout", None) or t.partial_kwargs.get("execution_timeout")
        for t in tasks.values()
    }
    assert set(timeouts.values()) == {timedelta(minutes=30)}, timeouts


def test_the_dag_runs_the_one_list_of_steps(dagbag):
    from include.run.steps import BY_NAME, STEPS

    tasks = dagbag.dags["orderops_sla"].task_dict
    names = {step.name for step in STEPS}
    # the tasks are the steps, one plan_<group> per action group (Airflow maps a task only over a task's
    # whole return value) and the one leaf that fails a run whose summary found a failed step
    groups = {step.each for step in STEPS if step.each is not None}
    assert set(tasks) == names | {f"plan_{group}" for group in groups} | {"check_run"}

    def before(name: str) -> set[str]:
        found = set(BY_NAME[name].after)
        for upstream in BY_NAME[name].after:
            found |= before(upstream)
        return found

    for step in STEPS:
        # the table's order; the edges are the arguments (settings, extract_tiktok's result, the
        # plan's chunks) and the table's `after`, nothing else
        upstream = set(tasks[step.name].upstream_task_ids) - {f"plan_{step.each}"}
        assert set(step.after) <= upstream <= before(step.name), step.name
        task = tasks[step.name]
        kwargs = {**getattr(task, "partial_kwargs", {}), **(getattr(task, "op_kwargs", None) or {})}
        assert task.pool == step.pool or kwargs.get("pool") == (step.pool or "default_pool") or step.pool is None
    # the run's settings are an argument of every task: the graph shows where they come from
    assert tasks["prepare_run"].downstream_task_ids == names - {"prepare_run"}
    assert all(tasks[f"plan_{group}"].upstream_task_ids == {"join_and_decide"} for group in groups)


def test_the_docs_diagram_is_the_dags_graph(dagbag):
    """docs/how-it-works.md draws the DAG's graph in its first code block."""
    import re

    text = (REPO / "docs" / "how-it-works.md").read_text()
    diagram = text.split("```")[1]
    drawn = set(re.findall(r"\b([a-z]+(?:_[a-z]+)+)\b", diagram))
    assert drawn == set(dagbag.dags["orderops_sla"].task_dict)


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (REPO / "dags").glob("*.py")))
def test_dag_file_parses_standalone(dag_file, airflow_db):
    """Each DAG file parses in a fresh interpreter (Airflow imported first, as the processor has it).

    The time is printed; `make bench` measures it on a quiet machine (timing asserts here would
    fail on a busy one)."""
    code = (
        "import time, runpy, airflow.sdk; t = time.perf_counter(); "
        f"runpy.run_path({str(REPO / 'dags' / dag_file)!r}); print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds = float(out.stdout.strip().splitlines()[-1])
    print(f"{dag_file}: parsed in {seconds:.3f} s")


@pytest.mark.parametrize(
    "name,bad",
    [
        ("overlap_minutes", 5000),
        ("sla_horizon_hours", 1e300),
        ("sweep_hours", -1),
        ("full_sweep_hours", 200),
        ("fulfillers", ["fedex"]),
        ("fulfillers", []),
        ("dry_run", "no"),
        ("policy", "reject everything"),
        ("policy", {"c3_action": "shrug"}),
        ("policy", {"colour": "red"}),
        ("policy", {"at_risk_alert_hours": [4, 4]}),
        ("sweep", "yes"),
    ],
)
def test_the_dag_declares_each_param_with_its_schema(dagbag, name, bad):
    """The trigger form and the API refuse a bad value before a run is even created; so does the
    run's first task, from the same declaration."""
    from airflow.sdk.definitions.param import ParamValidationError

    from include.run.runconfig import RunConfigError, run_settings

    param = dagbag.dags["orderops_sla"].params.get_param(name)
    param.resolve(value=param.value)  # the default is valid
    with pytest.raises(ParamValidationError):
        param.resolve(value=bad)
    with pytest.raises(RunConfigError, match=f"param {name}"):
        run_settings(dag_id="orderops_sla", run_id="r", params={name: bad})


def test_the_dags_params_are_the_operators_settings(dagbag):
    """The trigger form shows what an operator chooses; what tests and replays set, and the shop the
    DAG fixes, are no params (a run's conf sets them, and the first task checks them)."""
    from include.run.runconfig import SETTINGS

    params = dagbag.dags["orderops_sla"].params
    assert list(params.keys()) == [s.name for s in SETTINGS if s.for_operators]
    assert {s.name for s in SETTINGS} - set(params.keys()) == {
        "shop",
        "window_start",
        "window_end",
        "window_minutes",
        "now",
    }
    for s in SETTINGS:
        if s.for_operators:
            param = params.get_param(s.name)
            assert param.description == s.description and all(param.schema[k] == v for k, v in s.schema.items())
            assert param.value == s.default


def test_a_shop_taking_platform_events_has_an_event_dag_beside_its_cron(tmp_path, airflow_db):
    """With `events` in the shops file the shop's pipeline DAG keeps its cron, and its event DAG
    (one task) is scheduled by its event asset, watched by the webhook doorbell (Redis pub/sub,
    the burst waited out in the triggerer) and the shop's Amazon queue."""
    import json
    import os

    shops = tmp_path / "shops.json"
    shops.write_text(
        json.dumps(
            [
                {
                    "name": "shop-a",
                    "events": {
                        "redis_conn_id": "orderops_redis",
                        "amazon_queue_url": "https://sqs.us-east-1.amazonaws.com/1/orderops",
                    },
                },
                {"name": "shop-b", "dry_run": True},
            ]
        )
    )
    code = (
        "import glob, json, runpy; from airflow.sdk import DAG; out = {}\n"
        "g = {k: v for f in glob.glob('dags/orderops_sla_shard_*.py') for k, v in runpy.run_path(f).items()}\n"
        "for name, dag in g.items():\n"
        "    if isinstance(dag, DAG):\n"
        "        s = dag.timetable\n"
        "        assets = list(s.asset_condition.objects) if getattr(s, 'asset_condition', None) else []\n"
        "        out[dag.dag_id] = {'kind': type(s).__name__,\n"
        "            'watchers': [(w.name, w.trigger.serialize()[0]) for a in assets for w in a.watchers],\n"
        "            'dry_run': dag.params['dry_run'], 'tasks': [t.task_id for t in dag.tasks]}\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ORDEROPS_SHOPS_FILE": str(shops)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    dags = json.loads(done.stdout.strip().splitlines()[-1])
    assert dags["orderops_sla_shop_b"]["kind"] == "CronDataIntervalTimetable"
    # the shops file's dry_run is the default of the shop's runs (a shadow period), scheduled ones included
    assert dags["orderops_sla_shop_b"]["dry_run"] is True and dags["orderops_sla_shop_a"]["dry_run"] is False
    assert dags["orderops_sla_shop_a"]["kind"] == "CronDataIntervalTimetable"
    events = dags["orderops_events_shop_a"]
    assert events["kind"] == "AssetTriggeredTimetable" and events["tasks"] == ["handle_events"]
    assert events["watchers"] == [
        ["orderops_webhooks_shop-a", "orderops_triggers.DoorbellTrigger"],
        ["orderops_amazon_shop-a", "orderops_triggers.AmazonNotificationsTrigger"],
    ]
    assert "orderops_events_shop_b" not in dags


def test_a_bad_events_setting_is_named(tmp_path):
    from include.run.runconfig import RunConfigError
    from include.run.shops import parse_shops

    for events, message in (
        (["x"], "events: expected an object"),
        ({"debounce_seconds": -1}, "debounce_seconds"),
        ({"amazon_queue_url": "sqs://q"}, "amazon_queue_url"),
        ({"redis": "x"}, "unknown key"),
        ({"deliveries_per_second": 0}, "deliveries_per_second: expected 0.1 to 10000"),
        ({"deliveries_per_second": True}, "deliveries_per_second"),
    ):
        with pytest.raises(RunConfigError, match=message):
            parse_shops([{"name": "shop-a", "events": events}])
