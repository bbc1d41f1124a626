"""What parsing the DAG files costs as the shops grow: the DAG processor's parse and serialization,
and one task's start-up parse.

    python -m bench.parse_bench --sizes 1,50,200,400          (make bench-parse)

For each size, a shops file of that many shops, each taking platform events (the webhook doorbell),
and every DAG file of dags/ parsed in its own fresh interpreter with Airflow imported first, as
the DAG processor has it: CPU-seconds to parse (DagBag) and to serialize (what the processor
stores), bytes per serialized shop DAG, and the largest file's parse + serialize (what the
processor's timeout must cover). Then one task's start-up: the shop's DAG file parsed with Airflow's
parsing context naming its DAG, as a task process does, against the whole shops file parsed in one
process (what every task paid when one file built every shop's DAG). The per-DAG figures are also
measured with the DAG's params copied onto every task, as Airflow does for params declared with the
DAG (what each DAG carried before). CPU-seconds, not wall time: the machine is shared. Prints a
table and writes bench/results/parse.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bench.pipeline_bench import REPO, RESULTS, log, revision

PROBE = r"""
import copy, json, sys, time
import airflow, airflow.sdk          # a DAG processor and a task process have both loaded before they parse
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization

start = time.process_time()
bags = [DagBag(dag_folder=path) for path in sys.argv[1:]]
parse = time.process_time() - start
dags = [dag for bag in bags for dag in bag.dags.values()]
start = time.process_time()
sizes = {dag.dag_id: len(json.dumps(DagSerialization.to_dict(dag))) for dag in dags}
serialize = time.process_time() - start
out = {"parse_cpu_s": parse, "serialize_cpu_s": serialize, "bytes": sizes,
       "errors": {k: str(v)[-300:] for bag in bags for k, v in bag.import_errors.items()}}
shop = next((dag for dag in dags if dag.params), None)
if shop is not None:
    for task in shop.tasks:  # what a task carries when its DAG declares the params before it is made
        task.params = copy.deepcopy(shop.params)
    start = time.process_time()
    out["params_on_tasks"] = {"bytes": len(json.dumps(DagSerialization.to_dict(shop))),
                              "serialize_cpu_s": time.process_time() - start}
print("PARSE " + json.dumps(out))
"""


def probe(files: list[Path], env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, files)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    line = next((out for out in proc.stdout.splitlines() if out.startswith("PARSE ")), None)
    if line is None:
        raise RuntimeError(f"parsing {', '.join(f.name for f in files)} failed: {proc.stderr[-1500:]}")
    return json.loads(line[6:])


def shops_doc(count: int) -> list[dict]:
    return [{"name": f"shop-{i}", "events": {"redis_conn_id": "orderops_redis"}} for i in range(1, count + 1)]


def measure(count: int, home: Path) -> dict:
    """Every DAG file parsed in a fresh interpreter; one task's start-up with and without the parsing context."""
    from include.airflow.sla_dag import shard_of

    shops = home / f"shops-{count}.json"
    shops.write_text(json.dumps(shops_doc(count)))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "ORDEROPS_SHOPS_FILE": str(shops),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("_AIRFLOW_PARSING_CONTEXT_DAG_ID", None)
    files = {path.name: probe([path], env) for path in sorted((REPO / "dags").glob("*.py"))}
    errors = {name: f["errors"] for name, f in files.items() if f["errors"]}
    if errors:
        raise RuntimeError(f"{count} shops: import errors {errors}")
    shop_sizes = [
        b for f in files.values() for dag_id, b in f["bytes"].items() if dag_id.startswith("orderops_sla_shop")
    ]
    if len(shop_sizes) != count:
        raise RuntimeError(f"{count} shops: {len(shop_sizes)} shop DAGs parsed")
    before = [f["params_on_tasks"] for f in files.values() if "params_on_tasks" in f]
    running = "orderops_sla_shop_1"
    shard = REPO / "dags" / f"orderops_sla_shard_{shard_of(running)}.py"
    task = probe([shard], {**env, "_AIRFLOW_PARSING_CONTEXT_DAG_ID": running})
    if list(task["bytes"]) != [running]:
        raise RuntimeError(f"a task of {running} built {sorted(task['bytes'])}")
    # before: one file built every shop's DAG, in every task process too
    whole = probe(sorted((REPO / "dags").glob("orderops_sla_shard_*.py")), env)
    serialize_per_dag = sum(f["serialize_cpu_s"] for f in files.values()) / max(len(shop_sizes), 1)
    return {
        "shops": count,
        "dag_files": len(files),
        "parse_cpu_s": round(sum(f["parse_cpu_s"] for f in files.values()), 3),
        "serialize_cpu_s": round(sum(f["serialize_cpu_s"] for f in files.values()), 3),
        "largest_file_cpu_s": round(max(f["parse_cpu_s"] + f["serialize_cpu_s"] for f in files.values()), 3),
        "bytes_per_dag": round(sum(shop_sizes) / len(shop_sizes)),
        "serialize_cpu_s_per_dag": round(serialize_per_dag, 4),
        "params_on_every_task": {
            "bytes_per_dag": round(sum(b["bytes"] for b in before) / len(before)),
            "serialize_cpu_s_per_dag": round(sum(b["serialize_cpu_s"] for b in before) / len(before), 4),
        },
        "task_startup_parse_cpu_s": round(task["parse_cpu_s"], 3),
        "task_startup_parse_cpu_s_whole_shops_file": round(whole["parse_cpu_s"], 3),
    }


def render(rows: list[dict]) -> str:
    head = (
        f"{'shops':>6} {'parse CPU-s':>12} {'serialize CPU-s':>16} {'largest file':>13} {'bytes/DAG':>10} "
        f"{'(params on tasks)':>18} {'task start-up':>14} {'(whole file)':>13}"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['shops']:>6} {r['parse_cpu_s']:>12.2f} {r['serialize_cpu_s']:>16.2f} {r['largest_file_cpu_s']:>13.2f} "
            f"{r['bytes_per_dag']:>10,} {r['params_on_every_task']['bytes_per_dag']:>18,} "
            f"{r['task_startup_parse_cpu_s']:>14.2f} {r['task_startup_parse_cpu_s_whole_shops_file']:>13.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parse_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,50,200,400", help="shops per shops file, comma-separated")
    parser.add_argument("--out", default=str(RESULTS), help="results folder (default %(default)s)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    home = Path(tempfile.mkdtemp(prefix="orderops-bench-parse-"))
    try:
        rows = []
        for count in sizes:
            log(f"parsing the DAG files with {count} shop(s) ...")
            rows.append(measure(count, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(render(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "revision": revision(),
        "cpus": os.cpu_count(),
        "results": rows,
    }
    (out / "parse.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"written: {out / 'parse.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
