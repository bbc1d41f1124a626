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
        waves((Step("a", ("b",)), Step("b", ("a",))))


def test_every_batch_has_its_staging_table():
    assert set(BATCHES) == set(BATCH_TABLES)
