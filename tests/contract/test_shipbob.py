"""ShipBob simulator contract: real HTTP against the sandbox, responses checked against ShipBob's OpenAPI file."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import httpx
import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker

from sandbox.core import Settings
from sandbox.shipbob import DEFAULT_CREDENTIALS
from tests.support import NOW, iso

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "vendor-specs" / "shipbob"
TOKEN = DEFAULT_CREDENTIALS["personal_access_tokens"][0]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WRITE_CHANNEL = {"shipbob_channel_id": str(DEFAULT_CREDENTIALS["channel_id"])}
VERSIONS = ("2026-01", "2026-07")
FROZEN = Settings(clock_rate=0)


# ---------------------------------------------------------------- scenario helpers


def sb_order(
    i: int,
    status: str = "Processing",
    shipments: list | None = None,
    created: datetime | None = None,
    skus: tuple[str, ...] = ("OSL-TEE-M",),
    **shipbob,
) -> dict:
    created = created or NOW - timedelta(days=2) + timedelta(minutes=i)
    doc = {
        "tiktok": {
            "id": str(576000000000000000 + i),
            "status": "AWAITING_SHIPMENT",
            "create_time": iso(created),
            "rts_sla_time": iso(NOW + timedelta(days=1)),
            "shipping_due_time": iso(NOW + timedelta(days=7)),
            "line_items": [{"id": str(577000000000000000 + i * 10 + j), "seller_sku": s} for j, s in enumerate(skus)],
        },
        "shopify": {"id": 6100000000 + i, "name": f"#{1000 + i}", "tiktok_id_in": "name", "cancelled": False},
        "fulfiller": "shipbob",
        "shipbob": {"order_id": 9000000 + i, "reference_id": str(6100000000 + i), "status": status, **shipbob},
    }
    if shipments is not None:
        doc["shipbob"]["shipments"] = shipments
    return doc


def ship(i: int, k: int = 0, status: str = "Processing", detail: str | None = None, **extra) -> dict:
    doc = {"id": 20000000 + i * 10 + k, "status": status, **extra}
    if detail:
        doc["status_detail"] = detail
    return doc


def scenario(*orders: dict) -> dict:
    return {"now": iso(NOW), "orders": list(orders)}


def client(server) -> httpx.Client:
    return httpx.Client(base_url=server.urls["shipbob"], headers=AUTH, timeout=30)


def advance(api: httpx.Client, seconds: float) -> None:
    assert api.post("/_sandbox/clock", json={"advance_seconds": seconds}).status_code == 200


# ---------------------------------------------------------------- schema checks against the vendor files
def _normalize(node):
    """Read the vendor schema as OpenAPI 3.0 means it.

    Keywords next to a $ref are ignored by OpenAPI 3.0 (the 2026-01 file puts
    `additionalProperties: false` there). That file also stamps `additionalProperties: false` on
    oneOf/allOf nodes that declare no properties of their own, which taken literally would forbid
    every field of, e.g., an address; those stamps are dropped. Nothing else is relaxed.
    """
    if isinstance(node, dict):
        if "$ref" in node:
            return {"$ref": node["$ref"]}
        out = {k: _normalize(v) for k, v in node.items()}
        if (
            out.get("additionalProperties") is False
            and "properties" not in out
            and (out.keys() & {"oneOf", "anyOf", "allOf"})
        ):
            del out["additionalProperties"]
        return out
    if isinstance(node, list):
        return [_normalize(v) for v in node]
    return node


@cache
def spec() -> dict:
    return _normalize(json.loads((SPECS / "openapi-2026-01.json").read_text()))


def assert_conforms(version: str, method: str, template: str, response: httpx.Response) -> None:
    """The body matches the schema the vendor file declares for this operation and status.

    Every version served is checked against the 2026-01 file: 2026-07's release notes leave the order
    contract unchanged (no 2026-07 file is vendored; UNCERTAIN beyond the notes)."""
    assert version in VERSIONS, version
    doc = spec()
    operation = doc["paths"][f"/2026-01{template}"][method.lower()]
    declared = operation["responses"][str(response.status_code)]
    schema = declared["content"]["application/json"]["schema"]
    validator = OAS30Validator(
        {**copy.deepcopy(schema), "components": doc["components"]}, format_checker=oas30_format_checker
    )
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {template} {response.status_code}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5]
    )


def test_schema_check_catches_a_wrong_body():
    """The validator used below really rejects bodies that break the vendor schema."""
    fake = httpx.Response(200, json={"id": 1, "status": "Shipped", "unexpected": True})
    with pytest.raises(AssertionError):
        assert_conforms("2026-01", "GET", "/order/{orderId}", fake)


# ---------------------------------------------------------------- tracking number shapes
def _mod10(body: str) -> int:
    return (10 - sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body))) % 10) % 10


def valid_tracking(carrier: str, number: str) -> bool:
    if carrier == "USPS":
        return bool(re.fullmatch(r"94\d{20}", number)) and int(number[-1]) == _mod10(number[:-1])
    if carrier == "UPS":
        if not re.fullmatch(r"1Z[0-9A-Z]{16}", number):
            return False
        values = [int(c) if c.isdigit() else (ord(c) - 63) % 10 for c in number[2:17]]
        total = sum(v * (2 if i % 2 else 1) for i, v in enumerate(values))
        return int(number[-1]) == (10 - total % 10) % 10
    if carrier == "FedEx":
        weights = [1, 3, 7]
        total = sum(int(d) * weights[i % 3] for i, d in enumerate(reversed(number[:11])))
        return bool(re.fullmatch(r"\d{12}", number)) and int(number[-1]) == total % 11 % 10
    if carrier == "DHLExpress":
        return bool(re.fullmatch(r"\d{10}", number)) and int(number[-1]) == int(number[:9]) % 7
    return False


# ---------------------------------------------------------------- auth and channels
@pytest.mark.parametrize("version", VERSIONS)
def test_missing_or_unknown_token_is_401_and_spends_no_quota(run_sandbox, version):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",))
    base = server.urls["shipbob"]
    missing = httpx.get(f"{base}/{version}/order")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{base}/{version}/order", headers={"Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401 and "invalid_token" in wrong.headers["www-authenticate"]
    basic = httpx.get(f"{base}/{version}/order", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    refused = httpx.post(f"{base}/{version}/order/9000001:cancel")
    assert refused.status_code == 401
    with client(server) as api:
        ok = api.get(f"/{version}/order")
        assert ok.status_code == 200
        assert ok.headers["x-remaining-calls"] == "149"  # the 401s did not count
        writes = api.get("/_sandbox/writes", params={"platform": "shipbob"}).json()
    assert [(w["status"], w["outcome"]) for w in writes] == [(401, "unauthorized")]
    assert server.sandbox.platforms["shipbob"].state()["orders"][0]["status"] == "Processing"


def test_channels_page_by_cursor(run_sandbox):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",))
    with client(server) as api:
        current = api.get("/2026-01/channel")
        assert current.status_code == 200
        assert_conforms("2026-01", "GET", "/channel", current)
        assert current.json()["next"] is None
        writable = [c for c in current.json()["items"] if "orders_write" in c["scopes"]]
        assert DEFAULT_CREDENTIALS["channel_id"] in [c["id"] for c in writable]
        assert DEFAULT_CREDENTIALS["readonly_channel_id"] not in [c["id"] for c in writable]
        # Cursor paging, one record at a time, follows `next` to the end.
        seen, url = [], "/2026-01/channel?RecordsPerPage=1"
        while url:
            page = api.get(url)
            assert_conforms("2026-01", "GET", "/channel", page)
            seen += [c["id"] for c in page.json()["items"]]
            url = page.json()["next"]
        assert seen == [c["id"] for c in current.json()["items"]]
        bad = api.get("/2026-01/channel", params={"Cursor": "%%%"})
        assert bad.status_code == 400 and "Cursor" in bad.json()
        assert api.get("/2026-07/channel").json() == current.json()


# ---------------------------------------------------------------- versions past their end of support
@pytest.mark.parametrize("version", ("1.0", "2.0", "2025-07"))
def test_retired_versions_are_refused_as_no_longer_accessible(run_sandbox, version):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",), settings=FROZEN)
    message = (
        f"API version {version} is no longer accessible: it reached end of support on 2026-07-31. "
        "Use a supported version (2026-01, 2026-07)."
    )
    with client(server) as api:
        for method, path in (
            ("GET", "/order"),
            ("GET", "/order/9000001"),
            ("GET", "/channel"),
            ("POST", "/order/9000001/cancel"),
            ("POST", "/order/9000001:cancel"),
        ):
            response = api.request(method, f"/{version}{path}", headers=WRITE_CHANNEL)
            assert response.status_code == 410, (method, path, response.text)
            assert response.json() == {"statusCode": 410, "message": message}
        assert api.get("/2026-07/order/9000001").json()["status"] == "Processing"  # nothing cancelled
        writes = api.get("/_sandbox/writes").json()
    assert [(w["status"], w["outcome"]) for w in writes] == [(410, "version_retired")] * 2
    assert httpx.get(f"{server.urls['shipbob']}/{version}/order").status_code == 401  # the token comes first


def test_versions_retire_on_the_scenario_clock(run_sandbox):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",), settings=FROZEN)
    with client(server) as api:

        def status(version: str) -> int:
            return api.get(f"/{version}/order/9000001").status_code

        assert api.post("/_sandbox/clock", json={"now": "2026-07-31T23:59:59Z"}).status_code == 200
        assert (status("2025-07"), status("2026-01"), status("2026-07")) == (200, 200, 200)  # its last day
        advance(api, 1)
        assert (status("2025-07"), status("2026-01"), status("2026-07")) == (410, 200, 200)
        assert api.post("/_sandbox/clock", json={"now": "2027-02-01T00:00:00Z"}).status_code == 200
        assert (status("2026-01"), status("2026-07")) == (410, 200)
        assert api.get("/2026-01/order").json()["message"].endswith("Use a supported version (2026-07).")


def test_default_quota_is_150_requests_per_60_seconds(run_sandbox):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",))
    impl = server.sandbox.platforms["shipbob"]
    assert (impl.rate_limit, impl.rate_window) == (150, 60.0)
    with client(server) as api:
        remaining = [
            int(api.get(path).headers["x-remaining-calls"])
            for path in ("/2026-07/order", "/2026-01/order/9000001", "/2026-07/channel")
        ]
    assert remaining == [149, 148, 147]  # one budget per token across every endpoint and version
    assert impl.state()["rate_limit"] == {"limit": 150, "window_seconds": 60.0}


def test_over_quota_gets_shipbob_429_per_token(run_sandbox):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",), settings=Settings(rate_scale=0.02))
    with client(server) as api:
        remaining = [api.get("/2026-01/order").headers["x-remaining-calls"] for _ in range(3)]
        assert remaining == ["2", "1", "0"]
        throttled = api.get("/2026-07/order")
        assert throttled.status_code == 429
        wait = int(throttled.headers["x-retry-after"])
        assert 1 <= wait <= 60
        assert throttled.headers["x-remaining-calls"] == "0"
        assert throttled.json() == {
            "statusCode": 429,
            "message": f"Rate limit is exceeded. Try again in {wait} seconds.",
        }
        refused_write = api.post("/2026-01/order/9000001:cancel")
        assert refused_write.status_code == 429
        # The quota is per token: a second PAT has its own window.
        other = api.post("/_sandbox/shipbob/tokens").json()["token"]
        fresh = api.get("/2026-07/order", headers={"Authorization": f"Bearer {other}"})
        assert fresh.status_code == 200 and fresh.headers["x-remaining-calls"] == "2"
        calls = api.get("/_sandbox/calls").json()
        writes = api.get("/_sandbox/writes").json()
    assert sum(t["count"] for t in calls["throttled"]) == 2
    assert [(w["status"], w["outcome"]) for w in writes] == [(429, "too_many_requests")]
    assert server.sandbox.platforms["shipbob"].state()["orders"][0]["status"] == "Processing"


def test_injected_faults_use_shipbob_shapes(run_sandbox):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",))
    with client(server) as api:
        api.post("/_sandbox/faults", json={"platform": "shipbob", "kind": "429", "path": "/order"})
        throttled = api.get("/2026-07/order")
        assert throttled.status_code == 429 and throttled.headers["x-retry-after"] == "1"
        assert throttled.json()["statusCode"] == 429
        api.post("/_sandbox/faults", json={"platform": "shipbob", "kind": "5xx", "status": 500})
        failed = api.get("/2026-07/order")
        assert failed.status_code == 500 and all(isinstance(v, list) for v in failed.json().values())
        api.post("/_sandbox/faults", json={"platform": "shipbob", "kind": "5xx", "status": 503})
        unavailable = api.get("/2026-07/order")
        assert unavailable.status_code == 503 and unavailable.json()["statusCode"] == 503

        api.post("/_sandbox/faults", json={"platform": "shipbob", "kind": "token_expiry"})
        assert api.get("/2026-01/order").status_code == 401
        assert api.get("/2026-01/order").status_code == 401  # revoked for good, as a deleted PAT
        assert server.sandbox.platforms["shipbob"].state()["tokens"] == {"active": 0, "revoked": 1}
        new = api.post("/_sandbox/shipbob/tokens").json()["token"]
        assert api.get("/2026-01/order", headers={"Authorization": f"Bearer {new}"}).status_code == 200


# ---------------------------------------------------------------- order list, paging, filters
def test_paging_1000_orders_by_headers_is_complete_and_stable(run_sandbox):
    orders = [sb_order(i, created=NOW - timedelta(days=3) + timedelta(minutes=i // 2)) for i in range(1000)]
    server = run_sandbox(scenario(*orders), platforms=("shipbob",))

    def walk(api: httpx.Client, first: str) -> tuple[list[int], list[dict]]:
        ids, heads, url = [], [], first
        while url:
            page = api.get(url)
            assert page.status_code == 200
            heads.append(
                {
                    k: page.headers.get(k)
                    for k in ("page-number", "page-size", "total-count", "total-pages", "next-page")
                }
            )
            ids += [o["id"] for o in page.json()]
            url = page.headers.get("next-page")
            assert url is None or url.startswith(first.split("?")[0] + "?")
        return ids, heads

    with client(server) as api:
        ids, heads = walk(api, "/2026-07/order?Limit=250")
        assert len(ids) == 1000 and len(set(ids)) == 1000
        assert [h["page-number"] for h in heads] == ["1", "2", "3", "4"]
        assert {(h["page-size"], h["total-count"], h["total-pages"]) for h in heads} == {("250", "1000", "4")}
        assert heads[-1]["next-page"] is None
        assert heads[0]["next-page"] == "/2026-07/order?Page=2&Limit=250"
        again, _ = walk(api, "/2026-07/order?Limit=250")
        assert again == ids  # stable order (Newest first, ties broken by id)
        assert ids == sorted(ids, key=lambda i: ((i - 9000000) // 2, i), reverse=True)

        oldest, heads = walk(api, "/2026-01/order?SortOrder=Oldest&Limit=250")
        assert oldest == list(reversed(ids))
        assert "SortOrder=Oldest" in heads[0]["next-page"] and heads[0]["next-page"].startswith("/2026-01/order?")

        default = api.get("/2026-01/order")
        assert len(default.json()) == 50 and default.headers["page-size"] == "50"
        assert default.headers["total-pages"] == "20"
        beyond = api.get("/2026-01/order", params={"Page": 5, "Limit": 250})
        assert beyond.json() == [] and "next-page" not in beyond.headers
        assert beyond.headers["total-count"] == "1000"


@pytest.fixture
def filter_server(run_sandbox):
    """Orders with distinct creation, update, tracking and upload times."""
    t = NOW - timedelta(days=1)
    orders = [
        # 1: not yet picked, no tracking
        sb_order(1, created=t, shipments=[ship(1, status_since=iso(t + timedelta(hours=1)))]),
        # 2: shipped, tracking uploaded
        sb_order(
            2,
            status="Fulfilled",
            created=t + timedelta(hours=2),
            shipments=[
                ship(
                    2,
                    status="Completed",
                    status_since=iso(t + timedelta(hours=5)),
                    is_tracking_uploaded=True,
                    tracking={"carrier": "UPS", "tracking_number": "1Z999AA10123456784"},
                )
            ],
        ),
        # 3: shipped, tracking not uploaded
        sb_order(
            3,
            status="Fulfilled",
            created=t + timedelta(hours=3),
            shipments=[ship(3, status="Completed", status_since=iso(t + timedelta(hours=8)))],
        ),
        # 4: split order, one part shipped and uploaded, one still processing
        sb_order(
            4,
            status="PartiallyFulfilled",
            created=t + timedelta(hours=4),
            skus=("A-1", "B-2"),
            shipments=[
                ship(4, 0, status="Completed", status_since=iso(t + timedelta(hours=6)), is_tracking_uploaded=True),
                ship(4, 1, detail="Packed", status_since=iso(t + timedelta(hours=7))),
            ],
        ),
        # 5: on hold since creation
        sb_order(
            5,
            status="Exception",
            created=t + timedelta(hours=5),
            shipments=[ship(5, status="OnHold", status_since=iso(t))],
        ),
    ]
    for entry in orders[:4]:
        entry["shipbob"]["reference_id"] = f"REF-{entry['shipbob']['order_id']}"
    # Nothing moves during the test: every phase lasts ten days.
    still = {
        phase: 10 * 86400
        for phase in (
            "Allocated",
            "Picked",
            "Packed",
            "Labeled",
            "AwaitingCarrierPickup",
            "InTransit",
            "OutForDelivery",
        )
    }
    server = run_sandbox(
        scenario(*orders), platforms=("shipbob",), settings=Settings(clock_rate=0, durations={"shipbob": still})
    )
    return server, t


@pytest.mark.parametrize("version", VERSIONS)
def test_every_list_filter(filter_server, version):
    server, t = filter_server

    with client(server) as api:

        def ids(**params) -> list[int]:
            response = api.get(f"/{version}/order", params=params)
            assert response.status_code == 200, response.text
            assert_conforms(version, "GET", "/order", response)
            if "limit" not in params:
                assert int(response.headers["total-count"]) == len(response.json())
            return sorted(o["id"] - 9000000 for o in response.json())

        assert ids() == [1, 2, 3, 4, 5]
        assert ids(IDs="9000002,9000004") == [2, 4]
        assert api.get(f"/{version}/order?IDs=9000001&IDs=9000003").json()[0]["id"] == 9000003
        assert ids(ReferenceIds="REF-9000001,REF-9000003,nope") == [1, 3]
        assert ids(ReferenceIds="6100000005") == [5]
        # Creation window [start, end).
        assert ids(StartDate=iso(t + timedelta(hours=2))) == [2, 3, 4, 5]
        assert ids(EndDate=iso(t + timedelta(hours=2))) == [1]
        assert ids(StartDate=iso(t + timedelta(hours=2)), EndDate=iso(t + timedelta(hours=4))) == [2, 3]
        assert ids(StartDate="2026-11-19T19:00:00+02:00") == [2, 3, 4, 5]  # offsets honoured
        newest = [o["id"] for o in api.get(f"/{version}/order", params={"SortOrder": "Newest"}).json()]
        oldest = [o["id"] for o in api.get(f"/{version}/order", params={"SortOrder": "Oldest"}).json()]
        assert oldest == [9000001 + i for i in range(5)] and newest == oldest[::-1]
        assert ids(HasTracking="true") == [2, 3, 4]
        assert ids(HasTracking="false") == [1, 5]
        assert ids(IsTrackingUploaded="true") == [2]  # 4 still has a part to ship
        assert ids(IsTrackingUploaded="false") == [1, 3, 4, 5]
        # Last update: 1 at +1h, 2 at +5h, 3 at +8h, 4 at +7h, 5 at creation (+5h).
        assert ids(LastUpdateStartDate=iso(t + timedelta(hours=6))) == [3, 4]
        assert ids(LastUpdateEndDate=iso(t + timedelta(hours=5))) == [1]
        assert ids(LastUpdateStartDate=iso(t + timedelta(hours=5)), LastUpdateEndDate=iso(t + timedelta(hours=7))) == [
            2,
            5,
        ]
        # Tracking updates: only orders with tracking; 2 at +5h, 4 at +6h, 3 at +8h.
        assert ids(LastTrackingUpdateStartDate=iso(t)) == [2, 3, 4]
        assert ids(LastTrackingUpdateStartDate=iso(t + timedelta(hours=6))) == [3, 4]
        assert ids(LastTrackingUpdateEndDate=iso(t + timedelta(hours=6))) == [2]
        # All filters are ANDed; parameter names bind case-insensitively.
        assert ids(HasTracking="true", IsTrackingUploaded="false", StartDate=iso(t + timedelta(hours=3))) == [3, 4]
        assert ids(hastracking="TRUE", limit="1", page="2") == [3]


@pytest.mark.parametrize("version", VERSIONS)
def test_bad_list_parameters_get_a_validation_dictionary(run_sandbox, version):
    server = run_sandbox(scenario(sb_order(1)), platforms=("shipbob",))
    cases = [
        ({"Limit": "0"}, "Limit"),
        ({"Limit": "251"}, "Limit"),
        ({"Limit": "ten"}, "Limit"),
        ({"Page": "0"}, "Page"),
        ({"Page": "x"}, "Page"),
        ({"StartDate": "yesterday"}, "StartDate"),
        ({"LastUpdateEndDate": "2026-13-45"}, "LastUpdateEndDate"),
        ({"HasTracking": "maybe"}, "HasTracking"),
        ({"IsTrackingUploaded": "1x"}, "IsTrackingUploaded"),
        ({"SortOrder": "Sideways"}, "SortOrder"),
        ({"IDs": "9000001,abc"}, "IDs"),
        ({"LastTrackingUpdateStartDate": "soon"}, "LastTrackingUpdateStartDate"),
    ]
    with client(server) as api:
        for params, field in cases:
            response = api.get(f"/{version}/order", params=params)
            assert response.status_code == 400, params
            assert list(response.json()) == [field] and response.json()[field][0]
            assert_conforms(version, "GET", "/order", response)
        both = api.get(f"/{version}/order", params={"Limit": "999", "SortOrder": "Up"}).json()
        assert set(both) == {"Limit", "SortOrder"}
        assert both["Limit"] == ["The field Limit must be between 1 and 250."]
        assert api.get(f"/{version}/order", params={"Limit": "250"}).status_code == 200
        assert api.get(f"/{version}/order", params={"Limit": "1"}).status_code == 200


# ---------------------------------------------------------------- single reads and 404s
@pytest.mark.parametrize("version", VERSIONS)
def test_order_and_shipment_reads(run_sandbox, version):
    server = run_sandbox(
        scenario(sb_order(1, skus=("A-1", "B-2"), shipments=[ship(1, 0), ship(1, 1, status="Completed")]), sb_order(2)),
        platforms=("shipbob",),
    )
    with client(server) as api:
        order = api.get(f"/{version}/order/9000001")
        assert order.status_code == 200
        assert_conforms(version, "GET", "/order/{orderId}", order)
        body = order.json()
        assert body["reference_id"] == "6100000001" and body["order_number"] == "1001"
        assert body["status"] == "PartiallyFulfilled"
        assert [p["sku"] for p in body["products"]] == ["A-1", "B-2"]

        shipments = api.get(f"/{version}/order/9000001/shipment")
        assert_conforms(version, "GET", "/order/{orderId}/shipment", shipments)
        assert [s["id"] for s in shipments.json()] == [20000010, 20000011]
        one = api.get(f"/{version}/order/9000001/shipment/20000011")
        assert_conforms(version, "GET", "/order/{orderId}/shipment/{shipmentId}", one)
        direct = api.get(f"/{version}/shipment/20000011")
        assert_conforms(version, "GET", "/shipment/{shipmentId}", direct)
        assert one.json() == direct.json() == shipments.json()[1]
        assert direct.json()["order_id"] == 9000001 and direct.json()["status"] == "Completed"

        assert api.get(f"/{version}/order/9999999").status_code == 404
        assert api.get(f"/{version}/shipment/1").status_code == 404
        assert api.get(f"/{version}/order/9000002/shipment/20000011").status_code == 404  # not its order
        assert api.get(f"/{version}/order/9999999/shipment").status_code == 404
        assert api.post(f"/{version}/order/9999999{':cancel'}", headers=WRITE_CHANNEL).status_code == 404
        bad = api.get(f"/{version}/order/abc")
        assert bad.status_code == 400 and "orderId" in bad.json()
        assert api.get(f"/{version}/order/99999999999").status_code == 400  # beyond int32
        assert api.get(f"/{version}/order/9000001", headers={"shipbob_channel_id": "1"}).status_code == 403


def test_a_reference_id_of_digits_that_are_not_ascii_is_kept_as_written(run_sandbox):
    """A reference id of "\u00b2" (a digit to str.isdigit(), no number to int()) loads as the order number."""
    server = run_sandbox(scenario(sb_order(1, reference_id="\u00b2")), platforms=("shipbob",))
    with client(server) as api:
        body = api.get("/2026-01/order/9000001").json()
    assert body["reference_id"] == "\u00b2" and body["order_number"] == "\u00b2"


def test_responses_conform_for_every_shipment_state(run_sandbox):
    states = [("Processing", d) for d in ("Allocated", "Picked", "Packed", "Labeled")] + [
        (s, None)
        for s in (
            "None",
            "Completed",
            "Exception",
            "OnHold",
            "Cancelled",
            "CleanSweeped",
            "LabeledCreated",
            "ImportReview",
        )
    ]
    orders = [sb_order(i, shipments=[ship(i, status=s, detail=d)]) for i, (s, d) in enumerate(states, start=1)]
    orders += [
        sb_order(50 + i, status=s)
        for i, s in enumerate(
            ("Processing", "Exception", "PartiallyFulfilled", "Fulfilled", "Cancelled", "ImportReview")
        )
    ]
    server = run_sandbox(scenario(*orders), platforms=("shipbob",))
    with client(server) as api:
        for version in VERSIONS:
            listing = api.get(f"/{version}/order", params={"Limit": 250})
            assert_conforms(version, "GET", "/order", listing)
            assert len(listing.json()) == len(orders)
            for order in listing.json():
                shipments = api.get(f"/{version}/order/{order['id']}/shipment")
                assert_conforms(version, "GET", "/order/{orderId}/shipment", shipments)
        statuses = {o["id"] - 9000000: o["status"] for o in listing.json()}
    # Orders given without shipments get shipments matching their status.
    assert [statuses[50 + i] for i in range(6)] == [
        "Processing",
        "Exception",
        "PartiallyFulfilled",
        "Fulfilled",
        "Cancelled",
        "ImportReview",
    ]
    synthesized = {o["id"]: o for o in listing.json()}[9000053]["shipments"][0]
    assert synthesized["status"] == "Completed" and valid_tracking(
        synthesized["tracking"]["carrier"], synthesized["tracking"]["tracking_number"]
    )


def test_order_status_is_imputed_from_shipments(run_sandbox):
    combos = {
        1: ([("Completed", None), ("Completed", None)], "Fulfilled"),
        2: ([("Completed", None), ("Processing", "Picked")], "PartiallyFulfilled"),
        3: ([("Cancelled", None), ("Cancelled", None)], "Cancelled"),
        4: ([("Completed", None), ("Cancelled", None)], "Fulfilled"),
        5: ([("Processing", "Allocated"), ("OnHold", None)], "Exception"),
        6: ([("Exception", None)], "Exception"),
        7: ([("Processing", "Labeled"), ("Cancelled", None)], "Processing"),
        8: ([("ImportReview", None)], "ImportReview"),
    }
    # The scenario's order status is deliberately wrong: the shipments decide.
    orders = [
        sb_order(
            i,
            status="Processing",
            skus=("A-1", "B-2"),
            shipments=[ship(i, k, status=s, detail=d) for k, (s, d) in enumerate(parts)],
        )
        for i, (parts, _) in combos.items()
    ]
    server = run_sandbox(scenario(*orders), platforms=("shipbob",))
    with client(server) as api:
        got = {o["id"] - 9000000: o["status"] for o in api.get("/2026-01/order").json()}
    assert got == {i: expected for i, (_, expected) in combos.items()}


# ---------------------------------------------------------------- state machine
def test_processing_shipment_moves_with_the_clock(run_sandbox):
    server = run_sandbox(
        scenario(sb_order(1, created=NOW - timedelta(hours=1), shipments=[ship(1, detail="Allocated")])),
        platforms=("shipbob",),
        settings=FROZEN,
    )
    with client(server) as api:

        def shipment(version: str = "2026-01") -> dict:
            response = api.get(f"/{version}/shipment/20000010")
            assert_conforms(version, "GET", "/shipment/{shipmentId}", response)
            return response.json()

        first = shipment()
        assert first["status"] == "Processing" and first["status_details"] == []
        assert first["last_update_at"] == iso(NOW) and first["last_tracking_update_at"] is None
        assert first["tracking"]["tracking_number"] is None
        assert first["estimated_fulfillment_date_status"] == "PendingOnTime"
        advance(api, 4 * 3600 - 1)
        assert shipment()["status_details"] == []
        steps = [
            (1, 100, "Picked", NOW + timedelta(hours=4)),
            (1800, 101, "Packed", NOW + timedelta(hours=4, minutes=30)),
            (600, 102, "Labeled", NOW + timedelta(hours=4, minutes=40)),
        ]
        for seconds, detail_id, name, at in steps:
            advance(api, seconds)
            s = shipment("2026-07")
            assert s["status"] == "Processing"
            assert [(d["id"], d["name"]) for d in s["status_details"]] == [(detail_id, name)]
            assert s["last_update_at"] == iso(at)
            assert api.get("/2026-07/order", params={"HasTracking": "true"}).json() == []
        labeled_at = NOW + timedelta(hours=4, minutes=40)
        advance(api, 2 * 3600)
        done = shipment()
        shipped_at = labeled_at + timedelta(hours=2)
        assert done["status"] == "Completed"
        assert [(d["id"], d["name"]) for d in done["status_details"]] == [(200, "Processing")]
        assert done["last_tracking_update_at"] == iso(shipped_at) == done["last_update_at"]
        assert done["actual_fulfillment_date"] == iso(labeled_at)
        assert done["estimated_fulfillment_date_status"] == "FulfilledOnTime"
        tracking = done["tracking"]
        assert tracking["carrier"] in ("USPS", "UPS", "FedEx", "DHLExpress")
        assert valid_tracking(tracking["carrier"], tracking["tracking_number"])
        assert tracking["tracking_number"] in tracking["tracking_url"]
        order = api.get("/2026-01/order/9000001").json()
        assert order["status"] == "Fulfilled"
        assert [o["id"] for o in api.get("/2026-07/order", params={"HasTracking": "true"}).json()] == [9000001]
        # After the warehouse: in transit, out for delivery, delivered (tracking unchanged).
        advance(api, 6 * 3600)
        assert shipment()["status_details"][0]["id"] == 201
        advance(api, 48 * 3600 + 8 * 3600)
        delivered = shipment()
        assert delivered["status_details"][0]["name"] == "Delivered"
        assert delivered["delivery_date"] == iso(shipped_at + timedelta(hours=62))
        assert delivered["tracking"] == tracking


def test_durations_come_from_settings(run_sandbox):
    settings = Settings(
        clock_rate=0, durations={"shipbob": {"Allocated": 60, "Picked": 60, "Packed": 60, "Labeled": 60}}
    )
    server = run_sandbox(
        scenario(sb_order(1), sb_order(2, shipments=[ship(2, detail="Packed")])),
        platforms=("shipbob",),
        settings=settings,
    )
    with client(server) as api:
        advance(api, 119)
        details = {o["id"]: o["shipments"][0]["status_details"] for o in api.get("/2026-01/order").json()}
        assert details[9000001][0]["name"] == "Picked" and details[9000002][0]["name"] == "Labeled"
        advance(api, 121)
        statuses = {o["id"]: o["status"] for o in api.get("/2026-01/order").json()}
        assert statuses == {9000001: "Fulfilled", 9000002: "Fulfilled"}


# ---------------------------------------------------------------- cancels
@pytest.mark.parametrize("version", VERSIONS)
def test_order_cancel_results(run_sandbox, version):
    server = run_sandbox(
        scenario(
            sb_order(1, skus=("A-1", "B-2"), shipments=[ship(1, 0), ship(1, 1, status="OnHold")]),
            sb_order(2, skus=("A-1", "B-2"), shipments=[ship(2, 0, status="Completed"), ship(2, 1)]),
            sb_order(3, shipments=[ship(3, detail="Picked")]),
        ),
        platforms=("shipbob",),
    )
    path = "/order/{orderId}:cancel"
    with client(server) as api:

        def cancel(order_id: int) -> httpx.Response:
            response = api.post(f"/{version}" + path.format(orderId=order_id), headers=WRITE_CHANNEL)
            assert response.status_code == 200, response.text
            assert_conforms(version, "POST", path, response)
            return response

        full = cancel(9000001).json()
        assert full["order_id"] == 9000001 and full["status"] == "Success"
        assert full["order"]["status"] == "Cancelled"
        assert [(r["action"], r["shipment_id"], r["is_success"]) for r in full["canceled_shipment_results"]] == [
            ("Cancel", 20000010, True),
            ("Cancel", 20000011, True),
        ]
        assert all(s["status"] == "Cancelled" for s in full["order"]["shipments"])

        partial = cancel(9000002).json()
        assert partial["status"] == "PartialSuccess"
        assert [r["is_success"] for r in partial["canceled_shipment_results"]] == [False, True]
        assert "shipped" in partial["canceled_shipment_results"][0]["reason"]
        assert partial["order"]["status"] == "Fulfilled"  # what could ship has shipped

        refused = cancel(9000003).json()
        assert refused["status"] == "Failure" and refused["order"]["status"] == "Processing"
        assert "picked" in refused["canceled_shipment_results"][0]["reason"]

        again = cancel(9000001).json()  # nothing left to cancel
        assert again["status"] == "Failure"
        assert {r["reason"] for r in again["canceled_shipment_results"]} == {"Shipment is already cancelled"}
        assert api.get(f"/{version}/order/9000001").json()["status"] == "Cancelled"
        writes = api.get("/_sandbox/writes").json()
    assert [w["outcome"] for w in writes] == ["ok", "partial", "not_cancellable", "not_cancellable"]
    assert all(w["status"] == 200 for w in writes)


def test_order_cancel_channel_header_rules(run_sandbox):
    server = run_sandbox(scenario(sb_order(1), sb_order(2), sb_order(3)), platforms=("shipbob",))
    with client(server) as api:
        garbled = api.post("/2026-07/order/9000001:cancel", headers={"shipbob_channel_id": "abc"})
        assert garbled.status_code == 400 and "shipbob_channel_id" in garbled.json()
        assert_conforms("2026-07", "POST", "/order/{orderId}:cancel", garbled)
        readonly = {"shipbob_channel_id": str(DEFAULT_CREDENTIALS["readonly_channel_id"])}
        assert api.post("/2026-07/order/9000001:cancel", headers=readonly).status_code == 403
        assert api.post("/2026-07/order/9000001:cancel", headers={"shipbob_channel_id": "42"}).status_code == 403
        assert api.post("/2026-01/order/9000001:cancel", headers=readonly).status_code == 403
        assert api.get("/2026-01/order/9000001").json()["status"] == "Processing"  # none of that cancelled
        # 2026-01 on do not require the header on order cancel; sending it is harmless.
        assert api.post("/2026-01/order/9000002:cancel").json()["status"] == "Success"
        assert api.post("/2026-01/order/9000003:cancel", headers=WRITE_CHANNEL).json()["status"] == "Success"
        writes = api.get("/_sandbox/writes").json()
    assert [(w["status"], w["outcome"]) for w in writes] == [
        (400, "bad_request"),
        (403, "forbidden"),
        (403, "forbidden"),
        (403, "forbidden"),
        (200, "ok"),
        (200, "ok"),
    ]


def test_order_cancel_refusal_can_answer_422(run_sandbox):
    settings = Settings(platforms={"shipbob": {"order_cancel_refused_as": "422"}})
    server = run_sandbox(
        scenario(sb_order(1, shipments=[ship(1, detail="Labeled")]), sb_order(2)),
        platforms=("shipbob",),
        settings=settings,
    )
    with client(server) as api:
        refused = api.post("/2026-01/order/9000001:cancel")
        assert refused.status_code == 422 and "OrderId" in refused.json()
        assert_conforms("2026-01", "POST", "/order/{orderId}:cancel", refused)
        assert api.post("/2026-01/order/9000002:cancel").json()["status"] == "Success"


NOT_CANCELLABLE = [
    ("Processing", "Picked", "picked"),
    ("Processing", "Packed", "packed"),
    ("Processing", "Labeled", "labeled"),
    ("Completed", None, "shipped"),
    ("LabeledCreated", None, "label"),
    ("Cancelled", None, "already cancelled"),
]
CANCELLABLE = [
    ("Processing", "Allocated"),
    ("Processing", None),
    ("None", None),
    ("OnHold", None),
    ("Exception", None),
    ("ImportReview", None),
    ("CleanSweeped", None),
]


@pytest.mark.parametrize("version", VERSIONS)
def test_single_shipment_cancel_rules(run_sandbox, version):
    cases = [(s, d) for s, d, _ in NOT_CANCELLABLE] + CANCELLABLE
    orders = [sb_order(i, shipments=[ship(i, status=s, detail=d)]) for i, (s, d) in enumerate(cases, start=1)]
    server = run_sandbox(scenario(*orders), platforms=("shipbob",))
    by_id = "/shipment/{shipmentId}:cancel"
    by_order = "/order/{orderId}/shipment/{shipmentId}:cancel"
    with client(server) as api:
        for i, (status, detail, word) in enumerate(NOT_CANCELLABLE, start=1):
            template = by_id if i % 2 else by_order
            path = template.format(orderId=9000000 + i, shipmentId=20000000 + i * 10)
            response = api.post(f"/{version}{path}")
            assert response.status_code == 422, (status, detail)
            assert_conforms(version, "POST", template, response)
            assert word in response.json()["ShipmentId"][0]
            assert api.get(f"/{version}/shipment/{20000000 + i * 10}").json()["status"] == status
        for i, (status, detail) in enumerate(CANCELLABLE, start=len(NOT_CANCELLABLE) + 1):
            template = by_id if i % 2 else by_order
            path = template.format(orderId=9000000 + i, shipmentId=20000000 + i * 10)
            response = api.post(f"/{version}{path}", headers=WRITE_CHANNEL)
            assert response.status_code == 200, (status, detail, response.text)
            assert_conforms(version, "POST", template, response)
            assert response.json()["status"] == "Cancelled" and response.json()["status_details"] == []
            assert api.get(f"/{version}/order/{9000000 + i}").json()["status"] == "Cancelled"
        # The order in the path must own the shipment.
        assert api.post(f"/{version}" + by_order.format(orderId=9000001, shipmentId=20000020)).status_code == 404
        assert api.post(f"/{version}" + by_id.format(shipmentId=12345)).status_code == 404
        outcomes = [w["outcome"] for w in api.get("/_sandbox/writes").json()]
    assert outcomes == ["not_cancellable"] * len(NOT_CANCELLABLE) + ["ok"] * len(CANCELLABLE) + ["not_found"] * 2


def test_cancel_window_closes_when_picking_starts(run_sandbox):
    server = run_sandbox(scenario(sb_order(1), sb_order(2)), platforms=("shipbob",), settings=FROZEN)
    with client(server) as api:
        advance(api, 3 * 3600)
        assert api.post("/2026-01/shipment/20000000:cancel").status_code == 404  # ids are synthesized
        ids = [o["shipments"][0]["id"] for o in api.get("/2026-01/order", params={"SortOrder": "Oldest"}).json()]
        ok = api.post(f"/2026-01/shipment/{ids[0]}:cancel")
        assert ok.status_code == 200 and ok.json()["last_update_at"] == iso(NOW + timedelta(hours=3))
        advance(api, 3600)  # picking starts at +4 h
        late = api.post(f"/2026-01/shipment/{ids[1]}:cancel")
        assert late.status_code == 422 and "picked" in late.json()["ShipmentId"][0]
        advance(api, 5 * 24 * 3600)  # a cancelled shipment stays cancelled
        states = {o["id"]: o["status"] for o in api.get("/2026-01/order").json()}
        assert states == {9000001: "Cancelled", 9000002: "Fulfilled"}


@pytest.mark.parametrize("version", VERSIONS)
def test_batch_cancel(run_sandbox, version):
    server = run_sandbox(
        scenario(
            sb_order(1, shipments=[ship(1)]),
            sb_order(2, shipments=[ship(2, status="Completed")]),
            sb_order(3, shipments=[ship(3, detail="Packed")]),
            sb_order(4, shipments=[ship(4, status="OnHold")]),
        ),
        platforms=("shipbob",),
    )
    template = "/shipment:batchCancel"
    url = f"/{version}{template}"
    with client(server) as api:
        body = {"shipment_ids": [20000010, 20000020, 20000030, 20000040, 777, 20000010]}
        missing = api.post(url, json=body)
        assert missing.status_code == 422 and list(missing.json()) == ["shipbob_channel_id"]
        assert_conforms(version, "POST", template, missing)
        readonly = {"shipbob_channel_id": str(DEFAULT_CREDENTIALS["readonly_channel_id"])}
        assert api.post(url, json=body, headers=readonly).status_code == 403
        response = api.post(url, json=body, headers=WRITE_CHANNEL)
        assert response.status_code == 200
        assert_conforms(version, "POST", template, response)
        results = [(r["shipment_id"], r["is_success"], r["reason"]) for r in response.json()["results"]]
        assert [r[:2] for r in results] == [
            (20000010, True),
            (20000020, False),
            (20000030, False),
            (20000040, True),
            (777, False),
            (20000010, False),
        ]
        assert "shipped" in results[1][2] and "packed" in results[2][2]
        assert results[4][2] == "Shipment not found" and results[5][2] == "Shipment is already cancelled"
        statuses = {o["id"]: o["status"] for o in api.get(f"/{version}/order").json()}
        assert statuses == {9000001: "Cancelled", 9000002: "Fulfilled", 9000003: "Processing", 9000004: "Cancelled"}
        for bad in ({"shipment_ids": []}, {"shipment_ids": ["x"]}, {}, [1, 2]):
            refused = api.post(url, json=bad, headers=WRITE_CHANNEL)
            assert refused.status_code == 422 and "shipment_ids" in refused.json()
            assert_conforms(version, "POST", template, refused)
        garbled = api.post(url, content=b"{not json", headers={**WRITE_CHANNEL, "content-type": "application/json"})
        assert garbled.status_code == 422
        writes = api.get("/_sandbox/writes").json()
    assert [(w["status"], w["outcome"]) for w in writes] == [
        (422, "channel_required"),
        (403, "forbidden"),
        (200, "partial"),
    ] + [(422, "bad_request")] * 5
    assert writes[2]["body"] == body and writes[2]["path"] == url
