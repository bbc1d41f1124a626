"""The Celery workers' preload (include/airflow/celery_worker.py): what it leaves done in the worker
is what every task forked from it no longer pays for."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_the_preload_imports_the_pipeline_and_leaves_the_orm_mapped_and_the_migrations_read():
    probe = textwrap.dedent(
        """
        import json, sys
        from airflow.models.connection import Connection
        from include.store.warehouse import _revisions
        before = {"mapped": Connection.__mapper__.configured, "scripts": _revisions.cache_info().currsize}
        from include.airflow.celery_worker import PRELOADED, preload
        preload()
        after = {"mapped": Connection.__mapper__.configured, "scripts": _revisions.cache_info().currsize}
        print(json.dumps({"before": before, "after": after, "missing": [m for m in PRELOADED if m not in sys.modules]}))
        """
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    result = json.loads(found.stdout.strip().splitlines()[-1])
    assert result["before"] == {"mapped": False, "scripts": 0}  # what a task would have done itself
    assert result["after"] == {"mapped": True, "scripts": 1}
    assert result["missing"] == []
