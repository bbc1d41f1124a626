"""One run's settings: the shop, the extraction window, the policy, where things are.

Scheduled, backfill and manual runs all come through `run_settings`, which derives the window
in one place: the run's data interval when it has one, else an explicit `window_start`/
`window_end` param, else the `window_minutes` before the run's `run_after`.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from include.decide.policy import POLICY_SCHEMA, Policy, PolicyError, policy_from_dict

STATE_DIR = Path(os.environ.get("ORDEROPS_STATE_DIR", Path(__file__).resolve().parents[2] / "state"))


class RunConfigError(ValueError):
    """A DAG param or setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Setting:
    """One run setting, declared once: the DAG builds a Param of each operator's setting from it (the
    trigger form and the API check the schema) and `run_settings` checks every setting's schema, plus
    what JSON Schema cannot say (numbers finite, times parseable and plausible)."""

    name: str
    default: Any
    schema: dict[str, Any]
    expected: str  # what the value must be, for the error that names a bad one
    description: str
    # True: a DAG param, on the trigger form. False: no param, so not on the form; a run's conf (the
    # REST API, `airflow dags trigger --conf`) still sets it, for tests and replays (the shop: fixed)
    for_operators: bool = True


def _number(low: float, high: float, unit: str) -> tuple[dict[str, Any], str]:
    return {"type": "number", "minimum": low, "maximum": high}, f"{low:g} to {high:g} {unit}"


_TIME = ({"type": ["null", "string"], "format": "date-time"}, "an ISO-8601 time with its offset")
_FLAG = ({"type": "boolean"}, "true or false")
FULFILLERS = ("amazon_mcf", "shipbob")
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "shop",
        None,
        {"type": ["null", "string"], "pattern": "^[A-Za-z0-9_-]{1,41}$"},
        "letters, digits, - or _",
        "the shop this DAG serves (fixed: each shop has its own DAG)",
        False,
    ),
    Setting("sla_horizon_hours", 24, *_number(0, 720, "hours"), "near SLA: due within this many hours"),
    Setting("dry_run", False, *_FLAG, "decide and record, but write nothing to any platform"),
    Setting(
        "policy",
        {},
        POLICY_SCHEMA,
        "an object of settings",
        'overrides of the shop\'s decision policy for this run, e.g. {"c3_action": "escalate"}; every '
        "setting, its default and meaning: docs/configuration/params-and-policy.md",
    ),
    Setting(
        "fulfillers",
        list(FULFILLERS),
        {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "enum": list(FULFILLERS)}},
        f"a non-empty list of {', '.join(FULFILLERS)}",
        "the fulfillers this shop ships with: a run lists and acts on orders at these only",
    ),
    Setting("window_start", None, *_TIME, "explicit window start (a backfill of a range, a replay)", False),
    Setting("window_end", None, *_TIME, "explicit window end", False),
    Setting("window_minutes", 30, *_number(1, 1440, "minutes"), "a manual run's window: the minutes before it", False),
    Setting(
        "overlap_minutes", 15, *_number(0, 1440, "minutes"), "each listing starts this much before its window or cursor"
    ),
    Setting("now", None, *_TIME, "decide as of this time (tests, replays)", False),
    Setting("sweep", False, *_FLAG, "list everything in play, not only what changed"),
    Setting("sweep_hours", 6, *_number(0, 168, "hours"), "a sweep at least this often (0: every run)"),
    Setting(
        "event_retention_days",
        30,
        *_number(1, 3650, "days"),
        "platform events a run has claimed are deleted this many days after they arrived",
    ),
    Setting(
        "full_sweep_hours",
        24,
        *_number(0, 168, "hours"),
        "a sweep lists everything in play at least this "
        "often; the sweeps between list the changes since the last (0: every sweep)",
    ),
    Setting(
        "report_every_minutes",
        30,
        *_number(0, 1440, "minutes"),
        "the shop's SLA report of the current day is rebuilt at the end of a run that staged or acted on "
        "orders, at most once in this many minutes (0: after every such run); the day that ended is "
        "reported at midnight",
    ),
)
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}


