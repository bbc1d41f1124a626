"""What the chaos, crash, concurrency and security tests share.

- `chaos_scenario`: a generated scenario (docs/architecture.md §6) with enough cancellations that every saga
  path is exercised in a few dozen orders.
- `SandboxRig`: one sandbox on loopback ports for a module; each case reloads its scenario through
  the admin API, points the Airflow connections (AIRFLOW_CONN_* variables) at it with per-case
  extras (`timeout`, `max_attempts`) and runs `run_all`.
- `arm`: injects faults once a given write reaches the sandbox (GraphQL shares one path, so a
  Shopify write can only be targeted by time). It wraps the sandbox's write recorder: the
  simulators themselves answer exactly as they would.
- `Audit`: the docs/architecture.md §3 safety invariants and the at-most-once rule, checked from the sandbox's
  write log (every write it received, in order) against the scenario, plus the set of effects.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import sqlalchemy as sa

from include.act.ledger import Ledger
from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from include.store.warehouse import Warehouse
from orderops_provider.base import http_client, tls_context
from sandbox.connections import CONNECTION_IDS, sandbox_connections
from sandbox.core import Sandbox, Settings, WriteRecord, parse_fault
from sandbox.generate import generate
from sandbox.scenario import parse_scenario
from sandbox.server import SandboxServer
from sandbox.tiktok import shipped_with
from tests.support import NOW_ISO as NOW

WINDOW = {"window_start": "2026-11-20T14:30:00Z", "window_end": NOW}
POLICY = {"cancel_verify_timeout_minutes": 0.05}  # C4 3 s after the cancel, on the platforms' clock
PG_BASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
# Reports come back at once and a Shopify cancel job reads done on its first poll: the report
# poll (15 s) and the job poll (1 s per cancel) would otherwise dominate every run.
# Amazon's early tracking numbers off: a static scenario's orders were received long before its "now",
# so whether a run meets one depends on which of its reads (the report, or one by one) saw the order,
# and the fault runs are compared with one clean run (tests/e2e and tests/simulation cover the numbers)
FAST = {
    "amazon_mcf": {"report_queue_seconds": 0, "report_processing_seconds": 0, "aftn_minutes": 0},
    "shopify": {"cancel_job_polls": 1},
}
# ... so the client polls a report at once (connection extra), rather than after a second each run.
FAST_CLIENTS = {"amazon_mcf": {"first_report_poll": 0}}


def sandbox_settings() -> Settings:
    return Settings(clock_rate=0, platforms=copy.deepcopy(FAST))


# ---------------------------------------------------------------------------- scenario
def chaos_scenario(
    orders: int = 60,
    seed: int = 11,
    *,
    amazon_c1: int = 2,
    shipbob_c1: int = 0,
    c2: int = 0,
    c3: int = 1,
    ambiguous: int = 1,
    cancel_ignored: bool = False,
) -> dict:
    """A generated scenario plus buyer cancellations on orders whose fulfiller has not started.

    The generator's 3% cancellable share gives one or two sagas in 60 orders; the chaos cases need
    several per fulfiller, so some in-progress orders get a pending cancellation.
    """
    doc = generate(orders, seed, now=NOW)
    plain = [
        o
        for o in doc["orders"]
        if o["tiktok"]["status"] == "AWAITING_SHIPMENT"
        and o["tiktok"]["cancellation"] is None
        and isinstance(o["shopify"], dict)
        and o["tiktok"]["fulfillment_type"] == "FULFILLMENT_BY_SELLER"
    ]

    def add_cancel(order: dict) -> None:
        tt = order["tiktok"]
        tt["cancellation"] = {
            "cancel_id": "4035" + tt["id"][3:],
            "status": "CANCELLATION_REQUEST_PENDING",
            "create_time": "2026-11-20T14:40:00Z",
            "deadline": "2026-11-22T14:40:00Z",
        }

    def take(pred: Callable[[dict], bool], n: int) -> list[dict]:
        chosen = [o for o in plain if pred(o)][:n]
        for o in chosen:
            plain.remove(o)
            add_cancel(o)
        return chosen

    amazon = take(
        lambda o: (
            o["fulfiller"] == "amazon_mcf"
            and o["amazon_mcf"]["status"] == "Planning"
            and not o["amazon_mcf"]["shipments"]
        ),
        amazon_c1,
    )
    take(
        lambda o: (
            o["fulfiller"] == "shipbob"
            and all(s.get("status_detail") == "Allocated" for s in o["shipbob"]["shipments"])
        ),
        shipbob_c1,
    )
    take(
        lambda o: (
            o["fulfiller"] is not None
            and o["tiktok"]["tracking_number"] == ""
            and (
                (o["amazon_mcf"] or {}).get("status") == "Complete" or (o["shipbob"] or {}).get("status") == "Fulfilled"
            )
        ),
        c3,
    )
    for o in take(
        lambda o: (
            o["fulfiller"] is not None
            and (o["amazon_mcf"] or {}).get("status") != "Complete"
            and (o["shipbob"] or {}).get("status") != "Fulfilled"
        ),
        c2,
    ):
        o["fulfiller"], o["amazon_mcf"], o["shipbob"] = None, None, None
    # a shipped order whose TikTok id two Shopify orders carry: it must never be acted on
    for o in (
        [o for o in plain if (o["amazon_mcf"] or {}).get("status") == "Complete"][-ambiguous:] if ambiguous else []
    ):
        plain.remove(o)
        first = o["shopify"]
        o["shopify"] = [first, dict(first, id=first["id"] + 1, name=first["name"] + "-R")]
    if cancel_ignored:
        for o in amazon:
            o["amazon_mcf"]["cancel_ignored"] = True
    parse_scenario(doc)
    return doc


# ---------------------------------------------------------------------------- sandbox + runs
@contextlib.contextmanager
def patched_env(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def fresh_warehouse(kind: str, tmp_path) -> Iterable[Warehouse]:
    """An empty warehouse: a SQLite file, or a schema of its own on the machine's PostgreSQL."""
    if kind == "sqlite":
        wh = Warehouse(f"sqlite:///{tmp_path / f'wh-{uuid.uuid4().hex[:8]}.db'}")
        try:
            yield wh
        finally:
            wh.dispose()
        return
    schema = f"orderops_chaos_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    wh = Warehouse(f"{PG_BASE}?options=-csearch_path%3D{schema}")
    try:
        yield wh
    finally:
        wh.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


