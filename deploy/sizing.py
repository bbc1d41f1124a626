"""An agency's deployment sized from the scale benchmark's model: a Helm values overlay for N shops.

    python -m deploy.sizing --shops 200 > deploy/helm/values-agency-200.yaml

Reads bench/results/scale-20.json (`make bench-scale SHOPS=20`): the model's cores by component at
N shops (average and peak), the task slots its runs keep busy, and the PostgreSQL connections each
component held. The overlay goes on top of deploy/helm/values-celery.yaml; a test keeps the committed
one equal to what this module makes of the committed result (docs: Deployment, "An agency's
shops"). The rules, each a figure from the model:

- workers: enough pods of WORKER_CORES to take the workers' peak, and to hold slots for twice the
  peak of busy task slots (a task waits on the platforms as much as it computes) at no more than
  SLOTS_PER_WORKER a pod (a slot's supervisor and task process in the pod's memory limit of
  values-celery.yaml); `parallelism` is every slot.
- API servers: two at least (a webhook sender must always find one), more while the peak (the
  execution API and the webhook receiver) is over API_CORES a pod.
- schedulers: enough that none is busier than SCHEDULER_SHARE of a core at the peak (a scheduler's
  loop is one process; Airflow runs several side by side on PostgreSQL), CPU requested for its
  share; the DAG processor and triggerer one each, with CPU requested for their peak.
- PostgreSQL: connections a slot and an API-server process as measured, per database (metadata and
  warehouse, on one server as in the production shape); what no component held counts as well.
  Half of the server's `max_connections` is the budget (the other half is headroom). Past it the
  chart's PgBouncer goes on for Airflow's metadata database and result backend (the warehouse's
  connections stay direct), with pools of what the warehouse leaves of the budget; where that is
  too little to run Airflow the sizing fails naming the warehouse.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SCALE_RESULT = REPO / "bench" / "results" / "scale-20.json"
WORKER_CORES = 2  # a worker pod's CPU
API_CORES = 1  # an API-server pod's CPU (one process a pod: [api] workers = 1)
MIN_CONCURRENCY = 4
# A slot's memory: an event task's process peaked at 359 MB resident (its profile, 2026-12-07), its
# supervisor about 170 MB, part of both shared with the worker they fork from: 400 MB a slot, so
# ten fit a worker's 4 GiB limit.
SLOTS_PER_WORKER = 10
MIN_API_SERVERS = 2
# UNCERTAIN: a scheduler loop's share of its core past which its lag grows; at half a core a task
# instance waits about one loop's work for the ones ahead of it. The fleet benchmark measured the
# scheduler at 0.2 CPU-s a task instance with 200 shops loaded past this machine's capacity.
SCHEDULER_SHARE = 0.5
SLOT_HEADROOM = 2.0
CONNECTIONS_SHARE = 0.5  # of max_connections, past which connections go through PgBouncer
RESULT_BACKEND_POOL = 5  # the chart's default: Celery's results are a few rows a task
MIN_METADATA_POOL = 10  # the chart's default metadata pool
PGBOUNCER_CONFIG_SECRET = "orderops-pgbouncer-config"


def _cpu(cores: float) -> str:
    """A CPU request in millicores, rounded up to a tenth of a core."""
    return f"{max(100, math.ceil(cores * 10) * 100)}m"


def sizing(scale: dict, shops: int) -> dict:
    """The overlay's values for `shops` shops from a scale result (bench/results/scale-<N>.json)."""
    model = scale["model"][str(shops)]
    peak = model["peak_cores"] / model["cores"] if model["cores"] else 1.0
    parts = {name: cores * peak for name, cores in model["by_component"].items()}
    workers_peak = sum(v for k, v in parts.items() if k.startswith("worker-"))
    wanted_slots = SLOT_HEADROOM * model["peak_task_slots"]
    replicas = max(2, math.ceil(workers_peak / WORKER_CORES), math.ceil(wanted_slots / SLOTS_PER_WORKER))
    concurrency = max(MIN_CONCURRENCY, math.ceil(wanted_slots / replicas))
    slots = replicas * concurrency
    api_servers = max(MIN_API_SERVERS, math.ceil(parts.get("api-server", 0.0) / API_CORES))
    schedulers = max(1, math.ceil(parts.get("scheduler", 0.0) / SCHEDULER_SHARE))

    measured_slots = scale["workers"] * scale["worker_concurrency"]

    def expected(held: dict) -> int:
        per_slot = sum(v for k, v in held.items() if k.startswith("worker-")) / measured_slots
        # the DAG processor and triggerer one each; what no component held counts too
        fixed = sum(
            v for k, v in held.items() if k not in ("api-server", "scheduler", "total") and not k.startswith("worker-")
        )
        replicated = held.get("api-server", 0) * api_servers + held.get("scheduler", 0) * schedulers
        return math.ceil(per_slot * slots + replicated + fixed)

    by_database = scale.get("postgresql_connections_by_database") or {}
    if not {"metadata", "warehouse"} <= by_database.keys():
        raise ValueError(
            f"bench/results/scale-{scale['shops']}.json counts no PostgreSQL connections per database"
            " (metadata and warehouse): measure it again with `make bench-scale`"
        )
    metadata, warehouse = expected(by_database["metadata"]), expected(by_database["warehouse"])
    limit = scale["postgresql_max_connections"]
    budget = math.floor(CONNECTIONS_SHARE * limit)
    pooled = metadata + warehouse > budget
    metadata_pool = budget - warehouse - RESULT_BACKEND_POOL
    if pooled and metadata_pool < MIN_METADATA_POOL:
        raise ValueError(
            f"{shops} shops: the warehouse's {warehouse} connections leave PgBouncer {metadata_pool} of the"
            f" {budget} connections budgeted (half of max_connections {limit}) for the metadata database"
            f" (at least {MIN_METADATA_POOL}): the warehouse needs a pool of its own in PgBouncer's"
            " pgbouncer.ini, or a PostgreSQL server of its own"
        )
    at_server = metadata_pool + RESULT_BACKEND_POOL + warehouse if pooled else metadata + warehouse

    values: dict = {
        "workers": {
            "replicas": replicas,
            "resources": {"requests": {"cpu": _cpu(WORKER_CORES)}},
        },
        "apiServer": {"replicas": api_servers, "resources": {"requests": {"cpu": _cpu(API_CORES)}}},
        "scheduler": {
            "replicas": schedulers,
            "resources": {"requests": {"cpu": _cpu(parts.get("scheduler", 0.0) / schedulers)}},
        },
        "dagProcessor": {"resources": {"requests": {"cpu": _cpu(parts.get("dag-processor", 0.0))}}},
        "triggerer": {"resources": {"requests": {"cpu": _cpu(parts.get("triggerer", 0.0))}}},
        "config": {
            "core": {"parallelism": slots},
            "celery": {"worker_concurrency": concurrency},
        },
        "pgbouncer": {"enabled": pooled},
    }
    pools = {"metadata": metadata_pool, "result_backend": RESULT_BACKEND_POOL, "max_client_conn": 2 * metadata}
    if pooled:
        # the metadata connection is a secret (values-celery.yaml), so the chart cannot write
        # pgbouncer.ini: the operator's secret holds it, with the pools in the overlay's header
        values["pgbouncer"]["configSecretName"] = PGBOUNCER_CONFIG_SECRET
    return {
        "values": values,
        "why": {
            "shops": shops,
            "from": f"bench/results/scale-{scale['shops']}.json ({scale['when']}, {scale['revision']})",
            "model_cores": {"average": model["cores"], "peak": model["peak_cores"]},
            "workers_peak_cores": round(workers_peak, 2),
            "api_server_peak_cores": round(parts.get("api-server", 0.0), 2),
            "scheduler_peak_cores": round(parts.get("scheduler", 0.0), 2),
            "peak_task_slots": model["peak_task_slots"],
            "postgresql_connections": {
                "metadata": metadata,
                "warehouse": warehouse,
                "at_server": at_server,
                "budget": budget,
                "max_connections": limit,
                "pgbouncer": pools if pooled else None,
            },
        },
    }


