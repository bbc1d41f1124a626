"""`make backfill`'s arguments: the range it asks Airflow for, and the errors a person gets for a
wrong one or for no running UI (the whole command: tests/scheduler/test_backfill_command.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from deploy.backfill import BackfillError, days_of, demo_airflow, main, parse_range

NOW = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)


def test_dates_are_whole_days_and_the_report_gets_each_day_of_the_range():
    start, end = parse_range("2026-11-17", "2026-11-19", NOW)
    assert (start, end) == (datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC))
    assert days_of(start, end) == (datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 19, tzinfo=UTC))


def test_date_times_are_taken_as_given_in_utc():
    start, end = parse_range("2026-11-19T00:00", "2026-11-19T02:00Z", NOW)
    assert (start, end) == (datetime(2026, 11, 19, 0, tzinfo=UTC), datetime(2026, 11, 19, 2, tzinfo=UTC))
    assert days_of(start, end) == (datetime(2026, 11, 19, tzinfo=UTC),) * 2


@pytest.mark.parametrize(
    "start, end, named",
    [
        ("", "2026-11-19", "FROM='': expected a date"),
        ("2026-11-17", "19.11.2026", "TO='19.11.2026': expected a date"),
        ("2026-11-19", "2026-11-17", "the range is empty"),
        ("2026-11-19T02:00", "2026-11-19T02:00", "the range is empty"),
        ("2026-11-19T02:00+01:00", "2026-11-19T05:00", "give the time in UTC"),
        ("2026-12-08", "2026-12-09", "FROM=2026-12-08: in the future"),
    ],
)
def test_a_wrong_range_is_refused_naming_what_is_wrong(start, end, named):
    with pytest.raises(BackfillError, match=named):
        parse_range(start, end, NOW)


def test_without_a_running_ui_it_says_to_start_make_ui(tmp_path):
    with pytest.raises(BackfillError, match="no demo in .*: run `make demo`"):
        demo_airflow(tmp_path)
    (tmp_path / "demo.json").write_text("{}")
    with pytest.raises(BackfillError, match="`make ui` is not running on"):
        demo_airflow(tmp_path)
    # a UI that was killed left its address behind: nothing answers there
    (tmp_path / "ui.json").write_text(json.dumps({"url": "http://127.0.0.1:9"}))
    (tmp_path / "airflow").mkdir()
    (tmp_path / "airflow" / "orderops_ui_passwords.json").write_text(json.dumps({"admin": "x"}))
    with pytest.raises(BackfillError, match="no Airflow answers at http://127.0.0.1:9: start the UI first"):
        demo_airflow(tmp_path)


def test_the_command_prints_the_error_and_exits_2(tmp_path, capsys):
    assert main(["--from", "2026-11-19", "--to", "2026-11-20", "--state", str(tmp_path)]) == 2
    assert "no demo in" in capsys.readouterr().err
    assert main(["--from", "yesterday", "--to", "2026-11-20"]) == 2
    assert "FROM='yesterday': expected a date" in capsys.readouterr().err
