"""Fulfiller carrier -> TikTok shipping provider id, from the provider list TikTok returns.

TikTok lets tracking be corrected at most once, so a carrier is mapped only by its name
(normalised), a known synonym, or an explicit override; anything else is unmapped and the
order is escalated (rule T2), never guessed.
"""

from __future__ import annotations

import re
from typing import Any

# Normalised carrier codes the fulfillers use -> normalised TikTok provider names they are.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "amzlus": ("amazonlogistics", "amazonshipping"),
    "amznus": ("amazonlogistics", "amazonshipping"),  # MCF's code for Amazon's own delivery
    "amzn": ("amazonlogistics", "amazonshipping"),
    "amzl": ("amazonlogistics", "amazonshipping"),
    "amazon": ("amazonlogistics", "amazonshipping"),
    "amazonshipping": ("amazonshipping", "amazonlogistics"),
    # Amazon's early tracking number: TikTok names the provider for MCF orders "Amazon Shipping + Amazon
    # MCF" in Seller Center; which one the API takes is UNCERTAIN (docs/platform-choices.md)
    "aftn": ("amazonshippingamazonmcf", "amazonshipping", "amazonlogistics"),
    "fedexground": ("fedex",),
    "fedexhomedelivery": ("fedex",),
    "fedexsmartpost": ("fedex",),
    "upsmailinnovations": ("upsmailinnovations", "ups"),
    "dhlexpress": ("dhlexpress", "dhl"),
    "dhlecommerce": ("dhlecommerce", "dhlecommercesolutions"),
    "dhlecs": ("dhlecommerce", "dhlecommercesolutions"),
    "uspsfirstclass": ("usps",),
    "uspspriority": ("usps",),
}


def normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def carrier_group(name: str | None) -> str:
    """One name per carrier, for counting by carrier: normalised, and a known code or service as the
    TikTok provider it is mapped to first (`FEDEX`, `FedEx` and `FedEx Ground` are all `fedex`);
    "" when there is none."""
    key = normalise(name or "")
    return SYNONYMS.get(key, (key,))[0]


class CarrierMap:
    def __init__(self, providers: list[dict[str, Any]], overrides: dict[str, str] | None = None):
        self.by_name: dict[str, str] = {}
        self.ids = set()
        for provider in providers:
            self.by_name.setdefault(normalise(provider["name"]), str(provider["id"]))
            self.ids.add(str(provider["id"]))
        self.overrides = {normalise(k): v for k, v in (overrides or {}).items()}

    def provider_id(self, carrier: str) -> str | None:
        key = normalise(carrier or "")
        if not key:
            return None
        if key in self.overrides:
            target = self.overrides[key]
            return target if target in self.ids else self.by_name.get(normalise(target))
        for candidate in (key, *SYNONYMS.get(key, ())):
            if candidate in self.by_name:
                return self.by_name[candidate]
        return None
