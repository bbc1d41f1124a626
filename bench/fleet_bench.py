"""200 shops configured on the production shape: do their DAGs parse within their timeouts, and do
their runs complete?

    python -m bench.fleet_bench --shops 200 --sandboxes 10 --sample 20   (make bench-fleet SHOPS=200 ...)

The production shape of `deploy.prod_local` (PostgreSQL metadata and warehouse, CeleryExecutor on
Redis, API server, scheduler, DAG processor, triggerer, two workers) with N shops taking platform
events, served by K sandboxes (shop i on sandbox (i - 1) % K + 1; a shop sharing its sandbox with an
earlier shop is a dry-run shop: deploy/prod_local.py), generated scenarios, clocks frozen, the shops'
cron out of the way (runs are started here). It measures:

1. the DAGs: pipeline and event DAGs loaded (the API's /api/v2/dags) and the import errors
   (/api/v2/importErrors), once every shop's DAGs are in;
2. every parse of every DAG file, as the DAG processor's stats table in its log records it (each
   `print_stats_interval`, 30 s): the wall time of the file's processor process, which
   `dag_file_processor_timeout` bounds (the API's `last_parse_duration` of a DAG is the same figure,
   but a file without DAGs has none), by phase: start-up, idle, sample;
3. idle: once no run is in flight (the SLA report's first run starts at once), nothing runs for
   `--idle` seconds; CPU-seconds per component (bench.scale_bench.Meter);
   the triggers running in the triggerer (a doorbell per shop) and the triggerer's resident memory;
4. the sample: `--sample` pipeline runs of shops spread over every DAG file, started `--spacing`
   seconds apart (3,600 / N: as N hourly shops' runs start), waited for; each run's state,
   duration and task instances; then the event wakes their writes caused. Beside the sample's
   starts, event DAGs of the shops in turn are started at the model's rate of wakes for N shops
   (`--wake-rate`, from bench/results/scale-20.json: its wakes a shop-day x N / 86,400), so the
   scheduler is asked for the task instances a second the model counts for N shops with events:
   the wait from queued to running of every task instance queued in that window, and the
   scheduler's CPU-s a task instance over the phase. A started wake finds no events (the inbox is
   empty): it costs Airflow what a wake does, less the work.

PostgreSQL connections per component (the most seen at once) over phases 3 and 4. Writes
bench/results/fleet-<N>.json (docs: Performance, "Scale") and the raw measurements beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from bench.pipeline_bench import REPO, RESULTS, log, revision
from bench.scale_bench import TERMINAL, Airflow, Connections, Meter, _delta, _quantiles, _seconds, max_connections
from deploy.prod_local import Deployment, Processes, down, scratch, session_members, shop_sandbox, up
from deploy.sizing import SCALE_RESULT
from include.airflow.sla_dag import SHARDS, shard_of
from include.run.shops import EVENTS_PREFIX, REPORT_DAG_ID, Shop

PAGE = 100  # the API's largest page ([api] maximum_page_limit)
# a row of the DAG processor's "DAG File Processing Stats": bundle, file, [pid, current duration,]
# DAGs, errors, last duration, last run at (UTC)
STATS_ROW = re.compile(
    r"^\S+\s+(?P<file>\S+\.py)\s+(?:\d+\s+)?(?:[\d.]+s\s+)?(?P<dags>\d+)\s+(?P<errors>\d+)\s+"
    r"(?P<seconds>[\d.]+)s\s+(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\s*$",
    re.M,
)


def processor_parses(log_text: str) -> list[dict]:
    """Every parse the DAG processor's stats tables show: one row per file and finish time."""
    found = {}
    for m in STATS_ROW.finditer(log_text):
        found[m["file"], m["at"]] = {
            "file": m["file"],
            "at": m["at"],
            "seconds": float(m["seconds"]),
            "dags": int(m["dags"]),
            "errors": int(m["errors"]),
        }
    return sorted(found.values(), key=lambda p: (p["at"], p["file"]))


