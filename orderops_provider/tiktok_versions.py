"""The TikTok Shop API version each operation is called at (the version is a path segment).

TikTok versions each endpoint on its own and retires old versions, so the client follows the
version the Partner Center documents now for each endpoint it uses. A connection may pin another
version the platform serves, per operation (extra `api_versions`): an older one for a shop whose
app has not been moved on yet, or an opt-in newer one (OPT_IN); only versions whose request and
answer orderops knows are allowed. See docs/api-versions.md.
Kept apart from the client so that lineage can name the endpoints without loading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# operation -> (versions orderops speaks, oldest first; the last is the default unless OPT_IN says otherwise)
VERSIONS: dict[str, tuple[str, ...]] = {
    "shops": ("202309",),
    "search_orders": ("202309",),
    "get_orders": ("202309", "202507"),
    "search_cancellations": ("202309", "202602"),
    "warehouses": ("202309",),
    "shipping_providers": ("202309",),
    "mark_package_shipped": ("202309", "202610"),  # 202610: shipping_info_list[] and order_line_list[]
    "approve_cancellation": ("202309",),
    "reject_cancellation": ("202309",),
    "reject_reasons": ("202309",),
}
# Newer versions used only when a connection pins them. Mark Package As Shipped 202610 appears in one
# unofficial generated client only (the Partner Center documents 202309), and its bundle lines need a
# `sub_item_id` orderops never sends.
OPT_IN: dict[str, str] = {"mark_package_shipped": "202610"}
# operation -> the version used unless a connection pins another
CURRENT: dict[str, str] = {
    operation: [v for v in versions if OPT_IN.get(operation) != v][-1] for operation, versions in VERSIONS.items()
}
# operation -> its path, `{v}` standing for the version
PATHS: dict[str, str] = {
    "shops": "/authorization/{v}/shops",
    "search_orders": "/order/{v}/orders/search",
    "get_orders": "/order/{v}/orders",
    "search_cancellations": "/return_refund/{v}/cancellations/search",
    "warehouses": "/logistics/{v}/warehouses",
    "shipping_providers": "/logistics/{v}/delivery_options/{delivery_option_id}/shipping_providers",
    "mark_package_shipped": "/fulfillment/{v}/orders/{order_id}/packages",
    "approve_cancellation": "/return_refund/{v}/cancellations/{cancel_id}/approve",
    "reject_cancellation": "/return_refund/{v}/cancellations/{cancel_id}/reject",
    "reject_reasons": "/return_refund/{v}/reject_reasons",
}


def path(operation: str, version: str | None = None, **ids: str) -> str:
    """The operation's path at `version` (default: the current one), with `ids` filled in (else left as
    `{name}` templates)."""
    template = PATHS[operation].replace("{v}", version or CURRENT[operation])
    return template.format(**ids) if ids else template


def resolve(pinned: Mapping[str, Any] | None) -> dict[str, str]:
    """Every operation's version: the current one unless `pinned` (operation -> version) says otherwise."""
    if pinned is None:
        return dict(CURRENT)
    if not isinstance(pinned, Mapping):
        raise ValueError(f"api_versions: expected an object of operation -> version, got {type(pinned).__name__}")
    chosen = dict(CURRENT)
    for operation, version in pinned.items():
        if operation not in VERSIONS:
            raise ValueError(f"api_versions: unknown operation {operation!r} (known: {', '.join(VERSIONS)})")
        if str(version) not in VERSIONS[operation]:
            raise ValueError(
                f"api_versions.{operation}: version {version!r} is not one orderops speaks "
                f"(expected one of {', '.join(VERSIONS[operation])})"
            )
        chosen[operation] = str(version)
    return chosen
