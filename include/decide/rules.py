"""The decision rules (README, "Decide") as one pure function: joined order + policy + now -> Decision.

Rule precedence: out of scope first, then a pending buyer cancellation (C1-C4, E1), then
shipping (T1, T2, N1, E1). Every side effect carries an idempotency key derived from the
objects it touches, so re-deciding the same situation never yields a second effect.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from include.decide.enums import TIKTOK_SHIPPABLE_STATUSES
from include.decide.model import (
    ADD_NOTE,
    APPROVE_CANCELLATION,
    CANCEL_FULFILLMENT,
    CANCEL_SHOPIFY,
    ESCALATE,
    POST_TRACKING,
    REJECT_CANCELLATION,
    VERIFY_FULFILLMENT_CANCEL,
    Action,
    Cancellation,
    Decision,
    Fulfillment,
    FulfillmentState,
    JoinedOrder,
    LinkProblem,
    Package,
)
from include.decide.policy import Policy, pick_reject_reason

IN_SCOPE_FULFILLMENT = "FULFILLMENT_BY_SELLER"
# shipping_type of orders shipped on the seller's own label: the only ones TikTok takes tracking for
# (on TikTok's label its carrier scan brings the tracking)
SELLER_LABEL = "SELLER"
# C4's reason code: a fulfiller cancel that did not show in time (decided here, or given up by the saga)
CANCEL_NOT_VERIFIED = "fulfiller_cancel_not_verified"


# What each rule means, for people reading run summaries (the README's rule table in short).
RULES = {
    "-": "nothing to do",
    "T1": "post tracking",
    "T2": "carrier unmapped: escalated",
    "T3": "tracking held by a guard before TikTok's one-shot upload: escalated",
    "N1": "note: shipping, no tracking yet",
    "E1": "escalated",
    "C1": "buyer cancel: cancel at the fulfiller, refund",
    "C2": "buyer cancel, no fulfillment order: refund",
    "C3": "buyer cancel too late: rejected",
    "C4": "fulfiller cancel not verified: escalated",
}

NOT_LISTED = (
    "no fulfillment order found, but the order is older than the fulfillers' listings reach "
    "(a fulfillment order may exist unseen)"
)


def near_sla(order: JoinedOrder, policy: Policy, now: datetime) -> bool:
    return order.rts_sla_time - now <= timedelta(hours=policy.horizon_hours)


def escalation(tiktok_order_id: str, code: str, detail: str, carriers: list[str] | None = None) -> Action:
    """Record the order for a person, once per order and reason code; `carriers` names the unmapped
    carriers of a T2, for the inbox's "map this carrier" form."""
    params = {
        "tiktok_order_id": tiktok_order_id,
        "reason_code": code,
        "detail": detail,
        **({"carriers": carriers} if carriers else {}),
    }
    return Action(ESCALATE, f"ledger:escalation/{tiktok_order_id}", params, f"escalate:{tiktok_order_id}:{code}")


def escalate(
    order: JoinedOrder, rule: str, code: str, detail: str, *extra: Action, carriers: list[str] | None = None
) -> Decision:
    action = escalation(order.tiktok_order_id, code, detail, carriers)
    return Decision(order.tiktok_order_id, rule, f"{code}: {detail}", (*extra, action))


def nothing(order: JoinedOrder, reason: str) -> Decision:
    return Decision(order.tiktok_order_id, "-", reason)


# The carrier name an early tracking number is posted under (carriers.SYNONYMS maps it to a provider)
AFTN_CARRIER = "AFTN"


def tracking_packages(f: Fulfillment, policy: Policy) -> tuple[Package, ...]:
    """What may go to TikTok as the order's tracking: the carrier's packages, else Amazon's early
    tracking number (AFTN) when the policy posts it. TikTok takes tracking once: an AFTN posted is
    never followed by the carrier's number."""
    if f.has_tracking:
        return f.packages
    if policy.post_aftn and f.aftn and f.aftn_provider_id:  # no Amazon provider offered: the carrier's waits
        return (Package(AFTN_CARRIER, f.aftn, f.aftn_provider_id),)
    return ()


def is_usps(carrier: str) -> bool:
    return "usps" in "".join(ch for ch in carrier.lower() if ch.isalnum())


