"""OpenLineage datasets for the tasks: the platform endpoints they read or write, the tables they touch.

Endpoint datasets are named after each platform's production API host (the connection may point
elsewhere, e.g. at the sandbox, but the lineage names the contract: TikTok paths at their current
version). Warehouse tables are named as the OpenLineage naming spec names a PostgreSQL table,
namespace `postgres://host:port`, name `database.schema.table`, so a lineage backend joins them with
other jobs' datasets of the same database. The DAG processor names them so when it can read the
warehouse connection without a database call (an `AIRFLOW_CONN_*` environment variable); otherwise
(a connection kept in the metadata database or a secrets backend) they are declared in the
`orderops-warehouse` namespace and each task renames its own when it reads the connection at run
time (`name_tables`), before the lineage of its end is sent. SQLite tables keep that namespace.
"""

from __future__ import annotations

import functools
import os

from orderops_provider.tiktok_versions import path as tiktok_path


def assets():
    """The Airflow Assets the pipeline produces and the report consumes (one definition for both DAGs)."""
    from airflow.sdk import Asset

    return {
        "run_summary": Asset(name="orderops_run_summary", uri="orderops://warehouse/runs"),
        "decisions": Asset(name="orderops_decisions", uri="orderops://warehouse/decisions"),
        "ledger": Asset(name="orderops_action_ledger", uri="orderops://warehouse/action_ledger"),
        "sla_daily": Asset(name="orderops_sla_daily", uri="orderops://warehouse/sla_daily"),
    }


API_HOSTS = {
    "tiktok": "https://open-api.tiktokglobalshop.com",
    "shopify": "https://shop.myshopify.com",
    "amazon_mcf": "https://sellingpartnerapi-na.amazon.com",
    "shipbob": "https://api.shipbob.com",
}
WAREHOUSE_NAMESPACE = "orderops-warehouse"

ENDPOINTS = {
    "tiktok_orders": ("tiktok", tiktok_path("search_orders")),
    "tiktok_cancellations": ("tiktok", tiktok_path("search_cancellations")),
    "tiktok_providers": ("tiktok", tiktok_path("shipping_providers")),
    "tiktok_packages": ("tiktok", tiktok_path("mark_package_shipped")),
    "tiktok_approve": ("tiktok", tiktok_path("approve_cancellation")),
    "tiktok_reject": ("tiktok", tiktok_path("reject_cancellation")),
    "shopify_orders": ("shopify", "/admin/api/{version}/graphql.json#orders"),
    "shopify_order_update": ("shopify", "/admin/api/{version}/graphql.json#orderUpdate,tagsAdd"),
    "shopify_order_cancel": ("shopify", "/admin/api/{version}/graphql.json#orderCancel"),
    "amazon_orders": ("amazon_mcf", "/fba/outbound/2020-07-01/fulfillmentOrders"),
    "amazon_shipments_report": (
        "amazon_mcf",
        "/reports/2021-06-30/reports#GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
    ),
    "amazon_cancel": ("amazon_mcf", "/fba/outbound/2020-07-01/fulfillmentOrders/{id}/cancel"),
    "shipbob_orders": ("shipbob", "/{version}/order"),
    "shipbob_cancel": ("shipbob", "/{version}/order/{id}:cancel"),
}


def endpoints(*names: str) -> list:
    from openlineage.client.event_v2 import Dataset

    return [Dataset(namespace=API_HOSTS[ENDPOINTS[n][0]], name=ENDPOINTS[n][1]) for n in names]


def warehouse_naming(conn_id: str) -> tuple[str, str]:
    """(namespace, name prefix) of the warehouse's tables for lineage; read at DAG parse time, so
    only from the environment (see the module's docstring)."""
    return _naming(conn_id, os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}", "").strip())


@functools.lru_cache(maxsize=64)
def _naming(conn_id: str, value: str) -> tuple[str, str]:
    # a DAG names its tables in many places: the connection is parsed once per value, not per task
    if not value:
        return WAREHOUSE_NAMESPACE, ""
    from airflow.sdk import Connection

    return naming_of(
        Connection.from_json(value, conn_id=conn_id)
        if value.startswith("{")
        else Connection.from_uri(value, conn_id=conn_id)
    )


def naming_of(conn) -> tuple[str, str]:
    """(namespace, name prefix) of the tables behind a warehouse connection (None: the embedded one)."""
    if conn is None or conn.conn_type not in ("postgres", "postgresql") or not conn.host:
        return WAREHOUSE_NAMESPACE, ""
    schema = (conn.extra_dejson or {}).get("schema") or "public"  # orderops's search path (airflow_glue)
    return f"postgres://{conn.host}:{conn.port or 5432}", f"{conn.schema or 'postgres'}.{schema}."


def name_tables(task, conn) -> None:
    """Rename a running task's warehouse datasets after the connection it read: the lineage sent at
    the task's end then names the tables the task touched, whatever the DAG processor could read."""
    from openlineage.client.event_v2 import Dataset

    namespace, prefix = naming_of(conn)
    for datasets in (task.inlets, task.outlets):
        datasets[:] = [
            Dataset(namespace=namespace, name=prefix + d.name.rsplit(".", 1)[-1]) if _is_table(d) else d
            for d in datasets
        ]


def _is_table(dataset) -> bool:
    # the only OpenLineage datasets declared outside https endpoints are warehouse tables
    namespace = getattr(dataset, "namespace", None)
    return namespace == WAREHOUSE_NAMESPACE or (namespace or "").startswith("postgres://")


def tables(*names: str, conn_id: str = "orderops_warehouse") -> list:
    from openlineage.client.event_v2 import Dataset

    namespace, prefix = warehouse_naming(conn_id)
    return [Dataset(namespace=namespace, name=f"{prefix}{n}") for n in names]
