"""The preflight's pure parts: when a version's end of support is a problem or a warning, and its
argument checks."""

from __future__ import annotations

from datetime import date

import pytest

from include.preflight import PreflightError, check_days, version_findings
from orderops_provider.shopify import supported_until

TODAY = date(2026, 11, 20)


def test_a_version_past_its_end_is_a_problem_one_ending_within_60_days_a_warning():
    assert version_findings("shipbob", "2025-07", date(2026, 7, 31), TODAY) == (
        ["shipbob: API version 2025-07 reached its end of support on 2026-07-31"],
        [],
    )
    assert version_findings("shipbob", "2026-01", date(2027, 1, 19), TODAY) == (
        [],
        ["shipbob: API version 2026-01 ends its support on 2027-01-19, in 60 days"],
    )
    assert version_findings("shipbob", "2026-01", date(2027, 1, 20), TODAY) == ([], [])
    # its last day is still supported
    assert version_findings("shopify", "2025-10", TODAY, TODAY)[0] == []
    assert version_findings("tiktok", "202309", None, TODAY) == ([], [])


def test_shopify_supports_a_version_12_months_from_its_release():
    assert supported_until("2026-07") == date(2027, 6, 30)
    assert supported_until("2025-10") == date(2026, 9, 30)
    assert supported_until("unstable") is None


@pytest.mark.parametrize("days", [0, 61, -1, True, 7.0, "7"])
def test_days_out_of_range_or_not_a_whole_number_are_refused_by_name(days):
    with pytest.raises(PreflightError, match=r"^days: expected 1 to 60 days"):
        check_days(days)
