"""The pipeline DAG itself, run by Airflow on the production shape, against the quota bound.

    python -m bench.dag_bench --orders 10000          (make bench-dag ORDERS=10000)

`bench.pipeline_bench` times the pipeline's steps in one process; this times what a deployment
runs: the production shape of `deploy.prod_local` (PostgreSQL metadata and warehouse,
CeleryExecutor on Redis, API server, scheduler, DAG processor, triggerer, two workers, the pools)
with one sandbox shop of ORDERS generated orders at the documented quotas. One run of the shop's
DAG is triggered through the REST API as of the scenario's clock and waited for. Figures: wall
time from the trigger to the run's end; the calls and Shopify points the sandbox counted; the
quota-bound lower bound (the model of `bench.pipeline_bench`) and measured / bound; throttled
answers; task instances and the time they spent queued and running. The task processes are
separate, so each keeps its own copy of a platform's quota and paces by the platform's answers:
the throttled answers show what that costs. Results go to bench/results/dag-<time>-<rev>.json.
Everything started is stopped at the end (state under a temporary folder; databases dropped).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bench.pipeline_bench import RESULTS, demand, log, lower_bound, revision
from deploy.prod_local import api_token, down, scratch, up
from sandbox.generate import DEFAULT_NOW
from sandbox.scenario import parse_time

DAG_ID = "orderops_sla_shop_1"
TERMINAL = ("success", "failed")


def _seconds(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def run_dag(orders: int, timeout: float) -> dict:
    dep = scratch(
        "bench",
        "redis://127.0.0.1:6379/9",
        schedule=False,
        sandbox_shops=1,
        sandbox_orders=orders,
    )
    state = dep.root
    try:
        t0 = time.monotonic()
        log(f"{orders} orders: starting the production shape under {state}")
        up(dep, fresh=True, timeout=900)
        log(f"{orders} orders: up in {time.monotonic() - t0:.0f} s; triggering one run")
        api = httpx.Client(base_url=dep.api_url, headers={"Authorization": f"Bearer {api_token(dep)}"}, timeout=60)
        admin = json.loads((state / "sandbox" / "shop-1" / "urls.json").read_text())["tiktok"] + "/_sandbox"
        httpx.delete(f"{admin}/calls", timeout=30)
        now = parse_time(DEFAULT_NOW, "now")
        conf = {
            "now": now.isoformat(),
            "window_start": (now - timedelta(minutes=30)).isoformat(),
            "window_end": now.isoformat(),
        }
        started = time.monotonic()
        answer = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        answer.raise_for_status()
        run_id = answer.json()["dag_run_id"]
        run: dict = {}
        while time.monotonic() - started < timeout:
            run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()
            if run["state"] in TERMINAL:
                break
            time.sleep(2)
        wall = time.monotonic() - started
        log(f"{orders} orders: run {run.get('state')} after {wall:.0f} s")
        tis = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}).json()
        tis = tis["task_instances"]
        counted = httpx.get(f"{admin}/calls", timeout=30).json()
        calls = {(c["platform"], c["operation"]): c["count"] for c in counted["calls"]}
        throttled = {(c["platform"], c["operation"]): c["count"] for c in counted["throttled"]}
        points = sum(c["units"] for c in counted["charged"] if c["platform"] == "shopify")
        units = demand(calls, throttled, points)
        bound, bound_by = lower_bound(units)
        states = Counter(ti["state"] for ti in tis)
        return {
            "orders": orders,
            "run_state": run.get("state"),
            "wall_seconds": wall,
            "lower_bound_seconds": bound,
            "bound_by": bound_by,
            "ratio": wall / bound if bound else None,
            "calls_total": sum(calls.values()),
            "calls_per_order": sum(calls.values()) / orders,
            "shopify_points": points,
            "throttled": sum(throttled.values()),
            "calls_by_operation": [
                {"platform": p, "operation": o, "calls": n, "throttled": throttled.get((p, o), 0)}
                for (p, o), n in sorted(calls.items())
            ],
            "task_instances": len(tis),
            "task_states": dict(states),
            "task_seconds_running": sum(ti.get("duration") or 0.0 for ti in tis),
            "task_seconds_queued": sum(_seconds(ti.get("queued_when"), ti.get("start_date")) for ti in tis),
            "pools": {p["name"]: p["slots"] for p in api.get("/api/v2/pools").json()["pools"]},
            "workers": dep.workers,
            "worker_concurrency": dep.concurrency,
        }
    finally:
        log(f"{orders} orders: stopping everything")
        down(dep, purge=True)
        shutil.rmtree(state, ignore_errors=True)


def render(r: dict) -> str:
    rows = [
        ("orders (generated)", f"{r['orders']:,}"),
        ("run state", r["run_state"]),
        ("wall time, trigger to end (s)", f"{r['wall_seconds']:,.1f}"),
        ("quota lower bound (s)", f"{r['lower_bound_seconds']:,.1f} ({r['bound_by']})"),
        ("measured / lower bound", f"{r['ratio']:.2f}" if r["ratio"] else "-"),
        ("API calls (sandbox count)", f"{r['calls_total']:,}"),
        ("calls per order", f"{r['calls_per_order']:.3f}"),
        ("Shopify points charged", f"{r['shopify_points']:,.0f}"),
        ("throttled answers (429 / THROTTLED)", f"{r['throttled']:,}"),
        ("task instances", f"{r['task_instances']} {r['task_states']}"),
        (
            "task time running / queued (s, summed)",
            f"{r['task_seconds_running']:,.0f} / {r['task_seconds_queued']:,.0f}",
        ),
        ("pools", ", ".join(f"{k} {v}" for k, v in sorted(r["pools"].items()))),
        ("Celery workers x concurrency", f"{r['workers']} x {r['worker_concurrency']}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines.append("calls per operation (throttled among them)")
    lines += [
        f"  {c['platform']:<10}  {c['operation']:<45} {c['calls']:>7,}  {c['throttled']:>5,}"
        for c in r["calls_by_operation"]
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default %(default)s)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    result = run_dag(args.orders, args.timeout)
    print(render(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"dag-{stamp}-{revision()}.json"
    path.write_text(
        json.dumps(
            {"when": stamp, "revision": revision(), "python": sys.version.split()[0], "result": result},
            indent=1,
            default=str,
        )
    )
    shutil.copyfile(path, out / "dag-latest.json")
    print(f"\nresult: {path}")
    return 0 if result["run_state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
