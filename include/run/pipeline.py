"""The run's orchestration: prepare, validate, join and decide, act, summarize, and `run_all`, the
step table (include/run/steps.py) in one process. Each platform's extraction is in include/extract/.

extract (per platform) -> stage -> validate -> join -> decide -> act (ledger) -> verify -> summarize.
Every step takes the run's `RunSettings`, a `Platforms` (clients for one shop) and the
warehouse, so the whole flow also runs without Airflow in tests and benchmarks.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa

from include.act import saga
from include.act.actions import Executor, Handlers, Outcome, log_outcome
from include.act.ledger import FAILED, HELD, IN_FLIGHT, PENDING, Ledger, RunContext
from include.decide.carriers import CarrierMap
from include.decide.enums import TIKTOK_SHIPPABLE_STATUSES
from include.decide.join import Joiner, Link
from include.decide.model import (
    ADD_NOTE,
    ESCALATE,
    POST_TRACKING,
    REJECT_CANCELLATION,
    VERIFY_FULFILLMENT_CANCEL,
    Decision,
    as_utc,
)
from include.decide.rules import decide, hold_shared_tracking, needs_reject_reasons
from include.events.platform_events import EventInbox, sources_of
from include.extract import staging
from include.extract.cursors import full_sweep_due, sweep_reason
from include.extract.listings import key_of
from include.quality.checkpoints import run_name, validate_batches
from include.report.at_risk import SHIP_BY, alert_at_risk
from include.report.figures import COUNTS, run_figures
from include.report.inbox import close_settled, mapped_carriers, resolved_but_decided
from include.report.notify import Alert, notify
from include.run import steps
from include.run.platforms import Platforms
from include.run.runconfig import RunSettings, now_for
from include.store.run_store import BATCH_TABLES, CLOCK_SKEW, RunStore, unchanged
from include.store.warehouse import (
    Warehouse,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_shopify_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
    tiktok_shipping_providers,
    utcnow,
)
from orderops_provider.base import BusinessError, PlatformError

log = logging.getLogger(__name__)
CHUNK = 50
# how a decision whose actions the run held back begins its reason (it settles no escalation)
BLOCKED = "blocked: "
# the action group (steps.GROUPS) each kind outside the saga is carried out in
GROUP_OF_KIND = {
    POST_TRACKING: "tracking",
    ADD_NOTE: "notes",
    REJECT_CANCELLATION: "rejections",
    ESCALATE: "escalations",
}


def prepare_run(settings: RunSettings, wh: Warehouse) -> RunSettings:
    """Create or upgrade the schema, open the run's record and decide what the run lists (its
    `Extraction`: a sweep or the changes since the cursors, and for an event-driven run the sources
    its events came from); returns the settings every later step of the run uses, with that decision."""
    revision = wh.migrate()
    # the platform events waiting now are this run's: a scheduled run lists everything they could
    # say anyway; an event-driven one lists the platforms they came from, and never sweeps
    inbox = EventInbox(wh)
    claimed = inbox.claim(settings.shop, settings.run_id)
    # received_at is the receiver's clock: the wall clock, not the run's
    pruned = inbox.prune(settings.shop, utcnow() - timedelta(days=settings.event_retention_days), settings.run_id)
    if pruned:
        log.info(
            "deleted %d platform event(s) claimed by earlier runs and older than %g days",
            pruned,
            settings.event_retention_days,
        )
    if settings.event_driven:
        settings = replace(settings, extraction=replace(settings.extraction, listed=sources_of(claimed)))
        log.info(
            "event-driven run: %d event(s) (%d waking) -> lists %s",
            len(claimed),
            sum(1 for e in claimed if e["wakes"]),
            ", ".join(settings.extraction.listed or ()) or "nothing",
        )
    else:
        reason = sweep_reason(settings, wh)
        full = reason is not None and full_sweep_due(settings, wh)
        settings = replace(settings, extraction=replace(settings.extraction, sweep=reason, full=full))
    RunStore(wh, settings).start()
    log.info(
        "run %s shop %s window %s .. %s (overlap %s), policy %s%s, schema %s, %s",
        settings.run_id,
        settings.shop,
        settings.window_start,
        settings.window_end,
        settings.overlap,
        settings.policy.version,
        " DRY RUN" if settings.dry_run else "",
        revision,
        f"{'full ' if settings.extraction.full else ''}sweep ({settings.extraction.sweep})"
        if settings.extraction.sweep
        else "incremental extraction",
    )
    return settings


# How long a run may map carriers with the shipping providers an earlier run read
PROVIDERS_REUSE = timedelta(hours=6)


def validate_staged(settings: RunSettings, wh: Warehouse) -> list[dict]:
    """Every batch's Great Expectations checkpoint on what this run staged (results and Data Docs
    in the shop's GX folder, named by shop and run); a failure blocks actions, not staging. An
    event-driven run builds its results' pages but leaves the shop's Data Docs index to its next
    run on its schedule: reading every result the index lists cost an event wake more than its own
    validation did."""
    store, now = RunStore(wh, settings), now_for(settings)
    outcomes = validate_batches(
        settings.shop,
        {batch: store.staged_by_run(BATCH_TABLES[batch]) for batch in steps.BATCHES},
        now,
        run=run_name(settings.shop, settings.run_id),
        index=not settings.event_driven,
    )
    done = []
    for batch, outcome in outcomes.items():
        store.record_validation(batch, outcome, now)
        (log.info if outcome.success else log.error)("%s", outcome.describe())
        done.append(
            {"batch": batch, "success": outcome.success, "rows": outcome.rows, "failures": len(outcome.failures)}
        )
    return done


def carrier_maps(
    settings: RunSettings, platforms: Platforms, wh: Warehouse, tiktok_rows: list[dict]
) -> tuple[dict, CarrierMap]:
    """TikTok shipping providers per delivery option of the orders in play: one call per option,
    except where a run read them less than PROVIDERS_REUSE ago (a sweep reads them all anew)."""
    options = sorted(
        {r["delivery_option_id"] for r in tiktok_rows if r["status"] in TIKTOK_SHIPPABLE_STATUSES} - {None, ""}
    )
    now = now_for(settings)
    t = tiktok_shipping_providers.c
    stored = {}
    if not settings.extraction.sweep:
        with wh.engine.connect() as conn:
            stored = {
                row.delivery_option_id: row.providers
                for row in conn.execute(
                    sa.select(t.delivery_option_id, t.providers, t.fetched_at).where(
                        t.shop == settings.shop, t.delivery_option_id.in_(options)
                    )
                )
                if timedelta(0) <= now - as_utc(row.fetched_at) < PROVIDERS_REUSE
            }
    maps, every, fetched = {}, {}, []
    # mappings people added in the inbox, then the policy's own, which win where both name a carrier
    overrides = {**mapped_carriers(wh, settings.shop), **settings.policy.carrier_overrides}
    for option in options:
        providers = stored.get(option)
        if providers is None:
            try:
                providers = platforms.tiktok().shipping_providers(option)
                fetched.append(
                    {"shop": settings.shop, "delivery_option_id": option, "providers": providers, "fetched_at": now}
                )
            except BusinessError as exc:
                # TikTok does not know the option: no carrier maps for its orders (escalated, T2), no guess
                log.warning(
                    "delivery option %s: %s; its orders' carriers map to no provider", option, exc.platform_message
                )
                providers = []
        maps[option] = CarrierMap(providers, overrides)
        every.update({p["id"]: p for p in providers})
    wh.upsert(tiktok_shipping_providers, fetched)
    return maps, CarrierMap(list(every.values()), overrides)


def order_link_keys(joiner: Joiner, joined, link) -> set[str]:
    """The values a record of any platform would need to carry to belong to this order."""
    keys = {link.tiktok_order_id, link.fulfillment_order_id, joined.cancellation and joined.cancellation.cancel_id}
    for shopify_id in link.shopify_order_ids:
        keys |= {shopify_id, joiner.shopify_rows[shopify_id]["name"]}
    return {staging.link_key(k) for k in keys if k}


def _depends_on(fulfiller: str | None, configured: tuple[str, ...]) -> set[str]:
    """Platforms whose data the decision rests on (absence of a fulfillment order rests on all)."""
    needed = {"tiktok", "shopify"}
    needed |= {fulfiller} if fulfiller else set(configured)
    return needed


def join_and_decide(settings: RunSettings, platforms: Platforms, wh: Warehouse) -> dict:
    """Link, decide and record pending ledger rows; returns the plan of keys to act on."""
    now = now_for(settings)
    raw_fields = ("delivery_option_id", "shipping_type")
    store = RunStore(wh, settings)
    tiktok_rows = store.in_play_tiktok(raw_fields)
    since = store.in_play_since(now)
    ledger = Ledger(wh)
    sagas = saga.states(ledger, settings.shop)
    maps, default_map = carrier_maps(settings, platforms, wh, tiktok_rows)
    shopify, amazon, shipbob, cancellations = store.latest_state(
        (stg_shopify_orders, stg_amazon_fulfillment_orders, stg_shipbob_orders, stg_tiktok_cancellations), since
    )
    joiner = Joiner(
        shopify,
        amazon,
        shipbob,
        cancellations,
        maps,
        default_map,
        sagas,
        fulfillers_listed_from=store.fulfillers_listed_from(since, now),
        warehouse_refusals=store.warehouse_refusals(),
    )
    blocked = store.blocked_by_validation()
    unreadable = store.quarantined_links()
    reasons = RejectReasons(platforms, ledger.done_keys(settings.shop))

    def decided_for(row: dict) -> tuple[Link, Decision]:
        joined, link = joiner.join(row)
        decision = reasons.decide(joined, settings.policy, now)
        stale = _depends_on(link.fulfiller, settings.fulfillers) & blocked
        if stale and decision.actions:
            decision = Decision(
                decision.tiktok_order_id,
                "-",
                f"{BLOCKED}validation failed for {', '.join(sorted(stale))} ({decision.rule}: {decision.reason})",
            )
        elif decision.actions and unreadable:
            # a record that could not be staged may be this order's other Shopify order or its
            # fulfillment order: its absence proves nothing, so nothing is done until it reads
            suspect = sorted(order_link_keys(joiner, joined, link) & unreadable.keys())
            if suspect:
                decision = Decision(
                    decision.tiktok_order_id,
                    "-",
                    f"{BLOCKED}a quarantined {unreadable[suspect[0]]} "
                    f"record carries {suspect[0]} ({decision.rule}: {decision.reason})",
                )
        return link, decision

    outcome = {row["tiktok_order_id"]: (row, *decided_for(row)) for row in tiktok_rows}
    for row, held in _reread_before_acting(settings, platforms, wh, outcome, raw_fields):
        outcome[row["tiktok_order_id"]] = (row, *(held or decided_for(row)))
    # across orders: one tracking number, one order (TikTok, the ledger and this run's own posts)
    numbers = [
        a.params["tracking_number"] for _, _, d in outcome.values() for a in d.actions if a.kind == POST_TRACKING
    ]
    if numbers:
        guarded = hold_shared_tracking([d for _, _, d in outcome.values()], store.tracking_elsewhere(numbers))
        outcome = {
            d.tiktok_order_id: (row, link, d) for (row, link, _), d in zip(outcome.values(), guarded, strict=True)
        }
    links: list[dict[str, Any]] = []
    decided: list[dict[str, Any]] = []
    planned: list[Decision] = []
    at = utcnow()
    rules: Counter = Counter()
    matched: Counter = Counter()  # join coverage: which rule found each order's Shopify order
    for row, link, decision in outcome.values():
        rules[decision.rule] += 1
        matched[link.match_rule or "no match"] += 1
        links.append(
            dict(
                shop=settings.shop,
                run_id=settings.run_id,
                tiktok_order_id=link.tiktok_order_id,
                shopify_order_ids=list(link.shopify_order_ids),
                match_rule=link.match_rule,
                fulfiller=link.fulfiller,
                fulfillment_order_id=link.fulfillment_order_id,
                link_problem=link.link_problem,
                decided_at=at,
            )
        )
        decided.append(
            dict(
                shop=settings.shop,
                run_id=settings.run_id,
                tiktok_order_id=decision.tiktok_order_id,
                rule=decision.rule,
                reason=decision.reason,
                actions=[a.idempotency_key for a in decision.actions],
                inputs={
                    "tiktok": row["snapshot_run_id"],
                    "match_rule": link.match_rule,
                    "fulfiller": link.fulfiller,
                    "fulfillment_order_id": link.fulfillment_order_id,
                    **unmapped_carriers(decision),
                    **tracking_sources(decision),
                },
                policy_version=settings.policy.version,
                decided_at=at,
            )
        )
        planned.append(decision)
    recorded = store.recorded_decisions(outcome)
    # a retried task writes its own run's rows again, so the run's count of recorded decisions holds
    changed = {
        d["tiktok_order_id"]
        for d, link_row in zip(decided, links, strict=True)
        if not unchanged(recorded.get(d["tiktok_order_id"]), d, link_row)
        or recorded[d["tiktok_order_id"]][0]["run_id"] == settings.run_id
    }
    # an escalation a person resolved that this run still makes opens again: its decision is recorded anew
    changed |= resolved_but_decided(wh, settings.shop, [d for d in decided if d["tiktok_order_id"] not in changed])
    store.record_decisions(
        [r for r in links if r["tiktok_order_id"] in changed], [d for d in decided if d["tiktok_order_id"] in changed]
    )
    # the run whose recorded decision each order's actions rest on: this one, or the one that recorded it unchanged
    decision_run = {o: settings.run_id if o in changed else recorded[o][0]["run_id"] for o in outcome}
    if not settings.dry_run:
        # an escalation this run no longer makes closes itself, saying why (the inbox stays true)
        held_back = {d.tiktok_order_id for d in planned if d.reason.startswith(BLOCKED)}
        settled = close_settled(wh, settings.shop, settings.run_id, decided, held_back)
        if settled:
            log.info("%d escalation(s) resolved: this run no longer escalates them", len(settled))
    plan: dict[str, list[Any]] = {group: [] for group in steps.GROUPS}
    if not settings.dry_run:
        ctx = RunContext(shop=settings.shop, dag_id=settings.dag_id, run_id=settings.run_id)
        done = Ledger(wh).done_keys(settings.shop)
        for decision in planned:
            saga_keys = []
            for action in decision.actions:
                ledger.record(
                    ctx,
                    action,
                    rule=decision.rule,
                    decision_run_id=decision_run[decision.tiktok_order_id],
                    tiktok_order_id=decision.tiktok_order_id,
                )
                if action.idempotency_key in done:
                    continue
                if action.kind in saga.KINDS:
                    saga_keys.append(action.idempotency_key)
                else:
                    plan[GROUP_OF_KIND[action.kind]].append(action.idempotency_key)
            if saga_keys:
                plan["cancellations"].append({"tiktok_order_id": decision.tiktok_order_id, "keys": saga_keys})
        settle_orphans(
            settings,
            platforms,
            wh,
            replace(ctx, task_id="join_and_decide", now=now),
            {a.idempotency_key for d in planned for a in d.actions},
        )
    store.decided(now, dict(rules), len(changed))
    chunks = {group: [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)] for group, keys in plan.items()}
    if settings.policy.mcf_warehouse_ids:
        # the posts for MCF warehouses go in one chunk of their own: its gate counts TikTok's refusals
        # as they come, which chunks side by side could not
        mcf = set(settings.policy.mcf_warehouse_ids)
        gated = {
            a.idempotency_key
            for d in planned
            for a in d.actions
            if a.kind == POST_TRACKING and a.params.get("warehouse_id") in mcf
        }
        keys = plan[GROUP_OF_KIND[POST_TRACKING]]
        rest = [k for k in keys if k not in gated]
        first = [[k for k in keys if k in gated]] if gated & set(keys) else []
        chunks[GROUP_OF_KIND[POST_TRACKING]] = first + [rest[i : i + CHUNK] for i in range(0, len(rest), CHUNK)]
    log.info(
        "decided %d orders: %s; %d decisions changed and recorded; blocked platforms: %s",
        len(planned),
        dict(sorted(rules.items())),
        len(changed),
        ", ".join(sorted(blocked)) or "none",
    )
    log.info("shopify orders found by: %s", dict(sorted(matched.items())))
    # each action group's chunks at the top: the DAG maps each group's task over its key
    return {
        "orders": len(planned),
        "rules": dict(rules),
        "recorded": len(changed),
        "blocked": sorted(blocked),
        **chunks,
        "actions": {group: len(keys) for group, keys in plan.items()},
    }


def unmapped_carriers(decision: Decision) -> dict:
    """The carriers a decision escalated as mapping to no TikTok provider (T2), as its escalation
    names them, for the decision's record (a dry run leaves no ledger row to read them from)."""
    carriers = sorted({c for a in decision.actions if a.kind == ESCALATE for c in a.params.get("carriers", ())})
    return {"unmapped_carriers": carriers} if carriers else {}


