"""The production shape on one machine, on loopback: `make prod-up` / `make prod-down`.

Airflow metadata in its own PostgreSQL database, the orderops warehouse in another, CeleryExecutor
with Redis (a dedicated db number) as broker and PostgreSQL as result backend, and the API server,
scheduler, DAG processor, triggerer and N Celery workers as separate processes. Connections come
from a secrets backend (a JSON file, mode 0600); pools are sized to the platforms' quotas; lineage
goes to a file, or over HTTP when OPENLINEAGE_URL is set.

    python -m deploy.prod_local up [--sandbox-shops 2 [--sandboxes 1]] [--api-port 8080] [--fresh]
    python -m deploy.prod_local status
    python -m deploy.prod_local down [--purge]

State (AIRFLOW_HOME, logs, pid files, secrets, lineage) lives under state/prod. `--sandbox-shops N`
also serves one sandbox per shop (each shop has its own stores and fulfiller accounts) and
configures N shops against them: each on its cron (`--sandbox-schedule`; without it the shop's
default, hourly at minutes of its own) and on platform events, its sandbox sending TikTok, Shopify
and ShipBob webhooks to the API server's receiver, so the scheduler creates scheduled and
event-driven runs; `--sandbox-clock-rate` lets the sandboxes' time run faster than the wall clock
(frozen by default: runs are then also triggered by hand).

A sandbox process takes some 100 MB, so `--sandboxes K` serves N shops from K sandboxes instead:
shop i uses sandbox (i - 1) % K + 1. A shop sharing its sandbox with an earlier shop would act on
that shop's orders, so it is configured `"dry_run": true` (its runs decide and write nothing), and
its sandbox's webhooks go to the first shop on it only (a sandbox keeps one subscription per
platform).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from configparser import ConfigParser
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[1]
CFG_TEMPLATE = REPO / "deploy" / "airflow.cfg"
BIN = Path(sys.executable).parent
# Variables from the caller's environment that would change what Airflow or orderops does.
_INHERITED_BLOCKLIST = re.compile(r"^(AIRFLOW|_AIRFLOW|ORDEROPS_|OPENLINEAGE_)")


class DeployError(RuntimeError):
    pass


@dataclass
class Deployment:
    """Where the shape keeps its state and what it connects to; saved as deployment.json."""

    state: str = str(REPO / "state" / "prod")
    api_port: int = 8080
    pg_url: str = "postgresql://postgres@127.0.0.1:5432"
    airflow_db: str = "orderops_airflow"
    warehouse_db: str = "orderops_warehouse"
    redis_url: str = "redis://127.0.0.1:6379/7"
    workers: int = 2
    concurrency: int = 4
    schedule: bool = True
    sandbox_shops: int = 0
    # sandbox processes serving them (None: one per shop); shop i uses sandbox (i - 1) % K + 1, and a
    # shop sharing its sandbox with an earlier shop is a dry-run shop (configure_sandbox_shops)
    sandboxes: int | None = None
    sandbox_orders: int = 60
    # the sandbox shops' cron (None: each shop's default, include.run.shops.default_schedule), whether
    # they take platform events (webhooks to the API server's receiver, a Redis doorbell), and their
    # sandboxes' clock rate (0: frozen at the scenario's time)
    sandbox_schedule: str | None = None
    sandbox_events: bool = False
    sandbox_clock_rate: float = 0
    # a living shop per sandbox instead of a generated scenario: LifeSettings fields (sandbox/life.py)
    # but `start` and `seed`, which each shop gets (its clock starts at the scenario day's midnight)
    sandbox_life: dict | None = None
    shops_file: str | None = None
    openlineage_url: str | None = None
    log_server_ports: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ layout
    @property
    def root(self) -> Path:
        return Path(self.state)

    @property
    def home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def connections_file(self) -> Path:
        return self.secrets_dir / "connections.json"

    @property
    def lineage_file(self) -> Path:
        return self.root / "lineage" / "events.jsonl"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def db_url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        parts = urlsplit(self.pg_url)
        return f"{driver}://{parts.netloc}/{database}"

    @property
    def sandbox_count(self) -> int:
        """Sandbox processes for the sandbox shops: one per shop, or `sandboxes` when fewer."""
        return min(self.sandboxes or self.sandbox_shops, self.sandbox_shops)

    @property
    def effective_shops_file(self) -> Path | None:
        if self.shops_file:
            return Path(self.shops_file)
        own = self.root / "shops.json"
        return own if own.exists() else None

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "deployment.json").write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, state: str | Path) -> Deployment:
        path = Path(state) / "deployment.json"
        if not path.exists():
            raise DeployError(f"{path} not found: nothing was started from {state}")
        return cls(**json.loads(path.read_text()))

    # ------------------------------------------------------------------ secrets and config
    def keys(self) -> dict[str, str]:
        """Fernet key, JWT secret and API secret key: made once, kept 0600 under secrets/."""
        path = self.secrets_dir / "keys.json"
        if path.exists():
            return json.loads(path.read_text())
        keys = {
            "FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "JWT_SECRET": secrets.token_urlsafe(48),
            "API_SECRET_KEY": secrets.token_urlsafe(32),
        }
        _write_private(path, json.dumps(keys, indent=1))
        return keys

    def admin_password(self) -> str:
        path = self.secrets_dir / "simple_auth_manager_passwords.json"
        if not path.exists():
            _write_private(path, json.dumps({"admin": secrets.token_urlsafe(16)}))
        return json.loads(path.read_text())["admin"]

    def openlineage_transport(self) -> dict:
        if self.openlineage_url:
            transport = {
                "type": "http",
                "url": self.openlineage_url,
                "endpoint": os.environ.get("OPENLINEAGE_ENDPOINT", "api/v1/lineage"),
            }
            if os.environ.get("OPENLINEAGE_API_KEY"):
                transport["auth"] = {"type": "api_key", "apiKey": os.environ["OPENLINEAGE_API_KEY"]}
            return transport
        return {"type": "file", "log_file_path": str(self.lineage_file), "append": True}

    def airflow_settings(self) -> dict[str, str]:
        """deploy/airflow.cfg rendered for this deployment, as AIRFLOW__SECTION__KEY variables."""
        values = {
            **self.keys(),
            "EXECUTOR": "CeleryExecutor",
            "REPO": str(REPO),
            "API_URL": self.api_url,
            "API_PORT": str(self.api_port),
            "HOSTNAME_CALLABLE": "deploy.node.node_name",
            "SECRETS_DIR": str(self.secrets_dir.resolve()),
            "AIRFLOW_DB_URL": self.db_url(self.airflow_db),
            "BROKER_URL": self.redis_url,
            "WORKER_CONCURRENCY": str(self.concurrency),
            "USE_JOB_SCHEDULE": str(self.schedule),
            "LOG_DIR": str((self.home / "logs").resolve()),
            "SECRETS_BACKEND": "include.airflow.connections_file.ConnectionsFile",
            "SECRETS_BACKEND_KWARGS": json.dumps({"connections_file_path": str(self.connections_file.resolve())}),
            "OPENLINEAGE_TRANSPORT": json.dumps(self.openlineage_transport()),
        }
        parser = ConfigParser(interpolation=None)
        parser.optionxform = str
        parser.read_string(Template(CFG_TEMPLATE.read_text()).substitute(values))
        return {
            f"AIRFLOW__{section.upper()}__{key.upper()}": value
            for section in parser.sections()
            for key, value in parser.items(section)
        }

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of every process of the shape (and of `airflow` commands against it)."""
        base = dict(os.environ if base is None else base)
        env = {k: v for k, v in base.items() if not _INHERITED_BLOCKLIST.match(k)}
        env.update(self.airflow_settings())
        env.update(
            {
                "AIRFLOW_HOME": str(self.home.resolve()),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), base.get("PYTHONPATH")])),
                "ORDEROPS_STATE_DIR": str(self.root.resolve()),
                "TQDM_DISABLE": "1",
            }
        )
        shops = self.effective_shops_file
        if shops is not None:
            env["ORDEROPS_SHOPS_FILE"] = str(shops.resolve())
        clock = self.root / "sandbox" / "clock_url"
        if clock.exists():
            # every shop's sandbox is frozen at the same scenario time, so one clock serves all
            env["ORDEROPS_SANDBOX_CLOCK_URL"] = clock.read_text().strip()
        return env

    def write_env_file(self) -> Path:
        path = self.root / "airflow.env"
        lines = ["# source with: set -a; . state/prod/airflow.env; set +a   (then `airflow ...` talks to this shape)"]
        for key, value in sorted(self.environment({}).items()):
            lines.append(f"{key}={shlex.quote(value)}")
        _write_private(path, "\n".join(lines) + "\n")
        return path


