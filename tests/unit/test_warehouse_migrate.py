"""The warehouse's alembic revisions: they build exactly the tables the code declares, on SQLite and
PostgreSQL; a warehouse the hand-made version steps kept is adopted with its data; processes
migrating one fresh warehouse at once take turns."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from include.store.warehouse import (
    HAND_VERSIONS,
    VERSION_TABLE,
    Warehouse,
    _alembic_config,
    action_ledger,
    amazon_shipment_reports,
    metadata,
    schema_head,
    schema_revision,
    validation_results,
)

MOMENT = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)


def drift(conn: sa.Connection) -> list:
    """What differs between the database and the tables the code declares (nothing, when right)."""
    return compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}), metadata)


def to_revision(conn: sa.Connection, revision: str, how=command.upgrade) -> None:
    config = _alembic_config()
    config.attributes["connection"] = conn
    how(config, revision)


def hand_made(conn: sa.Connection, version: int) -> None:
    """The record the hand-made steps kept: versions 1..`version`, and no alembic table."""
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
    conn.execute(sa.text(f"CREATE TABLE {HAND_VERSIONS} (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"))
    for v in range(1, version + 1):
        conn.execute(sa.text(f"INSERT INTO {HAND_VERSIONS} VALUES (:v, :t)"), {"v": v, "t": MOMENT})


def test_the_revisions_build_exactly_the_declared_tables(warehouse_url):
    wh = Warehouse(warehouse_url)
    assert wh.migrate() == schema_head()
    with wh.engine.connect() as conn:
        assert drift(conn) == []
        assert schema_revision(conn) == schema_head()
    assert wh.migrate() == schema_head()  # a second run finds nothing to do
    wh.dispose()


def test_a_warehouse_the_hand_made_steps_kept_is_adopted_with_its_data(warehouse_url):
    wh = Warehouse(warehouse_url)
    # what the last hand-made release left: the tables as version 10 built them, versions 1-10
    with wh.engine.begin() as conn:
        to_revision(conn, "0010")
        hand_made(conn, 10)
        conn.execute(
            action_ledger.insert().values(
                shop="default",
                idempotency_key="post_tracking:576001",
                kind="post_tracking",
                target="576001",
                tiktok_order_id="576001",
                rule="R1",
                decision_run_id="run-1",
                request={"tracking": "1Z"},
                state="succeeded",
                attempts=1,
                created_at=MOMENT,
                updated_at=MOMENT,
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO validation_results (shop, run_id, platform, success, rows, failures, "
                "checked_at) VALUES ('default', 'run-1', 'shipbob_orders', :f, 3, '[]', :t)"
            ),
            {"f": False, "t": MOMENT},
        )
        assert schema_revision(conn) == "0010"
    assert wh.migrate() == schema_head()
    with wh.engine.connect() as conn:
        assert not sa.inspect(conn).has_table(HAND_VERSIONS)
        assert drift(conn) == []
        (row,) = conn.execute(sa.select(action_ledger)).mappings().all()
        (checked,) = conn.execute(sa.select(validation_results)).mappings().all()
    assert (row["idempotency_key"], row["state"], row["request"]) == (
        "post_tracking:576001",
        "succeeded",
        {"tracking": "1Z"},
    )
    assert (checked["batch"], checked["success"], checked["rows"]) == ("shipbob_orders", False, 3)  # 0012 renamed it
    wh.dispose()


def test_hand_made_version_9_gains_the_report_build_time_and_keeps_the_stored_report(warehouse_url):
    wh = Warehouse(warehouse_url)
    with wh.engine.begin() as conn:
        to_revision(conn, "0009")  # the tables as version 9 built them
        hand_made(conn, 9)
        conn.execute(
            sa.text(
                "INSERT INTO amazon_shipment_reports (shop, report_id, data_start, data_end, requested_at, "
                "report_rows) VALUES ('default', 'r-1', :t, :t, :t, '[]')"
            ),
            {"t": MOMENT},
        )
    assert wh.migrate() == schema_head()
    with wh.engine.connect() as conn:
        (row,) = conn.execute(sa.select(amazon_shipment_reports)).mappings().all()
        assert drift(conn) == []
    assert row["report_id"] == "r-1" and row["build_seconds"] is None
    wh.dispose()


def test_revision_14_fills_the_scan_clock_the_tracking_guard_and_the_alerts_deadline_from_what_is_kept(
    warehouse_url,
):
    """Rows kept before: a staged order's In Transit moment and warehouse come from its raw order, a
    post's tracking number from its request, an at-risk alert was for the ship-by time."""
    from include.store.warehouse import at_risk_alerts, stg_tiktok_orders

    wh = Warehouse(warehouse_url)
    with wh.engine.begin() as conn:
        to_revision(conn, "0013")
        moving = int(MOMENT.timestamp())
        for order_id, raw in (("576A", {"collection_time": moving, "warehouse_id": "7201"}), ("576B", {})):
            conn.execute(
                sa.text(
                    "INSERT INTO stg_tiktok_orders (shop, tiktok_order_id, status, fulfillment_type, create_time, "
                    "update_time, tracking_number, shipping_provider_id, is_buyer_request_cancel, line_items, raw, "
                    "snapshot_run_id, extracted_at) VALUES ('default', :id, 'IN_TRANSIT', 'FULFILLMENT_BY_SELLER', "
                    ":t, :t, '1ZA', 'p', false, '[]', :raw, 'r', :t)"
                ),
                {"id": order_id, "t": MOMENT, "raw": json.dumps(raw)},
            )
        conn.execute(
            sa.text(
                "INSERT INTO action_ledger (shop, idempotency_key, kind, target, tiktok_order_id, rule, "
                "decision_run_id, request, state, attempts, created_at, updated_at) VALUES ('default', "
                "'post_tracking:576A:1ZA', 'post_tracking', 't', '576A', 'T1', 'r', :req, 'succeeded', 1, :t, :t)"
            ),
            {"req": json.dumps({"tracking_number": "1ZA"}), "t": MOMENT},
        )
        conn.execute(
            sa.text(
                "INSERT INTO at_risk_alerts (shop, tiktok_order_id, threshold_hours, run_id, alerted_at, sent) "
                "VALUES ('default', '576B', 12, 'r', :t, true)"
            ),
            {"t": MOMENT},
        )
    assert wh.migrate() == schema_head()
    with wh.engine.connect() as conn:
        assert drift(conn) == []
        orders = {r.tiktok_order_id: r for r in conn.execute(sa.select(stg_tiktok_orders))}
        (post,) = conn.execute(sa.select(action_ledger)).all()
        (alert,) = conn.execute(sa.select(at_risk_alerts)).all()
    assert orders["576A"].collection_time.replace(tzinfo=timezone.utc) == MOMENT
    assert (orders["576A"].warehouse_id, orders["576B"].warehouse_id, orders["576B"].collection_time) == (
        "7201",
        "",
        None,
    )
    assert post.tracking_number == "1ZA" and (alert.deadline, alert.threshold_hours) == ("ship_by", 12)
    wh.dispose()