def tracking_decision(order: JoinedOrder, f: Fulfillment, policy: Policy) -> Decision | None:
    """T1 for the tracking to post, or the escalation a guard makes of it (T2 unmapped carrier, T3 a
    TikTok rule the upload would break); None when there is nothing to post yet, or the order ships on
    TikTok's label (its carrier scan brings the tracking)."""
    packages = tracking_packages(f, policy) if order.shipping_type == SELLER_LABEL else ()
    if not packages:
        return None
    missing = unmapped(packages)
    if missing:
        return escalate(
            order,
            "T2",
            "carrier_unmapped",
            f"carrier {', '.join(missing)} maps to no TikTok provider; tracking can be corrected once",
            carriers=missing,
        )
    early = not f.has_tracking
    mcf_warehouse = order.warehouse_id in policy.mcf_warehouse_ids
    if mcf_warehouse and order.warehouse_refusals >= policy.warehouse_refusal_limit - 1:
        return escalate(
            order,
            "T3",
            "warehouse_refusals",
            f"TikTok refused {order.warehouse_refusals} tracking uploads for warehouse {order.warehouse_id}; "
            f"at {policy.warehouse_refusal_limit} TikTok may deactivate it: nothing more is posted for it",
        )
    if mcf_warehouse and f.fulfiller != "amazon_mcf":
        return escalate(
            order,
            "T3",
            "non_mcf_tracking",
            f"warehouse {order.warehouse_id} is an Amazon MCF warehouse, but {f.fulfiller} order {f.order_id} "
            "ships it: TikTok counts non-MCF tracking against the warehouse",
        )
    usps = sorted({p.tracking_number for p in packages if is_usps(p.carrier)})
    if usps and not early and policy.usps_tracking == "escalate":
        return escalate(
            order,
            "T3",
            "usps_label_not_tiktok_shipping",
            f"USPS tracking {', '.join(usps)} from a label not bought through TikTok Shipping: TikTok's "
            "verification refuses it since January 2026",
        )
    if f.state == FulfillmentState.PARTIALLY_SHIPPED and not all(p.line_item_ids for p in packages):
        return escalate(
            order,
            "E1",
            "partial_shipment_items_unknown",
            "part of the order shipped but the shipped line items are unknown",
        )
    what = "Amazon's early tracking number (AFTN)" if early else "tracking"
    return Decision(
        order.tiktok_order_id, "T1", f"{f.fulfiller} shipped with {what}", post_tracking_actions(order, packages)
    )


def hold_shared_tracking(decisions: list[Decision], elsewhere: dict[str, set[str]]) -> list[Decision]:
    """A tracking number TikTok already shows on, or orderops posted or means to post to, another
    order is escalated instead of posted (TikTok takes tracking once; one parcel is one order's).
    `elsewhere`: tracking number -> the orders TikTok or the ledger has it on."""
    wanted: dict[str, set[str]] = {}
    for d in decisions:
        for a in d.actions:
            if a.kind == POST_TRACKING:
                wanted.setdefault(a.params["tracking_number"], set()).add(d.tiktok_order_id)
    out = []
    for d in decisions:
        shared = {
            a.params["tracking_number"]: sorted(
                (elsewhere.get(a.params["tracking_number"], set()) | wanted[a.params["tracking_number"]])
                - {d.tiktok_order_id}
            )
            for a in d.actions
            if a.kind == POST_TRACKING
        }
        shared = {number: others for number, others in shared.items() if others}
        if not shared:
            out.append(d)
            continue
        number, others = next(iter(sorted(shared.items())))
        kept = tuple(a for a in d.actions if a.kind != POST_TRACKING)
        hold = escalation(
            d.tiktok_order_id,
            "tracking_on_other_order",
            f"tracking {number} is also on order {', '.join(others)}: not posted ({d.rule}: {d.reason})",
        )
        # a shipping decision becomes the guard's; a cancellation's (C3) keeps its rule
        rule = "T3" if d.rule == "T1" else d.rule
        out.append(Decision(d.tiktok_order_id, rule, f"tracking_on_other_order: {number}", (*kept, hold)))
    return out


def post_tracking_actions(order: JoinedOrder, chosen_from: tuple[Package, ...]) -> tuple[Action, ...]:
    """One Mark-As-Shipped per package: a single package ships the whole order."""
    packages = list({p.tracking_number: p for p in chosen_from if p.tracking_number}.values())
    whole_order = len(packages) == 1 or not all(p.line_item_ids for p in packages)
    chosen = packages[:1] if whole_order else packages
    return tuple(
        Action(
            POST_TRACKING,
            f"tiktok:order/{order.tiktok_order_id}",
            {
                "tiktok_order_id": order.tiktok_order_id,
                "tracking_number": p.tracking_number,
                "carrier": p.carrier,
                "shipping_provider_id": p.provider_id,
                "order_line_item_ids": [] if whole_order else list(p.line_item_ids),
                "source": "aftn" if p.carrier == AFTN_CARRIER else "carrier",
                "warehouse_id": order.warehouse_id,
            },
            f"post_tracking:{order.tiktok_order_id}:{p.tracking_number}",
        )
        for p in chosen
    )