def tracking_sources(decision: Decision) -> dict:
    """Where the tracking a decision posts comes from (Amazon's early number or the carrier's), for
    the decision's record."""
    sources = sorted({a.params["source"] for a in decision.actions if a.kind == POST_TRACKING})
    return {"tracking_sources": sources} if sources else {}


class RejectReasons:
    """Decides with the reject reasons TikTok offers for each request a decision would reject: read
    once per request and run (one call; only for requests not yet rejected)."""

    def __init__(self, platforms: Platforms, done: set[str]):
        self.platforms = platforms
        self.done = done
        self.offered: dict[str, tuple[tuple[str, str], ...] | PlatformError] = {}

    def decide(self, joined, policy, now: datetime) -> Decision:
        decision = decide(joined, policy, now)
        reject = needs_reject_reasons(decision)
        if reject is None or reject.idempotency_key in self.done:
            return decision
        cancel_id = reject.params["cancel_id"]
        if cancel_id not in self.offered:
            try:
                self.offered[cancel_id] = tuple(self.platforms.tiktok().reject_reasons(cancel_id))
            except PlatformError as exc:
                self.offered[cancel_id] = exc
        offered = self.offered[cancel_id]
        if isinstance(offered, PlatformError):
            # the rejection waits for a later run; the order's tracking or note does not
            return Decision(
                decision.tiktok_order_id,
                decision.rule,
                f"{decision.reason}; the rejection waits: could not read TikTok's reject reasons ({offered})",
                tuple(a for a in decision.actions if a is not reject),
            )
        return decide(replace(joined, reject_reasons=offered), policy, now)


