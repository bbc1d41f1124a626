"""Great Expectations (GX Core) suites over each staged platform batch.

A failed suite does not stop staging; it blocks the actions that depend on that platform's data
(see `include.run_store.RunStore.blocked_by_validation`) and is reported with the failing expectations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pandas as pd

from include.enums import (
    AMAZON_ORDER_STATUSES, FULFILLMENT_TYPES, SHIPBOB_ORDER_STATUSES, TIKTOK_CANCEL_STATUSES, TIKTOK_ORDER_STATUSES,
)


EARLIEST = pd.Timestamp("2015-01-01", tz="UTC")


@dataclass(frozen=True)
class Check:
    kind: str            # unique | not_null | in_set | regex | time
    column: str
    values: tuple = ()


SUITES: dict[str, list[Check]] = {
    "tiktok_orders": [
        Check("unique", "tiktok_order_id"), Check("not_null", "tiktok_order_id"),
        Check("regex", "tiktok_order_id", (r"^\d{1,32}$",)),
        Check("in_set", "status", TIKTOK_ORDER_STATUSES), Check("in_set", "fulfillment_type", FULFILLMENT_TYPES),
        Check("time", "create_time"), Check("time", "update_time"), Check("time", "rts_sla_time"),
        Check("not_null", "create_time"), Check("not_null", "update_time"),
    ],
    "tiktok_cancellations": [
        Check("unique", "cancel_id"), Check("not_null", "tiktok_order_id"),
        Check("in_set", "status", TIKTOK_CANCEL_STATUSES), Check("time", "create_time"),
    ],
    "shopify_orders": [
        Check("unique", "shopify_order_id"), Check("not_null", "name"), Check("time", "updated_at"),
    ],
    "amazon_fulfillment_orders": [
        Check("unique", "seller_fulfillment_order_id"), Check("in_set", "status", AMAZON_ORDER_STATUSES),
    ],
    "shipbob_orders": [
        Check("unique", "shipbob_order_id"), Check("in_set", "status", SHIPBOB_ORDER_STATUSES),
    ],
}
# Which platform each staged batch belongs to.
BATCH_PLATFORM = {"tiktok_orders": "tiktok", "tiktok_cancellations": "tiktok", "shopify_orders": "shopify",
                  "amazon_fulfillment_orders": "amazon_mcf", "shipbob_orders": "shipbob"}


@dataclass
class Outcome:
    batch: str
    success: bool
    rows: int
    failures: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        if self.success:
            return f"{self.batch}: {self.rows} rows, all expectations met"
        lines = [f"{self.batch}: {self.rows} rows, {len(self.failures)} expectation(s) failed"]
        lines += [f"  - {f['expectation']} on {f['column']}: {f['unexpected_count']} unexpected, e.g. {f['examples']}"
                  for f in self.failures]
        return "\n".join(lines)


def _expectation(gx, check: Check, now: datetime):
    e = gx.expectations
    if check.kind == "unique":
        return e.ExpectColumnValuesToBeUnique(column=check.column)
    if check.kind == "not_null":
        return e.ExpectColumnValuesToNotBeNull(column=check.column)
    if check.kind == "in_set":
        return e.ExpectColumnValuesToBeInSet(column=check.column, value_set=list(check.values))
    if check.kind == "regex":
        return e.ExpectColumnValuesToMatchRegex(column=check.column, regex=check.values[0])
    if check.kind == "time":
        latest = pd.Timestamp(now + timedelta(days=400))
        return e.ExpectColumnValuesToBeBetween(column=check.column, min_value=EARLIEST, max_value=latest)
    raise ValueError(f"unknown check kind {check.kind!r}")


def validate(batch: str, rows: list[dict], now: datetime | None = None) -> Outcome:
    """Run the batch's suite on its staged rows (typed columns only)."""
    import great_expectations as gx  # heavy import: only inside the validation task
    from great_expectations.data_context.types.base import ProgressBarsConfig

    now = now or datetime.now(timezone.utc)
    checks = SUITES[batch]
    columns = sorted({c.column for c in checks})
    frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
    for check in checks:
        if check.kind == "time":
            frame[check.column] = pd.to_datetime(frame[check.column], utc=True, errors="coerce")
    if frame.empty:
        return Outcome(batch, True, 0)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)   # they would flood task logs
    asset = context.data_sources.add_pandas(name=f"{batch}_source").add_dataframe_asset(name=batch)
    definition = asset.add_batch_definition_whole_dataframe(f"{batch}_batch")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{batch}_suite"))
    for check in checks:
        suite.add_expectation(_expectation(gx, check, now))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{batch}_validation", data=definition, suite=suite))
    result = validation.run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    failures = []
    for r in result.results:
        if not r.success:
            examples = [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]]
            failures.append({"expectation": r.expectation_config.type, "column": r.expectation_config.kwargs.get("column"),
                             "unexpected_count": r.result.get("unexpected_count"), "examples": examples})
    return Outcome(batch, bool(result.success), len(frame), failures)
