"""The clients of one shop for one run: built on first use from the run's connections (or a
factory in tests and benchmarks), paced by the shop's shared quotas, counted for the run summary."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from include.run.runconfig import RunSettings
from include.run.shops import minutes_setting
from orderops_provider.base import ConfigurationError

# How long one listing may go on (minutes; 0 = no bound): outside Airflow nothing else stops one
LISTING_TIMEOUT_ENV = "ORDEROPS_LISTING_TIMEOUT_MINUTES"


class Platforms:
    """The four clients of one shop, built on first use from Airflow connections (or a factory);
    with `quotas` (include.store.quotas.SharedQuotas) they pace their calls by the shop's shared quotas."""

    def __init__(
        self,
        settings: RunSettings,
        factory: Callable[[str], Any] | None = None,
        quotas: Any = None,
        overrides: dict[str, dict] | None = None,
    ):
        self.settings = settings
        self._factory = factory or self._from_connection
        self.overrides = overrides or {}  # platform -> client arguments (e.g. a preflight's ShipBob `today`)
        self._quotas = quotas
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()  # threads of one run share one client (and quota copy) per platform

    def _from_connection(self, platform: str):
        from orderops_provider.hooks import BY_PLATFORM

        return BY_PLATFORM[platform](getattr(self.settings.connections, platform)).get_client(
            **self.overrides.get(platform, {})
        )

    def get(self, platform: str):
        with self._lock:
            if platform not in self._clients:
                client = self._factory(platform)
                if getattr(client, "listing_seconds", None) is not None:
                    minutes = minutes_setting(LISTING_TIMEOUT_ENV, client.listing_seconds / 60)
                    client.listing_seconds = minutes * 60 if minutes else None
                if self._quotas is not None:
                    client.share_quotas(self._quotas)
                self._clients[platform] = client
            return self._clients[platform]

    def check(self) -> None:
        """Build the client of every platform the run uses, before any call, and check what its
        writes need (a ShipBob cancel needs the channel): a bad connection is named at the start of
        the run, not after the other platforms' writes."""
        for platform in ("tiktok", "shopify", *self.settings.fulfillers):
            conn_id = getattr(self.settings.connections, platform)
            try:
                client = self.get(platform)
                if platform == "shipbob" and not self.settings.dry_run:
                    client.require_channel("cancels")
            except ConfigurationError as exc:
                if conn_id in str(exc):
                    raise
                raise ConfigurationError(f"connection {conn_id!r}: {exc}") from None

    def tiktok(self):
        return self.get("tiktok")

    def shopify(self):
        return self.get("shopify")

    def amazon_mcf(self):
        return self.get("amazon_mcf")

    def shipbob(self):
        return self.get("shipbob")

    def stats_rows(self) -> list[dict]:
        return [row for name, client in self._clients.items() for row in client.stats.as_rows(name)]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