def _reread_before_acting(
    settings: RunSettings,
    platforms: Platforms,
    wh: Warehouse,
    outcome: dict[str, tuple[dict, Link, Decision]],
    raw_fields: tuple[str, ...],
) -> list[tuple[dict, tuple[Link, Decision] | None]]:
    """Orders the run would act on whose TikTok state an earlier run read: read again (50 per call)
    so no write rests on a stale copy. Returns (fresh row, None) to decide again, or, when
    the read failed, (row, (link, a decision holding its actions back))."""
    store = RunStore(wh, settings)
    started = store.started()
    done = Ledger(wh).done_keys(settings.shop)
    stale = [
        tid
        for tid, (row, _, decision) in outcome.items()
        if any(a.idempotency_key not in done for a in decision.actions)
        and row["snapshot_run_id"] != settings.run_id
        and not (started is not None and as_utc(row["extracted_at"]) >= started - CLOCK_SKEW)
    ]
    if not stale:
        return []
    try:
        RunStore(wh, settings).stage(
            stg_tiktok_orders,
            "tiktok_orders",
            platforms.tiktok().get_orders(stale),
            staging.tiktok_order_row,
            key_of("id"),
        )
    except PlatformError as exc:
        log.warning("re-reading %d TikTok order(s) before acting failed: %s", len(stale), exc)
        return [
            (row, (link, Decision(tid, "-", f"{BLOCKED}could not re-read the order before acting ({exc})")))
            for tid in stale
            for row, link, _ in [outcome[tid]]
        ]
    fresh = store.read(stg_tiktok_orders, stg_tiktok_orders.c.tiktok_order_id.in_(stale), raw_fields)
    log.info("re-read %d TikTok order(s) staged by earlier runs before acting on them", len(fresh))
    return [(row, None) for row in fresh]


