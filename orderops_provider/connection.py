"""What a platform client needs from a connection, free of Airflow (the hooks fill it in)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from orderops_provider.base import ConfigurationError, RetryPolicy

# Sanity bounds of the extras every client takes: a request waits at most 10 minutes (a task gets
# 30), and more than 20 tries of one call is a loop, not resilience.
MAX_TIMEOUT = 600.0
MAX_ATTEMPTS = 20


def _shown(bound: float) -> str:
    return f"{bound:,.0f}" if float(bound).is_integer() else f"{bound:g}"


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

    def number(self, key: str, default: float, least: float, most: float, *, above: bool = False) -> float:
        """extra[key], or `default` when absent, as a number from `least` (with `above`: more than
        `least`) to `most`. The bounds are finite, so NaN and infinities are refused too: a timeout
        of NaN would only fail later, in every call, naming neither the connection nor the key."""
        return self._checked(key, default, least, most, above=above, whole=False)

    def count(self, key: str, default: int, least: int, most: int) -> int:
        """extra[key], or `default` when absent, as a whole number from `least` to `most`."""
        return int(self._checked(key, default, least, most, above=False, whole=True))

    def _checked(self, key: str, default: float, least: float, most: float, *, above: bool, whole: bool) -> float:
        value = self.extra.get(key, default)
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError, OverflowError):
            number = math.nan
        if not ((number > least if above else number >= least) and number <= most) or (
            whole and not number.is_integer()
        ):
            kind = "a whole number" if whole else "a number"
            low = f"above {_shown(least)} and at most" if above else f"from {_shown(least)} to"
            raise ConfigurationError(
                f"connection {self.conn_id!r}: extra.{key} must be {kind} {low} {_shown(most)}, got {value!r}"
            )
        return number

    def timeout(self) -> float:
        """extra.timeout: the seconds one request may take (30)."""
        return self.number("timeout", 30.0, 0, MAX_TIMEOUT, above=True)

    def retry(self) -> RetryPolicy | None:
        """extra.max_attempts as a retry policy; None (the client's default) when it is not set."""
        if "max_attempts" not in self.extra:
            return None
        return RetryPolicy(max_attempts=self.count("max_attempts", RetryPolicy.max_attempts, 1, MAX_ATTEMPTS))


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
