"""MkDocs hook: the measured figures' tables, rendered at build time from docs/results/*.json.

A page asks for a table with a marker on a line of its own, `<!-- table: NAME -->`; TABLES names
each table, the result file it reads and the function that renders it. Under every table goes a line
with the file's provenance (command, commit, date, machine). The result files keep the shape that
the commands write (`bench/results/pipeline-latest.json`, `bench/results/dag-latest.json`,
`bench/results/webhook-flood.json`, `state/simulate/summary.json`), plus a `provenance` object;
copying a new result file in and adding its provenance regenerates the tables.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).parents[1]
MARKER = re.compile(r"^<!-- table: ([a-z0-9-]+) -->$", re.M)


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _seconds(value) -> str:
    """Whole seconds from 1 s up, one decimal below (`0.5`)."""
    if value is None:
        return "-"
    return _num(value, 0 if value >= 1 else 1)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _bucket(name: str) -> str:
    platform, _, bucket = name.partition(":")
    names = {"shopify": "Shopify", "tiktok": "TikTok", "amazon_mcf": "Amazon MCF", "shipbob": "ShipBob"}
    return f"{names.get(platform, platform)} {'points' if bucket == 'points' else bucket}".strip()


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _when(doc: dict) -> str:
    """The date of a result file: its provenance, else the bench's `when` stamp (20261126T175810Z)."""
    date = (doc.get("provenance") or {}).get("date") or doc.get("when") or ""
    if re.fullmatch(r"\d{8}T\d{6}Z", date):
        date = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    return date or "date not recorded"


def shown(file: str) -> str:
    """A result file's path as a reader finds it in the repository."""
    return file if file.startswith("bench/") else f"docs/results/{file}"


def provenance(doc: dict, name: str) -> str:
    prov = doc.get("provenance") or {}
    commit = prov.get("commit") or doc.get("revision")
    parts = [
        f"`{prov['command']}`" if prov.get("command") else None,
        f"commit {commit}" if commit else "commit not recorded",
        _when(doc),
        prov.get("machine"),
    ]
    line = f"Source: `{shown(name)}`: " + ", ".join(p for p in parts if p) + "."
    notes = prov.get("notes") or []
    return line + "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


# ----------------------------------------------------------------------------- make simulate
def simulate_days(doc: dict) -> str:
    hand = {d["day"]: d for d in doc.get("sop_baseline", {}).get("days", [])}
    rows = []
    for d in doc["days"]:
        t = d["truth"]
        day = d["day"][5:] + ("" if d.get("complete", True) else " (open)")
        by_hand = hand.get(d["day"], {})
        rows.append(
            [
                day,
                _num(t["orders_due"]),
                _num(t.get("dispatched_late_scan")),
                _num(t.get("past_due_no_scan")),
                _pct(t.get("late_dispatch_rate_scan")),
                _pct(by_hand.get("late_dispatch_rate_scan")),
                _num(t["dispatched_late"]),
                _num(t["past_due_no_tracking"]),
                _pct(t["late_dispatch_rate"]),
                _pct(by_hand.get("late_dispatch_rate")),
                _num(t["cancellations"]),
                _num(t["cancellations_late"]),
                "yes" if d.get("match") else "**no**",
            ]
        )
    return _table(
        [
            "day (UTC)",
            "due",
            "scanned late",
            "past ship-by, no scan",
            "LDR by carrier scan",
            "by hand",
            "tracking late",
            "past ship-by, no tracking",
            "LDR by upload",
            "by hand",
            "cancellation requests",
            "answered late",
            "report == truth",
        ],
        rows,
    )


def _latency(lat: dict) -> str:
    return " / ".join(_num(lat.get(k), 1) for k in ("median", "p95", "max"))