def settle_orphans(
    settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext, planned: set[str]
) -> list[dict]:
    """Actions an earlier attempt left in flight, and fulfiller-cancel checks left pending, that this run
    does not decide again: read what became of them (see `Executor.settle`). Those it decides again
    are reconciled when they are carried out."""
    ledger = Ledger(wh)
    open_rows = ledger.rows(settings.shop, state=IN_FLIGHT) + ledger.rows(
        settings.shop, kind=VERIFY_FULFILLMENT_CANCEL, state=PENDING
    )
    orphans = [r for r in open_rows if r["idempotency_key"] not in planned]
    if not orphans:
        return []
    executor = Executor(ledger, ctx, Handlers(platforms))
    return [log_outcome(executor.settle(row)) for row in orphans]


def act(settings: RunSettings, platforms: Platforms, wh: Warehouse, ctx: RunContext, keys: list[str]) -> list[dict]:
    """Carry out one chunk of independent actions (tracking, notes, rejections, escalations)."""
    ledger = Ledger(wh)
    executor = Executor(ledger, ctx, Handlers(platforms))
    rows = ledger.rows_by_key(settings.shop, keys)
    gate = WarehouseGate(
        RunStore(wh, settings).warehouse_refusals(),
        settings.policy.warehouse_refusal_limit,
        settings.policy.mcf_warehouse_ids,
    )
    outcomes = []
    for key in keys:
        if key not in rows:
            continue
        held = gate.holds(rows[key])
        outcome = Outcome(key, rows[key]["kind"], HELD, held) if held else executor.run(rows[key])
        gate.saw(rows[key], outcome)
        outcomes.append(log_outcome(outcome))
    for detail in gate.newly_held.values():
        notify(Alert("warehouse_uploads_held", settings.dag_id, settings.run_id, detail), wh.url)
    return outcomes


