"""The escalation inbox: a person acknowledges or resolves each escalation, with a note, and for an
unmapped carrier (T2) adds the mapping so that the next run posts the tracking.

An escalation is the `escalate` row of the action ledger; what people did with it is kept in
`escalation_reviews`, newest row last (none: open), so its whole history stays. A carrier mapping
goes to `carrier_mappings` (read by every later run beside the policy's `carrier_overrides`, which
win where both name a carrier) and leaves an audit row of kind `map_carrier` in the ledger, under
the order that asked for it, saying who mapped what to what and when.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from include.act.ledger import SUCCEEDED
from include.decide.carriers import CarrierMap
from include.decide.model import ESCALATE, as_utc
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    carrier_mappings,
    decisions,
    escalation_reviews,
    stg_tiktok_orders,
    tiktok_shipping_providers,
    utcnow,
)

REVIEW_STATES = ("acknowledged", "resolved")
OPEN = "open"
MAP_CARRIER = "map_carrier"
NOTE_MAX = 1000


class InboxError(ValueError):
    """A review that cannot be recorded; the message says why."""


def _escalation(conn, shop: str, key: str) -> dict:
    a = action_ledger.c
    row = (
        conn.execute(sa.select(action_ledger).where(a.shop == shop, a.idempotency_key == key, a.kind == ESCALATE))
        .mappings()
        .first()
    )
    if row is None:
        raise InboxError(f"no escalation {key!r} in shop {shop!r}")
    return dict(row)


def _who_and_note(by: str, note: str | None) -> str | None:
    if not isinstance(by, str) or not by.strip():
        raise InboxError("a review needs the name of who made it")
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise InboxError(f"the note is {len(note)} characters long (at most {NOTE_MAX})")
    return note


def review(
    wh: Warehouse, shop: str, key: str, state: str, by: str, note: str | None = None, now: datetime | None = None
) -> dict:
    """Acknowledge or resolve the escalation `key` of `shop`; returns the review recorded."""
    if state not in REVIEW_STATES:
        raise InboxError(f"state {state!r}: expected one of {', '.join(REVIEW_STATES)}")
    note = _who_and_note(by, note)
    row = dict(
        shop=shop, idempotency_key=key, state=state, note=note, reviewed_by=by.strip(), reviewed_at=now or utcnow()
    )
    with wh.engine.begin() as conn:
        _escalation(conn, shop, key)
        conn.execute(escalation_reviews.insert().values(row))
    return row


def map_carrier(
    wh: Warehouse,
    shop: str,
    key: str,
    carrier: str,
    provider: str,
    by: str,
    note: str | None = None,
    now: datetime | None = None,
) -> dict:
    """Map a carrier a T2 escalation named to a TikTok provider (name or id), resolve the
    escalation and leave the audit row in the ledger; returns the mapping."""
    note = _who_and_note(by, note)
    provider = (provider or "").strip()
    if not provider or len(provider) > 128:
        raise InboxError("the TikTok provider: its name or id, at most 128 characters")
    now = now or utcnow()
    with wh.engine.begin() as conn:
        escalation = _escalation(conn, shop, key)
        named = (escalation["request"] or {}).get("carriers") or []
        if carrier not in named:
            raise InboxError(
                f"escalation {key!r} names no unmapped carrier {carrier!r} (it names {', '.join(named) or 'none'})"
            )
        offered = _providers_offered(conn, shop, escalation["tiktok_order_id"])
        if offered is not None and CarrierMap(offered, {carrier: provider}).provider_id(carrier) is None:
            # a mapping to nothing would resolve the escalation and still post nothing
            raise InboxError(
                f"TikTok offers no provider {provider!r} for this order's delivery option "
                f"(it offers {', '.join(sorted(p['name'] for p in offered))})"
            )
        mapping = dict(shop=shop, carrier=carrier, provider=provider, mapped_by=by.strip(), mapped_at=now)
        wh.upsert(carrier_mappings, [mapping], conn=conn)
        conn.execute(
            action_ledger.insert().values(
                shop=shop,
                idempotency_key=f"{MAP_CARRIER}:{escalation['tiktok_order_id']}:{carrier}:{now.isoformat()}",
                kind=MAP_CARRIER,
                target=f"warehouse:carrier_mappings/{carrier}",
                tiktok_order_id=escalation["tiktok_order_id"],
                rule=escalation["rule"],
                decision_run_id=escalation["decision_run_id"],
                request={"carrier": carrier, "provider": provider, "by": by.strip(), "note": note, "escalation": key},
                state=SUCCEEDED,
                detail=f"{carrier} mapped to {provider} by {by.strip()}",
                acted_at=now,
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            escalation_reviews.insert().values(
                shop=shop,
                idempotency_key=key,
                state="resolved",
                reviewed_by=by.strip(),
                reviewed_at=now,
                note=f"carrier {carrier} mapped to TikTok provider {provider}" + (f": {note}" if note else ""),
            )
        )
    return mapping


def _providers_offered(conn, shop: str, tiktok_order_id: str) -> list[dict] | None:
    """The TikTok providers of the order's delivery option as the runs last read them (None: not known)."""
    o, p = stg_tiktok_orders.c, tiktok_shipping_providers.c
    raw = conn.execute(sa.select(o.raw).where(o.shop == shop, o.tiktok_order_id == tiktok_order_id)).scalar()
    option = raw.get("delivery_option_id") if isinstance(raw, dict) else None
    if not option or not sa.inspect(conn).has_table("tiktok_shipping_providers"):
        return None
    return conn.execute(sa.select(p.providers).where(p.shop == shop, p.delivery_option_id == option)).scalar()


