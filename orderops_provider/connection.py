"""What a platform client needs from a connection, free of Airflow (the hooks fill it in)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orderops_provider.base import ConfigurationError


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
