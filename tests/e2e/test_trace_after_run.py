"""`trace` after a real run: the order as it stands now, not as the run's snapshot found it."""

from __future__ import annotations

import json

from include import cli as orderops
from include.act.ledger import Ledger
from include.cli import trace
from tests.chaos.harness import SandboxRig, chaos_scenario, fresh_warehouse


def test_trace_shows_what_the_run_did_after_its_snapshot(tmp_path, capsys):
    scenario = chaos_scenario()
    rig = SandboxRig(scenario)
    try:
        with fresh_warehouse("sqlite", tmp_path) as wh:
            rig.run(wh, "traced-1")
            done = {r["kind"]: r for r in Ledger(wh).rows("default") if r["state"] == "succeeded"}
            approved = done["approve_cancellation"]["tiktok_order_id"]
            tracked = done["post_tracking"]
            lines = trace(wh, approved)
            now = lines[1 : lines.index("Links")]
            # the snapshot still reads the order open; what the run did since is listed after it
            assert now[0].startswith("  TikTok AWAITING_SHIPMENT as read at"), now
            assert any("buyer cancellation approved on TikTok" in line for line in now[1:]), now
            assert any("Shopify order cancelled and refunded" in line for line in now[1:]), now
            tracking_lines = trace(wh, tracked["tiktok_order_id"])
            assert any(
                f"tracking {tracked['request']['tracking_number']} posted to TikTok" in line
                for line in tracking_lines[: tracking_lines.index("Links")]
            )
            # the command names the warehouse it read
            capsys.readouterr()
            assert orderops.main(["trace", approved, "--warehouse", str(wh.engine.url)]) == 0
            assert f"warehouse {wh.engine.url}\nNow\n" in capsys.readouterr().out
    finally:
        rig.stop()


def test_pools_are_written_for_airflow_pools_import(tmp_path):
    out = tmp_path / "pools.json"
    assert orderops.main(["pools", "--out", str(out)]) == 0
    pools = json.loads(out.read_text())
    assert pools["tiktok_api"] == {"slots": 4, "description": "orderops: calls to tiktok", "include_deferred": False}
    assert set(pools) == {"tiktok_api", "shopify_api", "amazon_api", "shipbob_api", "fulfiller_api"}
    assert orderops.main(["pools", "--shops", "3", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["tiktok_api"]["slots"] == 12
