"""`side_by_side`: how run_all runs the DAG's parallel branches in one process."""

import threading

import pytest

from include.run.pipeline import side_by_side


def test_steps_run_at_the_same_time_on_their_own_threads():
    meet = threading.Barrier(3, timeout=10)  # passes only if three steps are running at once
    threads = []

    def step():
        threads.append(threading.get_ident())
        meet.wait()

    side_by_side([step, step, step], workers=3)
    assert len(set(threads)) == 3 and threading.get_ident() not in threads


def test_one_worker_runs_in_order_in_this_thread():
    seen = []
    side_by_side([lambda i=i: seen.append((i, threading.get_ident())) for i in range(4)], workers=1)
    assert seen == [(i, threading.get_ident()) for i in range(4)]


def test_every_step_finishes_before_the_first_error_in_step_order_is_raised():
    done = []
    release = threading.Event()

    def slow_ok():
        release.wait(10)
        done.append("slow")

    def fails(name):
        def step():
            release.set()
            raise ValueError(name)

        return step

    with pytest.raises(ValueError, match="first"):
        side_by_side([slow_ok, fails("first"), fails("second")], workers=3)
    assert done == ["slow"]
