"""Decision policy: the knobs of docs/architecture.md §3, validated, with a version that decisions record."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from include.enums import TIKTOK_CANCEL_REJECT_REASONS

C3_ACTIONS = ("reject", "escalate")
# TikTok refuses a rejection with any other reason: checked here, at the run's first task, not per order
REJECT_REASONS = tuple(name for name, _text in TIKTOK_CANCEL_REJECT_REASONS)
REFUND_METHODS = ("original_payment", "store_credit", "none")


class PolicyError(ValueError):
    """A policy setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Policy:
    horizon_hours: float = 24.0               # "near SLA": rts_sla_time - now <= horizon
    c3_action: str = "reject"                 # buyer cancel after packing: reject the request, or escalate
    reject_reason: str = "seller_reject_apply_product_has_been_packed"
    cancel_verify_timeout_minutes: float = 60.0   # C4 after this long without a verified fulfiller cancel
    no_shopify_grace_minutes: float = 60.0    # the sales channel copies orders within minutes
    no_fulfillment_grace_minutes: float = 360.0   # fulfillment orders are created after the Shopify order
    refund_method: str = "original_payment"
    restock: bool = True
    notify_customer: bool = False
    note_text: str = "Shipping, no tracking ID yet"
    note_tag: str = "orderops-no-tracking-yet"
    # alert a person when an order still has no tracking this many hours before its ship-by time
    at_risk_alert_hours: tuple[float, ...] = (12.0, 4.0)
    # carrier name as the fulfiller writes it (case-insensitive) -> TikTok shipping provider name or id
    carrier_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A short digest of every setting: decisions made under the same policy share it."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def policy_from_dict(data: dict[str, Any] | None) -> Policy:
    """Build a Policy from configuration (DAG params, a Variable); reject unknown or bad values."""
    data = dict(data or {})
    known = {f.name: f for f in fields(Policy)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise PolicyError(f"policy: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    for name, most in (("horizon_hours", 720), ("cancel_verify_timeout_minutes", 10080),
                       ("no_shopify_grace_minutes", 10080), ("no_fulfillment_grace_minutes", 10080)):
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
    if data.get("reject_reason", Policy.reject_reason) not in REJECT_REASONS:
        raise PolicyError(f"policy.reject_reason: {data['reject_reason']!r} is not one of TikTok's reject reasons: "
                          f"{', '.join(REJECT_REASONS)}")
    for name in ("restock", "notify_customer"):
        if name in data and not isinstance(data[name], bool):
            raise PolicyError(f"policy.{name}: expected true or false, got {data[name]!r}")
    for name in ("note_text", "note_tag"):
        if name in data and (not isinstance(data[name], str) or not data[name].strip()):
            raise PolicyError(f"policy.{name}: expected a non-empty string")
    if "at_risk_alert_hours" in data:
        hours = data["at_risk_alert_hours"]
        if not isinstance(hours, (list, tuple)) or not all(
                not isinstance(h, bool) and isinstance(h, (int, float)) and 0 < h <= 720 for h in hours) \
                or len(set(hours)) != len(hours):
            raise PolicyError("policy.at_risk_alert_hours: expected a list of distinct numbers of hours, each above 0 "
                              f"and at most 720 ([] turns the alerts off), got {hours!r}")
        data["at_risk_alert_hours"] = tuple(sorted((float(h) for h in hours), reverse=True))
    overrides = data.get("carrier_overrides", {})
    if not isinstance(overrides, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                  for k, v in overrides.items()):
        raise PolicyError("policy.carrier_overrides: expected an object of carrier -> TikTok provider name or id")
    return Policy(**data)
