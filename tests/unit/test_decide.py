"""The decision rules (one test per rule) and docs/architecture.md §3's safety invariants as properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.decide.model import (
    ADD_NOTE,
    APPROVE_CANCELLATION,
    CANCEL_FULFILLMENT,
    CANCEL_SHOPIFY,
    ESCALATE,
    POST_TRACKING,
    REJECT_CANCELLATION,
    VERIFY_FULFILLMENT_CANCEL,
    Cancellation,
    Fulfillment,
    FulfillmentState,
    JoinedOrder,
    LinkProblem,
    Package,
    SagaState,
)
from include.decide.policy import POLICY_SCHEMA, Policy, PolicyError, policy_from_dict
from include.decide.rules import decide, hold_shared_tracking, needs_reject_reasons
from tests.support import NOW

POLICY = Policy()
UPS = Package("UPS", "1Z999AA10123456784", provider_id="7117858858072016686")


def order(**changes) -> JoinedOrder:
    base = JoinedOrder(
        tiktok_order_id="576000000000000001",
        status="AWAITING_SHIPMENT",
        fulfillment_type="FULFILLMENT_BY_SELLER",
        create_time=NOW - timedelta(days=1),
        rts_sla_time=NOW + timedelta(hours=6),
        shipping_due_time=NOW + timedelta(days=5),
        tracking_number="",
        line_item_ids=("577000000000000001",),
        shopify_order_ids=("6100000001",),
        match_rule="source_identifier",
        fulfillment=Fulfillment("amazon_mcf", "1001", "Planning", FulfillmentState.NOT_STARTED),
    )
    return replace(base, **changes)


def shipped(*packages: Package, fulfiller="amazon_mcf", state=FulfillmentState.SHIPPED) -> Fulfillment:
    return Fulfillment(fulfiller, "1001", "Complete", state, packages=packages, shipment_started=True)


PENDING = Cancellation("4035000000000000001", "CANCELLATION_REQUEST_PENDING", NOW + timedelta(hours=40))


def kinds(decision) -> list[str]:
    return [a.kind for a in decision.actions]


# One test per rule -----------------------------------------------------------------------------


def test_t1_posts_tracking_even_far_from_sla():
    d = decide(order(rts_sla_time=NOW + timedelta(days=3), fulfillment=shipped(UPS)), POLICY, NOW)
    assert d.rule == "T1" and kinds(d) == [POST_TRACKING]
    params = d.actions[0].params
    assert params["tracking_number"] == UPS.tracking_number
    assert params["shipping_provider_id"] == UPS.provider_id and params["order_line_item_ids"] == []
    assert d.actions[0].idempotency_key == f"post_tracking:576000000000000001:{UPS.tracking_number}"


def test_tiktok_label_orders_get_no_tracking_from_orderops():
    # shipping_type TIKTOK: TikTok refuses seller tracking; its carrier scan brings it
    d = decide(order(shipping_type="TIKTOK", fulfillment=shipped(UPS)), POLICY, NOW)
    assert d.rule == "-" and d.actions == () and "TikTok's label" in d.reason
    d = decide(order(shipping_type="TIKTOK", cancellation=PENDING, fulfillment=shipped(UPS)), POLICY, NOW)
    assert d.rule == "C3" and kinds(d) == [REJECT_CANCELLATION]
    # not shipped yet and due: the note, as for any order
    assert kinds(decide(order(shipping_type="TIKTOK"), POLICY, NOW)) == [ADD_NOTE]
    # only the seller's own label takes seller tracking: a type orderops does not know posts none
    assert POST_TRACKING not in kinds(decide(order(shipping_type="unknown", fulfillment=shipped(UPS)), POLICY, NOW))


def test_t1_partial_shipment_posts_the_shipped_line_items():
    p1 = Package("UPS", "1ZA", "p-ups", ("577a",))
    p2 = Package("FedEx", "7700B", "p-fedex", ("577b",))
    d = decide(
        order(
            status="PARTIALLY_SHIPPING",
            line_item_ids=("577a", "577b"),
            fulfillment=shipped(p1, p2, state=FulfillmentState.PARTIALLY_SHIPPED),
        ),
        POLICY,
        NOW,
    )
    assert d.rule == "T1" and [a.params["order_line_item_ids"] for a in d.actions] == [["577a"], ["577b"]]


AFTN = "AFT123456789012"


def early(status="Planning", state=FulfillmentState.NOT_STARTED, *packages: Package, provider="p-amazon"):
    """An Amazon MCF order with its early tracking number (AFTN) and, maybe, the carrier's packages."""
    return Fulfillment("amazon_mcf", "1001", status, state, packages=packages, aftn=AFTN, aftn_provider_id=provider)


