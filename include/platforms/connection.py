"""Turning an Airflow connection into client settings, with every secret masked first."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from include.platforms.base import ConfigurationError


@dataclass
class ConnectionSettings:
    """What a platform client needs from a connection: base URL, login, password, extra."""

    conn_id: str
    base_url: str
    login: str | None
    password: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def require(self, key: str, what: str) -> str:
        value = self.extra.get(key)
        if value in (None, ""):
            raise ConfigurationError(f"connection {self.conn_id!r}: extra.{key} ({what}) is required")
        return str(value)

    def number(self, key: str, default: float) -> float:
        value = self.extra.get(key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection {self.conn_id!r}: extra.{key} must be a number, got {value!r}") from None


def base_url_of(conn_id: str, host: str | None, schema: str | None, port: int | None) -> str:
    """host may be a bare host name or a full URL; schema is the URL scheme (http or https)."""
    if not host:
        raise ConfigurationError(f"connection {conn_id!r}: host is required (the platform's base URL)")
    if host.startswith(("http://", "https://")):
        url = host
    else:
        scheme = schema or "https"
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"connection {conn_id!r}: schema must be http or https, got {scheme!r}")
        url = f"{scheme}://{host}"
        if port:
            url += f":{port}"
    return url.rstrip("/")


def read_connection(conn_id: str, secret_extra_keys: tuple[str, ...] = ()) -> ConnectionSettings:
    """Read an Airflow connection and mask its password and secret extras in every log."""
    from airflow.sdk import BaseHook
    from airflow.sdk.log import mask_secret

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
    return ConnectionSettings(conn_id=conn_id, base_url=base_url_of(conn_id, conn.host, conn.schema, conn.port),
                              login=conn.login, password=conn.password, extra=extra)
