"""An agency's deployment at scale: N sandbox shops with platform events on the production shape.

    python -m bench.scale_bench --shops 20          (make bench-scale SHOPS=20)

The production shape of `deploy.prod_local` (PostgreSQL metadata and warehouse, CeleryExecutor on
Redis, API server, scheduler, DAG processor, triggerer, two workers) serving N shops, each with its
own sandbox (frozen clock at first), webhooks to the API server's receiver and its Redis doorbell.
Phases, each measured as CPU-seconds of every process of every component and its children (from
/proc: a process tree's own and reaped children's time), PostgreSQL's and Redis's included:

1. warm-up (not measured): one pipeline run per shop (a first run sweeps);
2. idle: nothing runs for `--idle` seconds (what the scheduler, DAG processor and triggerer cost
   by themselves);
3. events: the pipeline DAGs paused, the sandboxes' clocks run `--clock-rate` times the wall clock
   for `--events` seconds: fulfillers ship, the platforms send their webhooks, each shop's event DAG
   wakes; then the clocks stop and the last wakes finish;
4. scheduled: one more pipeline run per shop (incremental, as a scheduled run is), started
   `--run-gap` seconds apart (by default the gap between the starts of 200 shops' runs, their
   schedules spread over the interval as the shops file spreads them), until all are done.

Per scheduled run: the phase's CPU less the idle rate over its length, divided by the runs it
completed. The webhook receiver's cost is priced per delivery, not per wake: a shop's platforms send
a webhook for every change of every order, most of which wake nothing, and at the compressed clock a
wake follows `--clock-rate` times the deliveries a real one does. So the events phase's API-server
CPU, less its idle share and less the execution API's share of its task instances (the scheduled
phase's API-server CPU per task instance), is the receiver's; divided by the webhooks received, the
CPU-s per delivery. A wake costs the events phase's CPU less the idle rate and less the receiver's
deliveries that woke nothing, over the wakes (so its own waking deliveries are in it); the model
adds the deliveries that wake nothing at the rate the living shops sent them per shop-day, and
scheduled runs at the rate of the shops file's default schedule for a shop with events. Also: task
instances per run kind, scheduler lag (queued -> running) p50/p95 over every task instance, event ->
tracking (a webhook received -> the end of the run that claimed it and posted tracking) p95,
PostgreSQL connections per component (most seen at once), and the model for 50 and 200 shops from
the measured inputs and the week simulation's wakes per shop-day
(docs/results/simulate-week-events.json). Writes bench/results/scale-<N>.json (docs: Performance,
"Scale").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline_bench import RESULTS, log, revision
from deploy.prod_local import Deployment, Processes, api_token, down, scratch, session_members, up

REPO = Path(__file__).resolve().parents[1]
WEEK = REPO / "docs" / "results" / "simulate-week-events.json"
TICK = os.sysconf("SC_CLK_TCK")
TERMINAL = ("success", "failed")
# the model's shape of a day (the week simulation's peak hour over its average)
PEAK = 1.82
HEAD_START = 5400  # seconds of the living shops' time before the warm-up


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu(pids: list[int]) -> float:
    """CPU-seconds of these processes and of their children they reaped (utime, stime, cutime,
    cstime): summed over every live process of a tree, each second counts once."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None and fields[0] not in ("Z", "X"):
            total += sum(int(v) for v in fields[11:15])
    return total / TICK


