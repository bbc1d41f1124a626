"""The little the DAG files need from Airflow's context: settings, clients, warehouse, lineage.

Kept apart from `include.run.pipeline` so the pipeline runs without Airflow in tests and benchmarks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from include.act.ledger import RunContext
from include.run.platforms import Platforms
from include.run.runconfig import STATE_DIR, RunConfigError, RunSettings, run_settings
from include.store.warehouse import Warehouse
from orderops_provider.base import ConfigurationError

log = logging.getLogger(__name__)
# Set when the platforms are the sandbox: decisions then use the sandbox's scenario clock.
CLOCK_URL_ENV = "ORDEROPS_SANDBOX_CLOCK_URL"


def warehouse_url(conn_id: str) -> str:
    """The warehouse connection as a SQLAlchemy URL; SQLite under the state folder when unset."""
    return _url(conn_id, _connection(conn_id))


def schedule_intervals() -> dict[str, timedelta]:
    """Each shop's time between two scheduled runs (the operations page calls a shop stale after
    a few of them without a good run)."""
    from include.run.shops import schedule_interval, shops_file

    return {shop.name: schedule_interval(shop.schedule) for shop in shops_file().shops}


def shopify_domains() -> dict[str, str]:
    """Each shop's Shopify host as its connection names it (the SLA page links orders to the shop's
    admin with it); a shop whose connection is not defined has none."""
    from urllib.parse import urlsplit

    from include.run.shops import shops_file

    found = {}
    for shop in shops_file().shops:
        conn = _connection(shop.connections.shopify)
        host = (conn.host or "") if conn is not None else ""
        # a host may be written with its scheme
        host = urlsplit(host).netloc if "://" in host else host
        if host:
            found[shop.name] = host.lower()
    return found


# The triggerer's watchers (one per shop with an Amazon queue) share one warehouse per process: each
# with its own engine, 200 of them held a connection each and PostgreSQL refused every client.
WATCHER_POOL_ENV = "ORDEROPS_WATCHER_WAREHOUSE_POOL"
WATCHER_APPLICATION_NAME = "orderops-watchers"  # how they show in pg_stat_activity
_shared: dict[str, Warehouse] = {}
_shared_lock = threading.Lock()


def shared_warehouse(conn_id: str) -> Warehouse:
    """The process's one warehouse for `conn_id`, migrated once: a pool of at most
    ORDEROPS_WATCHER_WAREHOUSE_POOL connections (4), which a watcher holds only while it keeps what
    it read; a watcher that finds them all busy waits for one. Never disposed by a watcher."""
    from include.run.shops import count_setting

    url = warehouse_url(conn_id)
    with _shared_lock:
        wh = _shared.get(url)
        if wh is None:
            size = count_setting(WATCHER_POOL_ENV, 4, 50)
            options = (
                {}
                if url.startswith("sqlite")
                else {
                    "pool_size": size,
                    "max_overflow": 0,
                    "pool_timeout": 120,
                    "pool_pre_ping": True,  # the pool lives as long as the triggerer: a restarted server
                    "connect_args": {"application_name": WATCHER_APPLICATION_NAME},
                }
            )
            wh = Warehouse(url, **options)
            wh.migrate()
            _shared[url] = wh
    return wh


def on_task_failure(context: dict) -> None:
    """Task failure callback of the orderops DAGs: an alert to the configured channels."""
    from include.report.notify import alert_from_context, notify

    notify(alert_from_context("task_failed", context), warehouse_url("orderops_warehouse"))


def task_warehouse(context: dict, conn_id: str) -> Warehouse:
    """The warehouse a task works on; the task's lineage then names its tables after the connection."""
    from include.airflow.lineage import name_tables

    conn = _connection(conn_id)
    name_tables(context["task"], conn)
    return Warehouse(_url(conn_id, conn))