def simulate_vs_hand(doc: dict) -> str:
    lat, hand = doc["tracking_latency_minutes"], doc["sop_baseline"]
    complete = [d for d in doc["days"] if d.get("complete", True)]
    due_days = [d for d in complete if d["truth"]["orders_due"]]
    due = sum(d["truth"]["orders_due"] for d in complete)
    late = sum(d["truth"]["dispatched_late"] + d["truth"]["past_due_no_tracking"] for d in complete)
    late_scan = sum(d["truth"].get("dispatched_late_scan", 0) + d["truth"].get("past_due_no_scan", 0) for d in complete)
    span = f"{due_days[0]['day'][5:]} to {due_days[-1]['day'][5:]}, " if due_days else ""
    rows = [
        [
            "fulfiller shipment -> tracking on TikTok, minutes: median / p95 / max "
            f"({_num(lat.get('count'))} shipments)",
            _latency(lat),
            _latency(hand["tracking_latency_minutes"]),
        ],
        [
            f"Late Dispatch Rate by carrier scan (TikTok's), complete days ({span}{_num(due)} orders due)",
            f"{_pct(doc.get('late_dispatch_rate_scan'))} ({_num(late_scan)})",
            _pct(hand.get("late_dispatch_rate_scan")),
        ],
        [
            "Late Dispatch Rate by tracking upload, the same days",
            f"{_pct(doc['late_dispatch_rate'])} ({_num(late)})",
            _pct(hand.get("late_dispatch_rate")),
        ],
    ]
    early = (doc.get("order_to_tracking_minutes") or {}).get("by_source", {})
    for source, label in (("aftn", "Amazon's early tracking number"), ("carrier", "the carrier's number")):
        if early.get(source, {}).get("count"):
            rows.append(
                [
                    f"Awaiting Shipment -> {label} on TikTok, minutes: median / p95 / max "
                    f"({_num(early[source]['count'])} orders)",
                    _latency(early[source]),
                    "-",
                ]
            )
    return _table(["figure (whole run)", "orderops", "by hand, 09:00 and 17:00 shop time"], rows)


def _complete_sum(doc: dict, *keys: str) -> int:
    return sum(d["truth"].get(k, 0) for d in doc["days"] if d.get("complete", True) for k in keys)


def simulate_aftn(off: dict) -> str:
    """The week with Amazon's early tracking number posted (simulate-week.json) beside the same week
    without it (the file given)."""
    on = json.loads((RESULTS / "simulate-week.json").read_text())

    def column(doc: dict) -> list[str]:
        ot = doc.get("order_to_tracking_minutes") or {}
        sources = doc.get("tracking_posted_by_source") or {}
        return [
            _pct(doc.get("late_dispatch_rate_scan")),
            _pct(doc.get("late_dispatch_rate")),
            _latency(ot) if ot else "-",
            _latency(ot.get("by_source", {}).get("aftn", {})) if ot else "-",
            f"{_num(sources.get('aftn'))} / {_num(sources.get('carrier'))}",
            _num(_complete_sum(doc, "cancellations")),
            f"{'yes' if doc['all_days_match'] else '**no**'}; {doc['duplicate_effects']}; {doc['missed_tracking']}; "
            f"{doc.get('tracking_on_two_orders', '-')}",
        ]

    labels = [
        "Late Dispatch Rate by carrier scan, complete days",
        "Late Dispatch Rate by tracking upload, complete days",
        "Awaiting Shipment -> tracking on TikTok, minutes: median / p95 / max",
        "the same, orders Amazon gave an early number",
        "seller's tracking on TikTok: Amazon's early number / the carrier's",
        "buyer cancellation requests, complete days",
        "report == truth; duplicate effects; missed tracking; numbers on two orders",
    ]
    return _table(
        ["figure (whole run)", "early number posted (`AFTN=on`)", "carrier's number only (`AFTN=off`)"],
        [[label, a, b] for label, a, b in zip(labels, column(on), column(off), strict=True)],
    )


