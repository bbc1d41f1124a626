"""Preflight: a read-only go-live check of one shop's real connections (docs/preflight.md).

`preflight(shop, days, now)` checks, in order:

1. each platform the shop's runs use (TikTok, Shopify, its fulfillers): the connection builds,
   authenticates (the hook's `check()`) and holds what the run needs, and its API version's end of
   support;
2. the TikTok shop's market and the reasons TikTok offers to reject a buyer's cancellation, read
   with a recent request, against the policy's `reject_reason`;
3. a dry run of the real pipeline (`run_all`, `dry_run=True`, a full sweep of the last `days`)
   against a scratch SQLite warehouse in a temporary folder, deleted afterwards: how the join
   matches, what the first real run would do, which carriers map to no TikTok provider.

Nothing is written to a platform (a dry run acts on nothing) or to the shop's warehouse.
The report is a plain dict (the JSON of `--json`); `render` makes the readable text of it.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from itertools import islice
from typing import Any

import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowNotFoundException

from include.decide.model import LinkProblem
from include.decide.policy import pick_reject_reason
from include.quality.checkpoints import GX_DIR_ENV
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import RunSettings, run_settings
from include.run.shops import Shop
from include.store.run_store import MAX_LOOKBACK, RunStore
from include.store.warehouse import (
    Warehouse,
    decisions,
    latest_rows,
    order_links,
    stg_tiktok_orders,
    tiktok_shipping_providers,
)
from orderops_provider import amazon_mcf, shipbob, shopify
from orderops_provider.base import ConfigurationError, PlatformError
from orderops_provider.hooks import BY_PLATFORM

MAX_DAYS = MAX_LOOKBACK.days  # the pipeline lists no further back
WARN_WITHIN = timedelta(days=60)  # a version ending this soon is a warning
EXAMPLES = 5
CANCELLATIONS_LOOKED_AT = 20  # one page of recent requests to read reject reasons with
PENDING_CANCEL = "CANCELLATION_REQUEST_PENDING"
# What the run needs of Shopify: its orders are the TikTok sales channel's (marketplace) orders.
SHOPIFY_SCOPES = ("read_orders", "write_orders", "read_marketplace_orders", "write_marketplace_orders")
# Platforms whose granted scopes or roles cannot be read with one cheap call.
GRANTS_UNREADABLE = {
    "tiktok": "granted scopes not checked: TikTok names them only in a token exchange answer, and exchanging "
    "would rotate the connection's tokens",
    "amazon_mcf": "roles not checked: SP-API has no call that lists an application's roles (a missing role "
    "answers 403 on first use)",
}
CONNECTION_ERRORS = (PlatformError, ConfigurationError, AirflowNotFoundException)


class PreflightError(ValueError):
    """An argument preflight cannot use; the message names it."""


def check_days(days: Any) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise PreflightError(f"days: expected 1 to {MAX_DAYS} days (the pipeline lists no further back), got {days!r}")


def dry_run_settings(shop: Shop, days: int, now: datetime, fulfillers: list[str] | None = None) -> RunSettings:
    """The settings of a DAG run of `shop` over the last `days` before `now`: dry, a full sweep
    (an explicit window), the shop's connections and policy."""
    check_days(days)
    params: dict[str, Any] = {
        "window_start": (now - timedelta(days=days)).isoformat(),
        "window_end": now.isoformat(),
        "now": now.isoformat(),
        "dry_run": True,
    }
    if fulfillers is not None:
        params["fulfillers"] = fulfillers
    return run_settings(
        dag_id=shop.dag_id, run_id=f"preflight-{now:%Y%m%dT%H%M%SZ}", params=params, shop=shop, run_type="manual"
    )


def version_findings(platform: str, version: str, until: date | None, today: date) -> tuple[list[str], list[str]]:
    """(problems, warnings) of an API version supported until `until` (None: no end announced)."""
    if until is None:
        return [], []
    if until < today:
        return [f"{platform}: API version {version} reached its end of support on {until}"], []
    if until - today <= WARN_WITHIN:
        return [], [f"{platform}: API version {version} ends its support on {until}, in {(until - today).days} days"]
    return [], []


