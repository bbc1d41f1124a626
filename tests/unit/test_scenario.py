"""Scenario validation and the generator."""

from __future__ import annotations

import collections
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.generate import MIX, generate
from sandbox.scenario import ScenarioError, load_scenario, parse_scenario

DESIGN_EXAMPLE = {
    "now": "2026-11-20T15:00:00Z",
    "orders": [
        {
            "tiktok": {
                "id": "576000000000000001",
                "status": "AWAITING_SHIPMENT",
                "create_time": "2026-11-18T16:00:00Z",
                "rts_sla_time": "2026-11-20T23:59:00Z",
                "shipping_due_time": "2026-11-27T23:59:00Z",
                "tracking_number": "",
                "line_items": [{"id": "577000000000000001", "seller_sku": "OSL-TEE-M"}],
                "cancellation": None,
            },
            "shopify": {"id": 6100000001, "name": "#1001", "tiktok_id_in": "source_identifier", "cancelled": False},
            "fulfiller": "amazon_mcf",
            "amazon_mcf": {
                "seller_fulfillment_order_id": "1001",
                "status": "Complete",
                "shipments": [
                    {
                        "status": "SHIPPED",
                        "packages": [
                            {"package_number": 1, "carrier_code": "UPS", "tracking_number": "1Z999AA10123456784"}
                        ],
                    }
                ],
            },
            "shipbob": None,
        }
    ],
}


def test_design_example_loads():
    scenario = parse_scenario(DESIGN_EXAMPLE)
    assert scenario.now.isoformat() == "2026-11-20T15:00:00+00:00"
    order = scenario.orders[0]
    assert order.tiktok_id == "576000000000000001"
    assert order.fulfiller == "amazon_mcf"
    assert [s["id"] for s in order.shopify] == [6100000001]


