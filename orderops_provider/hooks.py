"""The four Airflow hooks: an Airflow connection -> a platform client, every secret masked first.

Registered with Airflow by this package's provider entry point (`get_provider_info`, which also
declares each connection type's form), so each platform has its own connection type in the UI with
its fields and the Test button (`test_connection`).
A connection of conn type `http` is read the same way: connections made before the provider was
installed keep working.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from orderops_provider import amazon_mcf, shipbob, shopify, tiktok
from orderops_provider.base import ConfigurationError, PlatformError
from orderops_provider.connection import ConnectionSettings, base_url_of


def read_connection(conn_id: str, secret_extra_keys: tuple[str, ...] = ()) -> ConnectionSettings:
    """Read an Airflow connection and mask its password and secret extras in every log."""
    conn = BaseHook.get_connection(conn_id)
    # parsed here, not with extra_dejson: that logs an unparsable extra and goes on without it
    try:
        extra = json.loads(conn.extra) if conn.extra else {}
    except ValueError as exc:
        raise ConfigurationError(f"connection {conn_id!r}: extra is not JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise ConfigurationError(f"connection {conn_id!r}: extra must be a JSON object")
    if conn.password:
        mask_secret(conn.password)
    for key in secret_extra_keys:
        if extra.get(key):
            mask_secret(str(extra[key]))
    return ConnectionSettings(
        conn_id=conn_id,
        base_url=base_url_of(conn_id, conn.host, conn.schema, conn.port),
        login=conn.login,
        password=conn.password,
        extra=extra,
    )


class PlatformHook(BaseHook):
    """What the four hooks share: the connection id under the name Airflow passes it by
    (`conn_name_attr`), reading the connection with the platform's secret extras masked, and the
    UI's Test button answering what was checked or the platform's own error."""

    conn_name_attr = "conn_id"
    default_conn_name = ""
    secret_extra_keys: tuple[str, ...] = ()

    def __init__(self, conn_id: str | None = None, **kwargs: Any):
        conn_id = kwargs.pop(self.conn_name_attr, None) or conn_id or self.default_conn_name
        super().__init__(**kwargs)
        setattr(self, self.conn_name_attr, conn_id)

    def settings(self) -> ConnectionSettings:
        return read_connection(getattr(self, self.conn_name_attr), self.secret_extra_keys)

    def get_client(self, **overrides: Any) -> Any:
        """The platform's client, built from the connection (`overrides` replace its arguments)."""
        raise NotImplementedError

    def check(self, **overrides: Any) -> str:
        """One cheap call proving the connection works; returns what it proved. `overrides` go to
        the client (e.g. a ShipBob `today`, so a preflight judges versions on its own clock)."""
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        try:
            return True, self.check()
        except (PlatformError, ConfigurationError) as exc:
            return False, str(exc)


class TikTokShopHook(PlatformHook):
    """A TikTok Shop connection -> TikTokShopClient.

    host: open API base URL; login: app_key; password: app_secret; extra: auth_base_url,
    access_token, refresh_token, access_token_expire_in, shop_cipher, shop_id, qps, timeout,
    max_attempts. Refreshed tokens are masked in logs and passed to `on_token_refresh`.
    """

    conn_name_attr = "tiktok_conn_id"
    default_conn_name = "tiktok_default"
    conn_type = "tiktok_shop"
    hook_name = "TikTok Shop"
    secret_extra_keys = tiktok.SECRET_EXTRA_KEYS

    def get_client(
        self, on_token_refresh: Callable[[tiktok.TokenSet], None] | None = None, **overrides: Any
    ) -> tiktok.TikTokShopClient:
        settings = self.settings()

        def refreshed(tokens: tiktok.TokenSet) -> None:
            mask_secret(tokens.access_token)
            mask_secret(tokens.refresh_token)
            if on_token_refresh is not None:
                on_token_refresh(tokens)

        return tiktok.TikTokShopClient.from_settings(settings, on_token_refresh=refreshed, **overrides)

    def check(self, **overrides: Any) -> str:
        """Signature and token accepted, and the shop found."""
        with self.get_client(**overrides) as client:
            cipher = client.shop_cipher
            client.warehouses()
            return f"signature and token accepted; shop cipher {cipher}"


