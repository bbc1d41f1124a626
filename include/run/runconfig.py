"""One run's settings: the shop, the extraction window, the policy, where things are.

Scheduled, backfill and manual runs all come through `run_settings`, which derives the window
in one place: the run's data interval when it has one, else an explicit `window_start`/
`window_end` param, else the `window_minutes` before the run's `run_after`.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from include.decide.policy import Policy, PolicyError, policy_from_dict

STATE_DIR = Path(os.environ.get("ORDEROPS_STATE_DIR", Path(__file__).resolve().parents[2] / "state"))


class RunConfigError(ValueError):
    """A DAG param or setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Connections:
    """Airflow connection ids for one shop (a deployment may serve several shops)."""

    tiktok: str = "orderops_tiktok"
    shopify: str = "orderops_shopify"
    amazon_mcf: str = "orderops_amazon_mcf"
    shipbob: str = "orderops_shipbob"
    warehouse: str = "orderops_warehouse"


@dataclass(frozen=True)
class RunSettings:
    shop: str
    dag_id: str
    run_id: str
    window_start: datetime
    window_end: datetime
    overlap: timedelta
    dry_run: bool
    policy: Policy
    connections: Connections = field(default_factory=Connections)
    fulfillers: tuple[str, ...] = ("amazon_mcf", "shipbob")
    # "now" for decisions: the sandbox's clock in tests and demos, else the wall clock
    now_override: datetime | None = None
    # Why this run lists everything in play (a full sweep), or None: it lists what changed since the
    # shop's cursors. `prepare_run` also sweeps a shop's first run and once `sweep_hours` have passed.
    sweep: str | None = None
    sweep_hours: float = 6.0
    # A sweep lists everything in play on a shop's first run, a backfill, when asked and once
    # `full_sweep_hours` have passed; the sweeps between list the changes since the last sweep.
    full_sweep_hours: float = 24.0
    full_sweep: bool = False
    # A run started by platform events (Airflow's asset-triggered run): it takes the shop's waiting
    # events and lists only the sources they came from (`listed`, set by `prepare_run`).
    event_driven: bool = False
    listed: tuple[str, ...] | None = None

    def lists(self, source: str) -> bool:
        """Whether this run lists `source` (an event-driven run: only where its events came from)."""
        return self.listed is None or source in self.listed

    def to_xcom(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("window_start", "window_end", "now_override"):
            doc[key] = doc[key].isoformat() if doc[key] else None
        doc["overlap"] = self.overlap.total_seconds()
        return doc

    @classmethod
    def from_xcom(cls, doc: dict[str, Any]) -> "RunSettings":
        return cls(shop=doc["shop"], dag_id=doc["dag_id"], run_id=doc["run_id"],
                   window_start=datetime.fromisoformat(doc["window_start"]),
                   window_end=datetime.fromisoformat(doc["window_end"]),
                   overlap=timedelta(seconds=doc["overlap"]), dry_run=doc["dry_run"],
                   policy=Policy(**doc["policy"]), connections=Connections(**doc["connections"]),
                   fulfillers=tuple(doc["fulfillers"]),
                   now_override=datetime.fromisoformat(doc["now_override"]) if doc["now_override"] else None,
                   sweep=doc.get("sweep"), sweep_hours=doc.get("sweep_hours", 6.0),
                   full_sweep_hours=doc.get("full_sweep_hours", 24.0), full_sweep=bool(doc.get("full_sweep")),
                   event_driven=bool(doc.get("event_driven")),
                   listed=None if doc.get("listed") is None else tuple(doc["listed"]))


def now_for(settings: RunSettings) -> datetime:
    """The run's clock: the `now` param when given (tests, demos, simulations), else the wall clock."""
    return settings.now_override or datetime.now(timezone.utc)


def policy_object(value: Any, where: str) -> dict:
    """A policy document as a fresh dict; anything but an object (or nothing) is refused by `where`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RunConfigError(f"{where}: expected an object of settings, got {type(value).__name__} {value!r:.60}")
    return dict(value)


# How far ahead of the wall clock a run's "now" may be (tests and replays use past moments).
NOW_AHEAD = timedelta(days=1)
# No shop's data is older than the platforms (TikTok Shop opened in 2021): an earlier moment is a typo
PLAUSIBLE_FROM = datetime(2016, 1, 1, tzinfo=timezone.utc)


def _time(value: Any, name: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise RunConfigError(f"param {name}: {value!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        raise RunConfigError(f"param {name}: {value!r} has no timezone")
    # a plain datetime: Airflow hands over pendulum DateTimes, whose isoformat() drops a stdlib UTC offset
    return datetime.fromtimestamp(moment.timestamp(), tz=timezone.utc)


def run_settings(*, dag_id: str, run_id: str, params: dict[str, Any], data_interval_start: Any = None,
                 data_interval_end: Any = None, run_after: Any = None, shop: Any = None,
                 run_type: str | None = None) -> RunSettings:
    """Validate the DAG params and derive the window (scheduled, backfill or manual run).

    A backfill (`run_type` "backfill"), a run with an explicit window and one with param `sweep`
    true list everything in play (a full sweep) rather than what changed since the cursors.
    `shop` (an `include.run.shops.Shop`) pins the shop, and its connections are the run's: no param
    can point a run at other connections (without `shop`, the `orderops_*` ones).
    """
    if "connections" in params:
        # once documented as a param: say why it is refused, not merely that it is unknown
        raise RunConfigError("param connections: not accepted; a run uses its shop's connections, from the shops "
                             "file (ORDEROPS_SHOPS_FILE) or, without one, the orderops_* connections")
    known = {"shop", "sla_horizon_hours", "window_minutes", "overlap_minutes", "dry_run", "policy", "window_start", "window_end",
             "fulfillers", "now", "sweep", "sweep_hours", "full_sweep_hours"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise RunConfigError(f"unknown param(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if shop is not None:
        if params.get("shop") not in (None, shop.name):
            raise RunConfigError(f"param shop: this DAG serves shop {shop.name!r}, not {params['shop']!r}")
        params = {**params, "shop": shop.name,
                  "policy": {**shop.policy, **policy_object(params.get("policy"), "policy")}}
    shop_name = params.get("shop") or "default"
    if not isinstance(shop_name, str) or not shop_name.replace("-", "").replace("_", "").isalnum():
        raise RunConfigError(f"param shop: {shop_name!r} must be letters, digits, - or _")
    policy_doc = policy_object(params.get("policy"), "policy")
    if params.get("sla_horizon_hours") is not None:
        policy_doc["horizon_hours"] = params["sla_horizon_hours"]
    try:
        policy = policy_from_dict(policy_doc)
    except PolicyError as exc:
        raise RunConfigError(str(exc)) from None
    if params.get("window_start") or params.get("window_end"):
        if not (params.get("window_start") and params.get("window_end")):
            raise RunConfigError("params window_start and window_end go together")
        start, end = _time(params["window_start"], "window_start"), _time(params["window_end"], "window_end")
    elif data_interval_start is not None and data_interval_end is not None and data_interval_start != data_interval_end:
        start, end = _time(data_interval_start, "data_interval_start"), _time(data_interval_end, "data_interval_end")
    else:
        minutes = params.get("window_minutes", 30)
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 1 <= minutes <= 1440:
            raise RunConfigError(f"param window_minutes: expected 1 to 1440 minutes, got {minutes!r}")
        end = _time(run_after or datetime.now(timezone.utc), "run_after")
        start = end - timedelta(minutes=float(minutes))
    if start >= end:
        raise RunConfigError(f"window: start {start:%Y-%m-%dT%H:%M:%SZ} is not before end {end:%Y-%m-%dT%H:%M:%SZ}")
    for name, moment in (("window_start", start), ("window_end", end)):
        if not PLAUSIBLE_FROM <= moment <= datetime.now(timezone.utc) + NOW_AHEAD:
            raise RunConfigError(f"{'param ' + name if params.get(name) else 'window'}: {moment.isoformat()} "
                                 f"is before {PLAUSIBLE_FROM:%Y} or more than a day ahead of this machine's clock")
    overlap = params.get("overlap_minutes", 15)
    if isinstance(overlap, bool) or not isinstance(overlap, (int, float)) or not 0 <= overlap <= 1440:
        raise RunConfigError(f"param overlap_minutes: expected 0 to 1440 minutes, got {overlap!r}")
    if params.get("dry_run") not in (None, True, False):
        raise RunConfigError(f"param dry_run: expected true or false, got {params['dry_run']!r}")
    fulfillers = tuple(params.get("fulfillers") or ("amazon_mcf", "shipbob"))
    if not set(fulfillers) <= {"amazon_mcf", "shipbob"} or not fulfillers:
        raise RunConfigError(f"param fulfillers: {list(fulfillers)!r} must be a non-empty subset of amazon_mcf, shipbob")
    now = _time(params["now"], "now") if params.get("now") else None
    if now is not None and not PLAUSIBLE_FROM <= now <= datetime.now(timezone.utc) + NOW_AHEAD:
        # listings would be cut by the lookback cap and shipped orders look unfulfilled
        raise RunConfigError(f"param now: {params['now']!r} is before {PLAUSIBLE_FROM:%Y} or more than a day "
                             "ahead of this machine's clock")
    if params.get("sweep") not in (None, True, False):
        raise RunConfigError(f"param sweep: expected true or false, got {params['sweep']!r}")
    sweep_hours = params.get("sweep_hours", 6)
    if isinstance(sweep_hours, bool) or not isinstance(sweep_hours, (int, float)) or not 0 <= sweep_hours <= 168:
        raise RunConfigError(f"param sweep_hours: expected 0 to 168 hours (0: every run), got {sweep_hours!r}")
    full_sweep_hours = params.get("full_sweep_hours", 24)
    if isinstance(full_sweep_hours, bool) or not isinstance(full_sweep_hours, (int, float)) \
            or not 0 <= full_sweep_hours <= 168:
        raise RunConfigError(f"param full_sweep_hours: expected 0 to 168 hours (0: every sweep lists everything in "
                             f"play), got {full_sweep_hours!r}")
    sweep = ("asked" if params.get("sweep") else "backfill" if run_type == "backfill"
             else "explicit window" if params.get("window_start") else None)
    return RunSettings(shop=shop_name, dag_id=dag_id, run_id=run_id, window_start=start, window_end=end,
                       overlap=timedelta(minutes=overlap), dry_run=bool(params.get("dry_run", False)),
                       policy=policy, connections=shop.connections if shop is not None else Connections(),
                       fulfillers=fulfillers,
                       now_override=now, sweep=sweep, sweep_hours=float(sweep_hours),
                       full_sweep_hours=float(full_sweep_hours), full_sweep=sweep is not None,
                       event_driven=run_type == "asset_triggered" and sweep is None)