def readme_week() -> str:
    """The README's table of the week: both Late Dispatch Rates, orderops against by hand, with and
    without Amazon's early tracking number (tests/docs keeps the README equal to it)."""
    on = json.loads((RESULTS / "simulate-week.json").read_text())
    off = json.loads((RESULTS / "simulate-week-aftn-off.json").read_text())
    hand = on["sop_baseline"]
    return _table(
        ["Late Dispatch Rate, complete days", "orderops", "orderops, `AFTN=off`", "by hand (09:00, 17:00)"],
        [
            [
                "by carrier scan (TikTok's rule since 01/2026)",
                _pct(on["late_dispatch_rate_scan"]),
                _pct(off["late_dispatch_rate_scan"]),
                _pct(hand["late_dispatch_rate_scan"]),
            ],
            [
                "by tracking upload",
                _pct(on["late_dispatch_rate"]),
                _pct(off["late_dispatch_rate"]),
                _pct(hand["late_dispatch_rate"]),
            ],
        ],
    )


def _runs(ext: dict) -> str:
    names = (("incremental", "incremental"), ("sweep", "sweeps"), ("event", "event-driven"))
    return " + ".join(f"{_num(ext[k])} {label}" for k, label in names if ext.get(k))


def _per_run(per_run: dict) -> str:
    # a sweep's cost is told apart in the text: the table compares the runs that follow what changed
    labels = {"event": "event-driven", "incremental": "incremental"}
    return "; ".join(
        f"{labels[k]} {_num(per_run[k]['median'], 0 if per_run[k]['median'] == int(per_run[k]['median']) else 1)}"
        f" / {_num(per_run[k]['p95'])}"
        for k in ("event", "incremental")
        if k in per_run
    )


def simulate_steady(doc: dict) -> str:
    ev = doc.get("with_events")
    if not ev:
        return "(this result file has no pass with events: run `make simulate ... EVENTS=both`)"

    def ok(d):
        return f"{'yes' if d['all_days_match'] else '**no**'}; {d['duplicate_effects']}; {d['missed_tracking']}"

    lat = lambda d: f"{_latency(d['tracking_latency_minutes'])} ({_num(d['tracking_latency_minutes'].get('count'))})"  # noqa: E731
    return _table(
        ["figure", "schedule only", "with events (schedule as the safety net)"],
        [
            ["shipment -> tracking on TikTok, minutes: median / p95 / max", lat(doc), lat(ev)],
            ["runs", _runs(doc["extraction"]), _runs(ev["extraction"])],
            [
                "extraction calls of one run: median / p95",
                _per_run(doc["extraction_calls_per_run"]),
                _per_run(ev["extraction_calls_per_run"]),
            ],
            [
                "extraction calls per order per day",
                _num(doc["extraction_calls_per_order_day"], 2),
                _num(ev["extraction_calls_per_order_day"], 2),
            ],
            ["report == truth every day; duplicate effects; missed tracking", ok(doc), ok(ev)],
        ],
    )


# ----------------------------------------------------------------------------- make bench
def bench_pipeline(doc: dict) -> str:
    rs = doc["results"]

    def row(label, fn):
        return [label, *(fn(r) for r in rs)]

    return _table(
        [
            "`make bench` (one process, "
            + ", ".join(sorted({r.get("warehouse", "sqlite") for r in rs}))
            .replace("sqlite", "SQLite")
            .replace("postgresql", "PostgreSQL")
            + " warehouse)",
            *(f"{r['size']:,} orders" for r in rs),
        ],
        [
            row("wall time", lambda r: f"{_num(r['wall_seconds'])} s"),
            row(
                "quota-bound lower bound (bound by)",
                lambda r: f"{_num(r['lower_bound_seconds'])} s ({_bucket(r['bound_by'])})",
            ),
            row("measured / lower bound", lambda r: _num(r["ratio"], 2)),
            row("429s / throttled answers", lambda r: _num(r["throttled_429"])),
            row("API calls, per order", lambda r: f"{_num(r['calls_total'])}, {_num(r['calls_per_order'], 2)}"),
            row(
                "extraction calls, per order",
                lambda r: f"{_num(r['extraction_calls_total'])}, {_num(r['extraction_calls_per_order'], 3)}",
            ),
            row("Shopify points charged", lambda r: _num(sum(r["shopify_points"].values()))),
            row(
                "time: extract / validate / join+decide / act",
                lambda r: (
                    " / ".join(_seconds(r["phase_seconds"].get(p)) for p in ("extract", "validate", "decide", "act"))
                    + " s"
                ),
            ),
            row(
                "join + decide CPU, every order of the scenario",
                lambda r: f"{_num((r.get('join_decide_all') or {}).get('cpu_seconds'), 2)} s",
            ),
            row("peak memory, pipeline process", lambda r: f"{_num(r['peak_rss_mib'])} MiB"),
            row(
                "order by order (a Shopify and a fulfiller lookup per order): calls, lower bound",
                lambda r: f"{_num(r['order_by_order']['calls'])}, {_num(r['order_by_order']['lower_bound_seconds'])} s",
            ),
        ],
    )


