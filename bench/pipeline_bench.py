"""Pipeline benchmark: a whole run against the sandbox at the documented quotas, with figures.

    python -m bench.pipeline_bench --sizes 1000,10000,50000      (make bench SIZES=...)

For each size a generated scenario (`sandbox.generate`, the realistic mix) is served by
the sandbox in its own process (documented quotas, clock frozen), and a fresh process runs
`include.run.pipeline.run_all` against it on a fresh warehouse, so the peak memory and CPU time are
the pipeline's alone. The run does side by side what the DAG does side by side (the three
listings after TikTok's; the action groups and cancellation sagas, `--lanes` chunks of each at a
time like a pool of that many slots); `--lanes 1` runs every step in turn. Figures per size: wall
time and time per step; API calls per platform and operation (the client's count, with retries and
429s, beside the sandbox's); calls per order; the
quota-bound lower bound and measured / bound; 429s; peak RSS; CPU time of join + decide alone;
and the calls (and quota time) of the procedure automated order by order. DAG file parse times
are measured in fresh interpreters. The table goes to stdout, everything to
bench/results/pipeline-<time>-<rev>.{json,csv} (and pipeline-latest.*) for comparison.

The quota-bound lower bound (`lower_bound`): every platform meters calls in buckets - TikTok per
endpoint (50/s), Shopify one points bucket (2,000 points, 100/s restored), Amazon one token
bucket per operation (e.g. 2/s, burst 30), ShipBob one sliding window per token (150 per 60 s).
A bucket that must serve N units (calls, or points actually charged for Shopify) with rate r
and burst B needs at least max(0, (N - B) / r) seconds; a sliding window of L per W seconds needs
floor((N - 1) / L) x W. Buckets refill independently, so if every platform and operation ran
concurrently at its full rate the run could not finish sooner than the slowest bucket: that
maximum is the bound, and the bucket that sets it is named. N counts the calls the run actually
made (minus the ones answered 429), so the bound judges how well the run spends the quota;
calls per order and the order-by-order comparison judge how few calls it needs. The `phased`
bound adds what the pipeline's data dependencies impose: extraction, then decisions, then
actions, each phase starting with at most one burst in every bucket; it is the sum of each
phase's slowest bucket. Latency, CPU time and the Amazon report's processing time are not in
either bound (they are what the ratio exposes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
NOW = "2026-11-20T15:00:00Z"
WINDOW = ("2026-11-20T14:30:00Z", NOW)
SANDBOX_APPS = ("tiktok", "tiktok_auth", "shopify", "amazon_mcf", "amazon_lwa", "shipbob", "amazon_sqs")
PLATFORMS = ("tiktok", "shopify", "amazon_mcf", "shipbob")
# Pipeline steps as run_all calls them, and the phase of the data flow each belongs to.
PHASES = {
    "prepare_run": "extract",
    "extract_tiktok": "extract",
    "extract_shopify": "extract",
    "extract_amazon": "extract",
    "extract_shipbob": "extract",
    "validate_staged": "validate",
    "join_and_decide": "decide",
    "act": "act",
    "cancel_at_fulfiller": "act",
    "verify_cancellations": "act",
    "refund_and_approve": "act",
    "record_api_calls": "summary",
    "summarize_run": "summary",
}
# What one order costs when a person's procedure is automated as is: one Shopify lookup by TikTok
# id (actual points of a lookup that finds one order: connection 2 + order 2) and one read of the
# fulfillment order at its fulfiller.
LOOKUP_POINTS = 4.0


PROGRESS = sys.stderr


def log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=PROGRESS, flush=True)


# ----------------------------------------------------------------------------- quota model
def quota_buckets() -> dict[str, Any]:
    """The sandbox's documented quotas at rate_scale 1, read from the simulators themselves."""
    from sandbox import amazon_mcf, shipbob, shopify, tiktok

    return {
        "tiktok": {"rate": float(tiktok.DEFAULT_SETTINGS["qps"]), "burst": float(tiktok.DEFAULT_SETTINGS["qps"])},
        "shopify": {
            "rate": float(shopify.DEFAULTS["restore_rate"]),
            "burst": float(shopify.DEFAULTS["maximum_available"]),
        },
        "amazon_mcf": {op: {"rate": float(r), "burst": float(b)} for op, (r, b) in amazon_mcf.QUOTAS.items()},
        "shipbob": {
            "limit": int(shipbob.DEFAULTS["rate_limit"]),
            "window": float(shipbob.DEFAULTS["rate_window_seconds"]),
        },
    }