def test_t1_posts_amazons_early_tracking_number_before_any_carrier_tracking():
    d = decide(order(rts_sla_time=NOW + timedelta(days=2), fulfillment=early()), POLICY, NOW)
    assert d.rule == "T1" and kinds(d) == [POST_TRACKING] and "AFTN" in d.reason
    params = d.actions[0].params
    assert (params["tracking_number"], params["shipping_provider_id"], params["source"]) == (AFTN, "p-amazon", "aftn")
    # the carrier's number, once there, is the one posted when no AFTN went first
    d = decide(order(fulfillment=early("Complete", FulfillmentState.SHIPPED, UPS)), POLICY, NOW)
    assert d.actions[0].params["tracking_number"] == UPS.tracking_number and d.actions[0].params["source"] == "carrier"
    # TikTok takes tracking once: an order already carrying the AFTN gets nothing more
    shipped_after = order(
        tracking_number=AFTN, status="AWAITING_COLLECTION", fulfillment=early("Complete", FulfillmentState.SHIPPED, UPS)
    )
    assert decide(shipped_after, POLICY, NOW).actions == ()


def test_the_early_number_waits_when_the_policy_says_so_or_maps_to_no_provider():
    off = Policy(post_aftn=False)
    d = decide(order(fulfillment=early()), off, NOW)
    assert d.rule == "N1" and kinds(d) == [ADD_NOTE]  # due within the horizon, no tracking yet
    # no Amazon provider on the order's delivery option: the carrier's number is waited for
    d = decide(order(fulfillment=early(provider=None)), POLICY, NOW)
    assert d.rule == "N1" and kinds(d) == [ADD_NOTE]
    # TikTok's own label brings its own tracking: no early number either
    assert POST_TRACKING not in kinds(decide(order(shipping_type="TIKTOK", fulfillment=early()), POLICY, NOW))


def test_usps_tracking_on_the_sellers_label_follows_the_policy():
    usps = Package("USPS", "9400111899223197428490", "p-usps")
    d = decide(order(fulfillment=shipped(usps, fulfiller="shipbob")), POLICY, NOW)
    assert d.rule == "T3" and d.actions[0].params["reason_code"] == "usps_label_not_tiktok_shipping"
    d = decide(order(fulfillment=shipped(usps, fulfiller="shipbob")), Policy(usps_tracking="post"), NOW)
    assert d.rule == "T1" and d.actions[0].params["tracking_number"] == usps.tracking_number
    # Amazon's early number is Amazon's, whoever carries the parcel later
    d = decide(order(fulfillment=early()), POLICY, NOW)
    assert d.rule == "T1"


def test_an_mcf_warehouse_gets_only_amazon_tracking():
    policy = Policy(mcf_warehouse_ids=("7202",))
    d = decide(order(warehouse_id="7202", fulfillment=shipped(UPS, fulfiller="shipbob")), policy, NOW)
    assert d.rule == "T3" and d.actions[0].params["reason_code"] == "non_mcf_tracking"
    assert decide(order(warehouse_id="7202", fulfillment=shipped(UPS)), policy, NOW).rule == "T1"
    assert decide(order(warehouse_id="7201", fulfillment=shipped(UPS, fulfiller="shipbob")), policy, NOW).rule == "T1"


def test_an_mcf_warehouse_one_refusal_short_of_tiktoks_limit_gets_no_more_uploads():
    mcf = Policy(mcf_warehouse_ids=("7202",))
    d = decide(order(warehouse_id="7202", warehouse_refusals=4, fulfillment=shipped(UPS)), mcf, NOW)
    assert d.rule == "T3" and d.actions[0].params["reason_code"] == "warehouse_refusals"
    assert "refused 4 tracking uploads for warehouse 7202" in d.actions[0].params["detail"]
    assert decide(order(warehouse_id="7202", warehouse_refusals=3, fulfillment=shipped(UPS)), mcf, NOW).rule == "T1"
    # the limit is the policy's; TikTok's rule is its MCF warehouses'
    strict = Policy(mcf_warehouse_ids=("7202",), warehouse_refusal_limit=3)
    assert decide(order(warehouse_id="7202", warehouse_refusals=2, fulfillment=shipped(UPS)), strict, NOW).rule == "T3"
    assert decide(order(warehouse_id="7201", warehouse_refusals=9, fulfillment=shipped(UPS)), mcf, NOW).rule == "T1"


