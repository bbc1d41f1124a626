"""SLA report figures against hand-computed ones for a small fixed day, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from include.report.reports import DEFINITIONS, MIN_TREND_DAYS, build_day, charts, days_to_report, load_day, no_trend
from include.store.warehouse import (
    Warehouse,
    action_ledger,
    order_links,
    sla_daily,
    stg_amazon_fulfillment_orders,
    stg_shipbob_orders,
    stg_tiktok_cancellations,
    stg_tiktok_orders,
)
from tests.support import NOW

REPO = Path(__file__).resolve().parents[2]

DAY = date(2026, 11, 19)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def tiktok(order_id, sla, rts=None, status="AWAITING_COLLECTION", due="2026-11-25T00:00", scanned=None):
    return dict(
        shop="s",
        tiktok_order_id=order_id,
        status=status,
        fulfillment_type="FULFILLMENT_BY_SELLER",
        create_time=t("2026-11-17T00:00"),
        update_time=t("2026-11-17T00:00"),
        rts_sla_time=t(sla),
        shipping_due_time=t(due),
        rts_time=t(rts) if rts else None,
        collection_time=t(scanned) if scanned else None,
        tracking_number="T" if rts else "",
        shipping_provider_id="",
        is_buyer_request_cancel=False,
        line_items=[],
        raw={},
        snapshot_run_id="r1",
        extracted_at=NOW,
    )


def link(order_id, fulfiller, fid, problem=None):
    return dict(
        shop="s",
        run_id="r1",
        tiktok_order_id=order_id,
        shopify_order_ids=["1"],
        match_rule="source_identifier",
        fulfiller=fulfiller,
        fulfillment_order_id=fid,
        link_problem=problem,
        decided_at=NOW,
    )


def amazon(fid, carrier, shipped_at):
    shipments = (
        [
            {
                "id": "S",
                "status": "SHIPPED",
                "shipped_at": shipped_at,
                "packages": [{"carrier": carrier, "tracking_number": "1Z"}],
            }
        ]
        if shipped_at
        else []
    )
    return dict(
        shop="s",
        seller_fulfillment_order_id=fid,
        displayable_order_id=None,
        status="Complete",
        status_updated_at=None,
        received_at=None,
        shipments=shipments,
        raw={},
        snapshot_run_id="r1",
        extracted_at=NOW,
    )


def shipbob(fid, carrier, shipped_at):
    shipments = [
        {
            "id": 1,
            "status": "Completed" if shipped_at else "Processing",
            "carrier": carrier,
            "tracking_number": "94" if shipped_at else "",
            "shipped_at": shipped_at,
        }
    ]
    return dict(
        shop="s",
        shipbob_order_id=fid,
        reference_id="1",
        order_number="1",
        status="Processing",
        last_update_at=None,
        shipments=shipments,
        raw={},
        snapshot_run_id="r1",
        extracted_at=NOW,
    )


def cancellation(cancel_id, order_id, deadline, status):
    return dict(
        shop="s",
        cancel_id=cancel_id,
        tiktok_order_id=order_id,
        status=status,
        cancel_type="BUYER_CANCEL",
        role="BUYER",
        create_time=t("2026-11-19T09:00"),
        update_time=t("2026-11-19T09:00"),
        deadline=t(deadline),
        raw={},
        snapshot_run_id="r1",
        extracted_at=NOW,
    )


@pytest.fixture
def day_report(warehouse_url, tmp_path):
    wh = Warehouse(warehouse_url)
    wh.migrate()
    wh.upsert(
        stg_tiktok_orders,
        [
            # on time, 2 h after shipment; scanned on time
            tiktok("A1", "2026-11-19T12:00", "2026-11-19T10:00", scanned="2026-11-19T11:00"),
            # late, 11 h after shipment, scanned after
            tiktok("A2", "2026-11-19T18:00", "2026-11-19T20:00", scanned="2026-11-19T21:00"),
            # on time, 1 h; but the carrier scanned it only after the ship-by time
            tiktok("S1", "2026-11-19T23:00", "2026-11-19T07:00", scanned="2026-11-19T23:30"),
            tiktok("S2", "2026-11-19T15:00", status="AWAITING_SHIPMENT", due="2026-11-21T01:00"),  # past due, at risk
            tiktok("C1", "2026-11-19T16:00", status="CANCELLED"),  # not counted in LDR
            tiktok("U1", "2026-11-19T05:00", status="AWAITING_SHIPMENT"),  # past due, unlinked
            tiktok("X1", "2026-11-20T10:00", "2026-11-19T22:00"),  # due the next day
        ],
    )
    wh.upsert(
        order_links,
        [
            link("A1", "amazon_mcf", "F1"),
            link("A2", "amazon_mcf", "F2"),
            link("S1", "shipbob", "9"),
            link("S2", "shipbob", "10"),
            link("C1", "amazon_mcf", "F5"),
            link("U1", None, None, "no_shopify_match"),
            link("X1", "amazon_mcf", "F6"),
        ],
    )
    wh.upsert(
        stg_amazon_fulfillment_orders,
        [
            amazon("F1", "UPS", "2026-11-19T08:00:00Z"),
            amazon("F2", "UPS", "2026-11-19T09:00:00Z"),
            amazon("F5", "UPS", None),
            amazon("F6", "USPS", "2026-11-19T21:00:00Z"),
        ],
    )
    wh.upsert(stg_shipbob_orders, [shipbob("9", "USPS", "2026-11-19T06:00:00Z"), shipbob("10", "USPS", None)])
    wh.upsert(
        stg_tiktok_cancellations,
        [
            cancellation("K1", "A1", "2026-11-20T12:00", "CANCELLATION_REQUEST_SUCCESS"),
            cancellation("K2", "S2", "2026-11-19T20:00", "CANCELLATION_REQUEST_PENDING"),
        ],
    )
    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert(),
            [
                dict(
                    shop="s",
                    idempotency_key="approve_cancellation:K1",
                    kind="approve_cancellation",
                    target="tiktok:cancellation/K1",
                    tiktok_order_id="A1",
                    rule="C1",
                    decision_run_id="r1",
                    request={"cancel_id": "K1"},
                    state="succeeded",
                    attempts=1,
                    acted_at=t("2026-11-19T14:00"),
                    created_at=NOW,
                    updated_at=NOW,
                    run_id="r1",
                )
            ],
        )
    report = build_day(wh, "s", DAY, now=NOW, out_dir=tmp_path)
    yield wh, report
    wh.dispose()


def by_split(rows):
    return {(r["fulfiller"], r["carrier"]): r for r in rows}


def test_day_figures_match_hand_computed(day_report):
    wh, report = day_report
    total = by_split(report.rows)[("all", "all")]
    assert total["orders_due"] == 5  # C1 was cancelled without being dispatched: not due
    assert (total["dispatched_on_time"], total["dispatched_late"], total["past_due_no_tracking"]) == (2, 1, 2)
    assert total["late_dispatch_rate"] == pytest.approx(3 / 5) and total["ldr_over_line"]
    # the carrier-scan clock: A1 in time; A2 and S1 scanned late; S2 and U1 past ship-by, no scan
    scan = (total["dispatched_on_time_scan"], total["dispatched_late_scan"], total["past_due_no_scan"])
    assert scan == (1, 2, 2) and total["late_dispatch_rate_scan"] == pytest.approx(4 / 5)
    assert total["at_risk_auto_cancel"] == 1
    assert (total["cancel_requests"], total["cancels_on_time"], total["cancels_late"]) == (2, 1, 1)
    # orders dispatched on the day: A1 2 h, A2 11 h, S1 1 h, X1 1 h (due the next day, shipped this one)
    assert total["ship_to_tracking_median_h"] == pytest.approx(1.5)
    assert total["ship_to_tracking_p95_h"] == pytest.approx(2 + 0.85 * 9)
    splits = by_split(report.rows)
    assert (
        splits[("amazon_mcf", "all")]["orders_due"] == 2 and splits[("amazon_mcf", "all")]["late_dispatch_rate"] == 0.5
    )
    assert splits[("amazon_mcf", "ups")]["dispatched_late"] == 1
    assert splits[("shipbob", "usps")]["orders_due"] == 2 and splits[("shipbob", "usps")]["past_due_no_tracking"] == 1
    assert splits[("unlinked", "all")]["late_dispatch_rate"] == 1.0
    with wh.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(sla_daily)).scalar()
    assert stored == len(report.rows)


def test_breaches_carry_reason_and_chain(day_report):
    _, report = day_report
    reasons = {(b["tiktok_order_id"], b["kind"]): b for b in report.breaches}
    assert set(reasons) == {
        ("A2", "dispatch"),
        ("S1", "carrier_scan"),
        ("S2", "dispatch"),
        ("U1", "dispatch"),
        ("S2", "cancellation"),
    }
    assert "dispatched late" in reasons[("A2", "dispatch")]["reason"]
    assert "carrier scan 2026-11-19 21:00" in reasons[("A2", "dispatch")]["reason"]
    assert (
        "first scan came 2026-11-19 23:30 after ship-by 2026-11-19 23:00" in reasons[("S1", "carrier_scan")]["reason"]
    )
    assert "no_shopify_match" in reasons[("U1", "dispatch")]["reason"]
    assert "still pending" in reasons[("S2", "cancellation")]["reason"]
    csv_text = report.csv_path.read_text()
    assert csv_text.count("\n") == 6 and "A2" in csv_text
    page = report.html_path.read_text()
    assert (
        "data:image/png;base64," in page
        and "60.00%" in page
        and "80.00%" in page
        and "http" not in page.split("<body>")[1].split("Generated")[0]
    )


def test_rebuilding_a_day_replaces_its_rows(day_report):
    wh, report = day_report
    again = build_day(wh, "s", DAY, now=NOW, out_dir=report.html_path.parents[2])
    with wh.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(sla_daily)).scalar()
    assert stored == len(again.rows)


def test_a_day_with_no_orders_due_has_no_rate(day_report):
    wh, report = day_report
    empty = build_day(
        wh, "s", DAY + timedelta(days=3), now=NOW + timedelta(days=4), out_dir=report.html_path.parents[2]
    )
    total = by_split(empty.rows)[("all", "all")]
    assert total["orders_due"] == 0 and not total["ldr_over_line"]
    page = empty.html_path.read_text()
    assert "No orders were due this day" in page and "Late Dispatch Rate 0.00%" not in page


def test_orderops_own_tracking_posts_count_as_dispatched_before_a_read_stages_them(warehouse_url, tmp_path):
    """P1 was read before orderops posted its tracking (staged without rts_time): the post in the
    ledger dispatches it on the day, with its hours from shipment, as TikTok's time would."""
    wh = Warehouse(warehouse_url)
    wh.migrate()
    wh.upsert(
        stg_tiktok_orders,
        [
            tiktok("P1", "2026-11-20T10:00", status="AWAITING_SHIPMENT"),
            tiktok("P2", "2026-11-20T11:00", status="AWAITING_SHIPMENT"),
        ],
    )
    wh.upsert(order_links, [link("P1", "amazon_mcf", "F7"), link("P2", "amazon_mcf", "F8")])
    wh.upsert(
        stg_amazon_fulfillment_orders,
        [amazon("F7", "UPS", "2026-11-19T12:00:00Z"), amazon("F8", "UPS", "2026-11-19T12:00:00Z")],
    )
    posts = [
        ("P1", "succeeded", "2026-11-19T15:00"),  # on the day
        ("P2", "failed", "2026-11-19T16:00"),
    ]  # a failed post dispatches nothing
    with wh.engine.begin() as conn:
        conn.execute(
            action_ledger.insert(),
            [
                dict(
                    shop="s",
                    idempotency_key=f"post_tracking:{order}",
                    kind="post_tracking",
                    target=f"tiktok:order/{order}",
                    tiktok_order_id=order,
                    rule="R1",
                    decision_run_id="r1",
                    request={},
                    state=state,
                    attempts=1,
                    acted_at=t(at),
                    created_at=NOW,
                    updated_at=NOW,
                    run_id="r1",
                )
                for order, state, at in posts
            ],
        )
    total = by_split(build_day(wh, "s", DAY, now=NOW, out_dir=tmp_path).rows)[("all", "all")]
    assert total["orders_due"] == 0  # both are due the next day
    assert total["ship_to_tracking_median_h"] == pytest.approx(3.0) == total["ship_to_tracking_p95_h"]
    wh.dispose()


