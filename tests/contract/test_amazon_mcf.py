"""Contract tests of the Amazon SP-API simulator (LWA, Fulfillment Outbound 2020-07-01, Reports 2021-06-30).

Everything goes over real HTTP to a running sandbox. Every SP-API response body is validated
against the official Swagger models in tests/fixtures/vendor-specs (refs resolved, formats checked), and
must not carry fields the model does not declare.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from jsonschema import Draft4Validator, FormatChecker

from orderops_provider.base import http_client
from sandbox.amazon_mcf import DEFAULT_CREDENTIALS, SHIPMENT_REPORT_COLUMNS
from sandbox.core import Settings
from tests.conftest import VirtualTime
from tests.support import NOW_ISO as NOW

SPEC_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "vendor-specs" / "amazon-sp-api"
FBA = "/fba/outbound/2020-07-01"
REPORTS = "/reports/2021-06-30"
FROZEN = dict(clock_rate=0)
CARRIER_FORMATS = {"UPS": r"1Z[0-9A-Z]{16}", "USPS": r"9400\d{18}", "FEDEX": r"\d{12}", "AMZL_US": r"TBA\d{12}"}

# ---------------------------------------------------------------- schema checks


def _load(name: str) -> dict:
    return json.loads((SPEC_DIR / name).read_text())


FBA_MODEL = _load("fulfillmentOutbound_2020-07-01.json")
REPORTS_MODEL = _load("reports_2021-06-30.json")
FORMATS = FormatChecker()


@FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _resolve(schema: dict, model: dict) -> dict:
    while "$ref" in schema:
        schema = model["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _undeclared(value, schema: dict, model: dict, path: str = "$") -> list[str]:
    """Fields present in a response that the model does not declare (the models allow extras)."""
    schema = _resolve(schema, model)
    found = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                if not isinstance(schema.get("additionalProperties"), dict):
                    found.append(f"{path}.{key}")
            else:
                found += _undeclared(item, schema["properties"][key], model, f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += _undeclared(item, schema["items"], model, f"{path}[{i}]")
    return found


def conforms(body, definition: str, model: dict = FBA_MODEL) -> None:
    schema = {"allOf": [{"$ref": f"#/definitions/{definition}"}], "definitions": model["definitions"]}
    errors = sorted(Draft4Validator(schema, format_checker=FORMATS).iter_errors(body), key=str)
    assert not errors, f"{definition}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    extra = _undeclared(body, {"$ref": f"#/definitions/{definition}"}, model)
    assert not extra, f"{definition}: undeclared fields {extra[:5]}"


def test_schema_checker_catches_violations():
    """The checker itself must fail on a wrong enum, a missing required field, a bad date and an extra key."""
    good = {"payload": {"fulfillmentOrders": []}}
    conforms(good, "ListAllFulfillmentOrdersResponse")
    order = {
        "sellerFulfillmentOrderId": "1",
        "marketplaceId": "M",
        "displayableOrderId": "1",
        "displayableOrderDate": "2026-11-20T15:00:00Z",
        "displayableOrderComment": "c",
        "shippingSpeedCategory": "Standard",
        "destinationAddress": {"name": "n", "addressLine1": "a", "countryCode": "US", "postalCode": "1"},
        "receivedDate": "2026-11-20T15:00:00Z",
        "fulfillmentOrderStatus": "Complete",
        "statusUpdatedDate": "2026-11-20T15:00:00Z",
    }
    conforms({"payload": {"fulfillmentOrders": [order]}}, "ListAllFulfillmentOrdersResponse")
    for broken in (
        dict(order, fulfillmentOrderStatus="COMPLETE"),
        {k: v for k, v in order.items() if k != "marketplaceId"},
        dict(order, receivedDate="yesterday"),
        dict(order, shipDate="2026-11-20T15:00:00Z"),
    ):
        with pytest.raises(AssertionError):
            conforms({"payload": {"fulfillmentOrders": [broken]}}, "ListAllFulfillmentOrdersResponse")


# ---------------------------------------------------------------- scenario and client helpers


def mcf_order(
    n: int,
    status: str,
    *,
    received: str | None = None,
    shipments: list | None = None,
    skus: tuple[str, ...] = ("OSL-TEE-M",),
    **extra,
) -> dict:
    mcf = {"seller_fulfillment_order_id": str(1000 + n), "status": status, **extra}
    if received:
        mcf["received_time"] = received
    if shipments is not None:
        mcf["shipments"] = shipments
    return {
        "tiktok": {
            "id": f"576{n:015d}",
            "status": "AWAITING_SHIPMENT",
            "create_time": "2026-11-18T16:00:00Z",
            "rts_sla_time": "2026-11-20T23:59:00Z",
            "shipping_due_time": "2026-11-27T23:59:00Z",
            "tracking_number": "",
            "cancellation": None,
            "line_items": [{"id": f"577{n * 10 + j:015d}", "seller_sku": sku} for j, sku in enumerate(skus)],
        },
        "shopify": {
            "id": 6100000000 + n,
            "name": f"#{1000 + n}",
            "tiktok_id_in": "source_identifier",
            "cancelled": False,
        },
        "fulfiller": "amazon_mcf",
        "amazon_mcf": mcf,
        "shipbob": None,
    }


def scenario(*orders: dict) -> dict:
    return {"now": NOW, "orders": list(orders)}


class Client:
    """A plain SP-API client: LWA exchange, then x-amz-access-token on every call."""

    def __init__(self, server):
        self.server = server
        self.base = server.urls["amazon_mcf"]
        self.lwa = server.urls["amazon_lwa"]
        self.http = http_client(timeout=15)
        self.access = self.login().json()["access_token"]

    def login(self, **overrides) -> httpx.Response:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": DEFAULT_CREDENTIALS["refresh_token"],
            "client_id": DEFAULT_CREDENTIALS["client_id"],
            "client_secret": DEFAULT_CREDENTIALS["client_secret"],
            **overrides,
        }
        return self.http.post(f"{self.lwa}/auth/o2/token", data={k: v for k, v in form.items() if v is not None})

    def call(self, method: str, path: str, *, token: str | None = "", **kwargs) -> httpx.Response:
        headers = {"x-amz-access-token": self.access if token == "" else token} if token is not None else {}
        return self.http.request(method, self.base + path, headers=headers, **kwargs)

    def get(self, path: str, **params) -> httpx.Response:
        return self.call("GET", path, params=params)

    def order(self, sfo_id: str) -> dict:
        response = self.get(f"{FBA}/fulfillmentOrders/{sfo_id}")
        assert response.status_code == 200, response.text
        conforms(response.json(), "GetFulfillmentOrderResponse")
        return response.json()["payload"]

    def advance(self, seconds: float) -> None:
        self.http.post(f"{self.base}/_sandbox/clock", json={"advance_seconds": seconds}).raise_for_status()

    def writes(self) -> list[dict]:
        return self.http.get(f"{self.base}/_sandbox/writes", params={"platform": "amazon_mcf"}).json()


def stepped_wall() -> VirtualTime:
    """A wall clock for the platform's own timers (reports: 1 s queued, then 2 s in progress by
    default; token and download-link lifetimes) and its quotas that moves only when the test sleeps
    on it, so what a test sees never depends on how fast the machine is."""
    return VirtualTime(time.time())


@pytest.fixture
def mcf(run_sandbox):
    def start(*orders: dict, settings: Settings | None = None, wall: VirtualTime | None = None) -> Client:
        server = run_sandbox(scenario(*orders), platforms=("amazon_mcf",), settings=settings or Settings(**FROZEN))
        if wall is not None:  # the platform's timers and quotas move only when the test steps them
            server.sandbox.clock.wall_source = server.sandbox.clock.quota_source = wall
        return Client(server)

    return start


def assert_error(
    response: httpx.Response,
    status: int,
    code: str,
    message: str | None = None,
    model: dict = FBA_MODEL,
    definition: str = "GetFulfillmentOrderResponse",
) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    conforms(body, definition, model)
    error = body["errors"][0]
    assert error["code"] == code
    if message is not None:
        assert error["message"] == message
    assert response.headers["x-amzn-RequestId"]
    return error


# ---------------------------------------------------------------- Login with Amazon


def test_lwa_refresh_token_grant_issues_a_one_hour_token(mcf):
    client = mcf(mcf_order(1, "Planning"))
    response = client.login()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["access_token"].startswith("Atza|") and body["token_type"] == "bearer"
    assert body["expires_in"] == 3600 and body["refresh_token"] == DEFAULT_CREDENTIALS["refresh_token"]
    # The same exchange as a JSON body (some clients send it that way).
    as_json = client.http.post(
        f"{client.lwa}/auth/o2/token",
        json={
            "grant_type": "refresh_token",
            "refresh_token": DEFAULT_CREDENTIALS["refresh_token"],
            "client_id": DEFAULT_CREDENTIALS["client_id"],
            "client_secret": DEFAULT_CREDENTIALS["client_secret"],
        },
    )
    assert as_json.status_code == 200
    fresh = as_json.json()["access_token"]
    assert client.call("GET", f"{FBA}/fulfillmentOrders/1001", token=fresh).status_code == 200
    # Token exchanges are logged with their secrets scrubbed.
    logged = [w for w in client.writes() if w["operation"] == "lwa:token"]
    assert logged and all(w["body"]["client_secret"] == "***" and w["body"]["refresh_token"] == "***" for w in logged)


@pytest.mark.parametrize(
    "overrides, status, error, description",
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", "Client authentication failed"),
        ({"client_id": "amzn1.application-oa2-client.other"}, 401, "invalid_client", "Client authentication failed"),
        (
            {"refresh_token": "Atzr|revoked"},
            400,
            "invalid_grant",
            "The request has an invalid grant parameter : refresh_token",
        ),
        (
            {"refresh_token": None},
            400,
            "invalid_request",
            "The request is missing a required parameter : refresh_token",
        ),
        ({"grant_type": None}, 400, "invalid_request", "The request is missing a required parameter : grant_type"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", None),
        ({"grant_type": "client_credentials", "scope": "sellingpartnerapi::everything"}, 400, "invalid_scope", None),
        (
            {"grant_type": "authorization_code", "code": "ANxyz"},
            400,
            "invalid_grant",
            "The request has an invalid grant parameter : code",
        ),
    ],
)
def test_lwa_errors_are_oauth2_errors(mcf, overrides, status, error, description):
    client = mcf(mcf_order(1, "Planning"))
    response = client.login(**overrides)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error
    if description:
        assert body["error_description"] == description
    assert "access_token" not in body


def test_grantless_token_is_issued_but_refused_by_seller_operations(mcf):
    client = mcf(mcf_order(1, "Planning"))
    response = client.login(
        grant_type="client_credentials", scope="sellingpartnerapi::notifications", refresh_token=None
    )
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "sellingpartnerapi::notifications" and "refresh_token" not in body
    refused = client.call("GET", f"{FBA}/fulfillmentOrders/1001", token=body["access_token"])
    assert_error(refused, 403, "Unauthorized", "Access to requested resource is denied.")


# ---------------------------------------------------------------- SP-API authentication


def test_missing_invalid_and_expired_tokens_get_403_unauthorized(mcf):
    client = mcf(mcf_order(1, "Planning"))
    missing = client.call("GET", f"{FBA}/fulfillmentOrders/1001", token=None)
    err = assert_error(missing, 403, "Unauthorized", "Access to requested resource is denied.")
    assert err["details"] == "Access token is missing in the request header."
    assert "x-amzn-RateLimit-Limit" not in missing.headers
    bogus = client.call("GET", f"{FBA}/fulfillmentOrders/1001", token="Atza|forged")
    err = assert_error(bogus, 403, "Unauthorized")
    assert err["details"] == "The access token you provided is revoked, malformed or invalid."
    assert client.get(f"{FBA}/fulfillmentOrders/1001").status_code == 200
    client.server.sandbox.platforms["amazon_mcf"].expire_tokens()
    expired = client.get(f"{FBA}/fulfillmentOrders/1001")
    err = assert_error(expired, 403, "Unauthorized", "Access to requested resource is denied.")
    assert err["details"] == "The access token you provided has expired."
    # A fresh exchange works again.
    client.access = client.login().json()["access_token"]
    assert client.get(f"{FBA}/fulfillmentOrders/1001").status_code == 200


def test_access_token_expires_on_the_wall_clock(mcf):
    settings = Settings(clock_rate=0, platforms={"amazon_mcf": {"token_lifetime_seconds": 1}})
    client = mcf(mcf_order(1, "Planning"), settings=settings, wall=(wall := stepped_wall()))
    assert client.login().json()["expires_in"] == 1
    assert client.get(f"{FBA}/fulfillmentOrders/1001").status_code == 200
    client.advance(7200)  # the scenario clock does not age tokens
    wall.sleep(0.99)
    assert client.get(f"{FBA}/fulfillmentOrders/1001").status_code == 200
    wall.sleep(0.01)
    expired = client.get(f"{FBA}/fulfillmentOrders/1001")
    assert expired.json()["errors"][0]["details"] == "The access token you provided has expired."


# ---------------------------------------------------------------- listAllFulfillmentOrders


def test_list_pages_are_complete_and_stable_while_orders_change(mcf):
    orders = [mcf_order(i, "Received") for i in range(900)]
    # 100 orders that shipped yesterday: not updated since the query date below.
    orders += [mcf_order(i, "Complete", received="2026-11-19T00:00:00Z") for i in range(900, 1000)]
    client = mcf(*orders, settings=Settings(clock_rate=0, rate_scale=10))  # ~40 pages: above the burst
    start = "2026-11-20T14:00:00Z"
    seen: list[str] = []
    first = client.get(f"{FBA}/fulfillmentOrders", queryStartDate=start, MarketplaceIds="ATVPDKIKX0DER")
    assert first.status_code == 200
    page = first.json()
    conforms(page, "ListAllFulfillmentOrdersResponse")
    seen += [o["sellerFulfillmentOrderId"] for o in page["payload"]["fulfillmentOrders"]]
    # Every order changes status between pages; the walk must still see each one exactly once.
    client.advance(86400)
    pages = 1
    while page["payload"].get("nextToken"):
        response = client.get(f"{FBA}/fulfillmentOrders", nextToken=page["payload"]["nextToken"])
        assert response.status_code == 200, response.text
        page = response.json()
        conforms(page, "ListAllFulfillmentOrdersResponse")
        pages += 1
        seen += [o["sellerFulfillmentOrderId"] for o in page["payload"]["fulfillmentOrders"]]
        if pages > 1:
            assert {o["fulfillmentOrderStatus"] for o in page["payload"]["fulfillmentOrders"]} == {"Complete"}
    assert pages == 18  # 900 orders, 50 per page
    assert len(seen) == len(set(seen)) == 900
    assert set(seen) == {str(1000 + i) for i in range(900)}
    # Without a date, every order; page tokens are opaque and tamper-evident.
    everything, token = [], None
    while True:
        body = client.get(f"{FBA}/fulfillmentOrders", **({"nextToken": token} if token else {})).json()
        everything += body["payload"]["fulfillmentOrders"]
        token = body["payload"].get("nextToken")
        if not token:
            break
    assert len({o["sellerFulfillmentOrderId"] for o in everything}) == 1000
    assert_error(
        client.get(f"{FBA}/fulfillmentOrders", nextToken="bm90LWEtdG9rZW4"),
        400,
        "InvalidInput",
        "Invalid nextToken",
        definition="ListAllFulfillmentOrdersResponse",
    )


def test_list_query_start_date_selects_orders_updated_since(mcf):
    client = mcf(
        mcf_order(1, "Received"),
        mcf_order(2, "Complete", received="2026-11-18T00:00:00Z"),
        mcf_order(3, "Planning", received="2026-11-20T14:40:00Z"),
    )

    def ids(r):
        return sorted(o["sellerFulfillmentOrderId"] for o in r.json()["payload"]["fulfillmentOrders"])

    assert ids(client.get(f"{FBA}/fulfillmentOrders", queryStartDate="2026-11-20T14:00:00Z")) == ["1001", "1003"]
    # Order 3 entered Planning at 14:57 (received 14:40 + New 2 min + Received 15 min).
    assert client.order("1003")["fulfillmentOrder"]["statusUpdatedDate"] == "2026-11-20T14:57:00Z"
    assert ids(client.get(f"{FBA}/fulfillmentOrders", queryStartDate="2026-11-20T14:57:00Z")) == ["1001", "1003"]
    assert ids(client.get(f"{FBA}/fulfillmentOrders", queryStartDate="2026-11-20T14:57:01Z")) == ["1001"]
    client.advance(15 * 60)  # order 1 moves to Planning: it is updated again
    after = client.get(f"{FBA}/fulfillmentOrders", queryStartDate="2026-11-20T15:10:00Z")
    assert ids(after) == ["1001"]
    assert after.json()["payload"]["fulfillmentOrders"][0]["fulfillmentOrderStatus"] == "Planning"
    assert "nextToken" not in after.json()["payload"]
    bad = client.get(f"{FBA}/fulfillmentOrders", queryStartDate="20 Nov 2026")
    assert_error(
        bad, 400, "InvalidInput", "timestamp must follow ISO8601", definition="ListAllFulfillmentOrdersResponse"
    )
    assert bad.headers["x-amzn-RateLimit-Limit"] == "2.0"


@pytest.mark.parametrize("start", ["0999-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00"])
def test_a_query_start_date_in_any_year_answers_and_its_pages_read_on(mcf, start):
    """Years below 1000 still page (their token keeps four digits); one that falls before year 1
    in UTC is refused as a bad timestamp. Never a 5xx."""
    client = mcf(*[mcf_order(i, "Received") for i in range(120)])
    first = client.get(f"{FBA}/fulfillmentOrders", queryStartDate=start)
    if start.endswith("+05:00"):
        assert_error(
            first, 400, "InvalidInput", "timestamp must follow ISO8601", definition="ListAllFulfillmentOrdersResponse"
        )
        return
    seen, page = [], first
    while True:
        assert page.status_code == 200, page.text
        seen += [o["sellerFulfillmentOrderId"] for o in page.json()["payload"]["fulfillmentOrders"]]
        token = page.json()["payload"].get("nextToken")
        if not token:
            break
        page = client.get(f"{FBA}/fulfillmentOrders", nextToken=token)
    assert len(seen) == len(set(seen)) == 120


# ---------------------------------------------------------------- getFulfillmentOrder and the state machine


def test_get_fulfillment_order_carries_the_shopify_name_and_scenario_tracking(mcf):
    shipped = {
        "status": "SHIPPED",
        "packages": [{"package_number": 212794778, "carrier_code": "UPS", "tracking_number": "1Z999AA10123456784"}],
    }
    client = mcf(
        mcf_order(
            1,
            "Complete",
            received="2026-11-19T00:00:00Z",
            shipments=[shipped],
            skus=("OSL-TEE-M", "OSL-TEE-M", "OSL-CAP-01"),
        )
    )
    response = client.get(f"{FBA}/fulfillmentOrders/1001")
    assert response.status_code == 200
    assert response.headers["x-amzn-RateLimit-Limit"] == "2.0" and response.headers["x-amzn-RequestId"]
    payload = response.json()["payload"]
    conforms(response.json(), "GetFulfillmentOrderResponse")
    order = payload["fulfillmentOrder"]
    assert order["sellerFulfillmentOrderId"] == "1001" and order["displayableOrderId"] == "#1001"
    assert order["marketplaceId"] == "ATVPDKIKX0DER" and order["fulfillmentOrderStatus"] == "Complete"
    assert order["receivedDate"] == "2026-11-19T00:00:00Z"
    assert order["statusUpdatedDate"] == "2026-11-19T14:17:00Z"  # + 2 min + 15 min + 2 h + 12 h
    items = {i["sellerSku"]: i for i in payload["fulfillmentOrderItems"]}
    assert items["OSL-TEE-M"]["quantity"] == 2 and items["OSL-CAP-01"]["quantity"] == 1
    (shipment,) = payload["fulfillmentShipments"]
    assert shipment["fulfillmentShipmentStatus"] == "SHIPPED"
    assert shipment["shippingDate"] == "2026-11-19T14:17:00Z"
    assert shipment["fulfillmentShipmentPackage"] == [
        {
            "packageNumber": 212794778,
            "carrierCode": "UPS",
            "trackingNumber": "1Z999AA10123456784",
            "estimatedArrivalDate": "2026-11-23T14:17:00Z",
        }
    ]
    assert sum(i["quantity"] for i in shipment["fulfillmentShipmentItem"]) == 3
    assert payload["returnItems"] == [] and payload["returnAuthorizations"] == []
    missing = client.get(f"{FBA}/fulfillmentOrders/9999")
    assert_error(missing, 400, "InvalidInput", "Requested order '9999' not found")
    assert missing.headers["x-amzn-RateLimit-Limit"] == "2.0"


def test_orders_move_received_planning_processing_complete_with_the_clock(mcf):
    client = mcf(mcf_order(1, "Received"), mcf_order(2, "Received", shipping_speed="Priority"))
    first = client.order("1001")
    assert first["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Received"
    assert first["fulfillmentOrder"]["statusUpdatedDate"] == NOW
    assert first["fulfillmentShipments"] == []
    assert first["fulfillmentOrderItems"][0]["estimatedShipDate"] == "2026-11-21T05:15:00Z"
    client.advance(15 * 60 - 1)
    assert client.order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Received"
    client.advance(1)
    planning = client.order("1001")["fulfillmentOrder"]
    assert (planning["fulfillmentOrderStatus"], planning["statusUpdatedDate"]) == ("Planning", "2026-11-20T15:15:00Z")
    client.advance(2 * 3600)
    processing = client.order("1001")
    assert processing["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Processing"
    assert processing["fulfillmentOrder"]["statusUpdatedDate"] == "2026-11-20T17:15:00Z"
    (pending,) = processing["fulfillmentShipments"]
    assert pending["fulfillmentShipmentStatus"] == "PENDING"
    assert pending["shippingDate"] == "2026-11-21T05:15:00Z"  # estimated
    # a single-item US order: Amazon's early tracking number rides on the planned package, no carrier's yet
    (early,) = pending["fulfillmentShipmentPackage"]
    assert "trackingNumber" not in early and re.fullmatch(r"AFT\d{12}", early["amazonFulfillmentTrackingNumber"])
    client.advance(12 * 3600)
    done = client.order("1001")
    assert done["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Complete"
    assert done["fulfillmentOrder"]["statusUpdatedDate"] == "2026-11-21T05:15:00Z"
    (shipment,) = done["fulfillmentShipments"]
    assert shipment["amazonShipmentId"] == pending["amazonShipmentId"]
    assert shipment["fulfillmentShipmentStatus"] == "SHIPPED"
    assert shipment["estimatedArrivalDate"] == "2026-11-25T05:15:00Z"  # Standard: 4 days
    (package,) = shipment["fulfillmentShipmentPackage"]
    assert re.fullmatch(CARRIER_FORMATS[package["carrierCode"]], package["trackingNumber"])
    assert package["amazonFulfillmentTrackingNumber"] == early["amazonFulfillmentTrackingNumber"]  # kept beside it
    assert shipment["fulfillmentShipmentItem"][0]["packageNumber"] == package["packageNumber"]
    priority = client.order("1002")["fulfillmentShipments"][0]
    assert priority["estimatedArrivalDate"] == "2026-11-22T05:15:00Z"
    # Same scenario, same ids and tracking numbers (deterministic across runs).
    again = mcf(mcf_order(1, "Received"))
    again.advance(86400)
    assert again.order("1001")["fulfillmentShipments"][0]["fulfillmentShipmentPackage"] == [package]


def test_the_early_tracking_number_comes_minutes_after_the_order_for_single_item_us_orders_only(mcf):
    """Amazon's rule for its early tracking number (AFTN): US delivery, one item, within minutes of the
    order; the order stays cancellable while only its package is planned."""
    client = mcf(mcf_order(1, "Received"), mcf_order(2, "Received", skus=("OSL-TEE-M", "OSL-TEE-L")))
    assert client.order("1001")["fulfillmentShipments"] == []  # not yet: minutes after the order
    client.advance(30 * 60)
    (planned,) = client.order("1001")["fulfillmentShipments"]
    assert planned["fulfillmentShipmentStatus"] == "PENDING"
    assert planned["fulfillmentShipmentPackage"][0]["amazonFulfillmentTrackingNumber"].startswith("AFT")
    assert client.order("1002")["fulfillmentShipments"] == []  # two items: none
    assert client.call("PUT", "/fba/outbound/2020-07-01/fulfillmentOrders/1001/cancel").status_code == 200


def test_durations_come_from_settings(mcf):
    settings = Settings(clock_rate=0, durations={"amazon_mcf": {"Received": 60, "Planning": 60, "Processing": 60}})
    client = mcf(mcf_order(1, "Received"), settings=settings)
    client.advance(120)
    assert client.order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Processing"
    client.advance(60)
    done = client.order("1001")["fulfillmentOrder"]
    assert (done["fulfillmentOrderStatus"], done["statusUpdatedDate"]) == ("Complete", "2026-11-20T15:03:00Z")


def test_terminal_statuses_never_move_and_fill_item_quantities(mcf):
    client = mcf(
        mcf_order(1, "Unfulfillable"),
        mcf_order(2, "Invalid"),
        mcf_order(3, "Cancelled"),
        mcf_order(4, "Complete"),
        mcf_order(5, "CompletePartialled", skus=("A", "A", "B")),
    )
    before = {n: client.order(str(1000 + n)) for n in range(1, 6)}
    client.advance(30 * 86400)
    for n in range(1, 6):
        assert client.order(str(1000 + n)) == before[n]
    assert before[1]["fulfillmentOrderItems"][0]["unfulfillableQuantity"] == 1
    assert before[3]["fulfillmentOrderItems"][0]["cancelledQuantity"] == 1
    assert before[4]["fulfillmentShipments"][0]["fulfillmentShipmentStatus"] == "SHIPPED"
    partial = before[5]
    shipped = sum(
        i["quantity"]
        for s in partial["fulfillmentShipments"]
        for i in s["fulfillmentShipmentItem"]
        if s["fulfillmentShipmentStatus"] == "SHIPPED"
    )
    unfulfillable = sum(i["unfulfillableQuantity"] for i in partial["fulfillmentOrderItems"])
    assert shipped >= 1 and unfulfillable >= 1 and shipped + unfulfillable == 3


def test_scenario_order_overdue_for_its_status_stays_there_until_now(mcf):
    """A Planning order received two days ago is taken as stuck in Planning since `now`."""
    client = mcf(mcf_order(1, "Planning", received="2026-11-18T15:00:00Z"))
    order = client.order("1001")["fulfillmentOrder"]
    assert (order["fulfillmentOrderStatus"], order["statusUpdatedDate"]) == ("Planning", NOW)
    client.advance(2 * 3600)
    assert client.order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Processing"


# ---------------------------------------------------------------- cancelFulfillmentOrder


def test_cancel_only_while_cancellable(mcf):
    client = mcf(
        mcf_order(1, "Planning", skus=("A", "A", "B")),
        mcf_order(2, "Processing"),
        mcf_order(3, "Complete"),
        mcf_order(4, "New"),
        mcf_order(5, "Received"),
        mcf_order(6, "Unfulfillable"),
    )

    def cancel(sfo):
        return client.call("PUT", f"{FBA}/fulfillmentOrders/{sfo}/cancel")

    ok = cancel("1001")
    assert ok.status_code == 200 and ok.json() == {}
    conforms(ok.json(), "CancelFulfillmentOrderResponse")
    assert ok.headers["x-amzn-RateLimit-Limit"] == "2.0"
    cancelled = client.order("1001")
    assert cancelled["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Cancelled"
    assert cancelled["fulfillmentOrder"]["statusUpdatedDate"] == NOW
    assert all(i["cancelledQuantity"] == i["quantity"] for i in cancelled["fulfillmentOrderItems"])
    assert all("estimatedShipDate" not in i for i in cancelled["fulfillmentOrderItems"])
    client.advance(86400)  # a cancelled order stays cancelled
    assert client.order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Cancelled"
    assert_error(
        cancel("1001"),
        400,
        "InvalidInput",
        "Value 1001 for parameter SellerFulfillmentOrderId is invalid. Reason: DuplicateCancelRequest.",
        definition="CancelFulfillmentOrderResponse",
    )
    for sfo in ("1002", "1003", "1006"):  # Processing (pending shipment), Complete, Unfulfillable
        assert_error(
            cancel(sfo),
            400,
            "InvalidInput",
            f"Value {sfo} for parameter SellerFulfillmentOrderId is invalid. Reason: OrderNotCancellable.",
            definition="CancelFulfillmentOrderResponse",
        )
    assert client.order("1002")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Complete"  # after a day
    assert_error(
        cancel("nope"),
        400,
        "InvalidInput",
        "Requested order 'nope' not found",
        definition="CancelFulfillmentOrderResponse",
    )
    writes = client.writes()
    assert [
        (w["path"].split("/")[-2], w["status"], w["outcome"])
        for w in writes
        if w["operation"] == "cancelFulfillmentOrder"
    ] == [
        ("1001", 200, "ok"),
        ("1001", 400, "InvalidInput"),
        ("1002", 400, "InvalidInput"),
        ("1003", 400, "InvalidInput"),
        ("1006", 400, "InvalidInput"),
        ("nope", 400, "InvalidInput"),
    ]
    assert all(w["request_id"] for w in writes)


def test_new_and_received_orders_are_cancellable(mcf):
    client = mcf(mcf_order(4, "New"), mcf_order(5, "Received"))
    for sfo in ("1004", "1005"):
        assert client.call("PUT", f"{FBA}/fulfillmentOrders/{sfo}/cancel").status_code == 200
        assert client.order(sfo)["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Cancelled"


def test_best_effort_cancel_can_be_accepted_and_not_take(mcf):
    client = mcf(mcf_order(1, "Planning", cancel_ignored=True))
    assert client.call("PUT", f"{FBA}/fulfillmentOrders/1001/cancel").status_code == 200
    assert client.order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Planning"
    client.advance(2 * 3600)
    assert client.order("1001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Processing"


def test_unauthorized_and_throttled_writes_are_logged(mcf):
    client = mcf(mcf_order(1, "Planning"), settings=Settings(clock_rate=0, rate_scale=1 / 30))
    refused = client.call("PUT", f"{FBA}/fulfillmentOrders/1001/cancel", token=None)
    assert refused.status_code == 403
    with_quota = [client.call("PUT", f"{FBA}/fulfillmentOrders/1001/cancel").status_code for _ in range(2)]
    assert with_quota == [200, 429]
    assert [(w["status"], w["outcome"]) for w in client.writes() if w["operation"] == "cancelFulfillmentOrder"] == [
        (403, "Unauthorized"),
        (200, "ok"),
        (429, "QuotaExceeded"),
    ]


# ---------------------------------------------------------------- tracking


def test_package_tracking_follows_the_clock(mcf):
    shipped = {
        "status": "SHIPPED",
        "packages": [{"package_number": 212794778, "carrier_code": "UPS", "tracking_number": "1Z999AA10123456784"}],
    }
    client = mcf(mcf_order(1, "Complete", received="2026-11-19T00:00:00Z", shipments=[shipped]))
    response = client.get(f"{FBA}/tracking", packageNumber=212794778)
    assert response.status_code == 200 and response.headers["x-amzn-RateLimit-Limit"] == "2.0"
    conforms(response.json(), "GetPackageTrackingDetailsResponse")
    details = response.json()["payload"]
    assert details["packageNumber"] == 212794778 and details["trackingNumber"] == "1Z999AA10123456784"
    assert details["carrierCode"] == "UPS" and details["shipDate"] == "2026-11-19T14:17:00Z"
    assert details["customerTrackingLink"].endswith("1Z999AA10123456784")
    assert details["currentStatus"] == "IN_TRANSIT"
    events = details["trackingEvents"]
    assert [e["eventCode"] for e in events] == ["EVENT_202", "EVENT_201", "EVENT_102", "EVENT_101"]
    assert [e["eventDate"] for e in events] == sorted((e["eventDate"] for e in events), reverse=True)
    assert all(e["eventDate"] <= NOW for e in events)
    client.advance(3 * 86400)
    delivered = client.get(f"{FBA}/tracking", packageNumber=212794778).json()
    conforms(delivered, "GetPackageTrackingDetailsResponse")
    assert delivered["payload"]["currentStatus"] == "DELIVERED"
    assert delivered["payload"]["trackingEvents"][0] == {
        "eventDate": "2026-11-23T14:17:00Z",
        "eventCode": "EVENT_301",
        "eventDescription": "Delivered.",
        "eventAddress": delivered["payload"]["shipToAddress"],
    }
    assert_error(
        client.get(f"{FBA}/tracking", packageNumber=123),
        400,
        "InvalidInput",
        definition="GetPackageTrackingDetailsResponse",
    )
    assert_error(
        client.get(f"{FBA}/tracking", packageNumber="abc"),
        400,
        "InvalidInput",
        definition="GetPackageTrackingDetailsResponse",
    )
    assert_error(client.get(f"{FBA}/tracking"), 400, "InvalidInput", definition="GetPackageTrackingDetailsResponse")


def test_packages_created_by_the_state_machine_are_trackable(mcf):
    client = mcf(mcf_order(1, "Processing"))
    client.advance(12 * 3600 + 6 * 3600)
    (package,) = client.order("1001")["fulfillmentShipments"][0]["fulfillmentShipmentPackage"]
    details = client.get(f"{FBA}/tracking", packageNumber=package["packageNumber"]).json()
    conforms(details, "GetPackageTrackingDetailsResponse")
    assert details["payload"]["trackingNumber"] == package["trackingNumber"]
    assert details["payload"]["currentStatus"] == "IN_TRANSIT"


def test_generated_scenario_package_numbers_stay_unique(mcf):
    """Scenario files may reuse package numbers across orders; the API's are unique."""

    def pkg(tn):
        return {"status": "SHIPPED", "packages": [{"package_number": 1, "carrier_code": "USPS", "tracking_number": tn}]}

    client = mcf(
        mcf_order(1, "Complete", shipments=[pkg("9400100000000000000001")]),
        mcf_order(2, "Complete", shipments=[pkg("9400100000000000000002")]),
    )
    numbers = {}
    for sfo in ("1001", "1002"):
        (package,) = client.order(sfo)["fulfillmentShipments"][0]["fulfillmentShipmentPackage"]
        numbers[package["trackingNumber"]] = package["packageNumber"]
    assert numbers["9400100000000000000001"] == 1 and numbers["9400100000000000000002"] != 1
    for tracking, number in numbers.items():
        assert client.get(f"{FBA}/tracking", packageNumber=number).json()["payload"]["trackingNumber"] == tracking