def dag_parse(doc: dict) -> str:
    parse = doc.get("dag_parse") or {}
    if not parse:
        return "(this result file has no DAG parse times: `make bench` measures them unless given `--no-parse`)"
    return _table(
        ["DAG file", "parse time (DagBag in a fresh interpreter, median of 3)"],
        [[f"`{name}`", f"{p['seconds']:.2f} s"] for name, p in sorted(parse.items())],
    )


def bench_parse(doc: dict) -> str:
    rows = doc["results"]
    return _table(
        [
            "shops",
            "parse, all DAG files (CPU-s)",
            "serialize (CPU-s)",
            "largest file, parse + serialize (CPU-s)",
            "bytes per DAG",
            "bytes per DAG, params on every task",
            "a task's start-up parse (CPU-s)",
            "the same, every shop's DAG built (as before)",
        ],
        [
            [
                _num(r["shops"]),
                _num(r["parse_cpu_s"], 2),
                _num(r["serialize_cpu_s"], 2),
                _num(r["largest_file_cpu_s"], 2),
                _num(r["bytes_per_dag"]),
                _num(r["params_on_every_task"]["bytes_per_dag"]),
                _num(r["task_startup_parse_cpu_s"], 2),
                _num(r["task_startup_parse_cpu_s_whole_shops_file"], 2),
            ]
            for r in rows
        ],
    )


def bench_dag(doc: dict) -> str:
    r = doc["result"]
    states = r.get("task_states") or {}
    all_ok = states and set(states) == {"success"}
    return _table(
        [
            f"`make bench-dag` (Airflow on the production shape, PostgreSQL, {r.get('workers', 2)} Celery workers)",
            f"{r['orders']:,} orders",
        ],
        [
            ["wall time, trigger to end of the run", f"{_num(r['wall_seconds'])} s"],
            ["quota-bound lower bound", f"{_num(r['lower_bound_seconds'])} s ({_bucket(r['bound_by'])})"],
            ["measured / lower bound", _num(r["ratio"], 2)],
            ["throttled answers", _num(r["throttled"])],
            [
                "task instances",
                f"{r['task_instances']}, "
                + ("all successful" if all_ok else ", ".join(f"{n} {s}" for s, n in sorted(states.items()))),
            ],
        ],
    )


def webhook_flood(doc: dict) -> str:
    r = doc["result"]

    def ms(lat: dict) -> str:
        return (
            f"{_num(lat['p50_ms'], 1)} / {_num(lat['p95_ms'], 1)} / {_num(lat['max_ms'], 1)} ({lat['count']:,} polls)"
        )

    floor = r["floor"]
    return _table(
        [
            "`make bench-flood` (the receiver in its own process, uvicorn, PostgreSQL warehouse, Redis doorbell)",
            f"{r['deliveries']:,} signed deliveries, {r['clients']} clients",
        ],
        [
            ["deliveries a second", _num(r["deliveries_per_second"])],
            ["answers", ", ".join(f"{status}: {n:,}" for status, n in r["answers"].items())],
            ["kept in the inbox", f"{r['kept']:,}"],
            ["`/health` idle, ms (p50 / p95 / max)", ms(r["health_idle"])],
            ["`/health` during the flood, ms (p50 / p95 / max)", ms(r["health_during_flood"])],
            [
                "receiver CPU",
                f"{_num(r['receiver_cpu_seconds'], 1)} s ({_num(r['receiver_cpu_ms_per_delivery'], 1)} ms a delivery)",
            ],
            [f"floor: `/health` p95 under {floor['health_p95_ms']:g} ms", "met" if floor["met"] else "**missed**"],
        ],
    )


