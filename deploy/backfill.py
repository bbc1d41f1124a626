"""`make backfill FROM=... TO=... [SHOP=...] [ON=prod]`: every pipeline run of a range again, then the
SLA reports of its days, through a running Airflow's REST API (Airflow's own backfills, which its
scheduler runs), printing progress and an estimate; the UI stays up.

    python -m deploy.backfill --from 2026-11-17 --to 2026-11-19 [--shop NAME] [--on demo|prod] [--state DIR]

FROM and TO are UTC dates or date-times (2026-11-17T06:00): the range is FROM up to TO, a date as
TO meaning the end of that day. Each shop's pipeline DAG (or SHOP's) gets one backfill of the
windows that start in the range, every window run again (the action ledger keeps each side effect
at most once); once they are done, the report DAG gets one backfill of the range's days. A DAG
that was paused is unpaused for its backfill and paused again when it is done.

Where Airflow is: `--on demo` (the default) is `make ui`'s, on the demo's folder; `--on prod` is
`make prod-up`'s. docs/operations/backfills.md says more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from include.run.runconfig import STATE_DIR
from include.run.shops import REPORT_DAG_ID, Shop

# Airflow creates a backfill run for each window whose logical date is from..to, both included
LAST_INSTANT = timedelta(seconds=1)
POLL_SECONDS = 5.0
# a progress line at least this often, and whenever a run finishes
PROGRESS_SECONDS = 60.0


class BackfillError(Exception):
    """What went wrong, for the person who typed the command (exit status 2)."""


def parse_instant(text: str, what: str, end: bool) -> datetime:
    """A UTC date or date-time; a date as the end of a range is the end of that day."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + (timedelta(days=1) if end else timedelta())
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BackfillError(
            f"{what}={text!r}: expected a date YYYY-MM-DD or a UTC date-time YYYY-MM-DDTHH:MM"
        ) from None
    if moment.tzinfo is not None and moment.utcoffset() != timedelta(0):
        raise BackfillError(f"{what}={text!r}: give the time in UTC")
    return moment.replace(tzinfo=UTC)


def parse_range(start_text: str, end_text: str, now: datetime) -> tuple[datetime, datetime]:
    start, end = parse_instant(start_text, "FROM", end=False), parse_instant(end_text, "TO", end=True)
    if end <= start:
        raise BackfillError(f"FROM={start_text} TO={end_text}: the range is empty (TO must come after FROM)")
    if start >= now:
        raise BackfillError(f"FROM={start_text}: in the future; a backfill runs windows that have ended")
    return start, end


def days_of(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The first and last UTC midnight of the days the range touches (the report DAG's logical dates)."""
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    last = (end - LAST_INSTANT).replace(hour=0, minute=0, second=0, microsecond=0)
    return first, last


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600:.0f} h {seconds % 3600 / 60:.0f} min"


class Airflow:
    """An Airflow API server, logged in as the admin."""

    def __init__(self, base: str, password: str, how_to_start: str):
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=60)
        try:
            answer = self.client.post("/auth/token", json={"username": "admin", "password": password})
        except httpx.HTTPError:
            raise BackfillError(f"no Airflow answers at {base}: {how_to_start}") from None
        if answer.status_code not in (200, 201):
            raise BackfillError(f"{base} refused the admin's login ({answer.status_code}): {answer.text[:300]}")
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs) -> Any:
        answer = self.client.request(method, f"/api/v2{path}", **kwargs)
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise BackfillError(f"Airflow answered {answer.status_code} to {method} {path}: {detail}")
        return answer.json()


def demo_airflow(state: Path) -> Airflow:
    """`make ui`'s Airflow: its address in the demo's folder while it runs, the admin password in
    the demo's Airflow home."""
    start = f"start the UI first, in another terminal: make ui (on {state}), and run this again"
    ui, passwords = state / "ui.json", state / "airflow" / "orderops_ui_passwords.json"
    if not (state / "demo.json").exists():
        raise BackfillError(f"no demo in {state}: run `make demo`, then `make ui`, then this")
    if not ui.exists() or not passwords.exists():
        raise BackfillError(f"`make ui` is not running on {state}: {start}")
    return Airflow(json.loads(ui.read_text())["url"], json.loads(passwords.read_text())["admin"], start)


