"""A shop's TikTok-id setting in whole runs against the sandbox over real HTTP: the simulated
connectors write the id under a key orderops does not know and behind a name prefix ending in a
digit; with the default setting those orders have no Shopify match, and once the shop's Shopify
connection names the key and the prefix, the next (sweeping) run joins them, each link naming
the rule that found it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.store.warehouse import latest_rows, order_links
from tests.chaos.harness import SandboxRig, fresh_warehouse
from tests.support import NOW, iso
from tests.support import tiktok_order_id as tid

pytestmark = pytest.mark.slow

SETTING = {"tiktok_order_id": {"attribute_keys": ["Marketplace Ref"], "name_prefixes": ["TT1"]}}


def order(n: int, **style) -> dict:
    """An order the Amazon fulfillment order files under its Shopify id, its TikTok id where `style` says."""
    return {
        "tiktok": {
            "id": tid(n),
            "status": "AWAITING_SHIPMENT",
            "create_time": iso(NOW - timedelta(days=2)),
            "rts_sla_time": iso(NOW + timedelta(days=1)),
            "shipping_due_time": iso(NOW + timedelta(days=5)),
            "tracking_number": "",
            "cancellation": None,
            "line_items": [{"id": str(577000000000000000 + n), "seller_sku": "OSL-TEE-M"}],
        },
        "shopify": {"id": 6100000000 + n, "name": f"#{1000 + n}", "cancelled": False, **style},
        "fulfiller": "amazon_mcf",
        "amazon_mcf": {
            "seller_fulfillment_order_id": str(6100000000 + n),
            "status": "Processing",
            "received_time": iso(NOW - timedelta(days=1)),
            "shipments": [],
        },
        "shipbob": None,
    }


SCENARIO = {
    "now": iso(NOW),
    "orders": [
        order(1, tiktok_id_in="custom_attribute", tiktok_id_key="Marketplace Ref"),
        order(2, tiktok_id_in="custom_attribute", tiktok_id_key="Marketplace Ref"),
        order(3, tiktok_id_in="name", tiktok_id_format="TT1{id}"),
        order(4, tiktok_id_in="note", tiktok_id_format="Imported from TikTok, ref {id}"),
        order(5, tiktok_id_in="custom_attribute"),
    ],
}


def links(wh) -> dict[str, tuple]:
    """Each order's current link (its latest: a run records a link only when it changed)."""
    with wh.engine.connect() as conn:
        return {
            order: (r["shopify_order_ids"], r["match_rule"], r["link_problem"])
            for order, r in latest_rows(conn, order_links, "default").items()
        }


def test_a_shop_naming_its_connectors_key_and_prefix_joins_what_the_default_leaves_unmatched(tmp_path):
    rig = SandboxRig(SCENARIO)
    try:
        # what the simulated connectors wrote, as Shopify serves it
        served = {o["legacy_id"]: o for o in rig.state("shopify")["orders"]}
        assert served[6100000001]["custom_attributes"] == [{"key": "Marketplace Ref", "value": tid(1)}]
        assert served[6100000003]["name"] == f"TT1{tid(3)}"
        assert served[6100000004]["note"] == f"Imported from TikTok, ref {tid(4)}"
        with fresh_warehouse("sqlite", tmp_path) as wh:
            rig.run(wh, "default-setting")
            before = links(wh)
            assert {n: before[tid(n)][2] for n in (1, 2, 3)} == {n: "no_shopify_match" for n in (1, 2, 3)}
            assert before[tid(4)] == (["6100000004"], "note:tiktok_label", None)
            assert before[tid(5)] == (["6100000005"], "custom_attribute:tiktok order id", None)

            rig.run(wh, "shop-setting", extras={"shopify": SETTING})
            after = links(wh)
            assert after == {
                tid(1): (["6100000001"], "custom_attribute:marketplace ref", None),
                tid(2): (["6100000002"], "custom_attribute:marketplace ref", None),
                tid(3): (["6100000003"], "name_prefix:TT1", None),
                tid(4): (["6100000004"], "note:tiktok_label", None),
                tid(5): (["6100000005"], "custom_attribute:tiktok order id", None),
            }
    finally:
        rig.stop()