class SandboxRig:
    """One sandbox for many cases: reload a scenario, arm faults, run the pipeline, audit."""

    def __init__(self, scenario: dict):
        self.sandbox = Sandbox(parse_scenario(scenario), sandbox_settings())
        self.server = SandboxServer(self.sandbox, ports={name: 0 for name in self.sandbox.apps()}).start()
        self.urls = self.server.urls
        self.scenario = scenario
        self._arms: list[dict] = []
        self._record = self.sandbox.record_write
        self.sandbox.record_write = self._recording
        self.password_overrides: dict[str, str] = {}
        self.admin = http_client(timeout=30)  # the admin API's calls, on one connection pool

    def stop(self) -> None:
        self.admin.close()
        self.server.stop()

    # scenario and faults, through the admin API like any outside tool
    def load(self, scenario: dict) -> None:
        self.scenario = scenario
        self._arms.clear()
        self.password_overrides.clear()
        answer = self.admin.post(f"{self.urls['tiktok']}/_sandbox/scenario", json=scenario)
        assert answer.status_code == 200, answer.text

    def fault(self, spec: dict) -> None:
        answer = self.admin.post(f"{self.urls[spec['platform']]}/_sandbox/faults", json=spec)
        assert answer.status_code == 200, answer.text

    def advance(self, seconds: float) -> None:
        """Time passes on the platforms (between runs): jobs finish, nothing else is near a transition."""
        self.admin.post(f"{self.urls['tiktok']}/_sandbox/clock", json={"advance_seconds": seconds})

    def faults(self) -> list[dict]:
        return self.admin.get(f"{self.urls['tiktok']}/_sandbox/faults").json()

    def clear_faults(self) -> None:
        self._arms.clear()
        self.admin.delete(f"{self.urls['tiktok']}/_sandbox/faults")

    def arm(
        self,
        trigger: Callable[[WriteRecord], bool],
        faults: list[dict] = (),
        action: Callable[[WriteRecord], None] | None = None,
    ) -> None:
        """Once a write matching `trigger` is recorded, inject `faults` and/or call `action`."""
        self._arms.append({"trigger": trigger, "faults": [parse_fault(f) for f in faults], "action": action})

    def _recording(self, *args, **kwargs) -> WriteRecord:
        record = self._record(*args, **kwargs)
        for armed in list(self._arms):
            if armed["trigger"](record):
                self._arms.remove(armed)
                for fault in armed["faults"]:
                    self.sandbox.add_fault(copy.copy(fault))
                if armed["action"] is not None:
                    armed["action"](record)
        return record

    def state(self, platform: str) -> dict:
        return self.admin.get(f"{self.urls['tiktok']}/_sandbox/state/{platform}").json()

    # connections and runs
    def connection_env(self, extras: dict[str, dict] | None = None) -> dict[str, str]:
        """AIRFLOW_CONN_* for the sandbox, with per-platform extras (timeout, max_attempts, ...)."""
        docs = sandbox_connections(self.urls)
        for given in (FAST_CLIENTS, extras or {}):
            for platform, extra in given.items():
                docs[platform]["extra"].update(extra)
        for platform, password in self.password_overrides.items():
            docs[platform]["password"] = password
        return {f"AIRFLOW_CONN_{CONNECTION_IDS[p].upper()}": json.dumps(d) for p, d in docs.items()}

    def run(
        self,
        wh: Warehouse,
        run_id: str,
        *,
        extras: dict[str, dict] | None = None,
        rewrite: Callable[[httpx.Request, Any], Any] | None = None,
        **params,
    ) -> dict:
        """A run deciding on the platforms' clock (as the DAG does against the sandbox); `rewrite`
        edits the platforms' answers on their way back (`RewritingTransport`)."""
        params.setdefault("now", self.now())
        with patched_env(self.connection_env(extras)):
            return run_pipeline(wh, run_id, rewrite=rewrite, **params)

    def now(self) -> str:
        return self.admin.get(f"{self.urls['tiktok']}/_sandbox/clock").json()["now"]

    @property
    def writes(self) -> list[WriteRecord]:
        return list(self.sandbox.writes)


