"""The platform layer is an installed Airflow provider: Airflow finds it by its entry point and knows
the four connection types, and each hook is built the way Airflow builds it (by conn_name_attr)."""

from __future__ import annotations

import importlib.metadata

import pytest
from airflow.providers_manager import ProvidersManager

import orderops_provider
from orderops_provider import hooks

TYPES = {
    "tiktok_shop": hooks.TikTokShopHook,
    "shopify": hooks.ShopifyHook,
    "amazon_mcf": hooks.AmazonMcfHook,
    "shipbob": hooks.ShipBobHook,
}


def test_the_entry_point_is_installed_and_names_this_package():
    points = [
        ep
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
        if ep.value == "orderops_provider:get_provider_info"
    ]
    assert len(points) == 1, "pip install -e . (make venv) registers the provider"
    assert points[0].dist.metadata["name"] == orderops_provider.PACKAGE


def test_airflow_knows_the_four_connection_types_with_their_forms():
    manager = ProvidersManager()
    assert orderops_provider.PACKAGE in manager.providers
    metadata = {m.connection_type: m for m in manager.iter_connection_type_hook_ui_metadata()}
    for conn_type, hook in TYPES.items():
        meta = metadata[conn_type]
        assert meta.hook_class_name == f"{hook.__module__}.{hook.__name__}"
        assert meta.hook_name == hook.hook_name and hook.conn_type == conn_type
        assert meta.field_behaviour["relabeling"]["host"]
    secrets = {name for name, widget in manager._connection_form_widgets_from_metadata.items() if widget.is_sensitive}
    assert secrets == {
        "extra__tiktok_shop__access_token",
        "extra__tiktok_shop__refresh_token",
        "extra__shopify__client_secret",
        "extra__amazon_mcf__refresh_token",
    }


@pytest.mark.parametrize("conn_type", sorted(TYPES))
def test_each_hook_is_built_as_airflow_builds_it(conn_type):
    hook_class = TYPES[conn_type]
    hook = hook_class(**{hook_class.conn_name_attr: "orderops_x"})
    assert getattr(hook, hook_class.conn_name_attr) == "orderops_x"


def test_every_secret_the_clients_mask_is_a_password_field():
    from orderops_provider import amazon_mcf, shipbob, shopify, tiktok

    fields = {t["connection-type"]: t["conn-fields"] for t in orderops_provider.connection_types()}
    for conn_type, module in (
        ("tiktok_shop", tiktok),
        ("shopify", shopify),
        ("amazon_mcf", amazon_mcf),
        ("shipbob", shipbob),
    ):
        for key in module.SECRET_EXTRA_KEYS:
            assert fields[conn_type][key]["schema"].get("format") == "password", (conn_type, key)