class WarehouseGate:
    """TikTok deactivates an Amazon MCF warehouse at a number of incorrect tracking uploads: tracking
    posts for an MCF warehouse stop one refusal short of the policy's limit, counted as refusals come
    in (decide escalates the orders from the next run on; this holds the posts already planned; the
    posts of MCF warehouses come in one chunk, so no chunk beside it posts for them)."""

    def __init__(self, refusals: dict[str, int], limit: int, warehouses: tuple[str, ...]):
        self.refusals = dict(refusals)
        self.limit = limit
        self.warehouses = set(warehouses)
        self.newly_held: dict[str, str] = {}

    def _warehouse(self, row: dict) -> str:
        if row["kind"] != POST_TRACKING:
            return ""
        warehouse = (row["request"] or {}).get("warehouse_id") or ""
        return warehouse if warehouse in self.warehouses else ""

    def holds(self, row: dict) -> str | None:
        warehouse = self._warehouse(row)
        refused = self.refusals.get(warehouse, 0)
        if not warehouse or refused < self.limit - 1:
            return None
        detail = (
            f"held: TikTok refused {refused} tracking uploads for warehouse {warehouse}; at {self.limit} it may "
            "deactivate the warehouse, so no more are posted for it until a person looks"
        )
        self.newly_held.setdefault(warehouse, detail)
        return detail

    def saw(self, row: dict, outcome: Outcome) -> None:
        warehouse = self._warehouse(row)
        if warehouse and outcome.state == FAILED:
            self.refusals[warehouse] = self.refusals.get(warehouse, 0) + 1


