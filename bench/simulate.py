"""`make simulate`: a shop's week lived through simulated time, checked against the sandbox's truth.

The sandbox serves a living shop (sandbox/life.py) with its clock frozen between steps.
For every tick of the schedule the clock is set to the tick, and the pipeline runs exactly as a
scheduled run would (`pipeline.run_all`: the DAG's steps; window = the interval before the tick,
"now" = the tick). After each simulated midnight the daily report's work runs for the day that
ended (`reports.build_day`, as the report DAG does). At the end every day is rebuilt (as a report
backfill would) and compared, figure by figure, with the truth the sandbox serves; the baseline is a
person working the two Seller Center queues at 09:00 and 17:00 shop time on the same order stream.

Writes state/simulate/summary.json (the README's Performance section describes it), truth.json
and the report files; prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = (
    "orders_due",
    "dispatched_on_time",
    "dispatched_late",
    "past_due_no_tracking",
    "late_dispatch_rate",
    # the carrier-scan clock TikTok counts since 01/2026: In Transit by the ship-by time
    "dispatched_on_time_scan",
    "dispatched_late_scan",
    "past_due_no_scan",
    "late_dispatch_rate_scan",
    "cancellations",
    "cancellations_late",
)
SHOP = "default"
# An event-driven run starts this long after the first waiting event (a burst makes one run; the
# shops file's events.debounce_seconds); it stands for Airflow's way from the doorbell to a running task too.
DEBOUNCE_SECONDS = 30.0


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def ticks(schedule: str, start: datetime, end: datetime) -> list[datetime]:
    """The schedule's run times after `start` up to and including `end` (what the scheduler would give)."""
    from croniter import croniter

    try:
        it = croniter(schedule, start)
    except (ValueError, KeyError) as exc:
        raise SystemExit(f"SCHEDULE {schedule!r}: not a cron expression ({exc})") from None
    out = []
    while True:
        moment = it.get_next(datetime).astimezone(timezone.utc)
        if moment > end:
            return out
        out.append(moment)


def report_figures(rows: list[dict]) -> dict:
    """The summary's figures from a day's `sla_daily` rows (the whole shop's row)."""
    row = next(r for r in rows if r["fulfiller"] == "all" and r["carrier"] == "all")
    return {
        "orders_due": row["orders_due"],
        "dispatched_on_time": row["dispatched_on_time"],
        "dispatched_late": row["dispatched_late"],
        "past_due_no_tracking": row["past_due_no_tracking"],
        "late_dispatch_rate": row["late_dispatch_rate"] if row["orders_due"] else None,
        "dispatched_on_time_scan": row["dispatched_on_time_scan"],
        "dispatched_late_scan": row["dispatched_late_scan"],
        "past_due_no_scan": row["past_due_no_scan"],
        "late_dispatch_rate_scan": row["late_dispatch_rate_scan"] if row["orders_due"] else None,
        "cancellations": row["cancel_requests"],
        "cancellations_late": row["cancels_late"],
    }


def duplicate_effects(writes: list[dict]) -> list[dict]:
    """Writes that took effect more than once: the same successful request to the same target."""
    from sandbox.core import changes_orders

    seen: Counter = Counter()
    for w in writes:
        if w["outcome"] == "ok" and 200 <= w["status"] < 300 and changes_orders(w["operation"]):
            body = dict(w["body"]) if isinstance(w["body"], dict) else w["body"]
            if isinstance(body, dict):
                body.pop("idempotency_key", None)
            seen[(w["platform"], w["operation"], w["path"], json.dumps(body, sort_keys=True))] += 1
    return [{"platform": p, "operation": o, "path": path, "times": n} for (p, o, path, _), n in seen.items() if n > 1]


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p95": None, "max": None, "count": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "median": round(statistics.median(ordered), 1),
        "p95": round(p95, 1),
        "max": round(ordered[-1], 1),
        "count": len(ordered),
    }


def tracking_latency(orders: list[dict]) -> dict:
    """Minutes from the fulfiller's shipment to the seller's tracking on TikTok."""
    return percentiles(
        [
            (parse(o["dispatched_at"]) - parse(o["fulfiller_shipped_at"])).total_seconds() / 60
            for o in orders
            if o["dispatched_by"] == "seller" and o["fulfiller_shipped_at"] and o["dispatched_at"]
        ]
    )


