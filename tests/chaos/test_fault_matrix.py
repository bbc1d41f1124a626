"""The chaos matrix: the whole pipeline (`run_all`) against the sandbox with injected faults.

One platform and one fault kind per case (429 storms, 5xx bursts, hangs past the client timeout,
latency that lets a write land after the client gave up, malformed and truncated bodies, listings
whose empty pages always point further, token expiry or revocation mid-run, a fulfiller whose
cancel "succeeds" but never takes), then a few mixed. Each case runs the pipeline once with the
faults, then once more without them, and checks:

- the docs/architecture.md §3 safety invariants after each run, from the sandbox's write log (`Audit`);
- nothing took effect twice (same log; TikTok approve/reject resent with the same key and
  Shopify note/tag writes resent unchanged are replays, not second effects);
- after the second run everything a fault-free history does has happened: the same effects on
  the platforms as a clean baseline run, the same escalations, and no ledger row left pending,
  in flight or failed (except the C4 verify rows that gave up).

The matrix of cases and outcomes is printed at the end of the session (and written to
state/test-reports/chaos-matrix.txt).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.chaos import report
from tests.chaos.harness import (
    audit,
    chaos_scenario,
    clean_history,
    escalations,
    fresh_warehouse,
    is_order_write,
    ledger_states,
    unfinished,
)

pytestmark = pytest.mark.slow

SCENARIO = chaos_scenario()
TIMEOUT = 1.0  # seconds: the client timeout every hang/latency case sets through the connection extra


def on(platform: str, operation: str | None = None) -> Callable:
    """A trigger for `SandboxRig.arm`: the first successful order write (of one operation) on a platform."""
    return lambda w: (
        is_order_write(w)
        and w.outcome == "ok"
        and (w.platform == platform if operation is None else w.operation == operation)
    )


def act_phase(w) -> bool:
    return is_order_write(w) and w.outcome == "ok"


@dataclass
class Case:
    name: str
    platform: str
    kind: str
    faults: list[dict] = field(default_factory=list)
    # (trigger, faults): faults injected once a matching write has been recorded
    armed: list[tuple[Callable, list[dict]]] = field(default_factory=list)
    extras: dict[str, dict] = field(default_factory=dict)
    warehouse: str = "sqlite"
    cancel_ignored: bool = False
    rotate_shipbob_token: bool = False

    def __str__(self) -> str:
        return self.name


def fault(platform: str, kind: str, path: str = ".*", count: int = 1, **more) -> dict:
    return {"platform": platform, "kind": kind, "path": path, "count": count, **more}


def short(*platforms: str, **extra) -> dict[str, dict]:
    return {p: {"timeout": TIMEOUT, **extra} for p in platforms}


PACKAGES, APPROVE, REJECT = r"/packages$", r"/approve$", r"/reject$"
SEARCH = r"/orders/search$"
AMZ_CANCEL, AMZ_LIST, AMZ_DOC = r"/cancel$", r"/fulfillmentOrders$", r"/_documents/"
SB_CANCEL, SB_LIST = r":cancel$", r"/order$"

CASES = [
    # TikTok Shop
    Case("tiktok-429-storm", "tiktok", "429", [fault("tiktok", "429", count=4)]),
    Case(
        "tiktok-429-writes-past-retries",
        "tiktok",
        "429",
        [fault("tiktok", "429", PACKAGES, count=4)],
        extras={"tiktok": {"max_attempts": 2}},
    ),
    Case("tiktok-5xx-reads", "tiktok", "5xx", [fault("tiktok", "5xx", SEARCH, count=3, status=502)]),
    Case(
        "tiktok-5xx-writes",
        "tiktok",
        "5xx",
        [fault("tiktok", "5xx", PACKAGES, count=2), fault("tiktok", "5xx", APPROVE, count=2)],
    ),
    Case(
        "tiktok-hang-reads",
        "tiktok",
        "hang",
        [fault("tiktok", "hang", SEARCH, count=2, seconds=3)],
        extras=short("tiktok"),
    ),
    Case(
        "tiktok-write-lands-after-timeout",
        "tiktok",
        "latency",
        [fault("tiktok", "latency", PACKAGES, count=2, seconds=2.5)],
        extras=short("tiktok"),
    ),
    Case(
        "tiktok-malformed-writes",
        "tiktok",
        "malformed",
        [
            fault("tiktok", "malformed", PACKAGES, count=2),
            fault("tiktok", "malformed", APPROVE, count=1),
            fault("tiktok", "malformed", REJECT, count=1),
        ],
    ),
    Case("tiktok-truncated-reads", "tiktok", "truncated", [fault("tiktok", "truncated", SEARCH, count=3)]),
    Case("tiktok-token-expiry", "tiktok", "token_expiry", [fault("tiktok", "token_expiry", PACKAGES)]),
    Case("tiktok-endless-search", "tiktok", "endless", [fault("tiktok", "endless", SEARCH, count=50)]),
    # Shopify: one GraphQL path for everything, so act-phase faults are armed by the first write
    Case("shopify-429-storm", "shopify", "429", [fault("shopify", "429", count=4)]),
    Case("shopify-5xx-act", "shopify", "5xx", armed=[(act_phase, [fault("shopify", "5xx", count=3)])]),
    Case(
        "shopify-hang-act",
        "shopify",
        "hang",
        armed=[(act_phase, [fault("shopify", "hang", count=2, seconds=3)])],
        extras=short("shopify"),
    ),
    Case(
        "shopify-truncated-saga",
        "shopify",
        "truncated",
        armed=[(on("amazon_mcf", "cancelFulfillmentOrder"), [fault("shopify", "truncated", count=2)])],
    ),
    Case(
        "shopify-malformed-notes",
        "shopify",
        "malformed",
        armed=[(on("shopify", "orderUpdate"), [fault("shopify", "malformed", count=2)])],
    ),
    Case("shopify-token-expiry", "shopify", "token_expiry", armed=[(act_phase, [fault("shopify", "token_expiry")])]),
    # three empty pages end a listing: a larger count would go on to the writes on the same path
    Case("shopify-endless-orders", "shopify", "endless", [fault("shopify", "endless", count=3)]),
    # Amazon MCF
    Case("amazon-429-storm", "amazon_mcf", "429", [fault("amazon_mcf", "429", count=4)]),
    Case("amazon-5xx-cancel", "amazon_mcf", "5xx", [fault("amazon_mcf", "5xx", AMZ_CANCEL, count=2, status=500)]),
    Case(
        "amazon-hang-listing",
        "amazon_mcf",
        "hang",
        [fault("amazon_mcf", "hang", AMZ_LIST, count=2, seconds=3)],
        extras=short("amazon_mcf"),
    ),
    Case(
        "amazon-cancel-lands-after-timeout",
        "amazon_mcf",
        "latency",
        [fault("amazon_mcf", "latency", AMZ_CANCEL, count=2, seconds=2.5)],
        extras=short("amazon_mcf"),
    ),
    Case("amazon-malformed-cancel", "amazon_mcf", "malformed", [fault("amazon_mcf", "malformed", AMZ_CANCEL, count=2)]),
    Case("amazon-truncated-report", "amazon_mcf", "truncated", [fault("amazon_mcf", "truncated", AMZ_DOC, count=2)]),
    Case("amazon-token-expiry", "amazon_mcf", "token_expiry", [fault("amazon_mcf", "token_expiry", AMZ_LIST)]),
    Case("amazon-endless-list", "amazon_mcf", "endless", [fault("amazon_mcf", "endless", AMZ_LIST, count=50)]),
    Case("amazon-cancel-ignored", "amazon_mcf", "cancel_ignored", cancel_ignored=True),
    # ShipBob
    Case("shipbob-429-storm", "shipbob", "429", [fault("shipbob", "429", count=3)]),
    Case("shipbob-5xx-cancel", "shipbob", "5xx", [fault("shipbob", "5xx", SB_CANCEL, count=1, status=503)]),
    Case(
        "shipbob-hang-listing",
        "shipbob",
        "hang",
        [fault("shipbob", "hang", SB_LIST, count=2, seconds=3)],
        extras=short("shipbob"),
    ),
    Case("shipbob-malformed-cancel", "shipbob", "malformed", [fault("shipbob", "malformed", SB_CANCEL)]),
    Case("shipbob-endless-list", "shipbob", "endless", [fault("shipbob", "endless", SB_LIST, count=50)]),
    Case(
        "shipbob-token-revoked",
        "shipbob",
        "token_expiry",
        [fault("shipbob", "token_expiry", SB_CANCEL)],
        rotate_shipbob_token=True,
    ),
    # mixed
    Case(
        "mixed-every-platform-5xx",
        "all",
        "5xx+malformed+latency",
        [fault(p, "5xx", count=2) for p in ("tiktok", "shopify", "amazon_mcf", "shipbob")]
        + [fault("tiktok", "malformed", PACKAGES), fault("amazon_mcf", "latency", AMZ_CANCEL, seconds=2.5)],
        extras=short("amazon_mcf"),
    ),
    Case(
        "mixed-postgresql",
        "all",
        "429+truncated+5xx+malformed",
        [
            fault("tiktok", "429", count=3),
            fault("amazon_mcf", "5xx", AMZ_CANCEL),
            fault("shipbob", "malformed", SB_CANCEL),
        ],
        armed=[(act_phase, [fault("shopify", "truncated", count=2)])],
        warehouse="postgresql",
    ),
    Case(
        "mixed-cancel-ignored-and-hangs",
        "all",
        "cancel_ignored+hang+token_expiry",
        [fault("tiktok", "hang", APPROVE, seconds=3), fault("amazon_mcf", "token_expiry", AMZ_CANCEL)],
        extras=short("tiktok"),
        cancel_ignored=True,
    ),
]


@pytest.fixture(scope="module")
def baseline(rig, tmp_path_factory):
    """A fault-free history: what should have happened once everything is through."""
    return clean_history(rig, tmp_path_factory.mktemp("baseline"), runs=2)


def expected_for(case: Case, baseline: dict) -> tuple[set, set]:
    """A fulfiller that never takes the cancel: no refund and no approval for those orders, a C4 instead."""
    effects, escalated = set(baseline["effects"]), set(baseline["escalations"])
    if case.cancel_ignored:
        for o in SCENARIO["orders"]:
            amazon = o.get("amazon_mcf") or {}
            if o["tiktok"]["cancellation"] and amazon.get("status") == "Planning":
                effects.discard(("shopify_cancel", f"gid://shopify/Order/{o['shopify']['id']}", ""))
                effects.discard(("approve_cancellation", o["tiktok"]["cancellation"]["cancel_id"], ""))
                escalated.add(f"escalate:{o['tiktok']['id']}:fulfiller_cancel_not_verified")
    return effects, escalated


def describe(result) -> str:
    if isinstance(result, Exception):
        return f"raised {type(result).__name__}"
    return f"{result['state']}"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fault(case: Case, rig, baseline, tmp_path):
    scenario = chaos_scenario(cancel_ignored=True) if case.cancel_ignored else SCENARIO
    rig.load(scenario)
    started = time.monotonic()
    with fresh_warehouse(case.warehouse, tmp_path) as wh:
        for spec in case.faults:
            rig.fault(spec)
        for trigger, faults in case.armed:
            rig.arm(trigger, faults)
        try:
            first = rig.run(wh, "chaos-1", extras=case.extras)
        except Exception as exc:  # a fault may stop a run; what matters is what it left behind
            first = exc
        after_first = audit(rig)
        left = unfinished(wh)
        fired = sum(f["fired"] for f in rig.faults())
        unarmed = len(rig._arms)
        rig.clear_faults()
        if case.rotate_shipbob_token:
            # the operator rotates the revoked token in the connection before the next run
            rig.password_overrides["shipbob"] = rig.sandbox.platforms["shipbob"].issue_token()
        rig.advance(10)
        second = rig.run(wh, "chaos-2", extras=case.extras)
        after_second = audit(rig)
        effects, escalated = expected_for(case, baseline)
        missing = effects - after_second.done_effects()
        extra = after_second.done_effects() - effects
        states = ledger_states(wh)
        row = {
            "case": case.name,
            "platform": case.platform,
            "fault": case.kind,
            "db": case.warehouse,
            "fired": fired,
            "run 1": describe(first),
            "open after 1": len(left),
            "run 2": describe(second),
            "effects": f"{len(after_second.done_effects())}/{len(effects)}",
            "refused writes": after_second.refused_writes(),
            "violations": len(after_first.violations) + len(after_second.violations),
            "still open": len(unfinished(wh)),
            "seconds": round(time.monotonic() - started, 1),
        }
        report.add(row)
        assert after_first.violations == [], after_first.violations
        assert after_second.violations == [], after_second.violations
        assert fired > 0 or case.cancel_ignored, "the fault never fired: the case tested nothing"
        assert unarmed == 0, "an armed fault never triggered"
        assert not missing and not extra, f"missing {sorted(missing)}; unexpected {sorted(extra)}"
        assert escalations(wh) == escalated
        assert unfinished(wh) == [], [(r["idempotency_key"], r["state"], r["detail"]) for r in unfinished(wh)]
        assert not isinstance(second, Exception) and states