def unmapped(packages: tuple[Package, ...]) -> list[str]:
    return sorted({p.carrier for p in packages if p.tracking_number and not p.provider_id})


def note_action(order: JoinedOrder, f: Fulfillment, policy: Policy) -> Action:
    """N1: "Shipping, no tracking ID yet", once per order and fulfiller status."""
    return Action(
        ADD_NOTE,
        f"shopify:order/{order.shopify_order_id}",
        {
            "shopify_order_id": order.shopify_order_id,
            "tiktok_order_id": order.tiktok_order_id,
            "note": policy.note_text,
            "tag": policy.note_tag,
            "fulfiller_status": f.status,
        },
        f"add_note:{order.tiktok_order_id}:{f.fulfiller}:{f.status}",
    )


def cancel_fulfillment_key(fulfiller: str, fulfillment_order_id: str) -> str:
    """The one cancel of a fulfillment order (its verify step finds its cancel by it)."""
    return f"cancel_fulfillment:{fulfiller}:{fulfillment_order_id}"


def cancel_fulfillment_action(f: Fulfillment) -> Action:
    return Action(
        CANCEL_FULFILLMENT,
        f"{f.fulfiller}:fulfillment_order/{f.order_id}",
        {"fulfiller": f.fulfiller, "fulfillment_order_id": f.order_id},
        cancel_fulfillment_key(f.fulfiller, f.order_id),
    )


def verify_action(f: Fulfillment, policy: Policy) -> Action:
    return Action(
        VERIFY_FULFILLMENT_CANCEL,
        f"{f.fulfiller}:fulfillment_order/{f.order_id}",
        {
            "fulfiller": f.fulfiller,
            "fulfillment_order_id": f.order_id,
            "timeout_minutes": policy.cancel_verify_timeout_minutes,
        },
        f"verify_fulfillment_cancel:{f.fulfiller}:{f.order_id}",
    )


def shopify_cancel_action(order: JoinedOrder, cancellation: Cancellation, policy: Policy) -> Action:
    """Cancel the Shopify order (refund and restock as the policy says)."""
    return Action(
        CANCEL_SHOPIFY,
        f"shopify:order/{order.shopify_order_id}",
        {
            "shopify_order_id": order.shopify_order_id,
            "reason": "CUSTOMER",
            "refund_method": policy.refund_method,
            "restock": policy.restock,
            "notify_customer": policy.notify_customer,
            "staff_note": f"TikTok buyer cancellation {cancellation.cancel_id}",
        },
        f"cancel_shopify_order:{order.shopify_order_id}",
    )


def refund_actions(order: JoinedOrder, cancellation: Cancellation, policy: Policy) -> tuple[Action, ...]:
    """Approve the buyer's request on TikTok and cancel the Shopify order unless done, in the
    policy's sequence (by default approval first: a connector may copy a Shopify cancel to TikTok
    as a seller cancellation). Each carries the check that no fulfillment order of the order has
    appeared since the listings: the first is the point of no return, and the second may run in a
    later run, after a fulfiller took the order."""
    approve = Action(
        APPROVE_CANCELLATION,
        f"tiktok:cancellation/{cancellation.cancel_id}",
        {"cancel_id": cancellation.cancel_id, "tiktok_order_id": order.tiktok_order_id},
        f"approve_cancellation:{cancellation.cancel_id}",
    )
    shopify_open = not (order.shopify_cancelled or order.saga.shopify_cancelled)
    if policy.cancellation_sequence == "approve_only" or not shopify_open:
        actions = [approve]
    elif policy.cancellation_sequence == "shopify_then_approve":
        actions = [shopify_cancel_action(order, cancellation, policy), approve]
    else:
        actions = [approve, shopify_cancel_action(order, cancellation, policy)]
    return tuple(asking_the_fulfillers(order, action) for action in actions)


def asking_the_fulfillers(order: JoinedOrder, action: Action) -> Action:
    """The action with the order's ids: whatever the listings showed, the fulfillers are asked by
    them right before the write, and an open fulfillment order of this order (placed since) stops it."""
    if not order.fulfillment_keys:
        return action
    return Action(
        action.kind,
        action.target,
        {**action.params, "fulfillment_keys": list(order.fulfillment_keys), "placed_at": order.create_time.isoformat()},
        action.idempotency_key,
    )


