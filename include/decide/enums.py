"""Status vocabularies of the four platforms, as their APIs spell them."""

from functools import cache

TIKTOK_ORDER_STATUSES = (
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
)
# orders waiting for the seller's tracking: the ones orderops posts to, notes and watches
TIKTOK_SHIPPABLE_STATUSES = ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING")
TIKTOK_CANCEL_STATUSES = (
    "CANCELLATION_REQUEST_PENDING",
    "CANCELLATION_REQUEST_SUCCESS",
    "CANCELLATION_REQUEST_CANCEL",
    "CANCELLATION_REQUEST_COMPLETE",
)
FULFILLMENT_TYPES = ("FULFILLMENT_BY_SELLER", "FULFILLMENT_BY_TIKTOK")
SHIPPING_TYPES = ("SELLER", "TIKTOK")  # who prints the label: the seller, or TikTok
AMAZON_ORDER_STATUSES = (
    "New",
    "Received",
    "Planning",
    "Processing",
    "Cancelled",
    "Complete",
    "CompletePartialled",
    "Unfulfillable",
    "Invalid",
)
AMAZON_SHIPMENT_STATUSES = ("PENDING", "SHIPPED", "CANCELLED_BY_FULFILLER", "CANCELLED_BY_SELLER")
SHIPBOB_ORDER_STATUSES = (
    "Processing",
    "Exception",
    "PartiallyFulfilled",
    "Fulfilled",
    "Cancelled",
    "ImportReview",
)
SHIPBOB_SHIPMENT_STATUSES = (
    "None",
    "Processing",
    "Completed",
    "Exception",
    "OnHold",
    "Cancelled",
    "CleanSweeped",
    "LabeledCreated",
    "ImportReview",
)


@cache
def _spellings(vocabulary: tuple[str, ...]) -> dict[str, str]:
    return {known.replace("_", "").lower(): known for known in vocabulary}


def spelled(value: str, vocabulary: tuple[str, ...]) -> str:
    """A platform's status in the vocabulary's spelling, compared without regard to case or
    underscores (a platform or a proxy may send "COMPLETE" or "cancelled"); a value outside the
    vocabulary is returned as sent, for validation to refuse. Called per staged row: one lookup."""
    return _spellings(vocabulary).get(value.replace("_", "").lower(), value)


def status_of(record: object, key: str, vocabulary: tuple[str, ...]) -> str | None:
    """`record[key]` in the vocabulary's spelling, or None when the record has no string there."""
    value = record.get(key) if isinstance(record, dict) else None
    return spelled(value, vocabulary) if isinstance(value, str) else None
