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