def bucket_seconds(units: float, rate: float, burst: float) -> float:
    return max(0.0, (units - burst) / rate)


def window_seconds(calls: int, limit: int, window: float) -> float:
    return ((calls - 1) // limit) * window if calls > 0 else 0.0


def demand(
    calls: dict[tuple[str, str], int], throttled: dict[tuple[str, str], int], shopify_points: float
) -> dict[str, float]:
    """Units each bucket must serve: "platform:bucket" -> calls (points for Shopify)."""
    quotas = quota_buckets()
    out: dict[str, float] = defaultdict(float)
    for (platform, op), n in calls.items():
        served = n - throttled.get((platform, op), 0)
        if served <= 0:
            continue
        if platform == "tiktok" and "token" not in op:  # the auth host is not metered per endpoint
            out[f"tiktok:{op}"] += served
        elif platform == "amazon_mcf" and op in quotas["amazon_mcf"]:
            out[f"amazon_mcf:{op}"] += served
        elif platform == "shipbob":
            out["shipbob:token"] += served
    if shopify_points:
        out["shopify:points"] = shopify_points
    return dict(out)


def bucket_times(units: dict[str, float]) -> dict[str, float]:
    quotas = quota_buckets()
    times = {}
    for bucket, n in units.items():
        platform, _, op = bucket.partition(":")
        if platform == "shipbob":
            times[bucket] = window_seconds(int(n), quotas["shipbob"]["limit"], quotas["shipbob"]["window"])
        elif platform == "amazon_mcf":
            q = quotas["amazon_mcf"][op]
            times[bucket] = bucket_seconds(n, q["rate"], q["burst"])
        else:
            q = quotas[platform]
            times[bucket] = bucket_seconds(n, q["rate"], q["burst"])
    return times


def lower_bound(units: dict[str, float]) -> tuple[float, str]:
    times = bucket_times(units)
    if not times:
        return 0.0, "-"
    bucket = max(times, key=times.get)
    return times[bucket], bucket


# ----------------------------------------------------------------------------- sandbox process
class SandboxProcess:
    """`python -m sandbox serve` on free ports: documented quotas, scenario clock frozen."""

    def __init__(self, scenario: Path, workdir: Path, source: str = "--scenario"):
        """`source` --life serves a living shop (the file holds its LifeSettings) instead."""
        ports = [arg for app in SANDBOX_APPS for arg in ("--port", f"{app}=0")]
        self.log_path = workdir / "sandbox.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", source, str(scenario), "--clock-rate", "0", *ports],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.urls: dict[str, str] = {}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"sandbox exited early; see {self.log_path}")
            parts = line.split()
            if len(parts) == 2 and parts[0] in SANDBOX_APPS:
                self.urls[parts[0]] = parts[1]
            if line.strip().startswith("NOTE: quotas scaled"):
                raise RuntimeError("the sandbox is not at the documented quotas")
            if parts and parts[0] == "admin":
                break
        if set(self.urls) != set(SANDBOX_APPS):
            raise RuntimeError(f"sandbox did not report its ports; see {self.log_path}")

    def admin(self, path: str, method: str = "GET") -> Any:
        import httpx

        return httpx.request(method, f"{self.urls['tiktok']}/_sandbox/{path}", timeout=60).json()

    def calls(self) -> tuple[dict, dict]:
        doc = self.admin("calls")
        return (
            {(c["platform"], c["operation"]): c["count"] for c in doc["calls"]},
            {(c["platform"], c["operation"]): c["count"] for c in doc["throttled"]},
        )

    def rss_mib(self) -> float | None:
        try:
            import psutil

            return psutil.Process(self.proc.pid).memory_info().rss / 2**20
        except Exception:
            return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


# ----------------------------------------------------------------------------- one size (child process)
class LoadSampler:
    """The machine's 1-minute load average, sampled while the run lasts: figures taken on a busy
    machine (other jobs on the same cores) are slower than the code is, and say so."""

    def __init__(self, every: float = 5.0):
        import threading

        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"cpus": os.cpu_count(), "mean": statistics.fmean(self.samples), "max": max(self.samples)}


