"""The platforms' documented limits, honoured by whole runs against the sandbox.

- An order on TikTok's own label (shipping_type TIKTOK) takes no seller tracking: none is posted,
  and the decision says why.
- Amazon's own carrier code (AMZN_US) is posted as the TikTok provider it is, where the order's
  delivery option offers it, and escalated with the code named where it does not.
- Status values compare without regard to case: answers whose statuses come back in lower case
  lead to the same decisions and the same effects as the platforms' own spelling.
"""

from __future__ import annotations

import copy
import re

import pytest
import sqlalchemy as sa

from include.store.warehouse import action_ledger, decisions
from sandbox.tiktok import provider, shipped_with
from tests.chaos.harness import SandboxRig, audit, chaos_scenario, fresh_warehouse

SCENARIO = chaos_scenario()


def shipped_by_amazon(o: dict, delivery: str = "STANDARD") -> bool:
    mcf = o["amazon_mcf"] or {}
    return (
        o["fulfiller"] == "amazon_mcf"
        and mcf.get("status") == "Complete"
        and not o["tiktok"]["cancellation"]
        and o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and isinstance(o["shopify"], dict)
        and o["tiktok"].get("delivery_option", "STANDARD") == delivery
        and o["tiktok"].get("shipping_type", "SELLER") == "SELLER"
        and len(mcf["shipments"]) == 1
        and len(mcf["shipments"][0]["packages"]) == 1
    )


def limits_scenario() -> tuple[dict, dict[str, str]]:
    """The chaos scenario with one order on TikTok's label and two shipped with Amazon's own code."""
    doc = copy.deepcopy(SCENARIO)
    label, standard, express = [o for o in doc["orders"] if shipped_by_amazon(o)][:3]
    label["tiktok"]["shipping_type"] = "TIKTOK"
    express["tiktok"]["delivery_option"] = "EXPRESS"  # its carriers: USPS, UPS, FedEx, DHL Express
    for o in (standard, express):
        o["amazon_mcf"]["shipments"][0]["packages"][0]["carrier_code"] = "AMZN_US"
    return doc, {
        "label": label["tiktok"]["id"],
        "standard": standard["tiktok"]["id"],
        "express": express["tiktok"]["id"],
    }


@pytest.fixture(scope="module")
def rig():
    rig = SandboxRig(SCENARIO)
    yield rig
    rig.stop()


def posted(rig) -> dict[str, dict]:
    """TikTok order -> the tracking and provider of its successful mark-as-shipped write."""
    return {
        re.search(r"/orders/(\d+)/packages", w.path).group(1): shipped_with(w.body)
        for w in rig.writes
        if w.platform == "tiktok" and w.operation == "mark_package_as_shipped" and w.outcome == "ok"
    }


def test_tiktok_label_and_amazon_carrier_codes_in_a_whole_run(rig, tmp_path):
    doc, ids = limits_scenario()
    rig.load(doc)
    with fresh_warehouse("sqlite", tmp_path) as wh:
        summary = rig.run(wh, "limits-1")
        with wh.engine.connect() as conn:
            decided = {r.tiktok_order_id: (r.rule, r.reason) for r in conn.execute(sa.select(decisions))}
            escalated = {
                r.tiktok_order_id: r.request
                for r in conn.execute(sa.select(action_ledger).where(action_ledger.c.kind == "escalate"))
            }
    assert summary["state"] == "succeeded", summary
    assert audit(rig).violations == []
    sent = posted(rig)
    # TikTok's label: TikTok's scan brings the tracking, orderops posts none and says so
    assert ids["label"] not in sent and ids["label"] not in escalated
    assert "shipping_type TIKTOK" in decided[ids["label"]][1]
    # AMZN_US is Amazon Logistics, which the standard option offers and the express one does not
    amazon_logistics = provider("Amazon Logistics")["id"]
    assert decided[ids["standard"]][0] == "T1"
    assert sent[ids["standard"]]["shipping_provider_id"] == amazon_logistics
    tiktok_state = {o["id"]: o for shop in rig.state("tiktok")["shops"] for o in shop["orders"]}
    assert tiktok_state[ids["standard"]]["shipping_provider"] == "Amazon Logistics"
    assert ids["express"] not in sent
    assert decided[ids["express"]][0] == "T2"
    assert escalated[ids["express"]]["reason_code"] == "carrier_unmapped"
    assert "AMZN_US" in decided[ids["express"]][1]


STATUS_KEYS = {
    "status",
    "cancel_status",
    "fulfillment_type",
    "shipping_type",
    "fulfillmentOrderStatus",
    "fulfillmentShipmentStatus",
}


def lower_case_statuses(request, data):
    """Every status the pipeline compares, as a platform might spell it: in lower case."""

    def lower(value):
        if isinstance(value, dict):
            return {k: v.lower() if k in STATUS_KEYS and isinstance(v, str) else lower(v) for k, v in value.items()}
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    return lower(data)


def test_statuses_in_lower_case_decide_and_act_as_the_platforms_own_spelling(rig, tmp_path):
    """Both runs go as far as a whole saga on each fulfiller (cancel, verify, refund, approve)."""
    scenario = chaos_scenario(shipbob_c1=1)
    outcomes = []
    for name, rewrite in (("as-sent", None), ("lower-case", lower_case_statuses)):
        rig.load(scenario)
        (tmp_path / name).mkdir()
        with fresh_warehouse("sqlite", tmp_path / name) as wh:
            summary = rig.run(wh, f"case-{name}", rewrite=rewrite)
            with wh.engine.connect() as conn:
                rules = {r.tiktok_order_id: r.rule for r in conn.execute(sa.select(decisions))}
        checked = audit(rig)
        assert checked.violations == []
        outcomes.append((summary["state"], rules, checked.done_effects()))
    (state, rules, effects), (lower_state, lower_rules, lower_effects) = outcomes
    assert state == lower_state == "succeeded"
    assert set(rules.values()) >= {"T1", "N1", "C1", "C3"}  # every kind of branch is compared
    assert lower_rules == rules
    assert lower_effects == effects
    assert {kind for kind, _, _ in effects} >= {
        "post_tracking",
        "amazon_cancel",
        "shipbob_cancel",
        "shopify_cancel",
        "approve_cancellation",
    }
