"""Migrations started by several processes at once on one fresh warehouse all succeed, once."""
from __future__ import annotations

import multiprocessing

import sqlalchemy as sa

from include.warehouse import MIGRATIONS, Warehouse, schema_version


def _migrate(url: str, start, results) -> None:
    start.wait()
    try:
        results.put(("ok", Warehouse(url).migrate()))
    except Exception as exc:   # reported to the test, which names it
        results.put(("error", repr(exc)))


def test_processes_migrating_a_fresh_sqlite_file_at_once_take_turns(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}"
        start, results = spawn.Event(), spawn.Queue()
        workers = [spawn.Process(target=_migrate, args=(url, start, results)) for _ in range(4)]
        for w in workers:
            w.start()
        start.set()
        outcomes = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        assert outcomes == [("ok", len(MIGRATIONS))] * 4, outcomes
        with Warehouse(url).engine.connect() as conn:
            versions = conn.execute(sa.select(schema_version.c.version).order_by(schema_version.c.version)).scalars()
            assert list(versions) == list(range(1, len(MIGRATIONS) + 1))


def test_an_upgrade_adds_the_report_build_time_and_keeps_the_stored_report(warehouse_url):
    from datetime import datetime, timezone

    from include.warehouse import amazon_shipment_reports

    wh = Warehouse(warehouse_url)
    wh.migrate()
    # the schema as version 9 left it, with a report stored
    with wh.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE amazon_shipment_reports DROP COLUMN build_seconds"))
        conn.execute(schema_version.delete().where(schema_version.c.version == len(MIGRATIONS)))
        moment = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
        conn.execute(sa.text("INSERT INTO amazon_shipment_reports (shop, report_id, data_start, data_end, requested_at, "
                             "report_rows) VALUES ('default', 'r-1', :t, :t, :t, '[]')"), {"t": moment})
    assert Warehouse(warehouse_url).migrate() == len(MIGRATIONS)
    with wh.engine.connect() as conn:
        (row,) = conn.execute(sa.select(amazon_shipment_reports)).mappings().all()
    assert row["report_id"] == "r-1" and row["build_seconds"] is None
    wh.engine.dispose()