def record_api_calls(wh: Warehouse, settings: RunSettings, task_id: str, map_index: int, platforms: Platforms) -> None:
    RunStore(wh, settings).record_api_calls(task_id, map_index, platforms.stats_rows())


def summarize_run(settings: RunSettings, wh: Warehouse, started: float | None = None) -> dict:
    """The run's figures: orders per platform, orders decided by rule and the decisions recorded
    (counted as the run decided), actions by kind and outcome, escalations, validation,
    API calls and throttles per platform, platform events claimed and contradicted; then the
    at-risk alerts and the run's final state."""
    store = RunStore(wh, settings)
    figures = store.figures()
    mode = "sweep" if settings.extraction.sweep else "event" if settings.event_driven else "incremental"
    summary: dict[str, Any] = {
        "shop": settings.shop,
        "run_id": settings.run_id,
        "dry_run": settings.dry_run,
        "window": [settings.window_start.isoformat(), settings.window_end.isoformat()],
        **{
            key: figures[key]
            for key in (
                "orders_seen",
                "decisions",
                "decisions_recorded",
                "actions",
                "escalations",
                "validation_failures",
                "quarantined",
                "api",
            )
        },
        "extraction": {
            "mode": mode,
            "sweep_reason": settings.extraction.sweep,
            "full_sweep": bool(settings.extraction.sweep) and settings.extraction.full,
            "listed": list(settings.extraction.listed) if settings.extraction.listed is not None else None,
            "sources": figures["sources"],
        },
        "missed_by_cursor": sum(v["missed_by_cursor"] for v in figures["sources"].values()),
        # the platform events the run claimed; `disagreed`: bodies the platform's own read contradicted
        "events": figures["events"],
    }
    finished = utcnow()
    if figures["started_at"] is not None:
        summary["duration_seconds"] = round((finished - figures["started_at"]).total_seconds(), 1)
    if not settings.dry_run:  # a person is told of orders about to breach; a dry run tells no one
        alerted = alert_at_risk(
            wh,
            wh.engine.url.render_as_string(hide_password=False),
            settings.shop,
            settings.dag_id,
            settings.run_id,
            now_for(settings),
            settings.policy.at_risk_alert_hours,
        )
        # "12h" before the ship-by time, "12h auto_cancel" before TikTok's auto-cancellation
        summary["at_risk_alerts"] = {
            f"{hours:g}h" + ("" if deadline == SHIP_BY else f" {deadline}"): orders
            for (deadline, hours), orders in sorted(alerted.items(), key=lambda kv: (kv[0][0] != SHIP_BY, -kv[0][1]))
        }
    failed = any(k.endswith(":failed") or k.endswith(":in_flight") for k in summary["actions"])
    state = "attention" if failed or summary["validation_failures"] else "succeeded"
    store.finish(summary, state, finished)
    summary["state"] = state
    return summary


