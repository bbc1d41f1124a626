"""Warehouse tables in lineage are named as the OpenLineage naming spec names a PostgreSQL table when
the connection can be read at parse time, else under orderops's own namespace."""
from __future__ import annotations

import json

from include.lineage import WAREHOUSE_NAMESPACE, tables


def names(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_a_postgres_connection_in_the_environment_names_tables_by_host_database_and_schema(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SHOP_B_WAREHOUSE", json.dumps({
        "conn_type": "postgres", "host": "db.internal", "port": 6432, "schema": "orders",
        "login": "orderops", "password": "secret-pw", "extra": {"schema": "shop_b"}}))
    assert names(tables("decisions", "sla_daily", conn_id="shop_b_warehouse")) == [
        ("postgres://db.internal:6432", "orders.shop_b.decisions"), ("postgres://db.internal:6432", "orders.shop_b.sla_daily")]


def test_a_uri_connection_without_schema_or_port_takes_postgres_defaults(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", "postgres://orderops:pw@db.internal/orders")
    assert names(tables("runs")) == [("postgres://db.internal:5432", "orders.public.runs")]


def test_sqlite_or_a_connection_not_in_the_environment_stays_in_the_orderops_namespace(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", raising=False)
    assert names(tables("runs")) == [(WAREHOUSE_NAMESPACE, "runs")]
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": "/data/wh.db"}))
    assert names(tables("runs")) == [(WAREHOUSE_NAMESPACE, "runs")]