# ---------------------------------------------------------------- submitFulfillmentOrderStatusUpdate (sandbox-only)


def test_status_update_forces_transitions(mcf):
    client = mcf(mcf_order(1, "Received"))

    def put(status, sfo="1001"):
        return client.call("PUT", f"{FBA}/fulfillmentOrders/{sfo}/status", json={"fulfillmentOrderStatus": status})

    response = put("Processing")
    assert response.status_code == 200 and response.json() == {}
    conforms(response.json(), "SubmitFulfillmentOrderStatusUpdateResponse")
    assert "x-amzn-RateLimit-Limit" not in response.headers  # no usage plan for this operation
    order = client.order("1001")
    assert order["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Processing"
    assert order["fulfillmentShipments"][0]["fulfillmentShipmentStatus"] == "PENDING"
    assert put("Complete").status_code == 200
    (package,) = client.order("1001")["fulfillmentShipments"][0]["fulfillmentShipmentPackage"]
    assert package["trackingNumber"] and package["carrierCode"] in CARRIER_FORMATS
    assert_error(put("Planning"), 400, "InvalidInput", definition="SubmitFulfillmentOrderStatusUpdateResponse")
    assert_error(put("Shipped"), 400, "InvalidInput", definition="SubmitFulfillmentOrderStatusUpdateResponse")
    assert_error(
        put("Processing", sfo="9999"),
        400,
        "InvalidInput",
        "Requested order '9999' not found",
        definition="SubmitFulfillmentOrderStatusUpdateResponse",
    )
    outcomes = [
        (w["body"], w["outcome"]) for w in client.writes() if w["operation"] == "submitFulfillmentOrderStatusUpdate"
    ]
    assert outcomes[0] == ({"fulfillmentOrderStatus": "Processing"}, "ok") and len(outcomes) == 5


def test_status_update_to_unfulfillable_and_cancelled(mcf):
    client = mcf(mcf_order(1, "Planning"), mcf_order(2, "Processing"))
    client.call("PUT", f"{FBA}/fulfillmentOrders/1001/status", json={"fulfillmentOrderStatus": "Unfulfillable"})
    client.call("PUT", f"{FBA}/fulfillmentOrders/1002/status", json={"fulfillmentOrderStatus": "Cancelled"})
    first, second = client.order("1001"), client.order("1002")
    assert first["fulfillmentOrderItems"][0]["unfulfillableQuantity"] == 1
    assert second["fulfillmentShipments"][0]["fulfillmentShipmentStatus"] == "CANCELLED_BY_SELLER"
    assert "shippingDate" not in second["fulfillmentShipments"][0]


# ---------------------------------------------------------------- createFulfillmentOrder


def create_body(sfo: str, **overrides) -> dict:
    body = {
        "marketplaceId": "ATVPDKIKX0DER",
        "sellerFulfillmentOrderId": sfo,
        "displayableOrderId": f"#{sfo}",
        "displayableOrderDate": "2026-11-20T14:00:00Z",
        "displayableOrderComment": "Thanks!",
        "shippingSpeedCategory": "Expedited",
        "destinationAddress": {
            "name": "A Buyer",
            "addressLine1": "1 Main St",
            "city": "Troy",
            "stateOrRegion": "MI",
            "countryCode": "US",
            "postalCode": "48084",
        },
        "items": [{"sellerSku": "OSL-TEE-M", "sellerFulfillmentOrderItemId": "1", "quantity": 2}],
    }
    body.update(overrides)
    return body


def test_create_fulfillment_order(mcf):
    client = mcf(mcf_order(1, "Planning"))
    created = client.call("POST", f"{FBA}/fulfillmentOrders", json=create_body("2001"))
    assert created.status_code == 200 and created.json() == {}
    conforms(created.json(), "CreateFulfillmentOrderResponse")
    order = client.order("2001")
    assert order["fulfillmentOrder"]["fulfillmentOrderStatus"] == "New"
    assert order["fulfillmentOrder"]["displayableOrderId"] == "#2001"
    assert order["fulfillmentOrderItems"][0]["quantity"] == 2
    client.advance(120)
    assert client.order("2001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Received"
    listed = client.get(f"{FBA}/fulfillmentOrders", queryStartDate=NOW).json()["payload"]["fulfillmentOrders"]
    assert "2001" in {o["sellerFulfillmentOrderId"] for o in listed}
    duplicate = client.call("POST", f"{FBA}/fulfillmentOrders", json=create_body("2001"))
    assert_error(
        duplicate,
        400,
        "InvalidInput",
        "A create request already exists for MerchantFulfillmentOrderId : 2001",
        definition="CreateFulfillmentOrderResponse",
    )
    no_country = create_body("2002")
    no_country["destinationAddress"] = {**no_country["destinationAddress"], "countryCode": ""}
    assert_error(
        client.call("POST", f"{FBA}/fulfillmentOrders", json=no_country),
        400,
        "InvalidInput",
        "Value  for parameter CountryCode is invalid. Reason: InvalidValue.",
        definition="CreateFulfillmentOrderResponse",
    )
    for broken in (
        create_body("2003", shippingSpeedCategory="Overnight"),
        create_body("2004", items=[]),
        {k: v for k, v in create_body("2005").items() if k != "displayableOrderComment"},
    ):
        assert_error(
            client.call("POST", f"{FBA}/fulfillmentOrders", json=broken),
            400,
            "InvalidInput",
            definition="CreateFulfillmentOrderResponse",
        )
    state = client.server.sandbox.platforms["amazon_mcf"].state()
    assert {o["fulfillmentOrder"]["sellerFulfillmentOrderId"] for o in state["orders"]} == {"1001", "2001"}


def test_hold_orders_wait_then_auto_cancel_after_14_days(mcf):
    client = mcf(mcf_order(1, "Planning"))
    client.call("POST", f"{FBA}/fulfillmentOrders", json=create_body("2001", fulfillmentAction="Hold"))
    client.advance(86400)
    assert client.order("2001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Received"
    client.advance(14 * 86400)
    assert client.order("2001")["fulfillmentOrder"]["fulfillmentOrderStatus"] == "Cancelled"


# ---------------------------------------------------------------- Reports


def wait_for(client: Client, report_id: str, wall: VirtualTime, final=("DONE", "CANCELLED", "FATAL")) -> dict:
    for _ in range(20):
        response = client.get(f"{REPORTS}/reports/{report_id}")
        assert response.status_code == 200, response.text
        conforms(response.json(), "Report", REPORTS_MODEL)
        if response.json()["processingStatus"] in final:
            return response.json()
        wall.sleep(0.5)
    raise AssertionError("report did not finish in 10 s of the platform's time")


def test_shipments_report_flow(mcf):
    def shipped(n, tn):
        return mcf_order(
            n,
            "Complete",
            received="2026-11-19T00:00:00Z",
            shipments=[
                {
                    "status": "SHIPPED",
                    "packages": [{"package_number": 300000000 + n, "carrier_code": "USPS", "tracking_number": tn}],
                }
            ],
            skus=("OSL-TEE-M", "OSL-CAP-01"),
        )

    client = mcf(
        shipped(1, "9400100000000000000011"),
        shipped(2, "9400100000000000000012"),
        mcf_order(3, "Planning"),
        mcf_order(4, "Complete", received="2026-10-01T00:00:00Z"),
        settings=Settings(clock_rate=0),
        wall=(wall := stepped_wall()),
    )
    created = client.call(
        "POST",
        f"{REPORTS}/reports",
        json={
            "reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
            "marketplaceIds": ["ATVPDKIKX0DER"],
            "dataStartTime": "2026-11-19T00:00:00Z",
            "dataEndTime": "2026-11-20T15:00:00Z",
        },
    )
    assert created.status_code == 202 and created.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    conforms(created.json(), "CreateReportResponse", REPORTS_MODEL)
    report_id = created.json()["reportId"]
    first = client.get(f"{REPORTS}/reports/{report_id}")
    assert first.json()["processingStatus"] == "IN_QUEUE" and first.headers["x-amzn-RateLimit-Limit"] == "2.0"
    assert "reportDocumentId" not in first.json()
    wall.sleep(0.99)
    assert client.get(f"{REPORTS}/reports/{report_id}").json()["processingStatus"] == "IN_QUEUE"
    wall.sleep(0.02)
    assert client.get(f"{REPORTS}/reports/{report_id}").json()["processingStatus"] == "IN_PROGRESS"
    wall.sleep(1.98)
    assert client.get(f"{REPORTS}/reports/{report_id}").json()["processingStatus"] == "IN_PROGRESS"
    report = wait_for(client, report_id, wall)
    assert report["processingStatus"] == "DONE" and report["createdTime"] == NOW
    assert report["dataStartTime"] == "2026-11-19T00:00:00Z"
    document = client.get(f"{REPORTS}/documents/{report['reportDocumentId']}")
    assert document.status_code == 200 and document.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    conforms(document.json(), "ReportDocument", REPORTS_MODEL)
    assert document.json()["compressionAlgorithm"] == "GZIP"
    download = httpx.get(document.json()["url"])  # presigned: no access token
    assert download.status_code == 200 and "content-encoding" not in download.headers
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(download.content).decode("utf-8")), delimiter="\t"))
    header = gzip.decompress(download.content).decode("utf-8").splitlines()[0].split("\t")
    assert header == list(SHIPMENT_REPORT_COLUMNS)
    assert header[:3] == ["amazon-order-id", "merchant-order-id", "shipment-id"]
    assert {"carrier", "tracking-number", "shipment-date", "sales-channel"} <= set(header)
    # Two shipped orders in range, two lines each; order 4 shipped in October, order 3 not yet.
    assert len(rows) == 4 and {r["merchant-order-id"] for r in rows} == {"1001", "1002"}
    for row in rows:
        package = client.order(row["merchant-order-id"])["fulfillmentShipments"][0]["fulfillmentShipmentPackage"][0]
        assert (row["carrier"], row["tracking-number"]) == (package["carrierCode"], package["trackingNumber"])
        assert row["shipment-date"] == "2026-11-19T14:17:00+00:00" and row["quantity-shipped"] == "1"
        assert row["sales-channel"] == "Non-Amazon" and row["fulfillment-channel"] == "AFN"
        assert re.fullmatch(r"S01-\d{7}-\d{7}", row["amazon-order-id"])
        assert row["buyer-email"] == row["recipient-name"] == ""
    # The gzip Content-Encoding variant lets HTTP clients decompress by themselves.
    encoded = client.get(f"{REPORTS}/documents/{report['reportDocumentId']}", enableContentEncodingUrlHeader="true")
    plain = httpx.get(encoded.json()["url"])
    assert plain.headers["content-encoding"] == "gzip" and plain.text.startswith("amazon-order-id\t")
    # getReports lists it.
    listed = client.get(f"{REPORTS}/reports", reportTypes="GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL")
    assert listed.status_code == 200 and listed.headers["x-amzn-RateLimit-Limit"] == "0.0222"
    conforms(listed.json(), "GetReportsResponse", REPORTS_MODEL)
    assert [r["reportId"] for r in listed.json()["reports"]] == [report_id]


