"""A pipeline run in a process of its own, for the crash and concurrency tests:
`python -m tests.chaos.crash_child <run_id> <warehouse url> [<window_start> <window_end>]`.
Connections come from the AIRFLOW_CONN_* variables it inherits. Prints the run's summary as JSON.

With ORDEROPS_TEST_MEET=<folder>:<n>, the run waits once it has decided until n runs have decided
(a file each in the folder): runs started together then act together, whatever the machine's load."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from include.store.warehouse import Warehouse
from tests.chaos.harness import run_pipeline


def meet(run_id: str, spec: str):
    folder, expected = Path(spec.rsplit(":", 1)[0]), int(spec.rsplit(":", 1)[1])

    def observe(event: str) -> None:
        if event != "decided":
            return
        (folder / run_id).touch()
        deadline = time.monotonic() + 300
        while len(list(folder.iterdir())) < expected and time.monotonic() < deadline:
            time.sleep(0.05)

    return observe


if __name__ == "__main__":
    run_id, url, *window = sys.argv[1:]
    warehouse = Warehouse(url)
    params = {"window_start": window[0], "window_end": window[1]} if window else {}
    meeting = os.environ.get("ORDEROPS_TEST_MEET")
    summary = run_pipeline(warehouse, run_id, observe=meet(run_id, meeting) if meeting else None, **params)
    warehouse.dispose()
    print("SUMMARY " + json.dumps({k: summary[k] for k in ("run_id", "state", "actions")}))
