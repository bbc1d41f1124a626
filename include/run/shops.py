"""The shops one deployment serves: one DAG, one set of connections and one ledger scope per shop.

Read at DAG parse time from the JSON file named by `ORDEROPS_SHOPS_FILE` (a list of
`{"name", "connections", "schedule", "policy", "events", "dry_run"}`); without it, one shop called `default` using the
`orderops_*` connections. Runs, staging rows and ledger rows all carry the shop's name, so no
action can cross shops. Each entry is checked on its own (`read_shops`): an entry refused costs its
own shop's DAG, not the others'.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from croniter import croniter

from include.decide.policy import PolicyError, policy_from_dict
from include.run.runconfig import DEFAULTS, Connections, RunConfigError, policy_object

SHOPS_FILE_ENV = "ORDEROPS_SHOPS_FILE"
DEFAULT_SCHEDULE = "*/30 * * * *"  # the one shop of a deployment without a shops file
# a shop name is also a folder name (reports, the GX folder) and part of URLs
SHOP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
# the project's DAGs that are not a shop's: a shop whose DAG id is one of these would clash with it
REPORT_DAG_ID = "orderops_sla_report"
OTHER_DAG_IDS = (REPORT_DAG_ID,)


def _connection_id(value, where: str) -> str:
    """A connection id from the shops file, refused with `where` unless a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise RunConfigError(f"{where}: expected a connection id, got {value!r}")
    return value


@dataclass(frozen=True)
class ShopEvents:
    """Platform events start the shop's runs too (README: Platform events)."""

    redis_conn_id: str = "orderops_redis"  # the doorbell the DAG's AssetWatcher listens to
    amazon_queue_url: str | None = None  # the shop's FULFILLMENT_ORDER_STATUS queue (SQS)
    debounce_seconds: float = 30.0  # the doorbell's trigger waits this long after its first ring
    # the receiver's budget of webhook deliveries for this shop (a burst: twice as many at once);
    # past it a delivery is answered 429 with Retry-After, nothing kept, and the platform retries
    deliveries_per_second: float = 50.0

    @classmethod
    def parse(cls, doc, where: str) -> ShopEvents:
        if not isinstance(doc, dict):
            raise RunConfigError(f"{where}.events: expected an object, got {doc!r:.80}")
        unknown = set(doc) - set(cls.__dataclass_fields__)
        if unknown:
            raise RunConfigError(f"{where}.events: unknown key(s) {', '.join(sorted(unknown))}")
        redis_conn_id = _connection_id(doc.get("redis_conn_id", cls.redis_conn_id), f"{where}.events.redis_conn_id")
        queue = doc.get("amazon_queue_url")
        if queue is not None and not (isinstance(queue, str) and queue.startswith(("https://", "http://"))):
            raise RunConfigError(f"{where}.events.amazon_queue_url: expected the queue's URL, got {queue!r}")
        debounce = doc.get("debounce_seconds", cls.debounce_seconds)
        if isinstance(debounce, bool) or not isinstance(debounce, (int, float)) or not 0 <= debounce <= 600:
            raise RunConfigError(f"{where}.events.debounce_seconds: expected 0 to 600 seconds, got {debounce!r}")
        rate = doc.get("deliveries_per_second", cls.deliveries_per_second)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.1 <= rate <= 10_000:
            raise RunConfigError(
                f"{where}.events.deliveries_per_second: expected 0.1 to 10000 deliveries a second, got {rate!r}"
            )
        return cls(redis_conn_id, queue, float(debounce), float(rate))


@dataclass(frozen=True)
class Shop:
    name: str = "default"
    connections: Connections = field(default_factory=Connections)
    schedule: str = DEFAULT_SCHEDULE
    policy: dict = field(default_factory=dict)
    events: ShopEvents | None = None  # None: the schedule alone starts runs
    dry_run: bool = False  # the shadow period before going live: every run decides and writes nothing

    def param_defaults(self) -> dict:
        """The run settings whose defaults are the shop's own (include.run.runconfig.SETTINGS)."""
        return {
            "shop": self.name,
            "sla_horizon_hours": self.policy.get("horizon_hours", DEFAULTS["sla_horizon_hours"]),
            "dry_run": self.dry_run,
        }

    @property
    def dag_id(self) -> str:
        return "orderops_sla" if self.name == "default" else f"orderops_sla_{self.name.replace('-', '_')}"

    @property
    def events_dag_id(self) -> str:
        """The DAG of the shop's event wakes (one task each); no shop's pipeline DAG id starts so."""
        return EVENTS_PREFIX + self.dag_id.removeprefix("orderops_sla")


# the shop's event DAG's id is its pipeline DAG's with this prefix in place of "orderops_sla"
EVENTS_PREFIX = "orderops_events"