def test_one_tracking_number_is_never_posted_to_two_orders():
    a = decide(order(tiktok_order_id="576A", fulfillment=shipped(UPS)), POLICY, NOW)
    b = decide(order(tiktok_order_id="576B", fulfillment=shipped(UPS)), POLICY, NOW)
    c = decide(order(tiktok_order_id="576C", fulfillment=shipped(Package("FedEx", "7700C", "p-fedex"))), POLICY, NOW)
    held = {d.tiktok_order_id: d for d in hold_shared_tracking([a, b, c], {})}
    # both orders of the shared number are held: which one the parcel is for, a person decides
    for tid, other in (("576A", "576B"), ("576B", "576A")):
        assert held[tid].rule == "T3" and kinds(held[tid]) == [ESCALATE]
        assert held[tid].actions[0].params["reason_code"] == "tracking_on_other_order"
        assert other in held[tid].actions[0].params["detail"]
    assert held["576C"] == c
    # on TikTok (or in the ledger) for another order already
    (only,) = hold_shared_tracking([c], {"7700C": {"576Z"}})
    assert only.rule == "T3" and "576Z" in only.actions[0].params["detail"]
    # this order's own earlier post of the same number is not another order's
    assert hold_shared_tracking([c], {"7700C": {"576C"}}) == [c]


def test_t2_unmappable_carrier_escalates_never_posts():
    d = decide(order(fulfillment=shipped(Package("LOCAL-COURIER-7", "LC1", None))), POLICY, NOW)
    assert d.rule == "T2" and kinds(d) == [ESCALATE]
    assert d.actions[0].params["reason_code"] == "carrier_unmapped"


def test_n1_note_near_sla_without_tracking():
    d = decide(order(), POLICY, NOW)
    assert d.rule == "N1" and kinds(d) == [ADD_NOTE]
    assert d.actions[0].params["note"] == "Shipping, no tracking ID yet"
    assert d.actions[0].idempotency_key == "add_note:576000000000000001:amazon_mcf:Planning"


def test_n1_past_deadline_still_notes_and_far_orders_wait():
    assert decide(order(rts_sla_time=NOW - timedelta(hours=2)), POLICY, NOW).rule == "N1"
    far = decide(order(rts_sla_time=NOW + timedelta(hours=30)), POLICY, NOW)
    assert far.rule == "-" and far.actions == ()
    assert decide(order(rts_sla_time=NOW + timedelta(hours=30)), Policy(horizon_hours=48), NOW).rule == "N1"


@pytest.mark.parametrize(
    "changes, code",
    [
        (
            {"shopify_order_ids": (), "link_problem": LinkProblem.NO_SHOPIFY_MATCH, "fulfillment": None},
            "no_shopify_match",
        ),
        (
            {"shopify_order_ids": ("1", "2"), "link_problem": LinkProblem.AMBIGUOUS_SHOPIFY_MATCH},
            "ambiguous_shopify_match",
        ),
        ({"fulfillment": None, "link_problem": LinkProblem.NO_FULFILLMENT_ORDER}, "no_fulfillment_order"),
        ({"fulfillment": Fulfillment("shipbob", "9000001", "Exception", FulfillmentState.FAILED)}, "fulfiller_failed"),
        (
            {"fulfillment": Fulfillment("amazon_mcf", "1001", "Unfulfillable", FulfillmentState.FAILED)},
            "fulfiller_failed",
        ),
    ],
)
def test_e1_escalates_with_reason(changes, code):
    d = decide(order(**changes), POLICY, NOW)
    assert d.rule == "E1" and kinds(d) == [ESCALATE] and d.actions[0].params["reason_code"] == code


def test_e1_waits_out_the_sync_grace_for_fresh_orders():
    fresh = order(
        create_time=NOW - timedelta(minutes=10),
        rts_sla_time=NOW + timedelta(days=2),
        shopify_order_ids=(),
        link_problem=LinkProblem.NO_SHOPIFY_MATCH,
        fulfillment=None,
    )
    assert decide(fresh, POLICY, NOW).rule == "-"
    assert decide(replace(fresh, create_time=NOW - timedelta(hours=2)), POLICY, NOW).rule == "E1"


def test_c1_full_saga_in_order():
    d = decide(order(cancellation=PENDING), POLICY, NOW)
    assert d.rule == "C1"
    # approval on TikTok before the Shopify cancel a connector could copy to TikTok as a seller cancel
    assert kinds(d) == [CANCEL_FULFILLMENT, VERIFY_FULFILLMENT_CANCEL, APPROVE_CANCELLATION, CANCEL_SHOPIFY]
    cancel_shopify = d.actions[3].params
    assert cancel_shopify["refund_method"] == "original_payment" and cancel_shopify["restock"] is True