def prod_airflow(state: Path | None) -> Airflow:
    from deploy.prod_local import DeployError, Deployment

    try:
        dep = Deployment.load(state or Deployment().state)
    except DeployError as exc:
        raise BackfillError(f"{exc}: start the production shape with `make prod-up` first") from None
    return Airflow(dep.api_url, dep.admin_password(), "start it with `make prod-up`, and run this again")


def pipeline_dags(airflow: Airflow, shop: str | None) -> list[str]:
    """The shops' pipeline DAGs Airflow knows (tag orderops, not the report), or SHOP's."""
    dags: list[dict] = []
    while True:  # a page at a time: Airflow answers at most 100 a request
        page = airflow.call("GET", "/dags", params={"tags": "orderops", "limit": 100, "offset": len(dags)})
        dags += page["dags"]
        if not page["dags"] or len(dags) >= page["total_entries"]:
            break
    pipelines = sorted(d["dag_id"] for d in dags if d["dag_id"] != REPORT_DAG_ID)
    if shop is None:
        if not pipelines:
            raise BackfillError(f"{airflow.base} has no orderops pipeline DAG yet (is the DAG processor running?)")
        return pipelines
    dag_id = Shop(shop).dag_id
    if dag_id not in pipelines:
        raise BackfillError(f"SHOP={shop}: no DAG {dag_id} in {airflow.base}; its shops' DAGs: {', '.join(pipelines)}")
    return [dag_id]


@dataclass
class Backfill:
    dag_id: str
    id: int
    start: datetime  # the first and last logical dates, both included
    last: datetime
    total: int
    created: float = field(default_factory=time.monotonic)
    done: dict[str, int] = field(default_factory=dict)  # state -> runs
    completed: bool = False

    def line(self) -> str:
        finished = sum(self.done.values())
        text = f"  {self.dag_id}: {finished}/{self.total} runs done"
        if self.done.get("failed"):
            text += f" ({self.done['failed']} failed)"
        if self.completed:
            return text + ", backfill complete"
        if 0 < finished < self.total:
            each = (time.monotonic() - self.created) / finished
            text += f", {duration(each)} a run so far, about {duration(each * (self.total - finished))} left"
        return text


def create(airflow: Airflow, dag_id: str, first: datetime, last: datetime) -> Backfill | None:
    """One backfill of `dag_id`'s windows with logical dates from `first` to `last`, every one run
    again; None when the range holds no window that has ended."""
    request = {
        "dag_id": dag_id,
        "from_date": iso(first),
        "to_date": iso(last),
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }
    planned = airflow.call("POST", "/backfills/dry_run", json=request)["backfills"]
    if not planned:
        return None
    made = airflow.call("POST", "/backfills", json=request)
    return Backfill(dag_id, made["id"], first, last, len(planned))


def unpause(airflow: Airflow, dag_id: str) -> bool:
    """Unpause a DAG (the scheduler runs no task of a paused DAG, backfills' neither); was it paused?"""
    if not airflow.call("GET", f"/dags/{dag_id}")["is_paused"]:
        return False
    airflow.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    return True


def watch(airflow: Airflow, backfills: list[Backfill], say: Callable[[str], None]) -> None:
    """Until Airflow marks every backfill complete: a line per backfill whenever a run finishes,
    and at least every PROGRESS_SECONDS."""
    last_said = 0.0
    while not all(b.completed for b in backfills):
        changed = False
        for b in backfills:
            if b.completed:
                continue
            b.completed = airflow.call("GET", f"/backfills/{b.id}")["completed_at"] is not None
            done = {}
            for state in ("success", "failed"):
                params = {"logical_date_gte": iso(b.start), "logical_date_lte": iso(b.last), "state": state, "limit": 1}
                done[state] = airflow.call("GET", f"/dags/{b.dag_id}/dagRuns", params=params)["total_entries"]
            changed |= done != b.done or b.completed
            b.done = done
        if changed or time.monotonic() - last_said >= PROGRESS_SECONDS:
            for b in backfills:
                say(b.line())
            last_said = time.monotonic()
        if not all(b.completed for b in backfills):
            time.sleep(POLL_SECONDS)


def failed_runs(airflow: Airflow, b: Backfill) -> list[str]:
    params = {"logical_date_gte": iso(b.start), "logical_date_lte": iso(b.last), "state": "failed", "limit": 100}
    return [r["dag_run_id"] for r in airflow.call("GET", f"/dags/{b.dag_id}/dagRuns", params=params)["dag_runs"]]