class ShopifyHook(PlatformHook):
    """A Shopify connection -> ShopifyClient.

    host: the shop's admin host (orderops.myshopify.com, or the simulator's URL); password:
    Admin API access token; extra: api_version, client_id, client_secret (client-credentials
    grant), timeout, max_attempts, maximum_available, restore_rate, max_query_cost, tiktok_order_id
    (where the shop's orders carry the TikTok order id: docs/tiktok-order-id.md).
    """

    conn_name_attr = "shopify_conn_id"
    default_conn_name = "shopify_default"
    conn_type = "shopify"
    hook_name = "Shopify Admin GraphQL"
    secret_extra_keys = shopify.SECRET_EXTRA_KEYS

    def get_client(self, **overrides: Any) -> shopify.ShopifyClient:
        settings = self.settings()
        overrides.setdefault("secret_sink", mask_secret)  # tokens obtained later are masked too
        return shopify.ShopifyClient.from_settings(settings, **overrides)

    def check(self, **overrides: Any) -> str:
        with self.get_client(**overrides) as client:
            shop = client.shop()
            served = client.effective_version
            asked = "" if served == client.api_version else f", asked for {client.api_version}: set a supported one"
            return f"connected to {shop.get('myshopifyDomain')} (API {served}{asked})"


class AmazonMcfHook(PlatformHook):
    """An Amazon SP-API connection -> AmazonMcfClient.

    host: SP-API endpoint (https://sellingpartnerapi-na.amazon.com or the local simulator);
    login: LWA client id; password: LWA client secret; extra: refresh_token (secret),
    marketplace_id, lwa_url, timeout, rate_scale, quotas, max_attempts, user_agent, first_report_poll.
    """

    conn_name_attr = "amazon_mcf_conn_id"
    default_conn_name = "amazon_mcf_default"
    conn_type = "amazon_mcf"
    hook_name = "Amazon SP-API (Multi-Channel Fulfillment)"
    secret_extra_keys = amazon_mcf.SECRET_EXTRA_KEYS

    def get_client(self, **overrides: Any) -> amazon_mcf.AmazonMcfClient:
        settings = self.settings()
        overrides.setdefault("mask", mask_secret)  # access tokens and document URLs too
        return amazon_mcf.AmazonMcfClient.from_settings(settings, **overrides)

    def check(self, **overrides: Any) -> str:
        """The refresh token is exchanged and the fulfillment-order listing answers."""
        with self.get_client(**overrides) as client:
            client.access_token()
            next(iter(client.list_fulfillment_orders(datetime.now(timezone.utc))), None)  # one page
            return f"token exchanged; fulfillment orders readable (marketplace {client.marketplace_id})"


class ShipBobHook(PlatformHook):
    """A ShipBob connection -> ShipBobClient.

    host: base URL (https://api.shipbob.com, https://sandbox-api.shipbob.com or the local
    simulator); password: bearer token (PAT); extra: api_version, channel_id, timeout,
    rate_limit, rate_window_seconds, max_attempts.
    """

    conn_name_attr = "shipbob_conn_id"
    default_conn_name = "shipbob_default"
    conn_type = "shipbob"
    hook_name = "ShipBob"
    secret_extra_keys = shipbob.SECRET_EXTRA_KEYS

    def _token_now(self) -> str | None:
        # A revoked token is replaced by rotating the connection's password; read it again.
        return self.settings().password

    def get_client(self, **overrides: Any) -> shipbob.ShipBobClient:
        settings = self.settings()
        overrides.setdefault("token_source", self._token_now)
        return shipbob.ShipBobClient.from_settings(settings, **overrides)

    def check(self, **overrides: Any) -> str:
        """Token accepted and, when channel_id is set, that channel can write orders."""
        with self.get_client(**overrides) as client:
            channels = client.channels()
            if client.channel_id is None:
                return f"token accepted; {len(channels)} channel(s); no channel_id set (cancels need one)"
            channel = next((c for c in channels if c.get("id") == client.channel_id), None)
            if channel is None:
                raise ConfigurationError(f"channel {client.channel_id} is not visible to this token")
            if "orders_write" not in (channel.get("scopes") or []):
                raise ConfigurationError(f"channel {client.channel_id} has no orders_write scope")
            return f"token accepted; channel {client.channel_id} can write orders"


# orderops names the platforms tiktok, shopify, amazon_mcf and shipbob (RunSettings.connections)
BY_PLATFORM = {"tiktok": TikTokShopHook, "shopify": ShopifyHook, "amazon_mcf": AmazonMcfHook, "shipbob": ShipBobHook}