def _tiktok(client, entry: dict, today: date) -> None:
    entry["version"] = dict(client.versions)
    entry["detail"] += f"; {GRANTS_UNREADABLE['tiktok']}"
    shops = client.shops()
    cipher = client.shop_cipher
    shop = next((s for s in shops if s.get("cipher") == cipher), None)
    if shop is None:
        entry["problems"].append(
            f"shop cipher {cipher} is not among the {len(shops)} shop(s) this token is authorized for"
        )
        return
    entry["market"] = shop.get("region")
    entry["detail"] += f"; shop {shop.get('name')!r} ({shop.get('region')})"


def _shopify(client, entry: dict, today: date) -> None:
    asked, until = entry["version"], entry["supported_until"]
    granted = client.access_scopes()  # also the first answer, which names the version served
    served = client.effective_version
    entry.update(served_version=served, scopes=sorted(granted))
    problems, warnings = version_findings("shopify", asked, until, today)
    if problems and served != asked:
        problems = [f"{problems[0]}; Shopify serves {served} instead: set extra.api_version to a supported version"]
    entry["problems"] += problems
    entry["warnings"] += warnings
    # a write scope carries its read scope
    have = granted | {s.replace("write_", "read_", 1) for s in granted if s.startswith("write_")}
    missing = [s for s in SHOPIFY_SCOPES if s not in have]
    if missing:
        entry["problems"].append(
            f"the app lacks access scope(s) {', '.join(missing)} (granted: {', '.join(sorted(granted)) or 'none'})"
        )
    else:
        entry["detail"] += f"; access scopes {', '.join(SHOPIFY_SCOPES)} granted"


def _amazon_mcf(client, entry: dict, today: date) -> None:
    entry["detail"] += f"; {GRANTS_UNREADABLE['amazon_mcf']}"


def _shipbob(client, entry: dict, today: date) -> None:
    # a version past its end never gets here: the client refuses to start with it (the check names it)
    entry["warnings"] += version_findings("shipbob", entry["version"], entry["supported_until"], today)[1]


EXTRA_CHECKS = {"tiktok": _tiktok, "shopify": _shopify, "amazon_mcf": _amazon_mcf, "shipbob": _shipbob}


def configured_version(platform: str, hook) -> tuple[Any, date | None]:
    """The API version a platform's client is set to and its last supported day, read from the
    connection where it is set there (a client may refuse to start with it, or fail before any
    answer); TikTok's, per operation, come from its client."""
    if platform == "amazon_mcf":
        return dict(amazon_mcf.VERSIONS), None
    if platform == "shopify":
        version = str(hook.settings().extra.get("api_version") or shopify.DEFAULT_VERSION)
        return version, shopify.supported_until(version)
    if platform == "shipbob":
        version = str(hook.settings().extra.get("api_version") or shipbob.DEFAULT_VERSION)
        return version, shipbob.END_OF_SUPPORT.get(version)
    return None, None


def check_connection(platform: str, settings: RunSettings, platforms: Platforms, today: date) -> dict:
    """One platform: the hook's check, then what the run needs of it and its version's support."""
    conn_id = getattr(settings.connections, platform)
    hook = BY_PLATFORM[platform](conn_id)
    entry: dict[str, Any] = {
        "connection": conn_id,
        "ok": False,
        "version": None,
        "supported_until": None,
        "detail": "",
        "problems": [],
        "warnings": [],
    }
    try:
        entry["version"], entry["supported_until"] = configured_version(platform, hook)
        entry["detail"] = hook.check(**platforms.overrides.get(platform, {}))
        EXTRA_CHECKS[platform](platforms.get(platform), entry, today)
    except CONNECTION_ERRORS as exc:
        entry["problems"].append(str(exc))
    entry["ok"] = not entry["problems"]
    if isinstance(entry["supported_until"], date):
        entry["supported_until"] = entry["supported_until"].isoformat()
    return entry


