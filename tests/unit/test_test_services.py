"""`make test` on a machine without PostgreSQL and Redis says what to install, instead of failing
a hundred tests one by one (deploy/test_services.sh)."""

from __future__ import annotations

import subprocess

from tests.conftest import REPO


def test_missing_services_are_named_with_what_to_install(tmp_path):
    # a PATH with none of the services' tools: as on a machine where neither is installed
    done = subprocess.run(
        ["/bin/bash", str(REPO / "deploy" / "test_services.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 1
    assert "PostgreSQL on 127.0.0.1:5432" in done.stderr and "apt-get install postgresql" in done.stderr
    assert "Redis on 127.0.0.1:6379" in done.stderr and "apt-get install redis-server" in done.stderr


def test_running_services_pass():
    done = subprocess.run([str(REPO / "deploy" / "test_services.sh")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
