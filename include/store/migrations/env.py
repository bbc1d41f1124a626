"""Alembic's environment for the orderops warehouse (the tables of `include.store.warehouse`).

`Warehouse.migrate` runs it on its own connection, holding the migration lock
(`config.attributes["connection"]`); the alembic command line (`alembic.ini` at the repository
root) connects to $ORDEROPS_WAREHOUSE_URL, for writing a new revision or reading the history.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from include.store.warehouse import VERSION_TABLE, metadata


def run(connection: sa.Connection) -> None:
    # SQLite alters a table by copying it: batch mode does that for the revisions that need it
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    # revisions look at the database they upgrade (a column a later release may have added)
    raise SystemExit("orderops migrations run against a database: drop --sql")
connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = os.environ.get("ORDEROPS_WAREHOUSE_URL")
    if not url:
        raise SystemExit("set ORDEROPS_WAREHOUSE_URL to the warehouse's SQLAlchemy URL")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            run(conn)
    finally:
        engine.dispose()