def pipeline_dag_id(dag_id: str) -> str:
    """The shop's pipeline DAG id, from either of its two DAGs' ids."""
    return "orderops_sla" + dag_id.removeprefix(EVENTS_PREFIX) if dag_id.startswith(EVENTS_PREFIX) else dag_id


def default_connections(name: str) -> Connections:
    if name == "default":
        return Connections()
    prefix = f"orderops_{name.replace('-', '_')}"
    return Connections(
        tiktok=f"{prefix}_tiktok",
        shopify=f"{prefix}_shopify",
        amazon_mcf=f"{prefix}_amazon_mcf",
        shipbob=f"{prefix}_shipbob",
        warehouse="orderops_warehouse",
    )


def _identity(entry, i: int) -> tuple[str, Connections]:
    """An entry's name and connections: what makes it a shop apart from the others (the DAG id, the
    connections no two shops may share), checked before the rest of the entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not SHOP_NAME.match(entry["name"]):
        raise RunConfigError(f"shops[{i}].name: expected lower-case letters, digits, - or _ (got {entry!r:.80})")
    unknown = set(entry) - {"name", "connections", "schedule", "policy", "events", "dry_run"}
    if unknown:
        raise RunConfigError(f"shops[{i}] ({entry['name']}): unknown key(s) {', '.join(sorted(unknown))}")
    dag_id = Shop(entry["name"]).dag_id
    if dag_id in OTHER_DAG_IDS:
        raise RunConfigError(
            f"shops[{i}].name: {entry['name']!r} would have the DAG id {dag_id!r}, which "
            "another orderops DAG has; pick another name"
        )
    where = f"shops[{i}] ({entry['name']})"
    conns = entry.get("connections") or {}
    if not isinstance(conns, dict):
        raise RunConfigError(f"{where}.connections: expected an object of platform -> connection id, got {conns!r:.80}")
    bad = set(conns) - set(Connections.__dataclass_fields__)
    if bad:
        raise RunConfigError(f"{where}.connections: unknown key(s) {', '.join(sorted(bad))}")
    for platform, conn_id in conns.items():
        _connection_id(conn_id, f"{where}.connections.{platform}")
    return entry["name"], Connections(**{**default_connections(entry["name"]).__dict__, **conns})


def default_schedule(name: str, events: bool) -> str:
    """A shop's schedule when its entry names none: every 30 minutes, or hourly for a shop whose
    platform events start its runs (the schedule is then the safety net for an event that never
    came: docs: Platform events); at minutes of its own, from a stable hash of its name, so the
    shops' runs start spread over the interval rather than all at once."""
    minute = zlib.crc32(name.encode()) % (60 if events else 30)
    return f"{minute} * * * *" if events else f"{minute},{minute + 30} * * * *"


def _shop(entry: dict, i: int, connections: Connections) -> Shop:
    """The rest of an entry whose identity passed: schedule, policy, events, dry_run."""
    where = f"shops[{i}] ({entry['name']})"
    events = ShopEvents.parse(entry["events"], where) if entry.get("events") is not None else None
    schedule = entry.get("schedule") or default_schedule(entry["name"], events=events is not None)
    if not isinstance(schedule, str) or not croniter.is_valid(schedule):
        raise RunConfigError(f"{where}.schedule: {schedule!r} is not a cron expression")
    policy = policy_object(entry.get("policy"), f"{where}.policy")
    try:
        policy_from_dict(policy)
    except PolicyError as exc:
        raise RunConfigError(f"{where}: {exc}") from None
    dry_run = entry.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise RunConfigError(f"{where}.dry_run: expected true or false, got {dry_run!r:.40}")
    return Shop(
        name=entry["name"], connections=connections, schedule=schedule, policy=policy, events=events, dry_run=dry_run
    )


@dataclass(frozen=True)
class ShopsFile:
    """The shops a shops file serves, and each refused entry's message (naming the entry and what was
    wrong): one bad entry costs its own shop, not the others."""

    shops: tuple[Shop, ...]
    refused: tuple[str, ...] = ()