def test_days_to_report():
    assert days_to_report(t("2026-11-19T00:00"), t("2026-11-20T00:00")) == [DAY]
    assert days_to_report(t("2026-11-18T22:00"), t("2026-11-19T01:00")) == [date(2026, 11, 18), DAY]


def test_the_report_reads_at_a_glance(day_report):
    """Readable headers, written-out empty states, no None or NaN anywhere, rates as percentages,
    a table that scrolls inside the page rather than widening it."""

    wh, report = day_report
    page = report.html_path.read_text()
    text = re.sub(r'src="data:image/png;base64,[^"]+"', "", page)
    assert not re.search(r"\bNone\b|\bnan\b|\bNaN\b", text)
    # a header's text, without the spans that keep a hyphenated word whole
    headers = {re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th>(.*?)</th>", page)}
    for header in (
        "Late Dispatch Rate (upload)",
        "Late Dispatch Rate (carrier scan)",
        "Past ship-by, no scan",
        "Past ship-by, no tracking",
        "What orderops did",
        "Hours to tracking (median)",
    ):
        assert header in headers, header
    assert not re.search(r"<th>[a-z]+_[a-z_]+</th>", page)  # no snake_case header
    assert '<div class="scroll"><table class="breaches">' in page and "overflow-x:auto" in page
    assert re.search(r'<td class="num">\d+\.\d\d %</td>', page)  # the rate column
    empty = build_day(
        wh, "s", DAY + timedelta(days=3), now=NOW + timedelta(days=4), out_dir=report.html_path.parents[2]
    )
    quiet = empty.html_path.read_text()
    assert "no breaches this day" in quiet and "No fulfiller shipment reached TikTok this day." in quiet
    assert not re.search(r"\bNone\b|\bnan\b", re.sub(r'src="data:image/png;base64,[^"]+"', "", quiet))


def test_csv_cells_that_would_start_a_formula_are_written_as_text(tmp_path):
    """OWASP's CSV-injection guidance: =, +, -, @, tab and CR at a text cell's start."""
    import csv

    from include.report.reports import write_csv

    hostile = ['=HYPERLINK("http://x","c")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]
    rows = [{"carrier": text, "late": -1.5} for text in hostile] + [{"carrier": "UPS", "late": 2}]
    path = tmp_path / "out.csv"
    write_csv(path, ["carrier", "late"], rows)
    with path.open(newline="") as handle:
        back = list(csv.DictReader(handle))
    assert [r["carrier"] for r in back] == [f"'{text}" for text in hostile] + ["UPS"]
    assert [r["late"] for r in back] == ["-1.5"] * len(hostile) + ["2"]  # numbers stay numbers


def test_one_carrier_spelled_several_ways_is_one_row(warehouse_url, tmp_path):
    """Amazon writes FEDEX for one order and FedEx for another, FedEx Ground for a third: one carrier."""
    wh = Warehouse(warehouse_url)
    wh.migrate()
    spellings = {"F1": "FEDEX", "F2": "FedEx", "F3": "FedEx Ground"}
    wh.upsert(
        stg_tiktok_orders,
        [tiktok(f"A{i}", "2026-11-19T12:00", "2026-11-19T13:00") for i in range(1, 4)],  # all late
    )
    wh.upsert(order_links, [link(f"A{i}", "amazon_mcf", f"F{i}") for i in range(1, 4)])
    wh.upsert(
        stg_amazon_fulfillment_orders, [amazon(fid, name, "2026-11-19T08:00:00Z") for fid, name in spellings.items()]
    )
    report = build_day(wh, "s", DAY, now=NOW, out_dir=tmp_path)
    carriers = {(r["fulfiller"], r["carrier"]): r["orders_due"] for r in report.rows if r["carrier"] != "all"}
    assert carriers == {("amazon_mcf", "fedex"): 3}
    assert {b["carrier"] for b in report.breaches} == {"fedex"}
    page = report.html_path.read_text()
    figures = page.split("How each figure is counted")[0]  # the definitions name the spellings
    assert "FEDEX" not in figures and "FedEx" not in figures
    wh.dispose()


def history(*days_due: tuple[str, int]) -> pd.DataFrame:
    """sla_daily's shop-wide rows as `trend` reads them: (day, orders due) each."""
    return pd.DataFrame(
        [
            {
                "day": date.fromisoformat(day),
                "orders_due": due,
                "late_dispatch_rate": 0.1,
                "late_dispatch_rate_scan": 0.2,
                "dispatched_late_scan": 1,
                "past_due_no_scan": 0,
            }
            for day, due in days_due
        ]
    )


def test_the_trend_charts_need_two_days_with_orders_due_else_a_sentence_says_so(day_report):
    wh, _ = day_report
    data = load_day(wh, "s", DAY, NOW)
    empty = history()
    one = history(("2026-11-18", 0), ("2026-11-19", 5))  # a day without orders due is no point on the trend
    two = history(("2026-11-18", 3), ("2026-11-19", 5))
    assert MIN_TREND_DAYS == 2
    assert no_trend(empty, DAY) == "No orders were due in the 30 days up to 2026-11-19: no trend to show yet."
    assert no_trend(one, DAY).startswith(
        "Only 2026-11-19 had orders due in the 30 days up to 2026-11-19: no trend yet."
    )
    assert no_trend(two, DAY) is None
    for frame in (empty, one):
        assert set(charts(frame, data, DAY)) == {"ship_to_tracking"}  # the day's own distribution only
    assert set(charts(two, data, DAY)) == {"ldr_trend", "volume_trend", "ship_to_tracking"}


def test_a_report_with_one_day_of_history_says_there_is_no_trend_yet(day_report):
    _, report = day_report
    page = report.html_path.read_text()
    assert '<p class="no-trend">Only 2026-11-19 had orders due' in page
    assert page.count("<img ") == 1


def test_the_report_carries_its_definitions_and_needs_no_other_document(day_report):
    _, report = day_report
    page = report.html_path.read_text()
    assert "README" not in page and "docs/" not in page
    listed = re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page.split("How each figure is counted")[1])
    assert [(term, meaning.replace("&#39;", "'")) for term, meaning in listed] == list(DEFINITIONS)
    footer = page.split("<footer>")[1]
    assert "Generated" in footer and "UTC" in footer and "README" not in footer


def test_the_reports_definitions_are_the_docs_own():
    """docs/reports.md lists each figure with the report's own words, so the two never disagree."""
    table = (REPO / "docs" / "reports.md").read_text()
    for term, meaning in DEFINITIONS:
        assert f"| {term} | {meaning} |" in table, term