def run_pipeline(
    wh: Warehouse,
    run_id: str,
    *,
    lanes: int = 1,
    rewrite: Callable[[httpx.Request, Any], Any] | None = None,
    observe: Callable[[str], Any] | None = None,
    **params,
) -> dict:
    """`run_all` as the tests use it: the scenario's clock and window, a short C4 timeout."""
    params = {"now": NOW, **WINDOW, "policy": POLICY, **params}
    settings = run_settings(dag_id="orderops_sla", run_id=run_id, params=params)
    if rewrite is None:
        platforms = Platforms(settings)
    else:
        transport = RewritingTransport(rewrite)
        platforms = Platforms(settings, factory=lambda p: hook_client(p, transport=transport))
    try:
        return run_all(settings, platforms, wh, lanes=lanes, observe=observe)
    finally:
        platforms.close()


def clean_history(rig: SandboxRig, folder, runs: int = 1) -> dict:
    """What a fault-free history does with the rig's scenario (`runs` runs, 10 platform seconds
    apart): the effects on the platforms and the orders escalated, to compare a faulted one with."""
    rig.load(rig.scenario)
    with fresh_warehouse("sqlite", folder) as wh:
        for n in range(1, runs + 1):
            if n > 1:
                rig.advance(10)
            rig.run(wh, f"clean-{n}")
        checked = audit(rig)
        assert checked.violations == []
        assert unfinished(wh) == []
        return {"effects": checked.done_effects(), "escalations": escalations(wh)}