def latest_reviews(conn, shop: str, keys: Iterable[str]) -> dict[str, dict]:
    """The newest review of each escalation key (missing: still open). An escalation a run decided
    again after it was resolved (its carrier mapping named no provider TikTok has, say) reads open
    again, saying so: the review stays in the history."""
    keys = sorted(set(keys))
    if not sa.inspect(conn).has_table("escalation_reviews"):
        return {}
    r, d = escalation_reviews.c, decisions.c
    found: dict[str, dict] = {}
    for start in range(0, len(keys), 500):
        for row in conn.execute(
            sa.select(escalation_reviews)
            .where(r.shop == shop, r.idempotency_key.in_(keys[start : start + 500]))
            .order_by(r.id)
        ).mappings():
            found[row["idempotency_key"]] = dict(row)
    resolved = {key: rev for key, rev in found.items() if rev["state"] == "resolved"}
    orders = {key.split(":")[1]: key for key in resolved if key.count(":") >= 2}
    ids = sorted(orders)
    for start in range(0, len(ids), 500):
        for row in conn.execute(
            sa.select(d.tiktok_order_id, d.actions, d.decided_at).where(
                d.shop == shop, d.tiktok_order_id.in_(ids[start : start + 500])
            )
        ):
            key = orders[row.tiktok_order_id]
            review_ = found[key]
            if (
                key in (row.actions or [])
                and as_utc(row.decided_at) > as_utc(review_["reviewed_at"])
                and review_["state"] == "resolved"
            ):
                found[key] = {
                    **review_,
                    "state": OPEN,
                    "note": f"decided again after it was resolved by "
                    f"{review_['reviewed_by']}" + (f" ({review_['note']})" if review_["note"] else ""),
                }
    return found


def mapped_carriers(wh: Warehouse, shop: str) -> dict[str, str]:
    """The carrier mappings people added for `shop` (carrier -> TikTok provider name or id)."""
    c = carrier_mappings.c
    with wh.engine.connect() as conn:
        if not sa.inspect(conn).has_table("carrier_mappings"):
            return {}
        return {
            row.carrier: row.provider for row in conn.execute(sa.select(c.carrier, c.provider).where(c.shop == shop))
        }
