"""Amazon queue watchers bounded in warehouse connections: 50 of them (the triggerer's
`AmazonNotificationsTrigger`, run as the triggerer runs them: coroutines of one event loop, their
blocking reads on its threads) read the sandbox's notification queue and keep each notification
in the real PostgreSQL; the connections they hold never exceed the pool setting. One engine per
watcher held one connection each: 200 watchers left PostgreSQL refusing every client."""

from __future__ import annotations

import asyncio
import json
import uuid

import psutil
import pytest
import sqlalchemy as sa

from include.airflow import glue
from sandbox.connections import sandbox_connections
from sandbox.core import Settings
from sandbox.generate import generate
from tests.conftest import PG_BASE

WATCHERS, POOL = 50, 3
pytestmark = pytest.mark.slow


def held_connections(probe: sa.Engine) -> tuple[int, int]:
    """(this process's sockets to PostgreSQL, those of them pg_stat_activity names the watchers'),
    counted before the probe's own connection opens."""
    ports = {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == 5432 and c.status == psutil.CONN_ESTABLISHED
    }
    with probe.connect() as conn:
        named = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name AND client_port = ANY(:ports)"
            ),
            {"name": glue.WATCHER_APPLICATION_NAME, "ports": sorted(ports)},
        ).scalar()
    return len(ports), int(named or 0)


@pytest.mark.timeout(600)
def test_fifty_watchers_hold_at_most_the_pool(run_sandbox, monkeypatch):
    from orderops_triggers import AmazonNotificationsTrigger

    server = run_sandbox(generate(5, seed=2), settings=Settings(clock_rate=0))
    outbox = server.sandbox.outbox
    outbox.subscribe("amazon_mcf", None)
    schema = f"orderops_watch_{uuid.uuid4().hex[:8]}"
    probe = sa.create_engine(PG_BASE, poolclass=sa.pool.NullPool)
    with probe.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    warehouse = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "schema": "test",
        "extra": {"schema": schema},
    }
    monkeypatch.setenv("AIRFLOW_CONN_WATCH_WAREHOUSE", json.dumps(warehouse))
    monkeypatch.setenv("AIRFLOW_CONN_WATCH_AMAZON", json.dumps(sandbox_connections(server.urls)["amazon_mcf"]))
    monkeypatch.setenv(glue.WATCHER_POOL_ENV, str(POOL))
    monkeypatch.setattr(glue, "_shared", {})
    queue_url = f"{server.urls['amazon_sqs']}/orderops-notifications"
    shops = [f"watch-{i}" for i in range(WATCHERS)]
    seen: list[tuple[int, int]] = []

    async def watch() -> list[dict]:
        runs = [
            AmazonNotificationsTrigger(shop, queue_url, "watch_amazon", "watch_warehouse", wait_seconds=0).run()
            for shop in shops
        ]
        waiting = {asyncio.ensure_future(anext(run)): run for run in runs}
        fired = []
        try:
            for i in range(WATCHERS):
                # one notification at a time: one watcher takes it, keeps it in the warehouse, fires and
                # ends; so every watcher writes to the warehouse once, the others polling meanwhile
                outbox.emit(
                    "amazon_mcf",
                    "FULFILLMENT_ORDER_STATUS",
                    {
                        "SellerFulfillmentOrderId": f"fo-{i}",
                        "EventType": "Shipment",
                        "StatusUpdatedDateTime": "2026-11-20T12:00:00Z",
                        "FulfillmentShipment": {"FulfillmentShipmentStatus": "SHIPPED"},
                    },
                )
                done, _ = await asyncio.wait(waiting, timeout=120, return_when=asyncio.FIRST_COMPLETED)
                assert done, f"no watcher fired for notification {i}"
                for future in done:
                    fired.append(future.result().payload)
                    await waiting.pop(future).aclose()
                seen.append(await asyncio.to_thread(held_connections, probe))
        finally:
            for future, run in waiting.items():
                future.cancel()
                await asyncio.gather(future, return_exceptions=True)
                await run.aclose()
        return fired

    try:
        fired = asyncio.run(watch())
        with probe.connect() as conn:
            kept = conn.execute(sa.text(f"SELECT shop FROM {schema}.platform_events")).scalars().all()
    finally:
        for wh in glue._shared.values():
            wh.dispose()
        with probe.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        probe.dispose()
    print(f"{WATCHERS} watchers, pool {POOL}: warehouse connections held at most {max(s[0] for s in seen)}")
    assert sorted(e["shop"] for e in fired) == sorted(shops)  # every watcher read, kept and fired
    assert sorted(kept) == sorted(shops)
    assert max(sockets for sockets, _ in seen) <= POOL
    assert 1 <= max(named for _, named in seen) <= POOL  # they are the watchers', by their name
