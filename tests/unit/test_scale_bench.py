"""The scale benchmark's arithmetic (bench/scale_bench.py): a phase's CPU less the idle rate over its
length, per run; the model for N shops from those inputs."""

from __future__ import annotations

import pytest

from bench.scale_bench import PEAK, analyse, model, tree_cpu


def _run(run_id: str, dag_id: str, end: str = "2026-12-07T12:10:00+00:00") -> dict:
    return {"dag_run_id": run_id, "dag_id": dag_id, "state": "success", "end_date": end}


def _ti(queued: str, started: str) -> dict:
    return {"queued_when": queued, "start_date": started, "duration": 1.0}


def raw() -> dict:
    return {
        "shops": 2,
        "orders_per_shop_day": 1000,
        "fulfiller_speed": 20,
        "clock_rate": 10,
        "clock_seconds": 864,  # 2 shops x 0.1 day: 0.2 shop-days
        "run_gap": 18.0,
        "runs_per_shop_day": 24.0,
        # idle: 1 CPU-s a second in all, 0.1 of it the API server's
        "idle": {"seconds": 100, "cpu_s": {"scheduler": 50.0, "postgresql": 40.0, "api-server": 10.0}},
        "scheduled": {
            "seconds": 10,
            # the API server: 1 idle + 42 x 0.5 for the task instances
            "cpu_s": {"scheduler": 26.0, "worker-1": 4.0, "api-server": 22.0},
            "runs": [_run("m1", "orderops_sla_a"), _run("m2", "orderops_sla_b")],
        },
        "events": {
            "seconds": 20,
            # the API server: 2 idle + 3 x 0.5 for the task instances + 10 for 100 webhooks
            "cpu_s": {"scheduler": 20.0, "worker-1": 12.0, "api-server": 13.5},
            "runs": [
                _run("e1", "orderops_events_a", "2026-12-07T12:01:00+00:00"),
                _run("e2", "orderops_events_a"),
                _run("e3", "orderops_events_b"),
            ],
        },
        "task_instances": {
            "m1": [_ti("2026-12-07T12:00:00+00:00", "2026-12-07T12:00:01+00:00")] * 21,
            "m2": [_ti("2026-12-07T12:00:00+00:00", "2026-12-07T12:00:03+00:00")] * 21,
            "e1": [_ti("2026-12-07T12:00:00+00:00", "2026-12-07T12:00:02+00:00")],
            "e2": [_ti("2026-12-07T12:00:00+00:00", "2026-12-07T12:00:02+00:00")],
            "e3": [_ti("2026-12-07T12:00:00+00:00", "2026-12-07T12:00:40+00:00")],
        },
        "platform_events": {
            "posted": [["e1", "2026-12-07T12:00:30+00:00"], ["gone", "2026-12-07T12:00:30+00:00"]],
            "claimed": {"e1": 2, "e2": 1},
            # 3 webhooks woke, 97 did not; Amazon's notifications came through its queue
            "received": [["shipbob", True, 3], ["shopify", False, 60], ["tiktok", False, 37], ["amazon_mcf", True, 5]],
        },
        "postgresql_connections": {"total": 9},
        "postgresql_max_connections": 100,
        "workers": 2,
        "worker_concurrency": 4,
    }


def test_a_run_costs_its_phase_less_the_idle_rate_over_the_phase():
    found = analyse(raw())
    # the receiver: 13.5 - 2 idle - 1.5 for 3 task instances = 10 CPU-s for 100 webhooks
    assert found["cpu_s_per_webhook_delivery"] == pytest.approx(0.1)
    assert found["webhook_deliveries"] == {"received": 100, "woke": 3, "per_shop_day": 500.0}
    # events: 45.5 CPU-s in 20 s, less 20 idle and 9.7 for the 97 webhooks that woke nothing, over 3
    # wakes; scheduled: 52 - 10 over 2 runs
    assert found["cpu_s_per_event_wake"] == pytest.approx(5.27, abs=0.01)
    assert found["cpu_s_per_scheduled_run"] == 21.0
    assert found["inputs"]["idle_deliveries_per_shop_day"] == pytest.approx(485.0)
    assert found["inputs"]["runs_per_shop_day"] == 24.0
    assert found["inputs"]["scheduled_run_by_component"]["scheduler"] == pytest.approx(10.5)  # (26 - 0.5 x 10) / 2
    assert found["inputs"]["slot_seconds"] == {"scheduled": 21.0, "event": 1.0}  # a second in a slot each
    assert found["phases"]["scheduled"]["run_gap_s"] == 18.0
    # by component: the API server's 13.5 less 2 idle and 9.7 for the deliveries that woke nothing
    per_wake = found["phases"]["events"]["cpu_s_per_wake"]
    assert per_wake["api-server"] == pytest.approx(0.6, abs=0.001)
    assert sum(per_wake.values()) == pytest.approx(found["cpu_s_per_event_wake"], abs=0.01)
    assert found["task_instances"] == {"scheduled": 21, "event": 1}
    # 21 waits of 1 s, 21 of 3 s, two of 2 s and one of 40 s
    assert found["scheduler_lag_s"] == {"p50": 2.0, "p95": 3.0}
    # a webhook received at 12:00:30 claimed by e1, which ended at 12:01:00; a run of another phase is not counted
    assert found["event_to_tracking_s"] == {"p50": 30.0, "p95": 30.0, "count": 1}
    assert found["waking_events_per_wake"]["mean"] == 1.0  # 2, 1 and 0


def test_the_model_scales_a_shop_day_and_the_idle_share_by_component():
    inputs = {
        "event_wake_by_component": {"worker-1": 1.5, "api-server": 0.5},
        "scheduled_run_by_component": {"worker-1": 8.0, "scheduler": 2.0},
        "idle_by_component": {"scheduler": 0.006, "postgresql": 0.004},
        "wakes_per_shop_day": 432.0,
        "runs_per_shop_day": 48.0,
        "cpu_s_per_webhook_delivery": 0.02,
        "idle_deliveries_per_shop_day": 4800.0,
        "task_instances": {"event": 1, "scheduled": 21},
        "slot_seconds": {"event": 2.0, "scheduled": 30.0},
    }
    at_200 = model(inputs, 200)
    # (432 x 2 + 48 x 10 + 4800 x 0.02) / 86400 = 1440 / 86400 cores a shop, and 0.01 idle
    assert at_200["cores"] == pytest.approx(200 * (1440 / 86400 + 0.01), abs=0.01)
    assert at_200["peak_cores"] == pytest.approx(at_200["cores"] * PEAK, abs=0.02)
    parts = at_200["by_component"]
    assert parts["api-server"] == pytest.approx(200 * (432 * 0.5 + 4800 * 0.02) / 86400, abs=0.001)
    assert parts["scheduler"] == pytest.approx(200 * (48 * 2.0 / 86400 + 0.006), abs=0.001)
    assert sum(parts.values()) == pytest.approx(at_200["cores"], abs=0.01)
    assert at_200["task_instances_per_second"] == pytest.approx(200 * (432 + 48 * 21) / 86400, abs=0.01)
    # slots busy: 200 x (432 x 2 + 48 x 30) / 86400
    assert at_200["task_slots"] == pytest.approx(200 * 2304 / 86400, abs=0.01)


def test_a_process_trees_cpu_counts_this_process():
    import os

    sum(i * i for i in range(300_000))  # some CPU of its own
    assert tree_cpu([os.getpid()]) > 0
    assert tree_cpu([2**22 + 12345]) == 0  # no such process