def broken(mutate) -> dict:
    doc = copy.deepcopy(DESIGN_EXAMPLE)
    mutate(doc["orders"][0])
    return doc


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda o: o["tiktok"].pop("rts_sla_time"),
            "orders[0] (tiktok id 576000000000000001): tiktok.rts_sla_time: is required",
        ),
        (lambda o: o["tiktok"].update(status="SHIPPED"), "tiktok.status: 'SHIPPED' is not one of"),
        (lambda o: o["tiktok"].update(id="57600A"), "tiktok.id: expected a string of digits"),
        (
            lambda o: o["tiktok"].update(create_time="2026-11-18 16:00"),
            "tiktok.create_time: '2026-11-18 16:00' has no timezone",
        ),
        (lambda o: o["tiktok"].update(line_items=[]), "tiktok.line_items: must not be empty"),
        (
            lambda o: o["tiktok"].update(cancellation={"cancel_id": "1", "status": "PENDING"}),
            "tiktok.cancellation.status: 'PENDING' is not one of",
        ),
        (lambda o: o["shopify"].update(tiktok_id_in="tags"), "shopify.tiktok_id_in: 'tags' is not one of"),
        (lambda o: o["shopify"].update(id="6100000001"), "shopify.id: expected a positive integer"),
        (lambda o: o.update(fulfiller="fedex"), "fulfiller: 'fedex' is not one of"),
        (lambda o: o["amazon_mcf"].update(status="Shipped"), "amazon_mcf.status: 'Shipped' is not one of"),
        (
            lambda o: o["amazon_mcf"]["shipments"][0]["packages"][0].pop("tracking_number"),
            "amazon_mcf.shipments[0].packages[0].tracking_number: is required",
        ),
        (lambda o: o.update(fulfiller=None), "fulfiller: is null but fulfiller data is given"),
        # what the simulators cannot hold: ids beyond the platforms' own, times a datetime overflows from
        (
            lambda o: o["tiktok"].update(id="9" * 5000),
            "orders[0] (tiktok id 99999999999999999999...): tiktok.id: expected at most 20 characters, got 5000",
        ),
        (lambda o: o["tiktok"].update(id="\u00b2"), "tiktok.id: expected a string of digits, got '\u00b2'"),
        (lambda o: o["tiktok"]["line_items"][0].update(id="7" * 21), "tiktok.line_items[0].id: expected at most 20"),
        (
            lambda o: o["tiktok"].update(
                cancellation={
                    "cancel_id": "4" * 21,
                    "status": "CANCELLATION_REQUEST_PENDING",
                    "create_time": "2026-11-20T10:00:00Z",
                    "deadline": "2026-11-22T10:00:00Z",
                }
            ),
            "tiktok.cancellation.cancel_id: expected at most 20",
        ),
        (
            lambda o: o["tiktok"].update(create_time="9999-12-31T23:59:59Z"),
            "tiktok.create_time: '9999-12-31T23:59:59Z' is outside the years 2000-2100",
        ),
        (
            lambda o: o["tiktok"].update(paid_time="1999-12-31T23:59:59Z"),
            "tiktok.paid_time: '1999-12-31T23:59:59Z' is outside",
        ),
        (lambda o: o["shopify"].update(id=2**53), "shopify.id: expected a positive integer up to 9007199254740991"),
        (
            lambda o: o["amazon_mcf"].update(seller_fulfillment_order_id="X" * 41),
            "amazon_mcf.seller_fulfillment_order_id: expected at most 40 characters, got 41",
        ),
        (
            lambda o: o["amazon_mcf"]["shipments"][0]["packages"][0].update(package_number=2**31),
            "amazon_mcf.shipments[0].packages[0].package_number: expected a positive integer up to 2147483647",
        ),
        (
            lambda o: o.update(
                fulfiller="shipbob",
                amazon_mcf=None,
                shipbob={"order_id": 2**31, "reference_id": "6100000001", "status": "Processing"},
            ),
            "shipbob.order_id: expected a positive integer up to 2147483647",
        ),
        (
            lambda o: o.update(
                fulfiller="shipbob",
                amazon_mcf=None,
                shipbob={"order_id": 9000001, "reference_id": "R" * 301, "status": "Processing"},
            ),
            "shipbob.reference_id: expected at most 300 characters, got 301",
        ),
        # a misspelt optional field is named, not quietly left at its default
        (
            lambda o: o["tiktok"].update(shiping_type="TIKTOK"),
            "(tiktok id 576000000000000001): tiktok: unknown field(s) shiping_type",
        ),
        (
            lambda o: o.update(fulfiler="amazon_mcf"),
            "orders[0] (tiktok id 576000000000000001): order: unknown field(s) fulfiler",
        ),
        (lambda o: o["shopify"].update(tag=["vip"], Note="x"), "shopify: unknown field(s) Note, tag"),
        (
            lambda o: o["amazon_mcf"]["shipments"][0]["packages"][0].update(carrier="UPS"),
            "amazon_mcf.shipments[0].packages[0]: unknown field(s) carrier",
        ),
        # the connector styles of the TikTok id: each detail with its place only
        (
            lambda o: o["shopify"].update(tiktok_id_key="Marketplace Ref"),
            "shopify.tiktok_id_key: goes with tiktok_id_in custom_attribute, not source_identifier",
        ),
        (
            lambda o: o["shopify"].update(tiktok_id_in="custom_attribute", tiktok_id_key=""),
            "shopify.tiktok_id_key: must not be empty",
        ),
        (
            lambda o: o["shopify"].update(tiktok_id_in="custom_attribute", tiktok_id_format="TT-{id}"),
            "shopify.tiktok_id_format: goes with tiktok_id_in note or name, not custom_attribute",
        ),
        (
            lambda o: o["shopify"].update(tiktok_id_in="name", tiktok_id_format="TT-id"),
            "shopify.tiktok_id_format: must hold {id} once, got 'TT-id'",
        ),
        (lambda o: o["shopify"].update(tiktok_id_in="note", tiktok_id_format="{id} {id}"), "must hold {id} once"),
        (
            lambda o: o["shopify"].update(tiktok_id_in="note", tiktok_id_fmt="{id}"),
            "shopify: unknown field(s) tiktok_id_fmt",
        ),
    ],
)
def test_bad_field_is_named(mutate, expected):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(broken(mutate))
    assert expected in str(err.value)


