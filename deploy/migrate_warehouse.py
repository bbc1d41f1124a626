"""Create or upgrade the orderops warehouse schema ahead of the first run of a new version.

Every run's `prepare_run` does the same (`Warehouse.migrate`); running it once at deploy time keeps
that work, and the first DDL on an empty database, out of concurrently starting shop runs.

    python -m deploy.migrate_warehouse postgresql+psycopg2://user:pass@host:5432/orderops_warehouse
    ORDEROPS_WAREHOUSE_URL=... python -m deploy.migrate_warehouse
"""

from __future__ import annotations

import argparse
import os
import sys


def migrate(url: str) -> tuple[str | None, str]:
    """(revision before, revision after) of the warehouse schema at `url`; None before: empty."""
    from include.store.warehouse import Warehouse, schema_revision

    wh = Warehouse(url)
    try:
        with wh.engine.connect() as conn:
            before = schema_revision(conn)
        return before, wh.migrate()
    finally:
        wh.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.migrate_warehouse",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        nargs="?",
        default=os.environ.get("ORDEROPS_WAREHOUSE_URL"),
        help="SQLAlchemy URL of the warehouse (default: $ORDEROPS_WAREHOUSE_URL)",
    )
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give the warehouse URL or set ORDEROPS_WAREHOUSE_URL")
    before, after = migrate(args.url)
    print(
        f"warehouse schema: revision {before or '(empty)'} -> {after}"
        if after != before
        else f"warehouse schema: revision {after}, up to date"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
