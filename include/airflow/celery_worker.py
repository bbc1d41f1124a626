"""The Celery workers' configuration: Airflow's own, and orderops's heavy modules loaded once in
each worker before it forks its pool.

Every task process is forked from a worker's pool process (Airflow's supervisor forks, it does not
exec), so what the worker imported before forking is there for each task at no cost; without it
every task paid its imports again (Great Expectations alone 3.3 CPU-s, the pipeline's modules
about 1) and the one-off set-up of Airflow's ORM. Set by `[celery] celery_config_options`
(deploy/airflow.cfg, the Helm values).
"""

from __future__ import annotations

import logging
from importlib import import_module

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger(__name__)

CELERY_CONFIG = DEFAULT_CELERY_CONFIG
# what a task of the pipeline or event DAG imports: the DAG file's modules, then the steps'; the
# warehouse's driver and schema migrations, which every task checks
PRELOADED = (
    "include.airflow.sla_dag",
    "include.airflow.glue",
    "include.run.pipeline",
    "include.extract.amazon",
    "include.act.saga",
    "include.report.current",
    "include.quality.checkpoints",
    "great_expectations",
    "airflow.providers.postgres.hooks.postgres",
    "alembic.command",
    "airflow.models",
)


def warm() -> None:
    """What a task would otherwise do once in its own process: map Airflow's ORM classes (the first
    connection a task reads configured every mapper: 0.57 CPU-s a task, measured in an event task's
    profile) and read the warehouse's migration scripts."""
    from sqlalchemy.orm import configure_mappers

    from include.store.warehouse import schema_head

    configure_mappers()
    schema_head()


@worker_init.connect
def preload(**_) -> None:
    for name in PRELOADED:
        try:
            import_module(name)
        except Exception:  # noqa: BLE001 - a task importing it fails with the error where it is seen
            log.warning("could not preload %s in the worker; its tasks import it themselves", name, exc_info=True)
    try:
        warm()
    except Exception:  # noqa: BLE001 - as above: each task does it itself
        log.warning("could not warm the worker; its tasks map and read what they need themselves", exc_info=True)