def test_revision_18_dates_each_kept_link_by_its_decision_and_the_latest_row_is_the_current_one(warehouse_url):
    """Links kept before carry their decision's moment (a link without one, its run's start), so an
    order's latest link and decision are the current ones across the runs that wrote every order."""
    from include.store.warehouse import decisions, latest_rows, order_links

    wh = Warehouse(warehouse_url)
    later = MOMENT.replace(hour=16)
    with wh.engine.begin() as conn:
        to_revision(conn, "0017")
        for run_id, started in (("r-early", MOMENT), ("r-late", later)):
            conn.execute(
                sa.text(
                    "INSERT INTO runs (shop, run_id, dag_id, started_at, state, dry_run) "
                    "VALUES ('default', :r, 'orderops_sla', :t, 'succeeded', false)"
                ),
                {"r": run_id, "t": started},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO order_links (shop, run_id, tiktok_order_id, shopify_order_ids, fulfiller) "
                    "VALUES ('default', :r, '576A', '[]', :f)"
                ),
                {"r": run_id, "f": run_id},
            )
        conn.execute(
            sa.text(
                "INSERT INTO decisions (shop, run_id, tiktok_order_id, rule, reason, actions, inputs, "
                "policy_version, decided_at) VALUES ('default', 'r-late', '576A', 'T1', 'x', '[]', '{}', 'p', :t)"
            ),
            {"t": later.replace(minute=5)},
        )
    assert wh.migrate() == schema_head()
    with wh.engine.connect() as conn:
        assert drift(conn) == []
        dated = dict(conn.execute(sa.select(order_links.c.run_id, order_links.c.decided_at)).all())
        link = latest_rows(conn, order_links, "default")["576A"]
        decision = latest_rows(conn, decisions, "default", ["576A"])["576A"]
    assert {r: at.replace(tzinfo=timezone.utc) for r, at in dated.items()} == {
        "r-early": MOMENT,
        "r-late": later.replace(minute=5),
    }
    assert (link["fulfiller"], decision["run_id"]) == ("r-late", "r-late")
    wh.dispose()


def test_a_newer_orderops_schema_is_left_as_it_is(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    with wh.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    assert wh.migrate() == "9999"  # rolled back: revisions only add, so the tables still serve
    wh.dispose()


def test_every_revision_downgrades_and_upgrades_again(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    wh.migrate()
    with wh.engine.begin() as conn:
        to_revision(conn, "base", command.downgrade)
        assert set(sa.inspect(conn).get_table_names()) == {VERSION_TABLE}
        to_revision(conn, "head")
        assert drift(conn) == []
    wh.dispose()


def _migrate(url: str, start, results) -> None:
    start.wait()
    try:
        results.put(("ok", Warehouse(url).migrate()))
    except Exception as exc:  # reported to the test, which names it
        results.put(("error", repr(exc)))


@pytest.mark.parametrize("attempt", range(3))
def test_processes_migrating_a_fresh_sqlite_file_at_once_take_turns(tmp_path, attempt):
    spawn = multiprocessing.get_context("spawn")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    start, results = spawn.Event(), spawn.Queue()
    workers = [spawn.Process(target=_migrate, args=(url, start, results)) for _ in range(4)]
    for w in workers:
        w.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert outcomes == [("ok", schema_head())] * 4, outcomes
    with Warehouse(url).engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [schema_head()]
        assert drift(conn) == []


def test_the_deploy_command_says_what_it_did(tmp_path, capsys):
    from deploy.migrate_warehouse import main

    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert main([url]) == 0 and main([url]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first == f"warehouse schema: revision (empty) -> {schema_head()}"
    assert second == f"warehouse schema: revision {schema_head()}, up to date"