def test_report_document_url_expires_and_is_signed(mcf):
    settings = Settings(clock_rate=0, platforms={"amazon_mcf": {"document_url_ttl_seconds": 4}})
    client = mcf(
        mcf_order(1, "Complete", received="2026-11-19T00:00:00Z"), settings=settings, wall=(wall := stepped_wall())
    )
    report_id = client.call(
        "POST",
        f"{REPORTS}/reports",
        json={
            "reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
            "marketplaceIds": ["ATVPDKIKX0DER"],
            "dataStartTime": "2026-11-19T00:00:00Z",
            "dataEndTime": NOW,
        },
    ).json()["reportId"]
    document_id = wait_for(client, report_id, wall)["reportDocumentId"]
    url = client.get(f"{REPORTS}/documents/{document_id}").json()["url"]
    parts = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    forged = f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode({**query, 'X-Amz-Expires': '3600'})}"
    denied = httpx.get(forged)
    assert denied.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in denied.text
    assert httpx.get(url).status_code == 200
    wall.sleep(3.0)  # X-Amz-Date is whole seconds: a 4 s link lives 3 to 4 s of the wall clock
    assert httpx.get(url).status_code == 200
    wall.sleep(1.01)
    expired = httpx.get(url)
    assert expired.status_code == 403 and "Request has expired" in expired.text