def children_of(root: int) -> list[int]:
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(fields[1])].append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def service_pid(name: str) -> int | None:
    """The oldest process called `name` (PostgreSQL's postmaster, the Redis server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == name and (fields := _stat(int(entry.name))) is not None:
                found.append((int(fields[19]), int(entry.name)))
    return min(found)[1] if found else None


class Meter:
    """CPU-seconds per component of the deployment, and of PostgreSQL and Redis."""

    def __init__(self, dep: Deployment):
        self.procs = Processes(dep)
        self.services = {"postgresql": service_pid("postgres"), "redis": service_pid("redis-server")}

    def read(self) -> dict[str, float]:
        out = {}
        for name, record in self.procs.records().items():
            if not name.startswith("sandbox-"):  # the platforms' stand-ins are not orderops's cost
                out[name] = tree_cpu(session_members(record["pid"]))
        for name, pid in self.services.items():
            if pid is not None:
                out[name] = tree_cpu(children_of(pid))
        return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 2) for k in after}


class Connections:
    """PostgreSQL connections per component, sampled while a phase runs (the most seen at once), in
    all and per database (Airflow's metadata, the warehouse)."""

    def __init__(self, dep: Deployment):
        self.dep = dep
        self.most: Counter = Counter()
        self.by_database: dict[str, Counter] = {"metadata": Counter(), "warehouse": Counter()}
        self.stop = threading.Event()

    def _owner(self, pid: int, sessions: dict[int, str]) -> str:
        fields = _stat(pid)
        sid = int(fields[3]) if fields else -1
        return sessions.get(sid, "other")

    def sample(self) -> None:
        import psutil
        import psycopg2

        conn = psycopg2.connect(self.dep.pg_url + "/postgres")
        conn.autocommit = True
        try:
            while not self.stop.wait(2):
                sessions = {r["pid"]: name for name, r in Processes(self.dep).records().items()}
                ports = {
                    c.laddr.port: c.pid
                    for c in psutil.net_connections("tcp")
                    if c.pid and c.raddr and c.raddr.port == 5432
                }
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT client_port, datname FROM pg_stat_activity WHERE datname IN (%s, %s)",
                        (self.dep.airflow_db, self.dep.warehouse_db),
                    )
                    found = [
                        (
                            self._owner(ports.get(port, -1), sessions),
                            "metadata" if db == self.dep.airflow_db else "warehouse",
                        )
                        for port, db in cur.fetchall()
                    ]
                seen = Counter(name for name, _ in found)
                for name, n in seen.items():
                    self.most[name] = max(self.most[name], n)
                self.most["total"] = max(self.most["total"], sum(seen.values()))
                for database, most in self.by_database.items():
                    here = Counter(name for name, db in found if db == database)
                    for name, n in here.items():
                        most[name] = max(most[name], n)
                    most["total"] = max(most["total"], sum(here.values()))
        finally:
            conn.close()


