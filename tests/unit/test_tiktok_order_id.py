"""Where a Shopify order carries its TikTok order id: each style of the shop's setting, the rule
the join records, the numbers it must not take for an id, and a bad setting refused by name."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from include.decide.carriers import CarrierMap
from include.decide.join import Joiner
from include.extract import staging
from include.store.warehouse import order_links
from orderops_provider.base import ConfigurationError
from orderops_provider.connection import ConnectionSettings
from orderops_provider.shopify import ShopifyClient
from orderops_provider.tiktok_order_id import MAX_AFFIX, MAX_KEY, TikTokIdRules

TID = "576000000000000001"
OTHER = "576000000000000002"
DEFAULT = TikTokIdRules()


def rules_of(node: dict, rules: TikTokIdRules = DEFAULT) -> list[tuple[str, str]]:
    return [(f["tiktok_order_id"], f["rule"]) for f in rules.find({"name": "#1001", **node})]


def configured(**doc) -> TikTokIdRules:
    return TikTokIdRules.from_extra(doc)


# ------------------------------------------------------------------ each style, by default
@pytest.mark.parametrize(
    "node, rule",
    [
        ({"sourceIdentifier": TID}, "source_identifier"),
        # TikTok's channel app and the "Additional details" style: the key in any case
        ({"customAttributes": [{"key": "TikTok Order ID", "value": TID}]}, "custom_attribute:tiktok order id"),
        ({"customAttributes": [{"key": " TIKTOK_ORDER_ID ", "value": TID}]}, "custom_attribute:tiktok_order_id"),
        # a key the list does not name but that says both "tiktok" and "order"
        ({"customAttributes": [{"key": "TikTokOrderNo", "value": TID}]}, "custom_attribute:tiktokorderno"),
        (
            {"customAttributes": [{"key": "Tik Tok Shop order", "value": f"#{TID}"}]},
            "custom_attribute:tik tok shop order",
        ),
        # a note with a TikTok label, and one with the bare number (the connector's format is unknown)
        ({"note": f"Gift wrap\nTikTok Shop Order ID: {TID}"}, "note:tiktok_label"),
        ({"note": f"Imported {TID}"}, "note:any_number"),
        # the name: the id itself, or with an affix no one configured
        ({"name": f"#{TID}"}, "name"),
        ({"name": f"TT-{TID}"}, "name_contains"),
        ({"name": f"{TID}-TT"}, "name_contains"),
    ],
)
def test_each_style_is_found_by_default_and_names_its_rule(node, rule):
    assert rules_of(node) == [(TID, rule)]


def test_an_attribute_key_neither_listed_nor_tiktok_like_is_not_read_by_default():
    node = {
        "customAttributes": [{"key": "Marketplace Ref", "value": TID}, {"key": "TikTok Package ID", "value": OTHER}]
    }  # no "order": not read
    assert rules_of(node) == []
    shop = configured(attribute_keys=["marketplace REF"])
    assert rules_of(node, shop) == [(TID, "custom_attribute:marketplace ref")]
    assert (
        rules_of(
            {"customAttributes": [{"key": "TikTok Order ID", "value": TID}]},
            configured(attribute_keys=["Marketplace Ref"], any_tiktok_order_attribute=False),
        )
        == []
    )


def test_configured_name_prefixes_and_suffixes_match_in_any_case_and_name_the_affix():
    shop = configured(name_prefixes=["TT-"], name_suffixes=["-TT", "-us"])
    assert rules_of({"name": f"#tt-{TID}"}, shop) == [(TID, "name_prefix:TT-")]
    assert rules_of({"name": f"{TID}-TT"}, shop) == [(TID, "name_suffix:-TT")]
    assert rules_of({"name": f"TT-{TID}-US"}, shop) == [(TID, "name_prefix_suffix:TT-|-us")]
    assert rules_of({"name": f"#{TID}"}, shop) == [(TID, "name")]
    # a prefix ending in a digit: only the configured affix tells where the id starts (unconfigured,
    # the prefix's digit reads as the id's first)
    assert rules_of({"name": f"TT1{TID}"}, configured(name_prefixes=["TT1"])) == [(TID, "name_prefix:TT1")]
    assert rules_of({"name": f"TT1{TID}"}) == [(f"1{TID}", "name_contains")]
    # name_anywhere off: a name in no configured shape is not read
    strict = configured(name_prefixes=["TT-"], name_anywhere=False)
    assert rules_of({"name": f"Replacement {TID} (2)"}, strict) == []
    assert rules_of({"name": f"Replacement {TID} (2)"}) == [(TID, "name_contains")]


def test_places_switched_off_are_not_read():
    node = {"sourceIdentifier": TID, "note": f"TikTok order {TID}", "name": f"#{TID}"}
    assert rules_of(node, configured(source_identifier=False, note_patterns={}, name=False)) == []


def test_a_note_pattern_takes_only_its_own_number_and_never_part_of_a_longer_one():
    note = f"Carrier ref 123456789012345678\nOrder: {TID}"
    # the default reads every id-shaped number (a carrier's 18-digit reference too) ...
    assert {t for t, _ in rules_of({"note": note})} == {"123456789012345678", TID}
    # ... a pattern of the shop's connector reads only the id it labels
    shop = configured(note_patterns={"connector": r"Order: (\d+)"})
    assert rules_of({"note": note}, shop) == [(TID, "note:connector")]
    # a group that stops inside a longer number (a 20-digit tracking number) is not an id
    assert rules_of({"note": "Order: 92612999897543581234"}, shop) == []
    assert rules_of({"note": f"Order: {TID}1"}, configured(note_patterns={"first18": r"Order: (\d{18})"})) == []
    # a group of the wrong shape (too short) neither
    assert rules_of({"note": "Order: 1001"}, shop) == []


def test_an_id_found_in_two_places_is_listed_under_both_once_per_place():
    node = {
        "sourceIdentifier": TID,
        "customAttributes": [{"key": "TikTok Order ID", "value": TID}, {"key": "tiktok_order_id", "value": TID}],
        "note": f"TikTok order {TID}",
        "name": f"#{TID}",
    }
    assert rules_of(node) == [
        (TID, "source_identifier"),
        (TID, "custom_attribute:tiktok order id"),
        (TID, "note:tiktok_label"),
        (TID, "name"),
    ]


def test_the_longest_rule_fits_the_links_column():
    key = "tiktok order " + "k" * (MAX_KEY - 13)
    shop = configured(attribute_keys=[key], name_prefixes=["P" * MAX_AFFIX], name_suffixes=["S" * MAX_AFFIX])
    found = rules_of(
        {
            "customAttributes": [{"key": key + "x" * 100, "value": TID}],
            "name": f"{'P' * MAX_AFFIX}{TID}{'S' * MAX_AFFIX}",
        },
        shop,
    )
    longest = max((rule for _, rule in found), key=len)
    assert longest.startswith("name_prefix_suffix:") and len(found) == 2
    for _, rule in found:
        staging.check_sizes({"match_rule": rule}, order_links, "link")


# ------------------------------------------------------------------ the join's rule
def shopify_row(sid: str, node: dict, rules: TikTokIdRules = DEFAULT) -> dict:
    return staging.shopify_order_row(
        {
            "legacyResourceId": sid,
            "name": f"#{sid[-4:]}",
            "tags": [],
            "customAttributes": [],
            "updatedAt": "2026-11-20T10:00:00Z",
            **node,
        },
        rules,
    )


def tiktok_row(tid: str = TID) -> dict:
    created = datetime(2026, 11, 19, tzinfo=timezone.utc)
    return {
        "tiktok_order_id": tid,
        "status": "AWAITING_SHIPMENT",
        "fulfillment_type": "FULFILLMENT_BY_SELLER",
        "create_time": created,
        "rts_sla_time": created,
        "shipping_due_time": None,
        "tracking_number": "",
        "line_items": [{"id": "577000000000000001", "seller_sku": "SKU"}],
        "shipping_type": "SELLER",
    }


def link_of(rows: list[dict], **kwargs):
    return Joiner(rows, [], [], [], {}, CarrierMap([]), **kwargs).join(tiktok_row())[1]


def test_the_join_records_the_best_placed_rule_and_a_staged_rule_of_before_still_joins():
    both = shopify_row(
        "6100000001", {"customAttributes": [{"key": "TikTok Order ID", "value": TID}], "name": f"TT-{TID}"}
    )
    assert link_of([both]).match_rule == "custom_attribute:tiktok order id"
    assert link_of([both], lookup_order=("name", "custom_attribute")).match_rule == "name_contains"
    # rows staged before rules named their key or pattern
    old = {**both, "tiktok_ids": [{"tiktok_order_id": TID, "rule": "custom_attribute"}]}
    link = link_of([old])
    assert (link.shopify_order_ids, link.match_rule) == (("6100000001",), "custom_attribute")


def test_one_id_on_two_shopify_orders_by_different_rules_is_ambiguous():
    shop = configured(name_prefixes=["TT-"])
    rows = [
        shopify_row("6100000001", {"customAttributes": [{"key": "TikTok Order ID", "value": TID}]}, shop),
        shopify_row("6100000002", {"name": f"TT-{TID}"}, shop),
    ]
    link = link_of(rows)
    assert link.shopify_order_ids == ("6100000001", "6100000002")
    assert link.link_problem == "ambiguous_shopify_match"
    assert link.match_rule == "custom_attribute:tiktok order id"


def test_a_shop_with_its_own_key_joins_what_the_default_leaves_unmatched():
    node = {"customAttributes": [{"key": "Marketplace Ref", "value": TID}]}
    assert link_of([shopify_row("6100000001", node)]).link_problem == "no_shopify_match"
    link = link_of([shopify_row("6100000001", node, configured(attribute_keys=["Marketplace Ref"]))])
    assert (link.shopify_order_ids, link.match_rule) == (("6100000001",), "custom_attribute:marketplace ref")
    assert link.link_problem == "no_fulfillment_order"  # the next link: no fulfiller rows here


# ------------------------------------------------------------------ a bad setting
@pytest.mark.parametrize(
    "doc, message",
    [
        ("attribute_keys", "extra.tiktok_order_id must be an object, got 'attribute_keys'"),
        ({"attribute_key": ["x"]}, "extra.tiktok_order_id: unknown key(s) attribute_key"),
        ({"source_identifier": "no"}, "extra.tiktok_order_id.source_identifier must be true or false, got 'no'"),
        ({"name_anywhere": 1}, "extra.tiktok_order_id.name_anywhere must be true or false, got 1"),
        ({"attribute_keys": "TikTok Order ID"}, "extra.tiktok_order_id.attribute_keys must be a list of strings"),
        ({"attribute_keys": ["ok", " "]}, "extra.tiktok_order_id.attribute_keys[1] must be a non-empty string"),
        (
            {"name_prefixes": ["P" * (MAX_AFFIX + 1)]},
            f"name_prefixes[0] must be a non-empty string of at most {MAX_AFFIX}",
        ),
        ({"note_patterns": [r"(\d+)"]}, "extra.tiktok_order_id.note_patterns must be an object of name -> regular"),
        (
            {"note_patterns": {"ours": r"Order: (\d+"}},
            "extra.tiktok_order_id.note_patterns.ours: 'Order: (\\\\d+' is not "
            "a regular expression (missing ), unterminated subpattern",
        ),
        (
            {"note_patterns": {"ours": r"Order: \d+"}},
            "note_patterns.ours: 'Order: \\\\d+' must have exactly one group (the id), it has 0",
        ),
        (
            {"note_patterns": {"ours": r"(TT|TikTok) (\d+)"}},
            "note_patterns.ours: '(TT|TikTok) (\\\\d+)' must have exactly one group (the id), it has 2",
        ),
        ({"note_patterns": {"our pattern": r"(\d+)"}}, "pattern name 'our pattern' must be letters, digits"),
        ({"note_patterns": {"ours": 7}}, "extra.tiktok_order_id.note_patterns.ours must be a regular expression"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(doc, message):
    with pytest.raises(ConfigurationError) as refused:
        TikTokIdRules.from_extra(doc)
    assert message in str(refused.value)


def test_the_shopify_connection_carries_the_setting_and_a_bad_one_names_the_connection():
    def settings(extra: dict) -> ConnectionSettings:
        return ConnectionSettings("shop_a_shopify", "https://shop-a.myshopify.com", None, "token", extra)

    client = ShopifyClient.from_settings(
        settings({"tiktok_order_id": {"attribute_keys": ["Marketplace Ref"], "note_patterns": {"ours": r"Ref (\d+)"}}})
    )
    try:
        assert client.tiktok_order_id.attribute_keys == ("marketplace ref",)
        assert [name for name, _ in client.tiktok_order_id.note_patterns] == ["ours"]
    finally:
        client.close()
    default = ShopifyClient.from_settings(settings({}))
    try:
        assert default.tiktok_order_id == DEFAULT
    finally:
        default.close()
    with pytest.raises(
        ConfigurationError,
        match=r"^connection 'shop_a_shopify': extra.tiktok_order_id.note_patterns."
        r"ours: '\[' is not a regular expression",
    ):
        ShopifyClient.from_settings(settings({"tiktok_order_id": {"note_patterns": {"ours": "["}}}))