class Probe:
    """Wraps the pipeline steps run_all calls: wall time per step, calls and points per phase."""

    def __init__(self, pipeline, sandbox: SandboxProcess, platforms):
        from include.act import saga

        self.sandbox, self.platforms = sandbox, platforms
        self.modules = {name: saga if hasattr(saga, name) else pipeline for name in PHASES}  # where run_all finds each
        self.step_seconds: Counter = Counter()
        self.step_calls: Counter = Counter()
        self.lock = threading.Lock()  # run_all may run steps on several threads
        self.phase = None
        self.phase_marks: list[tuple[str, dict, dict, float]] = []
        self.phase_started: list[tuple[str, float]] = []
        self.originals = {}
        for name, module in self.modules.items():
            self.originals[name] = getattr(module, name)
            setattr(module, name, self._wrap(name, self.originals[name]))

    def _points(self) -> float:
        return sum(self.platforms.get("shopify").points.values())

    def mark(self, phase: str | None) -> None:
        self.phase_started.append((phase or "end", time.perf_counter()))
        calls, throttled = self.sandbox.calls()
        self.phase_marks.append((phase or "end", calls, throttled, self._points()))
        self.phase = phase

    def _wrap(self, name, fn):
        def timed(*args, **kwargs):
            with self.lock:
                if PHASES[name] != self.phase:
                    self.mark(PHASES[name])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.step_seconds[name] += time.perf_counter() - start
                    self.step_calls[name] += 1

        return timed

    def restore(self) -> None:
        for name, fn in self.originals.items():
            setattr(self.modules[name], name, fn)

    def phase_seconds(self) -> dict[str, float]:
        """Wall time from one phase's first step to the next phase's (steps of a phase may overlap)."""
        out: Counter = Counter()
        for (phase, start), (_, end) in zip(self.phase_started, self.phase_started[1:], strict=False):
            out[phase] += end - start
        return dict(out)

    def phase_units(self) -> dict[str, dict[str, float]]:
        """Bucket units per phase, from the sandbox's counts at each phase change."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (phase, c0, t0, p0), (_, c1, t1, p1) in zip(self.phase_marks, self.phase_marks[1:], strict=False):
            calls = {k: v - c0.get(k, 0) for k, v in c1.items()}
            throttled = {k: v - t0.get(k, 0) for k, v in t1.items()}
            for bucket, n in demand(calls, throttled, p1 - p0).items():
                out[phase][bucket] += n
        return {phase: dict(units) for phase, units in out.items()}


def _stage_all_tiktok(platforms) -> list[dict]:
    """Every TikTok order of the scenario as staged rows (outside the measured run)."""
    from include.extract import staging

    rows = []
    for order in platforms.tiktok().search_orders({}, page_size=100):
        try:
            row = staging.tiktok_order_row(order)
        except staging.BadRecord:
            continue
        row.update(
            shop="default",
            snapshot_run_id="bench",
            extracted_at=None,
            source_request_id=None,
            delivery_option_id=row.pop("raw").get("delivery_option_id"),
        )  # as `snapshot` reads it
        rows.append(row)
    return rows


def time_join_decide(pipeline, settings, platforms, wh, tiktok_rows: list[dict], repeats: int = 3) -> dict:
    """CPU seconds of Joiner(...) over the staged rows + join + decide for every TikTok row, alone.

    The staged rows are read from the warehouse and the carrier maps fetched first (not timed):
    what is timed is the in-memory linking and the rules. Best of `repeats`.
    """
    from include.act import saga
    from include.act.ledger import Ledger
    from include.decide.join import Joiner
    from include.decide.rules import decide
    from include.run.runconfig import now_for
    from include.store.run_store import RunStore
    from include.store.warehouse import (
        stg_amazon_fulfillment_orders,
        stg_shipbob_orders,
        stg_shopify_orders,
        stg_tiktok_cancellations,
    )

    now = now_for(settings)
    ledger = Ledger(wh)
    sagas = saga.states(ledger, settings.shop)
    maps, default_map = pipeline.carrier_maps(settings, platforms, wh, tiktok_rows)
    store = RunStore(wh, settings)
    since = store.in_play_since(now)
    staged = store.latest_state(
        (stg_shopify_orders, stg_amazon_fulfillment_orders, stg_shipbob_orders, stg_tiktok_cancellations), since
    )
    cpu, wall, rules = [], [], Counter()
    for attempt in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        joiner = Joiner(*staged, maps, default_map, sagas)
        decisions = [decide(joiner.join(row)[0], settings.policy, now) for row in tiktok_rows]
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        if attempt == 0:
            rules = Counter(d.rule for d in decisions)
    return {
        "orders": len(tiktok_rows),
        "cpu_seconds": min(cpu),
        "wall_seconds": min(wall),
        "rules": dict(sorted(rules.items())),
    }


def order_by_order(
    tiktok_rows: list[dict], links: list[dict], act_units: dict[str, float], act_calls: int, listing_calls: int
) -> dict:
    """Calls and quota time if each order in the two queues were worked alone, as a person does:
    the same TikTok listing, then per order one Shopify lookup and one fulfiller lookup, then the
    same writes as orderops makes."""
    from include.decide.enums import TIKTOK_SHIPPABLE_STATUSES

    pending = {r["tiktok_order_id"] for r in tiktok_rows if r["is_buyer_request_cancel"]}
    queue = [
        r["tiktok_order_id"]
        for r in tiktok_rows
        if r["fulfillment_type"] == "FULFILLMENT_BY_SELLER"
        and (r["status"] in TIKTOK_SHIPPABLE_STATUSES or r["tiktok_order_id"] in pending)
    ]
    fulfiller = {link["tiktok_order_id"]: link["fulfiller"] for link in links}
    matched = {link["tiktok_order_id"] for link in links if link["shopify_order_ids"]}
    amazon = sum(1 for t in queue if fulfiller.get(t) == "amazon_mcf")
    shipbob = sum(1 for t in queue if fulfiller.get(t) == "shipbob")
    # an order whose Shopify match is missing still costs its lookup; a fulfiller is looked up only when known
    unknown = sum(1 for t in queue if t in matched and fulfiller.get(t) is None)
    reads = len(queue) + amazon + shipbob + unknown
    units = dict(act_units)
    units["shopify:points"] = units.get("shopify:points", 0.0) + LOOKUP_POINTS * len(queue)
    units["amazon_mcf:getFulfillmentOrder"] = units.get("amazon_mcf:getFulfillmentOrder", 0.0) + amazon + unknown
    units["shipbob:token"] = units.get("shipbob:token", 0.0) + shipbob
    bound, bucket = lower_bound(units)
    return {
        "orders_in_queues": len(queue),
        "extraction_calls": listing_calls + reads,
        "calls": listing_calls + reads + act_calls,
        "lower_bound_seconds": bound,
        "bound_by": bucket,
    }


def run_one(size: int, seed: int, warehouse_url: str | None, full_decide: bool, lanes: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"orderops-bench-{size}-"))
    os.environ.update(
        {"AIRFLOW_HOME": str(workdir / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "TQDM_DISABLE": "1"}
    )
    import logging

    logging.basicConfig(level=logging.WARNING)
    from sandbox.connections import connection_env
    from sandbox.generate import generate

    started = time.perf_counter()
    scenario_path = workdir / "scenario.json"
    scenario_path.write_text(json.dumps(generate(size, seed=seed, now=NOW)))
    log(f"{size} orders: scenario written ({time.perf_counter() - started:.1f} s); starting the sandbox")
    sandbox = SandboxProcess(scenario_path, workdir)
    schema = None
    try:
        os.environ.update(connection_env(sandbox.urls))
        import sqlalchemy as sa

        import include.run.pipeline as pipeline
        from include.run.platforms import Platforms
        from include.run.runconfig import run_settings
        from include.store.run_store import RunStore
        from include.store.warehouse import Warehouse, latest_rows, order_links

        if warehouse_url and warehouse_url.startswith("postgresql"):
            import uuid

            schema = f"orderops_bench_{uuid.uuid4().hex[:10]}"
            admin = sa.create_engine(warehouse_url)
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            admin.dispose()
            url = f"{warehouse_url}{'&' if '?' in warehouse_url else '?'}options=-csearch_path%3D{schema}"
        else:
            url = warehouse_url or f"sqlite:///{workdir / 'warehouse.db'}"
        wh = Warehouse(url)
        for name in ("include", "great_expectations", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
        settings = run_settings(
            dag_id="orderops_sla",
            run_id=f"bench-{size}",
            params={"now": NOW, "window_start": WINDOW[0], "window_end": WINDOW[1]},
        )
        platforms = Platforms(settings)
        probe = Probe(pipeline, sandbox, platforms)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log(f"{size} orders: sandbox up ({time.perf_counter() - started:.1f} s); running the pipeline")
        load = LoadSampler()
        c0, w0 = time.process_time(), time.perf_counter()
        summary = pipeline.run_all(settings, platforms, wh, lanes=lanes)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        machine_load = load.stop()
        probe.mark(None)
        probe.restore()
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        log(f"{size} orders: run took {wall:.1f} s; measuring join + decide alone")
        sandbox_rss = sandbox.rss_mib()
        client_rows = platforms.stats_rows()
        points = dict(platforms.get("shopify").points)
        calls, throttled = probe.phase_marks[-1][1], probe.phase_marks[-1][2]

        phases = probe.phase_units()
        units = demand(calls, throttled, sum(points.values()))
        bound, bound_by = lower_bound(units)
        phase_bounds = {
            phase: dict(zip(("seconds", "bound_by"), lower_bound(u), strict=True)) for phase, u in phases.items()
        }
        # each phase bound holds on its own and so does the whole-run one: the larger one binds
        phased = max(bound, sum(p["seconds"] for p in phase_bounds.values()))

        by_platform: dict[str, dict[str, int]] = {p: Counter() for p in PLATFORMS}
        for row in client_rows:
            c = by_platform.setdefault(row["platform"], Counter())
            for key in ("calls", "retries", "throttled", "failures"):
                c[key] += row[key]
        extract_calls = {p: 0 for p in PLATFORMS}
        for (c_phase, c0_, _, _), (_, c1_, _, _) in zip(probe.phase_marks, probe.phase_marks[1:], strict=False):
            if c_phase == "extract":
                for (platform, op), n in c1_.items():
                    extract_calls[platform] += n - c0_.get((platform, op), 0)
        act_calls = 0
        act_marks = [(m, n) for m, n in zip(probe.phase_marks, probe.phase_marks[1:], strict=False) if m[0] == "act"]
        for (_, c0_, _, _), (_, c1_, _, _) in act_marks:
            act_calls += sum(n - c0_.get(k, 0) for k, n in c1_.items())

        tiktok_rows = RunStore(wh, settings).in_play_tiktok(raw_fields=("delivery_option_id",))
        with wh.engine.connect() as conn:
            in_play = [r["tiktok_order_id"] for r in tiktok_rows]
            links = [dict(r) for r in latest_rows(conn, order_links, settings.shop, in_play).values()]
        jd_staged = time_join_decide(pipeline, settings, platforms, wh, tiktok_rows)
        jd_all = None
        if full_decide:
            all_rows = _stage_all_tiktok(platforms)
            jd_all = time_join_decide(pipeline, settings, platforms, wh, all_rows)
            del all_rows
        naive = order_by_order(tiktok_rows, links, phases.get("act", {}), act_calls, extract_calls["tiktok"])
        total_calls = sum(calls.values())
        extraction_total = sum(extract_calls.values())
        result = {
            "size": size,
            "seed": seed,
            "warehouse": "postgresql" if schema else "sqlite",
            "lanes": lanes,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "steps": {name: round(probe.step_seconds[name], 3) for name in PHASES if probe.step_calls[name]},
            "phase_seconds": probe.phase_seconds(),
            "orders_staged": summary["orders_seen"],
            "decisions": summary["decisions"],
            "actions": summary["actions"],
            "calls_total": total_calls,
            "calls_per_order": total_calls / size,
            "extraction_calls": extract_calls,
            "extraction_calls_total": extraction_total,
            "extraction_calls_per_order": extraction_total / size,
            "calls_by_operation": [
                {"platform": p, "operation": o, "sandbox_calls": n, "sandbox_429": throttled.get((p, o), 0)}
                for (p, o), n in sorted(calls.items())
            ],
            "client_calls": client_rows,
            "client_by_platform": {p: dict(c) for p, c in by_platform.items()},
            "client_wait_seconds": {name: round(platforms.get(name).stats.wait_seconds, 2) for name in PLATFORMS},
            "shopify_points": points,
            "throttled_429": sum(throttled.values()),
            "client_throttled": sum(r["throttled"] for r in client_rows),
            "retries": sum(r["retries"] for r in client_rows),
            "bucket_units": units,
            "bucket_seconds": bucket_times(units),
            "lower_bound_seconds": bound,
            "bound_by": bound_by,
            "ratio": wall / bound if bound else None,
            "phase_bounds": phase_bounds,
            "phased_lower_bound_seconds": phased,
            "phased_ratio": wall / phased if phased else None,
            "peak_rss_mib": peak_rss,
            "rss_before_run_mib": rss_before,
            "sandbox_rss_mib": sandbox_rss,
            "join_decide_staged": jd_staged,
            "join_decide_all": jd_all,
            "order_by_order": naive,
            "run_state": summary["state"],
            "machine_load": machine_load,
        }
        platforms.close()
        wh.dispose()
        return result
    finally:
        sandbox.stop()
        if schema:
            import sqlalchemy as sa

            admin = sa.create_engine(warehouse_url)
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


# ----------------------------------------------------------------------------- DAG parse time
PARSE_PROBE = r"""
import json, sys, time
import airflow, airflow.sdk          # a DAG processor has both loaded before it parses a file
from airflow.dag_processing.dagbag import DagBag
start = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - start
print("PARSE " + json.dumps({"seconds": seconds, "dags": len(bag.dags),
                             "airflow_duration": sum(s.duration.total_seconds() for s in bag.dagbag_stats),
                             "errors": {k: str(v)[-300:] for k, v in bag.import_errors.items()}}))