def test_report_without_data_is_cancelled_and_queue_cancel(mcf):
    client = mcf(mcf_order(1, "Planning"), settings=Settings(clock_rate=0), wall=(wall := stepped_wall()))
    spec = {
        "reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
        "marketplaceIds": ["ATVPDKIKX0DER"],
        "dataStartTime": "2026-11-01T00:00:00Z",
        "dataEndTime": NOW,
    }
    empty = client.call("POST", f"{REPORTS}/reports", json=spec).json()["reportId"]
    queued = client.call("POST", f"{REPORTS}/reports", json=spec).json()["reportId"]
    deleted = client.call("DELETE", f"{REPORTS}/reports/{queued}")
    assert deleted.status_code == 200 and deleted.content == b""
    finished = wait_for(client, empty, wall)
    assert finished["processingStatus"] == "CANCELLED" and "reportDocumentId" not in finished
    assert "processingEndTime" in finished
    cancelled = wait_for(client, queued, wall)
    assert cancelled["processingStatus"] == "CANCELLED" and "processingStartTime" not in cancelled
    assert_error(
        client.call("DELETE", f"{REPORTS}/reports/{empty}"),
        400,
        "InvalidInput",
        model=REPORTS_MODEL,
        definition="ErrorList",
    )
    assert_error(client.get(f"{REPORTS}/reports/123"), 404, "NotFound", model=REPORTS_MODEL, definition="ErrorList")
    assert_error(client.get(f"{REPORTS}/documents/nope"), 404, "NotFound", model=REPORTS_MODEL, definition="ErrorList")
    too_long = client.call("POST", f"{REPORTS}/reports", json={**spec, "dataStartTime": "2026-10-01T00:00:00Z"})
    assert wait_for(client, too_long.json()["reportId"], wall)["processingStatus"] == "FATAL"  # over 31 days
    for bad in (
        {**spec, "reportType": "GET_FLAT_FILE_OPEN_LISTINGS_DATA"},
        {**spec, "marketplaceIds": []},
        {**spec, "dataStartTime": "yesterday"},
        {**spec, "dataStartTime": NOW, "dataEndTime": "2026-11-01T00:00:00Z"},
    ):
        assert_error(
            client.call("POST", f"{REPORTS}/reports", json=bad),
            400,
            "InvalidInput",
            model=REPORTS_MODEL,
            definition="ErrorList",
        )
    writes = [
        (w["operation"], w["outcome"]) for w in client.writes() if w["operation"] in ("createReport", "cancelReport")
    ]
    assert writes[:3] == [("createReport", "ok"), ("createReport", "ok"), ("cancelReport", "ok")]
    assert sorted(writes[3:]) == sorted(
        [("cancelReport", "InvalidInput"), ("createReport", "ok")] + [("createReport", "InvalidInput")] * 4
    )


