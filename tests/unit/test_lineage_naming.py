"""Warehouse tables in lineage are named as the OpenLineage naming spec names a PostgreSQL table: at
parse time when the connection is in the environment, else by the running task that read it."""

from __future__ import annotations

import json

from include.airflow.lineage import WAREHOUSE_NAMESPACE, tables


def names(datasets) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_a_postgres_connection_in_the_environment_names_tables_by_host_database_and_schema(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_SHOP_B_WAREHOUSE",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": "db.internal",
                "port": 6432,
                "schema": "orders",
                "login": "orderops",
                "password": "secret-pw",
                "extra": {"schema": "shop_b"},
            }
        ),
    )
    assert names(tables("decisions", "sla_daily", conn_id="shop_b_warehouse")) == [
        ("postgres://db.internal:6432", "orders.shop_b.decisions"),
        ("postgres://db.internal:6432", "orders.shop_b.sla_daily"),
    ]


def test_a_uri_connection_without_schema_or_port_takes_postgres_defaults(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", "postgres://orderops:pw@db.internal/orders")
    assert names(tables("runs")) == [("postgres://db.internal:5432", "orders.public.runs")]


def test_sqlite_or_a_connection_not_in_the_environment_stays_in_the_orderops_namespace(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", raising=False)
    assert names(tables("runs")) == [(WAREHOUSE_NAMESPACE, "runs")]
    monkeypatch.setenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": "/data/wh.db"}))
    assert names(tables("runs")) == [(WAREHOUSE_NAMESPACE, "runs")]


def test_a_running_task_renames_its_tables_after_the_connection_it_read(monkeypatch):
    """A connection the DAG processor could not read (metadata database, secrets backend): the task
    reads it and its end-of-task lineage names the PostgreSQL tables; endpoints and Assets are kept."""
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, Connection

    from include.airflow.lineage import assets, endpoints, name_tables

    monkeypatch.delenv("AIRFLOW_CONN_ORDEROPS_WAREHOUSE", raising=False)
    with DAG("lineage_probe", schedule=None):
        task = EmptyOperator(
            task_id="join_and_decide",
            inlets=[*tables("stg_tiktok_orders"), *endpoints("tiktok_providers")],
            outlets=[assets()["decisions"], *tables("decisions")],
        )
    assert names(task.outlets[1:]) == [(WAREHOUSE_NAMESPACE, "decisions")]
    name_tables(
        task,
        Connection(
            conn_id="orderops_warehouse",
            conn_type="postgres",
            host="db.internal",
            schema="orders",
            extra=json.dumps({"schema": "shop_a"}),
        ),
    )
    assert names(task.inlets) == [
        ("postgres://db.internal:5432", "orders.shop_a.stg_tiktok_orders"),
        ("https://open-api.tiktokglobalshop.com", endpoints("tiktok_providers")[0].name),
    ]
    assert task.outlets[0] == assets()["decisions"]
    # what the OpenLineage listener sends at the task's end
    from airflow.providers.openlineage.extractors import OperatorLineage

    lineage = OperatorLineage()
    ExtractorManager().extract_inlets_and_outlets(lineage, task)
    assert ("postgres://db.internal:5432", "orders.shop_a.decisions") in names(lineage.outputs)
    assert ("postgres://db.internal:5432", "orders.shop_a.stg_tiktok_orders") in names(lineage.inputs)
    # another shop's warehouse renames them again; the embedded SQLite warehouse leaves its own namespace
    name_tables(task, Connection(conn_id="w2", conn_type="postgres", host="db2", port=6432, schema="b"))
    assert names(task.outlets[1:]) == [("postgres://db2:6432", "b.public.decisions")]
    name_tables(task, None)
    assert names(task.outlets[1:]) == [(WAREHOUSE_NAMESPACE, "decisions")]