"""


def parse_times(repeats: int = 3) -> dict[str, dict]:
    """Each DAG file parsed by DagBag in `repeats` fresh interpreters (Airflow imported first)."""
    home = Path(tempfile.mkdtemp(prefix="orderops-bench-parse-"))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    out = {}
    try:
        for path in sorted((REPO / "dags").glob("*.py")):
            runs = []
            for _ in range(repeats):
                proc = subprocess.run(
                    [sys.executable, "-c", PARSE_PROBE, str(path)],
                    cwd=REPO,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                line = next((out for out in proc.stdout.splitlines() if out.startswith("PARSE ")), None)
                if line is None:
                    raise RuntimeError(f"parsing {path.name} failed: {proc.stderr[-800:]}")
                runs.append(json.loads(line[6:]))
            out[path.name] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "airflow_duration": statistics.median(r["airflow_duration"] for r in runs),
                "dags": runs[0]["dags"],
                "errors": runs[0]["errors"],
            }
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table_rows(results: list[dict]) -> list[tuple[str, list[str]]]:
    rows: list[tuple[str, list[str]]] = []

    def add(label, fn):
        rows.append((label, [fn(r) for r in results]))

    add("wall time (s)", lambda r: _fmt(r["wall_seconds"]))
    add("warehouse, lanes per action group", lambda r: f"{r['warehouse']}, {r.get('lanes', 1)}")
    add(
        "machine load during run (mean/max, cores)",
        lambda r: f"{r['machine_load']['mean']:.1f}/{r['machine_load']['max']:.1f}, {r['machine_load']['cpus']}",
    )
    add("run CPU time (s)", lambda r: _fmt(r["cpu_seconds"]))
    for phase, label in (
        ("extract", "  extract (TikTok, then Shopify/Amazon/ShipBob)"),
        ("validate", "  validate (Great Expectations)"),
        ("decide", "  join and decide (+ ledger rows)"),
        ("act", "  act (all actions and sagas)"),
    ):
        add(label + " (s)", lambda r, p=phase: _fmt(r["phase_seconds"].get(p)))
    add("TikTok orders decided", lambda r: _fmt(r["orders_staged"]["tiktok_orders"]))
    add("API calls (sandbox count)", lambda r: _fmt(r["calls_total"]))
    for p in PLATFORMS:
        add(
            f"  {p}",
            lambda r, p=p: _fmt(sum(c["sandbox_calls"] for c in r["calls_by_operation"] if c["platform"] == p)),
        )
    add("calls per order", lambda r: _fmt(r["calls_per_order"], 3))
    add("extraction calls", lambda r: _fmt(r["extraction_calls_total"]))
    add("extraction calls per order", lambda r: _fmt(r["extraction_calls_per_order"], 4))
    add("Shopify points charged", lambda r: _fmt(sum(r["shopify_points"].values()), 0))
    add("quota lower bound (s)", lambda r: _fmt(r["lower_bound_seconds"]))
    add("  bound by", lambda r: r["bound_by"])
    add("measured / lower bound", lambda r: _fmt(r["ratio"], 2))
    add("lower bound with phase order (s)", lambda r: _fmt(r["phased_lower_bound_seconds"]))
    add("measured / bound with phase order", lambda r: _fmt(r["phased_ratio"], 2))
    add("429s received (sandbox)", lambda r: _fmt(r["throttled_429"]))
    add("429s seen by clients / retries", lambda r: f"{r['client_throttled']} / {r['retries']}")
    add("peak RSS, pipeline process (MiB)", lambda r: _fmt(r["peak_rss_mib"], 0))
    add("  sandbox process RSS (MiB)", lambda r: _fmt(r["sandbox_rss_mib"], 0))
    add(
        "join+decide CPU, staged orders (s)",
        lambda r: f"{r['join_decide_staged']['cpu_seconds']:.2f} ({r['join_decide_staged']['orders']:,})",
    )
    add(
        "join+decide CPU, all orders (s)",
        lambda r: (
            f"{r['join_decide_all']['cpu_seconds']:.2f} ({r['join_decide_all']['orders']:,})"
            if r["join_decide_all"]
            else "-"
        ),
    )
    add("order by order: calls", lambda r: _fmt(r["order_by_order"]["calls"]))
    add("  extraction calls", lambda r: _fmt(r["order_by_order"]["extraction_calls"]))
    add("  calls saved (x fewer)", lambda r: _fmt(r["order_by_order"]["calls"] / r["calls_total"], 1))
    add(
        "  extraction calls saved (x fewer)",
        lambda r: _fmt(r["order_by_order"]["extraction_calls"] / max(1, r["extraction_calls_total"]), 1),
    )
    add(
        "  quota lower bound (s)",
        lambda r: f"{r['order_by_order']['lower_bound_seconds']:,.0f} ({r['order_by_order']['bound_by']})",
    )
    return rows


def render(results: list[dict], parse: dict[str, dict] | None) -> str:
    rows = table_rows(results)
    head = ["metric", *[f"{r['size']:,} orders" for r in results]]
    widths = [max(len(head[0]), *(len(label) for label, _ in rows))]
    for i in range(len(results)):
        widths.append(max(len(head[i + 1]), *(len(v[i]) for _, v in rows)))
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for label, values in rows:
        lines.append(
            "  ".join([label.ljust(widths[0]), *(v.rjust(w) for v, w in zip(values, widths[1:], strict=True))])
        )
    for r in results:
        lines.append("")
        lines.append(f"{r['size']:,} orders: calls per operation (sandbox count; 429s among them)")
        for c in r["calls_by_operation"]:
            lines.append(
                f"  {c['platform']:11s} {c['operation']:45s} {c['sandbox_calls']:>7,}  429s {c['sandbox_429']:>4}"
            )
        lines.append(
            "  bucket time at full rate (s): "
            + ", ".join(f"{b} {s:,.1f}" for b, s in sorted(r["bucket_seconds"].items(), key=lambda kv: -kv[1]) if s > 0)
        )
        lines.append(
            "  phases: "
            + ", ".join(f"{p} {b['seconds']:,.1f} s ({b['bound_by']})" for p, b in r["phase_bounds"].items())
        )
    if parse:
        lines.append("")
        lines.append("DAG file parse time (DagBag, fresh interpreter, Airflow imported first; median of 3)")
        for name, p in parse.items():
            lines.append(
                f"  {name:32s} {p['seconds']:.3f} s  ({p['dags']} DAG{'s' if p['dags'] != 1 else ''}"
                f"{', errors: ' + '; '.join(p['errors'].values()) if p['errors'] else ''})"
            )
    return "\n".join(lines)


def revision() -> str:
    """The commit measured (with -dirty for uncommitted changes), for comparing versions."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return (rev or "norev") + ("-dirty" if dirty else "")
    except OSError:
        return "norev"