# ---------------------------------------------------------------------------- audit
ORDER_WRITES = {
    "mark_package_as_shipped",
    "approve_cancellation",
    "reject_cancellation",
    "orderUpdate",
    "tagsAdd",
    "orderCancel",
    "cancelFulfillmentOrder",
}
SHIPPABLE = ("AWAITING_SHIPMENT", "PARTIALLY_SHIPPING")
AMAZON_CANCELLABLE = ("New", "Received", "Planning")
SHIPBOB_PAST_PICK = ("Picked", "Packed", "Labeled")


def is_order_write(w: WriteRecord) -> bool:
    return w.operation in ORDER_WRITES or (w.platform == "shipbob" and "cancel" in w.path)


@dataclass(frozen=True)
class Effect:
    """One write as an effect on a target; `replay` is what makes a resend the same request."""

    kind: str
    target: str
    detail: str = ""
    replay: str | None = None


def effect_of(w: WriteRecord) -> Effect | None:
    if w.platform == "tiktok":
        if w.operation == "mark_package_as_shipped":
            order = re.search(r"/orders/(\d+)/packages", w.path).group(1)
            return Effect("post_tracking", order, shipped_with(w.body).get("tracking_number", ""))
        if w.operation in ("approve_cancellation", "reject_cancellation"):
            cancel = re.search(r"/cancellations/(\d+)/", w.path).group(1)
            return Effect(w.operation, cancel, replay=w.query.get("idempotency_key"))
        return None
    if w.platform == "shopify" and w.operation in ("orderUpdate", "tagsAdd", "orderCancel"):
        variables = (w.body or {}).get("variables") or {}
        gid = variables.get("orderId") or variables.get("id") or (variables.get("input") or {}).get("id")
        replay = json.dumps(variables, sort_keys=True) if w.operation != "orderCancel" else None
        return Effect(
            {"orderUpdate": "shopify_note", "tagsAdd": "shopify_tags", "orderCancel": "shopify_cancel"}[w.operation],
            str(gid),
            replay=replay,
        )
    if w.platform == "amazon_mcf" and w.operation == "cancelFulfillmentOrder":
        return Effect("amazon_cancel", unquote(re.search(r"/fulfillmentOrders/(.+)/cancel$", w.path).group(1)))
    if w.platform == "shipbob" and "cancel" in w.path:
        return Effect("shipbob_cancel", re.search(r"/order/(\d+)[:/]cancel", w.path).group(1))
    return None


