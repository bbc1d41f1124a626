"""At-risk alerts in whole runs against the sandbox: an order still without tracking 12 h and 4 h
before its ship-by time reaches a Slack webhook (a real loopback server) once per threshold,
listing the fulfiller's status and how long it has been in it; an order whose tracking is posted,
one already late, one on TikTok's label and one still far off are not alerted; a rerun sends
nothing again; a dry run tells no one."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import sqlalchemy as sa

from include.decide.policy import PolicyError, policy_from_dict
from include.store.warehouse import at_risk_alerts
from tests.chaos.harness import SandboxRig, fresh_warehouse, patched_env
from tests.support import NOW, iso
from tests.support import tiktok_order_id as tid

# how long the simulator's Amazon orders take to reach each status (New 2 min, Received 15 min, Planning 2 h)
LEAD = {"Planning": timedelta(minutes=17), "Processing": timedelta(hours=2, minutes=17)}


def order(
    n: int,
    due_in_hours: float,
    *,
    status: str = "Processing",
    in_status_hours: float = 1.0,
    shipped: bool = False,
    label: str = "SELLER",
):
    received = NOW - LEAD.get(status, timedelta()) - timedelta(hours=in_status_hours)
    shipments = (
        [
            {
                "status": "SHIPPED",
                "packages": [{"package_number": n, "carrier_code": "UPS", "tracking_number": f"1ZSANDBOX{n:010d}"}],
            }
        ]
        if shipped
        else []
    )
    return {
        "tiktok": {
            "id": str(576000000000000000 + n),
            "status": "AWAITING_SHIPMENT",
            "shipping_type": label,
            "create_time": iso(NOW - timedelta(days=2)),
            "rts_sla_time": iso(NOW + timedelta(hours=due_in_hours)),
            "shipping_due_time": iso(NOW + timedelta(days=5)),
            "tracking_number": "",
            "cancellation": None,
            # two items: Amazon gives no early tracking number, so only the carrier's can come
            "line_items": [
                {"id": str(577000000000000000 + 10 * n + k), "seller_sku": sku}
                for k, sku in enumerate(("OSL-TEE-M", "OSL-TEE-L"))
            ],
        },
        "shopify": {
            "id": 6100000000 + n,
            "name": f"#{1000 + n}",
            "tiktok_id_in": "source_identifier",
            "cancelled": False,
        },
        "fulfiller": "amazon_mcf",
        "amazon_mcf": {
            "seller_fulfillment_order_id": str(1000 + n),
            "status": "Complete" if shipped else status,
            "received_time": iso(received),
            "shipments": shipments,
        },
        "shipbob": None,
    }


@pytest.fixture
def slack():
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{server.server_port}/services/T0/B0/X"})
    with patched_env({"AIRFLOW_CONN_ORDEROPS_SLACK": conn}):
        yield received
    server.shutdown()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_orders_near_their_ship_by_time_reach_a_person_once_per_threshold(kind, tmp_path, slack):
    scenario = {
        "now": iso(NOW),
        "orders": [
            order(1, 10),
            order(2, 3, status="Planning", in_status_hours=1.5),
            order(3, 20, in_status_hours=2),
            order(4, -2),
            order(5, 3, shipped=True),
            order(6, 3, label="TIKTOK"),
        ],
    }
    rig = SandboxRig(scenario)
    try:
        with fresh_warehouse(kind, tmp_path) as wh:
            first = rig.run(wh, "at-risk-1")
            # order 5's tracking went to TikTok this run, but no carrier has scanned it: the ship-by time
            # (TikTok counts the scan) is at risk all the same
            assert first["at_risk_alerts"] == {"12h": [tid(1)], "4h": [tid(2), tid(5)]}
            # how long each has been in its status, from the simulator's own record of it
            held = {
                sfo: (NOW - o.status_since).total_seconds() / 3600
                for sfo, o in rig.sandbox.platforms["amazon_mcf"].orders.items()
            }
            assert held["1001"] == 1.0 and held["1002"] == 1.5
            assert [m["text"].splitlines()[2:] for m in slack] == [
                [
                    f"{tid(1)} ship by 2026-11-21 01:00 UTC (10.0 h left): no tracking; "
                    f"amazon_mcf 1001: Processing for {held['1001']:.1f} h"
                ],
                [
                    f"{tid(2)} ship by 2026-11-20 18:00 UTC (3.0 h left): no tracking; "
                    f"amazon_mcf 1002: Planning for {held['1002']:.1f} h",
                    f"{tid(5)} ship by 2026-11-20 18:00 UTC (3.0 h left): tracking on TikTok, no carrier scan; "
                    f"amazon_mcf 1005: Complete for {held['1005']:.1f} h",
                ],
            ]
            assert "12 h or less before the ship-by time" in slack[0]["text"] and "4 h or less" in slack[1]["text"]
            # order 2 came in under 4 h: the 12 h threshold counts as passed, never sent later
            with wh.engine.connect() as conn:
                rows = {(r.tiktok_order_id, r.threshold_hours, r.sent) for r in conn.execute(sa.select(at_risk_alerts))}
            assert rows == {
                (tid(1), 12.0, True),
                (tid(2), 4.0, True),
                (tid(2), 12.0, False),
                (tid(5), 4.0, True),
                (tid(5), 12.0, False),
            }

            rig.run(wh, "at-risk-2")  # a rerun at the same moment: nothing new
            assert len(slack) == 2
            rig.advance(7 * 3600)  # order 1 now 3 h away, order 3 13 h, order 2 late
            later = rig.run(wh, "at-risk-3")
            assert later["at_risk_alerts"] == {"4h": [tid(1)]} and len(slack) == 3
            rig.advance(2 * 3600)  # order 3 crosses 12 h
            assert rig.run(wh, "at-risk-4", dry_run=True).get("at_risk_alerts") is None and len(slack) == 3
            assert rig.run(wh, "at-risk-5")["at_risk_alerts"] == {"12h": [tid(3)]} and len(slack) == 4
    finally:
        rig.stop()


def test_the_thresholds_are_a_policy_setting():
    assert policy_from_dict({}).at_risk_alert_hours == (12.0, 4.0)
    assert policy_from_dict({"at_risk_alert_hours": [2, 24, 6]}).at_risk_alert_hours == (24.0, 6.0, 2.0)
    assert policy_from_dict({"at_risk_alert_hours": []}).at_risk_alert_hours == ()
    for bad in ([0], [4, 4], "12", [True], [float("nan")], [721]):
        with pytest.raises(PolicyError, match="at_risk_alert_hours"):
            policy_from_dict({"at_risk_alert_hours": bad})