def summary_table(summary: dict) -> str:
    """The run summary as a readable table for the task log."""
    lines = [
        f"orderops run {summary['run_id']} (shop {summary['shop']}){' DRY RUN' if summary['dry_run'] else ''}: "
        f"{summary['state']}, {summary.get('duration_seconds', '?')} s"
    ]
    lines.append(f"  {'orders seen':28s} " + ", ".join(f"{k}={v}" for k, v in summary["orders_seen"].items()))
    lines.append(
        f"  {'decisions by rule':28s} " + ", ".join(f"{k}={v}" for k, v in sorted(summary["decisions"].items()))
    )
    for key, n in sorted(summary["actions"].items()):
        lines.append(f"  {'action ' + key:28s} {n}")
    # the named figures the demo's terminal and the pages share, each with what it counts
    for name, n in run_figures(summary).items():
        lines.append(f"  {name:28s} {n}  ({COUNTS[name]})")
    for platform, figures in sorted(summary["api"].items()):
        lines.append(
            f"  {'api ' + platform:28s} calls={figures['calls']} throttled={figures['throttled']} "
            f"retries={figures['retries']}"
        )
    extraction = summary.get("extraction") or {}
    lines.append(
        f"  {'extraction':28s} {extraction.get('mode', '?')}"
        + (
            f" ({extraction['sweep_reason']}), missed by cursor {summary['missed_by_cursor']}"
            if extraction.get("sweep_reason")
            else ""
        )
    )
    events = summary.get("events") or {}
    if events.get("claimed"):
        lines.append(
            f"  {'platform events':28s} {events['claimed']} claimed, "
            f"{events['disagreed']} contradicted by the platform's own read"
        )
    lines.append(f"  {'validation failures':28s} {', '.join(summary['validation_failures']) or 'none'}")
    lines.append(f"  {'quarantined records':28s} {summary['quarantined']}")
    for e in summary["escalations"]:
        lines.append(f"  escalated {e['tiktok_order_id']} [{e['rule']}] {e['reason']}")
    return "\n".join(lines)