@pytest.mark.parametrize(
    "sequence, expected",
    [
        ("approve_then_shopify", [APPROVE_CANCELLATION, CANCEL_SHOPIFY]),
        ("shopify_then_approve", [CANCEL_SHOPIFY, APPROVE_CANCELLATION]),
        ("approve_only", [APPROVE_CANCELLATION]),
    ],
)
def test_the_cancellation_sequence_follows_the_policy(sequence, expected):
    d = decide(
        order(
            cancellation=PENDING,
            fulfillment=None,
            link_problem=LinkProblem.NO_FULFILLMENT_ORDER,
            fulfillment_keys=("6100000001",),
        ),
        Policy(cancellation_sequence=sequence),
        NOW,
    )
    assert d.rule == "C2" and kinds(d) == expected
    # every write, the first and a later one alike, asks the fulfillers first
    assert all(a.params["fulfillment_keys"] == ["6100000001"] for a in d.actions)


def test_an_approved_request_still_cancels_its_shopify_order():
    """Approved on TikTok (the order is CANCELLED, the request closed) while the Shopify cancel did not
    go through: later runs carry the Shopify cancel out alone, never a second approval."""
    approved = order(
        status="CANCELLED",
        fulfillment=None,
        link_problem=LinkProblem.NO_FULFILLMENT_ORDER,
        cancellation=replace(PENDING, status="CANCELLATION_REQUEST_SUCCESS"),
        saga=SagaState(approval_sent=True),
    )
    d = decide(approved, POLICY, NOW)
    assert d.rule == "C2" and kinds(d) == [CANCEL_SHOPIFY] and "still open" in d.reason
    assert decide(replace(approved, shopify_cancelled=True), POLICY, NOW).actions == ()
    assert decide(approved, Policy(cancellation_sequence="approve_only"), NOW).actions == ()
    assert decide(replace(approved, saga=SagaState()), POLICY, NOW).actions == ()
    # a fulfillment order alive after the approval: a person looks, nothing is refunded
    alive = decide(
        replace(
            approved,
            link_problem=None,
            fulfillment=Fulfillment("shipbob", "9001", "Processing", FulfillmentState.NOT_STARTED),
        ),
        POLICY,
        NOW,
    )
    assert alive.rule == "C1" and kinds(alive) == [ESCALATE]
    assert alive.actions[0].params["reason_code"] == "approved_fulfillment_open"
    # Shopify refused the cancel: escalated once, not sent again every run
    refused = decide(
        replace(approved, saga=SagaState(approval_sent=True, shopify_cancel_refused="Cannot cancel")), POLICY, NOW
    )
    assert kinds(refused) == [ESCALATE] and refused.actions[0].params["reason_code"] == "shopify_cancel_refused"
    # an approval sent but not granted on TikTok (the request closed otherwise) finishes nothing
    closed = replace(approved, cancellation=replace(PENDING, status="CANCELLATION_REQUEST_CANCEL"))
    assert decide(closed, POLICY, NOW).actions == ()


def test_c1_resumes_after_verified_cancel_without_second_fulfiller_cancel():
    f = Fulfillment("amazon_mcf", "1001", "Cancelled", FulfillmentState.CANCELLED)
    d = decide(
        order(
            cancellation=PENDING,
            fulfillment=f,
            saga=SagaState(fulfiller_cancel_requested_at=NOW - timedelta(minutes=5)),
        ),
        POLICY,
        NOW,
    )
    assert d.rule == "C1" and kinds(d) == [APPROVE_CANCELLATION, CANCEL_SHOPIFY]
    done = decide(order(cancellation=PENDING, fulfillment=f, shopify_cancelled=True), POLICY, NOW)
    assert kinds(done) == [APPROVE_CANCELLATION]


def test_c2_no_fulfillment_order():
    d = decide(
        order(
            cancellation=PENDING,
            fulfillment=None,
            link_problem=LinkProblem.NO_FULFILLMENT_ORDER,
            fulfillment_keys=("6100000001", "#1001", "1001"),
        ),
        POLICY,
        NOW,
    )
    assert d.rule == "C2" and kinds(d) == [APPROVE_CANCELLATION, CANCEL_SHOPIFY]
    # the approval asks the fulfillers by these ids, for orders received since it was placed
    assert d.actions[0].params["fulfillment_keys"] == ["6100000001", "#1001", "1001"]
    assert d.actions[0].params["placed_at"] == (NOW - timedelta(days=1)).isoformat()


def test_every_refund_asks_the_fulfillers_first_whatever_the_rule():
    """The first write's request is fixed by the first decision that recorded it (a C1 saga's, say),
    so the check cannot depend on the rule that happens to perform it."""
    f = Fulfillment("amazon_mcf", "1001", "Cancelled", FulfillmentState.CANCELLED)
    d = decide(order(cancellation=PENDING, fulfillment=f, fulfillment_keys=("6100000001", "1001")), POLICY, NOW)
    assert d.rule == "C1" and d.actions[0].params["fulfillment_keys"] == ["6100000001", "1001"]