def test_duplicate_ids_name_both_orders():
    doc = copy.deepcopy(DESIGN_EXAMPLE)
    twin = copy.deepcopy(doc["orders"][0])
    twin["tiktok"]["line_items"][0]["id"] = "577000000000000002"
    twin["shopify"]["id"] = 6100000002
    twin["amazon_mcf"]["seller_fulfillment_order_id"] = "1002"
    doc["orders"].append(twin)
    with pytest.raises(
        ScenarioError, match=r"orders\[1\].*tiktok.id: '576000000000000001' is already used by orders\[0\]"
    ):
        parse_scenario(doc)


def test_top_level_errors():
    with pytest.raises(ScenarioError, match="now: is required"):
        parse_scenario({"orders": []})
    with pytest.raises(ScenarioError, match="scenario: now: '9999-12-31T23:59:59Z' is outside the years 2000-2100"):
        parse_scenario({"now": "9999-12-31T23:59:59Z", "orders": []})
    with pytest.raises(ScenarioError, match="scenario: unknown field\\(s\\) order"):
        parse_scenario({"now": "2026-11-20T15:00:00Z", "orders": [], "order": []})
    with pytest.raises(ScenarioError, match="orders: expected a list"):
        parse_scenario({"now": "2026-11-20T15:00:00Z"})
    with pytest.raises(ScenarioError, match="expected a JSON object"):
        parse_scenario([])


def test_the_documented_example_loads():
    """docs/architecture.md §6 shows the format: its example is a scenario the sandbox takes."""
    text = (Path(__file__).parents[2] / "docs" / "architecture.md").read_text()
    example = re.search(r"## 6\..*?```json\n(.*?)```", text, re.S).group(1)
    assert parse_scenario(json.loads(example)).orders[0].tiktok_id == "576000000000000001"


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ScenarioError, match="not JSON"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="No such file"):
        load_scenario(tmp_path / "missing.json")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(ScenarioError, match="deep.json: not JSON: nested too deeply"):
        load_scenario(deep)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"now": "2026-11-20T15:00:00Z", "orders": [], "shop": "Caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(ScenarioError, match="latin.json: not JSON: 'utf-8' codec can't decode byte 0xe9"):
        load_scenario(latin)


def test_generator_is_deterministic_and_valid():
    first = generate(500, seed=3)
    assert first == generate(500, seed=3)
    assert first != generate(500, seed=4)
    scenario = parse_scenario(first)
    assert len(scenario.orders) == 500


def test_generator_mix_matches_documented_shares():
    scenario = parse_scenario(generate(5000, seed=11))
    counts = collections.Counter()
    for order in scenario.orders:
        tt = order.tiktok
        if tt.get("cancellation"):
            counts["pending_cancel"] += 1
        if not order.shopify:
            counts["no_shopify"] += 1
        if len(order.shopify) > 1:
            counts["ambiguous"] += 1
        if order.fulfiller:
            counts[order.fulfiller] += 1
        if tt["tracking_number"]:
            counts["tracking_on_tiktok"] += 1
        if tt["status"] == "CANCELLED":
            counts["cancelled"] += 1
    n = len(scenario.orders)
    expected_cancel = MIX["cancel_cancellable"] + MIX["cancel_no_fulfillment"] + MIX["cancel_shipped"]
    assert abs(counts["pending_cancel"] / n - expected_cancel) < 0.015
    assert abs(counts["no_shopify"] / n - MIX["no_shopify_match"]) < 0.01
    assert abs(counts["ambiguous"] / n - MIX["ambiguous_shopify"]) < 0.006
    assert abs(counts["tracking_on_tiktok"] / n - MIX["handled"]) < 0.03
    assert abs(counts["cancelled"] / n - MIX["cancelled"]) < 0.015
    with_fulfiller = counts["amazon_mcf"] + counts["shipbob"]
    assert abs(counts["amazon_mcf"] / with_fulfiller - 0.6) < 0.03
    places = collections.Counter(s["tiktok_id_in"] for o in scenario.orders for s in o.shopify)
    assert set(places) == {"source_identifier", "custom_attribute", "note", "name"}