def _connection(conn_id: str):
    """The Airflow connection, None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowRuntimeError

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowRuntimeError:
        return None
    except Exception as exc:  # the connection lookup raises different types across back ends
        if "isn't defined" not in str(exc) and "not found" not in str(exc).lower():
            raise
        return None


def _url(conn_id: str, conn) -> str:
    if conn is None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        log.warning("connection %s not found: using the embedded warehouse %s", conn_id, STATE_DIR / "warehouse.db")
        return f"sqlite:///{STATE_DIR / 'warehouse.db'}"
    # without the SQLite provider, the CLI and UI store a sqlite connection as "generic"
    if conn.conn_type == "sqlite" or (conn.conn_type == "generic" and conn.host):
        return f"sqlite:///{conn.host}"
    if conn.conn_type in ("postgres", "postgresql"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        extra = conn.extra_dejson or {}
        # psycopg2 unless the connection names another driver: the one the warehouse is tested on
        url = PostgresHook(
            postgres_conn_id=conn_id, sqlalchemy_scheme=extra.get("sqlalchemy_scheme") or "postgresql+psycopg2"
        ).sqlalchemy_url
        if not url.database:
            url = url.set(database="postgres")
        if extra.get("schema"):  # orderops's tables in a schema of their own
            url = url.update_query_dict({"options": f"-csearch_path={extra['schema']}"})
        return url.render_as_string(hide_password=False)
    raise ValueError(f"connection {conn_id!r}: conn_type {conn.conn_type!r} is not sqlite or postgres")


def sandbox_now() -> datetime | None:
    url = os.environ.get(CLOCK_URL_ENV)
    if not url:
        return None
    from orderops_provider.base import http_client

    with http_client(timeout=10) as http:
        now = http.get(url).json()["now"]
    return datetime.fromisoformat(now.replace("Z", "+00:00"))


def run_type_of(dag_run) -> str | None:
    """ "backfill", "scheduled", "manual", ... (Airflow's DagRunType value)."""
    kind = getattr(dag_run, "run_type", None)
    return str(getattr(kind, "value", kind)).lower() if kind else None


def settings_from_context(context: dict, shop=None) -> RunSettings:
    dag_run = context["dag_run"]
    settings = run_settings(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        params=dict(context["params"]),
        data_interval_start=context.get("data_interval_start"),
        data_interval_end=context.get("data_interval_end"),
        run_after=getattr(dag_run, "run_after", None),
        shop=shop,
        run_type=run_type_of(dag_run),
    )
    if settings.now_override is None:
        moment = sandbox_now()
        if moment is not None:
            settings = replace(settings, now_override=moment)
    return settings


@contextmanager
def failing_fast() -> Iterator[None]:
    """A bad param, policy or connection setting fails every try alike, so the task fails at once,
    without its retries, with the message that names the setting."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except (RunConfigError, ConfigurationError) as exc:
        raise AirflowFailException(str(exc)) from exc


def checked_settings(context: dict, shop) -> RunSettings:
    """prepare_run's settings, with every connection read and each client built before any platform
    is called."""
    with failing_fast():
        settings = settings_from_context(context, shop=shop)
        platforms = Platforms(settings)
        try:
            platforms.check()
        finally:
            platforms.close()
    return settings


def run_context(context: dict, settings: RunSettings) -> RunContext:
    ti = context["ti"]
    return RunContext(
        shop=settings.shop,
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        try_number=ti.try_number,
        map_index=ti.map_index if ti.map_index is not None else -1,
        now=settings.now_override,
    )


def prepare(context: dict, shop) -> dict:
    """prepare_run's body: validated settings (a bad one fails at once), the shop's lease taken, the
    schema upgraded, the sweep decided; the result is every later task's `settings` argument."""
    from include.run.pipeline import prepare_run

    settings = checked_settings(context, shop)
    wh = task_warehouse(context, settings.connections.warehouse)
    try:
        wh.migrate()
        hold_shop(wh, settings)
        return prepare_run(settings, wh).to_xcom()
    finally:
        wh.dispose()


# A pipeline run holds its shop from prepare_run to summarize_run; each of its tasks renews the lease
# for as long as a task may run (and then some: it waits for a worker between tasks); an event task
# holds it for EVENT_LEASE at a time, renewed while it runs, so a task that died frees it soon.
EVENT_LEASE = timedelta(minutes=2)
# How long a pipeline task waits for an event task that holds the shop (a wake takes seconds).
LEASE_WAIT = timedelta(minutes=10)


def pipeline_lease() -> timedelta:
    from include.run.shops import task_timeout

    return (task_timeout() or timedelta(hours=2)) + timedelta(minutes=10)


def hold_shop(wh: Warehouse, settings: RunSettings, sleep=time.sleep) -> None:
    """Take or renew the shop's lease for this pipeline run, waiting while an event task holds it."""
    from include.store.leases import ShopLease

    lease = ShopLease(wh, settings.shop)
    waited = 0.0
    while (holder := lease.take(settings.run_id, settings.dag_id, pipeline_lease())) is not None:
        if waited >= LEASE_WAIT.total_seconds():
            raise RuntimeError(
                f"shop {settings.shop} is held by run {holder.run_id} of {holder.dag_id} (until "
                f"{holder.expires_at:%H:%M:%S} UTC) after waiting {waited:.0f} s; this try ends, a retry waits again"
            )
        sleep(2.0)
        waited += 2.0


def release_shop(wh: Warehouse, settings: RunSettings, shop) -> None:
    """Free the shop's lease; ring the doorbell when an event task left its events to this run."""
    from include.store.leases import ShopLease

    if ShopLease(wh, settings.shop).release(settings.run_id) and shop.events is not None:
        ring_doorbell(shop)


def ring_doorbell(shop) -> None:
    """Best effort, as every ring: the events wait in the inbox for the next ring or scheduled run."""
    from airflow.providers.redis.hooks.redis import RedisHook

    from include.events.platform_events import ring

    try:
        rung = ring(None, shop.name, client=RedisHook(redis_conn_id=shop.events.redis_conn_id).get_conn())
    except Exception:  # noqa: BLE001 - the connection itself may be missing: the run's work is done
        rung = False
    if not rung:
        log.warning("could not ring shop %s's doorbell: its waiting events wait for the next run", shop.name)


def handle_events(context: dict, shop) -> dict:
    """The event task's body: the shop's lease (or, while its pipeline run holds it, the events left
    to that run, which rings when done), then every step of the run in this process, the run's
    summary and the shop's report of the day when due."""
    from include.run.pipeline import run_all
    from include.store.leases import ShopLease

    with failing_fast():
        settings = settings_from_context(context, shop=shop)
    # an event run whatever started it (a manual run of this DAG too), unless asked to sweep
    settings = replace(settings, event_driven=settings.extraction.sweep is None)
    with task_resources(context, settings) as (platforms, wh, ctx):
        with failing_fast():  # every client built (each connection read once) before any call
            platforms.check()
        wh.migrate()
        lease = ShopLease(wh, settings.shop)
        holder = lease.take(settings.run_id, settings.dag_id, EVENT_LEASE, wake_after=True)
        if holder is not None:
            log.info(
                "shop %s is held by run %s of %s: its events wait for it, and it rings when done",
                settings.shop,
                holder.run_id,
                holder.dag_id,
            )
            return {"shop": settings.shop, "deferred_to": holder.run_id}
        try:
            with renewed(lease, settings, EVENT_LEASE):
                summary = run_all(settings, platforms, wh, ctx=ctx)
        finally:
            woken = lease.release(settings.run_id)
        summary["report"] = _report(wh, settings, summary)
    if woken and shop.events is not None:
        ring_doorbell(shop)
    return summary


@contextmanager
def renewed(lease, settings: RunSettings, ttl: timedelta) -> Iterator[None]:
    """Renew the lease every third of its life while the block runs."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl.total_seconds() / 3):
            try:
                lease.take(settings.run_id, settings.dag_id, ttl)
            except Exception:  # noqa: BLE001 - a renewal missed is retried; the lease outlives two
                log.warning("renewing shop %s's lease failed", settings.shop, exc_info=True)

    thread = threading.Thread(target=renew, name="shop-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_step(name: str, settings_doc: dict | None, context: dict, tiktok: dict | None = None, chunk: Any = None) -> Any:
    """One step of include/run/steps.py in its task: the run's settings (prepare_run's result, an
    argument of every task), the shop's clients and warehouse, then the step's function."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.run.steps import BY_NAME, arguments, since_of

    step = BY_NAME[name]
    if not settings_doc:
        # prepare_run failed (summarize_run runs all the same): no retry of this task brings its settings
        raise AirflowFailException("no settings from prepare_run in this run: it must have run first")
    settings = RunSettings.from_xcom(settings_doc)
    if step.fulfiller is not None and step.fulfiller not in settings.fulfillers:
        return {"step": name, "skipped": "not configured"}
    with task_resources(context, settings) as (platforms, wh, ctx):
        hold_shop(wh, settings)
        values = {
            "settings": settings,
            "platforms": platforms,
            "wh": wh,
            "ctx": ctx,
            "chunk": chunk,
            "since": since_of(tiktok) if tiktok is not None else None,
        }
        return step.function(*arguments(step, values))


