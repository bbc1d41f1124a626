"""Crash consistency: a task process killed at the worst moments, then the work completes once.

The pipeline runs in a child process of its own (`tests.chaos.crash_child`). The sandbox kills
it with SIGKILL from inside the platform's handler, the instant the write has been applied and
recorded, before the answer is sent back: the platform has done the work and the process never
learns it, so the ledger row stays `in_flight` with a live lease. (The kill is scheduled by
wrapping the sandbox's write recorder; the simulators answer as always.)

Then:
1. an immediate retry of the same run (as Airflow would retry the task) must not repeat the
   write: the dead runner's lease is still live, so the row is held, not claimed;
2. a later run, once the lease has run out (the ledger's clock is moved 11 minutes on, standing in
   for the wait), reconciles the row from the remote state and records it as done, still without
   a second write; everything a clean history does has happened, and no ledger row is left open.

Moments: after TikTok Mark As Shipped, after the Shopify note (before its tag), and in the middle
of the cancellation saga: after the fulfiller cancel (Amazon MCF, ShipBob), after the Shopify
cancel and refund (before the TikTok approval), and after the approval.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from include.act import ledger as ledger_module
from include.act.ledger import Ledger
from include.store.warehouse import utcnow
from tests.chaos import report
from tests.chaos.harness import (
    audit,
    chaos_scenario,
    clean_history,
    effect_of,
    escalations,
    fresh_warehouse,
    unfinished,
)

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = chaos_scenario(amazon_c1=1)
MOMENTS = {
    # moment -> (write operation that triggers the kill, ledger kind of the row left in flight)
    "after-mark-shipped": ("mark_package_as_shipped", "post_tracking"),
    "after-note-before-tag": ("orderUpdate", "add_note"),
    "saga-after-amazon-cancel": ("cancelFulfillmentOrder", "cancel_fulfillment"),
    "saga-after-shipbob-cancel": ("shipbob_cancel", "cancel_fulfillment"),
    "saga-after-shopify-refund": ("orderCancel", "cancel_shopify_order"),
    "saga-after-approve": ("approve_cancellation", "approve_cancellation"),
}


@pytest.fixture(scope="module")
def baseline(rig, tmp_path_factory):
    return clean_history(rig, tmp_path_factory.mktemp("crash-baseline"))


def matches(operation: str):
    def trigger(w) -> bool:
        if w.outcome != "ok":
            return False
        if operation == "shipbob_cancel":
            return w.platform == "shipbob" and "cancel" in w.path
        return w.operation == operation

    return trigger


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_kill_between_remote_write_and_ledger_update(moment, rig, baseline, tmp_path, monkeypatch):
    operation, kind = MOMENTS[moment]
    rig.load(SCENARIO)
    started = time.monotonic()
    with fresh_warehouse("sqlite", tmp_path) as wh:
        child: dict = {}
        killed: list = []

        def kill(record) -> None:
            os.kill(child["process"].pid, signal.SIGKILL)
            killed.append(record)

        rig.arm(matches(operation), action=kill)
        log = (tmp_path / "child.log").open("w")
        env = {**os.environ, **rig.connection_env(), "PYTHONPATH": REPO}
        child["process"] = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.crash_child", "crash-1", wh.url],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        returncode = child["process"].wait(timeout=240)
        log.close()
        assert killed, (
            f"the child finished ({returncode}) without reaching {operation}:\n"
            + (tmp_path / "child.log").read_text()[-3000:]
        )
        assert returncode == -signal.SIGKILL
        target = effect_of(killed[0])

        # the worst moment: the platform did it, the ledger says in flight under a live lease
        rows = [r for r in Ledger(wh).rows("default", kind=kind) if r["state"] == "in_flight"]
        assert len(rows) == 1, [(r["idempotency_key"], r["state"]) for r in Ledger(wh).rows("default", kind=kind)]
        stuck = rows[0]
        lease = (
            stuck["lease_until"]
            if stuck["lease_until"].tzinfo
            else stuck["lease_until"].replace(tzinfo=utcnow().tzinfo)
        )
        assert lease > utcnow()

        def writes_to_target() -> list:
            return [
                w
                for w in rig.writes
                if (e := effect_of(w)) is not None and (e.kind, e.target) == (target.kind, target.target)
            ]

        # 1. Airflow retries the task at once: the dead runner's lease holds, nothing is repeated
        rig.run(wh, "crash-1")
        assert len(writes_to_target()) == 1, writes_to_target()
        assert Ledger(wh).state_of("default", stuck["idempotency_key"]) == "in_flight"
        retry_audit = audit(rig)
        assert retry_audit.violations == []

        # 2. a later run, after the lease ran out: reconciled from the remote state, still one write
        real_utcnow = ledger_module.utcnow
        monkeypatch.setattr(ledger_module, "utcnow", lambda: real_utcnow() + timedelta(minutes=11))
        rig.advance(10)
        rig.run(wh, "crash-2")
        monkeypatch.undo()
        final = audit(rig)
        row = next(r for r in Ledger(wh).rows("default") if r["idempotency_key"] == stuck["idempotency_key"])
        report.add(
            {
                "moment": moment,
                "killed at": f"#{killed[0].seq} {killed[0].operation}",
                "row after kill": "in_flight (live lease)",
                "writes to target": len(writes_to_target()),
                "row at the end": row["state"],
                "how": (row["detail"] or "performed")[:48],
                "open rows": len(unfinished(wh)),
                "violations": len(final.violations),
                "seconds": round(time.monotonic() - started, 1),
            },
            table="crash-consistency",
        )
        assert final.violations == []
        done = [w for w in writes_to_target() if w.outcome == "ok"]
        assert len(done) == 1, done
        assert row["state"] == "succeeded", row
        if kind == "add_note":
            # the note was there, only the tag was missing: the retry adds the tag and leaves the note alone
            gid = target.target
            assert [e.kind for w in rig.writes if w.outcome == "ok" and (e := effect_of(w)) and e.target == gid] == [
                "shopify_note",
                "shopify_tags",
            ]
        else:
            assert "took effect" in (row["detail"] or ""), row
        assert final.done_effects() == baseline["effects"]
        assert escalations(wh) == baseline["escalations"]
        assert unfinished(wh) == []
