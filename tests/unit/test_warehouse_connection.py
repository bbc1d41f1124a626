"""The warehouse connection becomes a SQLAlchemy URL through the Postgres provider's hook."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from include.airflow.glue import warehouse_url
from include.store.warehouse import VERSION_TABLE, Warehouse
from tests.conftest import PG_BASE


def test_a_postgres_connection_with_a_schema_reaches_the_real_database(monkeypatch):
    schema = f"orderops_conn_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        monkeypatch.setenv(
            "AIRFLOW_CONN_WH_TEST",
            json.dumps(
                {
                    "conn_type": "postgres",
                    "host": "127.0.0.1",
                    "port": 5432,
                    "login": "postgres",
                    "password": "p@ss:word/",
                    "schema": "test",
                    "extra": {"schema": schema},
                }
            ),
        )
        url = warehouse_url("wh_test")
        parsed = sa.engine.make_url(url)
        assert (parsed.drivername, parsed.host, parsed.port, parsed.database) == (
            "postgresql+psycopg2",
            "127.0.0.1",
            5432,
            "test",
        )
        assert parsed.password == "p@ss:word/" and parsed.query["options"] == f"-csearch_path={schema}"
        wh = Warehouse(url)  # trust auth: the password is carried, not checked
        wh.migrate()
        with admin.connect() as conn:
            assert conn.execute(sa.text(f"SELECT count(*) FROM {schema}.{VERSION_TABLE}")).scalar() > 0
        wh.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def test_sqlite_and_unknown_connection_types(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_WH_LITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    assert warehouse_url("wh_lite") == f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_WH_ODD", json.dumps({"conn_type": "mysql", "host": "db"}))
    with pytest.raises(ValueError, match="wh_odd.*'mysql' is not sqlite or postgres"):
        warehouse_url("wh_odd")
