"""OpenLineage datasets for the tasks: the platform endpoints they read or write, the tables they touch.

Endpoint datasets are named after each platform's production API host (the connection may point
elsewhere, e.g. at the sandbox, but the lineage names the contract: TikTok paths at their current
version). Warehouse tables live in
the `orderops-warehouse` namespace, under the names of `include.warehouse`.
"""
from __future__ import annotations

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
    "amazon_shipments_report": ("amazon_mcf", "/reports/2021-06-30/reports#GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL"),
    "amazon_cancel": ("amazon_mcf", "/fba/outbound/2020-07-01/fulfillmentOrders/{id}/cancel"),
    "shipbob_orders": ("shipbob", "/2026-01/order"),
    "shipbob_cancel": ("shipbob", "/2026-01/order/{id}:cancel"),
}


def endpoints(*names: str) -> list:
    from openlineage.client.event_v2 import Dataset

    return [Dataset(namespace=API_HOSTS[ENDPOINTS[n][0]], name=ENDPOINTS[n][1]) for n in names]


def tables(*names: str) -> list:
    from openlineage.client.event_v2 import Dataset

    return [Dataset(namespace=WAREHOUSE_NAMESPACE, name=n) for n in names]
