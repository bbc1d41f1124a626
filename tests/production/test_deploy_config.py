"""The deployment configuration, without starting anything: the rendered settings are real Airflow
options with the production values, the Helm values agree with them, secrets stay private, each
sandbox shop has its own credentials, and pools scale with the shops."""

from __future__ import annotations

import json
import shutil
import stat
from configparser import ConfigParser

import pytest
import yaml

from deploy.prod_local import REPO, Deployment, pool_slots, sandbox_connection_docs, sandbox_credentials
from include.run.steps import POOLS

HELM = {
    name: yaml.safe_load((REPO / "deploy" / "helm" / f"values-{name}.yaml").read_text())
    for name in ("celery", "kubernetes")
}


@pytest.fixture(scope="module")
def airflow_options() -> dict[str, set[str]]:
    """Every option Airflow and the installed providers know, by section."""
    from airflow.configuration import conf
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()
    return {section: set(body.get("options", {})) for section, body in conf.configuration_description.items()}


def test_rendered_settings_are_known_airflow_options_with_production_values(tmp_path, airflow_options):
    dep = Deployment(state=str(tmp_path / "prod"), api_port=18081, redis_url="redis://127.0.0.1:6379/7")
    settings = dep.airflow_settings()
    for name in settings:
        _, section, key = name.split("__", 2)
        assert key.lower() in airflow_options.get(section.lower(), set()), f"{name} is not an Airflow option"
    assert settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert (
        settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        == "postgresql+psycopg2://postgres@127.0.0.1:5432/orderops_airflow"
    )
    assert settings["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + settings["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert settings["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/7"
    assert settings["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:18081/execution/"
    assert settings["AIRFLOW__SECRETS__BACKEND"] == "include.airflow.connections_file.ConnectionsFile"
    assert json.loads(settings["AIRFLOW__SECRETS__BACKEND_KWARGS"]) == {
        "connections_file_path": str(dep.connections_file.resolve())
    }
    transport = json.loads(settings["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "file", "log_file_path": str(dep.lineage_file), "append": True}
    dep.openlineage_url = "http://127.0.0.1:5000"
    assert json.loads(dep.airflow_settings()["AIRFLOW__OPENLINEAGE__TRANSPORT"])["type"] == "http"
    # the template has no placeholder the renderer does not fill (Template.substitute would raise)
    assert "${" not in "".join(settings.values())


def test_keys_are_made_once_and_private(tmp_path):
    dep = Deployment(state=str(tmp_path / "prod"))
    first = dep.keys()
    assert dep.keys() == first and len(set(first.values())) == 3
    assert stat.S_IMODE((dep.secrets_dir / "keys.json").stat().st_mode) == 0o600
    again = Deployment(state=str(tmp_path / "prod"))
    assert again.airflow_settings()["AIRFLOW__CORE__FERNET_KEY"] == first["FERNET_KEY"]


def test_environment_drops_the_callers_airflow_settings(tmp_path):
    dep = Deployment(state=str(tmp_path / "prod"))
    env = dep.environment(
        {
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW_HOME": "/elsewhere",
            "AIRFLOW_CONN_ORDEROPS_TIKTOK": "{}",
            "ORDEROPS_SHOPS_FILE": "/x.json",
            "OPENLINEAGE_URL": "http://x",
            "PATH": "/usr/bin",
            "PYTHONPATH": "/lib",
        }
    )
    assert "AIRFLOW__CORE__UNIT_TEST_MODE" not in env and "AIRFLOW_CONN_ORDEROPS_TIKTOK" not in env
    assert "OPENLINEAGE_URL" not in env and "ORDEROPS_SHOPS_FILE" not in env
    assert env["AIRFLOW_HOME"] == str(dep.home.resolve()) and env["PATH"] == "/usr/bin"
    assert env["PYTHONPATH"].split(":") == [str(REPO), "/lib"]


def test_helm_values_carry_the_same_settings(airflow_options):
    template = ConfigParser(interpolation=None)
    template.read_string((REPO / "deploy" / "airflow.cfg").read_text())
    assert HELM["celery"]["executor"] == template["core"]["executor"].replace("${EXECUTOR}", "CeleryExecutor")
    assert HELM["kubernetes"]["executor"] == "KubernetesExecutor"
    for name, values in HELM.items():
        assert values["postgresql"]["enabled"] is False and values["data"]["metadataSecretName"]
        assert values["dagProcessor"]["enabled"] and values["triggerer"]["enabled"]
        assert values["migrateDatabaseJob"]["enabled"]
        env = {e["name"]: e["value"] for e in values["env"]}
        assert env["PYTHONPATH"] == "/opt/airflow/orderops" and "ORDEROPS_SHOPS_FILE" in env
        for section, options in values["config"].items():
            for key in options:
                assert key in airflow_options.get(section, set()), f"values-{name}.yaml config.{section}.{key}"
        for section, key in (
            ("core", "dags_are_paused_at_creation"),
            ("dag_processor", "refresh_interval"),
            ("dag_processor", "min_file_process_interval"),
            ("dag_processor", "dag_file_processor_timeout"),
            ("core", "dagbag_import_timeout"),
        ):
            assert str(values["config"][section][key]) == template[section][key]
    assert HELM["celery"]["workers"]["replicas"] >= 2
    assert (
        str(HELM["celery"]["config"]["celery"]["worker_prefetch_multiplier"])
        == template["celery"]["worker_prefetch_multiplier"]
    )
    assert HELM["celery"]["data"]["brokerUrlSecretName"] and "brokerUrlSecretName" not in HELM["kubernetes"]["data"]


def test_each_sandbox_shop_has_its_own_credentials():
    urls = {
        name: f"http://127.0.0.1:{port}"
        for port, name in enumerate(("tiktok", "tiktok_auth", "shopify", "amazon_mcf", "amazon_lwa", "shipbob"), 9000)
    }
    assert sandbox_credentials(1) == {}
    docs = [sandbox_connection_docs(i, urls) for i in (1, 2, 3)]
    secrets = [
        (
            d["tiktok"]["extra"]["access_token"],
            d["tiktok"]["extra"]["shop_cipher"],
            d["shopify"]["password"],
            d["amazon_mcf"]["extra"]["refresh_token"],
            d["shipbob"]["password"],
        )
        for d in docs
    ]
    for field in zip(*secrets, strict=True):
        assert len(set(field)) == 3, field
    # what the simulator of shop 2 accepts is what shop 2's connections send
    creds = sandbox_credentials(2)
    assert docs[1]["tiktok"]["extra"]["shop_cipher"] == creds["tiktok"]["shop_cipher"]
    assert docs[1]["shipbob"]["password"] in creds["shipbob"]["personal_access_tokens"]


def test_pools_scale_with_the_shops(tmp_path):
    shops = tmp_path / "shops.json"
    shops.write_text(json.dumps([{"name": "a"}, {"name": "b"}, {"name": "c"}]))
    dep = Deployment(state=str(tmp_path / "prod"), shops_file=str(shops))
    assert pool_slots(dep) == {name: 3 * slots for name, slots in POOLS.items()}
    assert pool_slots(Deployment(state=str(tmp_path / "other"))) == POOLS


def test_sandbox_shops_run_on_their_cron_and_on_events(tmp_path, monkeypatch):
    """`prod-up SANDBOX_SHOPS=N` keeps the job schedule on (without it Airflow queues the events'
    asset-triggered runs and never creates them), and each sandbox shop takes platform events."""
    from deploy.prod_local import configure_sandbox_shops, main, redis_db
    from include.run.shops import parse_shops

    dep = Deployment(
        state=str(tmp_path / "prod"),
        redis_url="redis://127.0.0.1:6390/7",
        sandbox_shops=2,
        sandbox_events=True,
        sandbox_schedule="*/5 * * * *",
    )
    dep.root.mkdir(parents=True)
    dep.connections_file.parent.mkdir(parents=True)
    dep.connections_file.write_text("{}")
    apps = ("tiktok", "tiktok_auth", "shopify", "amazon_mcf", "amazon_lwa", "shipbob")
    sandboxes = [
        {"name": f"shop-{i}", "urls": {name: f"http://127.0.0.1:{9000 + 10 * i + n}" for n, name in enumerate(apps)}}
        for i in (1, 2)
    ]
    shops = configure_sandbox_shops(dep, sandboxes)
    parsed = parse_shops(json.loads((dep.root / "shops.json").read_text()))
    assert [(s.name, s.schedule, s.events and s.events.redis_conn_id) for s in parsed] == [
        ("shop-1", "*/5 * * * *", "orderops_redis"),
        ("shop-2", "*/5 * * * *", "orderops_redis"),
    ]
    docs = json.loads(dep.connections_file.read_text())
    assert docs["orderops_redis"] == {"conn_type": "redis", "host": "127.0.0.1", "port": 6390, "extra": {"db": 7}}
    # the channel names the db (events.channel): read as redis-py reads the broker's URL
    urls = ("redis://h:6379/7", "redis://h:6379?db=8", "redis://h", "redis://:p@h/0")
    assert [redis_db(u) for u in urls] == [7, 8, 0, 0]
    secrets = [docs[f"orderops_shop_{i}_shipbob"]["extra"]["webhook_secret"] for i in (1, 2)]
    assert secrets == [s["webhook_secret"] for s in shops] and len(set(secrets)) == 2
    assert all(s.startswith("whsec_") for s in secrets)  # ShipBob's Standard Webhooks secret form
    assert dep.airflow_settings()["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "True"

    # the command line asks for the same: the schedule on, events on, with sandbox shops
    made: list[Deployment] = []
    monkeypatch.setattr("deploy.prod_local.up", lambda dep, fresh=False: made.append(dep))
    argv = ["up", "--state", str(tmp_path / "cli"), "--sandbox-shops", "3", "--sandbox-schedule", "*/5 * * * *"]
    assert main(argv) == 0
    assert (made[0].schedule, made[0].sandbox_events, made[0].sandbox_schedule) == (True, True, "*/5 * * * *")


def test_the_agency_overlay_is_the_sizing_of_the_committed_scale_result(airflow_options):
    from deploy.sizing import SCALE_RESULT, SCHEDULER_SHARE, SLOTS_PER_WORKER, WORKER_CORES, render, sizing

    scale = json.loads(SCALE_RESULT.read_text())
    committed = (REPO / "deploy" / "helm" / "values-agency-200.yaml").read_text()
    assert committed == render(scale, 200), (
        "run: python -m deploy.sizing --shops 200 > deploy/helm/values-agency-200.yaml"
    )
    made = sizing(scale, 200)
    values, why = made["values"], made["why"]
    assert values["workers"]["replicas"] * WORKER_CORES >= why["workers_peak_cores"]
    assert values["config"]["celery"]["worker_concurrency"] <= SLOTS_PER_WORKER
    slots = values["workers"]["replicas"] * values["config"]["celery"]["worker_concurrency"]
    assert values["config"]["core"]["parallelism"] == slots >= 2 * why["peak_task_slots"]
    assert values["apiServer"]["replicas"] >= 2
    assert values["scheduler"]["replicas"] * SCHEDULER_SHARE >= why["scheduler_peak_cores"]
    pg = why["postgresql_connections"]
    # the server keeps half its connections free, PgBouncer pooling the metadata database if need be
    # (fewer server connections than its clients, and at least the chart's default pool)
    assert pg["at_server"] <= pg["budget"] == pg["max_connections"] // 2
    assert values["pgbouncer"]["enabled"] == (pg["pgbouncer"] is not None)
    if pg["pgbouncer"]:
        assert 10 <= pg["pgbouncer"]["metadata"] < pg["metadata"] <= pg["pgbouncer"]["max_client_conn"]
        assert values["pgbouncer"]["configSecretName"] in committed
    for section, options in values["config"].items():
        for key in options:
            assert key in airflow_options.get(section, set()), f"values-agency-200.yaml config.{section}.{key}"


def test_sizing_grows_with_the_model():
    import pytest

    from deploy.sizing import render, sizing

    def scale(cores: float, slots: float, workers_share: float, warehouse_a_worker: int = 4) -> dict:
        by_component = {"worker-1": cores * workers_share / 2, "worker-2": cores * workers_share / 2}
        by_component["api-server"] = cores * (1 - workers_share)
        metadata = {"worker-1": 8, "worker-2": 8, "api-server": 5, "scheduler": 2, "total": 23}
        warehouse = {"worker-1": warehouse_a_worker, "worker-2": warehouse_a_worker, "api-server": 1}
        return {
            "shops": 20,
            "when": "t",
            "revision": "r",
            "model": {
                "200": {"cores": cores, "peak_cores": 2 * cores, "by_component": by_component, "peak_task_slots": slots}
            },
            "postgresql_connections_by_database": {"metadata": metadata, "warehouse": warehouse},
            "postgresql_max_connections": 100,
            "workers": 2,
            "worker_concurrency": 4,
        }

    small = sizing(scale(2, 4, 0.5), 200)
    assert small["values"]["workers"]["replicas"] == 2 and not small["values"]["pgbouncer"]["enabled"]
    # 8 slots: metadata 2 a slot + 5 for each of 2 API servers + 2; warehouse 1 a slot + 1 each
    assert small["why"]["postgresql_connections"] == {
        "metadata": 28,
        "warehouse": 10,
        "at_server": 38,
        "budget": 50,
        "max_connections": 100,
        "pgbouncer": None,
    }
    large = sizing(scale(8, 8, 0.75, warehouse_a_worker=1), 200)
    # 12 peak worker cores: 6 pods of 2; 4 peak API-server cores: 4 API servers
    assert large["values"]["workers"]["replicas"] == 6 and large["values"]["apiServer"]["replicas"] == 4
    # 24 slots: metadata 2 a slot + 4 x 5 + 2 = 70 and warehouse 6 + 4 pass the 50 budgeted: PgBouncer's
    # pools take what the warehouse leaves
    assert large["values"]["config"]["celery"]["worker_concurrency"] == 4
    assert large["values"]["pgbouncer"] == {"enabled": True, "configSecretName": "orderops-pgbouncer-config"}
    pg = large["why"]["postgresql_connections"]
    assert pg["pgbouncer"] == {"metadata": 35, "result_backend": 5, "max_client_conn": 140}
    assert pg["at_server"] == 50
    assert "pool_size 35 for the metadata database, 5 for the result backend" in render(
        scale(8, 8, 0.75, warehouse_a_worker=1), 200
    )
    # a warehouse taking most of the budget leaves too little to pool Airflow's metadata in: refused
    with pytest.raises(ValueError, match=r"warehouse's 52 connections .* a PostgreSQL server of its own"):
        sizing(scale(8, 8, 0.75, warehouse_a_worker=8), 200)
    unmeasured = scale(2, 4, 0.5)
    del unmeasured["postgresql_connections_by_database"]
    with pytest.raises(ValueError, match=r"no PostgreSQL connections per database .* `make bench-scale`"):
        sizing(unmeasured, 200)
    # a busy scheduler: 1.2 cores at the peak take three, each holding its 2 metadata connections
    scheduling = scale(2, 4, 0.5)
    scheduling["model"]["200"]["by_component"]["scheduler"] = 0.6
    busy = sizing(scheduling, 200)
    assert busy["values"]["scheduler"] == {"replicas": 3, "resources": {"requests": {"cpu": "400m"}}}
    assert busy["why"]["postgresql_connections"]["metadata"] == 28 + 2 * 2
    # many slots for little CPU: as many pods as the slots' memory needs
    waiting = sizing(scale(2, 40, 0.5, warehouse_a_worker=0), 200)["values"]
    assert waiting["workers"]["replicas"] == 8 and waiting["config"]["celery"]["worker_concurrency"] == 10


def _sandboxes(k: int) -> list[dict]:
    apps = ("tiktok", "tiktok_auth", "shopify", "amazon_mcf", "amazon_lwa", "shipbob")
    return [
        {"name": f"shop-{i}", "urls": {name: f"http://127.0.0.1:{9000 + 10 * i + n}" for n, name in enumerate(apps)}}
        for i in range(1, k + 1)
    ]


def test_shops_take_fewer_sandboxes_in_turn_and_a_sharing_shop_is_a_dry_run_shop(tmp_path):
    """`--sandboxes 2` for five shops: shop i on sandbox (i - 1) % 2 + 1 with that sandbox's
    credentials; shops 3 to 5 see an earlier shop's orders, so they decide and write nothing."""
    from deploy.prod_local import configure_sandbox_shops, shop_sandbox
    from include.run.shops import parse_shops

    assert [shop_sandbox(i, 2) for i in range(1, 6)] == [1, 2, 1, 2, 1]
    assert [shop_sandbox(i, 5) for i in range(1, 6)] == [1, 2, 3, 4, 5]
    dep = Deployment(state=str(tmp_path / "prod"), sandbox_shops=5, sandboxes=2, sandbox_events=True)
    assert dep.sandbox_count == 2
    assert Deployment(sandbox_shops=3, sandboxes=10).sandbox_count == 3  # never more sandboxes than shops
    assert Deployment(sandbox_shops=3).sandbox_count == 3  # one per shop by default
    dep.connections_file.parent.mkdir(parents=True)
    dep.connections_file.write_text("{}")
    sandboxes = _sandboxes(2)
    shops = configure_sandbox_shops(dep, sandboxes)
    assert [(s["name"], s["sandbox"], s["shared"]) for s in shops] == [
        ("shop-1", 1, False),
        ("shop-2", 2, False),
        ("shop-3", 1, True),
        ("shop-4", 2, True),
        ("shop-5", 1, True),
    ]
    parsed = parse_shops(json.loads((dep.root / "shops.json").read_text()))
    assert [(s.name, s.dry_run, s.events is not None) for s in parsed] == [
        ("shop-1", False, True),
        ("shop-2", False, True),
        ("shop-3", True, True),
        ("shop-4", True, True),
        ("shop-5", True, True),
    ]
    docs = json.loads(dep.connections_file.read_text())
    for shop in shops:
        k = shop["sandbox"]
        conn = docs[f"orderops_{shop['name'].replace('-', '_')}_tiktok"]
        # the sandbox's URL and the credentials its simulators accept (sandbox k has shop k's)
        assert conn == sandbox_connection_docs(k, sandboxes[k - 1]["urls"])["tiktok"]
        shipbob = docs[f"orderops_{shop['name'].replace('-', '_')}_shipbob"]
        assert shipbob["extra"]["webhook_secret"] == shop["webhook_secret"]


def test_only_the_first_shop_on_a_sandbox_gets_its_webhooks(tmp_path, monkeypatch):
    """A sandbox keeps one subscription per platform (a second replaces the first): its webhooks
    go to the shop that writes, the first on it."""
    import httpx

    from deploy.prod_local import configure_sandbox_shops, subscribe_webhooks

    dep = Deployment(state=str(tmp_path / "prod"), sandbox_shops=3, sandboxes=2, sandbox_events=True)
    dep.connections_file.parent.mkdir(parents=True)
    dep.connections_file.write_text("{}")
    shops = configure_sandbox_shops(dep, _sandboxes(2))
    posted: list[tuple[str, dict]] = []

    def post(url, json, timeout):
        posted.append((url, json))
        return httpx.Response(200, json={})

    monkeypatch.setattr(httpx, "post", post)
    subscribe_webhooks(dep, shops)
    assert sorted({(url, body["url"].rsplit("/", 2)[1]) for url, body in posted}) == [
        ("http://127.0.0.1:9010/_sandbox/webhooks", "shop-1"),
        ("http://127.0.0.1:9020/_sandbox/webhooks", "shop-2"),
    ]
    assert len(posted) == 6  # TikTok, Shopify and ShipBob of each sandbox


def test_a_sandbox_shop_runs_on_its_own_default_schedule_unless_one_is_given(tmp_path):
    """Without `sandbox_schedule` the entry names none, so the shop's default applies: hourly with
    events, at a minute of its own (include.run.shops.default_schedule)."""
    from deploy.prod_local import configure_sandbox_shops
    from include.run.shops import default_schedule, parse_shops

    for schedule, want in ((None, lambda name: default_schedule(name, events=True)), ("0 0 1 1 *", None)):
        dep = Deployment(
            state=str(tmp_path / str(schedule is None)), sandbox_shops=3, sandbox_events=True, sandbox_schedule=schedule
        )
        dep.connections_file.parent.mkdir(parents=True)
        dep.connections_file.write_text("{}")
        configure_sandbox_shops(dep, _sandboxes(3))
        entries = json.loads((dep.root / "shops.json").read_text())
        assert all(("schedule" in e) == (schedule is not None) for e in entries)
        parsed = parse_shops(entries)
        assert [s.schedule for s in parsed] == [want(s.name) if want else schedule for s in parsed]
    assert len({default_schedule(f"shop-{i}", events=True) for i in (1, 2, 3)}) > 1


def test_the_command_line_and_make_prod_up_take_the_sandboxes(tmp_path, monkeypatch):
    from deploy.prod_local import main

    made: list[Deployment] = []
    monkeypatch.setattr("deploy.prod_local.up", lambda dep, fresh=False: made.append(dep))
    assert main(["up", "--state", str(tmp_path / "cli"), "--sandbox-shops", "20", "--sandboxes", "4"]) == 0
    assert (made[0].sandbox_shops, made[0].sandboxes, made[0].sandbox_schedule) == (20, 4, None)
    with pytest.raises(SystemExit):
        main(["up", "--state", str(tmp_path / "cli"), "--sandbox-shops", "2", "--sandboxes", "0"])
    assert "--sandboxes $(SANDBOXES)" in (REPO / "Makefile").read_text()


def test_a_benchmarks_scratch_shape_has_its_own_folder_port_databases_and_redis_db():
    from deploy.prod_local import scratch

    first, second = (scratch("fleet", "redis://127.0.0.1:6379/11", sandbox_shops=3) for _ in range(2))
    try:
        assert first.root.is_dir() and first.root.name.startswith("orderops-fleet-") and first.root != second.root
        assert (first.airflow_db, first.warehouse_db) == ("orderops_fleet_airflow", "orderops_fleet_warehouse")
        assert first.redis_url == "redis://127.0.0.1:6379/11" and first.sandbox_shops == 3
        assert first.api_port > 0
    finally:
        for dep in (first, second):
            shutil.rmtree(dep.root)
