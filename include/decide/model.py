"""The joined view of one TikTok order across platforms, and the decisions made on it.

`join` builds JoinedOrder rows from staged data; `decide` turns each into a Decision. Both are
plain data so the decision function stays pure and property-testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, overload


class FulfillmentState(str, Enum):
    """A fulfiller's order, normalised across Amazon MCF and ShipBob."""

    NOT_STARTED = "not_started"  # received/planning (MCF) or allocated, not picked (ShipBob): cancellable
    IN_PROGRESS = "in_progress"  # picking/packing/labelled (ShipBob) or Processing (MCF): too late to cancel
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"
    FAILED = "failed"  # Unfulfillable / Invalid (MCF), Exception (ShipBob)


@dataclass(frozen=True)
class Package:
    """A package the fulfiller shipped, with its TikTok shipping provider when the carrier maps."""

    carrier: str
    tracking_number: str
    provider_id: str | None = None  # None: the carrier maps to no TikTok provider
    line_item_ids: tuple[str, ...] = ()  # TikTok line items in the package, when known


@dataclass(frozen=True)
class Fulfillment:
    fulfiller: str  # amazon_mcf | shipbob
    order_id: str  # seller_fulfillment_order_id or ShipBob order id
    status: str  # the fulfiller's own status
    state: FulfillmentState
    packages: tuple[Package, ...] = ()
    # any shipment that has started moving (picked/packed/labelled/shipped), even without tracking
    shipment_started: bool = False
    # Amazon's early tracking number (AFTN) on the order's package, "" when none, and the TikTok
    # provider it goes under (None: none maps)
    aftn: str = ""
    aftn_provider_id: str | None = None

    @property
    def has_tracking(self) -> bool:
        return any(p.tracking_number for p in self.packages)

    @property
    def cancellable(self) -> bool:
        """MCF New/Received/Planning with no shipment; ShipBob nothing picked, packed or shipped
        (docs/architecture.md §3)."""
        return self.state == FulfillmentState.NOT_STARTED and not self.packages and not self.shipment_started


@dataclass(frozen=True)
class Cancellation:
    cancel_id: str
    status: str
    deadline: datetime | None

    @property
    def pending(self) -> bool:
        return self.status == "CANCELLATION_REQUEST_PENDING"


@dataclass(frozen=True)
class SagaState:
    """What earlier runs did on this order's cancellation saga (from the action ledger)."""

    fulfiller_cancel_requested_at: datetime | None = None
    shopify_cancelled: bool = False
    approval_sent: bool = False  # orderops asked TikTok to approve the buyer's request
    shopify_cancel_refused: str | None = None  # what Shopify answered when it refused the cancel


class LinkProblem(str, Enum):
    NO_SHOPIFY_MATCH = "no_shopify_match"
    AMBIGUOUS_SHOPIFY_MATCH = "ambiguous_shopify_match"
    NO_FULFILLMENT_ORDER = "no_fulfillment_order"
    # none found, but the order predates what the fulfillers' listings reach: absence is not proven
    FULFILLMENT_NOT_LISTED = "fulfillment_not_listed"
    AMBIGUOUS_FULFILLMENT_ORDER = "ambiguous_fulfillment_order"


@dataclass(frozen=True)
class JoinedOrder:
    tiktok_order_id: str
    status: str
    fulfillment_type: str
    create_time: datetime
    rts_sla_time: datetime
    shipping_due_time: datetime | None
    tracking_number: str  # on TikTok; "" when none
    line_item_ids: tuple[str, ...]
    cancellation: Cancellation | None = None
    shopify_order_ids: tuple[str, ...] = ()
    shopify_cancelled: bool = False
    match_rule: str | None = None  # how the Shopify order was found (e.g. custom_attribute:tiktok order id)
    link_problem: LinkProblem | None = None
    fulfillment: Fulfillment | None = None
    # the ids a fulfillment order of the Shopify order would be filed under (one Shopify match)
    fulfillment_keys: tuple[str, ...] = ()
    saga: SagaState = field(default_factory=SagaState)
    shipping_type: str = "SELLER"  # TIKTOK: shipped on TikTok's label, whose scan brings the tracking
    # (code, text) of the reasons TikTok offers to reject the pending request; None: not read
    reject_reasons: tuple[tuple[str, str], ...] | None = None
    warehouse_id: str = ""  # the TikTok warehouse the order ships from
    # TikTok's refusals of tracking for orders of this order's warehouse, as the ledger counts them
    warehouse_refusals: int = 0

    @property
    def shopify_order_id(self) -> str | None:
        return self.shopify_order_ids[0] if len(self.shopify_order_ids) == 1 else None


# Action kinds (the saga's order of its own is the policy's cancellation_sequence)
POST_TRACKING = "post_tracking"
ADD_NOTE = "add_note"
CANCEL_FULFILLMENT = "cancel_fulfillment"
VERIFY_FULFILLMENT_CANCEL = "verify_fulfillment_cancel"
CANCEL_SHOPIFY = "cancel_shopify_order"
APPROVE_CANCELLATION = "approve_cancellation"
REJECT_CANCELLATION = "reject_cancellation"
ESCALATE = "escalate"


@dataclass(frozen=True)
class Action:
    kind: str
    target: str  # platform:object the action writes to
    params: dict[str, Any]
    idempotency_key: str


@dataclass(frozen=True)
class Decision:
    tiktok_order_id: str
    rule: str  # T1 T2 N1 E1 C1 C2 C3 C4, or "-" when nothing is to be done
    reason: str
    actions: tuple[Action, ...] = ()


# a moment stays a moment and None stays None: callers keep the type they hand in
@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: None) -> None: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...
def as_utc(value: datetime | None) -> datetime | None:
    """A moment in UTC; a naive one was written in UTC (SQLite hands timestamps back naive)."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