def side_by_side(steps: list[Callable[[], Any]], workers: int) -> None:
    """Run the steps on up to `workers` threads (1: in order, in this thread); once all are done,
    the first error in step order is raised."""
    if workers <= 1 or len(steps) <= 1:
        for step in steps:
            step()
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(steps))) as pool:
        futures = [pool.submit(step) for step in steps]
    for future in futures:
        future.result()


def run_all(
    settings: RunSettings,
    platforms: Platforms,
    wh: Warehouse,
    *,
    lanes: int = 1,
    observe: Callable[[str], Any] | None = None,
    ctx: RunContext | None = None,
) -> dict:
    """The run's steps (include/run/steps.py, the DAG's tasks) in one process: an event DAG's task,
    tests, benchmarks, simulation. `ctx`: the task it runs in (the ledger's lineage), if any.

    lanes=1 runs them one after the other in the list's order. lanes > 1 runs side by side the
    steps that wait on nothing still running (the Shopify and fulfiller listings, the action groups
    and the sagas' first step), each with `lanes` chunks at a time (as a pool of that many slots
    would). `observe` is told "decided" once everything is read and decided (the simulation splits
    the API calls into extraction and actions there)."""
    ctx = ctx or RunContext(
        shop=settings.shop, dag_id=settings.dag_id, run_id=settings.run_id, task_id="run_all", now=now_for(settings)
    )
    results: dict[str, Any] = {}

    def run_step(step: steps.Step) -> None:
        nonlocal settings
        if step.name == "prepare_run":
            platforms.check()
        if step.name == "summarize_run":
            record_api_calls(wh, settings, ctx.task_id, ctx.map_index, platforms)
        values = {
            "settings": settings,
            "platforms": platforms,
            "wh": wh,
            "ctx": ctx,
            "since": steps.since_of(results["extract_tiktok"]) if "since" in step.args else None,
        }
        if step.each is None:
            results[step.name] = step.function(*steps.arguments(step, values))
            if step.name == "prepare_run":  # the steps after it use the settings it decided
                settings = results[step.name]
            return
        items = results["join_and_decide"][step.each]
        out: list[Any] = [None] * len(items)

        def one(i: int) -> None:
            out[i] = step.function(*steps.arguments(step, {**values, "chunk": items[i]}))

        side_by_side([partial(one, i) for i in range(len(items))], lanes)
        results[step.name] = out

    for wave in steps.waves():
        wave = [s for s in wave if s.fulfiller is None or s.fulfiller in settings.fulfillers]
        side_by_side([partial(run_step, s) for s in wave], len(wave) if lanes > 1 else 1)
        if observe is not None and any(s.name == "join_and_decide" for s in wave):
            observe("decided")
    return results["summarize_run"]
