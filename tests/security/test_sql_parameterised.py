"""Warehouse queries are parameterised: identifiers from the platforms never reach SQL text.

Hostile values ride on real platform data through a whole pipeline run (sandbox, staging, join,
decisions, ledger, the fulfiller's cancel path) on SQLite and on PostgreSQL: an Amazon
fulfillment order id, a Shopify order name, a ShipBob tracking number, a TikTok seller note.
Every statement the warehouse executes is captured: none contains them, the parameters do, every
table is still there, and each value reads back exactly as the platform sent it.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from include.act.ledger import Ledger
from include.cli import trace
from include.store.warehouse import (
    decisions,
    metadata,
    stg_amazon_fulfillment_orders,
    stg_shopify_orders,
    stg_tiktok_orders,
)
from tests.chaos.harness import SandboxRig, audit, chaos_scenario, fresh_warehouse

EVIL_SFO = "1'; DROP TABLE action_ledger; --"
EVIL_NAME = "#2'); DROP TABLE decisions; --"
EVIL_TRACKING = '9400"; DELETE FROM stg_tiktok_orders; --'
EVIL_NOTE = "x' OR '1'='1"
EVIL = (EVIL_SFO, EVIL_NAME, EVIL_TRACKING, EVIL_NOTE)
# what stays recognisable however a driver quotes or a JSON encoder escapes the value
FRAGMENTS = ("DROP TABLE action_ledger", "DROP TABLE decisions", "DELETE FROM stg_tiktok_orders", "OR '1'='1")


def hostile_scenario() -> tuple[dict, dict]:
    doc = chaos_scenario()
    orders = doc["orders"]
    c1 = next(o for o in orders if o["tiktok"]["cancellation"] and (o["amazon_mcf"] or {}).get("status") == "Planning")
    c1["amazon_mcf"]["seller_fulfillment_order_id"] = EVIL_SFO
    named = next(
        o
        for o in orders
        if o is not c1
        and o["fulfiller"] == "amazon_mcf"
        and isinstance(o["shopify"], dict)
        and o["amazon_mcf"]["status"] == "Complete"
        and o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and o["shopify"]["tiktok_id_in"] != "name"
        and not o["tiktok"]["cancellation"]
    )
    named["shopify"]["name"] = EVIL_NAME
    tracked = next(
        o
        for o in orders
        if o["fulfiller"] == "shipbob"
        and o["shipbob"]["status"] == "Fulfilled"
        and o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and not o["tiktok"]["cancellation"]
        and o["shipbob"]["shipments"][0]["tracking"]["carrier"] in ("USPS", "UPS", "FedEx")
    )
    tracked["shipbob"]["shipments"][0]["tracking"]["tracking_number"] = EVIL_TRACKING
    named["tiktok"]["seller_note"] = EVIL_NOTE
    return doc, {"c1": c1, "named": named, "tracked": tracked}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_hostile_ids_round_trip_and_never_reach_sql_text(kind, tmp_path):
    scenario, picked = hostile_scenario()
    rig = SandboxRig(scenario)
    statements: list[str] = []
    bound: list[str] = []

    def flatten(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                flatten(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                flatten(item)
        elif isinstance(value, str):
            bound.append(value)

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)
        flatten(parameters)

    try:
        with fresh_warehouse(kind, tmp_path) as wh:
            sa.event.listen(wh.engine, "before_cursor_execute", capture)
            first = rig.run(wh, "hostile-1")
            writes = len(rig.writes)
            rig.run(wh, "hostile-2")
            # the tables are all still there, holding what the runs wrote
            names = set(sa.inspect(wh.engine).get_table_names())
            assert {t.name for t in metadata.sorted_tables} <= names
            with wh.engine.connect() as conn:
                counts = {
                    t: conn.execute(sa.select(sa.func.count()).select_from(metadata.tables[t])).scalar()
                    for t in ("action_ledger", "decisions", "stg_tiktok_orders")
                }
                sfo_ids = set(
                    conn.execute(sa.select(stg_amazon_fulfillment_orders.c.seller_fulfillment_order_id)).scalars()
                )
                names_staged = set(conn.execute(sa.select(stg_shopify_orders.c.name)).scalars())
                note = conn.execute(
                    sa.select(stg_tiktok_orders.c.raw).where(
                        stg_tiktok_orders.c.tiktok_order_id == picked["named"]["tiktok"]["id"]
                    )
                ).scalar()
                decided = set(conn.execute(sa.select(decisions.c.tiktok_order_id)).scalars())
            ledger = {r["idempotency_key"]: r for r in Ledger(wh).rows("default")}
            chain = "\n".join(trace(wh, picked["c1"]["tiktok"]["id"]))
            assert trace(wh, EVIL_SFO) == [f"no staged TikTok order {EVIL_SFO}"]
            sa.event.remove(wh.engine, "before_cursor_execute", capture)
        checked = audit(rig)
        later_writes = rig.writes[writes:]
    finally:
        rig.stop()

    assert first["state"] in ("succeeded", "attention") and all(counts.values())
    # never in the statements, always in the parameters
    for value, fragment in zip(EVIL, FRAGMENTS, strict=True):
        assert not [s for s in statements if value in s or fragment in s], value
        assert any(fragment in b for b in bound), value
    # each value reads back exactly as the platform sent it
    assert EVIL_SFO in sfo_ids and EVIL_NAME in names_staged and note["seller_note"] == EVIL_NOTE
    assert picked["named"]["tiktok"]["id"] in decided
    cancel = ledger[f"cancel_fulfillment:amazon_mcf:{EVIL_SFO}"]
    assert cancel["state"] == "succeeded" and cancel["request"]["fulfillment_order_id"] == EVIL_SFO
    assert EVIL_SFO in chain
    tracking = ledger[f"post_tracking:{picked['tracked']['tiktok']['id']}:{EVIL_TRACKING}"]
    assert tracking["request"]["tracking_number"] == EVIL_TRACKING
    # TikTok refuses the malformed tracking number itself; the refusal is recorded, not retried
    assert tracking["state"] == "failed" and "tracking_number is invalid" in tracking["detail"]
    # the fulfiller got the cancel for exactly that id, once; the second run wrote nothing
    assert checked.violations == []
    assert [(e.target, w.outcome) for w, e in checked.effects if e.kind == "amazon_cancel"].count((EVIL_SFO, "ok")) == 1
    assert [
        w for w in later_writes if w.outcome == "ok" and "token" not in w.operation and w.operation != "createReport"
    ] == []
    assert json.dumps(cancel["request"])  # stored as JSON, not as SQL
