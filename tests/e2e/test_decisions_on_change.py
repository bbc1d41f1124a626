"""Runs record an order's decision and link only when they change: whole runs against the sandbox.
Runs over unchanged platforms record an order once; tracking appearing records its new decision;
the current decision of each order is its latest row across runs; the run summary counts the
orders decided apart from the decisions recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from include.act.ledger import Ledger
from include.cli import trace
from include.report.figures import run_figures
from include.store.warehouse import decisions, latest_rows, order_links
from tests.chaos.harness import SandboxRig, fresh_warehouse
from tests.e2e.test_at_risk_alerts import order
from tests.support import NOW, iso
from tests.support import tiktok_order_id as tid


def rows_of(wh, table, tiktok_order_id: str) -> list[str]:
    with wh.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(table.c.run_id).where(table.c.tiktok_order_id == tiktok_order_id).order_by(table.c.decided_at)
            ).scalars()
        )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_decision_is_recorded_when_new_or_changed_and_read_as_the_latest(kind, tmp_path):
    scenario = {
        "now": iso(NOW),
        "orders": [
            order(1, 30, in_status_hours=1.0),  # Amazon ships it 11 h on: its tracking appears
            order(2, 40, in_status_hours=0.1),  # still Processing 11.5 h on: nothing changes
            order(3, 30, shipped=True),  # tracking to post at once
        ],
    }
    rig = SandboxRig(scenario)
    try:
        with fresh_warehouse(kind, tmp_path) as wh:
            first = rig.run(wh, "r1")
            # every order is new: each decided one is recorded, with its link
            assert sum(first["decisions"].values()) == first["decisions_recorded"] == 3
            assert first["decisions"]["T1"] == 1
            figures = run_figures(first)
            assert (figures["orders_decided"], figures["decisions_recorded"]) == (3, 3)
            rig.run(wh, "r2")  # reads what r1 did (order 3's tracking is on TikTok)
            third = rig.run(wh, "r3")
            # nothing changed since: orders are decided, nothing is recorded
            assert sum(third["decisions"].values()) >= 2 and third["decisions_recorded"] == 0
            assert rows_of(wh, decisions, tid(2)) == rows_of(wh, order_links, tid(2)) == ["r1"]
            assert rows_of(wh, decisions, tid(1)) == ["r1"]

            rig.advance(timedelta(hours=11.5).total_seconds())
            fourth = rig.run(wh, "r4")
            assert fourth["decisions_recorded"] == 1 and fourth["decisions"]["T1"] == 1
            assert rows_of(wh, decisions, tid(1)) == rows_of(wh, order_links, tid(1)) == ["r1", "r4"]
            with wh.engine.connect() as conn:
                current = latest_rows(conn, decisions, "default")
                linked = latest_rows(conn, order_links, "default", [tid(1), tid(2)])
            assert (current[tid(1)]["run_id"], current[tid(1)]["rule"]) == ("r4", "T1")
            assert current[tid(2)]["run_id"] == linked[tid(2)]["run_id"] == "r1"
            assert linked[tid(1)]["run_id"] == "r4" and linked[tid(1)]["fulfillment_order_id"] == "1001"
            # the post rests on the decision r4 recorded; trace lists the order's decisions as they changed
            (post,) = [r for r in Ledger(wh).rows("default", kind="post_tracking") if r["tiktok_order_id"] == tid(1)]
            assert post["decision_run_id"] == "r4"
            lines = trace(wh, tid(1))
            history = lines[lines.index("Decisions") + 1 : lines.index("Actions (ledger)")]
            assert "as they changed" in history[0]
            assert [line.split(" run ")[1].split(":")[0] for line in history[1:] if " run " in line] == ["r1", "r4"]
    finally:
        rig.stop()
