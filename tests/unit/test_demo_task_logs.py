"""The demo's task log files: `airflow dags test` writes none, so the demo splits its output per task
attempt into the files Airflow's API server reads (sandbox/demo.py `TaskLogFiles`)."""

from __future__ import annotations

from sandbox.demo import TaskLogFiles

RUN = "manual__2026-12-07T17:18:11.451043+00:00"


def dag_test_lines(task: str, map_index: int, *body: str) -> list[str]:
    """What `airflow dags test` prints for one task, as Airflow 3.3 words it."""
    shown = "" if map_index < 0 else f" map_index={map_index}"
    return [
        f"2026-12-07T17:18:11Z [info ] [DAG TEST] starting task_id={task} map_index={map_index} [dag]\n",
        f"2026-12-07T17:18:11Z [info ] [DAG TEST] running task <TaskInstance: orderops_sla.{task} {RUN}{shown}"
        " [TaskInstanceState.SCHEDULED] ti_id=01a2> [dag]\n",
        *body,
        f"2026-12-07T17:18:12Z [info ] [DAG TEST] end task task_id={task} map_index={map_index} [dag]\n",
    ]


def test_each_task_attempt_gets_its_lines_in_the_file_airflow_reads(tmp_path):
    files = TaskLogFiles(tmp_path, "orderops_sla")
    lines = [
        "2026-12-07T17:18:10Z [info ] Filling up the DagBag [dagbag]\n",  # before any task: in no task's file
        *dag_test_lines("summarize_run", -1, "orderops run x (shop default): succeeded\n", "  orders seen  3\n"),
        *dag_test_lines("post_tracking", 0, "posted 1\n"),
        *dag_test_lines("post_tracking", 1, "posted 2\n"),
        *dag_test_lines("check_run", -1, "failed once\n"),
        "2026-12-07T17:18:40Z [info ] between the tries [dag]\n",
        *dag_test_lines("check_run", -1, "passed\n"),
    ]
    for line in lines:
        files.feed(line)
    files.close()

    run = tmp_path / "dag_id=orderops_sla" / f"run_id={RUN}"
    found = {str(p.relative_to(run)): p.read_text() for p in sorted(run.rglob("*.log"))}
    assert set(found) == {
        "task_id=summarize_run/attempt=1.log",
        "task_id=post_tracking/map_index=0/attempt=1.log",
        "task_id=post_tracking/map_index=1/attempt=1.log",
        "task_id=check_run/attempt=1.log",
        "task_id=check_run/attempt=2.log",
    }
    summary = found["task_id=summarize_run/attempt=1.log"]
    assert summary.startswith("2026-12-07T17:18:11Z [info ] [DAG TEST] starting task_id=summarize_run")
    assert (
        "orderops run x (shop default): succeeded\n  orders seen  3\n" in summary and "[DAG TEST] end task" in summary
    )
    assert "posted 2" in found["task_id=post_tracking/map_index=1/attempt=1.log"]
    assert "posted 2" not in found["task_id=post_tracking/map_index=0/attempt=1.log"]
    assert "passed" in found["task_id=check_run/attempt=2.log"]
    assert "passed" not in found["task_id=check_run/attempt=1.log"]
    assert not any("DagBag" in text or "between the tries" in text for text in found.values())
