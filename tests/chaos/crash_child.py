"""A pipeline run in a process of its own, for the crash and concurrency tests:
`python -m tests.chaos.crash_child <run_id> <warehouse url> [<window_start> <window_end>]`.
Connections come from the AIRFLOW_CONN_* variables it inherits. Prints the run's summary as JSON."""
from __future__ import annotations

import json
import sys

from include.warehouse import Warehouse
from tests.chaos.harness import run_pipeline

if __name__ == "__main__":
    run_id, url, *window = sys.argv[1:]
    warehouse = Warehouse(url)
    params = {"window_start": window[0], "window_end": window[1]} if window else {}
    summary = run_pipeline(warehouse, run_id, **params)
    warehouse.dispose()
    print("SUMMARY " + json.dumps({k: summary[k] for k in ("run_id", "state", "actions")}))
