"""`make simulate`'s options are refused, naming the option, before anything is simulated."""

from __future__ import annotations

import pytest

from bench.simulate import main


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--start", "2026-11-20"], "--start '2026-11-20': expected a midnight UTC"),
        (["--start", "garbage"], "--start 'garbage'"),
        (["--start", "2026-11-20T05:00:00Z"], "expected a midnight UTC"),
        (["--start", "2026-11-20T00:00:00+01:00"], "expected a midnight UTC"),
        (["--days", "0"], "DAYS must be at least 1"),
        (["--orders-per-day", "-1"], "ORDERS_PER_DAY not negative"),
        (["--debounce-seconds", "900"], "DEBOUNCE must be 0 to 600 seconds"),
        (["--schedule", "every hour"], "SCHEDULE 'every hour': not a cron expression"),
    ],
)
def test_a_bad_option_is_refused_by_name(argv, named, tmp_path):
    with pytest.raises(SystemExit) as refused:
        main([*argv, "--out", str(tmp_path / "out")])
    assert named in str(refused.value)
    assert not (tmp_path / "out").exists()  # nothing was simulated
