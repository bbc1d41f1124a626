"""The one list of steps: its order, and the run_all that follows it."""

from __future__ import annotations

import pytest

from include.run.steps import BATCHES, STEPS, Step, waves
from include.store.run_store import BATCH_TABLES


def test_waves_keep_the_lists_order_and_group_what_can_run_side_by_side():
    grouped = [[s.name for s in wave] for wave in waves()]
    assert grouped[0] == ["prepare_run"] and grouped[-1] == ["summarize_run"]
    assert ["extract_shopify", "extract_amazon", "extract_shipbob"] in grouped
    flat = [name for wave in grouped for name in wave]
    assert flat.index("cancel_at_fulfiller") < flat.index("verify_fulfiller_cancel") < flat.index("refund_and_approve")
    position = {name: i for i, wave in enumerate(grouped) for name in wave}
    for step in STEPS:
        assert all(position[up] < position[step.name] for up in step.after), step.name


def test_steps_that_wait_on_each_other_are_refused():
    with pytest.raises(ValueError, match="wait on each other"):
        waves((Step("a", "m:f", (), "a", ("b",)), Step("b", "m:f", (), "b", ("a",))))


def test_every_batch_has_its_staging_table():
    assert set(BATCHES) == set(BATCH_TABLES)


def test_each_step_names_a_function_that_takes_its_arguments():
    """The table is what the DAG and run_all call: every function exists and takes the arguments the
    step gives it, by position; lineage names are endpoints or tables the warehouse has."""
    import inspect

    from include.airflow.lineage import ENDPOINTS
    from include.run.steps import PLAN, STAGING
    from include.store.warehouse import metadata

    known = set(ENDPOINTS) | set(metadata.tables) | set(STAGING)
    for step in STEPS:
        parameters = inspect.signature(step.function).parameters.values()
        required = [p for p in parameters if p.default is p.empty]
        assert len(required) <= len(step.args) <= len(parameters), (step.name, step.args)
        assert set(step.reads) | set(step.writes) <= known, step.name
        assert step.each is None or step.args[-1] == "chunk"
    # a mapped step maps over a group of the plan's result, so it comes after the plan
    position = {s.name: i for i, wave in enumerate(waves()) for s in wave}
    assert all(position[PLAN] < position[s.name] for s in STEPS if s.each)
