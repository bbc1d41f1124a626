"""The escalation inbox: a person acknowledges or resolves each escalation, with a note, and for an
unmapped carrier (T2) adds the mapping so that the next run posts the tracking.

An escalation is the `escalate` row of the action ledger; what people did with it is kept in
`escalation_reviews`, newest row last (none: open), so its whole history stays. A carrier mapping
goes to `carrier_mappings` (read by every later run beside the policy's `carrier_overrides`, which
win where both name a carrier) and leaves an audit row of kind `map_carrier` in the ledger, under
the order that asked for it, saying who mapped what to what and when. A review may name an owner
(who takes the escalation); a later review without one keeps it.

A run that decides an order again and no longer escalates it for a reason (its tracking is posted
now that the carrier maps, a Shopify order was found, the order shipped or was cancelled) resolves
that escalation itself: a review row by `orderops` saying which run and what it decided instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
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
OWNER_MAX = 250
# who resolves an escalation a later run no longer escalates
SYSTEM_REVIEWER = "orderops"


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


def _owner(conn, shop: str, key: str, owner: str | None) -> str | None:
    """The owner a new review names: the one given, else the newest review's."""
    owner = (owner or "").strip() or None
    if owner is not None:
        if len(owner) > OWNER_MAX:
            raise InboxError(f"the owner is {len(owner)} characters long (at most {OWNER_MAX})")
        return owner
    r = escalation_reviews.c
    return conn.execute(
        sa.select(r.owner).where(r.shop == shop, r.idempotency_key == key).order_by(r.id.desc()).limit(1)
    ).scalar()


def review(
    wh: Warehouse,
    shop: str,
    key: str,
    state: str,
    by: str,
    note: str | None = None,
    now: datetime | None = None,
    owner: str | None = None,
) -> dict:
    """Acknowledge or resolve the escalation `key` of `shop`, naming its owner (none: the one it
    had); returns the review recorded."""
    if state not in REVIEW_STATES:
        raise InboxError(f"state {state!r}: expected one of {', '.join(REVIEW_STATES)}")
    note = _who_and_note(by, note)
    with wh.engine.begin() as conn:
        _escalation(conn, shop, key)
        row = dict(
            shop=shop,
            idempotency_key=key,
            state=state,
            note=note,
            reviewed_by=by.strip(),
            reviewed_at=now or utcnow(),
            owner=_owner(conn, shop, key, owner),
        )
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
        offered = providers_offered(conn, shop, escalation["tiktok_order_id"])
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
                owner=_owner(conn, shop, key, None),
            )
        )
    return mapping


def providers_offered(conn, shop: str, tiktok_order_id: str) -> list[dict] | None:
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
    # an order may have several resolved escalations (one per reason code)
    orders: dict[str, list[str]] = {}
    for key, rev in found.items():
        if rev["state"] == "resolved" and key.count(":") >= 2:
            orders.setdefault(key.split(":")[1], []).append(key)
    ids = sorted(orders)
    for start in range(0, len(ids), 500):
        for row in conn.execute(
            sa.select(d.tiktok_order_id, d.actions, d.decided_at).where(
                d.shop == shop, d.tiktok_order_id.in_(ids[start : start + 500])
            )
        ):
            for key in orders[row.tiktok_order_id]:
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


def resolved_but_decided(wh: Warehouse, shop: str, decided: Iterable[Mapping]) -> set[str]:
    """The orders of these decisions that make an escalation standing resolved: recording such a
    decision again, though unchanged, opens the escalation again (`latest_reviews`)."""
    keys = {k: d["tiktok_order_id"] for d in decided for k in d["actions"] or () if k.startswith(f"{ESCALATE}:")}
    if not keys:
        return set()
    with wh.engine.connect() as conn:
        reviews = latest_reviews(conn, shop, keys)
    return {order for key, order in keys.items() if reviews.get(key, {}).get("state") == "resolved"}


def settled_by_run(
    open_escalations: Mapping[str, str], decided: Iterable[Mapping], run_id: str, held: Collection[str] = ()
) -> dict[str, str]:
    """The rule: of the escalations not resolved (key -> its order), those whose order a run decided
    again without escalating it for that reason, each with the note that resolves it. An order whose
    actions the run held back (a failed validation, a record it could not read) settles nothing: its
    decision is not the one it would have made."""
    keys_of: dict[str, list[str]] = {}
    for key, order in open_escalations.items():
        keys_of.setdefault(order, []).append(key)
    notes = {}
    for decision in decided:
        order = decision["tiktok_order_id"]
        if order in held:
            continue
        instead = (
            f"now {decision['rule']}, {decision['reason']}"
            if decision["rule"] != "-"
            else f"nothing to do now, {decision['reason']}"
        )
        for key in keys_of.get(order, ()):
            if key not in (decision["actions"] or ()):
                notes[key] = f"resolved by run {run_id}: {instead}"
    return notes


def close_settled(
    wh: Warehouse, shop: str, run_id: str, decided: list[dict], held: Collection[str] = (), now: datetime | None = None
) -> dict[str, str]:
    """Resolve, as `orderops`, the escalations of `shop` the run's decisions (rows of `decisions`) no
    longer make (`settled_by_run`); an owner stays. Returns the notes written, by escalation key."""
    orders = sorted({d["tiktok_order_id"] for d in decided} - set(held))
    a = action_ledger.c
    with wh.engine.begin() as conn:
        escalated: dict[str, str] = {}
        for start in range(0, len(orders), 500):
            for key, order in conn.execute(
                sa.select(a.idempotency_key, a.tiktok_order_id).where(
                    a.shop == shop, a.kind == ESCALATE, a.tiktok_order_id.in_(orders[start : start + 500])
                )
            ):
                escalated[key] = order
        if not escalated:
            return {}
        reviews = latest_reviews(conn, shop, escalated)
        still_open = {k: o for k, o in escalated.items() if reviews.get(k, {}).get("state", OPEN) != "resolved"}
        notes = settled_by_run(still_open, decided, run_id, held)
        if notes:
            at = now or utcnow()
            conn.execute(
                escalation_reviews.insert(),
                [
                    dict(
                        shop=shop,
                        idempotency_key=key,
                        state="resolved",
                        note=note,
                        reviewed_by=SYSTEM_REVIEWER,
                        reviewed_at=at,
                        owner=(reviews.get(key) or {}).get("owner"),
                    )
                    for key, note in sorted(notes.items())
                ],
            )
    return notes


def mapped_carriers(wh: Warehouse, shop: str) -> dict[str, str]:
    """The carrier mappings people added for `shop` (carrier -> TikTok provider name or id)."""
    c = carrier_mappings.c
    with wh.engine.connect() as conn:
        if not sa.inspect(conn).has_table("carrier_mappings"):
            return {}
        return {
            row.carrier: row.provider for row in conn.execute(sa.select(c.carrier, c.provider).where(c.shop == shop))
        }