@dataclass
class Audit:
    """Checks one sandbox write log against the scenario it started from."""

    scenario: dict
    writes: list[WriteRecord]
    amazon_state: dict
    shipbob_state: dict
    violations: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.orders = {o["tiktok"]["id"]: o for o in self.scenario["orders"]}
        self.by_cancel = {
            o["tiktok"]["cancellation"]["cancel_id"]: tid
            for tid, o in self.orders.items()
            if o["tiktok"].get("cancellation")
        }
        self.by_gid: dict[str, list[str]] = defaultdict(list)
        for tid, o in self.orders.items():
            shopify = o["shopify"] if isinstance(o["shopify"], list) else [o["shopify"]] if o["shopify"] else []
            for s in shopify:
                self.by_gid[f"gid://shopify/Order/{s['id']}"].append(tid)
        self.by_amazon = {
            o["amazon_mcf"]["seller_fulfillment_order_id"]: tid for tid, o in self.orders.items() if o.get("amazon_mcf")
        }
        self.by_shipbob = {str(o["shipbob"]["order_id"]): tid for tid, o in self.orders.items() if o.get("shipbob")}
        self.amazon_now = {
            o["fulfillmentOrder"]["sellerFulfillmentOrderId"]: o["fulfillmentOrder"]["fulfillmentOrderStatus"]
            for o in self.amazon_state["orders"]
        }
        self.shipbob_now = {str(o["id"]): o["status"] for o in self.shipbob_state["orders"]}
        self.effects = [(w, effect_of(w)) for w in self.writes]
        self.effects = [(w, e) for w, e in self.effects if e is not None]
        self.check()

    # the order an effect belongs to
    def order_of(self, e: Effect) -> str | None:
        if e.kind == "post_tracking":
            return e.target
        if e.kind in ("approve_cancellation", "reject_cancellation"):
            return self.by_cancel.get(e.target)
        if e.kind.startswith("shopify_"):
            owners = self.by_gid.get(e.target, [])
            return owners[0] if len(owners) == 1 else None
        if e.kind == "amazon_cancel":
            return self.by_amazon.get(e.target)
        return self.by_shipbob.get(e.target)

    def fulfiller_cancellable(self, o: dict) -> bool:
        if o.get("amazon_mcf"):
            m = o["amazon_mcf"]
            return m["status"] in AMAZON_CANCELLABLE and not any(
                s["status"] in ("PENDING", "SHIPPED") for s in m.get("shipments") or []
            )
        sb = o["shipbob"]
        return sb["status"] == "Processing" and not any(
            s.get("tracking") or s["status"] == "Completed" or s.get("status_detail") in SHIPBOB_PAST_PICK
            for s in sb.get("shipments") or []
        )

    def fulfiller_cancel_verified(self, o: dict, before_seq: int) -> bool:
        """No fulfillment order, one cancelled from the start, or our cancel that took (and shows)."""
        if o["fulfiller"] is None:
            return True
        if o.get("amazon_mcf"):
            sfo = o["amazon_mcf"]["seller_fulfillment_order_id"]
            if o["amazon_mcf"]["status"] == "Cancelled":
                return True
            asked = any(
                e.kind == "amazon_cancel" and e.target == sfo and w.outcome == "ok" and w.seq < before_seq
                for w, e in self.effects
            )
            return asked and self.amazon_now.get(sfo) == "Cancelled"
        oid = str(o["shipbob"]["order_id"])
        if o["shipbob"]["status"] == "Cancelled":
            return True
        asked = any(
            e.kind == "shipbob_cancel" and e.target == oid and w.outcome == "ok" and w.seq < before_seq
            for w, e in self.effects
        )
        return asked and self.shipbob_now.get(oid) == "Cancelled"

    def fail(self, text: str) -> None:
        self.violations.append(text)

    def check(self) -> None:
        approved_at: dict[str, int] = {}
        for w, e in self.effects:
            if e.kind == "approve_cancellation" and w.outcome == "ok":
                approved_at.setdefault(self.by_cancel.get(e.target), w.seq)
        for w, e in self.effects:
            tid = self.order_of(e)
            o = self.orders.get(tid)
            if o is None:
                if e.kind.startswith("shopify_") and len(self.by_gid.get(e.target, [])) > 1:
                    self.fail(f"#{w.seq} {e.kind} on {e.target}: a Shopify order shared by several TikTok orders")
                elif e.kind.startswith("shopify_") and e.target in self.by_gid:
                    pass
                else:
                    self.fail(f"#{w.seq} {e.kind} on {e.target}: not an order of the scenario")
                continue
            shopify = o["shopify"]
            if shopify is None or isinstance(shopify, list) and len(shopify) > 1:
                self.fail(f"#{w.seq} {e.kind} on order {tid}, whose Shopify link is ambiguous or missing")
            tt = o["tiktok"]
            if e.kind == "post_tracking":
                if tt["tracking_number"] or tt["status"] not in SHIPPABLE:
                    self.fail(
                        f"#{w.seq} tracking sent to {tid}, which was {tt['status']} with tracking "
                        f"{tt['tracking_number']!r}"
                    )
                if tid in approved_at and approved_at[tid] < w.seq:
                    self.fail(f"#{w.seq} tracking sent to {tid} after its cancellation was approved")
            elif e.kind in ("amazon_cancel", "shipbob_cancel"):
                if not tt.get("cancellation"):
                    self.fail(f"#{w.seq} {e.kind} {e.target} without a buyer cancellation on {tid}")
                if not self.fulfiller_cancellable(o):
                    self.fail(f"#{w.seq} {e.kind} {e.target}: the fulfillment order had shipped or started picking")
            elif e.kind in ("approve_cancellation", "shopify_cancel") and w.outcome == "ok":
                if not self.fulfiller_cancel_verified(o, w.seq):
                    self.fail(f"#{w.seq} {e.kind} for {tid} without a verified fulfiller cancel")
                # the default sequence: a Shopify cancel a connector may copy to TikTok as a seller
                # cancellation comes only after the buyer's request was approved
                if e.kind == "shopify_cancel" and not (tid in approved_at and approved_at[tid] < w.seq):
                    self.fail(f"#{w.seq} cancelled {tid}'s Shopify order before its request was approved on TikTok")
        # at most once: one successful effect per target; keyed requests may be replayed as-is
        done: dict[tuple, list] = defaultdict(list)
        for w, e in self.effects:
            if w.outcome == "ok":
                done[(e.kind, e.target, e.detail if e.kind == "post_tracking" else "")].append(e.replay)
        for (kind, target, _), replays in done.items():
            distinct = len(set(replays)) if replays[0] is not None else len(replays)
            if distinct > 1:
                self.fail(f"{kind} on {target} took effect {len(replays)} times ({distinct} distinct requests)")
        tracked = Counter(e.target for w, e in self.effects if e.kind == "post_tracking" and w.outcome == "ok")
        for order, n in tracked.items():
            if n > 1 and not self.partial(order):
                self.fail(f"tracking posted {n} times to {order}")

    def partial(self, order: str) -> bool:
        return len(self.orders[order]["tiktok"]["line_items"]) > 1

    def done_effects(self) -> set[tuple]:
        """What happened on the platforms, as a set (for comparing a faulted history with a clean one)."""
        return {(e.kind, e.target, e.detail) for w, e in self.effects if w.outcome == "ok"}

    def refused_writes(self) -> int:
        """Order writes the platform refused on their merits (not throttles, auth or server errors)."""
        return sum(
            1
            for w, e in self.effects
            if w.outcome not in ("ok", "THROTTLED") and w.status not in (401, 403, 429) and w.status < 500
        )


