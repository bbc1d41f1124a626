"""Time per validation call as Great Expectations results accumulate.

    python -m bench.quality_bench --calls 500 --rows 200
    python -m bench.quality_bench --calls 150 --run      # a run's five batches per call

Validates a clean TikTok orders batch of ROWS rows, or with `--run`
all five batches of ROWS rows each as `validate_staged` does (`validate_batches`: five checkpoints,
one Data Docs build), CALLS times in one process into one shop's GX folder under a fresh GX root
(ORDEROPS_GX_DIR, a temporary one unless given), one run name per call as the pipeline does, and
prints the median and p90 seconds per call for each block of calls, so a cost that grows with the
stored history shows as rising figures. `--keep` sets the results kept per suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

NOW = datetime(2026, 11, 20, 15, tzinfo=timezone.utc)
SHOP = "bench"  # one shop's GX folder under the GX root


def batch(rows: int) -> list[dict]:
    return [
        {
            "tiktok_order_id": f"576{i:015d}",
            "status": "AWAITING_SHIPMENT",
            "fulfillment_type": "FULFILLMENT_BY_SELLER",
            "create_time": NOW - timedelta(hours=i % 48),
            "update_time": NOW,
            "rts_sla_time": NOW + timedelta(hours=24),
        }
        for i in range(rows)
    ]


def run_batches(rows: int) -> dict[str, list[dict]]:
    """Clean rows for each staged batch, as one run stages them."""
    return {
        "tiktok_orders": batch(rows),
        "tiktok_cancellations": [
            {
                "cancel_id": f"4035{i:014d}",
                "tiktok_order_id": f"576{i:015d}",
                "status": "CANCELLATION_REQUEST_PENDING",
                "create_time": NOW,
            }
            for i in range(rows)
        ],
        "shopify_orders": [
            {"shopify_order_id": 5_000_000 + i, "name": f"#{1001 + i}", "updated_at": NOW} for i in range(rows)
        ],
        "amazon_fulfillment_orders": [
            {"seller_fulfillment_order_id": str(i), "status": "Complete"} for i in range(rows)
        ],
        "shipbob_orders": [{"shipbob_order_id": 9_000_000 + i, "status": "Fulfilled"} for i in range(rows)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--block", type=int, default=100, help="calls per printed line")
    parser.add_argument("--keep", type=int, help="results kept per suite (ORDEROPS_GX_KEEP)")
    parser.add_argument("--run", action="store_true", help="validate a run's five batches per call")
    parser.add_argument("--gx-dir", type=Path, help="the GX root (default: a temporary one)")
    args = parser.parse_args()
    folder = args.gx_dir or Path(tempfile.mkdtemp(prefix="orderops-gx-bench-"))
    os.environ["ORDEROPS_GX_DIR"] = str(folder)
    if args.keep is not None:
        os.environ["ORDEROPS_GX_KEEP"] = str(args.keep)
    from include.quality.checkpoints import validate_batches

    batches = run_batches(args.rows) if args.run else {"tiktok_orders": batch(args.rows)}
    started = time.perf_counter()
    validate_batches(SHOP, batches, NOW)  # imports and first-use costs, apart from the figures
    print(f"first call (imports GX): {time.perf_counter() - started:.2f} s; GX folder {folder}")
    times: list[float] = []
    for i in range(args.calls):
        t = time.perf_counter()
        outcomes = validate_batches(SHOP, batches, NOW, run=f"{SHOP}:run-{i}")
        times.append(time.perf_counter() - t)
        for outcome in outcomes.values():
            assert outcome.success, outcome.describe()
        if len(times) == args.block or i == args.calls - 1:
            times.sort()
            print(
                f"calls {i + 2 - len(times):>5}-{i + 1:<5} median {statistics.median(times):.3f} s  "
                f"p90 {times[int(len(times) * 0.9) - 1]:.3f} s"
            )
            times = []


if __name__ == "__main__":
    main()