def check_reject_reasons(settings: RunSettings, platforms: Platforms, now: datetime, days: int) -> dict:
    """The reasons TikTok offers to reject a buyer's cancellation (read with a request of the last
    `days`, pending ones first: TikTok gives them per request) and the one the policy would pick."""
    wanted = settings.policy.reject_reason
    found: dict[str, Any] = {"policy": wanted, "read_with": None, "offered": [], "picked": None, "warnings": []}
    recent = list(
        islice(
            platforms.tiktok().search_cancellations(
                {"create_time_ge": now - timedelta(days=days), "create_time_lt": now},
                page_size=CANCELLATIONS_LOOKED_AT,
                sort_order="DESC",
            ),
            CANCELLATIONS_LOOKED_AT,
        )
    )
    if not recent:
        found["detail"] = (
            f"no cancellation request in the last {days} days: TikTok gives reject reasons only for "
            "a request, so they could not be read"
        )
        return found
    request = next((c for c in recent if c.get("cancel_status") == PENDING_CANCEL), recent[0])
    offered = platforms.tiktok().reject_reasons(str(request["cancel_id"]))
    found.update(
        read_with=str(request["cancel_id"]),
        offered=[code for code, _text in offered],
        picked=pick_reject_reason(tuple(offered), wanted),
    )
    if found["picked"] is None:
        found["detail"] = f"TikTok offers no reason meaning {wanted!r}"
        if settings.policy.c3_action == "reject":
            found["warnings"].append(
                f"tiktok: no reject reason offered means {wanted!r} "
                f"(offered: {', '.join(found['offered']) or 'none'}): "
                "every C3 rejection would be escalated; set policy reject_reason to one of them"
            )
    else:
        found["detail"] = f"policy reject_reason {wanted!r} -> {found['picked']}"
    return found


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def findings(wh: Warehouse, settings: RunSettings) -> dict:
    """From a dry run's warehouse: join coverage, the first run's actions by kind, unmapped carriers."""
    with wh.engine.connect() as conn:
        # the orders the run decided, as they stand (a run records only what changed since the last)
        in_play = [r["tiktok_order_id"] for r in RunStore(wh, settings).in_play_tiktok(columns=("tiktok_order_id",))]
        links = list(latest_rows(conn, order_links, settings.shop, in_play).values())
        decided = list(latest_rows(conn, decisions, settings.shop, in_play).values())
        carried = {
            d["tiktok_order_id"]: d["inputs"]["unmapped_carriers"]
            for d in decided
            if d["inputs"].get("unmapped_carriers")
        }
        options = {
            r.tiktok_order_id: r.raw.get("delivery_option_id")
            for r in conn.execute(
                sa.select(stg_tiktok_orders.c.tiktok_order_id, stg_tiktok_orders.c.raw).where(
                    stg_tiktok_orders.c.shop == settings.shop, stg_tiktok_orders.c.tiktok_order_id.in_(sorted(carried))
                )
            )
        }
        providers = {
            r.delivery_option_id: [p.get("name") for p in r.providers]
            for r in conn.execute(
                sa.select(tiktok_shipping_providers.c.delivery_option_id, tiktok_shipping_providers.c.providers).where(
                    tiktok_shipping_providers.c.shop == settings.shop
                )
            )
        }
    unmatched = sorted(
        link["tiktok_order_id"] for link in links if link["link_problem"] == LinkProblem.NO_SHOPIFY_MATCH.value
    )
    by_carrier: dict[str, dict] = defaultdict(lambda: {"orders": 0, "delivery_options": {}})
    for order_id, carriers in sorted(carried.items()):
        option = options.get(order_id)
        for carrier in carriers:
            entry = by_carrier[carrier]
            entry["orders"] += 1
            if option:
                entry["delivery_options"][option] = providers.get(option, [])
    return {
        "join": {
            "matched": dict(sorted(Counter(link["match_rule"] for link in links if link["match_rule"]).items())),
            "unmatched": len(unmatched),
        },
        "examples": {"unmatched": unmatched[:EXAMPLES]},
        "first_run": dict(sorted(Counter(key.split(":", 1)[0] for d in decided for key in d["actions"]).items())),
        # orders whose first tracking would be Amazon's early number, or the carrier's
        "tracking_sources": dict(
            sorted(Counter(s for d in decided for s in d["inputs"].get("tracking_sources", ())).items())
        ),
        "rules": dict(sorted(Counter(d["rule"] for d in decided).items())),
        "unmapped_carriers": [{"carrier": carrier, **entry} for carrier, entry in sorted(by_carrier.items())],
    }