def _by_component(doc: dict, phase: str, count: str) -> str:
    """A phase's CPU-seconds per run by component, less the idle rate over the phase (the largest
    first; components under 0.05 left out)."""
    idle, measured = doc["phases"]["idle"], doc["phases"][phase]
    share = measured["seconds"] / idle["seconds"]
    each = {
        name: (cpu - idle["cpu_s"].get(name, 0.0) * share) / measured[count] for name, cpu in measured["cpu_s"].items()
    }
    return _components(each)


def _components(each: dict[str, float]) -> str:
    return ", ".join(f"{name} {_num(v, 2)}" for name, v in sorted(each.items(), key=lambda kv: -kv[1]) if v >= 0.05)


def bench_scale(doc: dict) -> str:
    """`make bench-scale`: the figures and the floors of docs/performance.md "Scale"."""

    def floor(ok: bool) -> str:
        return "met" if ok else "**missed**"

    wake, lag, latency = doc["cpu_s_per_event_wake"], doc["scheduler_lag_s"], doc["event_to_tracking_s"]
    m50, m200 = doc["model"]["50"], doc["model"]["200"]
    conns = doc["postgresql_connections"]
    rows = [
        [
            "shops on the production shape",
            f"{doc['shops']} living shops, {_num(doc['orders_per_shop_day'])} orders a day each "
            f"(measured at {doc['revision']}, {doc['when']})",
        ],
        ["CPU-s per event wake, every component (floor: at most 3)", f"{_num(wake, 2)}: {floor(wake <= 3)}"],
        ["CPU-s per scheduled run", _num(doc["cpu_s_per_scheduled_run"], 2)],
        [
            "task instances per run",
            f"scheduled {_num(doc['task_instances']['scheduled'])}, event {_num(doc['task_instances']['event'])}",
        ],
        [
            "scheduler lag, queued to running, p50 / p95 (floor: p95 under 30 s)",
            f"{_num(lag['p50'], 1)} / {_num(lag['p95'], 1)} s: {floor(lag['p95'] < 30)}",
        ],
        [
            "webhook received to tracking posted, p50 / p95 (floor: p95 within 2 min)",
            f"{_num(latency['p50'])} / {_num(latency['p95'])} s ({latency['count']} events)"
            + (f": {floor(latency['p95'] <= 120)}" if latency["p95"] is not None else ""),
        ],
        ["waking events per wake (mean)", _num(doc["waking_events_per_wake"]["mean"], 1)],
        [
            "webhook deliveries: CPU-s each at the receiver; a living shop's a day",
            f"{_num(doc['cpu_s_per_webhook_delivery'], 4)}; "
            f"{_num(doc['webhook_deliveries']['per_shop_day'])} ({_num(doc['webhook_deliveries']['woke'])} "
            f"of the {_num(doc['webhook_deliveries']['received'])} received woke a shop)",
        ],
        [
            "PostgreSQL connections, most at once",
            f"{conns.get('total', 0)} of {doc['postgresql_max_connections']} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(conns.items()) if k != "total")
            + ")",
        ],
        ["a wake's CPU-s by component", _components(doc["phases"]["events"]["cpu_s_per_wake"])],
        ["a scheduled run's CPU-s by component", _by_component(doc, "scheduled", "runs")],
        ["idle: scheduler, DAG processor, triggerer, ... (cores)", _num(doc["phases"]["idle"]["cores"], 2)],
        [
            "model inputs: wakes and scheduled runs a shop-day",
            f"{_num(doc['inputs']['wakes_per_shop_day'])} and {_num(doc['inputs']['runs_per_shop_day'])}",
        ],
        [
            "model, 50 shops with events: cores average / peak, task instances a second",
            f"{_num(m50['cores'], 1)} / {_num(m50['peak_cores'], 1)}, {_num(m50['task_instances_per_second'], 1)}",
        ],
        [
            "model, 200 shops with events (floor: at most 8 cores on average)",
            f"{_num(m200['cores'], 1)} / {_num(m200['peak_cores'], 1)}, "
            f"{_num(m200['task_instances_per_second'], 1)}: {floor(m200['cores'] <= 8)}",
        ],
        ["model, 200 shops: average cores by component", _components(m200["by_component"])],
        [
            "model, 200 shops: task slots busy, average / peak",
            f"{_num(m200['task_slots'], 1)} / {_num(m200['peak_task_slots'], 1)}",
        ],
    ]
    return _table(["`make bench-scale`", "measured"], rows)


