"""The fleet benchmark's pure parts (bench/fleet_bench.py): which shops the sample runs, the DAG
processor's stats table read from its log, and the figures from a run's raw measurements."""

from __future__ import annotations

from bench.fleet_bench import analyse, processor_parses, sample_shops
from include.airflow.sla_dag import SHARDS, shard_of
from include.run.shops import Shop

STATS = """\
DAG File Processing Stats

Bundle       File Path                PID   Current Duration  # DAGs  # Errors  Last Duration  Last Run At
-----------  -----------------------  ----  ----------------  ------  --------  -------------  -------------------
dags-folder  orderops_sla_shard_3.py  4242  2.10s                 50         0  12.28s         2026-12-08T01:00:08
dags-folder  orderops_sla_report.py                                1         0  0.47s          2026-12-08T01:00:08
dags-folder  orderops_shops_file.py                                0         0  0.37s          2026-12-08T01:00:06
dags-folder  orderops_sla_shard_5.py  4243  0.50s                  0         0
================================================================================
"""


def test_the_sample_takes_every_dag_file_in_turn():
    chosen = sample_shops(200, 20)
    assert len(chosen) == len(set(chosen)) == 20
    files = [shard_of(Shop(name).dag_id) for name in chosen]
    assert set(files) == set(range(SHARDS))  # every file
    assert max(files.count(f) for f in set(files)) - min(files.count(f) for f in set(files)) <= 1
    # each file's first shops (the first on their sandboxes, the ones that write, are the lowest)
    for f in set(files):
        in_file = [i for i in range(1, 201) if shard_of(Shop(f"shop-{i}").dag_id) == f]
        assert [n for n in chosen if shard_of(Shop(n).dag_id) == f] == [f"shop-{i}" for i in in_file[: files.count(f)]]
    assert len(sample_shops(3, 20)) == 3  # never more than the shops


def test_the_processors_stats_table_gives_each_parse_once():
    twice = STATS + "\n" + STATS.replace("2026-12-08T01:00:06", "2026-12-08T01:02:07")
    parses = processor_parses(twice)
    # the shard being parsed for the first time has no last duration yet: not a parse
    assert [(p["file"], p["seconds"], p["dags"]) for p in parses] == [
        ("orderops_shops_file.py", 0.37, 0),
        ("orderops_sla_report.py", 0.47, 1),
        ("orderops_sla_shard_3.py", 12.28, 50),
        ("orderops_shops_file.py", 0.37, 0),
    ]
    assert parses[-1]["at"] == "2026-12-08T01:02:07"


def _run(dag_id: str, state: str = "success", start="2026-12-08T01:10:00+00:00", end="2026-12-08T01:12:30+00:00"):
    return {
        "dag_id": dag_id,
        "dag_run_id": f"manual__{dag_id}",
        "state": state,
        "queued_at": "2026-12-08T01:09:58+00:00",
        "start_date": start,
        "end_date": end,
    }


def raw() -> dict:
    dags = [{"dag_id": "orderops_sla_report", "relative_fileloc": "orderops_sla_report.py"}]
    for i in (1, 2, 3):
        for prefix in ("orderops_sla_shop_", "orderops_events_shop_"):
            dags.append({"dag_id": f"{prefix}{i}", "relative_fileloc": "orderops_sla_shard_3.py"})
    return {
        "shops": 3,
        "sandboxes": 2,
        "dag_file_processor_timeout": 60.0,
        "dagbag_import_timeout": 30.0,
        "min_file_process_interval": 120.0,
        "up_seconds": 80.2,
        "loaded_seconds": 95.0,
        "dag_files": ["orderops_shops_file.py", "orderops_sla_report.py", "orderops_sla_shard_3.py"],
        "dags": dags,
        "phases": {
            "idle": ["2026-12-08T01:00:00", "2026-12-08T01:03:00"],
            "sample": ["2026-12-08T01:03:00", "2026-12-08T01:20:00"],
        },
        "parses": [
            {"file": "orderops_sla_shard_3.py", "at": "2026-12-08T00:59:00", "seconds": 3.0, "dags": 6, "errors": 0},
            {"file": "orderops_sla_shard_3.py", "at": "2026-12-08T01:01:00", "seconds": 2.0, "dags": 6, "errors": 0},
            {"file": "orderops_sla_shard_3.py", "at": "2026-12-08T01:05:00", "seconds": 12.0, "dags": 6, "errors": 0},
            {"file": "orderops_shops_file.py", "at": "2026-12-08T01:05:00", "seconds": 0.4, "dags": 0, "errors": 0},
        ],
        "import_errors": {"loaded": [], "sample": []},
        "idle": {"seconds": 100, "cpu_s": {"scheduler": 20.0, "dag-processor": 10.0, "triggerer": 5.0}},
        "triggers": [
            {"classpath": "orderops_triggers.DoorbellTrigger", "count": 3, "running": 3},
            {"classpath": "airflow.other.Trigger", "count": 1, "running": 0},
        ],
        "triggerer_rss_bytes": 300 * 2**20,
        "sample": {
            "spacing_seconds": 18.0,
            "seconds": 400.0,
            "cpu_s": {"api-server": 40.0, "worker-1": 160.0},
            # beside the runs, one wake started; three task instances queued in the 60 s window, one never ran
            "wake_rate": 0.025,
            "model_task_instances_per_s": 0.1,
            "window": ["2026-12-08T01:03:00+00:00", "2026-12-08T01:04:00+00:00"],
            "started_wakes": [{"dag_id": "orderops_events_shop_2", "dag_run_id": "manual__2", "state": "success"}],
            "queued": [
                {"dag_id": "a", "queued": "2026-12-08T01:03:01+00:00", "started": "2026-12-08T01:03:01.500000+00:00"},
                {"dag_id": "a", "queued": "2026-12-08T01:03:02+00:00", "started": "2026-12-08T01:03:05+00:00"},
                {"dag_id": "b", "queued": "2026-12-08T01:03:30+00:00", "started": None},
            ],
            "runs": [_run("orderops_sla_shop_1"), _run("orderops_sla_shop_3", end="2026-12-08T01:11:00+00:00")],
            "task_instances": {
                "manual__orderops_sla_shop_1": [{"state": "success"}] * 21,
                "manual__orderops_sla_shop_3": [{"state": "success"}] * 20 + [{"state": "skipped"}],
            },
        },
        "wakes": [
            {"dag_id": "orderops_events_shop_1", "dag_run_id": "asset_triggered__1", "state": "success"},
            {"dag_id": "orderops_events_shop_2", "dag_run_id": "manual__2", "state": "success"},
        ],
        "postgresql_connections": {"total": 40, "scheduler": 3},
        "postgresql_max_connections": 100,
        "workers": 2,
        "worker_concurrency": 4,
    }