def sample_shops(shops_n: int, sample: int) -> list[str]:
    """`sample` shops spread over every DAG file: the files in turn, each file's shops in order (so
    the first shops on their sandboxes, the ones that write, come first in each file)."""
    by_file: dict[int, list[str]] = {shard: [] for shard in range(SHARDS)}
    for i in range(1, shops_n + 1):
        name = f"shop-{i}"
        by_file[shard_of(Shop(name).dag_id)].append(name)
    chosen: list[str] = []
    while len(chosen) < min(sample, shops_n):
        for names in by_file.values():
            if names and len(chosen) < sample:
                chosen.append(names.pop(0))
    return chosen


def model_rates(shops_n: int) -> tuple[float, float | None]:
    """Wakes and task instances a second for `shops_n` shops as the scale benchmark's model counts
    them (0 and None without it; task instances only for the sizes it models)."""
    if not SCALE_RESULT.exists():
        return 0.0, None
    scale = json.loads(SCALE_RESULT.read_text())
    modelled = scale["model"].get(str(shops_n), {}).get("task_instances_per_second")
    return scale["inputs"]["wakes_per_shop_day"] * shops_n / 86_400, modelled


def start_wakes(dep: Deployment, shops_n: int, rate: float, stop: threading.Event, refused: list[str]) -> list[str]:
    """Start the shops' event DAGs in turn, `rate` a second, until `stop`; the run ids started, and
    in `refused` why a start was not."""
    started: list[str] = []
    try:
        fleet = Fleet(dep)
    except Exception as exc:  # noqa: BLE001 - recorded: the result shows no wake started, and why
        refused.append(f"no API client: {exc}")
        return started
    t0, n = time.monotonic(), 0
    while rate > 0 and not stop.wait(max(0.0, t0 + n / rate - time.monotonic())):
        try:
            started.append(fleet.trigger(Shop(f"shop-{n % shops_n + 1}").events_dag_id))
        except Exception as exc:  # noqa: BLE001 - a refused start is recorded, not fatal
            refused.append(str(exc)[:200])
        n += 1
    return started


def queued_between(dep: Deployment, start: datetime, end: datetime) -> list[dict]:
    """Every task instance queued in [start, end): when queued and when it started running."""
    rows = metadata(
        dep,
        "SELECT dag_id, queued_dttm, start_date FROM task_instance WHERE queued_dttm >= %s AND queued_dttm < %s",
        (start, end),
    )
    return [{"dag_id": d, "queued": q.isoformat(), "started": s and s.isoformat()} for d, q, s in rows]


class Fleet(Airflow):
    """The API reads of this benchmark, every page of each."""

    def pages(self, path: str, key: str, **params) -> list[dict]:
        found: list[dict] = []
        while True:
            answer = self.api.get(path, params={**params, "limit": PAGE, "offset": len(found)})
            answer.raise_for_status()
            page = answer.json()[key]
            found += page
            if len(page) < PAGE:
                return found

    def dags(self) -> list[dict]:
        return [
            {k: d[k] for k in ("dag_id", "relative_fileloc", "last_parse_duration", "is_paused")}
            for d in self.pages("/api/v2/dags", "dags")
        ]

    def import_errors(self) -> list[dict]:
        return [
            {"filename": e["filename"], "error": e["stack_trace"][-500:]}
            for e in self.pages("/api/v2/importErrors", "import_errors")
        ]


def wait_loaded(fleet: Fleet, shops_n: int, timeout: float) -> list[dict]:
    """Until every shop's pipeline and event DAG is in (or the timeout: what loaded is measured)."""
    end = time.monotonic() + timeout
    while True:
        dags = fleet.dags()
        kinds = Counter(dag_kind(d["dag_id"]) for d in dags)
        if (kinds["pipeline"] >= shops_n and kinds["event"] >= shops_n) or time.monotonic() > end:
            return dags
        time.sleep(10)


def dag_kind(dag_id: str) -> str:
    if dag_id.startswith(EVENTS_PREFIX):
        return "event"
    return "other" if dag_id == REPORT_DAG_ID else "pipeline"