# ---------------------------------------------------------------------- helpers
def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scratch(name: str, redis_url: str, **options: Any) -> Deployment:
    """A throwaway production shape for a benchmark: its own state folder, API port, databases
    (orderops_<name>_airflow, orderops_<name>_warehouse) and Redis db; `options` as Deployment's."""
    state = tempfile.mkdtemp(prefix=f"orderops-{name}-")
    return Deployment(
        state=state,
        api_port=free_port(),
        airflow_db=f"orderops_{name}_airflow",
        warehouse_db=f"orderops_{name}_warehouse",
        redis_url=redis_url,
        **options,
    )


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log(msg: str) -> None:
    print(f"[prod] {msg}", flush=True)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (None once it is gone or a zombie): with the pid,
    it tells our process from a later one that got the same pid."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid`. Each process started here leads its own session; task
    processes move to process groups of their own but stay in it."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def _signal_session(sid: int, sig: int) -> None:
    for pid in session_members(sid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------- services
def ensure_services(dep: Deployment) -> None:
    """PostgreSQL and Redis must be reachable; this says how to start them when they are not."""
    pg = urlsplit(dep.pg_url)
    redis = urlsplit(dep.redis_url)
    for name, host, port in (
        ("PostgreSQL", pg.hostname, pg.port or 5432),
        ("Redis", redis.hostname, redis.port or 6379),
    ):
        with socket.socket() as sock:
            sock.settimeout(2)
            if sock.connect_ex((host, port)) != 0:
                raise DeployError(f"{name} is not listening on {host}:{port}; start it first (docs/deployment.md)")


def create_databases(dep: Deployment, fresh: bool = False) -> None:
    import psycopg2

    conn = psycopg2.connect(dep.db_url("postgres", driver="postgresql"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in (dep.airflow_db, dep.warehouse_db):
                if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                    raise DeployError(f"database name {name!r}: lower-case letters, digits and _ only")
                if fresh:
                    cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f"CREATE DATABASE {name}")
                    _log(f"created database {name}")
    finally:
        conn.close()


def drop_databases(dep: Deployment) -> None:
    import psycopg2

    conn = psycopg2.connect(dep.db_url("postgres", driver="postgresql"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for name in (dep.airflow_db, dep.warehouse_db):
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        conn.close()


def flush_broker(dep: Deployment) -> None:
    """Empty the dedicated Redis db: messages left by an earlier deployment name tasks that are gone."""
    import redis

    client = redis.Redis.from_url(dep.redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


# ---------------------------------------------------------------------- processes
class Processes:
    """Processes started by this module, each in its own session; pid files say which."""

    def __init__(self, dep: Deployment):
        self.dep = dep

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        self.dep.pids.mkdir(parents=True, exist_ok=True)
        self.dep.logs.mkdir(parents=True, exist_ok=True)
        if self.alive(name):
            raise DeployError(f"{name} is already running (pid file {self.dep.pids / (name + '.json')})")
        log = open(self.dep.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        record = {"pid": proc.pid, "start": _start_time(proc.pid), "argv": argv}
        (self.dep.pids / f"{name}.json").write_text(json.dumps(record))
        return proc.pid

    def records(self) -> dict[str, dict]:
        if not self.dep.pids.exists():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.dep.pids.glob("*.json"))}

    def alive(self, name: str) -> bool:
        record = self.records().get(name)
        return bool(record) and _start_time(record["pid"]) == record["start"]

    def stop(self, name: str, timeout: float = 30) -> None:
        """TERM the process we started (same pid and start time), then what is left of its session."""
        path = self.dep.pids / f"{name}.json"
        record = json.loads(path.read_text())
        pid = record["pid"]
        if _start_time(pid) == record["start"]:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _start_time(pid) == record["start"]:
                _reap(pid)
                time.sleep(0.2)
        # whatever it left behind (task supervisors and task processes, log servers) is in its session
        if session_members(pid):
            _signal_session(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and session_members(pid):
                time.sleep(0.2)
            _signal_session(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and session_members(pid):
                time.sleep(0.1)
        _reap(pid)
        path.unlink()


def _reap(pid: int) -> None:
    """Collect our own exited child (a no-op for processes another command started)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def airflow(
    dep: Deployment, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(BIN / "airflow"), *args],
        env=env or dep.environment(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and done.returncode != 0:
        raise DeployError(
            f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
    return done


# ---------------------------------------------------------------------- sandbox shops
def sandbox_credentials(index: int) -> dict[str, dict]:
    """Simulator credentials of sandbox shop `index` (1 = the simulators' defaults): each shop its own."""
    if index == 1:
        return {}
    n = f"{index:04d}"
    return {
        "tiktok": {
            "shop_cipher": f"TTP_SbxShopCipher{n}",
            "shop_id": f"749400000000000{n}",
            "shop_name": f"OrderOps Sandbox Shop {index}",
            "shop_code": f"USSBXSHOP{index}",
            "access_token": f"TTP_sbx-access-token-{n}",
            "refresh_token": f"TTP_sbx-refresh-token-{n}",
            "auth_code": f"TTP_sbx-auth-code-{n}",
        },
        "shopify": {
            "shop_domain": f"orderops-sandbox-{index}.myshopify.com",
            "access_token": f"shpat_orderops_sandbox_{index:016d}",
        },
        "amazon_mcf": {
            "refresh_token": f"Atzr|orderops-sandbox-refresh-token-{index:040d}",
            "seller_id": f"A2ORDEROPSSBX{index}",
        },
        "shipbob": {"personal_access_tokens": [f"shipbob-sandbox-pat-{n}"]},
    }


def sandbox_connection_docs(index: int, urls: dict[str, str]) -> dict[str, dict]:
    """Connection documents for sandbox shop `index` at `urls`, with that shop's own credentials."""
    from sandbox.connections import sandbox_connections

    docs = sandbox_connections(urls)
    creds = sandbox_credentials(index)
    if creds:
        tiktok = creds["tiktok"]
        docs["tiktok"]["extra"].update(
            access_token=tiktok["access_token"],
            refresh_token=tiktok["refresh_token"],
            shop_cipher=tiktok["shop_cipher"],
        )
        docs["shopify"]["password"] = creds["shopify"]["access_token"]
        docs["amazon_mcf"]["extra"]["refresh_token"] = creds["amazon_mcf"]["refresh_token"]
        docs["shipbob"]["password"] = creds["shipbob"]["personal_access_tokens"][0]
    return docs


def shop_sandbox(index: int, sandboxes: int) -> int:
    """The sandbox (1 to `sandboxes`) serving sandbox shop `index` (from 1): the shops take them in turn."""
    return (index - 1) % sandboxes + 1


def start_sandboxes(dep: Deployment, procs: Processes) -> list[dict]:
    """`dep.sandbox_count` sandbox processes on free ports; returns [{"name", "urls", "scenario"}].
    Sandbox k is named after its first shop, shop-k, and has shop k's credentials (state/prod/
    sandbox/shop-k/urls.json), so with one sandbox per shop each shop's folder is its sandbox's."""
    from sandbox.generate import DEFAULT_NOW, generate

    base = dep.root / "sandbox"
    base.mkdir(parents=True, exist_ok=True)
    shops = []
    for index in range(1, dep.sandbox_count + 1):
        name = f"shop-{index}"
        folder = base / name
        folder.mkdir(exist_ok=True)
        if dep.sandbox_life is not None:
            source = folder / "life.json"
            start = f"{DEFAULT_NOW[:10]}T00:00:00Z"
            source.write_text(json.dumps({**dep.sandbox_life, "start": start, "seed": 100 + index}))
            shape = ["--life", str(source)]
        else:
            source = folder / "scenario.json"
            if not source.exists():
                source.write_text(json.dumps(generate(dep.sandbox_orders, seed=100 + index)))
            shape = ["--scenario", str(source)]
        settings = folder / "settings.json"
        _write_private(
            settings, json.dumps({"clock_rate": dep.sandbox_clock_rate, "platforms": sandbox_credentials(index)})
        )
        log = dep.logs / f"sandbox-{name}.log"
        if log.exists():
            log.unlink()
        from sandbox.server import DEFAULT_PORTS

        argv = [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            *shape,
            "--settings",
            str(settings),
            *[arg for app in DEFAULT_PORTS for arg in ("--port", f"{app}=0")],
        ]
        procs.start(f"sandbox-{name}", argv, {**os.environ, "PYTHONPATH": str(REPO)})
        shops.append({"name": name, "log": log, "scenario": str(source)})
    for shop in shops:
        shop["urls"] = _sandbox_urls(shop.pop("log"))
        (base / shop["name"] / "urls.json").write_text(json.dumps(shop["urls"]))
    (base / "clock_url").write_text(f"{shops[0]['urls']['tiktok']}/_sandbox/clock\n")
    return shops


def _sandbox_urls(log: Path, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if "admin " in text:
            return dict(re.findall(r"^\s+(\w+)\s+(http://\S+)$", text, re.M))
        if "error" in text.lower():
            raise DeployError(f"sandbox failed to start: {text[-1000:]}")
        time.sleep(0.1)
    raise DeployError(f"sandbox did not start within {timeout:.0f} s; see {log}")


REDIS_CONN_ID = "orderops_redis"


def redis_db(url: str) -> int:
    """The db of a Redis URL as redis-py reads it: the path (`/7`), else the `db` query, else 0."""
    parts = urlsplit(url)
    return int(parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0])


def configure_sandbox_shops(dep: Deployment, sandboxes: list[dict]) -> list[dict]:
    """The shops file and the shops' connections for `dep.sandbox_shops` shops on `sandboxes` (as
    `start_sandboxes` returns them); returns the shops, [{"name", "urls", "sandbox", "shared"}].

    Shop i uses sandbox k = (i - 1) % K + 1 with sandbox k's credentials. A shop `shared` with an
    earlier shop (i > k) sees that shop's orders, so its entry says `"dry_run": true`: it decides
    and writes nothing, and no order is acted on twice. A shop's entry names a schedule only when the
    deployment gives one (else the shop's default applies: include.run.shops.default_schedule).
    With events, the doorbell's Redis connection and each shop's ShipBob webhook secret (kept in
    `shop["webhook_secret"]` for `subscribe_webhooks`)."""
    from include.run.shops import default_connections

    docs = json.loads(dep.connections_file.read_text())
    entries = []
    shops = []
    for index in range(1, dep.sandbox_shops + 1):
        k = shop_sandbox(index, len(sandboxes))
        shop = {"name": f"shop-{index}", "urls": sandboxes[k - 1]["urls"], "sandbox": k, "shared": index > k}
        ids = default_connections(shop["name"])
        shop_docs = sandbox_connection_docs(k, shop["urls"])
        entry: dict = {"name": shop["name"]}
        if dep.sandbox_schedule:
            entry["schedule"] = dep.sandbox_schedule
        if shop["shared"]:
            entry["dry_run"] = True
        if dep.sandbox_events:
            shop["webhook_secret"] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
            shop_docs["shipbob"]["extra"]["webhook_secret"] = shop["webhook_secret"]
            entry["events"] = {"redis_conn_id": REDIS_CONN_ID}
        for platform, doc in shop_docs.items():
            docs[getattr(ids, platform)] = doc
        entries.append(entry)
        shops.append(shop)
    if dep.sandbox_events:
        # the doorbell is the broker's server; its db names the deployment's channels (events.channel)
        redis = urlsplit(dep.redis_url)
        docs[REDIS_CONN_ID] = {"conn_type": "redis", "host": redis.hostname, "port": redis.port or 6379}
        docs[REDIS_CONN_ID]["extra"] = {"db": redis_db(dep.redis_url)}
        if redis.password:
            docs[REDIS_CONN_ID]["password"] = redis.password
    _write_private(dep.connections_file, json.dumps(docs, indent=1))
    (dep.root / "shops.json").write_text(json.dumps(entries, indent=1))
    return shops


def subscribe_webhooks(dep: Deployment, shops: list[dict]) -> None:
    """Each sandbox's TikTok, Shopify and ShipBob send their webhooks to the API server's receiver
    (once it answers) for the first shop on the sandbox: a change in its sandbox then starts an
    event-driven run of its DAG. A sandbox keeps one subscription per platform, so the shops sharing
    it (dry-run shops) get none."""
    import httpx

    for shop in shops:
        if shop.get("shared"):
            continue
        admin = f"{shop['urls']['tiktok']}/_sandbox/webhooks"
        for platform in ("tiktok", "shopify", "shipbob"):
            body = {"platform": platform, "url": f"{dep.api_url}/orderops-events/{shop['name']}/{platform}"}
            if platform == "shipbob":
                body["secret"] = shop["webhook_secret"]
            answer = httpx.post(admin, json=body, timeout=30)
            if answer.status_code != 200:
                raise DeployError(f"sandbox {shop['name']}: subscribing {platform} webhooks: {answer.text[:300]}")


# ---------------------------------------------------------------------- up / down
def warehouse_connection(dep: Deployment) -> dict:
    pg = urlsplit(dep.pg_url)
    doc = {
        "conn_type": "postgres",
        "host": pg.hostname,
        "port": pg.port or 5432,
        "login": pg.username or "postgres",
        "schema": dep.warehouse_db,
    }
    if pg.password:
        doc["password"] = pg.password
    return doc


def pool_slots(dep: Deployment) -> dict[str, int]:
    """Pools sized to the platforms' quotas. Quotas are per shop (per app+shop on TikTok, per store,
    seller account or token elsewhere), and the pools are shared by every shop's DAG: scale them."""
    from include.run.shops import load_shops
    from include.run.steps import POOLS

    shops_file = dep.effective_shops_file
    env_before = os.environ.get("ORDEROPS_SHOPS_FILE")
    try:
        if shops_file is not None:
            os.environ["ORDEROPS_SHOPS_FILE"] = str(shops_file)
        else:
            os.environ.pop("ORDEROPS_SHOPS_FILE", None)
        count = len(load_shops())
    finally:
        if env_before is None:
            os.environ.pop("ORDEROPS_SHOPS_FILE", None)
        else:
            os.environ["ORDEROPS_SHOPS_FILE"] = env_before
    return {name: slots * count for name, slots in POOLS.items()}


COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def up(dep: Deployment, fresh: bool = False, timeout: float = 300) -> Deployment:
    t0 = time.monotonic()
    procs = Processes(dep)
    running = [name for name in procs.records() if procs.alive(name)]
    if running:
        raise DeployError(f"already running from {dep.root}: {', '.join(running)} (make prod-down first)")
    if port_open(dep.api_port):
        raise DeployError(f"port {dep.api_port} is taken; pick another with --api-port")
    ensure_services(dep)
    for stale in dep.pids.glob("*.json") if dep.pids.exists() else ():
        stale.unlink()
    dep.log_server_ports = {f"worker-{i}": free_port() for i in range(1, dep.workers + 1)}
    dep.log_server_ports["triggerer"] = free_port()
    dep.root.mkdir(parents=True, exist_ok=True)
    dep.lineage_file.parent.mkdir(parents=True, exist_ok=True)
    dep.save()
    create_databases(dep, fresh=fresh)
    flush_broker(dep)
    dep.keys()
    dep.admin_password()
    if fresh or not dep.connections_file.exists():
        _write_private(dep.connections_file, json.dumps({"orderops_warehouse": warehouse_connection(dep)}, indent=1))
    shops: list[dict] = []
    try:
        if dep.sandbox_shops:
            shops = configure_sandbox_shops(dep, start_sandboxes(dep, procs))
        env = dep.environment()
        dep.write_env_file()
        _log(f"airflow db migrate ({dep.airflow_db}); warehouse schema ({dep.warehouse_db})")
        airflow(dep, "db", "migrate", env=env)
        from deploy.migrate_warehouse import migrate

        migrate(dep.db_url(dep.warehouse_db))
        pools = dep.root / "pools.json"
        from include.run.steps import pools_file

        slots = pool_slots(dep)
        pools.write_text(json.dumps({name: {**pool, "slots": slots[name]} for name, pool in pools_file().items()}))
        airflow(dep, "pools", "import", str(pools), env=env)
        _log(f"metadata migrated, pools set ({time.monotonic() - t0:.0f} s); starting the components")
        airflow_bin = str(BIN / "airflow")
        argv = {
            "api-server": [airflow_bin, "api-server", "--host", "127.0.0.1", "--port", str(dep.api_port)],
            "scheduler": [airflow_bin, "scheduler"],
            "dag-processor": [airflow_bin, "dag-processor"],
            "triggerer": [airflow_bin, "triggerer"],
        }
        for name in COMPONENTS:
            extra = (
                {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(dep.log_server_ports["triggerer"])}
                if name == "triggerer"
                else {}
            )
            procs.start(name, argv[name], {**env, **extra})
        for i in range(1, dep.workers + 1):
            worker = f"worker-{i}"
            procs.start(
                worker,
                [
                    airflow_bin,
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{worker}@%h",
                    "--concurrency",
                    str(dep.concurrency),
                ],
                {
                    **env,
                    "ORDEROPS_NODE_NAME": worker,
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(dep.log_server_ports[worker]),
                },
            )
        wait_ready(dep, procs, timeout)
        if shops and dep.sandbox_events:
            subscribe_webhooks(dep, shops)
    except BaseException:
        down(dep)
        raise
    _log(f"up in {time.monotonic() - t0:.0f} s")
    return dep


def api_token(dep: Deployment) -> str:
    import httpx

    answer = httpx.post(
        f"{dep.api_url}/auth/token", json={"username": "admin", "password": dep.admin_password()}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def health(dep: Deployment) -> dict:
    import httpx

    return httpx.get(f"{dep.api_url}/api/v2/monitor/health", timeout=10).json()


def celery_workers(dep: Deployment, env: dict[str, str] | None = None) -> list[str]:
    done = airflow(dep, "celery", "list-workers", "-o", "json", env=env, check=False, timeout=60)
    try:
        return sorted(w["worker_name"] for w in json.loads(done.stdout or "[]"))
    except json.JSONDecodeError:
        return []


def wait_ready(dep: Deployment, procs: Processes, timeout: float) -> None:
    """Until the API server reports every component healthy and every Celery worker answers."""
    deadline = time.monotonic() + timeout
    env = dep.environment()
    want = {f"worker-{i}" for i in range(1, dep.workers + 1)}
    state = "starting"
    while time.monotonic() < deadline:
        dead = [name for name in procs.records() if not procs.alive(name)]
        if dead:
            tails = "\n".join(f"--- {n}.log\n" + _tail(dep.logs / f"{n}.log") for n in dead)
            raise DeployError(f"exited during start: {', '.join(dead)}\n{tails}")
        try:
            h = health(dep)
        except Exception:
            state = "waiting for the API server"
            time.sleep(1)
            continue
        unhealthy = [
            k
            for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if (h.get(k) or {}).get("status") != "healthy"
        ]
        if unhealthy:
            state = f"waiting for {', '.join(unhealthy)}"
            time.sleep(1)
            continue
        workers = {w.split("@")[0] for w in celery_workers(dep, env)}
        if want <= workers:
            _log(
                f"healthy: API server, scheduler, DAG processor, triggerer; Celery workers {', '.join(sorted(workers))}"
            )
            return
        state = f"waiting for Celery workers ({', '.join(sorted(want - workers))})"
        time.sleep(1)
    raise DeployError(f"not ready within {timeout:.0f} s ({state}); logs in {dep.logs}")


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def down(dep: Deployment, purge: bool = False) -> list[str]:
    """Stop every process this module started for `dep` (workers first, the API server last)."""
    procs = Processes(dep)
    records = procs.records()
    order = sorted(records, key=lambda n: (not n.startswith("worker"), n.startswith("sandbox"), n == "api-server", n))
    stopped = []
    for name in order:
        t0 = time.monotonic()
        procs.stop(name)
        stopped.append(f"{name} ({time.monotonic() - t0:.0f} s)")
    if purge:
        drop_databases(dep)
        flush_broker(dep)
    return stopped


def status(dep: Deployment) -> dict[str, str]:
    procs = Processes(dep)
    return {
        name: ("running" if procs.alive(name) else "dead") + f" (pid {rec['pid']})"
        for name, rec in procs.records().items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.prod_local", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--state", default=str(REPO / "state" / "prod"))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("ORDEROPS_API_PORT", 8080)))
    parser.add_argument("--pg-url", default=os.environ.get("ORDEROPS_PG_URL", Deployment.pg_url))
    parser.add_argument("--redis-url", default=os.environ.get("ORDEROPS_REDIS_URL", Deployment.redis_url))
    parser.add_argument("--airflow-db", default=Deployment.airflow_db)
    parser.add_argument("--warehouse-db", default=Deployment.warehouse_db)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--shops-file", default=os.environ.get("ORDEROPS_SHOPS_FILE"))
    parser.add_argument(
        "--sandbox-shops",
        type=int,
        default=0,
        help="serve a sandbox per shop and configure that many shops, on their cron and on platform events",
    )
    parser.add_argument(
        "--sandboxes",
        type=int,
        help="serve the sandbox shops from this many sandboxes (shop i on sandbox (i-1) %% K + 1); a shop "
        "sharing its sandbox with an earlier shop is a dry-run shop (default: one sandbox per shop)",
    )
    parser.add_argument(
        "--sandbox-schedule",
        help="the sandbox shops' cron (default: each shop's own, hourly with events at minutes of its own; "
        "compress it, e.g. '*/5 * * * *', to see more runs)",
    )
    parser.add_argument(
        "--sandbox-clock-rate",
        type=float,
        default=Deployment.sandbox_clock_rate,
        help="scenario seconds per wall second in the sandboxes (0: frozen; orders then move only by hand)",
    )
    parser.add_argument("--fresh", action="store_true", help="drop and re-create both databases first")
    parser.add_argument("--purge", action="store_true", help="down: also drop both databases and flush the broker db")
    args = parser.parse_args(argv)
    if args.sandboxes is not None and args.sandboxes < 1:
        parser.error("--sandboxes: expected 1 or more")
    try:
        if args.command == "up":
            dep = Deployment(
                state=args.state,
                api_port=args.api_port,
                pg_url=args.pg_url,
                redis_url=args.redis_url,
                airflow_db=args.airflow_db,
                warehouse_db=args.warehouse_db,
                workers=args.workers,
                concurrency=args.concurrency,
                # on with sandbox shops too: without the job schedule Airflow queues the events'
                # asset-triggered runs and never creates them
                schedule=True,
                sandbox_shops=args.sandbox_shops,
                sandboxes=args.sandboxes,
                sandbox_schedule=args.sandbox_schedule,
                sandbox_events=bool(args.sandbox_shops),
                sandbox_clock_rate=args.sandbox_clock_rate,
                shops_file=args.shops_file,
                openlineage_url=os.environ.get("OPENLINEAGE_URL"),
            )
            up(dep, fresh=args.fresh)
            print(summary(dep))
            return 0
        if args.command in ("down", "status") and not (Path(args.state) / "deployment.json").exists():
            _log(f"nothing was started from {args.state}")
            return 0
        dep = Deployment.load(args.state)
        if args.command == "down":
            stopped = down(dep, purge=args.purge)
            _log(
                f"stopped {', '.join(stopped) or 'nothing'}"
                + ("; databases dropped, broker db flushed" if args.purge else "")
            )
        elif args.command == "status":
            for name, text in status(dep).items():
                print(f"{name:18s} {text}")
        else:
            print(dep.write_env_file())
        return 0
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def summary(dep: Deployment) -> str:
    lines = [
        f"Airflow UI/API   {dep.api_url}  "
        f"(user admin, password in {dep.secrets_dir / 'simple_auth_manager_passwords.json'})",
        f"metadata DB      {dep.db_url(dep.airflow_db)}",
        f"warehouse DB     {dep.db_url(dep.warehouse_db)}  (connection orderops_warehouse)",
        f"broker           {dep.redis_url}; result backend: the metadata DB",
        f"connections      {dep.connections_file} (secrets backend, mode 0600)",
        f"lineage          {dep.openlineage_url or dep.lineage_file}",
        f"logs, pids       {dep.logs}, {dep.pids}",
        f"airflow CLI      set -a; . {dep.root / 'airflow.env'}; set +a; airflow dags list",
        "stop             make prod-down",
    ]
    if dep.sandbox_shops:
        from sandbox.generate import DEFAULT_NOW
        from sandbox.scenario import parse_time

        now = parse_time(DEFAULT_NOW, "now")
        conf = json.dumps(
            {
                "window_start": (now - timedelta(minutes=30)).isoformat(),
                "window_end": now.isoformat(),
                "now": now.isoformat(),
            }
        )
        events = "and on their sandboxes' webhooks" if dep.sandbox_events else "events off"
        clock = f"clock rate {dep.sandbox_clock_rate:g}" if dep.sandbox_clock_rate else "clocks frozen"
        cron = f"cron '{dep.sandbox_schedule}'" if dep.sandbox_schedule else "each shop's own cron"
        shared = dep.sandbox_shops - dep.sandbox_count
        lines.append(
            f"sandbox shops    {dep.sandbox_shops} on {dep.sandbox_count} sandboxes"
            + (f" ({shared} sharing one with an earlier shop: dry runs)" if shared else "")
            + f", on {cron} {events}, {clock}; a run per shop by hand (after the CLI line):"
        )
        lines += [
            f"                 airflow dags trigger orderops_sla_shop_{i} -c '{conf}'"
            for i in range(1, dep.sandbox_shops + 1)
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
