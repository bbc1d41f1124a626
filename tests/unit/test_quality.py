"""Great Expectations suites on staged batches: good data passes, each kind of bad data is named."""
from __future__ import annotations

from datetime import datetime, timezone

from include.quality import validate

NOW = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)


def tiktok_row(order_id="576000000000000001", status="AWAITING_SHIPMENT", create=NOW):
    return {"tiktok_order_id": order_id, "status": status, "fulfillment_type": "FULFILLMENT_BY_SELLER",
            "create_time": create, "update_time": create, "rts_sla_time": create}


def test_clean_batch_passes():
    outcome = validate("tiktok_orders", [tiktok_row(), tiktok_row("576000000000000002")], NOW)
    assert outcome.success and outcome.rows == 2 and outcome.failures == []


def test_each_failure_is_named_with_examples():
    rows = [tiktok_row(), tiktok_row(), tiktok_row("576x", status="TELEPORTED"),
            tiktok_row("576000000000000009", create=datetime(1999, 1, 1, tzinfo=timezone.utc))]
    outcome = validate("tiktok_orders", rows, NOW)
    assert not outcome.success
    failed = {(f["expectation"], f["column"]) for f in outcome.failures}
    assert ("expect_column_values_to_be_unique", "tiktok_order_id") in failed
    assert ("expect_column_values_to_be_in_set", "status") in failed
    assert ("expect_column_values_to_match_regex", "tiktok_order_id") in failed
    assert ("expect_column_values_to_be_between", "create_time") in failed
    assert "TELEPORTED" in outcome.describe()


def test_empty_batch_is_not_a_failure():
    assert validate("shipbob_orders", [], NOW).success
