"""Airflow connections that point the pipeline at a running sandbox (default credentials).

`connection_env(urls)` returns `AIRFLOW_CONN_*` variables (JSON form) for the demo, the tests
and anyone trying orderops locally; the README prints the same for the default ports.
"""

from __future__ import annotations

import json

from sandbox.amazon_mcf import DEFAULT_CREDENTIALS as AMAZON
from sandbox.shipbob import DEFAULT_CREDENTIALS as SHIPBOB
from sandbox.shipbob import DEFAULTS as SHIPBOB_QUOTA
from sandbox.shopify import DEFAULT_CREDENTIALS as SHOPIFY
from sandbox.tiktok import DEFAULT_CREDENTIALS as TIKTOK
from sandbox.tiktok import DEFAULT_SETTINGS as TIKTOK_QUOTA

CONNECTION_IDS = {
    "tiktok": "orderops_tiktok",
    "shopify": "orderops_shopify",
    "amazon_mcf": "orderops_amazon_mcf",
    "shipbob": "orderops_shipbob",
    "warehouse": "orderops_warehouse",
}


def sandbox_connections(urls: dict[str, str], rate_scale: float = 1.0) -> dict[str, dict]:
    """Connection documents per platform for a sandbox serving at `urls` (app name -> base URL);
    `rate_scale`, the sandbox's own (its quotas x that), makes the clients pace at the same scale."""
    docs = {
        "tiktok": {
            "conn_type": "tiktok_shop",
            "host": urls["tiktok"],
            "login": TIKTOK["app_key"],
            "password": TIKTOK["app_secret"],
            "extra": {
                "auth_base_url": urls["tiktok_auth"],
                "access_token": TIKTOK["access_token"],
                "refresh_token": TIKTOK["refresh_token"],
                "shop_cipher": TIKTOK["shop_cipher"],
            },
        },
        "shopify": {
            "conn_type": "shopify",
            "host": urls["shopify"],
            "password": SHOPIFY["access_token"],
            "extra": {
                "api_version": "2026-07",
                "client_id": SHOPIFY["client_id"],
                "client_secret": SHOPIFY["client_secret"],
            },
        },
        "amazon_mcf": {
            "conn_type": "amazon_mcf",
            "host": urls["amazon_mcf"],
            "login": AMAZON["client_id"],
            "password": AMAZON["client_secret"],
            "extra": {
                "refresh_token": AMAZON["refresh_token"],
                "marketplace_id": AMAZON["marketplace_id"],
                "lwa_url": f"{urls['amazon_lwa']}/auth/o2/token",
            },
        },
        "shipbob": {
            "conn_type": "shipbob",
            "host": urls["shipbob"],
            "password": SHIPBOB["personal_access_tokens"][0],
            "extra": {"api_version": "2026-07", "channel_id": SHIPBOB["channel_id"]},
        },
    }
    if rate_scale != 1:
        docs["tiktok"]["extra"]["qps"] = TIKTOK_QUOTA["qps"] * rate_scale
        docs["amazon_mcf"]["extra"]["rate_scale"] = rate_scale
        docs["shipbob"]["extra"]["rate_limit"] = SHIPBOB_QUOTA["rate_limit"] * rate_scale
    return docs


def connection_env(
    urls: dict[str, str], warehouse: dict | None = None, ids: dict[str, str] | None = None, rate_scale: float = 1.0
) -> dict[str, str]:
    """AIRFLOW_CONN_<ID> variables for the sandbox (and the warehouse, when given)."""
    ids = {**CONNECTION_IDS, **(ids or {})}
    docs = sandbox_connections(urls, rate_scale)
    if warehouse is not None:
        docs["warehouse"] = warehouse
    return {f"AIRFLOW_CONN_{ids[name].upper()}": json.dumps(doc) for name, doc in docs.items()}
