"""Contract tests of the TikTok Shop simulator over real HTTP: signing, gateway errors, tokens,
orders and paging, logistics, Mark Package As Shipped, cancellations, quotas and clock-driven changes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest

from orderops_provider.tiktok_signing import sign, signing_string
from sandbox.core import Settings
from sandbox.tiktok import DEFAULT_CREDENTIALS as CREDS
from tests.support import NOW, cancel_id, iso, line_id
from tests.support import tiktok_order_id as oid

V = "202309"
FROZEN = Settings(clock_rate=0, rate_scale=100)
SHOP = object()  # "use the default shop cipher"


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def created(n: int) -> datetime:
    return NOW - timedelta(days=3) + timedelta(minutes=n)


def order(n: int, status: str = "AWAITING_SHIPMENT", *, lines: int = 1, pending_cancel: bool = False, **extra) -> dict:
    create = created(n)
    tt = {
        "id": oid(n),
        "status": status,
        "create_time": iso(create),
        "rts_sla_time": iso(create + timedelta(days=2)),
        "shipping_due_time": iso(create + timedelta(days=7)),
        "line_items": [{"id": line_id(n, k), "seller_sku": f"OSL-TEE-{'SML'[k % 3]}"} for k in range(lines)],
    }
    if pending_cancel:
        tt["cancellation"] = {
            "cancel_id": cancel_id(n),
            "status": "CANCELLATION_REQUEST_PENDING",
            "create_time": iso(NOW - timedelta(hours=1)),
            "deadline": iso(NOW + timedelta(hours=47)),
        }
    tt.update(extra)
    return {"tiktok": tt, "shopify": None, "fulfiller": None}


def scenario(*orders: dict) -> dict:
    return {"now": iso(NOW), "orders": list(orders)}


class TikTokApi:
    """A minimal signed-request client (the production hook comes later)."""

    def __init__(
        self,
        server,
        *,
        app_key=CREDS["app_key"],
        secret=CREDS["app_secret"],
        token=CREDS["access_token"],
        cipher=CREDS["shop_cipher"],
    ):
        self.base = server.urls["tiktok"]
        self.auth_base = server.urls["tiktok_auth"]
        self.app_key, self.secret, self.token, self.cipher = app_key, secret, token, cipher
        self.http = httpx.Client(timeout=10)

    def request(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        body=None,
        *,
        cipher=SHOP,
        token=SHOP,
        timestamp: int | None = None,
        sign_as: bytes | None = None,
        content_type: str = "application/json",
        sig: str | None = None,
    ) -> httpx.Response:
        query = {"app_key": self.app_key, "timestamp": str(timestamp if timestamp is not None else int(time.time()))}
        cipher = self.cipher if cipher is SHOP else cipher
        if cipher is not None:
            query["shop_cipher"] = cipher
        query.update(params or {})
        raw = (
            b""
            if body is None
            else body
            if isinstance(body, bytes)
            else json.dumps(body, separators=(",", ":")).encode()
        )
        query["sign"] = sig or sign(self.secret, path, query, raw if sign_as is None else sign_as, content_type)
        headers = {"content-type": content_type}
        token = self.token if token is SHOP else token
        if token is not None:
            headers["x-tts-access-token"] = token
        return self.http.request(method, self.base + path, params=query, content=raw or None, headers=headers)

    def ok(self, method: str, path: str, params: dict | None = None, body=None, **kw) -> dict:
        resp = self.request(method, path, params, body, **kw)
        payload = resp.json()
        assert resp.status_code == 200 and payload["code"] == 0, resp.text
        return payload["data"]

    def detail(self, *ids: str) -> list[dict]:
        return self.ok("GET", f"/order/{V}/orders", {"ids": ",".join(ids)})["orders"]

    def one(self, order_id: str) -> dict:
        return self.detail(order_id)[0]

    def providers(self, order_obj: dict) -> dict[str, str]:
        data = self.ok("GET", f"/logistics/{V}/delivery_options/{order_obj['delivery_option_id']}/shipping_providers")
        return {p["name"]: p["id"] for p in data["shipping_providers"]}

    def ship(
        self, order_id: str, provider_id: str, tracking: str = "1Z999AA10123456784", line_ids: list[str] | None = None
    ) -> httpx.Response:
        body = {"tracking_number": tracking, "shipping_provider_id": provider_id}
        if line_ids is not None:
            body["order_line_item_ids"] = line_ids
        return self.request("POST", f"/fulfillment/{V}/orders/{order_id}/packages", body=body)

    def search(self, body: dict | None = None, *, cipher=SHOP, **params) -> httpx.Response:
        params.setdefault("page_size", "100")
        return self.request(
            "POST", f"/order/{V}/orders/search", {k: str(v) for k, v in params.items()}, body or {}, cipher=cipher
        )

    def all_pages(self, path: str, body: dict, **params) -> tuple[list[dict], list[str], set[int]]:
        items, tokens, totals, token = [], [], set(), ""
        key = "orders" if "order" in path else "cancellations"
        while True:
            query = {k: str(v) for k, v in params.items()}
            if token:
                query["page_token"] = token
            data = self.ok("POST", path, query, body)
            items.extend(data[key])
            totals.add(data["total_count"])
            token = data["next_page_token"]
            if not token:
                return items, tokens, totals
            tokens.append(token)

    def token_call(self, op: str, **params) -> httpx.Response:
        return self.http.get(f"{self.auth_base}/api/v2/token/{op}", params=params)


def error(resp: httpx.Response) -> tuple[int, int, str]:
    payload = resp.json()
    assert set(payload) == {"code", "message", "request_id", "data"}
    return resp.status_code, payload["code"], payload["message"]


def admin(server, method: str, path: str, body=None) -> httpx.Response:
    return httpx.request(method, server.urls["tiktok"] + "/_sandbox" + path, json=body, timeout=10)


def advance(server, seconds: float) -> None:
    assert admin(server, "POST", "/clock", {"advance_seconds": seconds}).status_code == 200


def writes(server) -> list[dict]:
    return admin(server, "GET", "/writes?platform=tiktok").json()


@pytest.fixture
def api_for(run_sandbox):
    def start(*orders: dict, settings: Settings = FROZEN):
        server = run_sandbox(scenario(*orders), platforms=("tiktok",), settings=settings)
        return server, TikTokApi(server)

    return start


# ---------------------------------------------------------------- signing (pure function)


@pytest.mark.parametrize(
    "secret,path,query,body,expected",
    [
        (
            "e59af819cc",
            "/authorization/202309/shops",
            {"app_key": "29a39d", "timestamp": "1623812664"},
            b"",
            "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8",
        ),
        (
            "e59af819cc",
            "/event/202309/webhooks",
            {"app_key": "68xu9ks5p4i8", "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK", "timestamp": "1696909648"},
            b"",
            "ed58e1b5e59865c22a7b828c1cab65007441f43cc91a6cb2f2cdc638e0995a37",
        ),
        (
            "e59af819cc",
            "/event/202309/webhooks",
            {"app_key": "68xu9ks5p4i8", "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK", "timestamp": "1696909648"},
            b'{"event_type":"PACKAGE_UPDATE","address":"https://partner.tiktokshop.com"}',
            "701dd6deb2389fe4c469b89bd37fc56f96a6da6afeb4d01c9077a65169752fa7",
        ),
        (
            "e59af819cc",
            "/event/202309/webhooks",
            {"app_key": "68xu9ks5p4i8", "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK", "timestamp": "1696909648"},
            b'{"address":"https://partner.tiktokshop.com","event_type":"PACKAGE_UPDATE"}',
            "cd0d6268252f4ba293bf7ea4c0a2873bf9beec600d22530638564ab301435f7a",
        ),
        (
            "app_secret",
            "/test-api",
            {"foo": "bar"},
            b"",
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f",
        ),
    ],
)
def test_signing_matches_the_published_vectors(secret, path, query, body, expected):
    assert sign(secret, path, query, body) == expected


def test_signing_rules_beyond_the_vectors():
    base = {"app_key": "k", "timestamp": "1"}
    # sign and access_token are never signed; order of the mapping does not matter
    assert sign("s", "/p", {**base, "sign": "x", "access_token": "t"}) == sign("s", "/p", dict(reversed(base.items())))
    # lists are comma-joined; values are signed decoded
    assert signing_string("/p", {"ids": ["1", "2"], "page_token": "a+b/c="}) == "/pids1,2page_tokena+b/c="
    # multipart bodies are not signed; JSON bodies are, byte for byte
    assert sign("s", "/p", base, b"--xx", "multipart/form-data; boundary=xx") == sign("s", "/p", base)
    assert sign("s", "/p", base, b'{"a":1}') != sign("s", "/p", base, b'{"a": 1}')


# ---------------------------------------------------------------- gateway


def test_signed_request_gets_the_envelope_and_the_shop(api_for):
    server, api = api_for()
    resp = api.request("GET", f"/authorization/{V}/shops", cipher=None)
    payload = resp.json()
    assert resp.status_code == 200 and payload["code"] == 0 and payload["message"] == "Success"
    assert set(payload) == {"code", "message", "request_id", "data"}
    assert len(payload["request_id"]) >= 20 and resp.headers["x-tt-logid"] == payload["request_id"]
    assert payload["data"]["shops"] == [
        {
            "cipher": CREDS["shop_cipher"],
            "code": CREDS["shop_code"],
            "id": CREDS["shop_id"],
            "name": CREDS["shop_name"],
            "region": "US",
            "seller_type": "LOCAL",
        }
    ]


def test_bad_signatures_are_refused_with_106001(api_for):
    server, api = api_for(order(1))
    bad = api.request("GET", f"/authorization/{V}/shops", cipher=None, sig="0" * 64)
    assert error(bad) == (401, 106001, "Invalid credentials. The `sign` query parameter is invalid.")
    # the body is signed byte for byte: re-ordered keys or a different body fail
    path = f"/order/{V}/orders/search"
    sent = b'{"order_status":"AWAITING_SHIPMENT","shipping_type":"SELLER"}'
    reordered = b'{"shipping_type":"SELLER","order_status":"AWAITING_SHIPMENT"}'
    assert error(api.request("POST", path, {"page_size": "10"}, sent, sign_as=reordered))[1] == 106001
    assert error(api.request("POST", path, {"page_size": "10"}, sent, sign_as=b"{}"))[1] == 106001
    assert api.request("POST", path, {"page_size": "10"}, sent).json()["code"] == 0
    # the secret of another app does not sign for this app key
    other = TikTokApi(server, secret="not-the-secret")
    assert error(other.request("GET", f"/authorization/{V}/shops", cipher=None))[1] == 106001
    # a refused write is recorded with its code
    api.request(
        "POST",
        f"/fulfillment/{V}/orders/{oid(1)}/packages",
        body={"tracking_number": "1Z999AA10123456784", "shipping_provider_id": "1"},
        sig="f" * 64,
    )
    assert [(w["operation"], w["outcome"], w["status"]) for w in writes(server)] == [
        ("mark_package_as_shipped", "106001", 401)
    ]
    assert api.one(oid(1))["status"] == "AWAITING_SHIPMENT"


def test_timestamp_window_is_minus_five_minutes_plus_thirty_seconds(api_for):
    server, api = api_for()
    path = f"/authorization/{V}/shops"
    now = int(time.time())
    assert error(api.request("GET", path, cipher=None, timestamp=now - 310)) == (
        400,
        36009004,
        "Invalid timestamp. The `timestamp` query parameter must not be earlier "
        "than 5 minutes before the current time.",
    )
    assert error(api.request("GET", path, cipher=None, timestamp=now + 45)) == (
        400,
        36009004,
        "Invalid timestamp. The `timestamp` query parameter must not exceed the current time by more than 30 seconds.",
    )
    assert api.request("GET", path, cipher=None, timestamp=now - 280).json()["code"] == 0
    assert api.request("GET", path, cipher=None, timestamp=now + 20).json()["code"] == 0
    # missing timestamp
    query = {"app_key": CREDS["app_key"]}
    query["sign"] = sign(CREDS["app_secret"], path, query)
    resp = httpx.get(api.base + path, params=query, headers={"x-tts-access-token": CREDS["access_token"]})
    assert error(resp)[:2] == (400, 36009004) and "timestamp" in resp.json()["message"]


def test_app_key_and_missing_sign(api_for):
    server, api = api_for()
    path = f"/authorization/{V}/shops"
    stranger = TikTokApi(server, app_key="unknownkey")
    assert error(stranger.request("GET", path, cipher=None)) == (
        400,
        36009004,
        "Invalid credentials. Invalid `app_key` query parameter.",
    )
    resp = httpx.get(
        api.base + path,
        params={"app_key": CREDS["app_key"], "timestamp": str(int(time.time()))},
        headers={"x-tts-access-token": CREDS["access_token"]},
    )
    assert error(resp) == (
        400,
        36009004,
        "Missing credentials. The request does not include a required signature in the query.",
    )


def test_access_token_missing_bad_and_expired(api_for):
    server, api = api_for()
    path = f"/authorization/{V}/shops"
    invalid = (401, 36009004, "Invalid credentials. The `x-tts-access-token` header is invalid.")
    assert error(api.request("GET", path, cipher=None, token=None)) == invalid
    assert error(api.request("GET", path, cipher=None, token="TTP_forged")) == invalid
    # fault injection expires every access token issued so far
    assert admin(server, "POST", "/faults", {"platform": "tiktok", "kind": "token_expiry"}).status_code == 200
    assert error(api.request("GET", path, cipher=None)) == (
        401,
        105002,
        "Expired credentials. The `access_token` or `x-tts-access-token` header has expired.",
    )
    # a refresh gives a working token again
    data = api.token_call(
        "refresh",
        app_key=CREDS["app_key"],
        app_secret=CREDS["app_secret"],
        refresh_token=CREDS["refresh_token"],
        grant_type="refresh_token",
    ).json()["data"]
    api.token = data["access_token"]
    assert api.request("GET", path, cipher=None).json()["code"] == 0


def test_shop_cipher_required_forbidden_and_checked(api_for):
    server, api = api_for(order(1))
    assert error(api.search(cipher=None)) == (
        400,
        106013,
        "Missing identifier. The `shop_cipher` query parameter is required to identify the target shop.",
    )
    assert error(api.request("GET", f"/authorization/{V}/shops")) == (
        400,
        36009004,
        "Unexpected identifier. The `shop_cipher` query parameter is not required for this request.",
    )
    assert error(api.search(cipher="TTP_someone_else"))[:2] == (400, 101000)


def test_unknown_path_version_method_and_content_type(api_for):
    server, api = api_for()
    assert error(api.request("GET", f"/order/{V}/no_such_thing")) == (
        404,
        36009009,
        "Invalid path. The specified path does not match any available endpoint.",
    )
    assert error(api.request("POST", "/order/202401/orders/search", {"page_size": "5"}, {})) == (
        404,
        36009014,
        "Invalid API version. The `version` value is invalid or unsupported.",
    )
    assert error(api.request("POST", "/api/orders/search", body={}))[:2] == (404, 36009009)
    assert error(api.request("GET", f"/order/{V}/orders/search"))[:2] == (405, 36009010)
    assert error(
        api.request("POST", f"/order/{V}/orders/search", {"page_size": "5"}, b"page_size=5", content_type="text/plain")
    )[:2] == (400, 36009022)
    assert error(api.request("POST", f"/order/{V}/orders/search", {"page_size": "5"}, b"{not json"))[:2] == (
        400,
        36009004,
    )
    assert error(httpx.get(api.auth_base + "/api/v2/token/nope"))[:2] == (404, 36009009)


# ---------------------------------------------------------------- API versions


def test_newer_versions_are_served_beside_202309_with_their_differences(api_for):
    server, api = api_for(order(1, lines=2), order(2), order(3, pending_cancel=True), order(4))
    old, new = (
        api.ok("GET", f"/order/{V}/orders", {"ids": oid(1)})["orders"][0],
        api.ok("GET", "/order/202507/orders", {"ids": oid(1)})["orders"][0],
    )
    added = set(new) - set(old)
    assert added == {"is_subscription_order", "buyer_nickname", "recommended_shipping_time"} and not set(old) - set(new)
    assert {k: new[k] for k in old} == old and new["recommended_shipping_time"] == old["rts_sla_time"]

    search = "/return_refund/{}/cancellations/search"
    before = api.ok("POST", search.format(V), {}, {})["cancellations"][0]
    after = api.ok("POST", search.format("202602"), {}, {"locale": "en-US"})["cancellations"][0]
    assert "should_replenish_stock" not in before and after["should_replenish_stock"] is True
    assert after["cancel_line_items"][0]["cancel_sub_line_items"] == []

    ups = api.providers(api.one(oid(1)))["UPS"]
    packages = "/fulfillment/202610/orders/{}/packages"
    shipped = api.ok(
        "POST",
        packages.format(oid(1)),
        body={
            "order_line_list": [{"order_line_id": line_id(1, 1)}],
            "shipping_info_list": [{"tracking_number": "1Z999AA10123456784", "shipping_provider_id": ups}],
        },
    )
    assert shipped["order_line_item_ids"] == [line_id(1, 1)]
    lines = {li["id"]: li for li in api.one(oid(1))["line_items"]}
    assert lines[line_id(1, 1)]["tracking_number"] == "1Z999AA10123456784" and not lines[line_id(1, 0)].get(
        "package_id"
    )
    # the 202309 body at 202610 names what the version wants; two tracking numbers need the allowlist
    code, number, message = error(
        api.request(
            "POST", packages.format(oid(2)), body={"tracking_number": "1Z999AA10123456785", "shipping_provider_id": ups}
        )
    )
    assert (code, number) == (400, 36009004) and "shipping_info_list" in message
    two = [{"tracking_number": f"1Z999AA1012345678{n}", "shipping_provider_id": ups} for n in (6, 7)]
    assert "allowlist" in error(api.request("POST", packages.format(oid(2)), body={"shipping_info_list": two}))[2]
    assert api.one(oid(2))["status"] == "AWAITING_SHIPMENT"
    # and 202309 keeps its own body: the whole order, one package
    assert api.ship(oid(4), ups).json()["code"] == 0
    assert [(w["path"].split("/")[2], w["outcome"]) for w in writes(server)] == [
        ("202610", "ok"),
        ("202610", "36009004"),
        ("202610", "36009004"),
        (V, "ok"),
    ]
    # a version an endpoint does not have is refused as a version, not as an unknown path
    for path in (
        "/order/202507/orders/search",
        "/return_refund/202610/cancellations/search",
        f"/fulfillment/202602/orders/{oid(2)}/packages",
    ):
        assert error(api.request("POST", path, body={}))[:2] == (404, 36009014)


@pytest.mark.parametrize("style", ["joined", "each"])
def test_a_repeated_query_key_is_a_list_signed_either_way(api_for, style):
    server, api = api_for(order(1), order(2))
    path = "/order/202507/orders"
    query = [
        ("app_key", api.app_key),
        ("timestamp", str(int(time.time()))),
        ("shop_cipher", api.cipher),
        ("ids", oid(1)),
        ("ids", oid(2)),
    ]
    signed = query + [("sign", sign(api.secret, path, query, b"", repeated=style))]
    resp = api.http.get(api.base + path, params=signed, headers={"x-tts-access-token": api.token})
    assert resp.json()["code"] == 0, resp.text
    assert [o["id"] for o in resp.json()["data"]["orders"]] == [oid(1), oid(2)]
    # the two styles are different strings: neither is accepted for the other's path or values
    assert signing_string(path, query, repeated="joined") != signing_string(path, query, repeated="each")
    forged = query + [("sign", sign(api.secret, path, query[:-1], b"", repeated=style))]
    assert error(api.http.get(api.base + path, params=forged, headers={"x-tts-access-token": api.token}))[:2] == (
        401,
        106001,
    )


# ---------------------------------------------------------------- token host


def test_token_exchange_is_single_use_with_absolute_expiries(api_for):
    server, api = api_for()
    creds = {"app_key": CREDS["app_key"], "app_secret": CREDS["app_secret"]}
    before = int(time.time())
    code = server.sandbox.platforms["tiktok"].auth_codes[CREDS["auth_code"]]
    assert abs(code["expires"] - before - 30 * 60) <= 5  # valid for 30 minutes
    resp = api.token_call("get", **creds, auth_code=CREDS["auth_code"], grant_type="authorized_code")
    payload = resp.json()
    assert resp.status_code == 200 and payload["code"] == 0 and payload["message"] == "success"
    data = payload["data"]
    assert abs(data["access_token_expire_in"] - (before + 7 * 86400)) <= 5
    assert abs(data["refresh_token_expire_in"] - (before + 365 * 86400)) <= 5
    assert data["open_id"] == CREDS["open_id"] and data["user_type"] == 0 and data["granted_scopes"]
    api.token = data["access_token"]
    assert api.request("GET", f"/authorization/{V}/shops", cipher=None).json()["code"] == 0
    again = api.token_call("get", **creds, auth_code=CREDS["auth_code"], grant_type="authorized_code")
    assert error(again) == (200, 36004004, "Invalid auth code.")
    assert error(api.token_call("get", **creds, auth_code="TTP_unknown", grant_type="authorized_code"))[1] == 36004004
    assert error(api.token_call("get", **creds, auth_code="x", grant_type="refresh_token"))[:2] == (400, 36009004)
    assert error(
        api.token_call("get", app_key=CREDS["app_key"], app_secret="wrong", auth_code="x", grant_type="authorized_code")
    )[:2] == (400, 36009004)
    # the refresh token from the exchange refreshes; unknown refresh tokens are refused
    refreshed = api.token_call("refresh", **creds, refresh_token=data["refresh_token"], grant_type="refresh_token")
    assert refreshed.json()["code"] == 0 and refreshed.json()["data"]["access_token"] != data["access_token"]
    assert error(api.token_call("refresh", **creds, refresh_token="TTP_nope", grant_type="refresh_token")) == (
        200,
        36004005,
        "can not find related auth record",
    )
    # token calls are writes; secrets never reach the log
    logged = [w for w in writes(server) if w["operation"] in ("get_access_token", "refresh_access_token")]
    assert [w["outcome"] for w in logged] == ["ok", "36004004", "36004004", "36009004", "36009004", "ok", "36004005"]
    assert all(w["query"].get("app_secret") == "***" for w in logged)


def test_auth_code_and_refresh_token_expire(api_for):
    server, api = api_for(settings=Settings(platforms={"tiktok": {"auth_code_ttl": 1, "refresh_token_ttl": 1}}))
    time.sleep(1.2)
    creds = {"app_key": CREDS["app_key"], "app_secret": CREDS["app_secret"]}
    expired = api.token_call("get", **creds, auth_code=CREDS["auth_code"], grant_type="authorized_code")
    assert error(expired) == (200, 36004004, "Invalid auth code.")
    assert error(
        api.token_call("refresh", **creds, refresh_token=CREDS["refresh_token"], grant_type="refresh_token")
    ) == (200, 36004001, "rt has expired")


# ---------------------------------------------------------------- orders

ORDER_FIELDS = {
    "id",
    "status",
    "create_time",
    "update_time",
    "paid_time",
    "rts_sla_time",
    "tts_sla_time",
    "shipping_due_time",
    "collection_due_time",
    "delivery_due_time",
    "cancel_order_sla_time",
    "delivery_sla_time",
    "fulfillment_type",
    "shipping_type",
    "delivery_type",
    "delivery_option_id",
    "delivery_option_name",
    "is_on_hold_order",
    "is_buyer_request_cancel",
    "buyer_message",
    "seller_note",
    "cancel_reason",
    "cancellation_initiator",
    "tracking_number",
    "shipping_provider",
    "shipping_provider_id",
    "packages",
    "warehouse_id",
    "user_id",
    "buyer_email",
    "payment",
    "recipient_address",
    "line_items",
    "order_type",
    "commerce_platform",
}
LINE_FIELDS = {
    "id",
    "sku_id",
    "product_id",
    "product_name",
    "sku_name",
    "sku_image",
    "seller_sku",
    "sku_type",
    "display_status",
    "tracking_number",
    "shipping_provider_id",
    "shipping_provider_name",
    "is_gift",
    "currency",
    "original_price",
    "sale_price",
    "platform_discount",
    "seller_discount",
    "item_tax",
    "cancel_reason",
    "cancel_user",
}


def test_order_objects_are_complete(api_for):
    shipped = order(
        2,
        "AWAITING_COLLECTION",
        tracking_number="9400111899223197428490",
        shipping_provider="USPS",
        seller_note="gift wrap",
        update_time=iso(NOW - timedelta(hours=5)),
    )
    by_code = order(4, "DELIVERED", tracking_number="TBA012345678901", shipping_provider="AMZL_US")
    server, api = api_for(order(1, lines=2, buyer_message="Please ship asap!"), shipped, order(3, "UNPAID"), by_code)
    first, second, unpaid, fourth = api.detail(oid(1), oid(2), oid(3), oid(4))
    assert ORDER_FIELDS <= set(first) and all(LINE_FIELDS <= set(li) for li in first["line_items"])
    assert first["rts_sla_time"] == unix(created(1) + timedelta(days=2))
    assert first["shipping_due_time"] == unix(created(1) + timedelta(days=7))
    assert first["create_time"] == unix(created(1)) and first["create_time"] <= first["paid_time"]
    assert (first["tracking_number"], first["shipping_provider_id"], first["packages"]) == ("", "", [])
    assert first["buyer_message"] == "Please ship asap!" and first["fulfillment_type"] == "FULFILLMENT_BY_SELLER"
    for li in first["line_items"]:
        assert li["tracking_number"] == "" and "package_id" not in li and li["display_status"] == "AWAITING_SHIPMENT"
        assert isinstance(li["sale_price"], str) and float(li["sale_price"]) > 0
    assert all(isinstance(v, str) for v in first["payment"].values())
    pay = first["payment"]
    assert float(pay["total_amount"]) == pytest.approx(
        float(pay["sub_total"]) + float(pay["shipping_fee"]) + float(pay["tax"])
    )
    assert first["buyer_email"].endswith(".invalid") and first["recipient_address"]["name"] == "Sandbox Buyer"
    # a shipped scenario order carries its tracking everywhere, with the provider's real id
    providers = api.providers(second)
    assert second["tracking_number"] == "9400111899223197428490" and second["shipping_provider"] == "USPS"
    assert second["shipping_provider_id"] == providers["USPS"] and second["seller_note"] == "gift wrap"
    assert second["update_time"] == unix(NOW - timedelta(hours=5)) and len(second["packages"]) == 1
    assert second["line_items"][0]["package_id"] == second["packages"][0]["id"]
    assert second["line_items"][0]["tracking_number"] == "9400111899223197428490"
    # a fulfiller carrier code in the scenario becomes the TikTok provider it stands for
    assert (fourth["shipping_provider"], fourth["shipping_provider_id"]) == (
        "Amazon Logistics",
        providers["Amazon Logistics"],
    )
    assert fourth["delivery_time"] >= fourth["collection_time"] >= fourth["rts_time"] >= fourth["paid_time"]
    # unpaid: no payment time and no address yet
    assert "paid_time" not in unpaid and "recipient_address" not in unpaid


def test_paging_1000_orders_is_complete_and_ordered(api_for):
    server, api = api_for(*(order(n) for n in range(1000)))
    items, tokens, totals = api.all_pages(f"/order/{V}/orders/search", {}, page_size=100)
    ids = [o["id"] for o in items]
    assert len(ids) == 1000 and set(ids) == {oid(n) for n in range(1000)} and totals == {1000}
    assert len(tokens) == 9
    assert [o["create_time"] for o in items] == sorted((o["create_time"] for o in items), reverse=True)
    # tokens are opaque base64 with + and /, so they must be percent-encoded and signed decoded
    assert all("+" in t and "/" in t for t in tokens)
    ascending, _, _ = api.all_pages(f"/order/{V}/orders/search", {}, page_size=100, sort_order="ASC")
    assert [o["id"] for o in ascending] == list(reversed(ids))


def test_paging_is_stable_while_orders_change_status(api_for):
    server, api = api_for(*(order(n) for n in range(300)))
    ups = api.providers(api.one(oid(0)))["UPS"]
    path, body = f"/order/{V}/orders/search", {"order_status": "AWAITING_SHIPMENT"}
    seen: list[str] = []
    token = ""
    while True:
        query = {"page_size": "40", "sort_field": "update_time", "sort_order": "ASC"}
        if token:
            query["page_token"] = token
        data = api.ok("POST", path, query, body)
        assert data["total_count"] == 300
        seen.extend(o["id"] for o in data["orders"])
        # ship orders not yet seen and already seen: both move their update_time and status mid-way
        advance(server, 60)
        for target in [oid(299 - len(seen) // 10), seen[0]]:
            if api.one(target)["status"] == "AWAITING_SHIPMENT":
                assert api.ship(target, ups).json()["code"] == 0
        token = data["next_page_token"]
        if not token:
            break
    assert len(seen) == 300 and set(seen) == {oid(n) for n in range(300)}
    shipped = {o["id"] for o in api.detail(*seen[:50]) if o["status"] == "AWAITING_COLLECTION"}
    fresh = api.search(body).json()["data"]
    assert fresh["total_count"] == 300 - sum(1 for w in writes(server) if w["outcome"] == "ok")
    assert shipped and not shipped & {o["id"] for o in fresh["orders"]}


def test_search_parameters_are_validated(api_for):
    server, api = api_for(*(order(n) for n in range(5)))
    path = f"/order/{V}/orders/search"
    assert error(api.request("POST", path, {}, {}))[:2] == (400, 36009004)
    for size in ("0", "101", "ten"):
        assert error(api.search(page_size=size))[:2] == (400, 36009004)
    assert len(api.search(page_size=100).json()["data"]["orders"]) == 5
    assert error(api.search({"order_status": "SHIPPED"}))[:2] == (400, 36009004)
    assert error(api.search(sort_field="paid_time"))[:2] == (400, 36009004)
    first = api.search(page_size=2).json()["data"]
    assert error(api.search(page_size=2, page_token="bm90IGEgdG9rZW4="))[:2] == (400, 36009004)
    # a token belongs to its query: changing the filter is refused
    assert error(api.search({"order_status": "UNPAID"}, page_size=2, page_token=first["next_page_token"]))[:2] == (
        400,
        36009004,
    )
    second = api.search(page_size=2, page_token=first["next_page_token"]).json()["data"]
    assert {o["id"] for o in first["orders"]}.isdisjoint(o["id"] for o in second["orders"])


def test_search_filters(api_for):
    later = {"update_time": iso(NOW - timedelta(hours=1))}
    server, api = api_for(
        order(1),
        order(2, **later),
        order(3, "UNPAID"),
        order(4, "AWAITING_SHIPMENT", pending_cancel=True),
        order(5, "AWAITING_SHIPMENT", shipping_type="TIKTOK"),
        order(6, "CANCELLED"),
        order(7, "IN_TRANSIT", tracking_number="1Z999AA10123456784", shipping_provider="UPS"),
    )

    def ids(body=None, **params) -> list[str]:
        resp = api.search(body, **params).json()
        assert resp["code"] == 0, resp
        return [o["id"] for o in resp["data"]["orders"]]

    assert ids({"order_status": "AWAITING_SHIPMENT"}, sort_order="ASC") == [oid(1), oid(2), oid(4), oid(5)]
    assert ids({"order_status": "UNPAID"}) == [oid(3)]
    assert ids({"is_buyer_request_cancel": True}) == [oid(4)]
    assert oid(4) not in ids({"is_buyer_request_cancel": False})
    assert ids({"shipping_type": "TIKTOK"}) == [oid(5)]
    assert set(ids({"shipping_type": "SELLER"})) == {oid(n) for n in (1, 2, 3, 4, 6, 7)}
    # create_time: ge inclusive, lt exclusive
    assert ids({"create_time_ge": unix(created(2)), "create_time_lt": unix(created(4))}, sort_order="ASC") == [
        oid(2),
        oid(3),
    ]
    assert ids({"update_time_ge": unix(NOW - timedelta(hours=1))}) == [oid(2)]
    assert ids(
        {"update_time_lt": unix(NOW - timedelta(hours=1)), "order_status": "AWAITING_SHIPMENT"},
        sort_field="update_time",
        sort_order="ASC",
    ) == [oid(1), oid(4), oid(5)]
    assert ids(sort_field="update_time")[0] == oid(2)
    assert (
        ids({"order_status": "COMPLETED"}) == []
        and api.search({"order_status": "COMPLETED"}).json()["data"]["next_page_token"] == ""
    )


def test_order_detail_limits_and_ownership(run_sandbox):
    other = {"cipher": "TTP_SbxShopCipher0002", "id": "7494000000000000002", "name": "Second Sandbox Shop"}
    server = run_sandbox(
        scenario(*(order(n) for n in range(60))),
        platforms=("tiktok",),
        settings=Settings(clock_rate=0, rate_scale=100, platforms={"tiktok": {"extra_shops": [other]}}),
    )
    api = TikTokApi(server)
    fifty = [oid(n) for n in range(50)]
    assert [o["id"] for o in api.detail(*reversed(fifty))] == list(reversed(fifty))
    assert error(api.request("GET", f"/order/{V}/orders", {"ids": ",".join(fifty + [oid(50)])}))[:2] == (400, 36009004)
    assert error(api.request("GET", f"/order/{V}/orders", {}))[:2] == (400, 36009004)
    assert error(api.request("GET", f"/order/{V}/orders", {"ids": "576999"})) == (
        200,
        21008111,
        "The order or package does not belong to the current seller.",
    )
    # the token sees both shops; the second shop does not own the first shop's orders
    shops = api.ok("GET", f"/authorization/{V}/shops", cipher=None)["shops"]
    assert [s["cipher"] for s in shops] == [CREDS["shop_cipher"], other["cipher"]]
    assert error(api.request("GET", f"/order/{V}/orders", {"ids": oid(1)}, cipher=other["cipher"]))[1] == 21008111
    resp = api.request(
        "POST",
        f"/fulfillment/{V}/orders/{oid(1)}/packages",
        cipher=other["cipher"],
        body={"tracking_number": "1Z999AA10123456784", "shipping_provider_id": "1"},
    )
    assert error(resp)[:2] == (200, 21008111)
    assert api.one(oid(1))["status"] == "AWAITING_SHIPMENT"
    assert api.search(cipher=other["cipher"]).json()["data"]["total_count"] == 0


# ---------------------------------------------------------------- logistics


def test_logistics_chain_and_stable_provider_ids(api_for, run_sandbox):
    server, api = api_for(order(1))
    warehouses = api.ok("GET", f"/logistics/{V}/warehouses")["warehouses"]
    sales = [w for w in warehouses if w["type"] == "SALES_WAREHOUSE"]
    assert len(sales) == 1 and sales[0]["is_default"] and sales[0]["effect_status"] == "ENABLED"
    options = api.ok("GET", f"/logistics/{V}/warehouses/{sales[0]['id']}/delivery_options")["delivery_options"]
    assert {o["type"] for o in options} == {"STANDARD", "EXPRESS"}
    standard = next(o for o in options if o["type"] == "STANDARD")
    assert api.one(oid(1))["delivery_option_id"] == standard["id"]
    names = api.providers(api.one(oid(1)))
    assert {"USPS", "UPS", "FedEx", "DHL eCommerce", "OnTrac", "Amazon Logistics", "LaserShip"} <= set(names)
    assert all(pid.isdigit() and len(pid) == 19 for pid in names.values())
    assert error(api.request("GET", f"/logistics/{V}/warehouses/123/delivery_options"))[:2] == (200, 21019020)
    assert error(api.request("GET", f"/logistics/{V}/delivery_options/123/shipping_providers"))[:2] == (200, 21019021)
    # ids survive a restart
    again = TikTokApi(run_sandbox(scenario(order(1)), platforms=("tiktok",), settings=FROZEN))
    assert again.providers(again.one(oid(1))) == names


# ---------------------------------------------------------------- fulfillment


def test_mark_package_as_shipped_whole_order(api_for):
    server, api = api_for(order(1, lines=2))
    before = api.one(oid(1))
    ups = api.providers(before)["UPS"]
    advance(server, 600)
    resp = api.ship(oid(1), ups)
    data = resp.json()["data"]
    assert data["order_id"] == oid(1) and data["order_line_item_ids"] == [line_id(1, 0), line_id(1, 1)]
    after = api.one(oid(1))
    moved = unix(NOW + timedelta(seconds=600))
    assert after["status"] == "AWAITING_COLLECTION" and after["update_time"] == moved == after["rts_time"]
    assert before["update_time"] < moved
    assert (after["tracking_number"], after["shipping_provider"], after["shipping_provider_id"]) == (
        "1Z999AA10123456784",
        "UPS",
        ups,
    )
    assert after["packages"] == [{"id": data["package_id"]}]
    for li in after["line_items"]:
        assert (li["package_id"], li["tracking_number"], li["shipping_provider_name"], li["display_status"]) == (
            data["package_id"],
            "1Z999AA10123456784",
            "UPS",
            "AWAITING_COLLECTION",
        )
    # a second attempt is refused and changes nothing
    again = api.ship(oid(1), ups, tracking="1Z999AA10000000000")
    assert error(again)[:2] == (200, 21019002)
    assert api.one(oid(1)) == after
    assert [(w["outcome"], w["body"]["tracking_number"]) for w in writes(server)] == [
        ("ok", "1Z999AA10123456784"),
        ("21019002", "1Z999AA10000000000"),
    ]


def test_partial_shipment_then_the_rest(api_for):
    server, api = api_for(order(1, lines=3))
    fedex = api.providers(api.one(oid(1)))["FedEx"]
    first = api.ship(oid(1), fedex, "777000000001", [line_id(1, 0)]).json()
    assert first["code"] == 0 and first["data"]["order_line_item_ids"] == [line_id(1, 0)]
    partial = api.one(oid(1))
    assert partial["status"] == "PARTIALLY_SHIPPING"
    lines = {li["id"]: li for li in partial["line_items"]}
    assert lines[line_id(1, 0)]["tracking_number"] == "777000000001"
    assert lines[line_id(1, 0)]["display_status"] == "AWAITING_COLLECTION"
    assert "package_id" not in lines[line_id(1, 1)] and lines[line_id(1, 1)]["display_status"] == "AWAITING_SHIPMENT"
    assert api.search({"order_status": "PARTIALLY_SHIPPING"}).json()["data"]["total_count"] == 1
    assert error(api.ship(oid(1), fedex, "777000000009", [line_id(1, 0), line_id(1, 1)]))[1] == 21019002
    assert error(api.ship(oid(1), fedex, "777000000009", ["577999999999999999"]))[1] == 21019004
    rest = api.ship(oid(1), fedex, "777000000002").json()["data"]
    assert rest["order_line_item_ids"] == [line_id(1, 1), line_id(1, 2)]
    done = api.one(oid(1))
    assert done["status"] == "AWAITING_COLLECTION" and len(done["packages"]) == 2
    assert done["tracking_number"] == "777000000002"
    assert error(api.ship(oid(1), fedex, "777000000003"))[1] == 21019002


def test_mark_package_as_shipped_refusals(api_for):
    server, api = api_for(
        order(1, "CANCELLED"),
        order(2, delivery_option="EXPRESS"),
        order(3),
        order(4, shipping_type="TIKTOK"),
        order(5, "UNPAID"),
    )
    standard = api.providers(api.one(oid(3)))
    express = api.providers(api.one(oid(2)))
    assert "DHL eCommerce" in standard and "DHL eCommerce" not in express
    assert error(api.ship(oid(1), standard["UPS"]))[:2] == (200, 21019001)
    assert error(api.ship(oid(5), standard["UPS"]))[:2] == (200, 21019001)
    assert error(api.ship(oid(2), standard["DHL eCommerce"]))[:2] == (200, 21019003)
    assert error(api.ship(oid(3), "6900000000000000000"))[:2] == (200, 21019003)
    assert error(api.ship(oid(3), standard["UPS"], tracking="not a tracking #"))[:2] == (200, 21019005)
    assert error(api.ship(oid(4), standard["UPS"])) == (
        200,
        21008106,
        "This interface cannot be used in this region or this business type. Please don't use the api.",
    )
    missing = api.request("POST", f"/fulfillment/{V}/orders/{oid(3)}/packages", body={"shipping_provider_id": "1"})
    assert error(missing)[:2] == (400, 36009004)
    assert {o["status"] for o in api.detail(oid(2), oid(3), oid(4))} == {"AWAITING_SHIPMENT"}
    assert api.ship(oid(2), express["DHL Express"]).json()["code"] == 0
    assert [w["outcome"] for w in writes(server)] == [
        "21019001",
        "21019001",
        "21019003",
        "21019003",
        "21019005",
        "21008106",
        "36009004",
        "ok",
    ]


# ---------------------------------------------------------------- cancellations


def test_search_cancellations_filters_and_paging(api_for):
    server, api = api_for(*(order(n, pending_cancel=True) for n in range(1, 6)), order(6))
    path = f"/return_refund/{V}/cancellations/search"
    everything = api.ok("POST", path, {}, {})
    assert everything["total_count"] == 5 and len(everything["cancellations"]) == 5  # default page size 10
    rec = everything["cancellations"][0]
    assert rec["cancel_type"] == "BUYER_CANCEL" and rec["role"] == "BUYER"
    assert rec["cancel_status"] == "CANCELLATION_REQUEST_PENDING"
    assert rec["seller_next_action_response"] == [
        {"action": "SELLER_RESPOND_CANCEL", "deadline": unix(NOW + timedelta(hours=47))}
    ]
    assert rec["cancel_line_items"][0]["order_line_item_id"] == line_id(1)
    assert isinstance(rec["refund_amount"]["refund_total"], str)
    assert api.one(oid(1))["is_buyer_request_cancel"] is True
    items, tokens, totals = api.all_pages(path, {}, page_size=2)
    assert [c["cancel_id"] for c in items] == [cancel_id(n) for n in range(1, 6)] and totals == {5}
    assert len(tokens) == 2
    assert [
        c["cancel_id"]
        for c in api.ok("POST", path, {"page_size": "50"}, {"order_ids": [oid(2), oid(6)]})["cancellations"]
    ] == [cancel_id(2)]
    assert api.ok("POST", path, {}, {"cancel_ids": [cancel_id(3)]})["cancellations"][0]["order_id"] == oid(3)
    assert api.ok("POST", path, {}, {"cancel_status": ["CANCELLATION_REQUEST_SUCCESS"]})["total_count"] == 0
    assert api.ok("POST", path, {}, {"cancel_types": ["CANCEL"]})["total_count"] == 0
    assert api.ok("POST", path, {}, {"create_time_ge": unix(NOW)})["total_count"] == 0
    assert api.ok("POST", path, {}, {"update_time_lt": unix(NOW)})["total_count"] == 5
    assert error(api.request("POST", path, {"page_size": "51"}, {}))[:2] == (400, 36009004)
    assert error(api.request("POST", path, {}, {"cancel_status": ["PENDING"]}))[:2] == (400, 36009004)


def test_approve_cancels_the_order_once_per_idempotency_key(api_for):
    server, api = api_for(order(1, lines=2, pending_cancel=True))
    advance(server, 120)
    path = f"/return_refund/{V}/cancellations/{cancel_id(1)}/approve"
    first = api.request("POST", path, {"idempotency_key": "approve-1"})
    assert first.json()["code"] == 0 and first.json()["data"] == {}
    cancelled = api.one(oid(1))
    at = unix(NOW + timedelta(seconds=120))
    assert cancelled["status"] == "CANCELLED" and cancelled["is_buyer_request_cancel"] is False
    assert cancelled["update_time"] == at == cancelled["cancel_time"]
    assert cancelled["cancellation_initiator"] == "BUYER"
    assert {(li["display_status"], li["cancel_user"]) for li in cancelled["line_items"]} == {("CANCELLED", "BUYER")}
    rec = api.ok("POST", f"/return_refund/{V}/cancellations/search", {}, {"cancel_ids": [cancel_id(1)]})[
        "cancellations"
    ][0]
    assert rec["cancel_status"] == "CANCELLATION_REQUEST_SUCCESS" and rec["update_time"] == at
    assert rec["seller_next_action_response"] == []
    # same key: the same answer, and nothing happens again
    advance(server, 120)
    replay = api.request("POST", path, {"idempotency_key": "approve-1"})
    assert replay.json() == first.json()
    assert api.one(oid(1)) == cancelled
    # a new key meets the real state
    assert error(api.request("POST", path, {"idempotency_key": "approve-2"}))[:2] == (200, 21019011)
    assert error(api.request("POST", f"/return_refund/{V}/cancellations/4035999999999999999/approve"))[1] == 21019010
    assert [w["outcome"] for w in writes(server)] == ["ok", "ok", "21019011", "21019010"]


def test_reject_keeps_the_order_and_needs_a_listed_reason(api_for):
    server, api = api_for(order(1, pending_cancel=True))
    reasons = api.ok(
        "GET", f"/return_refund/{V}/reject_reasons", {"return_or_cancel_id": cancel_id(1), "locale": "en-US"}
    )["reasons"]
    names = [r["name"] for r in reasons]
    # a US shop: TikTok's US list, which has not the UK/ID "packed" code
    assert names == [
        "ecom_reverse_reject_cancel_reason_product_packed",
        "ecom_reverse_reject_refund_request_package_delivery_multiple_boxes",
        "seller_reject_apply_unable_to_change_address",
    ] and all(r["text"] for r in reasons)
    path = f"/return_refund/{V}/cancellations/{cancel_id(1)}/reject"
    assert error(api.request("POST", path, {"idempotency_key": "r0"}, {}))[:2] == (400, 36009004)
    for wrong in ("because", "seller_reject_apply_product_has_been_packed"):
        assert error(api.request("POST", path, {"idempotency_key": "r0"}, {"reject_reason": wrong}))[:2] == (
            400,
            36009004,
        )
    assert api.one(oid(1))["is_buyer_request_cancel"] is True
    body = {"reject_reason": names[0], "comment": "Already packed"}
    first = api.request("POST", path, {"idempotency_key": "r1"}, body)
    assert first.json()["code"] == 0
    kept = api.one(oid(1))
    assert kept["status"] == "AWAITING_SHIPMENT" and kept["is_buyer_request_cancel"] is False
    assert kept["update_time"] == api.one(oid(1))["update_time"] < unix(NOW)
    rec = api.ok("POST", f"/return_refund/{V}/cancellations/search", {}, {})["cancellations"][0]
    assert rec["cancel_status"] == "CANCELLATION_REQUEST_CANCEL"
    assert api.request("POST", path, {"idempotency_key": "r1"}, body).json() == first.json()
    assert error(api.request("POST", f"/return_refund/{V}/cancellations/{cancel_id(1)}/approve"))[1] == 21019011
    assert api.one(oid(1))["status"] == "AWAITING_SHIPMENT"


def test_approve_is_refused_once_the_order_shipped(api_for):
    server, api = api_for(order(1, pending_cancel=True))
    ups = api.providers(api.one(oid(1)))["UPS"]
    assert api.ship(oid(1), ups, "1Z999AA10123456784").json()["code"] == 0
    approve = api.request("POST", f"/return_refund/{V}/cancellations/{cancel_id(1)}/approve")
    assert error(approve)[:2] == (200, 21019012)
    assert api.one(oid(1))["status"] == "AWAITING_COLLECTION"
    reject = api.request(
        "POST",
        f"/return_refund/{V}/cancellations/{cancel_id(1)}/reject",
        body={"reject_reason": "ecom_reverse_reject_cancel_reason_product_packed"},
    )
    assert reject.json()["code"] == 0


def test_usps_tracking_on_the_sellers_own_label_fails_verification(api_for):
    """Since January 2026 USPS labels for TikTok orders come through TikTok Shipping (US shops)."""
    server, api = api_for(order(1), order(2))
    providers = api.providers(api.one(oid(1)))
    assert error(api.ship(oid(1), providers["USPS"], "9400111899223197428490"))[:2] == (200, 21019006)
    assert api.one(oid(1))["status"] == "AWAITING_SHIPMENT"
    assert api.ship(oid(2), providers["UPS"], "1Z999AA10123456784").json()["code"] == 0
    server, api = api_for(
        order(1), settings=replace(FROZEN, platforms={"tiktok": {"usps_needs_tiktok_shipping": False}})
    )
    assert api.ship(oid(1), api.providers(api.one(oid(1)))["USPS"], "9400111899223197428490").json()["code"] == 0


def test_an_mcf_warehouse_takes_amazon_tracking_only_and_is_deactivated_at_five_wrong_ones(api_for):
    """TikTok's Amazon MCF warehouse mode (02/2026): 5 incorrect (non-MCF) tracking numbers
    uploaded for the warehouse deactivate it."""
    mcf = replace(FROZEN, platforms={"tiktok": {"mcf_warehouse": True}})
    server, api = api_for(*(order(n, delivery_option="MCF") for n in range(1, 8)), settings=mcf)
    warehouse = api.one(oid(1))["warehouse_id"]
    providers = api.providers(api.one(oid(1)))
    assert "Amazon Shipping + Amazon MCF" in providers
    for n in range(1, 6):
        assert error(api.ship(oid(n), providers["UPS"], f"1Z999AA1012345678{n}"))[:2] == (200, 21019007)
    # the fifth wrong one deactivated it: nothing is taken for it any more
    shown = {w["id"]: w for w in api.ok("GET", f"/logistics/{V}/warehouses")["warehouses"]}
    assert shown[warehouse]["effect_status"] == "DISABLED"
    assert error(api.ship(oid(6), providers["UPS"], "1Z999AA10123456786"))[:2] == (200, 21019022)


def test_reject_reasons_follow_the_shops_market(api_for):
    server, api = api_for(
        order(1, pending_cancel=True), settings=replace(FROZEN, platforms={"tiktok": {"region": "GB"}})
    )
    names = [
        r["name"]
        for r in api.ok("GET", f"/return_refund/{V}/reject_reasons", {"return_or_cancel_id": cancel_id(1)})["reasons"]
    ]
    assert "seller_reject_apply_product_has_been_packed" in names
    assert "ecom_reverse_reject_cancel_reason_product_packed" not in names
    path = f"/return_refund/{V}/cancellations/{cancel_id(1)}/reject"
    assert error(
        api.request(
            "POST",
            path,
            {"idempotency_key": "r0"},
            {"reject_reason": "ecom_reverse_reject_cancel_reason_product_packed"},
        )
    )[:2] == (400, 36009004)
    assert (
        api.request(
            "POST", path, {"idempotency_key": "r1"}, {"reject_reason": "seller_reject_apply_product_has_been_packed"}
        ).json()["code"]
        == 0
    )
    with pytest.raises(ValueError, match="tiktok.region: expected one of US, GB, ID, got 'XX'"):
        api_for(order(1), settings=replace(FROZEN, platforms={"tiktok": {"region": "XX"}}))


def test_seller_cancel_whole_and_partial(api_for):
    server, api = api_for(
        order(1),
        order(2, lines=2),
        order(3, pending_cancel=True),
        order(4, "IN_TRANSIT", tracking_number="1Z999AA10123456784", shipping_provider="UPS"),
    )
    path = f"/return_refund/{V}/cancellations"
    whole = api.ok("POST", path, body={"order_id": oid(1), "cancel_reason": "seller_cancel_reason_out_of_stock"})
    assert whole["cancel_status"] == "CANCELLATION_REQUEST_SUCCESS" and whole["cancel_id"].isdigit()
    cancelled = api.one(oid(1))
    assert cancelled["status"] == "CANCELLED" and cancelled["cancellation_initiator"] == "SELLER"
    rec = api.ok("POST", f"{path}/search", {}, {"cancel_ids": [whole["cancel_id"]]})["cancellations"][0]
    assert (rec["cancel_type"], rec["role"], rec["order_id"]) == ("CANCEL", "SELLER", oid(1))
    # partial: one of two lines; the rest still ships
    api.ok(
        "POST",
        path,
        body={
            "order_id": oid(2),
            "cancel_reason": "seller_cancel_reason_out_of_stock",
            "order_line_item_ids": [line_id(2, 1)],
        },
    )
    partial = api.one(oid(2))
    assert partial["status"] == "AWAITING_SHIPMENT"
    assert [li["display_status"] for li in partial["line_items"]] == ["AWAITING_SHIPMENT", "CANCELLED"]
    shipped = api.ship(oid(2), api.providers(partial)["UPS"]).json()["data"]
    assert shipped["order_line_item_ids"] == [line_id(2, 0)] and api.one(oid(2))["status"] == "AWAITING_COLLECTION"
    # refusals
    assert error(api.request("POST", path, body={"order_id": oid(3), "cancel_reason": "x_y"}))[1] == 21019013
    assert error(api.request("POST", path, body={"order_id": oid(4), "cancel_reason": "x_y"}))[1] == 21019001
    assert error(api.request("POST", path, body={"order_id": oid(1), "cancel_reason": "x_y"}))[1] == 21019001
    assert error(api.request("POST", path, body={"order_id": "576999", "cancel_reason": "x_y"}))[1] == 21008111
    assert error(api.request("POST", path, body={"order_id": oid(3)}))[:2] == (400, 36009004)


@pytest.mark.parametrize(
    "action,cancel_status,order_status",
    [
        ("approve", "CANCELLATION_REQUEST_SUCCESS", "CANCELLED"),
        ("reject", "CANCELLATION_REQUEST_CANCEL", "AWAITING_SHIPMENT"),
        ("keep", "CANCELLATION_REQUEST_PENDING", "AWAITING_SHIPMENT"),
    ],
)
def test_pending_cancellation_past_its_deadline(api_for, action, cancel_status, order_status):
    settings = Settings(clock_rate=0, rate_scale=100, platforms={"tiktok": {"cancellation_deadline_action": action}})
    server, api = api_for(order(1, pending_cancel=True), settings=settings)
    advance(server, 46 * 3600)
    assert api.one(oid(1))["is_buyer_request_cancel"] is True
    advance(server, 2 * 3600)
    after = api.one(oid(1))
    rec = api.ok("POST", f"/return_refund/{V}/cancellations/search", {}, {})["cancellations"][0]
    assert (rec["cancel_status"], after["status"]) == (cancel_status, order_status)
    assert after["is_buyer_request_cancel"] is (action == "keep")
    if action == "approve":  # the change is stamped at the deadline, not at the moment it was noticed
        assert after["update_time"] == rec["update_time"] == unix(NOW + timedelta(hours=47))


def test_unshipped_orders_are_cancelled_at_shipping_due_time(api_for):
    overdue_at_load = order(2, shipping_due_time=iso(NOW - timedelta(hours=1)))
    server, api = api_for(order(1), overdue_at_load)
    due = api.one(oid(1))["shipping_due_time"]
    advance(server, due - unix(NOW) + 1)
    gone, kept = api.detail(oid(1), oid(2))
    assert gone["status"] == "CANCELLED" and gone["cancellation_initiator"] == "SYSTEM"
    assert gone["update_time"] == due == gone["cancel_time"]
    assert kept["status"] == "AWAITING_SHIPMENT"  # deadlines before the scenario's now are history
    recs = api.ok("POST", f"/return_refund/{V}/cancellations/search", {}, {"order_ids": [oid(1)]})["cancellations"]
    assert [(r["role"], r["cancel_type"], r["cancel_status"]) for r in recs] == [
        ("SYSTEM", "CANCEL", "CANCELLATION_REQUEST_SUCCESS")
    ]


def test_shipped_orders_move_on_with_the_clock(api_for):
    server, api = api_for(order(1))
    assert api.ship(oid(1), api.providers(api.one(oid(1)))["UPS"]).json()["code"] == 0
    advance(server, 86400)
    moving = api.one(oid(1))
    assert moving["status"] == "IN_TRANSIT" and moving["collection_time"] == unix(NOW) + 86400
    assert moving["line_items"][0]["package_status"] == "FULFILLING"
    advance(server, 3 * 86400)
    assert api.one(oid(1))["status"] == "DELIVERED"
    assert api.search({"update_time_ge": unix(NOW) + 4 * 86400}).json()["data"]["total_count"] == 1


# ---------------------------------------------------------------- quotas and faults


def test_default_quota_is_50_qps_per_app_shop_and_endpoint(run_sandbox):
    server = run_sandbox(scenario(order(1)), platforms=("tiktok",), settings=Settings(clock_rate=0))
    api = TikTokApi(server)
    path = f"/logistics/{V}/warehouses"

    async def burst(n: int) -> tuple[list[httpx.Response], float]:
        async with httpx.AsyncClient(timeout=20, limits=httpx.Limits(max_connections=200)) as client:
            stamp = str(int(time.time()))
            query = {"app_key": CREDS["app_key"], "timestamp": stamp, "shop_cipher": CREDS["shop_cipher"]}
            query["sign"] = sign(CREDS["app_secret"], path, query)
            started = time.monotonic()
            responses = await asyncio.gather(
                *(
                    client.get(api.base + path, params=query, headers={"x-tts-access-token": CREDS["access_token"]})
                    for _ in range(n)
                )
            )
            return responses, time.monotonic() - started

    responses, elapsed = asyncio.run(burst(150))
    granted = sum(1 for r in responses if r.status_code == 200)
    assert 50 <= granted <= 50 + 50 * elapsed + 1
    assert any(r.status_code == 429 and r.json()["code"] == 36009002 for r in responses)
    impl = server.sandbox.platforms["tiktok"]
    bucket = impl.buckets[(CREDS["app_key"], CREDS["shop_cipher"], f"/logistics/{V}/warehouses")]
    assert (bucket.rate, bucket.burst) == (50.0, 50.0)


def test_throttling_answers_429_per_endpoint(run_sandbox, virtual_time):
    server = run_sandbox(scenario(order(1)), platforms=("tiktok",), settings=Settings(clock_rate=0, rate_scale=0.1))
    server.sandbox.clock.quota_source = virtual_time  # buckets refill only when the test says
    api = TikTokApi(server)
    results = [api.request("GET", f"/logistics/{V}/warehouses") for _ in range(8)]
    assert [r.status_code for r in results] == [200] * 5 + [429] * 3  # burst 5
    throttled = results[-1]
    assert error(throttled) == (
        429,
        36009002,
        "Too many requests. You've made too many requests in a short period of time.",
    )
    assert api.request("GET", f"/order/{V}/orders", {"ids": oid(1)}).status_code == 200  # own bucket
    virtual_time.sleep(0.19)  # 5 a second: not yet a whole token back
    assert api.request("GET", f"/logistics/{V}/warehouses").status_code == 429
    virtual_time.sleep(0.02)
    assert api.request("GET", f"/logistics/{V}/warehouses").status_code == 200
    server.sandbox.wait_idle()  # counted once answered
    counted = admin(server, "GET", "/calls").json()["throttled"]
    assert {"platform": "tiktok", "operation": "get_warehouses", "count": 4} in counted


def test_injected_429_and_5xx_use_the_platform_envelope(api_for):
    server, api = api_for(order(1))
    admin(server, "POST", "/faults", {"platform": "tiktok", "kind": "429", "path": "orders/search"})
    admin(server, "POST", "/faults", {"platform": "tiktok", "kind": "5xx", "status": 503, "path": "orders/search"})
    assert error(api.search())[:2] == (429, 36009002)
    assert error(api.search()) == (
        503,
        36009003,
        "Internal error. Please try again. If the issue persists after "
        "multiple attempts, please contact platform support.",
    )
    assert api.search().json()["data"]["total_count"] == 1


def test_page_tokens_survive_percent_encoding(api_for):
    server, api = api_for(*(order(n) for n in range(3)))
    first = api.search(page_size=1).json()["data"]
    token = first["next_page_token"]
    assert base64.b64decode(token) and token.startswith("+/")
    # a client that forgets to encode '+' sends a space: the token no longer decodes
    path = f"/order/{V}/orders/search"
    query = {
        "app_key": CREDS["app_key"],
        "timestamp": str(int(time.time())),
        "shop_cipher": CREDS["shop_cipher"],
        "page_size": "1",
        "page_token": token.replace("+", " "),
    }
    query["sign"] = sign(CREDS["app_secret"], path, query, b"{}")
    raw_query = "&".join(f"{k}={v}" for k, v in query.items())
    resp = httpx.post(
        f"{api.base}{path}?{raw_query}",
        content=b"{}",
        headers={"content-type": "application/json", "x-tts-access-token": CREDS["access_token"]},
    )
    assert resp.json()["code"] in (106001, 36009004)
    second = api.search(page_size=1, page_token=token).json()["data"]
    assert second["orders"][0]["id"] != first["orders"][0]["id"]
