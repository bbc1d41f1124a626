"""Staging refuses, with the field named, the values inside a record that a join or a write would
read: shipments, packages and line items, and strings longer than their warehouse column."""

from __future__ import annotations

import pytest

from include.extract import staging
from include.store.warehouse import stg_shipbob_orders, stg_tiktok_orders

SHIPBOB = {
    "id": 9000001,
    "reference_id": "6100000001",
    "order_number": 1001,
    "status": "Fulfilled",
    "created_date": "2026-11-18T10:00:00Z",
    "last_update_at": "2026-11-18T12:00:00Z",
    "shipments": [
        {
            "id": 77,
            "status": "Completed",
            "last_update_at": "2026-11-19T09:00:00Z",
            "status_details": [{"name": "Delivered"}],
            "products": [{"sku": "OSL-TEE-M"}],
            "tracking": {
                "carrier": "USPS",
                "tracking_number": "9400100000000000000001",
                "shipping_date": "2026-11-19T08:00:00Z",
            },
        }
    ],
}
REPORT_ROW = {
    "amazon-order-id": "X1",
    "merchant-order-id": "1001",
    "shipment-id": "S1",
    "shipment-date": "2026-11-19T08:00:00+00:00",
    "sku": "OSL-TEE-M",
    "quantity-shipped": "1",
    "carrier": "UPS",
    "tracking-number": "1Z999AA10123456784",
}
AMAZON = {
    "sellerFulfillmentOrderId": "1001",
    "displayableOrderId": "#1001",
    "fulfillmentOrderStatus": "Complete",
    "statusUpdatedDate": "2026-11-19T08:00:00Z",
    "receivedDate": "2026-11-18T10:00:00Z",
}


def with_tracking(**changes) -> dict:
    order = {**SHIPBOB, "shipments": [{**SHIPBOB["shipments"][0]}]}
    order["shipments"][0]["tracking"] = {**SHIPBOB["shipments"][0]["tracking"], **changes}
    return order


def test_a_sound_shipment_stages_with_its_times_normalised():
    row = staging.shipbob_order_row(SHIPBOB)
    shipment = row["shipments"][0]
    assert (shipment["carrier"], shipment["tracking_number"], shipment["skus"]) == (
        "USPS",
        "9400100000000000000001",
        ["OSL-TEE-M"],
    )
    assert shipment["shipped_at"] == "2026-11-19T08:00:00+00:00"
    assert row["order_number"] == "1001"  # a number ShipBob may send either way, staged as text
    assert row["last_update_at"].isoformat() == "2026-11-19T09:00:00+00:00"
    amazon = staging.amazon_row_from_listing(AMAZON, [REPORT_ROW])
    assert amazon["shipments"][0]["packages"][0] == {
        "package_number": "1Z999AA10123456784",
        "carrier": "UPS",
        "tracking_number": "1Z999AA10123456784",
        "aftn": "",
        "skus": ["OSL-TEE-M"],
    }


@pytest.mark.parametrize(
    "order,reason",
    [
        (with_tracking(carrier=7), "shipment 77: carrier has the wrong type (int)"),
        (with_tracking(tracking_number=1234567890123), "tracking_number has the wrong type (int)"),
        (with_tracking(tracking_number="9" * 65), "tracking_number is 65 characters long (at most 64)"),
        (with_tracking(shipping_date="tomorrow"), "shipping_date='tomorrow' is not an ISO-8601 time"),
        ({**SHIPBOB, "shipments": [{**SHIPBOB["shipments"][0], "id": "77"}]}, "id has the wrong type (str)"),
        ({**SHIPBOB, "order_number": {"n": 1}}, "order_number has the wrong type (dict)"),
    ],
)
def test_a_bad_shipbob_shipment_is_refused_naming_the_field(order, reason):
    with pytest.raises(staging.BadRecord) as refused:
        staging.shipbob_order_row(order)
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"tracking-number": "1Z" * 40}, "trackingNumber is 80 characters long (at most 64)"),
        ({"carrier": "C" * 65}, "carrierCode is 65 characters long"),
        ({"shipment-date": "31/12/2026"}, "shippingDate='31/12/2026' is not an ISO-8601 time"),
        ({"sku": "S" * 129}, "sellerSku is 129 characters long (at most 128)"),
    ],
)
def test_a_bad_amazon_report_row_is_refused_naming_the_field(change, reason):
    with pytest.raises(staging.BadRecord) as refused:
        staging.amazon_row_from_listing(AMAZON, [{**REPORT_ROW, **change}])
    assert reason in str(refused.value)


def test_each_string_must_fit_its_warehouse_column():
    row = staging.shipbob_order_row({**SHIPBOB, "reference_id": "R" * 128})
    staging.check_sizes(row, stg_shipbob_orders, "shipbob order 9000001")  # exactly the column's size
    row = staging.shipbob_order_row({**SHIPBOB, "reference_id": "R" * 129})
    with pytest.raises(
        staging.BadRecord, match=r"shipbob order 9000001: reference_id is 129 characters long \(at most 128\)"
    ):
        staging.check_sizes(row, stg_shipbob_orders, "shipbob order 9000001")
    # odd unicode counts by characters, as both databases do
    staging.check_sizes({"tracking_number": "é" * 64, "status": "AWAITING_SHIPMENT"}, stg_tiktok_orders, "t")
    with pytest.raises(staging.BadRecord, match="status is 33 characters long"):
        staging.check_sizes({"status": "S" * 33}, stg_tiktok_orders, "t")


def test_statuses_stage_in_the_platforms_spelling_whatever_the_case():
    assert staging.shipbob_order_row({**SHIPBOB, "status": "FULFILLED"})["status"] == "Fulfilled"
    shipment = {**SHIPBOB["shipments"][0], "status": "labeled_created"}
    assert staging.shipbob_order_row({**SHIPBOB, "shipments": [shipment]})["shipments"][0]["status"] == "LabeledCreated"
    assert (
        staging.amazon_row_from_listing({**AMAZON, "fulfillmentOrderStatus": "COMPLETE_PARTIALLED"}, [])["status"]
        == "CompletePartialled"
    )
    # a status no vocabulary knows stays as sent: validation refuses the batch (never guessed)
    assert staging.shipbob_order_row({**SHIPBOB, "status": "Teleported"})["status"] == "Teleported"