def test_no_refund_when_the_listings_did_not_reach_back_to_the_order():
    # nothing found, but the order predates what the fulfillers' listings cover: not proven absent
    not_listed = order(cancellation=PENDING, fulfillment=None, link_problem=LinkProblem.FULFILLMENT_NOT_LISTED)
    d = decide(not_listed, POLICY, NOW)
    assert d.rule == "E1" and kinds(d) == [ESCALATE] and "not refunded" in d.reason
    assert d.actions[0].params["reason_code"] == "fulfillment_not_listed"
    d = decide(replace(not_listed, cancellation=None), POLICY, NOW)
    assert d.rule == "E1" and d.actions[0].params["reason_code"] == "fulfillment_not_listed"


US_REASONS = (
    ("ecom_reverse_reject_cancel_reason_product_packed", "Product has been packed"),
    ("ecom_reverse_reject_refund_request_package_delivery_multiple_boxes", "Multiple boxes"),
    ("seller_reject_apply_unable_to_change_address", "Unable to change address"),
)
UK_REASONS = (
    ("seller_reject_apply_product_has_been_packed", "Product has been packed"),
    ("seller_reject_apply_you_have_reached_an_agreement_with_the_buyer", "Agreement"),
)


@pytest.mark.parametrize(
    "fulfillment",
    [
        shipped(UPS),
        Fulfillment("shipbob", "9000001", "Processing", FulfillmentState.IN_PROGRESS, shipment_started=True),
    ],
)
def test_c3_rejects_after_packing_and_posts_known_tracking(fulfillment):
    d = decide(order(cancellation=PENDING, fulfillment=fulfillment, reject_reasons=US_REASONS), POLICY, NOW)
    assert d.rule == "C3" and kinds(d)[0] == REJECT_CANCELLATION
    assert d.actions[0].params["reject_reason"] == "ecom_reverse_reject_cancel_reason_product_packed"
    # known tracking is posted; otherwise the order (due in 6 h) gets its no-tracking note
    assert kinds(d)[1:] == ([POST_TRACKING] if fulfillment.has_tracking else [ADD_NOTE])


@pytest.mark.parametrize(
    "offered, wanted, expected",
    [
        (US_REASONS, "packed", "ecom_reverse_reject_cancel_reason_product_packed"),
        (UK_REASONS, "packed", "seller_reject_apply_product_has_been_packed"),
        (US_REASONS, "multiple_boxes", "ecom_reverse_reject_refund_request_package_delivery_multiple_boxes"),
        (US_REASONS, "address_unchangeable", "seller_reject_apply_unable_to_change_address"),
        (UK_REASONS, "agreed_with_buyer", "seller_reject_apply_you_have_reached_an_agreement_with_the_buyer"),
        # a code named outright is used when offered
        (US_REASONS, "seller_reject_apply_unable_to_change_address", "seller_reject_apply_unable_to_change_address"),
    ],
)
def test_the_reject_reason_is_picked_by_meaning_from_what_tiktok_offers(offered, wanted, expected):
    d = decide(
        order(cancellation=PENDING, fulfillment=shipped(UPS), reject_reasons=offered), Policy(reject_reason=wanted), NOW
    )
    assert d.rule == "C3" and d.actions[0].params["reject_reason"] == expected


@pytest.mark.parametrize(
    "offered, wanted",
    [
        (UK_REASONS, "multiple_boxes"),
        (US_REASONS, "agreed_with_buyer"),
        ((), "packed"),
        (US_REASONS, "seller_reject_apply_product_has_been_packed"),  # the UK code, not offered to a US shop
    ],
)
def test_no_suitable_reason_escalates_instead_of_guessing(offered, wanted):
    d = decide(
        order(cancellation=PENDING, fulfillment=shipped(UPS), reject_reasons=offered), Policy(reject_reason=wanted), NOW
    )
    assert d.rule == "C3" and REJECT_CANCELLATION not in kinds(d)
    escalation = d.actions[-1]
    assert escalation.kind == ESCALATE and escalation.params["reason_code"] == "no_reject_reason"
    assert wanted in escalation.params["detail"]
    assert kinds(d)[:-1] == [POST_TRACKING]  # the known tracking is still posted


def test_c3_waits_for_the_offered_reasons_before_choosing():
    d = decide(order(cancellation=PENDING, fulfillment=shipped(UPS)), POLICY, NOW)
    assert d.rule == "C3" and d.actions[0].params["reject_reason"] is None
    assert needs_reject_reasons(d) is d.actions[0]
    assert (
        needs_reject_reasons(
            decide(order(cancellation=PENDING, fulfillment=shipped(UPS), reject_reasons=US_REASONS), POLICY, NOW)
        )
        is None
    )