def read_shops(doc, dag_id: str | None = None) -> ShopsFile:
    """Each entry on its own: a refused entry leaves the others served. An entry whose name and
    connections pass owns them, so a later entry with the same DAG id or the same TikTok or Shopify
    connection is the one refused (two shops on one TikTok shop or Shopify store would act twice on
    each order; a fulfiller account and the warehouse may be shared). With `dag_id` (a task's
    start-up, of either of the shop's DAGs) only that shop's entry is checked in full: the others'
    names and connections only."""
    if dag_id is not None:
        dag_id = pipeline_dag_id(dag_id)
    if not isinstance(doc, list) or not doc:
        raise RunConfigError("shops: expected a non-empty list of shops")
    shops: list[Shop] = []
    refused: list[str] = []
    owners: dict[tuple[str, str], str] = {}  # (platform or "dag_id", value) -> the shop that has it
    for i, entry in enumerate(doc):
        try:
            name, connections = _identity(entry, i)
            shop_dag_id = Shop(name).dag_id
            if ("dag_id", shop_dag_id) in owners:
                # the DAG id spells - as _: shop-a and shop_a would be one DAG
                raise RunConfigError(
                    f"shops[{i}].name: {name!r} is listed twice (- and _ count as one: the DAG id spells both _)"
                )
            for platform in ("tiktok", "shopify"):
                conn_id = getattr(connections, platform)
                if (platform, conn_id) in owners:
                    raise RunConfigError(
                        f"shops: {name!r} and {owners[platform, conn_id]!r} share the {platform} connection "
                        f"{conn_id!r}; each shop needs its own"
                    )
            owners["dag_id", shop_dag_id] = name
            for platform in ("tiktok", "shopify"):
                owners[platform, getattr(connections, platform)] = name
            if dag_id is None or shop_dag_id == dag_id:
                shops.append(_shop(entry, i, connections))
        except RunConfigError as exc:
            if dag_id is None or _dag_id_of(entry) == dag_id:
                refused.append(str(exc))
    return ShopsFile(tuple(shops), tuple(refused))


def _dag_id_of(entry) -> str | None:
    name = entry.get("name") if isinstance(entry, dict) else None
    return Shop(name).dag_id if isinstance(name, str) else None


def parse_shops(doc) -> list[Shop]:
    """Every entry, or the first refused one's error (the preflight, the CLI: all or nothing)."""
    found = read_shops(doc)
    if found.refused:
        raise RunConfigError(found.refused[0])
    return list(found.shops)


def shops_file(dag_id: str | None = None) -> ShopsFile:
    """The shops file's shops and refused entries (one shop, `default`, without a file); a file that
    cannot be read is refused whole."""
    path = os.environ.get(SHOPS_FILE_ENV)
    if not path:
        return ShopsFile((Shop(),))
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunConfigError(f"{SHOPS_FILE_ENV}={path}: {exc}") from None
    return read_shops(doc, dag_id)


def load_shops() -> list[Shop]:
    """Every shop of the shops file, or the first refused entry's error."""
    found = shops_file()
    if found.refused:
        raise RunConfigError(found.refused[0])
    return list(found.shops)


def minutes_setting(name: str, default: float) -> float:
    """A duration in minutes from the environment (0 = off), refused with its name when it is not
    a finite number from 0 to a week."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RunConfigError(f"{name}: expected minutes (a number), got {raw!r}") from None
    if not 0 <= value <= 7 * 24 * 60:  # NaN fails this too
        raise RunConfigError(f"{name}: expected 0 to 10080 minutes, got {raw!r}")
    return value


def count_setting(name: str, default: int, high: int) -> int:
    """A whole number from 1 to `high` from the environment, refused with its name otherwise."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise RunConfigError(f"{name}: expected a whole number from 1 to {high}, got {raw!r}")
    return int(raw)


def task_timeout() -> timedelta | None:
    """No task runs longer than ORDEROPS_TASK_TIMEOUT_MINUTES (30; 0 = no limit): a hung call or an
    endless listing fails the try and the retry starts over, rather than holding the pool."""
    minutes = minutes_setting("ORDEROPS_TASK_TIMEOUT_MINUTES", 30)
    return timedelta(minutes=minutes) if minutes else None


def schedule_interval(schedule: str) -> timedelta:
    """The time between two runs of a cron schedule (the first two after a fixed moment: the
    schedules shops use are regular)."""
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    runs = croniter(schedule, start)
    first = runs.get_next(datetime)
    return runs.get_next(datetime) - first


def event_assets(shop: Shop) -> list:
    """What starts the shop's event DAG: its event asset, whose watchers fire as soon as an event
    waits: the webhook doorbell (Redis pub/sub, the burst waited out in the triggerer) and, with a
    queue URL, Amazon's notification queue."""
    from airflow.sdk import Asset, AssetWatcher
    from orderops_triggers import AmazonNotificationsTrigger, DoorbellTrigger

    assert shop.events is not None
    watchers = [
        AssetWatcher(
            name=f"orderops_webhooks_{shop.name}",
            trigger=DoorbellTrigger(
                shop=shop.name,
                redis_conn_id=shop.events.redis_conn_id,
                debounce_seconds=shop.events.debounce_seconds,
            ),
        )
    ]
    if shop.events.amazon_queue_url:
        watchers.append(
            AssetWatcher(
                name=f"orderops_amazon_{shop.name}",
                trigger=AmazonNotificationsTrigger(
                    shop=shop.name,
                    queue_url=shop.events.amazon_queue_url,
                    amazon_conn_id=shop.connections.amazon_mcf,
                    warehouse_conn_id=shop.connections.warehouse,
                ),
            )
        )
    return [Asset(name=f"orderops_events_{shop.name}", uri=f"orderops://events/{shop.name}", watchers=watchers)]