def finish_approved(order: JoinedOrder, policy: Policy) -> Decision | None:
    """A request orderops approved (TikTok shows it granted) whose Shopify order is still open (its
    cancel failed, or had not run when the approval closed the request): the Shopify cancel alone,
    asking the fulfillers first, and only while no fulfillment order is alive; otherwise, or when
    Shopify refused the cancel, a person looks at it."""
    cancellation = order.cancellation
    if (
        not order.saga.approval_sent
        or cancellation is None
        or cancellation.status not in ("CANCELLATION_REQUEST_SUCCESS", "CANCELLATION_REQUEST_COMPLETE")
        or policy.cancellation_sequence == "approve_only"
        or order.shopify_cancelled
        or order.saga.shopify_cancelled
        or order.shopify_order_id is None
        or order.link_problem not in (None, LinkProblem.NO_FULFILLMENT_ORDER)
    ):
        return None
    rule = "C2" if order.fulfillment is None else "C1"
    if order.saga.shopify_cancel_refused:
        return escalate(
            order,
            rule,
            "shopify_cancel_refused",
            f"approved on TikTok, but Shopify refused to cancel "
            f"order {order.shopify_order_id}: {order.saga.shopify_cancel_refused}",
        )
    f = order.fulfillment
    if f is not None and f.state != FulfillmentState.CANCELLED:
        return escalate(
            order,
            rule,
            "approved_fulfillment_open",
            f"approved on TikTok, but {f.fulfiller} order {f.order_id} is {f.status}: not refunded",
        )
    return Decision(
        order.tiktok_order_id,
        rule,
        "approved on TikTok; the Shopify order is still open",
        (asking_the_fulfillers(order, shopify_cancel_action(order, cancellation, policy)),),
    )


def reject_action(order: JoinedOrder, cancellation: Cancellation, policy: Policy) -> Action | None:
    """C3's rejection with the reason TikTok offers for the meaning the policy names; None when
    TikTok offers none that fits. Before the offered reasons are read, the reason is None."""
    reason = None if order.reject_reasons is None else pick_reject_reason(order.reject_reasons, policy.reject_reason)
    if order.reject_reasons is not None and reason is None:
        return None
    return Action(
        REJECT_CANCELLATION,
        f"tiktok:cancellation/{cancellation.cancel_id}",
        {"cancel_id": cancellation.cancel_id, "tiktok_order_id": order.tiktok_order_id, "reject_reason": reason},
        f"reject_cancellation:{cancellation.cancel_id}",
    )


def needs_reject_reasons(decision: Decision) -> Action | None:
    """The rejection whose reason waits for the reasons TikTok offers, if any."""
    return next(
        (a for a in decision.actions if a.kind == REJECT_CANCELLATION and a.params["reject_reason"] is None), None
    )


def decide_cancellation(order: JoinedOrder, cancellation: Cancellation, policy: Policy, now: datetime) -> Decision:
    if order.link_problem == LinkProblem.FULFILLMENT_NOT_LISTED:
        return escalate(
            order, "E1", order.link_problem.value, f"buyer cancellation pending; {NOT_LISTED}: not refunded"
        )
    if order.link_problem in (
        LinkProblem.NO_SHOPIFY_MATCH,
        LinkProblem.AMBIGUOUS_SHOPIFY_MATCH,
        LinkProblem.AMBIGUOUS_FULFILLMENT_ORDER,
    ):
        return escalate(
            order, "E1", order.link_problem.value, "buyer cancellation pending but the order cannot be matched safely"
        )
    f = order.fulfillment
    if f is None:
        return Decision(
            order.tiktok_order_id,
            "C2",
            "buyer cancellation pending, no fulfillment order exists",
            refund_actions(order, cancellation, policy),
        )
    if f.state == FulfillmentState.CANCELLED:
        return Decision(
            order.tiktok_order_id,
            "C1",
            f"fulfiller order {f.order_id} shows cancelled: refund and approve",
            refund_actions(order, cancellation, policy),
        )
    if f.state == FulfillmentState.FAILED:
        return escalate(
            order,
            "E1",
            "fulfiller_failed",
            f"buyer cancellation pending and {f.fulfiller} order {f.order_id} is {f.status}",
        )
    requested = order.saga.fulfiller_cancel_requested_at
    if requested is not None:
        if f.cancellable and now - requested < timedelta(minutes=policy.cancel_verify_timeout_minutes):
            return Decision(
                order.tiktok_order_id,
                "C1",
                f"waiting for {f.fulfiller} to show the cancel of {f.order_id}",
                (verify_action(f, policy), *refund_actions(order, cancellation, policy)),
            )
        return escalate(
            order,
            "C4",
            CANCEL_NOT_VERIFIED,
            f"cancel of {f.fulfiller} order {f.order_id} requested at {requested:%Y-%m-%dT%H:%M:%SZ} "
            f"but it is {f.status}; not approved, not refunded",
        )
    if f.cancellable:
        return Decision(
            order.tiktok_order_id,
            "C1",
            f"{f.fulfiller} order {f.order_id} is {f.status} with no shipment",
            (cancel_fulfillment_action(f), verify_action(f, policy), *refund_actions(order, cancellation, policy)),
        )
    # Shipped or picking started: too late to stop the parcel.
    if policy.c3_action == "escalate":
        return escalate(order, "C3", "cancel_after_packing", f"{f.fulfiller} order {f.order_id} is {f.status}")
    reject = reject_action(order, cancellation, policy)
    extra: tuple[Action, ...] = ()
    if order.tracking_number:
        pass
    elif f.has_tracking and order.shipping_type != SELLER_LABEL:
        pass  # TikTok's own label: its carrier scan brings the tracking
    elif (posting := tracking_decision(order, f, policy)) is not None:
        extra = posting.actions
    elif near_sla(order, policy, now):
        extra = (note_action(order, f, policy),)  # the parcel will ship: the order needs its note like any other
    if reject is None:
        offered = ", ".join(code for code, _text in order.reject_reasons or ()) or "none"
        return escalate(
            order,
            "C3",
            "no_reject_reason",
            f"{f.fulfiller} order {f.order_id} is {f.status}, but TikTok offers no reason meaning "
            f"{policy.reject_reason!r} for this request (offered: {offered}); not rejected",
            *extra,
        )
    return Decision(
        order.tiktok_order_id,
        "C3",
        f"{f.fulfiller} order {f.order_id} is {f.status}: reject the cancellation",
        (reject, *extra),
    )