def test_the_figures_from_a_runs_raw_measurements():
    found = analyse(raw())
    assert found["dags"] == {"pipeline": 3, "event": 3, "other": 1, "total": 7} and found["all_dags_loaded"]
    assert found["dag_files"] == 3 and found["import_errors"] == {"loaded": 0, "sample": 0}
    parse = found["parse"]
    # the slowest parse of each file in each phase; the slowest of all against the processor's timeout
    assert parse["files"]["orderops_sla_shard_3.py"] == {
        "dags": 6,
        "parses": 3,
        "max_s": {"start-up": 3.0, "idle": 2.0, "sample": 12.0},
    }
    assert (parse["slowest_s"], parse["headroom"], parse["within_timeout"]) == (12.0, 5.0, True)
    assert found["idle"]["total_cores"] == 0.35 and found["idle"]["cores"]["scheduler"] == 0.2
    assert found["triggers"] == {
        "doorbells_running": 3,
        "running": 3,
        "by_class": {"airflow.other.Trigger": 0, "orderops_triggers.DoorbellTrigger": 3},
        "triggerer_rss_mib": 300,
    }
    sample = found["sample"]
    # shop 3 shares sandbox 1 with shop 1: its run was a dry run
    assert [(r["dag_id"], r["dry_run"], r["seconds"], r["queued_s"]) for r in sample["each"]] == [
        ("orderops_sla_shop_1", False, 150.0, 2.0),
        ("orderops_sla_shop_3", True, 60.0, 2.0),
    ]
    assert sample["all_succeeded"] and sample["states"] == {"success": 2} and sample["dry_runs"] == 1
    assert sample["seconds"] == {"p50": 105.0, "max": 150.0} and sample["task_instances"] == [21]
    assert sample["cpu"]["total_cores"] == 0.5 and sample["cpu"]["cores"] == {"api-server": 0.1, "worker-1": 0.4}
    assert found["wakes"] == {"runs": 1, "states": {"success": 1}}  # the wake this benchmark started is not one
    assert found["load"] == {
        "seconds": 60.0,
        "wake_rate": 0.025,
        "wakes_started": 1,
        "wakes_started_states": {"success": 1},
        "wakes_refused": 0,
        "task_instances": 3,
        "task_instances_per_s": 0.05,
        "model_task_instances_per_s": 0.1,
        "never_ran": 1,
        "queued_to_running_s": {"p50": 1.75, "p95": 3.0, "count": 2},
        # no scheduler CPU in this phase past its idle: 0 a task instance (21 + 21 of the runs, 2 event runs)
        "scheduler_cpu_s_per_task_instance": 0.0,
        "scheduler_cores_at_model_rate": 0.0,
    }
    doc = raw()
    doc["sample"]["cpu_s"]["scheduler"] = 88.8  # 0.2 cores idle over the phase's 400 s: 80 of it
    assert analyse(doc)["load"]["scheduler_cpu_s_per_task_instance"] == 0.2  # 8.8 / 44
    assert analyse(doc)["load"]["scheduler_cores_at_model_rate"] == 0.02


def test_a_failed_run_or_a_slow_parse_shows():
    doc = raw()
    doc["sample"]["runs"][1]["state"] = "failed"
    doc["parses"].append(
        {"file": "orderops_sla_shard_3.py", "at": "2026-12-08T01:30:00", "seconds": 61.0, "dags": 0, "errors": 1}
    )
    found = analyse(doc)
    assert not found["sample"]["all_succeeded"] and found["sample"]["states"] == {"success": 1, "failed": 1}
    assert found["parse"]["files"]["orderops_sla_shard_3.py"]["max_s"]["after"] == 61.0
    assert not found["parse"]["within_timeout"]
