"""The demo's Airflow metadata server (sandbox/metadata_db.py), for real: the embedded PostgreSQL
started, stopped and started again on its folder, a server left running taken over, and `make ui`
refusing a demo folder that has no metadata server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from sandbox import demo
from sandbox.metadata_db import EmbeddedPostgres


@pytest.fixture
def folder():
    """Outside pytest's temporary root: run as root, PostgreSQL runs as `nobody`, which needs search
    access to the folders above its data, and a pytest session starting beside this one makes that
    root private again."""
    made = Path(tempfile.mkdtemp(prefix="orderops-metadata-"))
    made.chmod(0o755)
    yield made
    shutil.rmtree(made, ignore_errors=True)


def scalar(url: str, sql: str):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text(sql))
    finally:
        engine.dispose()


def test_the_server_keeps_its_data_across_a_stop_and_takes_over_one_left_running(folder):
    first = EmbeddedPostgres(folder / "postgres")
    url = first.start()
    try:
        assert url.startswith("postgresql+psycopg2://postgres@127.0.0.1:") and url.endswith("/airflow")
        assert scalar(url, "SHOW server_version").startswith("18.")
        assert scalar(url, "SHOW listen_addresses") == "127.0.0.1"
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE kept (n int)"))
            conn.execute(sa.text("INSERT INTO kept VALUES (7)"))
        engine.dispose()
        first.stop()
        assert not (folder / "postgres" / "postmaster.pid").exists()
        with pytest.raises(sa.exc.OperationalError):
            scalar(url, "SELECT 1")

        url = first.start()
        assert scalar(url, "SELECT n FROM kept") == 7
        # a killed `make ui` leaves its server running: the next start stops it and starts its own
        second = EmbeddedPostgres(folder / "postgres")
        again = second.start()
        assert scalar(again, "SELECT n FROM kept") == 7
        if again != url:
            with pytest.raises(sa.exc.OperationalError):
                scalar(url, "SELECT 1")
        second.stop()
    finally:
        first.stop()
    assert not (folder / "postgres" / "postmaster.pid").exists()


def test_make_ui_refuses_a_demo_folder_without_its_metadata_server(folder):
    (folder / "demo.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"no Airflow metadata in .*postgres .*run `make demo` again"):
        demo.main(["ui", "--state", str(folder)])