def decide_shipping(order: JoinedOrder, policy: Policy, now: datetime) -> Decision:
    if order.status not in TIKTOK_SHIPPABLE_STATUSES:
        return nothing(order, f"TikTok status {order.status}")
    if order.tracking_number:
        return nothing(order, "tracking already on TikTok")
    age = now - order.create_time
    due = near_sla(order, policy, now)
    if order.link_problem in (LinkProblem.AMBIGUOUS_SHOPIFY_MATCH, LinkProblem.AMBIGUOUS_FULFILLMENT_ORDER):
        return escalate(order, "E1", order.link_problem.value, "several candidate orders; never guessed")
    if order.link_problem == LinkProblem.NO_SHOPIFY_MATCH:
        if due or age > timedelta(minutes=policy.no_shopify_grace_minutes):
            return escalate(order, "E1", "no_shopify_match", "no Shopify order carries this TikTok id")
        return nothing(order, "no Shopify order yet (within grace)")
    if order.link_problem == LinkProblem.FULFILLMENT_NOT_LISTED:
        return escalate(order, "E1", order.link_problem.value, NOT_LISTED)
    f: Fulfillment | None = order.fulfillment
    if f is None:
        if due or age > timedelta(minutes=policy.no_fulfillment_grace_minutes):
            return escalate(order, "E1", "no_fulfillment_order", "no Amazon MCF or ShipBob order for the Shopify order")
        return nothing(order, "no fulfillment order yet (within grace)")
    if f.state in (FulfillmentState.FAILED, FulfillmentState.CANCELLED):
        return escalate(order, "E1", "fulfiller_failed", f"{f.fulfiller} order {f.order_id} is {f.status}")
    if f.has_tracking and order.shipping_type != SELLER_LABEL:
        return nothing(
            order,
            f"{f.fulfiller} shipped; shipping_type {order.shipping_type}, not the seller's label: "
            "TikTok's label brings its own tracking from the carrier scan",
        )
    posting = tracking_decision(order, f, policy)
    if posting is not None:
        return posting
    if due:
        return Decision(
            order.tiktok_order_id,
            "N1",
            f"due {order.rts_sla_time:%Y-%m-%dT%H:%M:%SZ}, {f.fulfiller} order {f.status}, no tracking yet",
            (note_action(order, f, policy),),
        )
    return nothing(order, f"{f.fulfiller} order {f.status}, not yet near SLA")


def decide(order: JoinedOrder, policy: Policy, now: datetime) -> Decision:
    """Zero or more actions for one order, naming the rule (docs/architecture.md §3)."""
    if order.fulfillment_type != IN_SCOPE_FULFILLMENT:
        return nothing(order, f"{order.fulfillment_type}: shipped by TikTok, out of scope")
    if order.cancellation is not None and order.cancellation.pending and order.status != "CANCELLED":
        return decide_cancellation(order, order.cancellation, policy, now)
    return finish_approved(order, policy) or decide_shipping(order, policy, now)
