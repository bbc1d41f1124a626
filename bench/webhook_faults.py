"""`make simulate EVENTS=on WEBHOOK_FAULTS=stale,replay,cross_shop,old`: the sandbox mixes what
platforms (and whoever captured a delivery) sometimes send into its own webhook stream
(sandbox/webhooks.py says what each fault is and how often it comes), and the simulation's summary
says what the defence made of it:

- `wrong_tracking`: orders whose tracking on TikTok (put there by the seller) is not one the
  fulfiller shows for them, from the sandbox's truth (`tracking_valid` false); must be 0, faults or
  none. `wrong_tracking_orders` names up to 50.
- with events, `events.refused`: what the receiver kept nothing of, by reason (`signature`, `old`,
  `other_shop`, `rate`, `duplicate`, ...: include/events/receiver.py); `events.disagreed`: the bodies
  the platform's own read contradicted, summed over the runs' summaries; `events.faults`: what the
  sandbox sent of each fault, by platform and answer.

Kept apart from bench/simulate.py, which calls `configure` once its receiver is subscribed and
`add_figures` on the summary it built.
"""

from __future__ import annotations

from collections import defaultdict

from sandbox.webhooks import FAULTS, fault_names


def parse(text: str | None) -> tuple[str, ...]:
    """WEBHOOK_FAULTS as given on the command line: a comma list of fault names (empty: none)."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    try:
        return fault_names(names)
    except ValueError:
        unknown = ", ".join(n for n in names if n not in FAULTS)
        raise SystemExit(f"WEBHOOK_FAULTS {text!r}: unknown fault(s) {unknown}; known: {', '.join(FAULTS)}") from None


def configure(admin, faults: tuple[str, ...]) -> None:
    """Ask the sandbox to mix `faults` into its webhook stream (admin API)."""
    admin.post("/webhooks/faults", json={"faults": list(faults)}).raise_for_status()


def wrong_tracking(truth: dict) -> list[str]:
    """Orders whose tracking on TikTok is the seller's and not one the fulfiller shows for them."""
    return [
        o["tiktok_order_id"] for o in truth["orders"] if o["dispatched_by"] == "seller" and o["tracking_valid"] is False
    ]


def disagreed(wh, shop: str) -> int:
    """The event bodies the platforms' reads contradicted, over every run of the shop (their summaries)."""
    import sqlalchemy as sa

    from include.store.warehouse import runs

    with wh.engine.connect() as conn:
        summaries = conn.execute(sa.select(runs.c.summary).where(runs.c.shop == shop)).scalars().all()
    return sum(int(((s or {}).get("events") or {}).get("disagreed") or 0) for s in summaries)


def add_figures(summary: dict, truth: dict, wh, shop: str, admin=None) -> dict:
    """The summary's figures of this module (see its doc), added in place; returns the summary."""
    wrong = wrong_tracking(truth)
    summary["wrong_tracking"] = len(wrong)
    summary["wrong_tracking_orders"] = wrong[:50]
    events = summary.get("events")
    if events is not None:
        events.setdefault("refused", {})
        events["disagreed"] = disagreed(wh, shop)
        if admin is not None:
            faults = admin.get("/webhooks").json()["faults"]
            sent: dict = defaultdict(lambda: defaultdict(dict))
            for entry in faults["sent"]:
                sent[entry["fault"]][entry["platform"]][entry["outcome"]] = entry["count"]
            events["faults"] = {
                "configured": faults["configured"],
                "every": faults["every"],
                "sent": {f: dict(per) for f, per in sent.items()},
            }
    return summary


def render(summary: dict) -> str:
    """The lines the simulation's table gains."""
    lines = [f"orders with tracking on TikTok the fulfiller does not show: {summary.get('wrong_tracking')}"]
    events = summary.get("events")
    if events is not None:
        refused = ", ".join(f"{reason} {n}" for reason, n in sorted(events.get("refused", {}).items())) or "none"
        lines.append(f"deliveries kept nothing of: {refused}; bodies a read contradicted: {events.get('disagreed')}")
    return "\n".join(lines)