def order_to_tracking(orders: list[dict]) -> dict:
    """Minutes from the order entering Awaiting Shipment to the seller's tracking on TikTok, all
    together and split by whether Amazon issued the order its early tracking number (`aftn`: the
    orders it could be posted for, whichever number reached TikTok) or not (`carrier`)."""
    minutes: dict[str, list[float]] = {"aftn": [], "carrier": []}
    for o in orders:
        if o["dispatched_by"] == "seller" and o["awaiting_shipment_at"] and o["dispatched_at"]:
            waited = (parse(o["dispatched_at"]) - parse(o["awaiting_shipment_at"])).total_seconds() / 60
            minutes["aftn" if o["aftn_issued"] else "carrier"].append(waited)
    return {
        **percentiles(minutes["aftn"] + minutes["carrier"]),
        "by_source": {k: percentiles(v) for k, v in minutes.items()},
    }


def sop_orders(orders: list[dict], offset_hours: float, end: datetime) -> list[dict]:
    """The same order stream worked by a person at 09:00 and 17:00 shop time: tracking copied at the
    first session after the fulfiller shipped (the carrier's number, and only one TikTok takes), each
    cancellation request answered at the first
    session after it came (approved orders cancelled then), TikTok's own deadlines as in the truth."""
    shift = timedelta(hours=offset_hours)

    def session(after: datetime) -> datetime:
        local = after + shift
        for day in range(0, 30):
            for hour in (9, 17):
                moment = datetime(local.year, local.month, local.day, hour, tzinfo=timezone.utc) + timedelta(days=day)
                if moment >= local:
                    return moment - shift
        raise AssertionError("unreachable")

    out = []
    for o in orders:
        o = json.loads(json.dumps(o))
        cancel = o["cancellation"]
        answered = None
        if cancel:
            answered = session(parse(cancel["requested_at"]))
            if answered >= parse(cancel["deadline"]):  # TikTok answered first, at the deadline
                answered = parse(cancel["deadline"])
            cancel["responded_at"] = iso(answered) if answered <= end else None
        if o["kind"] == "seller":
            # tracking TikTok refuses from the seller (its USPS rule) a person cannot post either
            postable = o["fulfiller_shipped_at"] and o.get("tracking_postable", True)
            sent = session(parse(o["fulfiller_shipped_at"])) if postable else None
            due = parse(o["shipping_due_time"])
            cancelled = None
            if cancel and answered is not None and (sent is None or answered < sent):
                cancelled, sent = answered, None  # approved before anything shipped
            elif sent is None or sent >= due:
                sent, cancelled = None, due  # TikTok auto-cancels what is not shipped in time
                o["cancelled_by"] = "SYSTEM"
            o["dispatched_at"] = iso(sent) if sent and sent <= end else None
            o["dispatched_by"] = "seller" if o["dispatched_at"] else None
            o["cancelled_at"] = iso(cancelled) if cancelled and cancelled <= end else None
            o["tracking_valid"] = True if o["dispatched_at"] else None
            # by hand the carrier's number is copied: In Transit once TikTok has it and the carrier scanned
            scanned = parse(o["first_scan_at"])
            moving = max(sent, scanned) if sent and scanned and o["dispatched_at"] else None
            o["in_transit_at"] = iso(moving) if moving and moving <= end else None
            o["tracking_source"] = "carrier" if o["dispatched_at"] else None
        out.append(o)
    return out


def day_table(orders: list[dict], days: list[date], as_of: datetime) -> dict[str, dict]:
    from sandbox.life import day_figures

    facts = [
        {k: (parse(v) if k.endswith(("_at", "_time")) and isinstance(v, str) else v) for k, v in o.items()}
        for o in orders
    ]
    for f in facts:
        if f["cancellation"]:
            f["cancellation"] = {
                k: (parse(v) if k in ("requested_at", "deadline", "responded_at") else v)
                for k, v in f["cancellation"].items()
            }
    return {d.isoformat(): day_figures(facts, d, as_of) for d in days}