def bench_fleet(doc: dict) -> str:
    """`make bench-fleet`: N shops configured on the production shape (docs/performance.md "Scale")."""

    def floor(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def cores(phase: dict) -> str:
        busiest = sorted(phase["cores"].items(), key=lambda kv: -kv[1])
        return f"{_num(phase['total_cores'], 2)}: " + ", ".join(f"{k} {_num(v, 2)}" for k, v in busiest if v >= 0.005)

    parse, sample, trig, idle = doc["parse"], doc["sample"], doc["triggers"], doc["idle"]
    dags, conns = doc["dags"], doc["postgresql_connections"]
    by_phase: dict[str, float] = {}
    for f in parse["files"].values():
        for phase, seconds in f["max_s"].items():
            by_phase[phase] = max(by_phase.get(phase, 0.0), seconds)
    errors = max(doc["import_errors"].values(), default=0)
    rows = [
        [
            "shops on the production shape, platform events on",
            f"{doc['shops']} on {doc['sandboxes']} sandboxes ({doc['dry_run_shops']} dry-run shops)",
        ],
        [
            "DAG files; DAGs loaded (pipeline, event, other)",
            f"{doc['dag_files']}; {dags['total']} ({dags['pipeline']}, {dags['event']}, {dags['other']}), "
            f"all in {_num(doc['dags_loaded_s'])} s after the start",
        ],
        ["import errors (floor: none)", f"{errors}: {floor(errors == 0 and doc['all_dags_loaded'])}"],
        [
            f"slowest DAG file parse, wall (floor: within `dag_file_processor_timeout`, "
            f"{_num(parse['dag_file_processor_timeout_s'])} s)",
            f"{_num(parse['slowest_s'], 1)} s, {_num(parse['headroom'], 1)}x headroom: "
            + floor(parse["within_timeout"]),
        ],
        [
            "slowest parse by phase: " + " / ".join(by_phase),
            " / ".join(f"{_num(v, 1)} s" for v in by_phase.values()) + f" ({parse['parses']} parses)",
        ],
        [f"idle cores over {_num(idle['seconds'])} s", cores(idle)],
        [
            "triggers running (doorbells); triggerer resident memory",
            f"{trig['running']} ({trig['doorbells_running']}); {_num(trig['triggerer_rss_mib'])} MiB",
        ],
        [
            "PostgreSQL connections, most at once",
            f"{conns.get('total', 0)} of {doc['postgresql_max_connections']} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(conns.items()) if k != "total")
            + ")",
        ],
        [
            f"sample pipeline runs, {_num(sample['spacing_s'])} s apart (floor: every one succeeds)",
            f"{sample['runs']} over {sample['files']} files ({sample['dry_runs']} dry runs): "
            + ", ".join(f"{n} {s}" for s, n in sorted(sample["states"].items()))
            + f": {floor(sample['all_succeeded'])}",
        ],
        [
            "a sample run, start to end: p50 / max; task instances",
            f"{_num(sample['seconds']['p50'])} / {_num(sample['seconds']['max'])} s; "
            + ", ".join(str(n) for n in sample["task_instances"]),
        ],
        [
            "event wakes the sample's writes caused",
            ", ".join([str(doc["wakes"]["runs"]), *(f"{n} {s}" for s, n in sorted(doc["wakes"]["states"].items()))]),
        ],
    ]
    if doc.get("load"):
        ld, lag = doc["load"], doc["load"]["queued_to_running_s"]
        rows += [
            [
                "beside the sample: event wakes started a second (the model's for these shops); their states",
                f"{_num(ld['wake_rate'], 2)}: {ld['wakes_started']} started ({ld['wakes_refused']} refused), "
                + ", ".join(f"{n} {s}" for s, n in sorted(ld["wakes_started_states"].items())),
            ],
            [
                "task instances queued a second in that window (the model's for these shops, on average)",
                f"{_num(ld['task_instances_per_s'], 2)} ({_num(ld['model_task_instances_per_s'], 2)}): "
                f"{ld['task_instances']} over {_num(ld['seconds'])} s, {ld['never_ran']} never ran",
            ],
            [
                "queued to running over them, p50 / p95",
                f"{_num(lag['p50'], 1)} / {_num(lag['p95'], 1)} s "
                f"({doc['workers']} workers, {doc['worker_concurrency']} slots each)",
            ],
            [
                "the scheduler's CPU-s a task instance over the phase, less its idle; its cores at the model's rate",
                f"{_num(ld['scheduler_cpu_s_per_task_instance'], 3)}; {_num(ld['scheduler_cores_at_model_rate'], 2)}",
            ],
        ]
    if sample.get("cpu"):
        spent = sample["cpu"]
        rows.append([f"cores over the sample's {_num(spent['seconds'])} s, its wakes included", cores(spent)])
    return _table(["`make bench-fleet`", "measured"], rows)


def test_suite(doc: dict) -> str:
    return _table(
        [f"the whole suite ({doc['tests']:,} tests)", "minutes"],
        [[run["how"], _num(run["minutes"], 1).removesuffix(".0")] for run in doc["runs"]],
    )


def run_settings_table(_doc: None) -> str:
    """The DAG's params, from the one place they are declared (include/run/runconfig.py SETTINGS)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from include.run.runconfig import SETTINGS

    return _table(
        ["param", "default", "a value must be", "what it does", "trigger form"],
        [
            [
                f"`{s.name}`",
                f"`{json.dumps(s.default)}`",
                s.expected,
                s.description,
                "shown" if s.for_operators else "hidden: a run's conf sets it",
            ]
            for s in SETTINGS
        ],
    )


TABLES = {
    "run-settings": (None, run_settings_table),
    "test-suite": ("test-suite.json", test_suite),
    "simulate-week-days": ("simulate-week.json", simulate_days),
    "simulate-week-vs-hand": ("simulate-week.json", simulate_vs_hand),
    "simulate-steady-state": ("simulate-week-events.json", simulate_steady),
    "simulate-week-aftn": ("simulate-week-aftn-off.json", simulate_aftn),
    "bench-pipeline": ("pipeline.json", bench_pipeline),
    "bench-dag-parse": ("pipeline.json", dag_parse),
    "bench-dag": ("dag.json", bench_dag),
    "bench-parse": ("parse.json", bench_parse),
    "webhook-flood": ("webhook-flood.json", webhook_flood),
    # the scale benchmark's file is the interface its checks read: kept where the command writes it
    "bench-scale": ("bench/results/scale-20.json", bench_scale),
    "bench-fleet": ("bench/results/fleet-200.json", bench_fleet),
}


def render(name: str, cited: set[str] | None = None) -> str:
    """The table NAME and its source line (shorter when `cited` holds its file: named above on the page)."""
    if name not in TABLES:
        raise KeyError(f"<!-- table: {name} -->: no such table (known: {', '.join(sorted(TABLES))})")
    file, fn = TABLES[name]
    if file is None:  # declared in the code, not measured
        return fn(None)
    path = REPO / file if file.startswith("bench/") else RESULTS / file
    doc = json.loads(path.read_text())
    if cited is not None and file in cited:
        return fn(doc) + f"\n\nSource: `{shown(file)}`, as above."
    if cited is not None:
        cited.add(file)
    return fn(doc) + "\n\n" + provenance(doc, file)


def replace_markers(markdown: str) -> str:
    cited: set[str] = set()
    return MARKER.sub(lambda m: render(m.group(1), cited), markdown)


def on_page_markdown(markdown, page, config, files):  # MkDocs hook
    return replace_markers(markdown)
