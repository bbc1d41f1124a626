"""Run settings: windows for scheduled, backfill and manual runs; params and shops validated."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from include.run.runconfig import Connections, RunConfigError, run_settings
from include.run.shops import (
    SHOPS_FILE_ENV,
    Shop,
    load_shops,
    minutes_setting,
    parse_shops,
    schedule_interval,
    task_timeout,
)

T0 = datetime(2026, 11, 20, 14, 30, tzinfo=timezone.utc)


def test_scheduled_run_uses_its_data_interval():
    s = run_settings(
        dag_id="d", run_id="r", params={}, data_interval_start=T0, data_interval_end=T0 + timedelta(minutes=30)
    )
    assert (s.window_start, s.window_end) == (T0, T0 + timedelta(minutes=30))
    assert s.overlap == timedelta(minutes=15) and s.shop == "default" and not s.dry_run


def test_airflow_interval_survives_the_xcom_round_trip():
    import pendulum

    from include.run.runconfig import RunSettings

    s = run_settings(
        dag_id="d",
        run_id="r",
        params={},
        data_interval_start=pendulum.instance(T0).in_tz("UTC"),
        data_interval_end=pendulum.instance(T0 + timedelta(days=1)).in_tz("UTC"),
    )
    back = RunSettings.from_xcom(s.to_xcom())
    assert (
        back.window_start == T0
        and back.window_start.tzinfo is not None
        and back.window_end - back.window_start == timedelta(days=1)
    )


def test_manual_run_without_interval_takes_the_window_before_it():
    s = run_settings(dag_id="d", run_id="r", params={"window_minutes": 60}, run_after=T0)
    assert (s.window_start, s.window_end) == (T0 - timedelta(hours=1), T0)


def test_explicit_window_and_horizon_param():
    s = run_settings(
        dag_id="d",
        run_id="r",
        params={"window_start": "2026-11-19T00:00:00Z", "window_end": "2026-11-20T00:00:00Z", "sla_horizon_hours": 12},
    )
    assert s.window_end - s.window_start == timedelta(days=1) and s.policy.horizon_hours == 12


@pytest.mark.parametrize(
    "params, message",
    [
        ({"window_start": "2026-11-19T00:00:00Z"}, "window_start and window_end go together"),
        ({"window_start": "2026-11-20T00:00:00Z", "window_end": "2026-11-19T00:00:00Z"}, "is not before end"),
        ({"window_start": "yesterday", "window_end": "2026-11-19T00:00:00Z"}, "param window_start"),
        ({"policy": {"c3_action": "shrug"}}, "policy.c3_action"),
        ({"policy": {"restock": "yes"}}, "param policy: policy.restock: 'yes' is not of type 'boolean'"),
        ({"policy": {"colour": 1}}, "param policy: policy: Additional properties are not allowed ('colour' was"),
        ({"colour": "red"}, "unknown param(s) colour"),
        ({"fulfillers": ["fedex"]}, "param fulfillers"),
        ({"overlap_minutes": -1}, "param overlap_minutes"),
        ({"window_minutes": "abc"}, "param window_minutes: expected 1 to 1440 minutes, got 'abc'"),
        ({"window_minutes": float("nan")}, "param window_minutes"),
        ({"policy": "reject everything"}, "param policy: expected an object of settings, got 'reject everything'"),
        ({"policy": ["horizon_hours"]}, "param policy: expected an object of settings, got ['horizon_hours']"),
        ({"sla_horizon_hours": float("nan")}, "param sla_horizon_hours: expected 0 to 720 hours, got nan"),
        ({"sla_horizon_hours": 1e300}, "param sla_horizon_hours: expected 0 to 720 hours, got 1e+300"),
        ({"shop": "a b"}, "param shop: expected letters, digits, - or _, got 'a b'"),
        ({"fulfillers": []}, "param fulfillers: expected a non-empty list of amazon_mcf, shipbob, got []"),
        ({"policy": {"cancel_verify_timeout_minutes": float("inf")}}, "policy.cancel_verify_timeout_minutes"),
        ({"now": "2100-01-01T00:00:00Z"}, "param now: '2100-01-01T00:00:00Z' is before 2016 or more than a day ahead"),
        ({"now": "1999-12-31T00:00:00Z"}, "param now: '1999-12-31T00:00:00Z' is before 2016"),
        (
            {"window_start": "2099-01-01T00:00:00Z", "window_end": "2099-01-02T00:00:00Z"},
            "param window_start: 2099-01-01",
        ),
        (
            {"window_start": "0999-01-01T00:00:00Z", "window_end": "2026-11-19T00:00:00Z"},
            "param window_start: 0999-01-01",
        ),
        ({"overlap_minutes": float("nan")}, "param overlap_minutes: expected 0 to 1440 minutes, got nan"),
        ({"overlap_minutes": 1e300}, "param overlap_minutes: expected 0 to 1440 minutes"),
        ({"dry_run": "no"}, "param dry_run: expected true or false, got 'no'"),
        ({"full_sweep_hours": -1}, "param full_sweep_hours: expected 0 to 168 hours"),
        ({"full_sweep_hours": True}, "param full_sweep_hours: expected 0 to 168 hours"),
    ],
)
def test_bad_params_are_named(params, message):
    with pytest.raises(RunConfigError) as err:
        run_settings(dag_id="d", run_id="r", params=params, run_after=T0)
    assert message in str(err.value)


def test_a_shop_dag_cannot_be_pointed_at_another_shop():
    shop = parse_shops([{"name": "shop-b", "policy": {"horizon_hours": 6}}])[0]
    s = run_settings(dag_id=shop.dag_id, run_id="r", params={}, run_after=T0, shop=shop)
    assert s.shop == "shop-b" and s.connections.tiktok == "orderops_shop_b_tiktok" and s.policy.horizon_hours == 6
    with pytest.raises(RunConfigError, match="serves shop 'shop-b', not 'shop-a'"):
        run_settings(dag_id=shop.dag_id, run_id="r", params={"shop": "shop-a"}, run_after=T0, shop=shop)
    # no run picks its connections: with a shops file or without one (the default shop)
    for pinned in (shop, Shop(), None):
        with pytest.raises(RunConfigError) as refused:
            run_settings(
                dag_id="d", run_id="r", params={"connections": {"tiktok": "orderops_tiktok"}}, run_after=T0, shop=pinned
            )
        assert str(refused.value) == (
            "param connections: not accepted; a run uses its shop's connections, from the "
            "shops file (ORDEROPS_SHOPS_FILE) or, without one, the orderops_* connections"
        )
    assert run_settings(dag_id="d", run_id="r", params={}, run_after=T0).connections == Connections()


def test_shops_file(tmp_path, monkeypatch):
    assert load_shops() == [Shop()] and Shop().dag_id == "orderops_sla"
    path = tmp_path / "shops.json"
    path.write_text(
        json.dumps(
            [{"name": "shop-a"}, {"name": "shop-b", "connections": {"warehouse": "wh_b"}, "schedule": "*/15 * * * *"}]
        )
    )
    monkeypatch.setenv(SHOPS_FILE_ENV, str(path))
    shops = load_shops()
    assert [s.dag_id for s in shops] == ["orderops_sla_shop_a", "orderops_sla_shop_b"]
    assert shops[1].connections.warehouse == "wh_b" and shops[1].schedule == "*/15 * * * *"
    # a shop in its shadow period: every run decides and writes nothing
    assert [s.dry_run for s in shops] == [False, False]
    assert parse_shops([{"name": "shop-c", "dry_run": True}])[0].dry_run is True
    for bad, message in (
        ([{"name": "A B"}], "shops[0].name"),
        ([{"name": "a"}, {"name": "a"}], "listed twice"),
        ([{"name": "a", "conections": {}}], "unknown key(s) conections"),
        ([], "non-empty list"),
        ([{"name": "shop-a"}, {"name": "shop_a"}], "'shop_a' is listed twice (- and _ count as one"),
        ([{"name": "a", "policy": ["horizon_hours"]}], "shops[0] (a).policy: expected an object"),
        ([{"name": "a", "policy": {"c3_action": "shrug"}}], "shops[0] (a): policy.c3_action"),
        ([{"name": "a", "schedule": "every half hour"}], "shops[0] (a).schedule: 'every half hour' is not a cron"),
        (
            [{"name": "a"}, {"name": "b", "connections": {"tiktok": "orderops_a_tiktok"}}],
            "'b' and 'a' share the tiktok connection 'orderops_a_tiktok'",
        ),
        # the report DAG's id: the two DAGs would clash when the DAGs are parsed
        (
            [{"name": "report"}, {"name": "shop-b"}],
            "shops[0].name: 'report' would have the DAG id 'orderops_sla_report', which another orderops DAG has",
        ),
        (
            [{"name": "a", "connections": {"tiktok": 7}}],
            "shops[0] (a).connections.tiktok: expected a connection id, got 7",
        ),
        ([{"name": "a", "connections": {"warehouse": ""}}], "(a).connections.warehouse: expected a"),
        ([{"name": "a", "connections": ["tiktok"]}], "shops[0] (a).connections: expected an object"),
        ([{"name": "a", "dry_run": "yes"}], "shops[0] (a).dry_run: expected true or false, got 'yes'"),
    ):
        with pytest.raises(
            RunConfigError,
            match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
        ):
            parse_shops(bad)


def test_a_shop_without_a_schedule_runs_at_minutes_of_its_own_hourly_with_events():
    names = [f"shop-{i}" for i in range(200)]
    plain = parse_shops([{"name": n} for n in names])
    evented = parse_shops([{"name": n, "events": {}} for n in names])
    assert {schedule_interval(s.schedule) for s in plain} == {timedelta(minutes=30)}
    assert {schedule_interval(s.schedule) for s in evented} == {timedelta(hours=1)}
    # the same shop gets the same minutes in every process; 200 shops' runs start spread over the interval
    assert parse_shops([{"name": "shop-7"}])[0].schedule == plain[7].schedule
    minutes = [int(s.schedule.split()[0]) for s in evented]
    assert all(0 <= m < 60 for m in minutes) and len(set(minutes)) > 45
    assert max(Counter(minutes).values()) <= 10
    first, second = plain[0].schedule.split()[0].split(",")
    assert int(second) == int(first) + 30
    # a schedule the entry names is kept; the one shop of a deployment without a shops file keeps */30
    assert parse_shops([{"name": "a", "events": {}, "schedule": "*/5 * * * *"}])[0].schedule == "*/5 * * * *"
    assert Shop().schedule == "*/30 * * * *"


@pytest.mark.parametrize(
    "raw, message",
    [
        ("abc", "expected minutes (a number), got 'abc'"),
        ("nan", "expected 0 to 10080 minutes"),
        ("-5", "expected 0 to 10080 minutes"),
        ("1e300", "expected 0 to 10080 minutes"),
    ],
)
def test_minute_settings_are_refused_with_their_name(monkeypatch, raw, message):
    monkeypatch.setenv("ORDEROPS_TASK_TIMEOUT_MINUTES", raw)
    with pytest.raises(RunConfigError) as err:
        task_timeout()
    assert str(err.value).startswith("ORDEROPS_TASK_TIMEOUT_MINUTES: ") and message in str(err.value)


def test_task_timeout_defaults_to_30_minutes_and_0_turns_it_off(monkeypatch):
    monkeypatch.delenv("ORDEROPS_TASK_TIMEOUT_MINUTES", raising=False)
    assert task_timeout() == timedelta(minutes=30)
    monkeypatch.setenv("ORDEROPS_TASK_TIMEOUT_MINUTES", "0")
    assert task_timeout() is None
    monkeypatch.setenv("ORDEROPS_TASK_TIMEOUT_MINUTES", " 12.5 ")
    assert minutes_setting("ORDEROPS_TASK_TIMEOUT_MINUTES", 30) == 12.5


def test_each_setting_is_declared_once_with_a_valid_default():
    """SETTINGS is the one declaration: its defaults pass its own checks, RunSettings takes its
    defaults from it, and a run with no params gets exactly them."""
    from include.run.runconfig import DEFAULTS, SETTINGS, RunSettings, checked_params

    assert checked_params({}) == DEFAULTS and len({s.name for s in SETTINGS}) == len(SETTINGS)
    s = run_settings(dag_id="d", run_id="r", params={}, run_after=T0)
    assert (s.sweep_hours, s.full_sweep_hours) == (DEFAULTS["sweep_hours"], DEFAULTS["full_sweep_hours"])
    assert RunSettings.__dataclass_fields__["sweep_hours"].default == DEFAULTS["sweep_hours"]
    assert s.overlap == timedelta(minutes=DEFAULTS["overlap_minutes"]) and s.fulfillers == tuple(DEFAULTS["fulfillers"])
    assert s.window_end - s.window_start == timedelta(minutes=DEFAULTS["window_minutes"])


def test_every_setting_on_the_trigger_form_says_what_it_does_and_its_docs_exist():
    """The form shows each operator's setting with its description; a docs page a description names
    is in the docs, and the policy's names the page of its settings."""
    import re

    from include.run.runconfig import SETTINGS
    from tests.conftest import REPO

    shown = [s for s in SETTINGS if s.for_operators]
    assert {s.name for s in shown} >= {"dry_run", "fulfillers", "sla_horizon_hours", "policy"}
    assert all(len(s.description.split()) >= 3 for s in shown), [s.name for s in shown]
    pages = {s.name: re.findall(r"\bdocs/[\w/.-]+\.md\b", s.description) for s in SETTINGS}
    assert pages["policy"] == ["docs/configuration/params-and-policy.md"]
    assert [page for found in pages.values() for page in found if not (REPO / page).is_file()] == []