def test_get_reports_filters_and_pages(mcf):
    client = mcf(
        mcf_order(1, "Complete", received="2026-11-19T00:00:00Z"),
        settings=Settings(clock_rate=0),
        wall=(wall := stepped_wall()),
    )
    spec = {
        "reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
        "marketplaceIds": ["ATVPDKIKX0DER"],
        "dataStartTime": "2026-11-19T00:00:00Z",
        "dataEndTime": NOW,
    }
    ids = [client.call("POST", f"{REPORTS}/reports", json=spec).json()["reportId"] for _ in range(3)]
    first = client.get(f"{REPORTS}/reports", reportTypes="GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL", pageSize=2)
    conforms(first.json(), "GetReportsResponse", REPORTS_MODEL)
    assert [r["reportId"] for r in first.json()["reports"]] == ids[:0:-1]  # newest first
    token = first.json()["nextToken"]
    second = client.get(f"{REPORTS}/reports", nextToken=token)
    assert [r["reportId"] for r in second.json()["reports"]] == [ids[0]] and "nextToken" not in second.json()
    assert_error(
        client.get(f"{REPORTS}/reports", nextToken=token, pageSize=2),
        400,
        "InvalidInput",
        model=REPORTS_MODEL,
        definition="ErrorList",
    )
    assert_error(client.get(f"{REPORTS}/reports"), 400, "InvalidInput", model=REPORTS_MODEL, definition="ErrorList")
    none = client.get(
        f"{REPORTS}/reports", reportTypes="GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL", processingStatuses="DONE,FATAL"
    )
    assert none.json()["reports"] == []  # all three still queued
    wait_for(client, ids[2], wall)
    done = client.get(
        f"{REPORTS}/reports", reportTypes="GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL", processingStatuses="DONE"
    )
    assert [r["reportId"] for r in done.json()["reports"]] == ids[:1]
    # Amazon regenerates the report at most every 30 minutes: the two asked for right after are cancelled
    cancelled = client.get(
        f"{REPORTS}/reports", reportTypes="GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL", processingStatuses="CANCELLED"
    )
    assert sorted(r["reportId"] for r in cancelled.json()["reports"]) == sorted(ids[1:])