def test_generated_ids_are_unique_and_shaped():
    scenario = parse_scenario(generate(2000, seed=5))
    ids = [o.tiktok_id for o in scenario.orders]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 18 and i.startswith("576") for i in ids)
    numbers = [
        p["package_number"]
        for o in scenario.orders
        if o.amazon_mcf
        for s in o.amazon_mcf.get("shipments", [])
        for p in s["packages"]
    ]
    assert numbers and len(set(numbers)) == len(numbers)  # Amazon package numbers are unique


def test_cli_generate_and_validate(tmp_path):
    out = tmp_path / "s.json"
    run = subprocess.run(
        [sys.executable, "-m", "sandbox", "generate", "--orders", "25", "--seed", "9", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote 25 orders" in run.stdout
    assert len(json.loads(out.read_text())["orders"]) == 25
    ok = subprocess.run([sys.executable, "-m", "sandbox", "validate", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok: 25 orders" in ok.stdout
    doc = json.loads(out.read_text())
    doc["orders"][3]["tiktok"]["status"] = "LOST"
    out.write_text(json.dumps(doc))
    bad = subprocess.run([sys.executable, "-m", "sandbox", "validate", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "orders[3]" in bad.stderr and "tiktok.status: 'LOST'" in bad.stderr
    out.write_text("[" * 100_000)
    deep = subprocess.run([sys.executable, "-m", "sandbox", "validate", str(out)], capture_output=True, text=True)
    assert (deep.returncode, deep.stderr) == (2, f"error: scenario file {out}: not JSON: nested too deeply\n")


def test_a_step_done_by_now_happened_in_scenario_time_never_at_the_frozen_clock():
    from datetime import datetime, timedelta, timezone

    from sandbox.scenario import reached_by

    now = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
    start = now - timedelta(hours=20)
    assert reached_by(start, timedelta(hours=12), now) == start + timedelta(hours=12)  # on the platform's timeline
    assert reached_by(start, timedelta(hours=30), now) == now - timedelta(hours=10)  # quicker: halfway to now
    assert reached_by(now, timedelta(hours=1), now) == now  # started at the clock: nothing before it


def test_shipments_a_scenario_gives_as_shipped_are_stamped_when_they_shipped_not_at_its_clock():
    """The frozen clock once stamped every shipped ShipBob shipment (and Amazon's most recent ones) at
    the scenario's `now`: their hours from shipment to tracking all read 0 in the reports."""
    from sandbox.core import Sandbox, Settings

    sandbox = Sandbox(parse_scenario(generate(90, seed=11)), Settings(clock_rate=0))
    now = sandbox.scenario.now
    shipbob, amazon = sandbox.platforms["shipbob"], sandbox.platforms["amazon_mcf"]
    shipped = [
        (shipbob.orders[s.order_id].created, s.entered)
        for s in shipbob.shipments.values()
        if s.tracking and s.status == "Completed"
    ] + [(o.received, s.ship_date) for o in amazon.orders.values() for s in o.shipments if s.status == "SHIPPED"]
    assert len(shipped) > 20
    assert all(start <= moment < now for start, moment in shipped), [m for _, m in shipped if m >= now]
    assert len({moment for _, moment in shipped}) == len(shipped)  # no pile-up at one moment