def audit(rig: SandboxRig, writes: list[WriteRecord] | None = None) -> Audit:
    return Audit(rig.scenario, rig.writes if writes is None else writes, rig.state("amazon_mcf"), rig.state("shipbob"))


def ledger_states(wh: Warehouse, shop: str = "default") -> Counter:
    return Counter((r["kind"], r["state"]) for r in Ledger(wh).rows(shop))


def escalations(wh: Warehouse, shop: str = "default") -> set[str]:
    return {r["idempotency_key"] for r in Ledger(wh).rows(shop, kind="escalate") if r["state"] == "succeeded"}


def unfinished(wh: Warehouse, shop: str = "default") -> list[dict]:
    """Ledger rows not settled: in flight, failed, or pending. Not counted: the verify row of a C4
    (failed: given up, or read once more and still not cancelled) and the refund/approval it holds
    back (pending, by design: never done unless the fulfiller one day shows the cancel)."""
    rows = Ledger(wh).rows(shop)
    c4 = {r["tiktok_order_id"] for r in rows if r["kind"] == "escalate" and r["rule"] == "C4"}
    return [
        r
        for r in rows
        if r["state"] == "in_flight"
        or r["state"] in ("failed", "pending")
        and not (
            r["tiktok_order_id"] in c4
            and r["kind"] in ("verify_fulfillment_cancel", "cancel_shopify_order", "approve_cancellation")
        )
    ]


