"""Shared fixtures: a real sandbox on loopback ports, built from a scenario dict."""
from __future__ import annotations

import pytest

from include.sandbox.core import Sandbox, Settings
from include.sandbox.scenario import parse_scenario
from include.sandbox.server import SandboxServer


@pytest.fixture
def run_sandbox():
    """Start a sandbox for a scenario dict on free ports; stopped after the test.

    Usage: server = run_sandbox(scenario, platforms=("tiktok",), settings=Settings(...))
    then server.urls["tiktok"], server.sandbox (the live state).
    """
    started: list[SandboxServer] = []

    def start(scenario: dict, *, platforms: tuple[str, ...] | None = None,
              settings: Settings | None = None) -> SandboxServer:
        sandbox = Sandbox(parse_scenario(scenario), settings or Settings(), platforms=platforms)
        server = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()})
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


PG_BASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    """A fresh, empty warehouse on SQLite (a temp file) and on the machine's PostgreSQL (own schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    import uuid

    import sqlalchemy as sa

    schema = f"orderops_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