def summarize(context: dict, settings_doc: dict | None, shop) -> dict:
    """summarize_run's body: the run's summary, then the shop's lease freed (whatever became of the
    summary), then the shop's report of the current day, when due (include/report/current.py)."""
    summary = None
    try:
        summary = run_step("summarize_run", settings_doc, context)
    finally:
        if settings_doc:
            settings = RunSettings.from_xcom(settings_doc)
            wh = task_warehouse(context, settings.connections.warehouse)
            try:
                release_shop(wh, settings, shop)
                if summary is not None:
                    summary["report"] = _report(wh, settings, summary)
            finally:
                wh.dispose()
    return summary


def _report(wh: Warehouse, settings: RunSettings, summary: dict) -> dict:
    """The shop's report of the current day, when due. It runs after the run's summary is stored; a
    report that fails is logged and left to the next run and the midnight report, and the run's
    outcome stays the pipeline's."""
    from include.report.current import report_if_due
    from include.run.runconfig import now_for

    try:
        return report_if_due(wh, settings.shop, now_for(settings), summary, settings.report_every_minutes)
    except Exception as exc:  # noqa: BLE001 - the report is not the pipeline's work: see the docstring
        log.exception(
            "the SLA report of shop %s's current day failed; the next run or midnight rebuilds it", settings.shop
        )
        return {"built": False, "error": f"{type(exc).__name__}: {exc}"}


@contextmanager
def task_resources(context: dict, settings: RunSettings) -> Iterator[tuple[Platforms, Warehouse, RunContext]]:
    """The shop's clients and warehouse for one task; records the task's API calls at the end."""
    from include.run.pipeline import record_api_calls
    from include.store.quotas import SharedQuotas

    wh = task_warehouse(context, settings.connections.warehouse)
    # the shop's other tasks run in other processes at the same time: one quota for all of them
    platforms = Platforms(settings, quotas=SharedQuotas(wh, settings.shop))
    ctx = run_context(context, settings)
    try:
        yield platforms, wh, ctx
    finally:
        if platforms.stats_rows():
            record_api_calls(wh, settings, ctx.task_id, ctx.map_index, platforms)
        platforms.close()
        wh.dispose()