def dry_run(settings: RunSettings, platforms: Platforms) -> dict:
    """The real pipeline, dry, against a scratch SQLite warehouse (and validation results folder)
    in a temporary folder that is deleted afterwards: nothing of the shop's is written."""
    with (
        tempfile.TemporaryDirectory(prefix="orderops-preflight-") as scratch,
        _env(GX_DIR_ENV, os.path.join(scratch, "gx")),
    ):
        wh = Warehouse(f"sqlite:///{os.path.join(scratch, 'warehouse.db')}")
        try:
            summary = run_all(settings, platforms, wh)
            found = findings(wh, settings)
        finally:
            wh.dispose()
    found["summary"] = {key: summary[key] for key in ("state", "orders_seen", "validation_failures", "quarantined")}
    return found


def preflight(shop: Shop, days: int, now: datetime | None = None, fulfillers: list[str] | None = None) -> dict:
    """The go-live report of `shop` (see the module's doc); `now` is the platforms' clock (the
    sandbox's in tests), by default the wall clock. `ok` is False when the first run would fail."""
    now = now or datetime.now(timezone.utc)
    settings = dry_run_settings(shop, days, now, fulfillers)
    today = now.date()
    # the clients judge versions on the preflight's clock too
    platforms = Platforms(settings, overrides={"shipbob": {"today": lambda: today}})
    report: dict[str, Any] = {
        "ok": False,
        "shop": shop.name,
        "now": now.isoformat(),
        "days": days,
        "connections": {},
        "market": None,
        "reject_reasons": [],
        "reject_reason": None,
        "join": None,
        "examples": {"unmatched": []},
        "first_run": None,
        "tracking_sources": {},
        "unmapped_carriers": [],
        "problems": [],
        "warnings": [],
    }
    problems, warnings = report["problems"], report["warnings"]
    try:
        for platform in ("tiktok", "shopify", *settings.fulfillers):
            entry = check_connection(platform, settings, platforms, today)
            report["connections"][platform] = entry
            problems += [f"{platform} (connection {entry['connection']}): {p}" for p in entry["problems"]]
            warnings += entry["warnings"]
        report["market"] = report["connections"]["tiktok"].pop("market", None)
        if report["connections"]["tiktok"]["ok"]:
            try:
                reasons = check_reject_reasons(settings, platforms, now, days)
            except PlatformError as exc:
                # every C3 rejection would wait on this read: the app may lack the return/refund scope
                reasons = {
                    "policy": settings.policy.reject_reason,
                    "offered": [],
                    "picked": None,
                    "warnings": [],
                    "detail": f"reject reasons could not be read: {exc}",
                }
                problems.append(
                    f"tiktok (connection {settings.connections.tiktok}): reject reasons could not be "
                    f"read, so no buyer cancellation could be rejected: {exc}"
                )
            warnings += reasons.pop("warnings")
            report["reject_reasons"] = reasons.pop("offered")
            report["reject_reason"] = reasons
        if problems:
            problems.append("dry run: not run, a connection failed")
        else:
            try:
                found = dry_run(settings, platforms)
            except (*CONNECTION_ERRORS, sa.exc.SQLAlchemyError) as exc:
                problems.append(f"dry run: failed: {exc}")
            else:
                report.update(
                    {
                        key: found[key]
                        for key in ("join", "examples", "first_run", "tracking_sources", "rules", "unmapped_carriers")
                    }
                )
                report["dry_run"] = found["summary"]
                problems += [
                    f"dry run: validation failed for {batch}: the first run acts on nothing that depends on it"
                    for batch in found["summary"]["validation_failures"]
                ]
                if found["join"]["unmatched"]:
                    warnings.append(
                        f"join: {found['join']['unmatched']} TikTok order(s) carry no Shopify order "
                        f"(e.g. {', '.join(found['examples']['unmatched'])}): the first run escalates "
                        "them once past the policy's no_shopify_grace_minutes"
                    )
                warnings += [
                    f"carrier {c['carrier']} maps to no TikTok provider ({c['orders']} order(s)): the first "
                    "run escalates them (T2); map it in the inbox or policy carrier_overrides"
                    for c in found["unmapped_carriers"]
                ]
    finally:
        platforms.close()
    report["ok"] = not problems
    return report


