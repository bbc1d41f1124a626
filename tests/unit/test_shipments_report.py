"""The fulfilled-shipments report's range and its stored copy (Amazon: one month, every 30 minutes)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from include.events.platform_events import EventInbox, PlatformEvent
from include.extract import staging
from include.extract.amazon import _followed_while_processing, _shipped_as_staged, shipments_report
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse, stg_amazon_fulfillment_orders
from tests.support import NOW


class ReportsAsked:
    """Records what was asked of Amazon's Reports API (the run's other calls are not made here)."""

    def __init__(self, build_seconds: float | None = 40.0):
        self.asked: list[tuple[datetime, datetime]] = []
        self.expected: list[float | None] = []  # each collect's expected build time
        self.build_seconds = None
        self.builds = build_seconds

    def request_fulfilled_shipments(self, start, end):
        self.asked.append((start, end))
        return f"report-{len(self.asked)}"

    def collect_fulfilled_shipments(self, report_id, expected_seconds=None):
        self.expected.append(expected_seconds)
        self.build_seconds = self.builds
        return [
            {
                "merchant-order-id": "1001",
                "tracking-number": report_id,
                "recipient-name": "A Buyer",
                "ship-address-1": "1 Main St",
            }
        ]


@pytest.fixture
def wh(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    wh.migrate()
    yield wh
    wh.dispose()


def settings_at(moment: datetime, shop: str = "default"):
    return run_settings(
        dag_id="orderops_sla",
        run_id=f"r-{moment:%H%M}",
        params={
            "now": moment.isoformat(),
            "window_start": (moment - timedelta(minutes=30)).isoformat(),
            "window_end": moment.isoformat(),
            "shop": shop,
        },
    )


def test_range_starts_at_the_day_of_since_and_never_spans_more_than_a_month(wh):
    client = ReportsAsked()
    shipments_report(settings_at(NOW), client, wh, NOW - timedelta(days=2, hours=3))
    assert client.asked == [(datetime(2026, 11, 18, tzinfo=timezone.utc), NOW)]
    later = NOW + timedelta(hours=1)
    shipments_report(settings_at(later), client, wh, NOW - timedelta(days=59))
    assert client.asked[-1] == (later - timedelta(days=30), later)


def test_a_covered_range_within_30_minutes_reads_the_stored_copy(wh):
    client = ReportsAsked()
    rows, reused = shipments_report(settings_at(NOW), client, wh, NOW - timedelta(days=1))
    assert not reused and rows == [{"merchant-order-id": "1001", "tracking-number": "report-1"}]  # no buyer data kept
    # the same moment again (a rerun, a backfill run): the stored copy, nothing asked
    rows, reused = shipments_report(settings_at(NOW), client, wh, NOW - timedelta(hours=5))
    assert reused and rows[0]["tracking-number"] == "report-1" and len(client.asked) == 1
    # a range starting before the stored one's: asked anew
    shipments_report(settings_at(NOW), client, wh, NOW - timedelta(days=3))
    assert len(client.asked) == 2
    # a later moment: the stored copy lacks what shipped since, so asked anew
    _, reused = shipments_report(settings_at(NOW + timedelta(minutes=10)), client, wh, NOW - timedelta(days=1))
    assert not reused and len(client.asked) == 3


def test_each_report_waits_as_long_as_the_last_took_to_build(wh):
    client = ReportsAsked(build_seconds=40.0)
    shipments_report(settings_at(NOW), client, wh, NOW - timedelta(days=1))
    client.builds = None  # a report that says nothing of its build time keeps the last figure
    shipments_report(settings_at(NOW + timedelta(minutes=30)), client, wh, NOW - timedelta(days=1))
    client.builds = 55.0
    shipments_report(settings_at(NOW + timedelta(minutes=60)), client, wh, NOW - timedelta(days=1))
    shipments_report(settings_at(NOW + timedelta(minutes=90)), client, wh, NOW - timedelta(days=1))
    assert client.expected == [None, 40.0, 40.0, 55.0]


def test_the_stored_copy_is_the_shops_own(wh):
    client = ReportsAsked()
    shipments_report(settings_at(NOW, "shop_a"), client, wh, NOW - timedelta(days=1))
    shipments_report(settings_at(NOW, "shop_b"), client, wh, NOW - timedelta(days=1))
    assert len(client.asked) == 2


def listed(sfo: str, status: str, updated: str) -> dict:
    return {
        "sellerFulfillmentOrderId": sfo,
        "displayableOrderId": sfo,
        "fulfillmentOrderStatus": status,
        "statusUpdatedDate": updated,
        "receivedDate": "2026-11-19T10:00:00Z",
    }


def test_a_finished_order_staged_with_its_shipments_and_unchanged_is_not_read_again(wh):
    shipped = [
        {
            "amazonShipmentId": "S1",
            "fulfillmentShipmentStatus": "SHIPPED",
            "shippingDate": "2026-11-19T12:00:00Z",
            "fulfillmentShipmentPackage": [{"packageNumber": 1, "carrierCode": "UPS", "trackingNumber": "1Z9"}],
            "fulfillmentShipmentItem": [],
        }
    ]
    details = [
        ("1001", "Complete", shipped),
        ("1002", "Complete", []),
        ("1003", "Processing", shipped),
        ("1004", "Complete", shipped),
    ]
    settings = settings_at(NOW)
    wh.upsert(
        stg_amazon_fulfillment_orders,
        [
            {
                **staging.amazon_order_row(
                    {"fulfillmentOrder": listed(sfo, status, "2026-11-19T12:05:00Z"), "fulfillmentShipments": shipments}
                ),
                "shop": "default",
                "snapshot_run_id": "earlier",
                "extracted_at": NOW - timedelta(hours=1),
                "source_request_id": None,
            }
            for sfo, status, shipments in details
        ],
    )
    now_listed = [
        listed("1001", "Complete", "2026-11-19T12:05:00Z"),  # unchanged, tracked: stands
        listed("1002", "Complete", "2026-11-19T12:05:00Z"),  # staged without tracking
        listed("1003", "Processing", "2026-11-19T12:05:00Z"),  # may ship more any minute
        listed("1004", "Complete", "2026-11-19T14:00:00Z"),  # changed since it was staged
        listed("1005", "Complete", "2026-11-19T12:05:00Z"),
    ]  # never staged

    def status(o):
        return o["fulfillmentOrderStatus"]

    assert _shipped_as_staged(wh, settings, now_listed, status) == {"1001"}
    assert _shipped_as_staged(wh, settings_at(NOW, shop="other"), now_listed, status) == set()
    broken = [{**listed("1001", "Complete", "2026-11-19T12:05:00Z"), "statusUpdatedDate": "yesterday"}]
    assert _shipped_as_staged(wh, settings, broken, status) == set()  # read as usual, staging names it


def test_a_processing_order_followed_by_notifications_is_not_read_for_shipments(wh):
    shipped = [
        {
            "amazonShipmentId": "S1",
            "fulfillmentShipmentStatus": "SHIPPED",
            "shippingDate": "2026-11-19T12:00:00Z",
            "fulfillmentShipmentPackage": [{"packageNumber": 1, "carrierCode": "UPS", "trackingNumber": "1Z9"}],
            "fulfillmentShipmentItem": [],
        }
    ]
    settings = settings_at(NOW)
    wh.upsert(
        stg_amazon_fulfillment_orders,
        [
            {
                **staging.amazon_order_row(
                    {
                        "fulfillmentOrder": listed(sfo, "Processing", "2026-11-19T12:05:00Z"),
                        "fulfillmentShipments": shipments,
                    }
                ),
                "shop": "default",
                "snapshot_run_id": "earlier",
                "extracted_at": NOW - timedelta(hours=1),
                "source_request_id": None,
            }
            for sfo, shipments in (("1001", []), ("1004", shipped))
        ],
    )
    inbox = EventInbox(wh)

    def notification(n: int, sfo: str, wakes: bool) -> PlatformEvent:
        return PlatformEvent("amazon_mcf", f"n-{n}", "FULFILLMENT_ORDER_STATUS/Order", sfo, NOW, wakes, {})

    inbox.receive(
        "default",
        [
            notification(1, "1001", False),
            notification(2, "1003", False),
            notification(3, "1004", False),
            notification(4, "1005", False),
            notification(5, "1006", False),
        ],
        received_at=NOW - timedelta(minutes=20),
    )
    inbox.claim("default", "earlier")
    inbox.receive("default", [notification(7, "1006", True)], received_at=NOW)
    inbox.claim("default", settings.run_id)  # this run took it: it reads
    inbox.receive("default", [notification(6, "1003", True)], received_at=NOW)  # a shipment waits
    now_listed = [
        listed("1001", "Processing", "2026-11-19T12:05:00Z"),  # followed, nothing shipped: stands
        listed("1002", "Processing", "2026-11-19T12:05:00Z"),  # no notification ever came
        listed("1003", "Processing", "2026-11-19T12:05:00Z"),  # an announcement waits for a run
        listed("1004", "Processing", "2026-11-19T14:00:00Z"),  # staged with a shipment: may ship more
        listed("1005", "Complete", "2026-11-19T14:00:00Z"),  # finished: its shipments are read
        listed("1006", "Processing", "2026-11-19T12:05:00Z"),
    ]  # this run claimed what woke it

    def status(o):
        return o["fulfillmentOrderStatus"]

    assert _followed_while_processing(wh, settings, now_listed, status) == {"1001"}
    assert _followed_while_processing(wh, settings_at(NOW, shop="other"), now_listed, status) == set()


def test_an_order_amazon_gives_no_early_number_is_not_read_again_for_one():
    """Amazon's early tracking number is for US single-item orders: a detail read that shows two items,
    or another country, settles it; a listing row (no items) does not."""
    from include.extract.amazon import _may_get_aftn

    one = {"fulfillmentOrder": {}, "fulfillmentOrderItems": [{"quantity": 1}]}
    assert _may_get_aftn(one) and _may_get_aftn({"fulfillmentOrder": {}}) and _may_get_aftn(None)
    assert not _may_get_aftn({**one, "fulfillmentOrderItems": [{"quantity": 1}, {"quantity": 1}]})
    assert not _may_get_aftn({**one, "fulfillmentOrderItems": [{"quantity": 2}]})
    assert not _may_get_aftn({**one, "fulfillmentOrder": {"destinationAddress": {"countryCode": "CA"}}})