def write_results(results: list[dict], parse: dict | None, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    rev = revision()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    doc = {"when": stamp, "revision": rev, "python": sys.version.split()[0], "results": results, "dag_parse": parse}
    base = out_dir / f"pipeline-{stamp}-{rev}"
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(doc, indent=1, default=str))
    csv_path = base.with_suffix(".csv")
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["revision", "size", "metric", "value"])
        for r in results:
            flat = {
                "wall_seconds": r["wall_seconds"],
                "cpu_seconds": r["cpu_seconds"],
                "calls_total": r["calls_total"],
                "calls_per_order": r["calls_per_order"],
                "extraction_calls_total": r["extraction_calls_total"],
                "extraction_calls_per_order": r["extraction_calls_per_order"],
                "lower_bound_seconds": r["lower_bound_seconds"],
                "ratio": r["ratio"],
                "phased_lower_bound_seconds": r["phased_lower_bound_seconds"],
                "phased_ratio": r["phased_ratio"],
                "throttled_429": r["throttled_429"],
                "retries": r["retries"],
                "peak_rss_mib": r["peak_rss_mib"],
                "join_decide_staged_cpu_seconds": r["join_decide_staged"]["cpu_seconds"],
                "join_decide_staged_orders": r["join_decide_staged"]["orders"],
                "join_decide_all_cpu_seconds": (r["join_decide_all"] or {}).get("cpu_seconds"),
                "join_decide_all_orders": (r["join_decide_all"] or {}).get("orders"),
                "order_by_order_calls": r["order_by_order"]["calls"],
                "order_by_order_lower_bound_seconds": r["order_by_order"]["lower_bound_seconds"],
            }
            flat.update({f"step:{k}": v for k, v in r["steps"].items()})
            flat.update(
                {f"calls:{c['platform']}:{c['operation']}": c["sandbox_calls"] for c in r["calls_by_operation"]}
            )
            for key, value in flat.items():
                writer.writerow([rev, r["size"], key, value])
        for name, p in (parse or {}).items():
            writer.writerow([rev, "", f"dag_parse_seconds:{name}", p["seconds"]])
    for path in (json_path, csv_path):
        shutil.copyfile(path, out_dir / f"pipeline-latest{path.suffix}")
    return json_path, csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,10000,50000", help="comma-separated order counts (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--lanes",
        type=int,
        default=2,
        help="chunks of one action group at a time, as the DAG's pools allow (1: every step in "
        "turn); default %(default)s",
    )
    parser.add_argument(
        "--warehouse",
        default=None,
        help="SQLAlchemy URL (default: a fresh SQLite file); a PostgreSQL URL gets a fresh schema",
    )
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default %(default)s)")
    parser.add_argument("--no-parse", action="store_true", help="skip the DAG parse times")
    parser.add_argument(
        "--no-full-decide",
        action="store_true",
        help="skip join+decide over every TikTok order of the scenario (an extra listing after the run)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--log-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one is not None:  # child: one size in this process
        global PROGRESS
        if args.log_file:  # library output goes to the log file, progress lines to the terminal
            PROGRESS = os.fdopen(os.dup(2), "w", buffering=1)
            log_fh = open(args.log_file, "w")
            os.dup2(log_fh.fileno(), 1)
            os.dup2(log_fh.fileno(), 2)
        result = run_one(args.one, args.seed, args.warehouse, not args.no_full_decide, args.lanes)
        Path(args.result_file).write_text(json.dumps(result, default=str))
        return 0

    sizes = [int(s) for s in args.sizes.replace(" ", "").split(",") if s]
    results = []
    for size in sizes:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            result_file = fh.name
        log_file = Path(args.out) / "logs" / f"pipeline-{size}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "bench.pipeline_bench",
            "--one",
            str(size),
            "--seed",
            str(args.seed),
            "--lanes",
            str(args.lanes),
            "--result-file",
            result_file,
            "--log-file",
            str(log_file),
        ]
        if args.warehouse:
            cmd += ["--warehouse", args.warehouse]
        if args.no_full_decide:
            cmd.append("--no-full-decide")
        log(f"size {size}: starting")
        proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0:
            log(f"size {size}: failed (exit {proc.returncode}); see {log_file}")
            return proc.returncode
        results.append(json.loads(Path(result_file).read_text()))
        os.unlink(result_file)
    parse = None if args.no_parse else parse_times()
    print(render(results, parse))
    json_path, csv_path = write_results(results, parse, Path(args.out))
    print(
        f"\nresults: {json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path}, "
        f"{csv_path.name} (and pipeline-latest.*)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