def render(report: dict) -> str:
    """The report as readable text, in the order of the checks."""
    lines = [
        f"orderops preflight of shop {report['shop']} (last {report['days']} days to {report['now']}): "
        + ("OK" if report["ok"] else "PROBLEMS")
    ]
    lines.append("Connections")
    for platform, c in report["connections"].items():
        version = (
            c["version"]
            if not isinstance(c["version"], dict)
            else ", ".join(f"{op} {v}" for op, v in c["version"].items())
        )
        support = "" if c["version"] is None else f", supported until {c['supported_until'] or 'no end announced'}"
        lines.append(
            f"  {platform} ({c['connection']}): {'ok' if c['ok'] else 'FAILED'}; "
            f"API {version or 'version unknown'}{support}"
        )
        if c.get("served_version") and c["served_version"] != c["version"]:
            lines.append(f"    served {c['served_version']}")
        if c["detail"]:
            lines.append(f"    {c['detail']}")
        lines += [f"    problem: {p}" for p in c["problems"]]
    lines.append("Market and reject reasons")
    lines.append(f"  market {report['market'] or 'unknown'}")
    reasons = report["reject_reason"]
    if reasons is not None:
        read = f" (read with cancellation {reasons['read_with']})" if reasons.get("read_with") else ""
        lines.append(f"  offered{read}: {', '.join(report['reject_reasons']) or 'none read'}")
        lines.append(f"  {reasons['detail']}")
    lines.append("Dry run")
    if report["join"] is None:
        lines.append("  not run")
    else:
        matched = ", ".join(f"{rule} {n}" for rule, n in report["join"]["matched"].items()) or "none"
        lines.append(f"  orders in play: {sum(report['rules'].values())}; Shopify orders found by: {matched}")
        lines.append(
            f"  unmatched: {report['join']['unmatched']}"
            + (f" (e.g. {', '.join(report['examples']['unmatched'])})" if report["join"]["unmatched"] else "")
        )
        lines.append(
            "  the first run would: "
            + (", ".join(f"{kind} {n}" for kind, n in report["first_run"].items()) or "do nothing")
        )
        if report["tracking_sources"]:
            lines.append(
                "  tracking it would post: "
                + ", ".join(
                    f"{n} {'Amazon early (AFTN)' if source == 'aftn' else source}"
                    for source, n in report["tracking_sources"].items()
                )
            )
        for c in report["unmapped_carriers"]:
            where = "; ".join(
                f"delivery option {option} offers {', '.join(names) or 'no provider'}"
                for option, names in c["delivery_options"].items()
            )
            lines.append(
                f"  carrier {c['carrier']}: no TikTok provider ({c['orders']} order(s))"
                + (f"; {where}" if where else "")
            )
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += [f"problem: {p}" for p in report["problems"]]
    return "\n".join(lines)
