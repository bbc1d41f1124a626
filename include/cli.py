"""Command line of orderops.

`python -m include.cli trace <tiktok_order_id>` prints an order's whole chain, answering "why
was this order cancelled / tracked / escalated?": where it stands now (the latest snapshot and
what orderops has done since it was taken), what each platform said (staged snapshot), how the
order was linked (match rule), what was decided (rule, reason, policy version), and every side
effect (ledger row, its state, the platform's request id and the Airflow dag/run/task/try/map
index that made it).

`python -m include.cli pools [--out FILE]` writes the Airflow pools orderops uses, in the form
`airflow pools import FILE` reads.

`python -m include.cli preflight [--shop NAME] [--days 7] [--json FILE]` checks a shop's
connections before go-live, read-only, with a dry run of the last days (docs/preflight.md); exit 0
when nothing would fail on the first run, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime

import sqlalchemy as sa

from include.run.runconfig import STATE_DIR, RunConfigError
from include.run.shops import SHOPS_FILE_ENV, load_shops
from include.run.steps import pools_file
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    decisions,
    order_links,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_shopify_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
)

WAREHOUSE_ENV = "ORDEROPS_WAREHOUSE_URL"
PREFLIGHT_DAYS = 7


def default_url() -> str:
    return os.environ.get(WAREHOUSE_ENV) or f"sqlite:///{STATE_DIR / 'warehouse.db'}"


def _fmt(value) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


# What a succeeded side effect changed, by action kind.
EFFECTS = {
    "post_tracking": lambda r: f"tracking {r['request'].get('tracking_number', '?')} posted to TikTok",
    "add_note": lambda r: "note and tag added to the Shopify order",
    "cancel_fulfillment": lambda r: f"fulfillment order {r['target']} cancelled at the fulfiller",
    "verify_fulfillment_cancel": lambda r: "the fulfiller shows the cancel",
    "cancel_shopify_order": lambda r: "Shopify order cancelled and refunded",
    "approve_cancellation": lambda r: "buyer cancellation approved on TikTok (the order is cancelled there)",
    "reject_cancellation": lambda r: "buyer cancellation rejected on TikTok",
    "escalate": lambda r: f"escalated to a person ({r['request'].get('reason_code', '?')})",
    "map_carrier": lambda r: (
        f"carrier {r['request'].get('carrier')} mapped to {r['request'].get('provider')} by {r['request'].get('by')}"
    ),
    "retry_action": lambda r: (
        f"retry of {r['request'].get('key')} asked by {r['request'].get('by')} (it was {r['request'].get('was')})"
    ),
}


def trace(wh: Warehouse, tiktok_order_id: str, shop: str | None = None) -> list[str]:
    """The lines of an order's chain: where it stands now, then each section oldest first."""
    out: list[str] = []
    with wh.engine.connect() as conn:

        def rows(table, *where, order=None):
            query = sa.select(table).where(*where)
            if shop:
                query = query.where(table.c.shop == shop)
            if order is not None:
                query = query.order_by(order)
            return [dict(r._mapping) for r in conn.execute(query)]

        orders = rows(stg_tiktok_orders, stg_tiktok_orders.c.tiktok_order_id == tiktok_order_id)
        if not orders:
            return [f"no staged TikTok order {tiktok_order_id}"]
        ledger = rows(action_ledger, action_ledger.c.tiktok_order_id == tiktok_order_id, order=action_ledger.c.id)
        out.append("Now")
        for o in orders:
            # the snapshot was taken before that run's actions: what succeeded since changes the picture
            since = [
                a
                for a in ledger
                if a["shop"] == o["shop"] and a["state"] == "succeeded" and a["updated_at"] >= o["extracted_at"]
            ]
            out.append(f"  TikTok {o['status']} as read at {_fmt(o['extracted_at'])} (snapshot {o['snapshot_run_id']})")
            out += [f"  then {_fmt(a['updated_at'])}: {EFFECTS.get(a['kind'], lambda r: r['kind'])(a)}" for a in since]
            open_rows = [
                a for a in ledger if a["shop"] == o["shop"] and a["state"] in ("pending", "in_flight", "failed")
            ]
            out += [
                f"  open: {a['kind']} {a['state']}" + (f" ({a['detail']})" if a["detail"] else "") for a in open_rows
            ]
        for o in orders:
            out.append(f"TikTok order {tiktok_order_id} (shop {o['shop']}, snapshot {o['snapshot_run_id']})")
            out.append(
                f"  status {o['status']}, {o['fulfillment_type']}, ship by {_fmt(o['rts_sla_time'])}, "
                f"tracking {o['tracking_number'] or '-'}"
            )
        for c in rows(stg_tiktok_cancellations, stg_tiktok_cancellations.c.tiktok_order_id == tiktok_order_id):
            out.append(
                f"  cancellation {c['cancel_id']}: {c['status']} ({c['role']}), respond by {_fmt(c['deadline'])}"
            )
        links = rows(order_links, order_links.c.tiktok_order_id == tiktok_order_id, order=order_links.c.decided_at)
        shopify_ids, fulfillment_ids = set(), set()
        # runs record an order's link and decision only when they change: the history is its changes
        out += ["Links", "  (as they changed: a run records them only when they differ; the last stands)"]
        for link in links:
            shopify_ids.update(link["shopify_order_ids"])
            if link["fulfillment_order_id"]:
                fulfillment_ids.add((link["fulfiller"], link["fulfillment_order_id"]))
            out.append(
                f"  {_fmt(link['decided_at'])} run {link['run_id']}: shopify {link['shopify_order_ids'] or '-'}"
                f" by {link['match_rule'] or '-'}"
                f" -> {link['fulfiller'] or '-'} {link['fulfillment_order_id'] or ''}"
                + (f"  [{link['link_problem']}]" if link["link_problem"] else "")
            )
        for s in rows(stg_shopify_orders, stg_shopify_orders.c.shopify_order_id.in_(sorted(shopify_ids))):
            out.append(
                f"  Shopify {s['shopify_order_id']} {s['name']}: "
                f"cancelled {_fmt(s['cancelled_at']) if s['cancelled_at'] else 'no'}"
                f", {s['financial_status']}, tags {s['tags']}"
            )
        for fulfiller, fid in sorted(fulfillment_ids):
            if fulfiller == "amazon_mcf":
                found = rows(
                    stg_amazon_fulfillment_orders, stg_amazon_fulfillment_orders.c.seller_fulfillment_order_id == fid
                )
            else:
                found = rows(stg_shipbob_orders, stg_shipbob_orders.c.shipbob_order_id == fid)
            for f in found:
                out.append(f"  {fulfiller} {fid}: {f['status']}, shipments {_fmt(f['shipments'])}")
        out += ["Decisions", "  (as they changed: a run records one only when it differs; the last stands)"]
        for d in rows(decisions, decisions.c.tiktok_order_id == tiktok_order_id, order=decisions.c.decided_at):
            out.append(
                f"  {_fmt(d['decided_at'])} run {d['run_id']}: {d['rule']} {d['reason']} (policy {d['policy_version']})"
            )
            for key in d["actions"]:
                out.append(f"    -> {key}")
        out.append("Actions (ledger)")
        for a in ledger:
            out.append(
                f"  {a['kind']} [{a['rule']}] {a['state']} after {a['attempts']} attempt(s); "
                f"platform request id {a['platform_request_id'] or '-'}"
            )
            out.append(f"    key {a['idempotency_key']}; target {a['target']}")
            out.append(
                f"    by {a['dag_id']}/{a['run_id']}/{a['task_id']} try {a['try_number']} map {a['map_index']}"
                f"; decided in {a['decision_run_id']}"
            )
            out.append(f"    request {_fmt(a['request'])}")
            if a["response"] is not None:
                out.append(f"    response {_fmt(a['response'])}")
            if a["detail"]:
                out.append(f"    detail {a['detail']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    p_trace = sub.add_parser("trace", help="print an order's chain: snapshots, links, decisions, actions")
    p_trace.add_argument("tiktok_order_id")
    p_trace.add_argument("--shop")
    p_trace.add_argument(
        "--warehouse", default=None, help=f"SQLAlchemy URL (default ${WAREHOUSE_ENV} or state/warehouse.db)"
    )
    p_pools = sub.add_parser("pools", help="write the Airflow pools orderops uses, for `airflow pools import`")
    p_pools.add_argument("--out", default=None, help="file to write (default: standard output)")
    p_pools.add_argument("--shops", type=int, default=1, help="shops the deployment serves (they share the pools)")
    p_pre = sub.add_parser("preflight", help="check a shop's connections before go-live, with a dry run (read-only)")
    p_pre.add_argument("--shop", help="the shop of the shops file (default: its only shop)")
    p_pre.add_argument(
        "--days", type=int, default=PREFLIGHT_DAYS, help="dry run over the last DAYS days (default %(default)s)"
    )
    p_pre.add_argument("--json", dest="json_file", help="also write the report as JSON to this file")
    p_pre.add_argument(
        "--fulfillers", help="comma-separated, as the DAG's fulfillers param (default amazon_mcf,shipbob)"
    )
    p_pre.add_argument("--now", help="the platforms' clock, ISO-8601 with a time zone (a sandbox's; default: now)")
    args = parser.parse_args(argv)
    if args.command == "preflight":
        return run_preflight(parser, args)
    if args.command == "pools":
        if args.shops < 1:
            parser.error("--shops: expected 1 or more")
        text = json.dumps(pools_file(args.shops), indent=2) + "\n"
        if args.out:
            try:
                with open(args.out, "w") as f:
                    f.write(text)
            except OSError as exc:
                parser.error(f"--out {args.out}: {exc.strerror}")
        else:
            sys.stdout.write(text)
        return 0
    try:
        url = sa.engine.make_url(args.warehouse or default_url())
    except sa.exc.ArgumentError:
        url = None
    if url is None or url.get_backend_name() not in ("sqlite", "postgresql"):
        parser.error(
            f"--warehouse: {args.warehouse or default_url()!r} is not a database URL this orderops can open "
            "(sqlite:///PATH or postgresql://USER@HOST:PORT/DB)"
        )
    shown = url.render_as_string(hide_password=True)
    # reading a SQLite file that is not there would create an empty one: say where it was looked for
    if url.get_backend_name() == "sqlite" and url.database and not os.path.exists(url.database):
        print(
            f"error: no warehouse at {url.database} (set ${WAREHOUSE_ENV} or --warehouse to the run's warehouse)",
            file=sys.stderr,
        )
        return 1
    wh = Warehouse(url.render_as_string(hide_password=False))
    try:
        lines = trace(wh, args.tiktok_order_id, args.shop)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        print(f"error: cannot read the warehouse {shown}: {exc.orig}", file=sys.stderr)
        return 1
    finally:
        wh.dispose()
    print(f"warehouse {shown}")
    print("\n".join(lines))
    return 0 if not lines[0].startswith("no staged") else 1


def run_preflight(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # imported here: it loads Airflow and the pipeline, which trace and pools do without
    from include import preflight

    try:
        preflight.check_days(args.days)
    except preflight.PreflightError as exc:
        parser.error(f"--{exc}")
    now = None
    if args.now:
        try:
            now = datetime.fromisoformat(args.now.replace("Z", "+00:00"))
        except ValueError:
            parser.error(f"--now: {args.now!r} is not an ISO-8601 time")
        if now.tzinfo is None:
            parser.error(f"--now: {args.now!r} has no time zone")
    try:
        shops = load_shops()
    except RunConfigError as exc:
        parser.error(str(exc))
    names = [s.name for s in shops]
    if args.shop is None and len(shops) > 1:
        parser.error(f"--shop: ${SHOPS_FILE_ENV} lists several shops ({', '.join(names)}); name one")
    shop = next((s for s in shops if args.shop in (None, s.name)), None)
    if shop is None:
        parser.error(f"--shop: no shop {args.shop!r} (shops: {', '.join(names)})")
    fulfillers = args.fulfillers.split(",") if args.fulfillers else None
    try:
        report = preflight.preflight(shop, args.days, now, fulfillers)
    except RunConfigError as exc:  # a bad --fulfillers or --now, as the DAG's params would be refused
        parser.error(str(exc))
    print(preflight.render(report))
    if args.json_file:
        try:
            with open(args.json_file, "w") as f:
                json.dump(report, f, indent=2)
                f.write("\n")
        except OSError as exc:
            parser.error(f"--json {args.json_file}: {exc.strerror}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