def checked_params(params: dict[str, Any]) -> dict[str, Any]:
    """Every setting's value (the default where a param is missing), each checked against its
    schema; a bad one is refused naming the param, what it must be and what it was."""
    import jsonschema

    if "connections" in params:
        # once documented as a param: say why it is refused, not merely that it is unknown
        raise RunConfigError(
            "param connections: not accepted; a run uses its shop's connections, from the shops "
            "file (ORDEROPS_SHOPS_FILE) or, without one, the orderops_* connections"
        )
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise RunConfigError(f"unknown param(s) {', '.join(unknown)}; known: {', '.join(sorted(DEFAULTS))}")
    values = {**DEFAULTS, **params}
    for setting in SETTINGS:
        value = values[setting.name]
        # JSON Schema lets NaN through every bound, and a JSON-typed value may come as a tuple
        finite = not isinstance(value, float) or math.isfinite(value)
        validator = jsonschema.Draft202012Validator(
            setting.schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        error = jsonschema.exceptions.best_match(
            validator.iter_errors(list(value) if isinstance(value, tuple) else value)
        )
        if error is not None and "properties" in setting.schema and (error.absolute_path or error.validator != "type"):
            # inside an object of settings (the policy): name the one that is wrong
            where = ".".join(map(str, (setting.name, *error.absolute_path)))
            raise RunConfigError(f"param {setting.name}: {where}: {error.message}")
        if not finite or error is not None:
            raise RunConfigError(f"param {setting.name}: expected {setting.expected}, got {value!r}")
    return values


@dataclass(frozen=True)
class Connections:
    """Airflow connection ids for one shop (a deployment may serve several shops)."""

    tiktok: str = "orderops_tiktok"
    shopify: str = "orderops_shopify"
    amazon_mcf: str = "orderops_amazon_mcf"
    shipbob: str = "orderops_shipbob"
    warehouse: str = "orderops_warehouse"


@dataclass(frozen=True)
class Extraction:
    """What a run lists, prepare_run's decision (before it, what the params ask): a sweep and why
    (`sweep`; None lists what changed since the shop's cursors), whether the sweep lists everything
    in play (`full`; the sweeps between list the changes since the last one), and for a run started by
    platform events the sources its events came from (`listed`; None lists every source)."""

    sweep: str | None = None
    full: bool = False
    listed: tuple[str, ...] | None = None

    def lists(self, source: str) -> bool:
        """Whether this run lists `source` (an event-driven run: only where its events came from)."""
        return self.listed is None or source in self.listed


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
    fulfillers: tuple[str, ...] = FULFILLERS
    # "now" for decisions: the sandbox's clock in tests and demos, else the wall clock
    now_override: datetime | None = None
    # `prepare_run` also sweeps a shop's first run and once `sweep_hours` have passed; a sweep lists
    # everything in play on a first run, a backfill, when asked and once `full_sweep_hours` have passed
    sweep_hours: float = DEFAULTS["sweep_hours"]
    full_sweep_hours: float = DEFAULTS["full_sweep_hours"]
    event_retention_days: float = DEFAULTS["event_retention_days"]
    report_every_minutes: float = DEFAULTS["report_every_minutes"]
    # a run started by platform events (Airflow's asset-triggered run): it takes the shop's waiting
    # events and lists only the sources they came from
    event_driven: bool = False
    extraction: Extraction = field(default_factory=Extraction)

    def to_xcom(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("window_start", "window_end", "now_override"):
            doc[key] = doc[key].isoformat() if doc[key] else None
        doc["overlap"] = self.overlap.total_seconds()
        return doc

    @classmethod
    def from_xcom(cls, doc: dict[str, Any]) -> RunSettings:
        return cls(
            shop=doc["shop"],
            dag_id=doc["dag_id"],
            run_id=doc["run_id"],
            window_start=datetime.fromisoformat(doc["window_start"]),
            window_end=datetime.fromisoformat(doc["window_end"]),
            overlap=timedelta(seconds=doc["overlap"]),
            dry_run=doc["dry_run"],
            policy=policy_from_dict(doc["policy"]),
            connections=Connections(**doc["connections"]),
            fulfillers=tuple(doc["fulfillers"]),
            now_override=datetime.fromisoformat(doc["now_override"]) if doc["now_override"] else None,
            sweep_hours=doc["sweep_hours"],
            full_sweep_hours=doc["full_sweep_hours"],
            event_retention_days=doc["event_retention_days"],
            # settings a run in flight made before the setting existed lack it
            report_every_minutes=doc.get("report_every_minutes", DEFAULTS["report_every_minutes"]),
            event_driven=bool(doc.get("event_driven")),
            extraction=Extraction(
                sweep=doc["extraction"]["sweep"],
                full=doc["extraction"]["full"],
                listed=None if doc["extraction"]["listed"] is None else tuple(doc["extraction"]["listed"]),
            ),
        )


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


def run_settings(
    *,
    dag_id: str,
    run_id: str,
    params: dict[str, Any],
    data_interval_start: Any = None,
    data_interval_end: Any = None,
    run_after: Any = None,
    shop: Any = None,
    run_type: str | None = None,
) -> RunSettings:
    """Validate the DAG params and derive the window (scheduled, backfill or manual run).

    A backfill (`run_type` "backfill"), a run with an explicit window and one with param `sweep`
    true list everything in play (a full sweep) rather than what changed since the cursors.
    `shop` (an `include.run.shops.Shop`) pins the shop, and its connections are the run's: no param
    can point a run at other connections (without `shop`, the `orderops_*` ones).
    """
    if shop is not None:
        if params.get("shop") not in (None, shop.name):
            raise RunConfigError(f"param shop: this DAG serves shop {shop.name!r}, not {params['shop']!r}")
        params = {
            **params,
            "shop": shop.name,
            "policy": {**shop.policy, **policy_object(params.get("policy"), "param policy")},
        }
    values = checked_params(params)
    shop_name = values["shop"] or "default"
    policy_doc = policy_object(values["policy"], "param policy")
    if "sla_horizon_hours" in params:
        policy_doc["horizon_hours"] = values["sla_horizon_hours"]
    try:
        policy = policy_from_dict(policy_doc)
    except PolicyError as exc:
        raise RunConfigError(str(exc)) from None
    if values["window_start"] or values["window_end"]:
        if not (values["window_start"] and values["window_end"]):
            raise RunConfigError("params window_start and window_end go together")
        start, end = _time(values["window_start"], "window_start"), _time(values["window_end"], "window_end")
    elif data_interval_start is not None and data_interval_end is not None and data_interval_start != data_interval_end:
        start, end = _time(data_interval_start, "data_interval_start"), _time(data_interval_end, "data_interval_end")
    else:
        end = _time(run_after or datetime.now(timezone.utc), "run_after")
        start = end - timedelta(minutes=float(values["window_minutes"]))
    if start >= end:
        raise RunConfigError(f"window: start {start:%Y-%m-%dT%H:%M:%SZ} is not before end {end:%Y-%m-%dT%H:%M:%SZ}")
    for name, moment in (("window_start", start), ("window_end", end)):
        if not PLAUSIBLE_FROM <= moment <= datetime.now(timezone.utc) + NOW_AHEAD:
            raise RunConfigError(
                f"{'param ' + name if values[name] else 'window'}: {moment.isoformat()} "
                f"is before {PLAUSIBLE_FROM:%Y} or more than a day ahead of this machine's clock"
            )
    now = _time(values["now"], "now") if values["now"] else None
    if now is not None and not PLAUSIBLE_FROM <= now <= datetime.now(timezone.utc) + NOW_AHEAD:
        # listings would be cut by the lookback cap and shipped orders look unfulfilled
        raise RunConfigError(
            f"param now: {values['now']!r} is before {PLAUSIBLE_FROM:%Y} or more than a day "
            "ahead of this machine's clock"
        )
    sweep = (
        "asked"
        if values["sweep"]
        else "backfill"
        if run_type == "backfill"
        else "explicit window"
        if values["window_start"]
        else None
    )
    return RunSettings(
        shop=shop_name,
        dag_id=dag_id,
        run_id=run_id,
        window_start=start,
        window_end=end,
        overlap=timedelta(minutes=values["overlap_minutes"]),
        dry_run=values["dry_run"],
        policy=policy,
        connections=shop.connections if shop is not None else Connections(),
        fulfillers=tuple(values["fulfillers"]),
        now_override=now,
        sweep_hours=float(values["sweep_hours"]),
        full_sweep_hours=float(values["full_sweep_hours"]),
        event_retention_days=float(values["event_retention_days"]),
        report_every_minutes=float(values["report_every_minutes"]),
        event_driven=run_type == "asset_triggered" and sweep is None,
        extraction=Extraction(sweep=sweep, full=sweep is not None),
    )