# ---------------------------------------------------------------- quotas, faults, odds and ends

QUOTA_BODY = {
    "errors": [
        {"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource.", "details": ""}
    ]
}


def test_default_quota_is_2_per_second_burst_30_per_operation(mcf):
    client = mcf(mcf_order(1, "Planning"), wall=(wall := stepped_wall()))
    statuses = [client.get(f"{FBA}/fulfillmentOrders/1001").status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]
    wall.sleep(0.49)  # not yet a whole token back
    throttled = client.get(f"{FBA}/fulfillmentOrders/1001")
    assert throttled.status_code == 429 and throttled.json() == QUOTA_BODY
    conforms(throttled.json(), "GetFulfillmentOrderResponse")
    assert "x-amzn-RateLimit-Limit" not in throttled.headers and throttled.headers["x-amzn-RequestId"]
    assert "retry-after" not in throttled.headers
    # Buckets are per operation.
    assert client.get(f"{FBA}/fulfillmentOrders").status_code == 200
    wall.sleep(0.02)  # 2 per second refill: one token after half a second
    assert client.get(f"{FBA}/fulfillmentOrders/1001").status_code == 200
    calls = client.http.get(f"{client.base}/_sandbox/calls").json()
    assert {"platform": "amazon_mcf", "operation": "getFulfillmentOrder", "count": 2} in calls["throttled"]