class Airflow:
    def __init__(self, dep: Deployment):
        token = api_token(dep)
        self.api = httpx.Client(base_url=dep.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120)

    def pause(self, dag_id: str, paused: bool, timeout: float = 600) -> None:
        """Pause or unpause, once the DAG processor has found the DAG."""
        end = time.monotonic() + timeout
        while (answer := self.api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": paused})).status_code == 404:
            if time.monotonic() > end:
                break
            time.sleep(3)
        answer.raise_for_status()

    def trigger(self, dag_id: str) -> str:
        answer = self.api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        answer.raise_for_status()
        return answer.json()["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.api.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 1000}).json()["dag_runs"]

    def tasks(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}).json()[
            "task_instances"
        ]

    def wait(self, dag_ids: list[str], timeout: float) -> None:
        """Until no run of these DAGs is queued or running (then a moment more: a run's last task
        process ends after the run's state is set)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(r["state"] in TERMINAL for d in dag_ids for r in self.runs(d)):
                time.sleep(10)
                return
            time.sleep(3)
        raise TimeoutError(f"runs of {len(dag_ids)} DAGs still going after {timeout:.0f} s")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "count": 0}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "count": len(ordered),
    }


def stream(shops: list[dict], done: threading.Event) -> None:
    """The living shops move as their sandboxes are asked anything: ask each every second, so
    their orders arrive, ship and send their webhooks as the clock passes them."""
    with httpx.Client(timeout=30) as client:
        while not done.wait(1):
            for shop in shops:
                try:
                    client.get(f"{shop['tiktok']}/_sandbox/clock")
                except httpx.HTTPError:
                    pass


def set_clocks(shops: list[dict], rate: float) -> None:
    """Every sandbox's clock at one moment (the first's) and rate."""
    now = httpx.get(f"{shops[0]['tiktok']}/_sandbox/clock", timeout=30).json()["now"]
    for shop in shops:
        httpx.post(f"{shop['tiktok']}/_sandbox/clock", json={"now": now, "rate": rate}, timeout=30).raise_for_status()


def model(inputs: dict, shops: int) -> dict:
    """Cores for `shops` shops from the measured inputs, in all and by component: average and peak
    (PEAK x average); task instances a second and the task slots they keep busy."""
    wakes, runs = inputs["wakes_per_shop_day"], inputs["runs_per_shop_day"]
    wake, run, idle = (
        inputs[k] for k in ("event_wake_by_component", "scheduled_run_by_component", "idle_by_component")
    )
    by_component = {
        name: shops * (wakes * wake.get(name, 0.0) + runs * run.get(name, 0.0)) / 86400 + shops * idle.get(name, 0.0)
        for name in {**wake, **run, **idle}
    }
    by_component["api-server"] = (
        by_component.get("api-server", 0.0)
        + shops * inputs["idle_deliveries_per_shop_day"] * inputs["cpu_s_per_webhook_delivery"] / 86400
    )
    average = sum(by_component.values())
    rate = shops * (wakes * inputs["task_instances"]["event"] + runs * inputs["task_instances"]["scheduled"])
    slots = shops * (wakes * inputs["slot_seconds"]["event"] + runs * inputs["slot_seconds"]["scheduled"]) / 86400
    return {
        "cores": round(average, 2),
        "peak_cores": round(average * PEAK, 2),
        "by_component": {k: round(v, 3) for k, v in sorted(by_component.items(), key=lambda kv: -kv[1])},
        "task_instances_per_second": round(rate / 86400, 2),
        "peak_task_instances_per_second": round(rate * PEAK / 86400, 2),
        "task_slots": round(slots, 2),
        "peak_task_slots": round(slots * PEAK, 2),
    }


def run_scale(
    shops_n: int,
    orders_per_day: int,
    fulfiller_speed: float,
    idle: float,
    events: float,
    clock_rate: float,
    run_gap: float,
    out: Path,
) -> dict:
    dep = scratch(
        "scale",
        "redis://127.0.0.1:6379/10",
        schedule=True,
        sandbox_shops=shops_n,
        sandbox_events=True,
        sandbox_life={"days": 3, "orders_per_day": orders_per_day, "fulfiller_speed": fulfiller_speed},
        sandbox_schedule="0 0 1 1 *",  # runs are started by this benchmark, not by the cron
    )
    state = dep.root
    try:
        t0 = time.monotonic()
        log(f"{shops_n} shops: starting the production shape under {state}")
        up(dep, fresh=True, timeout=1800)
        log(f"{shops_n} shops: up in {time.monotonic() - t0:.0f} s")
        airflow = Airflow(dep)
        names = [f"shop-{i}" for i in range(1, shops_n + 1)]
        pipelines = [f"orderops_sla_{n.replace('-', '_')}" for n in names]
        wakes = [f"orderops_events_{n.replace('-', '_')}" for n in names]
        sandboxes = [json.loads((state / "sandbox" / n / "urls.json").read_text()) for n in names]
        meter, pg = Meter(dep), Connections(dep)
        sampler = threading.Thread(target=pg.sample, daemon=True)
        sampler.start()

        # a head start: the shops' first hours (orders arrive and reach their fulfillers; the platforms
        # announce them) before the warm-up, so the events phase has shipments from its start
        for shop in sandboxes:
            httpx.post(f"{shop['tiktok']}/_sandbox/clock", json={"advance_seconds": HEAD_START}, timeout=60)
            httpx.get(f"{shop['tiktok']}/_sandbox/clock", timeout=300)
        for dag_id in pipelines:
            airflow.pause(dag_id, False)
            airflow.trigger(dag_id)
        airflow.wait(pipelines, 3600)
        # the event runs the warm-up's own writes woke (the platforms announce them), and the reports
        airflow.wait([*pipelines, *wakes, "orderops_sla_report"], 1800)
        log(f"{shops_n} shops: warm-up runs done ({time.monotonic() - t0:.0f} s)")

        before = meter.read()
        time.sleep(idle)
        idle_cpu = _delta(meter.read(), before)

        for dag_id in pipelines:
            airflow.pause(dag_id, True)
        for dag_id in wakes:
            airflow.pause(dag_id, False)
        before, started = meter.read(), time.monotonic()
        phase_start = datetime.now(timezone.utc)
        set_clocks(sandboxes, clock_rate)
        living = threading.Event()
        threading.Thread(target=stream, args=(sandboxes, living), daemon=True).start()
        time.sleep(events)
        set_clocks(sandboxes, 0)
        living.set()
        clocks_stopped = datetime.now(timezone.utc)
        time.sleep(60)  # the last webhooks, their debounce and their wakes
        airflow.wait(wakes, 1800)
        events_wall = time.monotonic() - started
        events_cpu = _delta(meter.read(), before)
        log(f"{shops_n} shops: events phase {events_wall:.0f} s")

        # the pipeline's runs after the shops' hours of orders, shipments and wakes
        for dag_id in wakes:
            airflow.pause(dag_id, True)
        for dag_id in pipelines:
            airflow.pause(dag_id, False)
        before, started = meter.read(), time.monotonic()
        scheduled_ids = {}
        for i, dag_id in enumerate(pipelines):
            time.sleep(max(0.0, started + i * run_gap - time.monotonic()))
            scheduled_ids[dag_id] = airflow.trigger(dag_id)
        airflow.wait(pipelines, 3600)
        scheduled_wall = time.monotonic() - started
        scheduled_cpu = _delta(meter.read(), before)
        pg.stop.set()
        log(f"{shops_n} shops: scheduled phase {scheduled_wall:.0f} s")

        scheduled_runs = [r for d in pipelines for r in airflow.runs(d) if r["dag_run_id"] == scheduled_ids[d]]
        event_runs = [
            r
            for d in wakes
            for r in airflow.runs(d)
            if datetime.fromisoformat(r["queued_at"] or r["run_after"]) >= phase_start
        ]
        raw = {
            "revision": revision(),
            "when": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            "shops": shops_n,
            "orders_per_shop_day": orders_per_day,
            "fulfiller_speed": fulfiller_speed,
            "clock_rate": clock_rate,
            "clock_seconds": events,
            "run_gap": run_gap,
            "runs_per_shop_day": runs_per_shop_day(),
            "idle": {"seconds": idle, "cpu_s": idle_cpu},
            "scheduled": {"seconds": scheduled_wall, "cpu_s": scheduled_cpu, "runs": scheduled_runs},
            "events": {"seconds": events_wall, "cpu_s": events_cpu, "runs": event_runs},
            "task_instances": {
                r["dag_run_id"]: airflow.tasks(r["dag_id"], r["dag_run_id"]) for r in scheduled_runs + event_runs
            },
            "platform_events": warehouse_events(dep, phase_start, clocks_stopped + timedelta(seconds=60)),
            "postgresql_connections": dict(pg.most),
            "postgresql_connections_by_database": {db: dict(most) for db, most in pg.by_database.items()},
            "postgresql_max_connections": max_connections(dep),
            "workers": dep.workers,
            "worker_concurrency": dep.concurrency,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / f"scale-{shops_n}-raw.json").write_text(json.dumps(raw, default=str))
        return analyse(raw)
    finally:
        log(f"{shops_n} shops: stopping everything")
        down(dep, purge=True)
        shutil.rmtree(state, ignore_errors=True)


def max_connections(dep: Deployment) -> int:
    import psycopg2

    with psycopg2.connect(dep.pg_url + "/postgres") as conn, conn.cursor() as cur:
        cur.execute("SHOW max_connections")
        return int(cur.fetchone()[0])


def warehouse_events(dep: Deployment, start: datetime, end: datetime) -> dict:
    """The waking events each run claimed, those claimed by runs that posted tracking (when
    received), and the deliveries received from `start` to `end` by platform and whether they woke
    (Amazon's come through its queue, read by the triggerer), from the warehouse."""
    import sqlalchemy as sa

    engine = sa.create_engine(dep.db_url(dep.warehouse_db))
    try:
        with engine.connect() as conn:
            posted = conn.execute(
                sa.text(
                    "SELECT e.run_id, e.received_at FROM platform_events e WHERE e.wakes AND e.run_id IN ("
                    "SELECT run_id FROM action_ledger WHERE kind = 'post_tracking' AND state = 'succeeded')"
                )
            ).all()
            claimed = conn.execute(
                sa.text("SELECT run_id, count(*) FROM platform_events WHERE wakes GROUP BY run_id")
            ).all()
            received = conn.execute(
                sa.text(
                    "SELECT platform, wakes, count(*) FROM platform_events"
                    " WHERE received_at >= :start AND received_at < :end GROUP BY platform, wakes"
                ),
                {"start": start, "end": end},
            ).all()
    finally:
        engine.dispose()
    return {
        "posted": [[run_id, received.isoformat()] for run_id, received in posted],
        "claimed": {run_id: n for run_id, n in claimed if run_id},
        "received": [[platform, bool(wakes), n] for platform, wakes, n in received],
    }


def runs_per_shop_day() -> float:
    """Scheduled runs a day of a shop with events on the shops file's default schedule."""
    from include.run.shops import default_schedule, schedule_interval

    return 86400 / schedule_interval(default_schedule("shop", events=True)).total_seconds()


def _per_run(idle: dict, phase: dict, runs: int) -> dict[str, float]:
    """A phase's CPU-seconds per run by component, less each component's idle rate over the phase."""
    if not runs:
        return {}
    return {
        name: (phase["cpu_s"].get(name, 0.0) - idle["cpu_s"].get(name, 0.0) / idle["seconds"] * phase["seconds"]) / runs
        for name in {**idle["cpu_s"], **phase["cpu_s"]}
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def analyse(raw: dict) -> dict:
    """The figures and the model from a run's raw measurements (bench/results/scale-<N>-raw.json)."""
    shops_n, idle = raw["shops"], raw["idle"]["seconds"]
    idle_rate = sum(raw["idle"]["cpu_s"].values()) / idle
    scheduled, events = raw["scheduled"], raw["events"]
    per_run: dict[str, list[int]] = {"scheduled": [], "event": []}
    busy: dict[str, list[float]] = {"scheduled": [], "event": []}  # a run's task instances' seconds in a slot
    lags = []
    for kind, runs in (("scheduled", scheduled["runs"]), ("event", events["runs"])):
        for r in runs:
            found = raw["task_instances"][r["dag_run_id"]]
            per_run[kind].append(len(found))
            busy[kind].append(sum(ti.get("duration") or 0.0 for ti in found))
            lags += [s for ti in found if (s := _seconds(ti.get("queued_when"), ti.get("start_date"))) is not None]
    wakes = len(events["runs"])
    cpu_run = (sum(scheduled["cpu_s"].values()) - idle_rate * scheduled["seconds"]) / len(scheduled["runs"])
    # the receiver: the events phase's API-server CPU less its idle share and its task instances' share
    api_idle = raw["idle"]["cpu_s"].get("api-server", 0.0) / idle
    api_per_ti = (scheduled["cpu_s"].get("api-server", 0.0) - api_idle * scheduled["seconds"]) / max(
        1, sum(per_run["scheduled"])
    )
    receiver = events["cpu_s"].get("api-server", 0.0) - api_idle * events["seconds"]
    receiver -= api_per_ti * sum(per_run["event"])
    webhooks = [(waking, n) for platform, waking, n in raw["platform_events"]["received"] if platform != "amazon_mcf"]
    delivered = sum(n for _, n in webhooks)
    per_delivery = max(0.0, receiver) / delivered if delivered else 0.0
    idle_deliveries = sum(n for waking, n in webhooks if not waking)
    cpu_wake = (
        (sum(events["cpu_s"].values()) - idle_rate * events["seconds"] - per_delivery * idle_deliveries) / wakes
        if wakes
        else None
    )
    shop_days = shops_n * raw["clock_seconds"] * raw["clock_rate"] / 86400
    # by component: a phase's CPU less the idle rate over it, per run; a wake's API server less the
    # deliveries that woke nothing
    wake_parts = _per_run(raw["idle"], events, wakes)
    if wakes:
        wake_parts["api-server"] = wake_parts.get("api-server", 0.0) - per_delivery * idle_deliveries / wakes
    run_parts = _per_run(raw["idle"], scheduled, len(scheduled["runs"]))
    ended = {r["dag_run_id"]: r["end_date"] for r in events["runs"] if r.get("end_date")}
    waits = [
        (datetime.fromisoformat(ended[run_id]) - datetime.fromisoformat(received)).total_seconds()
        for run_id, received in raw["platform_events"]["posted"]
        if run_id in ended
    ]
    per_wake = [float(raw["platform_events"]["claimed"].get(r["dag_run_id"], 0)) for r in events["runs"]]
    week = json.loads(WEEK.read_text())
    inputs = {
        "cpu_s_per_event_wake": cpu_wake,
        "cpu_s_per_scheduled_run": cpu_run,
        "idle_cores_per_shop": idle_rate / shops_n,
        "event_wake_by_component": wake_parts,
        "scheduled_run_by_component": run_parts,
        "idle_by_component": {name: cpu / idle / shops_n for name, cpu in raw["idle"]["cpu_s"].items()},
        "slot_seconds": {k: statistics.fmean(v) if v else 0.0 for k, v in busy.items()},
        "wakes_per_shop_day": week["with_events"]["extraction"]["event"] / week["with_events"]["settings"]["days"],
        "runs_per_shop_day": raw["runs_per_shop_day"],
        "cpu_s_per_webhook_delivery": per_delivery,
        "idle_deliveries_per_shop_day": idle_deliveries / shop_days,
        "task_instances": {k: statistics.median(v) if v else 0 for k, v in per_run.items()},
    }
    return {
        "shops": shops_n,
        "orders_per_shop_day": raw["orders_per_shop_day"],
        "fulfiller_speed": raw["fulfiller_speed"],
        "cpu_s_per_event_wake": round(cpu_wake, 2) if cpu_wake is not None else None,
        "cpu_s_per_scheduled_run": round(cpu_run, 2),
        "cpu_s_per_webhook_delivery": round(per_delivery, 4),
        "webhook_deliveries": {
            "received": delivered,
            "woke": delivered - idle_deliveries,
            "per_shop_day": round(delivered / shop_days, 1),
        },
        "task_instances": {k: inputs["task_instances"][k] for k in ("scheduled", "event")},
        "scheduler_lag_s": {k: v for k, v in _quantiles(lags).items() if k != "count"},
        "event_to_tracking_s": _quantiles(waits),
        "waking_events_per_wake": {
            **_quantiles(per_wake),
            "mean": round(statistics.fmean(per_wake), 2) if per_wake else None,
        },
        "model": {str(n): model(inputs, n) for n in (50, 200)},
        "inputs": _rounded(inputs),
        "phases": {
            "idle": {"seconds": idle, "cpu_s": raw["idle"]["cpu_s"], "cores": round(idle_rate, 3)},
            "scheduled": {
                "seconds": round(scheduled["seconds"], 1),
                "cpu_s": scheduled["cpu_s"],
                "runs": len(scheduled["runs"]),
                "run_gap_s": raw["run_gap"],
                "states": dict(Counter(r["state"] for r in scheduled["runs"])),
            },
            "events": {
                "seconds": round(events["seconds"], 1),
                "cpu_s": events["cpu_s"],
                "wakes": wakes,
                "cpu_s_per_wake": {k: round(v, 3) for k, v in wake_parts.items()},
                "states": dict(Counter(r["state"] for r in events["runs"])),
                "clock_rate": raw["clock_rate"],
            },
        },
        "postgresql_connections": raw["postgresql_connections"],
        "postgresql_connections_by_database": raw.get("postgresql_connections_by_database", {}),
        "postgresql_max_connections": raw["postgresql_max_connections"],
        "workers": raw["workers"],
        "worker_concurrency": raw["worker_concurrency"],
    }


def render(r: dict) -> str:
    lines = [
        f"shops                         {r['shops']} (living, {r['orders_per_shop_day']} orders a day each)",
        f"CPU-s per event wake          {r['cpu_s_per_event_wake']}",
        f"CPU-s per scheduled run       {r['cpu_s_per_scheduled_run']}",
        f"CPU-s per webhook delivery    {r['cpu_s_per_webhook_delivery']} ({r['webhook_deliveries']})",
        f"task instances per run        {r['task_instances']}",
        f"scheduler lag (s)             {r['scheduler_lag_s']}",
        f"event -> tracking (s)         {r['event_to_tracking_s']}",
        f"waking events per wake        {r['waking_events_per_wake']}",
        f"PostgreSQL connections (most) {r['postgresql_connections']} of {r['postgresql_max_connections']}",
    ]
    for n, m in r["model"].items():
        lines.append(f"model {n:>3} shops with events   {m}")
    for name, phase in r["phases"].items():
        lines.append(f"phase {name:<9} {json.dumps({k: v for k, v in phase.items() if k != 'cpu_s'})}")
        lines.append(f"  cpu-s by component {json.dumps(phase['cpu_s'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--orders-per-day", type=int, default=1000, help="a living shop's orders a day (%(default)s)")
    parser.add_argument("--fulfiller-speed", type=float, default=20, help="x the fulfillers' pace (%(default)s)")
    parser.add_argument("--idle", type=float, default=180, help="seconds of the idle phase (default %(default)s)")
    parser.add_argument("--events", type=float, default=300, help="seconds the clocks run (default %(default)s)")
    parser.add_argument("--clock-rate", type=float, default=10, help="sandbox seconds a second (%(default)s)")
    parser.add_argument(
        "--run-gap",
        type=float,
        default=None,
        help="seconds between the scheduled runs' starts (default: 200 shops' runs spread over their interval)",
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--from-raw", help="analyse a run's raw file again (bench/results/scale-<N>-raw.json)")
    args = parser.parse_args(argv)
    if args.shops < 1:
        parser.error("--shops: expected 1 or more")
    if args.from_raw:
        result = analyse(json.loads(Path(args.from_raw).read_text()))
        args.shops = result["shops"]
    else:
        shape = (args.orders_per_day, args.fulfiller_speed)
        gap = args.run_gap if args.run_gap is not None else 86400 / runs_per_shop_day() / 200
        result = run_scale(args.shops, *shape, args.idle, args.events, args.clock_rate, gap, Path(args.out))
    print(render(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # the code measured: a run analysed again keeps its own
    measured = json.loads(Path(args.from_raw).read_text()) if args.from_raw else {}
    stamp = measured.get("when") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "when": stamp,
        "revision": measured.get("revision") or revision(),
        "python": sys.version.split()[0],
        **result,
    }
    path = out / f"scale-{args.shops}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
