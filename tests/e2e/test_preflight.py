"""`orderops preflight` against the sandbox over HTTP: the real hooks, the real pipeline (dry), a
scenario whose ground truth is known order by order; the sandbox's write log shows nothing written."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from include import cli as orderops
from include.preflight import preflight, render
from include.run.shops import SHOPS_FILE_ENV, Shop, load_shops
from sandbox.connections import connection_env
from sandbox.core import Settings, changes_orders, parse_fault
from sandbox.tiktok import REJECT_REASONS
from tests.support import NOW_ISO as NOW

pytestmark = pytest.mark.slow

CLOCK = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
KEYS = {"ok", "connections", "reject_reasons", "join", "first_run"}
FAST_REPORTS = {"report_queue_seconds": 0.2, "report_processing_seconds": 0.2}


def order(
    n: int, *, status="AWAITING_SHIPMENT", rts="2026-11-23T12:00:00Z", shopify=True, fulfiller=None, cancel=False
) -> dict:
    """A TikTok order created two days before NOW (past every grace), its Shopify order (by
    sourceIdentifier) and `fulfiller` (a (name, data) pair)."""
    tid = f"5769000000000000{n:02d}"
    doc = {
        "tiktok": {
            "id": tid,
            "status": status,
            "create_time": "2026-11-18T10:00:00Z",
            "rts_sla_time": rts,
            "shipping_due_time": "2026-11-27T12:00:00Z",
            "tracking_number": "",
            "shipping_type": "SELLER",
            "line_items": [{"id": f"5779000000000000{n:02d}", "seller_sku": "OSL-TEE-M"}],
            "cancellation": None,
        },
        "shopify": {"id": 6190000000 + n, "name": f"#9{n:03d}", "tiktok_id_in": "source_identifier", "cancelled": False}
        if shopify
        else None,
        "fulfiller": fulfiller[0] if fulfiller else None,
        "amazon_mcf": None,
        "shipbob": None,
    }
    if fulfiller:
        doc[fulfiller[0]] = fulfiller[1]
    if cancel:
        doc["tiktok"]["cancellation"] = {
            "cancel_id": f"40359000000000000{n:02d}",
            "status": "CANCELLATION_REQUEST_PENDING",
            "create_time": "2026-11-20T12:00:00Z",
            "deadline": "2026-11-21T12:00:00Z",
        }
    return doc


def amazon(n: int, status: str, carrier: str | None = None) -> tuple[str, dict]:
    shipments = (
        [
            {
                "status": "SHIPPED",
                "packages": [{"package_number": n, "carrier_code": carrier, "tracking_number": f"1ZPREFLIGHT{n:04d}"}],
            }
        ]
        if carrier
        else []
    )
    return "amazon_mcf", {"seller_fulfillment_order_id": f"9{n:03d}", "status": status, "shipments": shipments}


def shipbob(n: int, status: str, shipment: dict) -> tuple[str, dict]:
    return "shipbob", {
        "order_id": 9100000 + n,
        "reference_id": str(6190000000 + n),
        "status": status,
        "shipments": [{"id": 21000000 + n, **shipment}],
    }


def scenario() -> dict:
    """Ground truth: 3 shipped by Amazon with UPS (T1: post tracking), 1 shipped by ShipBob with a
    carrier TikTok has no provider for (T2), 1 due within the day and not shipped (N1: a note),
    2 without a Shopify order (unmatched: escalated), 1 buyer cancellation of a packed ShipBob
    order (C3: rejected), 1 not yet near its ship-by time (nothing)."""
    orders = [order(n, fulfiller=amazon(n, "Complete", "UPS")) for n in (1, 2, 3)]
    orders.append(
        order(
            4,
            fulfiller=shipbob(
                4,
                "Fulfilled",
                {"status": "Completed", "tracking": {"carrier": "Purolator", "tracking_number": "PUROLATOR0004"}},
            ),
        )
    )
    orders.append(order(5, rts="2026-11-20T20:00:00Z", fulfiller=amazon(5, "Processing")))
    orders += [order(6, shopify=False), order(7, shopify=False)]
    orders.append(
        order(8, cancel=True, fulfiller=shipbob(8, "Processing", {"status": "Processing", "status_detail": "Packed"}))
    )
    orders.append(order(9, fulfiller=amazon(9, "Processing")))
    return {"now": NOW, "orders": orders}


@pytest.fixture
def sandbox_shop(run_sandbox, monkeypatch):
    """Start the sandbox (platform settings and connection extras as given) with the AIRFLOW_CONN_*
    variables of `ids` (default: the default shop's)."""

    def start(platforms: dict | None = None, extras: dict | None = None, ids: dict | None = None, doc=None):
        settings = Settings(clock_rate=0, rate_scale=20, platforms={"amazon_mcf": FAST_REPORTS, **(platforms or {})})
        server = run_sandbox(doc or scenario(), settings=settings)
        env = connection_env(server.urls, ids=ids, rate_scale=20)
        for platform, extra in (extras or {}).items():
            key = f"AIRFLOW_CONN_{(ids or {}).get(platform, f'orderops_{platform}').upper()}"
            conn = json.loads(env[key])
            conn["extra"].update(extra.pop("extra", {}))
            conn.update(extra)
            env[key] = json.dumps(conn)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return server

    return start


def order_writes(server) -> list:
    return [w for w in server.sandbox.writes if changes_orders(w.operation)]


def test_a_healthy_shop_passes_and_the_dry_run_counts_what_the_first_run_would_do(sandbox_shop):
    server = sandbox_shop()
    report = preflight(Shop(), 7, CLOCK)
    assert KEYS <= set(report) and report["ok"], report["problems"]
    assert set(report["connections"]) == {"tiktok", "shopify", "amazon_mcf", "shipbob"}
    assert all(c["ok"] for c in report["connections"].values())
    shopify = report["connections"]["shopify"]
    assert (shopify["version"], shopify["supported_until"]) == ("2026-07", "2027-06-30")
    assert {"read_marketplace_orders", "write_marketplace_orders"} <= set(shopify["scopes"])
    assert report["connections"]["shipbob"]["supported_until"] == "2028-01-31"
    assert report["connections"]["tiktok"]["version"]["search_cancellations"] == "202602"
    assert report["connections"]["tiktok"]["supported_until"] is None
    # what cannot be read cheaply is said, not guessed
    assert "not checked" in report["connections"]["tiktok"]["detail"]
    assert "not checked" in report["connections"]["amazon_mcf"]["detail"]
    # market and reasons: read with the pending cancellation (order 8)
    assert report["market"] == "US"
    assert report["reject_reasons"] == [code for code, _ in REJECT_REASONS["US"]]
    assert report["reject_reason"]["read_with"] == "4035900000000000008"
    assert report["reject_reason"]["picked"] == "ecom_reverse_reject_cancel_reason_product_packed"
    # the dry run: 7 of 9 orders found by sourceIdentifier, 2 with no Shopify order
    assert report["join"] == {"matched": {"source_identifier": 7}, "unmatched": 2}
    assert report["examples"]["unmatched"] == ["576900000000000006", "576900000000000007"]
    # the two single-item MCF orders not shipped yet get Amazon's early tracking number, not a note
    assert report["first_run"] == {"post_tracking": 5, "escalate": 3, "reject_cancellation": 1}
    assert report["tracking_sources"] == {"aftn": 2, "carrier": 3}
    assert report["rules"] == {"T1": 5, "T2": 1, "E1": 2, "C3": 1}
    (carrier,) = report["unmapped_carriers"]
    assert carrier["carrier"] == "Purolator" and carrier["orders"] == 1
    (offered,) = carrier["delivery_options"].values()
    assert "UPS" in offered and "Purolator" not in offered
    assert any("Purolator" in w for w in report["warnings"])
    assert any("576900000000000006" in w for w in report["warnings"])
    # read-only: no write that changes an order reached any platform
    assert order_writes(server) == []
    assert json.loads(json.dumps(report)) == report  # the report is plain JSON


def test_a_refused_token_fails_naming_the_platform_and_skips_the_dry_run(sandbox_shop):
    server = sandbox_shop(extras={"shipbob": {"password": "not-the-token"}})
    report = preflight(Shop(), 7, CLOCK)
    assert not report["ok"]
    assert not report["connections"]["shipbob"]["ok"]
    assert all(report["connections"][p]["ok"] for p in ("tiktok", "shopify", "amazon_mcf"))
    assert any(p.startswith("shipbob (connection orderops_shipbob): ") for p in report["problems"])
    assert report["join"] is None and report["first_run"] is None
    assert order_writes(server) == []


def test_a_wrong_host_fails_naming_the_platform(sandbox_shop, run_sandbox):
    # another sandbox's TikTok: a host that knows neither this app's shop nor its orders' cipher
    other = run_sandbox(scenario(), platforms=("amazon_mcf",), settings=Settings(clock_rate=0))
    sandbox_shop(extras={"shopify": {"host": other.urls["amazon_mcf"], "extra": {"max_attempts": 1}}})
    report = preflight(Shop(), 7, CLOCK)
    assert not report["ok"] and not report["connections"]["shopify"]["ok"]
    assert any(p.startswith("shopify (connection orderops_shopify): ") for p in report["problems"])


def test_a_retired_shipbob_version_and_a_shopify_version_past_support_are_named(sandbox_shop):
    sandbox_shop(
        extras={"shipbob": {"extra": {"api_version": "2025-07"}}, "shopify": {"extra": {"api_version": "2025-07"}}}
    )
    report = preflight(Shop(), 7, CLOCK)
    assert not report["ok"]
    sb, sh = report["connections"]["shipbob"], report["connections"]["shopify"]
    assert (sb["ok"], sb["version"], sb["supported_until"]) == (False, "2025-07", "2026-07-31")
    assert any("end of support on 2026-07-31" in p for p in sb["problems"])
    # Shopify serves the oldest supported version instead of a retired one: named, and a problem
    assert (sh["ok"], sh["version"], sh["served_version"], sh["supported_until"]) == (
        False,
        "2025-07",
        "2026-01",
        "2026-06-30",
    )
    assert any("serves 2026-01 instead" in p for p in sh["problems"])
    assert {p.split(" ", 1)[0] for p in report["problems"] if "end of support" in p} == {"shipbob", "shopify"}


def test_a_version_ending_within_60_days_is_a_warning_not_a_failure(sandbox_shop):
    # on the scenario's clock (2026-11-20) ShipBob 2026-01 has 72 days left; on 2026-12-05, 57
    doc = {**scenario(), "now": "2026-12-05T15:00:00Z"}
    sandbox_shop(extras={"shipbob": {"extra": {"api_version": "2026-01"}}}, doc=doc)
    report = preflight(Shop(), 30, datetime.fromisoformat("2026-12-05T15:00:00+00:00"))
    assert report["connections"]["shipbob"]["ok"] and report["ok"], report["problems"]
    assert "shipbob: API version 2026-01 ends its support on 2027-01-31, in 57 days" in report["warnings"]


def test_missing_marketplace_scopes_fail_shopify(sandbox_shop):
    sandbox_shop(platforms={"shopify": {"scopes": ["read_orders", "write_orders", "read_all_orders"]}})
    report = preflight(Shop(), 7, CLOCK)
    assert not report["connections"]["shopify"]["ok"]
    (problem,) = report["connections"]["shopify"]["problems"]
    assert "read_marketplace_orders, write_marketplace_orders" in problem


def test_no_reason_for_the_policy_meaning_is_a_warning(sandbox_shop, tmp_path, monkeypatch):
    # a GB shop from the shops file whose policy wants "multiple_boxes", which GB does not offer
    ids = {
        "tiktok": "orderops_gb_tiktok",
        "shopify": "orderops_gb_shopify",
        "amazon_mcf": "orderops_gb_amazon_mcf",
        "shipbob": "orderops_gb_shipbob",
    }
    shops = tmp_path / "shops.json"
    shops.write_text(json.dumps([{"name": "gb", "policy": {"reject_reason": "multiple_boxes"}}]))
    monkeypatch.setenv(SHOPS_FILE_ENV, str(shops))
    server = sandbox_shop(platforms={"tiktok": {"region": "GB"}}, ids=ids)
    (shop,) = load_shops()
    report = preflight(shop, 7, CLOCK)
    assert report["ok"], report["problems"]  # a warning, not a failure
    assert report["market"] == "GB"
    assert report["reject_reasons"] == [code for code, _ in REJECT_REASONS["GB"]]
    assert report["reject_reason"]["picked"] is None
    assert any("every C3 rejection would be escalated" in w for w in report["warnings"])
    # the dry run agrees: the packed ShipBob order is escalated, not rejected
    assert "reject_cancellation" not in report["first_run"] and report["first_run"]["escalate"] == 4
    assert order_writes(server) == []


def test_reject_reasons_tiktok_will_not_give_fail_the_check(sandbox_shop):
    server = sandbox_shop()
    server.sandbox.add_fault(
        parse_fault({"platform": "tiktok", "kind": "5xx", "path": "/reject_reasons$", "count": 1000})
    )
    report = preflight(Shop(), 7, CLOCK)
    assert not report["ok"] and report["reject_reasons"] == []
    assert any("reject reasons could not be read" in p and "orderops_tiktok" in p for p in report["problems"])


def test_without_a_recent_cancellation_the_reasons_cannot_be_read(sandbox_shop):
    doc = scenario()
    doc["orders"] = [o for o in doc["orders"] if not o["tiktok"]["cancellation"]]
    sandbox_shop(doc=doc)
    report = preflight(Shop(), 7, CLOCK)
    assert report["ok"] and report["reject_reasons"] == []
    assert report["reject_reason"]["detail"].startswith("no cancellation request in the last 7 days")


def test_the_command_writes_the_report_it_prints_and_refuses_bad_days(sandbox_shop, tmp_path, capsys):
    server = sandbox_shop()
    out = tmp_path / "preflight.json"
    assert orderops.main(["preflight", "--days", "7", "--now", NOW, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert KEYS <= set(written) and written["first_run"]["post_tracking"] == 5
    assert render(written) == printed.rstrip("\n")
    assert order_writes(server) == []
    for bad, said in (
        ("0", "--days: expected 1 to 60 days"),
        ("61", "--days: expected 1 to 60 days"),
        ("week", "argument --days: invalid int value: 'week'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            orderops.main(["preflight", "--days", bad, "--now", NOW])
        assert exit_.value.code == 2 and said in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        orderops.main(["preflight", "--shop", "nope", "--now", NOW])
    assert exit_.value.code == 2 and "--shop: no shop 'nope'" in capsys.readouterr().err


def test_a_broken_connection_exits_1(sandbox_shop, capsys):
    sandbox_shop(extras={"shipbob": {"password": "not-the-token"}})
    assert orderops.main(["preflight", "--now", NOW]) == 1
    assert "problem: shipbob (connection orderops_shipbob): " in capsys.readouterr().out