def triggers(dep: Deployment) -> list[dict]:
    """The metadata's triggers by class, and how many a triggerer runs."""
    import psycopg2

    with psycopg2.connect(dep.db_url(dep.airflow_db, driver="postgresql")) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT classpath, count(*), count(triggerer_id) FROM trigger GROUP BY classpath ORDER BY classpath"
        )
        return [{"classpath": c, "count": n, "running": r} for c, n, r in cur.fetchall()]


def session_rss(dep: Deployment, name: str) -> int:
    """Resident bytes of every process of the component's session."""
    import psutil

    total = 0
    for pid in session_members(Processes(dep).records()[name]["pid"]):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total


def metadata(dep: Deployment, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows from the metadata database: read there, not through the API server, whose load is
    part of what is measured (and which 200 shops' work can slow past a client's timeout)."""
    import psycopg2

    with psycopg2.connect(dep.db_url(dep.airflow_db, driver="postgresql")) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def runs_of(dep: Deployment, where: str, args: tuple) -> list[dict]:
    """Runs as the API shows them (the fields this benchmark reads)."""
    rows = metadata(
        dep, f"SELECT dag_id, run_id, state, queued_at, start_date, end_date FROM dag_run WHERE {where}", args
    )
    keys = ("dag_id", "dag_run_id", "state", "queued_at", "start_date", "end_date")
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in zip(keys, row, strict=True)} for row in rows
    ]


def wait_runs(dep: Deployment, started: dict[str, str], end: float) -> list[dict]:
    """The runs `started` ({dag_id: run_id}) once all are done, or as they are at `end` (monotonic)."""
    while True:
        runs = runs_of(dep, "run_id = ANY(%s)", (list(started.values()),))
        if all(r["state"] in TERMINAL for r in runs) or time.monotonic() > end:
            return runs
        time.sleep(5)


def task_states(dep: Deployment, run_ids: list[str]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {r: [] for r in run_ids}
    for run_id, state in metadata(dep, "SELECT run_id, state FROM task_instance WHERE run_id = ANY(%s)", (run_ids,)):
        found[run_id].append({"state": state})
    return found


def _now() -> str:
    """UTC now as the processor's stats table writes its times."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def wakes_of(dep: Deployment, since: datetime) -> list[dict]:
    """The event DAGs' runs queued since `since`: their events' (asset-triggered) and the ones this
    benchmark started."""
    return runs_of(dep, "dag_id LIKE %s AND queued_at >= %s", (EVENTS_PREFIX + "%", since))


def run_fleet(
    shops_n: int,
    sandboxes: int,
    sample: int,
    idle: float,
    spacing: float,
    sample_timeout: float,
    wake_rate: float,
    redis_url: str,
    out: Path,
) -> dict:
    dep = scratch(
        "fleet",
        redis_url,
        schedule=True,
        sandbox_shops=shops_n,
        sandboxes=sandboxes,
        sandbox_events=True,
        sandbox_schedule="0 0 1 1 *",  # runs are started by this benchmark, not by the cron
    )
    state, settings = dep.root, dep.airflow_settings()
    try:
        t0 = time.monotonic()
        log(f"{shops_n} shops on {dep.sandbox_count} sandboxes: starting the production shape under {state}")
        up(dep, fresh=True, timeout=1800)
        up_seconds = time.monotonic() - t0
        fleet = Fleet(dep)
        dags = wait_loaded(fleet, shops_n, 1800)
        loaded_seconds = time.monotonic() - t0
        log(f"{len(dags)} DAGs in after {loaded_seconds:.0f} s (up in {up_seconds:.0f} s)")
        errors = {"loaded": fleet.import_errors()}
        # the SLA report's first run (its daily schedule starts one at once) is not idle
        end = time.monotonic() + 1800
        while runs_of(dep, "state NOT IN ('success', 'failed')", ()) and time.monotonic() < end:
            time.sleep(10)
        meter, pg = Meter(dep), Connections(dep)
        sampler = threading.Thread(target=pg.sample, daemon=True)
        sampler.start()

        phases = {"idle": [_now()]}
        before = meter.read()
        time.sleep(idle)
        idle_cpu = _delta(meter.read(), before)
        found_triggers, triggerer_rss = triggers(dep), session_rss(dep, "triggerer")
        phases["idle"].append(_now())
        dags, errors["idle"] = fleet.dags(), fleet.import_errors()
        log(f"idle {idle:.0f} s: {sum(idle_cpu.values()):.1f} CPU-s")

        chosen = sample_shops(shops_n, sample)
        phases["sample"] = [_now()]
        before, sample_t0 = meter.read(), time.monotonic()
        window_start, stop_wakes, probes, refused = datetime.now(timezone.utc), threading.Event(), [], []
        prober = threading.Thread(
            target=lambda: probes.extend(start_wakes(dep, shops_n, wake_rate, stop_wakes, refused)), daemon=True
        )
        prober.start()
        started: dict[str, str] = {}
        for n, name in enumerate(chosen):
            if n:
                time.sleep(spacing)
            dag_id = Shop(name).dag_id
            started[dag_id] = fleet.trigger(dag_id)
        time.sleep(spacing)  # the window is the starts' and one spacing more: the last run's tasks
        stop_wakes.set()
        prober.join()
        window = (window_start, datetime.now(timezone.utc))
        end = time.monotonic() + sample_timeout
        runs = wait_runs(dep, started, end)
        log(f"sample: {dict(Counter(r['state'] for r in runs))} ({time.monotonic() - t0:.0f} s)")
        # the wakes the sample's writes caused (the platforms announce them, the doorbell waits its
        # debounce out), as they are after a while
        time.sleep(60)
        end = max(end, time.monotonic() + 60)
        wakes = wakes_of(dep, window[0])
        while any(r["state"] not in TERMINAL for r in wakes) and time.monotonic() < end:
            time.sleep(10)
            wakes = wakes_of(dep, window[0])
        phases["sample"].append(_now())
        sample_cpu, sample_seconds = _delta(meter.read(), before), time.monotonic() - sample_t0
        probe_runs = runs_of(dep, "run_id = ANY(%s)", (probes,))
        pg.stop.set()
        found = metadata(dep, "SELECT filename, stacktrace FROM import_error")
        errors["sample"] = [{"filename": f, "error": e[-500:]} for f, e in found]
        time.sleep(35)  # the processor's next stats table
        raw = {
            "shops": shops_n,
            "sandboxes": dep.sandbox_count,
            "dag_file_processor_timeout": float(settings["AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT"]),
            "dagbag_import_timeout": float(settings["AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT"]),
            "min_file_process_interval": float(settings["AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL"]),
            "up_seconds": up_seconds,
            "loaded_seconds": loaded_seconds,
            "dag_files": sorted(p.name for p in (REPO / "dags").glob("*.py")),
            "dags": dags,
            "phases": phases,
            "parses": processor_parses((dep.logs / "dag-processor.log").read_text(errors="replace")),
            "import_errors": errors,
            "idle": {"seconds": idle, "cpu_s": idle_cpu},
            "triggers": found_triggers,
            "triggerer_rss_bytes": triggerer_rss,
            "sample": {
                "spacing_seconds": spacing,
                "seconds": sample_seconds,
                "cpu_s": sample_cpu,
                "wake_rate": wake_rate,
                "model_task_instances_per_s": model_rates(shops_n)[1],
                "window": [t.isoformat() for t in window],
                "started_wakes": probe_runs,
                "refused_wakes": refused,
                "queued": queued_between(dep, *window),
                "runs": runs,
                "task_instances": task_states(dep, [r["dag_run_id"] for r in runs]),
            },
            "wakes": wakes,
            "postgresql_connections": dict(pg.most),
            "postgresql_max_connections": max_connections(dep),
            "workers": dep.workers,
            "worker_concurrency": dep.concurrency,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / f"fleet-{shops_n}-raw.json").write_text(json.dumps(raw, default=str))
        return raw
    finally:
        log(f"{shops_n} shops: stopping everything")
        down(dep, purge=True)
        shutil.rmtree(state, ignore_errors=True)


def analyse(raw: dict) -> dict:
    """The figures from a run's raw measurements (bench/results/fleet-<N>-raw.json)."""
    shops_n, sandboxes = raw["shops"], raw["sandboxes"]
    timeout = raw["dag_file_processor_timeout"]
    kinds = Counter(dag_kind(d["dag_id"]) for d in raw["dags"])
    files: dict[str, dict] = {}
    for parse in raw["parses"]:
        f = files.setdefault(parse["file"], {"dags": 0, "parses": 0, "max_s": {}})
        f["dags"], f["parses"] = parse["dags"], f["parses"] + 1  # the DAGs of its last parse
        phase = phase_of(parse["at"], raw["phases"])
        f["max_s"][phase] = max(f["max_s"].get(phase, 0.0), parse["seconds"])
    files = dict(sorted(files.items()))
    slowest = max((s for f in files.values() for s in f["max_s"].values()), default=None)
    errors = {when: len(found) for when, found in raw["import_errors"].items()}
    idle = raw["idle"]
    doorbells = sum(t["running"] for t in raw["triggers"] if t["classpath"].endswith("DoorbellTrigger"))
    runs = raw["sample"]["runs"]
    dry = {r["dag_id"] for r in runs if is_shared(r["dag_id"], sandboxes)}
    per_run = []
    for r in runs:
        tis = raw["sample"]["task_instances"].get(r["dag_run_id"], [])
        took = _seconds(r.get("start_date"), r.get("end_date"))
        queued = _seconds(r.get("queued_at"), r.get("start_date"))
        per_run.append(
            {
                "dag_id": r["dag_id"],
                "file": f"orderops_sla_shard_{shard_of(r['dag_id'])}.py",
                "dry_run": r["dag_id"] in dry,
                "state": r["state"],
                "seconds": None if took is None else round(took, 1),
                "queued_s": None if queued is None else round(queued, 1),
                "task_instances": len(tis),
                "task_states": dict(Counter(str(ti.get("state")) for ti in tis)),
            }
        )
    probes = {r["dag_run_id"] for r in raw["sample"].get("started_wakes", [])}
    caused = [r for r in raw["wakes"] if r["dag_run_id"] not in probes]
    states = Counter(r["state"] for r in runs)
    durations = [r["seconds"] for r in per_run if r["seconds"] is not None]
    return {
        "shops": shops_n,
        "sandboxes": sandboxes,
        "dry_run_shops": shops_n - sandboxes,
        "dag_files": len(raw["dag_files"]),
        "dags": {**{k: kinds[k] for k in ("pipeline", "event", "other")}, "total": sum(kinds.values())},
        "all_dags_loaded": kinds["pipeline"] == shops_n and kinds["event"] == shops_n,
        "import_errors": errors,
        "import_error_files": sorted({e["filename"] for found in raw["import_errors"].values() for e in found}),
        "parse": {
            "files": files,
            "parses": len(raw["parses"]),
            "slowest_s": slowest,
            "dag_file_processor_timeout_s": timeout,
            "dagbag_import_timeout_s": raw["dagbag_import_timeout"],
            "headroom": round(timeout / slowest, 1) if slowest else None,
            "within_timeout": slowest is not None and slowest < timeout,
        },
        "up_s": round(raw["up_seconds"]),
        "dags_loaded_s": round(raw["loaded_seconds"]),
        "idle": phase_cpu(idle["cpu_s"], idle["seconds"]),
        "triggers": {
            "doorbells_running": doorbells,
            "running": sum(t["running"] for t in raw["triggers"]),
            "by_class": {t["classpath"]: t["running"] for t in raw["triggers"]},
            "triggerer_rss_mib": round(raw["triggerer_rss_bytes"] / 2**20),
        },
        "postgresql_connections": raw["postgresql_connections"],
        "postgresql_max_connections": raw["postgresql_max_connections"],
        "sample": {
            "runs": len(runs),
            "dry_runs": len(dry),
            "files": len({r["file"] for r in per_run}),
            "spacing_s": raw["sample"]["spacing_seconds"],
            "states": dict(states),
            "all_succeeded": bool(runs) and set(states) == {"success"},
            "seconds": {
                "p50": round(statistics.median(durations), 1) if durations else None,
                "max": max(durations, default=None),
            },
            "task_instances": sorted({r["task_instances"] for r in per_run}),
            # the sample's starts to its wakes' end: 200 hourly shops' run rate with what their writes wake
            "cpu": phase_cpu(raw["sample"]["cpu_s"], raw["sample"]["seconds"]) if "cpu_s" in raw["sample"] else None,
            "each": per_run,
        },
        "wakes": {"runs": len(caused), "states": dict(Counter(r["state"] for r in caused))},
        "load": load(raw["sample"], raw["wakes"], raw["idle"]),
        "workers": raw["workers"],
        "worker_concurrency": raw["worker_concurrency"],
    }


def load(sample: dict, wakes: list[dict], idle: dict) -> dict | None:
    """The load in the sample's window: the wakes started beside the runs, the task instances queued
    a second, and their wait from queued to running; and the scheduler's CPU-s a task instance over
    the whole phase less its idle rate (the sample's task instances, and every event run's: one
    each), with what that makes of the model's rate."""
    if "window" not in sample:
        return None
    run = sum(len(tis) for tis in sample["task_instances"].values()) + len(wakes)
    idle_rate = idle["cpu_s"].get("scheduler", 0.0) / idle["seconds"]
    busy = max(0.0, sample["cpu_s"].get("scheduler", 0.0) - idle_rate * sample["seconds"])
    per_ti = busy / run if run else None
    modelled = sample.get("model_task_instances_per_s")
    seconds = _seconds(*sample["window"]) or 0.0
    queued = sample["queued"]
    lags = [s for ti in queued if (s := _seconds(ti["queued"], ti["started"])) is not None]
    started = sample["started_wakes"]
    return {
        "seconds": round(seconds, 1),
        "wake_rate": round(sample["wake_rate"], 3),
        "wakes_started": len(started),
        "wakes_started_states": dict(Counter(r["state"] for r in started)),
        "wakes_refused": len(sample.get("refused_wakes", [])),
        "task_instances": len(queued),
        "task_instances_per_s": round(len(queued) / seconds, 2) if seconds else None,
        "model_task_instances_per_s": sample.get("model_task_instances_per_s"),
        "never_ran": len(queued) - len(lags),
        "queued_to_running_s": _quantiles(lags),
        "scheduler_cpu_s_per_task_instance": None if per_ti is None else round(per_ti, 3),
        "scheduler_cores_at_model_rate": None if per_ti is None or modelled is None else round(per_ti * modelled, 2),
    }


def phase_cpu(cpu_s: dict[str, float], seconds: float) -> dict:
    """A phase's CPU-seconds by component, and as cores over its wall time."""
    return {
        "seconds": round(seconds, 1),
        "cpu_s": cpu_s,
        "cores": {k: round(v / seconds, 3) for k, v in cpu_s.items()},
        "total_cores": round(sum(cpu_s.values()) / seconds, 3),
    }


def phase_of(at: str, phases: dict[str, list[str]]) -> str:
    """The phase a parse that finished at `at` belongs to: before the idle phase is the start-up."""
    for name, (start, end) in phases.items():
        if start <= at <= end:
            return name
    return "start-up" if at < phases["idle"][0] else "after"


def is_shared(dag_id: str, sandboxes: int) -> bool:
    """Whether the shop of a pipeline DAG `orderops_sla_shop_<i>` shares its sandbox with an earlier shop."""
    index = int(dag_id.rsplit("_", 1)[1])
    return shop_sandbox(index, sandboxes) != index


def render(r: dict) -> str:
    parse, sample, trig = r["parse"], r["sample"], r["triggers"]
    lines = [
        f"shops                 {r['shops']} on {r['sandboxes']} sandboxes ({r['dry_run_shops']} dry-run shops)",
        f"DAG files             {r['dag_files']}; DAGs {r['dags']} (all in: {r['all_dags_loaded']}, "
        f"{r['dags_loaded_s']} s after start)",
        f"import errors         {r['import_errors']} {r['import_error_files'] or ''}",
        f"parse, slowest file   {parse['slowest_s']} s of {parse['dag_file_processor_timeout_s']:g} s "
        f"(headroom {parse['headroom']}x)",
    ]
    for name, f in parse["files"].items():
        lines.append(f"  {name:28s} {f['dags']:>4} DAGs {f['parses']:>3} parses, slowest {json.dumps(f['max_s'])}")
    lines += [
        f"idle cores            {r['idle']['total_cores']} over {r['idle']['seconds']:g} s: "
        + json.dumps(r["idle"]["cores"]),
        f"triggers running      {trig['running']} ({trig['doorbells_running']} doorbells); "
        f"triggerer {trig['triggerer_rss_mib']} MiB",
        f"PostgreSQL (most)     {r['postgresql_connections']} of {r['postgresql_max_connections']}",
        f"sample runs           {sample['runs']} over {sample['files']} files, {sample['spacing_s']:g} s apart: "
        f"{sample['states']}, seconds {sample['seconds']}, task instances {sample['task_instances']}",
        f"event wakes after     {r['wakes']}",
    ]
    if r["load"]:
        ld = r["load"]
        lines.append(
            f"load                  {ld['wakes_started']} wakes started ({ld['wake_rate']}/s), "
            f"{ld['task_instances']} task instances queued over {ld['seconds']:g} s "
            f"({ld['task_instances_per_s']}/s, model {ld['model_task_instances_per_s']}/s), never ran "
            f"{ld['never_ran']}; queued to running {ld['queued_to_running_s']}; scheduler "
            f"{ld['scheduler_cpu_s_per_task_instance']} CPU-s a task instance, "
            f"{ld['scheduler_cores_at_model_rate']} cores at the model's rate"
        )
    if sample["cpu"]:
        lines.append(
            f"sample cores          {sample['cpu']['total_cores']} over {sample['cpu']['seconds']:g} s: "
            + json.dumps(sample["cpu"]["cores"])
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=200)
    parser.add_argument("--sandboxes", type=int, default=10, help="sandbox processes serving them (%(default)s)")
    parser.add_argument("--sample", type=int, default=20, help="pipeline runs started (%(default)s)")
    parser.add_argument("--idle", type=float, default=180, help="seconds of the idle phase (%(default)s)")
    parser.add_argument("--spacing", type=float, help="seconds between the sample's starts (3600 / shops)")
    parser.add_argument(
        "--sample-timeout", type=float, default=3600, help="seconds the sample's runs are waited for (%(default)s)"
    )
    parser.add_argument(
        "--wake-rate", type=float, help="event wakes started a second beside the sample (the model's for N shops)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11", help="broker (%(default)s)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--from-raw", help="analyse a run's raw file again (bench/results/fleet-<N>-raw.json)")
    args = parser.parse_args(argv)
    if args.shops < 1 or args.sandboxes < 1 or args.sample < 1:
        parser.error("--shops, --sandboxes, --sample: expected 1 or more")
    out = Path(args.out)
    if args.from_raw:
        raw = json.loads(Path(args.from_raw).read_text())
    else:
        spacing = 3600 / args.shops if args.spacing is None else args.spacing
        rate = model_rates(args.shops)[0] if args.wake_rate is None else args.wake_rate
        raw = run_fleet(
            args.shops, args.sandboxes, args.sample, args.idle, spacing, args.sample_timeout, rate, args.redis_url, out
        )
    result = analyse(raw)
    print(render(result))
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    doc = {"when": stamp, "revision": revision(), "python": sys.version.split()[0], **result}
    path = out / f"fleet-{result['shops']}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
