"""A shipment starts the shop's event task within seconds, through Airflow's event-driven scheduling:
the sandbox's ShipBob sends its signed order.shipped webhook to the receiver the API server serves,
which keeps it and rings the shop's Redis doorbell; the triggerer's AssetWatcher (orderops's
DoorbellTrigger, which waits the burst out) turns the ring into an asset event; the scheduler starts
a run of the shop's event DAG, whose one task takes the event, stages the order it carries and posts
the tracking to TikTok, holding the shop's lease meanwhile. The schedule (yearly here) plays no
part; a manual run of the pipeline DAG stages the shop first.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
import sqlalchemy as sa

from include.store.warehouse import Warehouse, platform_events, shop_leases
from include.store.warehouse import runs as run_rows
from sandbox.connections import sandbox_connections
from sandbox.core import Settings
from sandbox.generate import generate
from tests.scheduler.stack import airflow_stack, runs

pytestmark = pytest.mark.slow

SECRET = "whsec_" + "ZXZlbnQtZHJpdmVuLXNjaGVkdWxlci10ZXN0"[:32]


def wait_for(api: str, dag_id: str, run_type: str, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        done = [r for r in runs(api, dag_id) if r["run_type"] == run_type and r["state"] in ("success", "failed")]
        if done:
            return done[0]
        time.sleep(2)
    raise AssertionError(f"{dag_id}: no {run_type} run finished in {timeout} s: {runs(api, dag_id)}")


@pytest.mark.timeout(1200)
def test_a_shipbob_shipment_starts_a_run_that_posts_its_tracking(run_sandbox, tmp_path):
    server = run_sandbox(generate(30, seed=5), settings=Settings(clock_rate=0))
    sandbox = server.sandbox
    shop = f"evt{uuid.uuid4().hex[:8]}"  # its own doorbell channel: other runs on this Redis do not ring it
    dag_id, events_dag_id = f"orderops_sla_{shop}", f"orderops_events_{shop}"
    shipbob = sandbox_connections(server.urls)["shipbob"]
    shipbob["extra"]["webhook_secret"] = SECRET
    shops = [
        {
            "name": shop,
            "schedule": "0 0 1 1 *",
            "connections": {
                "tiktok": "orderops_tiktok",
                "shopify": "orderops_shopify",
                "amazon_mcf": "orderops_amazon_mcf",
                "shipbob": "orderops_shipbob",
            },
            "events": {"redis_conn_id": "orderops_redis", "debounce_seconds": 2},
        }
    ]
    env = {
        "AIRFLOW_CONN_ORDEROPS_SHIPBOB": json.dumps(shipbob),
        "AIRFLOW_CONN_ORDEROPS_REDIS": json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": 6379}),
    }

    def unpause(cli) -> None:
        cli("dags", "unpause", dag_id)
        cli("dags", "unpause", events_dag_id)

    with airflow_stack(tmp_path, server, shops, extra_env=env, before_start=unpause) as stack:
        api, cli = stack["api"], stack["cli"]
        cli("dags", "trigger", dag_id)  # stages the shop (a first run sweeps)
        first = wait_for(api, dag_id, "manual", timeout=600)
        assert first["state"] == "success", (stack["logs"] / "scheduler.log").read_text()[-3000:]

        # a ShipBob order still in the warehouse, whose TikTok order waits for its tracking
        platform = sandbox.platforms["shipbob"]
        waiting = [
            o
            for o in platform.orders.values()
            if platform.shipped(o.id) is None and platform.order_status(o) not in ("Cancelled", "Exception")
        ]
        assert waiting, "the scenario has no ShipBob order left to ship"
        receiver = f"{api}/orderops-events/{shop}/shipbob"
        httpx.post(
            f"{server.urls['tiktok']}/_sandbox/webhooks",
            timeout=30,
            json={"platform": "shipbob", "url": receiver, "secret": SECRET},
        ).raise_for_status()
        sandbox.clock.advance(12 * 3600)  # the warehouse works a day shift
        shipped = {o.id: platform.shipped(o.id) for o in waiting}  # read: the orders move, ShipBob announces
        shipped = {oid: s for oid, s in shipped.items() if s}
        assert shipped and sandbox.outbox.flush(60)
        sent = {s["outcome"]: s["count"] for s in sandbox.outbox.info()["sent"] if s["platform"] == "shipbob"}
        assert sent.get("delivered") == len(shipped), sandbox.outbox.info()

        run = wait_for(api, events_dag_id, "asset_triggered", timeout=300)
        assert run["state"] == "success", (stack["logs"] / "scheduler.log").read_text()[-3000:]
        tasks = httpx.get(
            f"{api}/api/v2/dags/{events_dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", timeout=30
        ).json()["task_instances"]
        assert [(t["task_id"], t["state"]) for t in tasks] == [("handle_events", "success")]

    wh = Warehouse(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with wh.engine.connect() as conn:
        claimed = conn.execute(
            sa.select(platform_events.c.run_id, platform_events.c.topic).where(platform_events.c.shop == shop)
        ).all()
        summary = conn.execute(
            sa.select(run_rows.c.summary).where(run_rows.c.shop == shop, run_rows.c.run_id == run["dag_run_id"])
        ).scalar()
    wh.dispose()
    assert {(r, t) for r, t in claimed} == {(run["dag_run_id"], "order.shipped")}
    with wh.engine.connect() as conn:
        lease = conn.execute(sa.select(shop_leases).where(shop_leases.c.shop == shop)).one()
    assert lease.holder is None and not lease.wake_after  # freed by the last run
    assert summary["extraction"]["mode"] == "event" and summary["extraction"]["listed"] == []
    # the tracking the shipments carried went to TikTok after they shipped, each order once
    numbers = {number for s in shipped.values() for _, number in s["packages"]}
    posted = [
        w
        for w in sandbox.writes
        if w.platform == "tiktok"
        and w.operation == "mark_package_as_shipped"
        and w.outcome == "ok"
        and any(n in json.dumps(w.body) for n in numbers)
    ]
    assert posted, [w.operation for w in sandbox.writes]
    assert len({w.path for w in posted}) == len(posted)
