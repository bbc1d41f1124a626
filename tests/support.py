"""Builders the test files share: the suite's fixed moment and the ids the sandbox's scenarios use."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import httpx

# the moment scenarios are set at (their `now`)
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


NOW_ISO = iso(NOW)


def tiktok_order_id(n: int) -> str:
    return str(576000000000000000 + n)


def line_id(n: int, k: int = 0) -> str:
    return str(577000000000000000 + n * 10 + k)


def cancel_id(n: int) -> str:
    return str(4035000000000000000 + n)


def gid(i: int) -> str:
    return f"gid://shopify/Order/{6100000000 + i}"


def set_day(server, moment: str) -> None:
    response = httpx.post(f"{server.urls['shopify']}/_sandbox/clock", json={"now": moment})
    assert response.status_code == 200, response.text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