def test_report_quotas_are_the_documented_ones(mcf):
    client = mcf(mcf_order(1, "Planning"))
    spec = {"reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL", "marketplaceIds": ["ATVPDKIKX0DER"]}
    codes = [client.call("POST", f"{REPORTS}/reports", json=spec).status_code for _ in range(16)]
    assert codes == [202] * 15 + [429]  # burst 15, refill one per minute
    codes = [client.get(f"{REPORTS}/reports", reportTypes=spec["reportType"]).status_code for _ in range(11)]
    assert codes == [200] * 10 + [429]  # burst 10


def test_rate_scale_scales_rate_and_burst(mcf):
    client = mcf(mcf_order(1, "Planning"), settings=Settings(clock_rate=0, rate_scale=0.1))
    codes = [client.get(f"{FBA}/fulfillmentOrders/1001") for _ in range(4)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert codes[0].headers["x-amzn-RateLimit-Limit"] == "0.2"


def test_injected_faults_use_the_platform_shapes(mcf):
    client = mcf(mcf_order(1, "Planning"))
    admin = f"{client.base}/_sandbox/faults"
    client.http.post(admin, json={"platform": "amazon_mcf", "kind": "429", "path": "fulfillmentOrders"})
    throttled = client.get(f"{FBA}/fulfillmentOrders/1001")
    assert throttled.status_code == 429 and throttled.json() == QUOTA_BODY
    client.http.post(admin, json={"platform": "amazon_mcf", "kind": "5xx", "status": 500, "path": "fulfillmentOrders"})
    failed = client.get(f"{FBA}/fulfillmentOrders/1001")
    assert_error(failed, 500, "InternalFailure")
    client.http.post(admin, json={"platform": "amazon_mcf", "kind": "5xx", "status": 503, "path": "tracking"})
    assert_error(
        client.get(f"{FBA}/tracking", packageNumber=1),
        503,
        "ServiceUnavailable",
        definition="GetPackageTrackingDetailsResponse",
    )
    client.http.post(admin, json={"platform": "amazon_mcf", "kind": "token_expiry", "path": "fulfillmentOrders"})
    expired = client.get(f"{FBA}/fulfillmentOrders/1001")
    assert expired.status_code == 403
    assert expired.json()["errors"][0]["details"] == "The access token you provided has expired."


def test_unsimulated_operations_answer_not_found_in_the_error_shape(mcf):
    client = mcf(mcf_order(1, "Planning"))
    response = client.get(f"{FBA}/features", marketplaceId="ATVPDKIKX0DER")
    assert_error(response, 404, "NotFound", definition="GetFeaturesResponse")


def test_upper_case_status_option(mcf):
    client = mcf(
        mcf_order(1, "Planning"),
        settings=Settings(clock_rate=0, platforms={"amazon_mcf": {"upper_case_statuses": True}}),
    )
    body = client.get(f"{FBA}/fulfillmentOrders/1001").json()
    assert body["payload"]["fulfillmentOrder"]["fulfillmentOrderStatus"] == "PLANNING"


def test_state_dump_and_scenario_reload(mcf):
    client = mcf(mcf_order(1, "Planning"))
    state = client.http.get(f"{client.base}/_sandbox/state/amazon_mcf").json()
    assert [o["fulfillmentOrder"]["sellerFulfillmentOrderId"] for o in state["orders"]] == ["1001"]
    assert state["tokens"]["valid"] >= 1
    reloaded = client.http.post(f"{client.base}/_sandbox/scenario", json=scenario(mcf_order(7, "Received")))
    assert reloaded.status_code == 200
    assert client.get(f"{FBA}/fulfillmentOrders/1007").status_code == 200  # tokens survive a reload
    assert client.get(f"{FBA}/fulfillmentOrders/1001").status_code == 400
