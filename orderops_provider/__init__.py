"""orderops's platform layer as an Airflow provider (docs/architecture.md §5).

One httpx client per platform (`tiktok`, `shopify`, `amazon_mcf`, `shipbob`; free of Airflow, so
tests and benchmarks use them as they are) and one hook per platform (`hooks`). Installed as the
package `orderops-provider` (pyproject.toml), whose `apache_airflow_provider` entry point is
`get_provider_info`: Airflow then knows the four connection types, their forms (declared here, as
Airflow reads them without importing the hooks) and their Test buttons.
"""

from __future__ import annotations

from typing import Any

PACKAGE = "orderops-provider"


def _text(
    label: str, description: str | None = None, *, secret: bool = False, default: str | None = None
) -> dict[str, Any]:
    """One extra field of a connection form; stored in the connection's extra under its own name."""
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"  # masked in the form and in logs
    if default is not None:
        schema["default"] = default
    field = {"label": label, "schema": schema}
    if description:
        field["description"] = description
    return field


def connection_types() -> list[dict[str, Any]]:
    """The four connection types: hook, name in the UI, which standard fields mean what, and the
    extra fields the hooks read (the rest, e.g. timeout or max_attempts, go in the extra JSON)."""
    from orderops_provider import amazon_mcf, shipbob, shopify, tiktok

    return [
        {
            "connection-type": "tiktok_shop",
            "hook-class-name": "orderops_provider.hooks.TikTokShopHook",
            "hook-name": "TikTok Shop",
            "ui-field-behaviour": {
                "hidden-fields": ["port"],
                "relabeling": {"host": "Open API base URL", "login": "App key", "password": "App secret"},
                "placeholders": {"host": tiktok.DEFAULT_BASE_URL},
            },
            "conn-fields": {
                "auth_base_url": _text("Auth base URL", "token refresh endpoint", default=tiktok.DEFAULT_AUTH_BASE_URL),
                "access_token": _text("Access token", secret=True),
                "refresh_token": _text("Refresh token", secret=True),
                "shop_cipher": _text("Shop cipher", "found from the token when empty"),
            },
        },
        {
            "connection-type": "shopify",
            "hook-class-name": "orderops_provider.hooks.ShopifyHook",
            "hook-name": "Shopify Admin GraphQL",
            "ui-field-behaviour": {
                "hidden-fields": ["login", "port"],
                "relabeling": {"host": "Shop admin host", "password": "Admin API access token"},
                "placeholders": {"host": "your-shop.myshopify.com"},
            },
            "conn-fields": {
                "api_version": _text("API version", default=shopify.DEFAULT_VERSION),
                "client_id": _text("Client id", "client-credentials grant, instead of a fixed token"),
                "client_secret": _text("Client secret", secret=True),
            },
        },
        {
            "connection-type": "amazon_mcf",
            "hook-class-name": "orderops_provider.hooks.AmazonMcfHook",
            "hook-name": "Amazon SP-API (Multi-Channel Fulfillment)",
            "ui-field-behaviour": {
                "hidden-fields": [],
                "relabeling": {"host": "SP-API endpoint", "login": "LWA client id", "password": "LWA client secret"},
                "placeholders": {"host": "https://sellingpartnerapi-na.amazon.com"},
            },
            "conn-fields": {
                "refresh_token": _text("LWA refresh token", secret=True),
                "marketplace_id": _text("Marketplace id", default=amazon_mcf.DEFAULT_MARKETPLACE_ID),
                "lwa_url": _text("LWA token URL", default=amazon_mcf.DEFAULT_LWA_URL),
            },
        },
        {
            "connection-type": "shipbob",
            "hook-class-name": "orderops_provider.hooks.ShipBobHook",
            "hook-name": "ShipBob",
            "ui-field-behaviour": {
                "hidden-fields": ["login", "port"],
                "relabeling": {"host": "Base URL", "password": "Bearer token (PAT)"},
                "placeholders": {"host": "https://api.shipbob.com"},
            },
            "conn-fields": {
                "api_version": _text("API version", default=shipbob.DEFAULT_VERSION),
                "channel_id": {
                    "label": "Channel id",
                    "description": "the channel with orders_write (cancels need it)",
                    "schema": {"type": ["integer", "null"]},
                },
            },
        },
    ]


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads from the `apache_airflow_provider` entry point."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = [version(PACKAGE)]
    except PackageNotFoundError:  # read from a source tree that was not installed
        versions = []
    return {
        "package-name": PACKAGE,
        "name": "orderops",
        "description": "TikTok Shop, Shopify, Amazon Multi-Channel Fulfillment and ShipBob: "
        "clients and hooks for orderops's order operations.",
        "versions": versions,
        "connection-types": connection_types(),
    }