def simulate(
    days: int,
    orders_per_day: int,
    schedule: str,
    seed: int,
    out: Path,
    warehouse_url: str | None,
    start: datetime,
    life_overrides: dict | None = None,
    backfill_day: date | None = None,
    events: bool = False,
    debounce_seconds: float = DEBOUNCE_SECONDS,
    policy: dict | None = None,
    webhook_faults: tuple[str, ...] = (),
) -> dict:
    saved_env = dict(os.environ)  # the caller's environment comes back afterwards (tests run on in-process)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(out / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "TQDM_DISABLE": "1",
            "ORDEROPS_REPORTS_DIR": str(out / "reports"),
        }
    )
    try:
        return _simulate(
            days,
            orders_per_day,
            schedule,
            seed,
            out,
            warehouse_url,
            start,
            life_overrides,
            backfill_day,
            events,
            timedelta(seconds=debounce_seconds),
            policy or {},
            webhook_faults,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved_env)


SHOP_SECRET_SHIPBOB = "whsec_" + "c2FuZGJveC1vcmRlcm9wcy13ZWJob29rcy0x"[:32]


class EventPath:
    """The platforms' events end to end, as in production: the sandbox sends signed webhooks to
    orderops's receiver (served here on loopback) and notifications to Amazon's queue, which is
    read like the triggerer reads it; the receiver keeps them in the warehouse's inbox."""

    def __init__(self, admin, urls: dict, wh):
        import threading

        import uvicorn

        from include.events.platform_events import EventInbox
        from include.events.receiver import AmazonQueue, ShopSecrets, create_app
        from sandbox.amazon_mcf import DEFAULT_CREDENTIALS as AMAZON
        from sandbox.server import bind
        from sandbox.shopify import DEFAULT_CREDENTIALS as SHOPIFY
        from sandbox.tiktok import DEFAULT_CREDENTIALS as TIKTOK

        self.admin, self.inbox = admin, EventInbox(wh)
        secrets = ShopSecrets(
            TIKTOK["app_key"],
            TIKTOK["app_secret"],
            SHOPIFY["client_secret"],
            SHOP_SECRET_SHIPBOB,
            AMAZON["seller_id"],
            tiktok_shop_id=TIKTOK["shop_id"],
            shopify_shop_domain=SHOPIFY["shop_domain"],
        )
        sock = bind(0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.app = app = create_app(lambda shop: secrets if shop == SHOP else None, self.inbox)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        for platform in ("tiktok", "shopify", "shipbob"):
            admin.post(
                "/webhooks",
                json={"platform": platform, "url": f"{self.url}/{SHOP}/{platform}", "secret": SHOP_SECRET_SHIPBOB},
            ).raise_for_status()
        admin.post("/webhooks", json={"platform": "amazon_mcf"}).raise_for_status()
        queue_url = admin.get("/webhooks").json() and f"{urls['amazon_sqs']}/orderops-notifications"
        self.queue = AmazonQueue(queue_url, seller_id=AMAZON["seller_id"])

    def deliver(self) -> None:
        """Everything the platforms sent so far is in the inbox (webhooks answered, queue read)."""
        self.admin.post("/webhooks/flush").raise_for_status()
        self.queue.drain(SHOP, self.inbox)

    def waiting(self) -> bool:
        return self.inbox.first_waiting(SHOP) is not None

    def stats(self) -> dict:
        """What the platforms sent (per platform and outcome) and what the inbox kept of it."""
        import sqlalchemy as sa

        from include.store.warehouse import platform_events

        t = platform_events.c
        with self.inbox.wh.engine.connect() as conn:
            kept = conn.execute(
                sa.select(t.platform, t.wakes, sa.func.count()).where(t.shop == SHOP).group_by(t.platform, t.wakes)
            ).all()
        sent: dict = defaultdict(dict)
        for entry in self.admin.get("/webhooks").json()["sent"]:
            sent[entry["platform"]][entry["outcome"]] = entry["count"]
        return {
            "sent": dict(sent),
            "refused": dict(sorted(self.app.state.refused.items())),  # what the receiver kept nothing of
            "kept": {
                p: {"waking" if w else "other": n for p2, w, n in kept if p2 == p}
                for p in sorted({p for p, _, _ in kept})
            },
        }

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.queue.client.close()


def _simulate(
    days,
    orders_per_day,
    schedule,
    seed,
    out,
    warehouse_url,
    start,
    life_overrides,
    backfill_day,
    events,
    debounce,
    policy,
    webhook_faults=(),
) -> dict:
    import httpx
    from airflow.sdk._shared.secrets_masker import reset_secrets_masker

    from bench.pipeline_bench import SandboxProcess
    from include.report import reports
    from include.run import pipeline
    from include.run.platforms import Platforms
    from include.run.runconfig import run_settings
    from include.store.warehouse import Warehouse
    from sandbox.connections import connection_env

    out.mkdir(parents=True, exist_ok=True)
    life = {"start": iso(start), "days": days, "orders_per_day": orders_per_day, "seed": seed, **(life_overrides or {})}
    life_path = out / "life.json"
    life_path.write_text(json.dumps(life))
    sandbox = SandboxProcess(life_path, out, source="--life")
    admin = httpx.Client(base_url=f"{sandbox.urls['tiktok']}/_sandbox", timeout=600)
    wall = time.perf_counter()
    try:
        os.environ.update(connection_env(sandbox.urls))
        db = out / "warehouse.db"
        if warehouse_url is None and db.exists():
            db.unlink()
        wh = Warehouse(warehouse_url or f"sqlite:///{db}")
        end = start + timedelta(days=days)
        run_times = ticks(schedule, start, end)
        interval = (run_times[1] - run_times[0]) if len(run_times) > 1 else timedelta(minutes=30)
        calls: dict[str, dict[str, Counter]] = {"extraction": defaultdict(Counter), "actions": defaultdict(Counter)}
        points: Counter = Counter()
        run_seconds: list[float] = []
        extraction: Counter = Counter(
            {"sweep": 0, "incremental": 0, "missed_by_cursor": 0, **({"event": 0} if events else {})}
        )
        day_end: dict[str, dict] = {}

        by_operation: Counter = Counter()  # extraction calls per (platform, operation)
        per_run: dict[str, list[int]] = defaultdict(list)  # extraction calls of each run, by its mode

        def counted() -> tuple[Counter, float, Counter]:
            doc = admin.get("/calls").json()
            per, operations = Counter(), Counter()
            for c in doc["calls"]:
                per[c["platform"]] += c["count"]
                operations[(c["platform"], c["operation"])] += c["count"]
            return per, sum(c["units"] for c in doc["charged"] if c["platform"] == "shopify"), operations

        state = {"previous": start, "counted": counted()}
        # with events the clock runs at wall speed during a run, so what reaches TikTok is stamped
        # with the run's own duration (the latency includes it); without, it stays frozen as before
        rate = 1 if events else 0

        def one_run(moment: datetime, run_type: str) -> None:
            reset_secrets_masker()  # a run's tasks are fresh processes: their masked values do not pile up
            admin.post("/clock", json={"now": iso(moment), "rate": rate})
            settings = run_settings(
                dag_id="orderops_sla",
                run_id=f"{run_type}__{iso(moment)}",
                params={"now": iso(moment), "policy": policy},
                data_interval_start=state["previous"] if run_type == "scheduled" else moment,
                data_interval_end=moment,
                run_after=moment,
                run_type=run_type,
            )
            platforms = Platforms(settings)
            marks: dict[str, tuple[Counter, float]] = {}
            began = time.perf_counter()
            try:
                run = pipeline.run_all(
                    settings, platforms, wh, observe=lambda phase: marks.__setitem__(phase, counted())
                )
            finally:
                platforms.close()
                if rate:
                    admin.post("/clock", json={"rate": 0})
            run_seconds.append(time.perf_counter() - began)
            extraction[run["extraction"]["mode"]] += 1
            extraction["missed_by_cursor"] += run["missed_by_cursor"]
            before, charged, operations_before = state["counted"]
            after, charged_after, operations_after = counted()
            decided, _, operations_decided = marks.get("decided", (after, charged_after, operations_after))
            per_run[run["extraction"]["mode"]].append(sum(decided[p] - before[p] for p in after))
            for platform in after:
                calls["extraction"][platform][moment.date()] += decided[platform] - before[platform]
                calls["actions"][platform][moment.date()] += after[platform] - decided[platform]
            by_operation.update(operations_decided - operations_before)
            points[(moment - timedelta(seconds=1)).date().isoformat()] += charged_after - charged
            state["counted"] = (after, charged_after, operations_after)

        def clock() -> dict:
            return admin.get("/clock").json()

        def event_runs_until(moment: datetime) -> None:
            """Step from one announced moment to the next before `moment`; an event-driven run
            `debounce` after the first waiting event."""
            pending: datetime | None = None
            while True:
                now = parse(clock()["now"])
                wake = parse(clock().get("next_wake"))
                due = pending + debounce if pending else None
                target = min([t for t in (wake, due) if t is not None and t < moment], default=None)
                if target is None:
                    return
                admin.post("/clock", json={"now": iso(max(target, now)), "rate": 0})
                path.deliver()
                if due is not None and target == due:
                    one_run(max(target, now), "asset_triggered")
                    pending = None
                    path.deliver()
                if pending is None and path.waiting():
                    pending = parse(clock()["now"])

        path = EventPath(admin, sandbox.urls, wh) if events else None
        if path is not None and webhook_faults:
            from bench import webhook_faults as faults

            faults.configure(admin, webhook_faults)

        def events_note() -> str:
            return f" (+{extraction['event']} event-driven)" if events else ""

        for n, moment in enumerate(run_times, 1):
            if path is not None:
                event_runs_until(moment)
                admin.post("/clock", json={"now": iso(max(moment, parse(clock()["now"]))), "rate": 0})
                path.deliver()
            one_run(moment, "scheduled")
            state["previous"] = moment
            if moment.time() == datetime.min.time():  # the report DAG's run for the day that ended
                day = (moment - timedelta(days=1)).date()
                built = reports.build_day(wh, SHOP, day, now=moment)
                truth = admin.get("/truth", params={"interval_minutes": interval.total_seconds() / 60}).json()
                day_end[day.isoformat()] = {
                    "report": report_figures(built.rows),
                    "truth": next(
                        (dict((k, d[k]) for k in FIGURES) for d in truth["days"] if d["day"] == day.isoformat()), None
                    ),
                }
            if n % 12 == 0 or n == len(run_times):
                print(
                    f"  {iso(moment)}  run {n}/{len(run_times)}{events_note()}  {run_seconds[-1]:.1f} s  "
                    f"(elapsed {time.perf_counter() - wall:.0f} s)",
                    flush=True,
                )
        event_stats = path.stats() if path is not None else None
        if path is not None:
            path.stop()
        if backfill_day is not None:  # the scheduled runs of one day again, as a backfill would
            day_start = datetime.combine(backfill_day, datetime.min.time(), tzinfo=timezone.utc)
            for moment in [t for t in run_times if day_start < t <= day_start + timedelta(days=1)]:
                settings = run_settings(
                    dag_id="orderops_sla",
                    run_id=f"backfill__{iso(moment)}",
                    params={"now": iso(end), "policy": policy},
                    data_interval_start=moment - interval,
                    data_interval_end=moment,
                    run_type="backfill",
                )
                platforms = Platforms(settings)
                try:
                    pipeline.run_all(settings, platforms, wh)
                finally:
                    platforms.close()
        truth = admin.get("/truth", params={"interval_minutes": interval.total_seconds() / 60}).json()
        (out / "truth.json").write_text(json.dumps(truth))
        writes = admin.get("/writes").json()
        per_day = []
        for entry in truth["days"]:
            day = date.fromisoformat(entry["day"])
            report = report_figures(reports.build_day(wh, SHOP, day, now=end).rows)  # rebuilt, as a backfill
            wanted = {k: entry[k] for k in FIGURES}
            per_day.append(
                {
                    "day": entry["day"],
                    "truth": wanted,
                    "report": report,
                    "match": report == wanted,
                    # a day that ends after the simulation holds orders whose deadline has not come
                    "complete": day + timedelta(days=1) <= end.date(),
                    "at_day_end": day_end.get(entry["day"]),
                    "valid_tracking_rate": entry["valid_tracking_rate"],
                    "auto_cancels": entry["auto_cancels"],
                }
            )
        arrived = len(truth["orders"])
        per_order = lambda n: round(n / arrived, 4) if arrived else None  # noqa: E731 (no orders: no rate)
        api = {
            platform: {kind: per_order(sum(calls[kind][platform].values())) for kind in ("extraction", "actions")}
            for platform in sorted(set(calls["extraction"]) | set(calls["actions"]))
        }
        baseline_orders = sop_orders(truth["orders"], life.get("shop_utc_offset_hours", -8.0), end)
        days_list = [date.fromisoformat(d["day"]) for d in truth["days"]]
        baseline_days = day_table(baseline_orders, days_list, end)
        # the run's rate counts the complete days: an open day's orders are mostly not due yet
        complete = {d["day"] for d in per_day if d["complete"]}
        dupes = duplicate_effects(writes)
        summary = {
            "days": per_day,
            "duplicate_effects": sum(d["times"] - 1 for d in dupes),
            "duplicates": dupes,
            "missed_tracking": len(truth["missed_tracking"]),
            "missed_tracking_orders": truth["missed_tracking"][:50],
            "tracking_latency_minutes": tracking_latency(truth["orders"]),
            "api_calls_per_order_day": api,
            "extraction_calls_per_order_day": per_order(sum(sum(c.values()) for c in calls["extraction"].values())),
            # which reads the extraction figure is made of
            "extraction_calls_by_operation": {
                platform: {op: per_order(n) for (p, op), n in sorted(by_operation.items()) if p == platform}
                for platform in sorted({p for p, _ in by_operation})
            },
            # runs that listed what changed vs full sweeps; changes a sweep found the cursor had missed
            "extraction": dict(extraction),
            # what one run's reads cost, by kind of run: an incremental or event-driven run's should
            # follow what changed, not how many orders are open
            "extraction_calls_per_run": {mode: percentiles(values) for mode, values in sorted(per_run.items())},
            **({"events": event_stats} if event_stats is not None else {}),
            "shopify_points": dict(sorted(points.items())),
            "run_seconds": percentiles(run_seconds),
            "sop_baseline": {
                "days": [{"day": d, **{k: f[k] for k in FIGURES}} for d, f in baseline_days.items()],
                "tracking_latency_minutes": tracking_latency(baseline_orders),
                "late_dispatch_rate": _overall_ldr(f for d, f in baseline_days.items() if d in complete),
                "late_dispatch_rate_scan": _overall_ldr(
                    (f for d, f in baseline_days.items() if d in complete), "_scan"
                ),
            },
            "late_dispatch_rate": _overall_ldr(d["truth"] for d in per_day if d["complete"]),
            "late_dispatch_rate_scan": _overall_ldr((d["truth"] for d in per_day if d["complete"]), "_scan"),
            "order_to_tracking_minutes": order_to_tracking(truth["orders"]),
            # tracking numbers TikTok shows on more than one order (orderops never posts one twice)
            "tracking_on_two_orders": sum(
                1
                for n in Counter(o["tracking_number"] for o in truth["orders"] if o["tracking_number"]).values()
                if n > 1
            ),
            "tracking_posted_by_source": {
                "aftn": 0,
                "carrier": 0,
                **Counter(o["tracking_source"] for o in truth["orders"] if o["dispatched_by"] == "seller"),
            },
            "all_days_match": all(d["match"] for d in per_day),
            "settings": {
                "days": days,
                "orders_per_day": orders_per_day,
                "schedule": schedule,
                "seed": seed,
                "events": events,
                "webhook_faults": list(webhook_faults),
                "debounce_seconds": debounce.total_seconds() if events else None,
                "policy": policy,
                "start": iso(start),
                "runs": len(run_times),
                "orders": arrived,
                "life": life,
            },
            "wall_seconds": round(time.perf_counter() - wall, 1),
        }
        from bench.webhook_faults import add_figures

        add_figures(summary, truth, wh, SHOP, admin if path is not None else None)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        return summary
    finally:
        admin.close()
        sandbox.stop()


def _overall_ldr(days, clock: str = "") -> float | None:
    """The Late Dispatch Rate over several days, on the upload clock ("") or the scan clock ("_scan")."""
    days = list(days)
    due = sum(d["orders_due"] for d in days)
    if not due:
        return None
    past = "past_due_no_scan" if clock else "past_due_no_tracking"
    return round(sum(d["dispatched_late" + clock] + d[past] for d in days) / due, 4)


def render(summary: dict) -> str:
    head = (
        f"{'day':10s} {'due':>5s} {'on time':>7s} {'late':>5s} {'no trk':>6s} {'LDR':>7s} {'scan late':>9s} "
        f"{'no scan':>7s} {'LDR scan':>8s} {'cancels':>7s} {'late':>5s}  report==truth  "
        f"{'SOP LDR':>7s} {'SOP scan':>8s}"
    )
    lines = [head, "-" * len(head)]
    sop = {d["day"]: d for d in summary["sop_baseline"]["days"]}
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    for d in summary["days"]:
        t = d["truth"]
        day = d["day"] if d.get("complete", True) else f"{d['day'][5:]} open"
        lines.append(
            f"{day:10s} {t['orders_due']:5d} {t['dispatched_on_time']:7d} {t['dispatched_late']:5d} "
            f"{t['past_due_no_tracking']:6d} {pct(t['late_dispatch_rate']):>7s} {t['dispatched_late_scan']:9d} "
            f"{t['past_due_no_scan']:7d} {pct(t['late_dispatch_rate_scan']):>8s} {t['cancellations']:7d} "
            f"{t['cancellations_late']:5d}  {'yes' if d['match'] else 'NO':13s}  "
            f"{pct(sop.get(d['day'], {}).get('late_dispatch_rate')):>7s} "
            f"{pct(sop.get(d['day'], {}).get('late_dispatch_rate_scan')):>8s}"
        )
    lat, base = summary["tracking_latency_minutes"], summary["sop_baseline"]["tracking_latency_minutes"]
    lines += [
        "",
        f"duplicate effects {summary['duplicate_effects']}, missed tracking {summary['missed_tracking']}, "
        f"tracking numbers on two orders {summary['tracking_on_two_orders']}, "
        f"all days report == truth: {summary['all_days_match']}",
        f"shipment -> tracking on TikTok, minutes: median {lat['median']} p95 {lat['p95']} max {lat['max']} "
        f"(by hand at 09:00/17:00: median {base['median']} p95 {base['p95']} max {base['max']})",
        f"Late Dispatch Rate over the run, by carrier scan: orderops {pct(summary['late_dispatch_rate_scan'])}, "
        f"by hand {pct(summary['sop_baseline']['late_dispatch_rate_scan'])}; by upload: orderops "
        f"{pct(summary['late_dispatch_rate'])}, by hand {pct(summary['sop_baseline']['late_dispatch_rate'])}",
        "order (Awaiting Shipment) -> tracking on TikTok, minutes: "
        + ", ".join(
            f"{source} median {v['median']} p95 {v['p95']} max {v['max']} ({v['count']})"
            for source, v in summary["order_to_tracking_minutes"]["by_source"].items()
        )
        + f"; tracking posted by source {summary['tracking_posted_by_source']}",
        "API calls per order: "
        + ", ".join(f"{p} {v['extraction']}+{v['actions']}" for p, v in summary["api_calls_per_order_day"].items())
        + f" (extraction+actions); extraction {summary['extraction_calls_per_order_day']} per order",
        "extraction calls per run (median / p95): "
        + ", ".join(f"{mode} {v['median']} / {v['p95']}" for mode, v in summary["extraction_calls_per_run"].items()),
        f"runs: {summary['extraction']['incremental']} incremental, {summary['extraction']['sweep']} sweeps; "
        f"changes missed by the cursor: {summary['extraction']['missed_by_cursor']}",
        f"run time per run, s: median {summary['run_seconds']['median']} p95 {summary['run_seconds']['p95']}; "
        f"wall {summary['wall_seconds']} s",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--orders-per-day", type=int, default=1000)
    parser.add_argument("--schedule", default="*/30 * * * *")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", default="2026-11-16T00:00:00Z", help="first day, midnight UTC")
    parser.add_argument("--warehouse", help="warehouse URL (default: SQLite under the output folder)")
    parser.add_argument("--out", default=str(REPO / "state" / "simulate"))
    parser.add_argument(
        "--debounce-seconds",
        type=float,
        default=DEBOUNCE_SECONDS,
        help="with events: an event-driven run starts this long after the first waiting event",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=0,
        help="open orders before the start, stuck at their fulfiller (LifeSettings.backlog_orders)",
    )
    parser.add_argument(
        "--aftn",
        choices=("on", "off"),
        default="on",
        help="post Amazon's early tracking number as soon as an MCF order has one (policy post_aftn)",
    )
    parser.add_argument(
        "--events",
        choices=("off", "on", "both"),
        default="off",
        help="platform events (webhooks, Amazon's queue) start runs too; both: the stream twice, "
        "the event-driven figures under with_events",
    )
    parser.add_argument(
        "--webhook-faults",
        default="",
        help="with events: a comma list of stale, replay, cross_shop, old mixed into the sandbox's webhooks "
        "(bench/webhook_faults.py)",
    )
    args = parser.parse_args(argv)
    from bench import webhook_faults

    faults = webhook_faults.parse(args.webhook_faults)
    if faults and args.events == "off":
        raise SystemExit("WEBHOOK_FAULTS needs EVENTS=on or EVENTS=both: the faults go into the webhook stream")
    if args.days < 1 or args.orders_per_day < 0:
        raise SystemExit("DAYS must be at least 1 and ORDERS_PER_DAY not negative")
    if not 0 <= args.debounce_seconds <= 600 or args.backlog < 0:
        raise SystemExit("DEBOUNCE must be 0 to 600 seconds and BACKLOG not negative")
    try:
        start = parse(args.start)
    except ValueError:
        start = None
    if start is None or start.utcoffset() != timedelta(0) or start.timetz().replace(tzinfo=None) != datetime.min.time():
        raise SystemExit(f"--start {args.start!r}: expected a midnight UTC, e.g. 2026-11-16T00:00:00Z")
    ticks(args.schedule, start, start)  # a schedule that is not cron is refused before anything starts
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # Airflow's log setup, read at its import
    import logging

    logging.basicConfig(level=logging.WARNING)
    for name in ("include", "great_expectations", "httpx"):  # the runs' own logs would bury the progress lines
        logging.getLogger(name).setLevel(logging.ERROR)
    print(
        f"simulating {args.days} days x {args.orders_per_day} orders, schedule {args.schedule!r}, seed {args.seed}",
        flush=True,
    )
    out = Path(args.out).resolve()  # Airflow takes only absolute SQLite paths
    life = {"backlog_orders": args.backlog} if args.backlog else None
    policy = {"post_aftn": args.aftn == "on"}
    summary = simulate(
        args.days,
        args.orders_per_day,
        args.schedule,
        args.seed,
        out,
        args.warehouse,
        start,
        life_overrides=life,
        events=args.events == "on",
        debounce_seconds=args.debounce_seconds,
        policy=policy,
        webhook_faults=faults if args.events == "on" else (),
    )
    print(render(summary))
    print(webhook_faults.render(summary))
    if args.events == "both":
        print("\nthe same stream again, with platform events starting runs:", flush=True)
        with_events = simulate(
            args.days,
            args.orders_per_day,
            args.schedule,
            args.seed,
            out / "with_events",
            args.warehouse,
            start,
            life_overrides=life,
            events=True,
            debounce_seconds=args.debounce_seconds,
            policy=policy,
            webhook_faults=faults,
        )
        print(render(with_events))
        print(webhook_faults.render(with_events))
        summary["with_events"] = with_events
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        summary = {
            **summary,
            "all_days_match": summary["all_days_match"] and with_events["all_days_match"],
            "duplicate_effects": summary["duplicate_effects"] + with_events["duplicate_effects"],
            "missed_tracking": summary["missed_tracking"] + with_events["missed_tracking"],
            "wrong_tracking": summary["wrong_tracking"] + with_events["wrong_tracking"],
        }
    print(f"\nwrote {out / 'summary.json'} and truth.json")
    ok = summary["all_days_match"] and not summary["duplicate_effects"] and not summary["missed_tracking"]
    return 0 if ok and not summary["wrong_tracking"] else 1


if __name__ == "__main__":
    sys.exit(main())
