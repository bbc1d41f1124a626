"""The inbox in whole runs: a person maps the carrier of a T2 escalation, and the next run posts the
tracking under that TikTok provider, once; the escalation stays in the history, resolved. The other
order escalated for the same carrier gets its tracking posted too, and its escalation closes itself:
resolved by `orderops`, naming the run and what it decided instead."""

from __future__ import annotations

import sqlalchemy as sa

from include.act.ledger import Ledger
from include.report.inbox import SYSTEM_REVIEWER, latest_reviews, map_carrier
from include.report.sla_ui import load_overview
from include.store.warehouse import escalation_reviews
from sandbox.tiktok import provider, shipped_with
from tests.chaos.harness import SandboxRig, chaos_scenario, fresh_warehouse


def test_a_mapped_carrier_gets_its_tracking_posted_by_the_next_run(tmp_path):
    rig = SandboxRig(chaos_scenario())
    try:
        with fresh_warehouse("sqlite", tmp_path) as wh:
            rig.run(wh, "inbox-1")
            escalations = [r for r in Ledger(wh).rows("default") if r["kind"] == "escalate"]
            t2, other = [r for r in escalations if r["request"]["reason_code"] == "carrier_unmapped"]
            order, carrier = t2["tiktok_order_id"], t2["request"]["carriers"][0]
            assert other["request"]["carriers"] == [carrier]  # two orders, one carrier nobody mapped yet

            def posts(order_id):
                return [
                    w
                    for w in rig.writes
                    if w.platform == "tiktok"
                    and order_id in w.path
                    and w.operation == "mark_package_as_shipped"
                    and w.outcome == "ok"
                ]

            assert not posts(order) and not posts(other["tiktok_order_id"])
            ontrac = provider("OnTrac")  # the simulator's provider ids are stable per name
            map_carrier(wh, "default", t2["idempotency_key"], carrier, "OnTrac", by="ana", note="regional partner")
            rig.run(wh, "inbox-2")
            for order_id in (order, other["tiktok_order_id"]):
                posted = posts(order_id)
                assert len(posted) == 1 and shipped_with(posted[0].body)["shipping_provider_id"] == ontrac["id"]
            rows = Ledger(wh).rows("default")
            kinds = [r["kind"] for r in rows if r["tiktok_order_id"] == order]
            assert kinds.count("map_carrier") == 1 and kinds.count("escalate") == 1 and "post_tracking" in kinds

            with wh.engine.connect() as conn:
                reviews = latest_reviews(conn, "default", [e["idempotency_key"] for e in escalations])
            # the one mapped from stays resolved by the person; the other closed itself, saying why
            assert reviews[t2["idempotency_key"]]["reviewed_by"] == "ana"
            closed = reviews[other["idempotency_key"]]
            assert closed["state"] == "resolved" and closed["reviewed_by"] == SYSTEM_REVIEWER
            assert closed["note"].startswith("resolved by run inbox-2: now T1, ") and "shipped with" in closed["note"]
            # the causes no run resolved stay open
            assert {e["request"]["reason_code"] for e in escalations if e["idempotency_key"] not in reviews} >= {
                "no_shopify_match",
                "ambiguous_shopify_match",
            }
            listed = {
                e["key"]: e for shop in load_overview(wh.engine, tmp_path / "reports").shops for e in shop.escalations
            }
            assert listed[other["idempotency_key"]]["review"] == "resolved"
            assert listed[other["idempotency_key"]]["reviewed_by"] == SYSTEM_REVIEWER

            rig.run(wh, "inbox-3")
            assert len(posts(order)) == 1 and len(posts(other["tiktok_order_id"])) == 1  # nothing twice
            with wh.engine.connect() as conn:
                by_orderops = conn.execute(
                    sa.select(sa.func.count()).where(escalation_reviews.c.reviewed_by == SYSTEM_REVIEWER)
                ).scalar()
            assert by_orderops == 1  # a resolved escalation is not resolved again
    finally:
        rig.stop()