def platform_secrets(rig: SandboxRig) -> dict[str, str]:
    """Every credential of the sandbox connections and every token the platforms have issued so far."""
    docs = sandbox_connections(rig.urls)
    found = {
        "tiktok app secret": docs["tiktok"]["password"],
        "tiktok refresh token": docs["tiktok"]["extra"]["refresh_token"],
        "shopify client secret": docs["shopify"]["extra"]["client_secret"],
        "amazon client secret": docs["amazon_mcf"]["password"],
        "amazon refresh token": docs["amazon_mcf"]["extra"]["refresh_token"],
        "shipbob token": docs["shipbob"]["password"],
    }
    platforms = rig.sandbox.platforms
    found.update({f"tiktok access token {i}": t for i, t in enumerate(platforms["tiktok"].access_tokens)})
    found.update({f"tiktok refresh token {i}": t for i, t in enumerate(platforms["tiktok"].refresh_tokens)})
    found.update({f"amazon access token {i}": t for i, t in enumerate(platforms["amazon_mcf"].tokens)})
    found.update({f"shopify access token {i}": t for i, t in enumerate(platforms["shopify"].tokens)})
    shipbob = platforms["shipbob"]
    found.update(
        {f"shipbob token {i}": t for i, t in enumerate(sorted(shipbob.active_tokens | shipbob.revoked_tokens))}
    )
    return {name: value for name, value in found.items() if value}


def scenario_pii(sandbox: Sandbox) -> set[str]:
    """Every buyer name, email, phone and street line the simulators serve (fake, but PII-shaped)."""
    found: set[str] = set()

    def walk(value: Any, keys: tuple[str, ...]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                # first and last names alone ("Sandbox", "Buyer") are words, not identifiers: the
                # full name, email, phone and street are what must never be stored
                if (
                    isinstance(v, str)
                    and any(part in k.lower() for part in keys)
                    and len(v) >= 6
                    and k not in ("first_name", "last_name")
                ):
                    found.add(v)
                else:
                    walk(v, keys)
        elif isinstance(value, list):
            for v in value:
                walk(v, keys)

    keys = ("name", "email", "phone", "address1", "address_line1", "addressline1", "full_address")
    for shop in sandbox.platforms["tiktok"].shops.values():
        for order in shop.orders.values():
            walk({"r": order.get("recipient_address"), "buyer_email": order.get("buyer_email")}, keys)
    for order in sandbox.platforms["shipbob"].orders.values():
        walk(order.recipient, keys)
    for order in sandbox.platforms["amazon_mcf"].orders.values():
        walk(order.address, keys)
    return {v for v in found if not v.startswith("$")}


# ---------------------------------------------------------------------------- answers rewritten in flight
class RewritingTransport(httpx.BaseTransport):
    """Sends every request to the real sandbox and lets a test rewrite the answer on its way back.

    A stand-in for a platform that serves broken or hostile data: the simulators only ever serve
    valid answers, so bad records (and foreign links) are put in at the client boundary, after the
    real HTTP exchange, where the client code under test cannot tell the difference.
    `rewrite(request, data)` gets the decoded JSON answer and returns the JSON to deliver (or None
    to deliver the answer unchanged); `respond(request)` may answer a request itself.
    """

    def __init__(
        self,
        rewrite: Callable[[httpx.Request, Any], Any] | None = None,
        respond: Callable[[httpx.Request], httpx.Response | None] | None = None,
    ):
        self.inner = httpx.HTTPTransport(verify=tls_context())
        self.rewrite = rewrite
        self.respond = respond
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.respond is not None:
            answer = self.respond(request)
            if answer is not None:
                return answer
        response = self.inner.handle_request(request)
        if self.rewrite is None:
            return response
        body = response.read()
        try:
            data = json.loads(body)
        except ValueError:
            return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)
        changed = self.rewrite(request, data)
        if changed is None:
            return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)
        headers = [
            (k, v) for k, v in response.headers.items() if k.lower() not in ("content-length", "content-encoding")
        ]
        return httpx.Response(
            response.status_code, headers=headers, content=json.dumps(changed).encode(), request=request
        )

    def close(self) -> None:
        self.inner.close()


def hook_client(platform: str, **overrides):
    """A platform client built by its Airflow hook from the AIRFLOW_CONN_* connection (as the DAG does)."""
    from include.run.runconfig import Connections
    from orderops_provider.hooks import BY_PLATFORM

    return BY_PLATFORM[platform](getattr(Connections(), platform)).get_client(**overrides)