def reports_built(airflow: Airflow, b: Backfill) -> list[str]:
    """What each report run wrote (its build_reports tasks' results: day, file, breaches)."""
    params = {"logical_date_gte": iso(b.start), "logical_date_lte": iso(b.last), "limit": 100}
    lines = []
    for run in airflow.call("GET", f"/dags/{b.dag_id}/dagRuns", params=params)["dag_runs"]:
        path = f"/dags/{b.dag_id}/dagRuns/{run['dag_run_id']}/taskInstances/build_reports/xcomEntries"
        for entry in airflow.call("GET", path, params={"xcom_key": "return_value"})["xcom_entries"]:
            value = airflow.call("GET", f"{path}/return_value", params={"map_index": entry["map_index"]})["value"]
            for built in json.loads(value) if isinstance(value, str) else value:
                lines.append(f"  {built['day']}: {built['breaches']} breached order(s), {built['html']}")
    return sorted(lines)


def backfill(airflow: Airflow, start: datetime, end: datetime, shop: str | None, say: Callable[[str], None]) -> int:
    """The pipeline's backfills, then the report's; 0 when every run succeeded."""
    dags = pipeline_dags(airflow, shop)
    first_day, last_day = days_of(start, end)
    paused_here: list[str] = []
    say(f"backfilling {iso(start)} .. {iso(end)} through the Airflow at {airflow.base}")
    pipelines = []
    for dag_id in dags:
        made = create(airflow, dag_id, start, end - LAST_INSTANT)
        if made is None:
            say(f"  {dag_id}: no window of its schedule starts and ends in the range: nothing to run")
            continue
        # after the backfill is made (a refused one leaves the DAG as it was)
        if unpause(airflow, dag_id):
            paused_here.append(dag_id)
        say(f"  {dag_id}: backfill {made.id}, {made.total} run(s) to do, one at a time")
        pipelines.append(made)
    watch(airflow, pipelines, say)
    failed = {b.dag_id: failed_runs(airflow, b) for b in pipelines}
    say(f"the SLA reports of {first_day:%Y-%m-%d} .. {last_day:%Y-%m-%d} ({REPORT_DAG_ID}) ...")
    report = create(airflow, REPORT_DAG_ID, first_day, last_day)
    if report is None:
        say("  no day of the range has ended yet: no report to build")
    else:
        if unpause(airflow, REPORT_DAG_ID):
            paused_here.append(REPORT_DAG_ID)
        say(f"  {REPORT_DAG_ID}: backfill {report.id}, {report.total} day(s)")
        watch(airflow, [report], say)
        failed[REPORT_DAG_ID] = failed_runs(airflow, report)
        for line in reports_built(airflow, report):
            say(line)
    for dag_id in paused_here:  # as it was found
        airflow.call("PATCH", f"/dags/{dag_id}", json={"is_paused": True})
    if paused_here:
        say(f"paused again, as they were: {', '.join(paused_here)}")
    failures = {dag_id: runs for dag_id, runs in failed.items() if runs}
    for dag_id, runs in failures.items():
        say(f"FAILED {dag_id}: " + ", ".join(f"{airflow.base}/dags/{dag_id}/runs/{r}" for r in runs))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.backfill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--from", dest="start", required=True, help="YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    parser.add_argument("--to", dest="end", required=True, help="YYYY-MM-DD (that day included) or YYYY-MM-DDTHH:MM")
    parser.add_argument("--shop", help="one shop's pipeline (default: every shop's)")
    parser.add_argument("--on", choices=["demo", "prod"], default="demo", help="make ui's Airflow or make prod-up's")
    parser.add_argument("--state", type=Path, help="the demo's folder (state/demo) or the deployment's (state/prod)")
    args = parser.parse_args(argv)
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"{time.monotonic() - began:6.0f} s {line}", flush=True)

    try:
        start, end = parse_range(args.start, args.end, datetime.now(UTC))
        airflow = demo_airflow(args.state or STATE_DIR / "demo") if args.on == "demo" else prod_airflow(args.state)
        return backfill(airflow, start, end, args.shop, say)
    except BackfillError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\nstopped watching: the backfills go on in Airflow (Browse > Backfills in the UI cancels them)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
