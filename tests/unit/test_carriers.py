"""Fulfiller carrier codes to TikTok providers: by name whatever the case and punctuation, by the
known synonyms, by a seller's override; anything else maps to nothing (escalated, never guessed)."""

from __future__ import annotations

import pytest

from include.decide.carriers import CarrierMap, carrier_group

PROVIDERS = [
    {"id": "6910107120741784262", "name": "UPS"},
    {"id": "7117858858072016686", "name": "USPS"},
    {"id": "7129736392012252974", "name": "FedEx"},
    {"id": "7212608507307558698", "name": "Amazon Logistics"},
    {"id": "7254084300713232174", "name": "OnTrac"},
]


@pytest.mark.parametrize(
    "code,provider",
    [
        ("UPS", "6910107120741784262"),
        ("ups", "6910107120741784262"),
        (" U.P.S ", "6910107120741784262"),
        ("FEDEX", "7129736392012252974"),
        ("FedEx Ground", "7129736392012252974"),
        ("fedex_smartpost", "7129736392012252974"),
        ("USPS_PRIORITY", "7117858858072016686"),
        ("AMZL_US", "7212608507307558698"),
        ("AMZN_US", "7212608507307558698"),
        ("amzn_us", "7212608507307558698"),
        ("ONTRAC", "7254084300713232174"),
    ],
)
def test_known_codes_map_whatever_their_case(code, provider):
    assert CarrierMap(PROVIDERS).provider_id(code) == provider


@pytest.mark.parametrize("code", ["LOCAL-COURIER-7", "", None, "DHL", "Amazon Freight"])
def test_anything_else_maps_to_nothing(code):
    assert CarrierMap(PROVIDERS).provider_id(code) is None


def test_an_override_names_a_provider_by_id_or_name_and_only_one_tiktok_offers():
    carriers = CarrierMap(PROVIDERS, {"local-courier-7": "OnTrac", "RegionalX": "7117858858072016686", "Gone": "9999"})
    assert carriers.provider_id("LOCAL_COURIER_7") == "7254084300713232174"
    assert carriers.provider_id("regionalx") == "7117858858072016686"
    assert carriers.provider_id("gone") is None


@pytest.mark.parametrize(
    "spelled, group",
    [
        ("FEDEX", "fedex"),
        ("FedEx", "fedex"),
        ("FedEx Ground", "fedex"),  # a service of the carrier TikTok knows as FedEx
        ("UPS", "ups"),
        ("AMZL_US", "amazonlogistics"),
        ("Regional Courier Co", "regionalcourierco"),  # no synonym: its own normalised name
        ("", ""),
        (None, ""),
    ],
)
def test_a_carrier_counts_under_one_name_however_it_is_spelled(spelled, group):
    assert carrier_group(spelled) == group
