"""Two runs of the same shop at once never take the same action twice.

A backfill of an earlier window and the scheduled run start together, each in a process of its
own, on one warehouse (SQLite file and PostgreSQL, migrated or still empty, so that both create
its tables at once). Both decide the same orders; the ledger's
conditional claim lets exactly one of them carry out each action, and the other finds it held or
done. Checked from the sandbox's write log: no effect twice, the safety invariants hold, and
together the two runs did everything a single clean run does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest

from include.act.ledger import Ledger
from include.store.warehouse import decisions, latest_rows
from tests.chaos import report
from tests.chaos.harness import (
    audit,
    chaos_scenario,
    clean_history,
    escalations,
    fresh_warehouse,
    patched_env,
    run_pipeline,
    unfinished,
)

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = chaos_scenario()
RUNS = {
    "scheduled__2026-11-20T14:30:00+00:00": ("2026-11-20T14:30:00Z", "2026-11-20T15:00:00Z"),
    "backfill__2026-11-20T09:00:00+00:00": ("2026-11-20T09:00:00Z", "2026-11-20T09:30:00Z"),
}


def _window(wh, run_id: str) -> tuple:
    """When a run carried out its first and last action (by the ledger's clock)."""
    times = [r["updated_at"] for r in Ledger(wh).rows("default") if r["run_id"] == run_id and r["kind"] != "escalate"]
    return (min(times), max(times)) if times else None


def _overlap(a, b) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


@pytest.fixture(scope="module")
def baseline(rig, tmp_path_factory):
    return clean_history(rig, tmp_path_factory.mktemp("concurrency-baseline"))


@pytest.mark.parametrize(
    "kind, migrated",
    [("sqlite", True), ("postgresql", True), ("sqlite", False), ("postgresql", False)],
    ids=["sqlite", "postgresql", "sqlite-fresh-file", "postgresql-fresh-schema"],
)
def test_backfill_beside_the_scheduled_run(kind, migrated, rig, baseline, tmp_path):
    rig.load(SCENARIO)
    # every write takes a while, so that both runs are still acting when the other starts
    for platform, path in (
        ("tiktok", "/packages$"),
        ("tiktok", "/(approve|reject)$"),
        ("amazon_mcf", "/cancel$"),
        ("shipbob", ":cancel$"),
    ):
        rig.fault({"platform": platform, "kind": "latency", "path": path, "count": 100, "seconds": 0.4})
    started = time.monotonic()
    with fresh_warehouse(kind, tmp_path) as wh:
        if migrated:
            wh.migrate()  # as prepare_run would; both runs then race only on the ledger
        # else both runs create the warehouse's tables at once, each in its own process
        meeting = tmp_path / "decided"
        meeting.mkdir()
        # both act once both have decided (the window they race in), however loaded the machine is
        env = {**os.environ, **rig.connection_env(), "PYTHONPATH": REPO, "ORDEROPS_TEST_MEET": f"{meeting}:{len(RUNS)}"}
        children = {}
        for run_id, (start, end) in RUNS.items():
            out = (tmp_path / f"{run_id[:9]}.log").open("w")
            children[run_id] = (
                subprocess.Popen(
                    [sys.executable, "-m", "tests.chaos.crash_child", run_id, wh.url, start, end],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),
                out,
            )
        for run_id, (process, out) in children.items():
            assert process.wait(timeout=300) == 0, (tmp_path / f"{run_id[:9]}.log").read_text()[-3000:]
            out.close()
        checked = audit(rig)
        by_run = Counter(
            r["run_id"].split("__")[0]
            for r in Ledger(wh).rows("default")
            if r["state"] == "succeeded" and r["kind"] != "escalate"
        )
        logs = {run_id: (tmp_path / f"{run_id[:9]}.log").read_text() for run_id in RUNS}
        summaries = [
            json.loads(line.split(" ", 1)[1])
            for text in logs.values()
            for line in text.splitlines()
            if line.startswith("SUMMARY ")
        ]
        held = sum(len(re.findall(r" held +\S+ not claimed", text)) for text in logs.values())
        acted = {run_id.split("__")[0]: _window(wh, run_id) for run_id in RUNS}
        report.add(
            {
                "warehouse": kind if migrated else f"{kind}, fresh",
                "runs": " + ".join(RUNS),
                "writes": len([w for w in rig.writes if w.outcome == "ok"]),
                "done by scheduled": by_run["scheduled"],
                "done by backfill": by_run["backfill"],
                "held by the other": held,
                "act phases overlap": _overlap(*acted.values()),
                "run states": ", ".join(s["state"] for s in summaries),
                "duplicates": len(checked.violations),
                "seconds": round(time.monotonic() - started, 1),
            },
            table="concurrent-runs",
        )
        assert checked.violations == []
        assert _overlap(*acted.values()), acted  # they really ran side by side
        assert checked.done_effects() == baseline["effects"]
        assert escalations(wh) == baseline["escalations"]
        # whatever one run left held by the other is finished by the next scheduled run
        with patched_env(rig.connection_env()):
            run_pipeline(wh, "scheduled__2026-11-20T15:00:00+00:00")
        assert audit(rig).violations == []
        assert audit(rig).done_effects() == baseline["effects"]
        assert unfinished(wh) == []


def test_a_run_restaging_the_same_orders_does_not_hide_them_from_the_other(rig, tmp_path):
    """Staging keeps one row per order: a backfill that restages the fulfillment orders between the
    scheduled run's extraction and its decision takes those rows over. The scheduled run must still
    see them; without them every buyer cancellation looks like C2 ("no fulfillment order"), and would
    be refunded and approved while the fulfiller ships the parcel."""
    from datetime import datetime

    from include.act import saga
    from include.act.ledger import RunContext
    from include.extract import amazon, listings
    from include.run import pipeline
    from include.run.platforms import Platforms
    from include.run.runconfig import run_settings

    rig.load(SCENARIO)
    run_ids = list(RUNS)
    with fresh_warehouse("sqlite", tmp_path) as wh, patched_env(rig.connection_env()):
        settings = {
            run_id: run_settings(
                dag_id="orderops_sla",
                run_id=run_id,
                params={
                    "now": "2026-11-20T15:00:00Z",
                    "window_start": start,
                    "window_end": end,
                    "policy": {"cancel_verify_timeout_minutes": 0.05},
                },
            )
            for run_id, (start, end) in RUNS.items()
        }
        platforms = {run_id: Platforms(s) for run_id, s in settings.items()}
        scheduled, backfill = (settings[r] for r in run_ids)
        try:
            pipeline.prepare_run(scheduled, wh)
            since = datetime.fromisoformat(listings.extract_tiktok(scheduled, platforms[run_ids[0]], wh)["since"])
            for step in (listings.extract_shopify, amazon.extract_amazon, listings.extract_shipbob):
                step(scheduled, platforms[run_ids[0]], wh, since)
            # the backfill starts and restages the fulfillment orders before the scheduled run decides
            pipeline.prepare_run(backfill, wh)
            amazon.extract_amazon(backfill, platforms[run_ids[1]], wh, since)
            listings.extract_shipbob(backfill, platforms[run_ids[1]], wh, since)
            pipeline.validate_staged(scheduled, wh)
            plan = pipeline.join_and_decide(scheduled, platforms[run_ids[0]], wh)
            ctx = RunContext(
                shop="default",
                dag_id="orderops_sla",
                run_id=scheduled.run_id,
                task_id="act",
                now=scheduled.now_override,
            )
            for group in ("tracking", "notes", "rejections", "escalations"):
                for chunk in plan[group]:
                    pipeline.act(scheduled, platforms[run_ids[0]], wh, ctx, chunk)
            for chunk in plan["cancellations"]:
                saga.cancel_at_fulfiller(scheduled, platforms[run_ids[0]], wh, ctx, chunk)
                saga.verify_cancellations(scheduled, platforms[run_ids[0]], wh, ctx, chunk)
                saga.refund_and_approve(scheduled, platforms[run_ids[0]], wh, ctx, chunk)
        finally:
            for p in platforms.values():
                p.close()
        with_fulfiller = {
            o["tiktok"]["id"] for o in SCENARIO["orders"] if o["fulfiller"] and o["tiktok"]["cancellation"]
        }
        with wh.engine.connect() as conn:
            # each order's current decision (a run records one only when it changed)
            decided = {o: r["rule"] for o, r in latest_rows(conn, decisions, scheduled.shop).items()}
    assert {decided[t] for t in with_fulfiller} <= {"C1", "C3"}, decided
    assert plan["rules"].get("C2", 0) == sum(
        1 for o in SCENARIO["orders"] if o["tiktok"]["cancellation"] and not o["fulfiller"]
    )
    assert audit(rig).violations == []


def test_one_run_acting_in_lanes_does_what_a_run_in_turn_does(rig, baseline, tmp_path):
    """run_all with lanes runs the listings, the action groups and the sagas on several threads
    sharing one client per platform (as the benchmark does): same effects, each once, all closed."""
    rig.load(SCENARIO)
    with fresh_warehouse("sqlite", tmp_path) as wh:
        summary = rig.run(wh, "lanes-1", lanes=3)
        checked = audit(rig)
        assert checked.violations == []
        assert checked.done_effects() == baseline["effects"]
        assert escalations(wh) == baseline["escalations"]
        assert unfinished(wh) == []
        assert summary["state"] == "succeeded", summary