def test_c3_policy_escalate_instead():
    d = decide(order(cancellation=PENDING, fulfillment=shipped(UPS)), Policy(c3_action="escalate"), NOW)
    assert d.rule == "C3" and kinds(d) == [ESCALATE]


def test_c4_unverified_cancel_escalates_after_timeout():
    asked = SagaState(fulfiller_cancel_requested_at=NOW - timedelta(minutes=61))
    d = decide(order(cancellation=PENDING, saga=asked), POLICY, NOW)
    assert d.rule == "C4" and kinds(d) == [ESCALATE]
    waiting = decide(
        order(cancellation=PENDING, saga=replace(asked, fulfiller_cancel_requested_at=NOW - timedelta(minutes=10))),
        POLICY,
        NOW,
    )
    assert waiting.rule == "C1" and kinds(waiting)[0] == VERIFY_FULFILLMENT_CANCEL
    assert CANCEL_FULFILLMENT not in kinds(waiting)
    moved_on = decide(order(cancellation=PENDING, saga=asked, fulfillment=shipped(UPS)), POLICY, NOW)
    assert moved_on.rule == "C4" and kinds(moved_on) == [ESCALATE]


def test_out_of_scope_and_settled_orders_do_nothing():
    assert decide(order(fulfillment_type="FULFILLMENT_BY_TIKTOK", fulfillment=shipped(UPS)), POLICY, NOW).actions == ()
    assert decide(order(status="CANCELLED", fulfillment=shipped(UPS)), POLICY, NOW).actions == ()
    assert decide(order(status="IN_TRANSIT", tracking_number="1Z1"), POLICY, NOW).actions == ()
    assert decide(order(tracking_number="1Z1", fulfillment=shipped(UPS)), POLICY, NOW).actions == ()


def test_policy_validation_names_the_setting():
    with pytest.raises(PolicyError, match="policy.c3_action: 'ignore'"):
        policy_from_dict({"c3_action": "ignore"})
    with pytest.raises(PolicyError, match="unknown setting"):
        policy_from_dict({"horizon": 5})
    with pytest.raises(PolicyError, match="policy.horizon_hours"):
        policy_from_dict({"horizon_hours": -1})
    assert policy_from_dict({"horizon_hours": 12}).version != Policy().version


def test_the_reject_reason_is_a_meaning_or_a_code():
    assert Policy().reject_reason == "packed"
    assert (
        policy_from_dict({"reject_reason": "ecom_reverse_reject_cancel_reason_product_packed"}).reject_reason
        == "ecom_reverse_reject_cancel_reason_product_packed"
    )
    for bad in ("Product has been packed", "", 3, "x", "PACKED"):
        with pytest.raises(PolicyError) as refused:
            policy_from_dict({"reject_reason": bad})
        assert str(refused.value) == (
            f"policy.reject_reason: {bad!r} is neither a meaning (packed, multiple_boxes, "
            "address_unchangeable, agreed_with_buyer) nor a TikTok reason code "
            "(lower case letters, digits and _)"
        )
    with pytest.raises(
        PolicyError,
        match="policy.cancellation_sequence: 'refund_first' is not one of "
        "approve_then_shopify, shopify_then_approve, approve_only",
    ):
        policy_from_dict({"cancellation_sequence": "refund_first"})
    with pytest.raises(PolicyError, match="policy.usps_tracking: 'maybe' is not one of escalate, post"):
        policy_from_dict({"usps_tracking": "maybe"})
    with pytest.raises(PolicyError, match="policy.mcf_warehouse_ids: expected a list of TikTok warehouse ids"):
        policy_from_dict({"mcf_warehouse_ids": "7202"})
    with pytest.raises(PolicyError, match="policy.warehouse_refusal_limit: expected a whole number from 2 to 100"):
        policy_from_dict({"warehouse_refusal_limit": 1})
    with pytest.raises(PolicyError, match="policy.post_aftn: expected true or false"):
        policy_from_dict({"post_aftn": "yes"})
    assert policy_from_dict({"mcf_warehouse_ids": ["7202"]}).mcf_warehouse_ids == ("7202",)