def render(scale: dict, shops: int) -> str:
    made = sizing(scale, shops)
    why = made["why"]
    pg = why["postgresql_connections"]
    lines = [
        f"# An agency's deployment of {shops} shops with platform events: an overlay on values-celery.yaml,",
        f"# made by `python -m deploy.sizing --shops {shops}` from {why['from']}; do not edit by hand.",
        f"# model: {why['model_cores']['average']} cores on average, {why['model_cores']['peak']} at the peak;"
        f" workers {why['workers_peak_cores']}, API servers {why['api_server_peak_cores']} and schedulers"
        f" {why['scheduler_peak_cores']} at the peak;",
        f"# {why['peak_task_slots']} task slots busy at the peak; PostgreSQL connections expected: metadata"
        f" {pg['metadata']}, warehouse {pg['warehouse']}; {pg['at_server']} at the server"
        f"{' through PgBouncer' if pg['pgbouncer'] else ''}, of {pg['max_connections']}"
        f" ({pg['budget']} budgeted).",
    ]
    if pg["pgbouncer"]:
        pools = pg["pgbouncer"]
        lines += [
            f"# PgBouncer: secret {PGBOUNCER_CONFIG_SECRET} (keys pgbouncer.ini, users.txt) with pool_size"
            f" {pools['metadata']} for the metadata database, {pools['result_backend']} for the result backend,",
            f"# max_client_conn {pools['max_client_conn']}; the metadata and result-backend secrets point at the"
            " PgBouncer service (docs: Deployment, Sizing).",
        ]
    lines += [
        "#",
        f"#   helm upgrade --install orderops apache-airflow/airflow -f deploy/helm/values-celery.yaml"
        f" -f deploy/helm/values-agency-{shops}.yaml ...",
    ]
    return "\n".join(lines) + "\n" + yaml.safe_dump(made["values"], sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=200, choices=(50, 200))
    parser.add_argument("--result", default=str(SCALE_RESULT))
    args = parser.parse_args(argv)
    sys.stdout.write(render(json.loads(Path(args.result).read_text()), args.shops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
