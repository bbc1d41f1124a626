"""Decision policy: the knobs of docs/architecture.md §3, validated, with a version that decisions record."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

C3_ACTIONS = ("reject", "escalate")
# What a rejection says, by meaning: TikTok's reason codes differ per market and change over time
# (the US "packed" is ecom_reverse_reject_cancel_reason_product_packed, the UK/ID one
# seller_reject_apply_product_has_been_packed), so the run reads the reasons TikTok offers for each
# request and takes the first whose code carries one of the meaning's words.
REJECT_MEANINGS: dict[str, tuple[str, ...]] = {
    "packed": ("packed",),
    "multiple_boxes": ("multiple_boxes",),
    "address_unchangeable": ("change_address",),
    "agreed_with_buyer": ("agreement_with_the_buyer",),
}
# a reason code named outright, used only when TikTok offers it for the request
_REASON_CODE = re.compile(r"[a-z][a-z0-9_]{2,127}")
REFUND_METHODS = ("original_payment", "store_credit", "none")
# The order of a buyer cancellation's last writes. A Shopify cancel of a TikTok-channel order may be
# copied to TikTok by a connector as a *seller* cancellation (counted against the shop, and closing
# the buyer's request), so the default approves on TikTok first; "approve_only" leaves the Shopify
# order to the sales channel.
CANCELLATION_SEQUENCES = ("approve_then_shopify", "shopify_then_approve", "approve_only")
# USPS tracking on an order shipped on the seller's label: since January 2026 TikTok wants USPS labels
# for its orders bought through TikTok Shipping, and others fail its verification
USPS_TRACKING = ("escalate", "post")


class PolicyError(ValueError):
    """A policy setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Policy:
    horizon_hours: float = 24.0  # "near SLA": rts_sla_time - now <= horizon
    c3_action: str = "reject"  # buyer cancel after packing: reject the request, or escalate
    reject_reason: str = "packed"  # a meaning of REJECT_MEANINGS, or a reason code TikTok offers
    cancellation_sequence: str = "approve_then_shopify"
    cancel_verify_timeout_minutes: float = 60.0  # C4 after this long without a verified fulfiller cancel
    no_shopify_grace_minutes: float = 60.0  # the sales channel copies orders within minutes
    no_fulfillment_grace_minutes: float = 360.0  # fulfillment orders are created after the Shopify order
    refund_method: str = "original_payment"
    restock: bool = True
    notify_customer: bool = False
    note_text: str = "Shipping, no tracking ID yet"
    note_tag: str = "orderops-no-tracking-yet"
    # alert a person when an order still has no tracking this many hours before its ship-by time
    at_risk_alert_hours: tuple[float, ...] = (12.0, 4.0)
    # carrier name as the fulfiller writes it (case-insensitive) -> TikTok shipping provider name or id
    carrier_overrides: dict[str, str] = field(default_factory=dict)
    # post Amazon's early tracking number (AFTN) as soon as the MCF order has one; off: wait for the carrier's
    post_aftn: bool = True
    usps_tracking: str = "escalate"
    # TikTok warehouses in Amazon MCF mode: only tracking from Amazon MCF is posted for their orders
    mcf_warehouse_ids: tuple[str, ...] = ()
    # TikTok deactivates an MCF warehouse at this many incorrect tracking uploads: orderops stops
    # posting for a warehouse one short of it
    warehouse_refusal_limit: int = 5

    @property
    def version(self) -> str:
        """A short digest of every setting: decisions made under the same policy share it."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


_MINUTES = {"type": "number", "minimum": 0, "maximum": 10080}
# The policy as JSON Schema: the DAG's `policy` param carries it, so the trigger form and the API refuse
# a bad override before a run exists. policy_from_dict checks the same (and NaN, which the schema lets
# through), naming the setting; tests/unit/test_decide.py keeps the two in agreement.
POLICY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "horizon_hours": {"type": "number", "minimum": 0, "maximum": 720},
        "c3_action": {"enum": list(C3_ACTIONS)},
        "reject_reason": {"type": "string", "pattern": f"^{_REASON_CODE.pattern}$"},
        "cancellation_sequence": {"enum": list(CANCELLATION_SEQUENCES)},
        "cancel_verify_timeout_minutes": _MINUTES,
        "no_shopify_grace_minutes": _MINUTES,
        "no_fulfillment_grace_minutes": _MINUTES,
        "refund_method": {"enum": list(REFUND_METHODS)},
        "restock": {"type": "boolean"},
        "notify_customer": {"type": "boolean"},
        "note_text": {"type": "string", "pattern": "\\S"},
        "note_tag": {"type": "string", "pattern": "\\S"},
        "at_risk_alert_hours": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 720},
        },
        "carrier_overrides": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
        "post_aftn": {"type": "boolean"},
        "usps_tracking": {"enum": list(USPS_TRACKING)},
        "mcf_warehouse_ids": {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+$"}},
        "warehouse_refusal_limit": {"type": "integer", "minimum": 2, "maximum": 100},
    },
}


def policy_from_dict(data: dict[str, Any] | None) -> Policy:
    """Build a Policy from configuration (DAG params, a Variable); reject unknown or bad values."""
    data = dict(data or {})
    known = {f.name: f for f in fields(Policy)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PolicyError(f"policy: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, most in (
        ("horizon_hours", 720),
        ("cancel_verify_timeout_minutes", 10080),
        ("no_shopify_grace_minutes", 10080),
        ("no_fulfillment_grace_minutes", 10080),
    ):
        if name in data:
            value = data[name]
            # NaN fails the range test too
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= most:
                raise PolicyError(f"policy.{name}: expected a number from 0 to {most}, got {value!r}")
            data[name] = float(value)
    if data.get("c3_action", "reject") not in C3_ACTIONS:
        raise PolicyError(f"policy.c3_action: {data['c3_action']!r} is not one of {', '.join(C3_ACTIONS)}")
    if data.get("refund_method", "original_payment") not in REFUND_METHODS:
        raise PolicyError(f"policy.refund_method: {data['refund_method']!r} is not one of {', '.join(REFUND_METHODS)}")
    reason = data.get("reject_reason", Policy.reject_reason)
    if not (isinstance(reason, str) and (reason in REJECT_MEANINGS or _REASON_CODE.fullmatch(reason))):
        raise PolicyError(
            f"policy.reject_reason: {reason!r} is neither a meaning ({', '.join(REJECT_MEANINGS)}) "
            "nor a TikTok reason code (lower case letters, digits and _)"
        )
    if data.get("cancellation_sequence", Policy.cancellation_sequence) not in CANCELLATION_SEQUENCES:
        raise PolicyError(
            f"policy.cancellation_sequence: {data['cancellation_sequence']!r} is not one of "
            f"{', '.join(CANCELLATION_SEQUENCES)}"
        )
    if data.get("usps_tracking", Policy.usps_tracking) not in USPS_TRACKING:
        raise PolicyError(f"policy.usps_tracking: {data['usps_tracking']!r} is not one of {', '.join(USPS_TRACKING)}")
    if "mcf_warehouse_ids" in data:
        ids = data["mcf_warehouse_ids"]
        if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) and re.fullmatch("[0-9]+", i) for i in ids):
            raise PolicyError(
                f"policy.mcf_warehouse_ids: expected a list of TikTok warehouse ids (digits), got {ids!r}"
            )
        data["mcf_warehouse_ids"] = tuple(ids)
    limit = data.get("warehouse_refusal_limit", Policy.warehouse_refusal_limit)
    whole = isinstance(limit, int) or (isinstance(limit, float) and limit.is_integer())
    if isinstance(limit, bool) or not whole or not 2 <= limit <= 100:
        raise PolicyError(f"policy.warehouse_refusal_limit: expected a whole number from 2 to 100, got {limit!r}")
    if "warehouse_refusal_limit" in data:
        data["warehouse_refusal_limit"] = int(limit)
    for name in ("restock", "notify_customer", "post_aftn"):
        if name in data and not isinstance(data[name], bool):
            raise PolicyError(f"policy.{name}: expected true or false, got {data[name]!r}")
    for name in ("note_text", "note_tag"):
        if name in data and (not isinstance(data[name], str) or not data[name].strip()):
            raise PolicyError(f"policy.{name}: expected a non-empty string")
    if "at_risk_alert_hours" in data:
        hours = data["at_risk_alert_hours"]
        if (
            not isinstance(hours, (list, tuple))
            or not all(not isinstance(h, bool) and isinstance(h, (int, float)) and 0 < h <= 720 for h in hours)
            or len(set(hours)) != len(hours)
        ):
            raise PolicyError(
                "policy.at_risk_alert_hours: expected a list of distinct numbers of hours, each above 0 "
                f"and at most 720 ([] turns the alerts off), got {hours!r}"
            )
        data["at_risk_alert_hours"] = tuple(sorted((float(h) for h in hours), reverse=True))
    overrides = data.get("carrier_overrides", {})
    if not isinstance(overrides, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in overrides.items()
    ):
        raise PolicyError("policy.carrier_overrides: expected an object of carrier -> TikTok provider name or id")
    return Policy(**data)


def pick_reject_reason(offered: tuple[tuple[str, str], ...], wanted: str) -> str | None:
    """The reason code to reject with, from the (code, text) pairs TikTok offers for a request: the
    one named outright, else the first carrying a word of the wanted meaning; None when none fits
    (the request is escalated, never rejected with a guess)."""
    codes = [code for code, _text in offered]
    if wanted in codes:
        return wanted
    words = REJECT_MEANINGS.get(wanted, ())
    return next((code for code in codes if any(word in code for word in words)), None)
