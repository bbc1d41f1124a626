"""The sandbox's command lines (`python -m sandbox`, `python -m sandbox.demo`): a bad option or file
is refused with one error line naming it and exit status 2, before any port is bound."""

from __future__ import annotations

import json

import pytest

import sandbox.__main__ as cli
from sandbox import demo
from sandbox.generate import generate


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(generate(3, 1)))
    return path


@pytest.fixture(autouse=True)
def never_served(monkeypatch):
    """A refused command must stop before serving: reaching the server fails the test, not hangs it."""

    def refuse(*args, **kwargs):
        pytest.fail("the sandbox was served")

    monkeypatch.setattr(cli, "SandboxServer", refuse)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--clock-rate", "-2", "argument --clock-rate: expected a number from 0 (frozen) to 10000, got -2.0"),
        ("--clock-rate", "nan", "argument --clock-rate: expected a number from 0 (frozen) to 10000, got nan"),
        ("--clock-rate", "1e999", "argument --clock-rate: expected a number from 0 (frozen) to 10000, got inf"),
        ("--clock-rate", "fast", "argument --clock-rate: could not convert string to float: 'fast'"),
        ("--rate-scale", "0", "argument --rate-scale: expected a number above 0, up to 10000, got 0.0"),
        ("--rate-scale", "nan", "argument --rate-scale: expected a number above 0, up to 10000, got nan"),
        (
            "--port",
            "tiktok=70000",
            "argument --port: expected NAME=PORT with NAME one of tiktok, tiktok_auth, "
            "shopify, amazon_mcf, amazon_lwa, shipbob, amazon_sqs and PORT 0-65535, got 'tiktok=70000'",
        ),
        ("--port", "tiktok=\u00b2", "argument --port: expected NAME=PORT with NAME one of tiktok, "),
        ("--port", "etsy=8801", "argument --port: expected NAME=PORT with NAME one of tiktok, "),
    ],
)
def test_a_bad_serve_option_is_named_by_argparse(scenario_file, capsys, option, value, message):
    with pytest.raises(SystemExit) as refused:
        cli.main(["serve", "--scenario", str(scenario_file), option, value])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"python -m sandbox serve: error: {message}")


@pytest.mark.parametrize(
    "kind, content, message",
    [
        (
            "settings",
            {"durations": {"shipbob": {"Allocated": -5}}},
            "durations.shipbob.Allocated: expected 0 to 31622400 seconds, got -5",
        ),
        (
            "settings",
            {"durations": {"amazon_mcf": {"Processing": 1e300}}},
            "durations.amazon_mcf.Processing: expected 0 to 31622400 seconds, got 1e+300",
        ),
        ("settings", '{"clock_rate": NaN}', "clock_rate: expected a number from 0 (frozen) to 10000, got nan"),
        ("settings", {"rate_scale": -1}, "rate_scale: expected a number above 0, up to 10000, got -1"),
        ("settings", {"durations": {"shipbob": 60}}, "durations: expected an object of platform -> object"),
        ("settings", {"clock_rte": 0}, "unknown key(s) clock_rte"),
        ("settings", ["clock_rate", 0], "expected a JSON object"),
        ("settings", b'{"platforms": {"shopify": {"shop_domain": "caf\xe9"}}}', "not JSON: 'utf-8' codec can't decode"),
        ("settings", "[" * 100_000, "not JSON: nested too deeply"),
        ("life", {"start": "9999-12-31T00:00:00Z"}, "start: '9999-12-31T00:00:00Z' is outside the years 2000-2100"),
    ],
)
def test_a_bad_serve_file_is_named(tmp_path, scenario_file, capsys, kind, content, message):
    given = tmp_path / f"{kind}.json"
    given.write_bytes(
        content
        if isinstance(content, bytes)
        else (content if isinstance(content, str) else json.dumps(content)).encode()
    )
    source = ["--life", str(given)] if kind == "life" else ["--scenario", str(scenario_file), "--settings", str(given)]
    assert cli.main(["serve", *source]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: --{kind} {given}: {message}") and error.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["generate", "--orders", "-3", "--out", "x.json"],
            "python -m sandbox generate: error: argument --orders: "
            "expected a count of orders from 0 to 999999999, got '-3'",
        ),
    ],
)
def test_a_bad_generate_option_is_named_by_argparse(capsys, argv, message):
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2 and capsys.readouterr().err.splitlines()[-1] == message


def test_a_bad_demo_order_count_is_named_by_argparse(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        demo.main(["--orders", "-3", "--state", str(tmp_path / "state")])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m sandbox.demo: error: argument --orders: expected a count of orders from 0 to 999999999, got '-3'"
    )
    assert not (tmp_path / "state").exists()