# a value of any JSON type; no line break in text (Python's jsonschema lets "$" match before a final
# one, and policy_from_dict refuses such a reason code itself)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-10, 20_000)
    | st.floats(-1e4, 2e4, allow_nan=False)
    | st.text(st.characters(blacklist_characters="\n"), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=5,
)
# among the arbitrary values: each setting's default, a few others it accepts, its bounds
fitting = st.sampled_from(
    [
        *(value for value in Policy().__dict__.values()),
        "escalate",
        "shopify_then_approve",
        "store_credit",
        "ecom_reverse_reject_cancel_reason_product_packed",
        [24, 1.5],
        [],
        {"LOCAL-COURIER-7": "USPS"},
        {"LOCAL-COURIER-7": ""},
        # the bounds and just past them
        *(0, -0.5, 720, 720.5, 10080, 10080.5, [720], [720.5], [0], [4, 4.0]),
    ]
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([*POLICY_SCHEMA["properties"], "horizon"]), json_values | fitting)
def test_the_policy_schema_accepts_what_the_policy_accepts(name, value):
    """The trigger form and the API check the policy param against POLICY_SCHEMA, the run against
    policy_from_dict: a value is good for both or for neither."""
    import jsonschema

    value = list(value) if isinstance(value, tuple) else value
    try:
        policy_from_dict({name: value})
        accepted = True
    except PolicyError:
        accepted = False
    assert jsonschema.Draft202012Validator(POLICY_SCHEMA).is_valid({name: value}) == accepted, (name, value)


def test_the_policy_schema_names_every_setting():
    assert set(POLICY_SCHEMA["properties"]) == set(Policy.__dataclass_fields__)


# Safety invariants as properties over generated joined rows ------------------------------------

packages = st.builds(
    Package,
    carrier=st.sampled_from(["UPS", "USPS", "LOCAL-COURIER-7"]),
    tracking_number=st.sampled_from(["", "1ZX", "9400Y"]),
    provider_id=st.sampled_from([None, "p1"]),
    line_item_ids=st.sampled_from([(), ("577a",), ("577b",)]),
)
fulfillments = st.one_of(
    st.none(),
    st.builds(
        Fulfillment,
        fulfiller=st.sampled_from(["amazon_mcf", "shipbob"]),
        order_id=st.just("F1"),
        status=st.sampled_from(["Planning", "Processing", "Complete", "Cancelled", "Unfulfillable"]),
        state=st.sampled_from(list(FulfillmentState)),
        packages=st.lists(packages, max_size=3).map(tuple),
        shipment_started=st.booleans(),
        aftn=st.sampled_from(["", "AFT000000000001"]),
        aftn_provider_id=st.sampled_from([None, "p-amazon"]),
    ),
)
cancellations = st.one_of(
    st.none(),
    st.builds(
        Cancellation,
        cancel_id=st.just("4035"),
        deadline=st.just(NOW),
        status=st.sampled_from(
            [
                "CANCELLATION_REQUEST_PENDING",
                "CANCELLATION_REQUEST_SUCCESS",
                "CANCELLATION_REQUEST_CANCEL",
                "CANCELLATION_REQUEST_COMPLETE",
            ]
        ),
    ),
)
joined = st.builds(
    JoinedOrder,
    tiktok_order_id=st.just("576x"),
    status=st.sampled_from(
        ["AWAITING_SHIPMENT", "PARTIALLY_SHIPPING", "AWAITING_COLLECTION", "IN_TRANSIT", "CANCELLED"]
    ),
    fulfillment_type=st.sampled_from(["FULFILLMENT_BY_SELLER", "FULFILLMENT_BY_TIKTOK"]),
    create_time=st.just(NOW - timedelta(days=2)),
    rts_sla_time=st.integers(-48, 96).map(lambda h: NOW + timedelta(hours=h)),
    shipping_due_time=st.none(),
    tracking_number=st.sampled_from(["", "1ZOLD"]),
    line_item_ids=st.just(("577a", "577b")),
    cancellation=cancellations,
    shopify_order_ids=st.sampled_from([(), ("61",), ("61", "62")]),
    shopify_cancelled=st.booleans(),
    link_problem=st.sampled_from([None, *LinkProblem]),
    fulfillment=fulfillments,
    saga=st.builds(
        SagaState,
        fulfiller_cancel_requested_at=st.sampled_from([None, NOW - timedelta(minutes=5), NOW - timedelta(hours=5)]),
        shopify_cancelled=st.booleans(),
        approval_sent=st.booleans(),
        shopify_cancel_refused=st.sampled_from([None, "refused"]),
    ),
    reject_reasons=st.sampled_from([None, (), US_REASONS, UK_REASONS]),
    fulfillment_keys=st.sampled_from([(), ("61", "#1001")]),
    shipping_type=st.sampled_from(["SELLER", "TIKTOK"]),
    warehouse_id=st.sampled_from(["", "7201", "7202"]),
    warehouse_refusals=st.sampled_from([0, 3, 4]),
)
policies = st.builds(
    Policy,
    c3_action=st.sampled_from(["reject", "escalate"]),
    horizon_hours=st.sampled_from([0.0, 24.0, 72.0]),
    reject_reason=st.sampled_from(["packed", "multiple_boxes", "agreed_with_buyer"]),
    cancellation_sequence=st.sampled_from(["approve_then_shopify", "shopify_then_approve", "approve_only"]),
    post_aftn=st.booleans(),
    usps_tracking=st.sampled_from(["escalate", "post"]),
    mcf_warehouse_ids=st.sampled_from([(), ("7202",)]),
)


