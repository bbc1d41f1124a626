"""The inbox in whole runs: a person maps the carrier of a T2 escalation, and the next run posts the
tracking under that TikTok provider, once; the escalation stays in the history, resolved."""

from __future__ import annotations

from include.act.ledger import Ledger
from include.report.inbox import map_carrier
from sandbox.tiktok import provider, shipped_with
from tests.chaos.harness import SandboxRig, chaos_scenario, fresh_warehouse


def test_a_mapped_carrier_gets_its_tracking_posted_by_the_next_run(tmp_path):
    rig = SandboxRig(chaos_scenario())
    try:
        with fresh_warehouse("sqlite", tmp_path) as wh:
            rig.run(wh, "inbox-1")
            t2 = next(
                r
                for r in Ledger(wh).rows("default")
                if r["kind"] == "escalate" and r["request"]["reason_code"] == "carrier_unmapped"
            )
            order, carrier = t2["tiktok_order_id"], t2["request"]["carriers"][0]

            def posts():
                return [
                    w
                    for w in rig.writes
                    if w.platform == "tiktok"
                    and order in w.path
                    and w.operation == "mark_package_as_shipped"
                    and w.outcome == "ok"
                ]

            assert not posts()
            ontrac = provider("OnTrac")  # the simulator's provider ids are stable per name
            map_carrier(wh, "default", t2["idempotency_key"], carrier, "OnTrac", by="ana", note="regional partner")
            rig.run(wh, "inbox-2")
            posted = posts()
            assert len(posted) == 1 and shipped_with(posted[0].body)["shipping_provider_id"] == ontrac["id"]
            rows = Ledger(wh).rows("default")
            kinds = [r["kind"] for r in rows if r["tiktok_order_id"] == order]
            assert kinds.count("map_carrier") == 1 and kinds.count("escalate") == 1 and "post_tracking" in kinds
            rig.run(wh, "inbox-3")
            assert len(posts()) == 1  # nothing twice
    finally:
        rig.stop()