@settings(max_examples=3000, deadline=None)
@given(joined, policies)
def test_safety_invariants(row, policy):
    d = decide(row, policy, NOW)
    ks = kinds(d)
    f = row.fulfillment
    # never cancel a fulfillment order that has a shipped package or a tracking number
    if CANCEL_FULFILLMENT in ks:
        assert f is not None and not f.packages and not f.has_tracking and not f.shipment_started
        assert f.state == FulfillmentState.NOT_STARTED and row.saga.fulfiller_cancel_requested_at is None
    # never approve or refund unless the fulfiller cancel is verified (or there is no fulfillment order)
    # (a Shopify cancel alone: the rest of a request approved on TikTok, which TikTok shows granted)
    finishing = (
        ks == [CANCEL_SHOPIFY]
        and row.saga.approval_sent
        and row.cancellation is not None
        and row.cancellation.status in ("CANCELLATION_REQUEST_SUCCESS", "CANCELLATION_REQUEST_COMPLETE")
    )
    for kind in (APPROVE_CANCELLATION, CANCEL_SHOPIFY):
        if kind in ks:
            verified_in_plan = VERIFY_FULFILLMENT_CANCEL in ks and ks.index(VERIFY_FULFILLMENT_CANCEL) < ks.index(kind)
            assert f is None or f.state == FulfillmentState.CANCELLED or verified_in_plan
            assert finishing or (row.cancellation is not None and row.cancellation.pending)
            if row.fulfillment_keys:  # every write asks the fulfillers first
                assert next(a for a in d.actions if a.kind == kind).params["fulfillment_keys"]
    # the last writes come in the policy's sequence; "approve_only" leaves Shopify to the channel
    if policy.cancellation_sequence == "approve_only":
        assert CANCEL_SHOPIFY not in ks
    if APPROVE_CANCELLATION in ks and CANCEL_SHOPIFY in ks:
        shopify_first = ks.index(CANCEL_SHOPIFY) < ks.index(APPROVE_CANCELLATION)
        assert shopify_first == (policy.cancellation_sequence == "shopify_then_approve")
    # a rejection names a reason TikTok offered for the request, or waits for them to be read
    for action in d.actions:
        if action.kind == REJECT_CANCELLATION:
            reason = action.params["reject_reason"]
            assert (reason is None) == (row.reject_reasons is None)
            assert reason is None or reason in dict(row.reject_reasons)
    # never post tracking to a cancelled order or one that has tracking, nor with an unmapped carrier;
    # only on the seller's label; the guards before TikTok's one-shot upload hold
    for action in d.actions:
        if action.kind == POST_TRACKING:
            assert row.status != "CANCELLED" and not row.tracking_number
            assert action.params["shipping_provider_id"] and action.params["tracking_number"]
            assert row.shipping_type == "SELLER" and f is not None
            assert (
                row.warehouse_refusals < policy.warehouse_refusal_limit - 1
                or row.warehouse_id not in policy.mcf_warehouse_ids
            )
            assert row.warehouse_id not in policy.mcf_warehouse_ids or f.fulfiller == "amazon_mcf"
            if action.params["source"] == "aftn":  # the early number only before the carrier's, when asked for
                assert policy.post_aftn and not f.has_tracking and action.params["tracking_number"] == f.aftn
            elif policy.usps_tracking == "escalate":
                assert "USPS" not in action.params["carrier"]
    # a refund rests only on a fulfillment order proven absent, cancelled or cancelled by orderops
    if row.link_problem == LinkProblem.FULFILLMENT_NOT_LISTED:
        assert set(ks) <= {ESCALATE}
    # an ambiguous join never acts
    if row.link_problem in (LinkProblem.AMBIGUOUS_SHOPIFY_MATCH, LinkProblem.AMBIGUOUS_FULFILLMENT_ORDER):
        assert set(ks) <= {ESCALATE}
    if row.fulfillment_type != "FULFILLMENT_BY_SELLER":
        assert ks == []
    # each effect has its own key, and deciding again gives the same plan (at-most-once via the ledger)
    keys = [a.idempotency_key for a in d.actions]
    assert len(keys) == len(set(keys))
    assert decide(row, policy, NOW) == d
    assert d.rule in {"-", "T1", "T2", "T3", "N1", "E1", "C1", "C2", "C3", "C4"}
