"""Shopify Admin GraphQL simulator, over real HTTP: auth, versions, search, paging, cost, cancel jobs."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import date

import httpx
import pytest

from sandbox.core import Settings
from sandbox.shopify import (
    ADMIN_SCHEMA_PATH,
    DEFAULT_CREDENTIALS,
    TIKTOK_ATTRIBUTE_KEY,
    TIKTOK_NOTE_PREFIX,
    end_of_support,
    released,
)
from tests.support import NOW_ISO as NOW
from tests.support import gid, set_day

TOKEN = DEFAULT_CREDENTIALS["access_token"]


def tiktok_id(i: int) -> str:
    return f"576{i:015d}"


def scenario_order(
    i: int,
    *,
    place: str = "source_identifier",
    created: str = "2026-11-18T16:00:00Z",
    shopify: dict | list | None = None,
    cancelled: bool = False,
    sku: str = "OSL-TEE-M",
    amazon: dict | None = None,
    cancellation: dict | None = None,
) -> dict:
    entry = (
        shopify
        if shopify is not None
        else {"id": 6100000000 + i, "name": f"#{1000 + i}", "tiktok_id_in": place, "cancelled": cancelled}
    )
    return {
        "tiktok": {
            "id": tiktok_id(i),
            "status": "AWAITING_SHIPMENT",
            "create_time": created,
            "rts_sla_time": "2026-11-20T23:59:00Z",
            "shipping_due_time": "2026-11-27T23:59:00Z",
            "tracking_number": "",
            "line_items": [{"id": f"577{i:015d}", "seller_sku": sku}],
            "cancellation": cancellation,
        },
        "shopify": entry,
        "fulfiller": "amazon_mcf" if amazon else None,
        "amazon_mcf": amazon,
        "shipbob": None,
    }


def gql(
    server, query: str, variables: dict | None = None, *, version: str = "2026-07", token: str | None = TOKEN
) -> httpx.Response:
    headers = {"X-Shopify-Access-Token": token} if token is not None else {}
    return httpx.post(
        f"{server.urls['shopify']}/admin/api/{version}/graphql.json",
        json={"query": query, "variables": variables or {}},
        headers=headers,
        timeout=30,
    )


def data(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def names(server, query: str) -> set[str]:
    body = data(gql(server, "query($q: String) { orders(first: 250, query: $q) { nodes { name } } }", {"q": query}))
    return {n["name"] for n in body["orders"]["nodes"]}


def writes(server) -> list[dict]:
    return httpx.get(f"{server.urls['shopify']}/_sandbox/writes", params={"platform": "shopify"}).json()


CANCEL_2025_10 = """
mutation Cancel($id: ID!, $refund: OrderCancelRefundMethodInput, $note: String) {
  orderCancel(orderId: $id, reason: CUSTOMER, refundMethod: $refund, restock: true, staffNote: $note) {
    job { id done }
    orderCancelUserErrors { field message code }
    userErrors { field message }
  }
}"""


# -- auth and versions --------------------------------------------------------------------------


def test_missing_or_wrong_token_is_401_and_refused_writes_are_logged(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    for token in (None, "shpat_wrong"):
        response = gql(server, "{ shop { name } }", token=token)
        assert response.status_code == 401
        assert response.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }
    refused = gql(server, CANCEL_2025_10, {"id": gid(1)}, token="shpat_wrong")
    assert refused.status_code == 401
    log = writes(server)
    assert [(w["operation"], w["status"], w["outcome"]) for w in log] == [("orderCancel", 401, "UNAUTHORIZED")]
    assert server.sandbox.platforms["shopify"].orders[6100000001].cancel_job is None


def served(server, version: str) -> str:
    response = gql(server, "{ shop { myshopifyDomain } }", version=version)
    assert data(response)["shop"]["myshopifyDomain"] == DEFAULT_CREDENTIALS["shop_domain"]
    return response.headers["X-Shopify-API-Version"]


def test_versions_are_served_for_12_months_then_fall_forward_unknown_ones_are_404(run_sandbox):
    # a frozen clock: the window's edges are checked to the second
    server = run_sandbox({"now": NOW, "orders": []}, platforms=("shopify",), settings=Settings(clock_rate=0))
    # 2026-11-20: 2026-01 (released 2026-01-01) is the oldest inside its 12 months
    for version in ("2026-01", "2026-04", "2026-07", "2026-10", "unstable"):
        assert served(server, version) == version
    for version in ("2025-10", "2025-04", "2025-01", "2024-04"):
        assert served(server, version) == "2026-01", version
    for version in ("2027-01", "2025-05", "latest", "2025-1"):
        response = gql(server, "{ shop { name } }", version=version)
        assert response.status_code == 404, version
        assert response.json() == {"errors": "Not Found"}
    # the window follows the scenario clock, to the second
    set_day(server, "2025-12-31T23:59:59Z")
    assert (served(server, "2025-01"), served(server, "2024-10")) == ("2025-01", "2025-01")
    set_day(server, "2026-01-01T00:00:00Z")
    assert (served(server, "2025-01"), served(server, "2025-04")) == ("2025-04", "2025-04")
    set_day(server, "2027-10-01T00:00:00Z")  # past every version modelled: the newest serves
    assert (served(server, "2026-07"), served(server, "2026-10")) == ("2026-10", "2026-10")


def test_release_and_end_of_support_dates():
    assert [(released(v), end_of_support(v)) for v in ("2025-10", "2026-01", "2026-10")] == [
        (date(2025, 10, 1), date(2026, 10, 1)),
        (date(2026, 1, 1), date(2027, 1, 1)),
        (date(2026, 10, 1), date(2027, 10, 1)),
    ]


def test_order_cancel_arguments_follow_the_api_version(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1), scenario_order(2)]}, platforms=("shopify",))
    set_day(server, "2025-05-15T12:00:00Z")  # while 2025-01 and 2025-04 were served as asked
    # 2025-01 knows only `refund: Boolean!`
    old = gql(server, CANCEL_2025_10, {"id": gid(1)}, version="2025-01").json()
    assert "data" not in old
    assert {e["extensions"]["code"] for e in old["errors"]} >= {"argumentNotAccepted"}
    missing = gql(
        server,
        'mutation { orderCancel(orderId: "%s", reason: CUSTOMER, restock: true) { job { id } } }' % gid(1),
        version="2025-04",
    ).json()
    assert missing["errors"][0]["extensions"]["code"] == "missingRequiredArguments"
    assert missing["errors"][0]["message"] == "Field 'orderCancel' is missing required arguments: refund"
    ok = data(
        gql(
            server,
            'mutation { orderCancel(orderId: "%s", reason: STAFF, refund: false, restock: true) '
            "{ job { id done } orderCancelUserErrors { code } } }" % gid(1),
            version="2025-04",
        )
    )
    assert ok["orderCancel"]["job"]["done"] is False
    # from 2025-07 both exist, but only one may be used
    both = data(
        gql(
            server,
            'mutation { orderCancel(orderId: "%s", reason: CUSTOMER, refund: true, '
            "refundMethod: {originalPaymentMethodsRefund: true}, restock: true) "
            "{ job { id } orderCancelUserErrors { field message code } } }" % gid(2),
        )
    )
    assert both["orderCancel"] == {
        "job": None,
        "orderCancelUserErrors": [
            {
                "field": ["refund"],
                "message": "Only one of the arguments `refund` or `refund_method` is allowed.",
                "code": "INVALID",
            }
        ],
    }


# -- search ------------------------------------------------------------------------------------


def search_scenario() -> dict:
    orders = [
        scenario_order(
            1,
            created="2026-11-01T10:00:00Z",
            shopify={
                "id": 6100000001,
                "name": "#1001",
                "tiktok_id_in": "source_identifier",
                "cancelled": False,
                "tags": ["TikTok", "VIP"],
                "created_at": "2026-11-01T11:00:00Z",
            },
        ),
        scenario_order(
            2,
            created="2026-11-10T10:00:00Z",
            shopify={
                "id": 6100000002,
                "name": "#1002",
                "tiktok_id_in": "custom_attribute",
                "cancelled": True,
                "tags": ["TikTok", "Gift wrap"],
                "created_at": "2026-11-10T11:00:00Z",
            },
        ),
        scenario_order(
            3,
            created="2026-11-15T10:00:00Z",
            sku="OSL-MUG",
            shopify={
                "id": 6100000003,
                "name": "#1003",
                "tiktok_id_in": "note",
                "cancelled": False,
                "source_name": "web",
                "tags": ["Wholesale"],
                "created_at": "2026-11-15T11:00:00Z",
            },
        ),
        scenario_order(
            4,
            created="2026-11-19T10:00:00Z",
            shopify={
                "id": 6100000004,
                "name": "#1004",
                "tiktok_id_in": "name",
                "cancelled": False,
                "created_at": "2026-11-19T11:00:00Z",
                "financial_status": "AUTHORIZED",
            },
        ),
    ]
    return {"now": NOW, "orders": orders}


@pytest.mark.parametrize(
    "query,expected",
    [
        ("source_identifier:576000000000000001", {"#1001"}),
        ("name:1002", {"#1002"}),
        ("name:#1002", {"#1002"}),
        ("name:576000000000000004", {"#576000000000000004"}),
        ("name:>=1002", {"#1002", "#1003", "#576000000000000004"}),
        ("name:<1003", {"#1001", "#1002"}),
        ("tag:vip", {"#1001"}),
        ("tag:'Gift wrap'", {"#1002"}),
        ("tag_not:TikTok", {"#1003"}),
        ("source_name:web", {"#1003"}),
        ("source_name:tiktok", {"#1001", "#1002", "#576000000000000004"}),
        ("status:cancelled", {"#1002"}),
        ("status:open", {"#1001", "#1003", "#576000000000000004"}),
        ("status:not_closed", {"#1001", "#1003", "#576000000000000004"}),
        ("status:closed", {"#1002"}),
        ("id:6100000003", {"#1003"}),
        ("id:>=6100000003", {"#1003", "#576000000000000004"}),
        ("created_at:>=2026-11-10", {"#1002", "#1003", "#576000000000000004"}),
        ("created_at:<2026-11-10", {"#1001"}),
        ("created_at:2026-11-15", {"#1003"}),
        ("created_at:<='2026-11-15T11:00:00Z'", {"#1001", "#1002", "#1003"}),
        ("created_at:>'2026-11-15T11:00:00Z'", {"#576000000000000004"}),
        ("created_at:<now", {"#1001", "#1002", "#1003", "#576000000000000004"}),
        (
            "updated_at:>='2026-11-15T00:00:00Z' AND updated_at:<'2026-11-20T00:00:00Z'",
            {"#1003", "#576000000000000004"},
        ),
        ("processed_at:<2026-11-10T10:00:01Z", {"#1001", "#1002"}),
        ("financial_status:authorized", {"#576000000000000004"}),
        ("financial_status:refunded", {"#1002"}),
        ("sku:OSL-MUG", {"#1003"}),
        # combinators: implied AND, AND, OR, NOT, '-', grouping, comma lists
        ("tag:TikTok status:open", {"#1001", "#576000000000000004"}),
        ("tag:TikTok AND status:open", {"#1001", "#576000000000000004"}),
        ("name:1001 OR name:1003", {"#1001", "#1003"}),
        ("tag:TikTok -status:cancelled", {"#1001", "#576000000000000004"}),
        ("tag:TikTok NOT tag:VIP", {"#1002", "#576000000000000004"}),
        ("-(name:1001 OR name:1002)", {"#1003", "#576000000000000004"}),
        ("(name:1001 OR name:1003) AND source_name:web", {"#1003"}),
        ("name:1001 OR name:1003 AND source_name:web", {"#1001", "#1003"}),
        ("name:1001,1004,1003", {"#1001", "#1003"}),
        ("source_identifier:*", {"#1001"}),
        ("name:100*", {"#1001", "#1002", "#1003"}),
        # free text: names, tags and SKUs, never note or attributes
        ("1003", {"#1003"}),
        ("wholesale", {"#1003"}),
        ('"gift wrap"', {"#1002"}),
        ("576000000000000003", set()),
        ("576000000000000002", set()),
        ("", {"#1001", "#1002", "#1003", "#576000000000000004"}),
    ],
)
def test_search_filters_and_combinators(run_sandbox, query, expected):
    server = run_sandbox(search_scenario(), platforms=("shopify",))
    assert names(server, query) == expected


def test_unknown_search_field_is_dropped_with_a_warning(run_sandbox):
    server = run_sandbox(search_scenario(), platforms=("shopify",))
    body = gql(server, '{ orders(first: 10, query: "staff_member:Kat name:1003") { nodes { name } } }').json()
    assert [n["name"] for n in body["data"]["orders"]["nodes"]] == ["#1003"]
    assert body["extensions"]["search"] == [
        {
            "path": ["orders"],
            "query": "staff_member:Kat name:1003",
            "parsed": {"and": [{"field": "staff_member", "match_all": "Kat"}, {"field": "name", "match_all": "1003"}]},
            "warnings": [
                {"field": "staff_member", "message": "Invalid search field for this query.", "code": "invalid_field"}
            ],
        }
    ]
    # a query made only of unknown fields matches everything, as the real index does
    assert len(names(server, "note:576000000000000003")) == 4
    # a search without problems carries no search extension
    assert "search" not in gql(server, '{ orders(first: 1, query: "name:1003") { nodes { id } } }').json()["extensions"]


# -- TikTok id placement ------------------------------------------------------------------------


def test_tiktok_id_is_found_where_the_scenario_put_it(run_sandbox):
    ambiguous = [
        {"id": 6100000005, "name": "#1005", "tiktok_id_in": "source_identifier", "cancelled": False},
        {"id": 6100000006, "name": "#1005-R", "tiktok_id_in": "source_identifier", "cancelled": False},
    ]
    scenario = {
        "now": NOW,
        "orders": [
            scenario_order(1, place="source_identifier"),
            scenario_order(2, place="custom_attribute"),
            scenario_order(3, place="note"),
            scenario_order(4, place="name"),
            scenario_order(5, shopify=ambiguous),
            scenario_order(7, shopify=[]),
        ],
    }
    server = run_sandbox(scenario, platforms=("shopify",))
    fields = "nodes { id name sourceName sourceIdentifier note customAttributes { key value } }"
    by_source = data(
        gql(server, '{ orders(first: 5, query: "source_identifier:%s") { %s } }' % (tiktok_id(1), fields))
    )["orders"]["nodes"]
    assert [(o["id"], o["sourceIdentifier"]) for o in by_source] == [(gid(1), tiktok_id(1))]
    every = data(gql(server, "{ orders(first: 50) { %s } }" % fields))["orders"]["nodes"]
    by_attribute = [o for o in every if {"key": TIKTOK_ATTRIBUTE_KEY, "value": tiktok_id(2)} in o["customAttributes"]]
    assert [o["id"] for o in by_attribute] == [gid(2)]
    assert by_attribute[0]["sourceIdentifier"] is None and by_attribute[0]["note"] is None
    by_note = [o for o in every if o["note"] and TIKTOK_NOTE_PREFIX + tiktok_id(3) in o["note"]]
    assert [o["id"] for o in by_note] == [gid(3)]
    by_name = data(gql(server, '{ orders(first: 5, query: "name:%s") { nodes { id name } } }' % tiktok_id(4)))
    assert by_name["orders"]["nodes"] == [{"id": gid(4), "name": f"#{tiktok_id(4)}"}]
    both = data(
        gql(server, '{ orders(first: 5, query: "source_identifier:%s") { nodes { id name } } }' % tiktok_id(5))
    )["orders"]["nodes"]
    assert [o["name"] for o in both] == ["#1005", "#1005-R"]
    assert (
        data(gql(server, '{ orders(first: 5, query: "source_identifier:%s") { nodes { id } } }' % tiktok_id(7)))[
            "orders"
        ]["nodes"]
        == []
    )


# -- paging -------------------------------------------------------------------------------------


def test_paging_1000_orders_is_complete_and_stable(run_sandbox):
    orders = [scenario_order(i, created=f"2026-11-{1 + i % 19:02d}T{i % 24:02d}:00:00Z") for i in range(1, 1001)]
    # rate_scale 10: a bucket of 20,000 points, so the walks below are not throttled
    server = run_sandbox({"now": NOW, "orders": orders}, platforms=("shopify",), settings=Settings(rate_scale=10))
    page_query = """query($after: String, $sort: OrderSortKeys, $reverse: Boolean) {
      orders(first: 250, after: $after, sortKey: $sort, reverse: $reverse) {
        edges { cursor node { id createdAt } } pageInfo { hasNextPage hasPreviousPage endCursor } } }"""

    def walk(sort: str, reverse: bool) -> tuple[list[str], list[str]]:
        ids, cursors, after, pages = [], [], None, 0
        while True:
            body = data(gql(server, page_query, {"after": after, "sort": sort, "reverse": reverse}))["orders"]
            pages += 1
            assert body["pageInfo"]["hasPreviousPage"] is (after is not None)
            ids += [e["node"]["id"] for e in body["edges"]]
            cursors += [e["cursor"] for e in body["edges"]]
            if not body["pageInfo"]["hasNextPage"]:
                break
            after = body["pageInfo"]["endCursor"]
        assert pages == 4
        return ids, cursors

    ids, cursors = walk("ID", False)
    assert ids == [gid(i) for i in range(1, 1001)]
    assert walk("ID", False) == (ids, cursors)  # same cursors every time
    assert json.loads(base64.b64decode(cursors[0])) == {"last_id": 6100000001, "last_value": 6100000001}
    by_created, _ = walk("CREATED_AT", True)
    assert sorted(by_created) == sorted(ids) and len(set(by_created)) == 1000
    # a page boundary does not move when an earlier order changes
    first = data(gql(server, page_query, {"sort": "UPDATED_AT"}))["orders"]
    boundary = first["pageInfo"]["endCursor"]
    expected_next = data(gql(server, page_query, {"after": boundary, "sort": "UPDATED_AT"}))["orders"]["edges"]
    data(
        gql(
            server,
            'mutation { tagsAdd(id: "%s", tags: ["touched"]) { userErrors { message } } }'
            % first["edges"][0]["node"]["id"],
        )
    )
    after_edit = data(gql(server, page_query, {"after": boundary, "sort": "UPDATED_AT"}))["orders"]["edges"]
    assert [e["node"]["id"] for e in after_edit] == [e["node"]["id"] for e in expected_next]
    # backwards with last/before returns the previous window
    back = data(
        gql(
            server,
            "query($before: String) { orders(last: 3, before: $before, sortKey: ID) { nodes { id } "
            "pageInfo { hasPreviousPage hasNextPage } } }",
            {"before": cursors[250]},
        )
    )["orders"]
    assert [n["id"] for n in back["nodes"]] == ids[247:250]
    assert back["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": True}


def test_page_size_and_cursor_errors(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    no_size = gql(server, "{ orders { nodes { id } } }").json()
    assert no_size["data"] is None
    assert no_size["errors"][0]["message"] == "you must provide one of first or last"
    assert no_size["errors"][0]["path"] == ["orders"]
    too_big = gql(server, "{ orders(first: 251) { nodes { id } } }").json()
    assert too_big["data"] is None and too_big["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    bad_cursor = gql(server, '{ orders(first: 5, after: "not-a-cursor") { nodes { id } } }').json()
    assert bad_cursor["errors"][0]["message"] == "Invalid cursor for current pagination sort."


# -- orderCancel ---------------------------------------------------------------------------------


def test_order_cancel_runs_as_a_job_then_refuses_a_second_cancel(run_sandbox):
    # the clock stands still: the cancel is stamped NOW however long the machine takes to get there
    server = run_sandbox(
        {"now": NOW, "orders": [scenario_order(1), scenario_order(2)]},
        platforms=("shopify",),
        settings=Settings(clock_rate=0),
    )
    read = (
        "query($id: ID!) { order(id: $id) { cancelledAt cancelReason closed closedAt displayFinancialStatus "
        "cancellation { staffNote } } }"
    )
    started = data(
        gql(
            server,
            CANCEL_2025_10,
            {"id": gid(1), "refund": {"originalPaymentMethodsRefund": True}, "note": "buyer asked"},
        )
    )["orderCancel"]
    assert started["orderCancelUserErrors"] == [] and started["userErrors"] == []
    job = started["job"]
    assert job["done"] is False and job["id"].startswith("gid://shopify/Job/")
    before = data(gql(server, read, {"id": gid(1)}))["order"]
    assert before["cancelledAt"] is None and before["displayFinancialStatus"] == "PAID"
    # a second cancel while the job runs is refused too
    again = data(gql(server, CANCEL_2025_10, {"id": gid(1)}))["orderCancel"]
    assert again["job"] is None and again["orderCancelUserErrors"][0]["code"] == "INVALID"
    polls = [
        data(gql(server, "query($id: ID!) { job(id: $id) { id done } }", {"id": job["id"]}))["job"]["done"]
        for _ in range(2)
    ]
    assert polls == [False, True]
    after = data(gql(server, read, {"id": gid(1)}))["order"]
    assert after == {
        "cancelledAt": NOW,
        "cancelReason": "CUSTOMER",
        "closed": True,
        "closedAt": NOW,
        "displayFinancialStatus": "REFUNDED",
        "cancellation": {"staffNote": "buyer asked"},
    }
    done = data(gql(server, CANCEL_2025_10, {"id": gid(1)}))["orderCancel"]
    assert done == {
        "job": None,
        "orderCancelUserErrors": [
            {
                "field": ["orderId"],
                "message": "Cannot cancel an order that has already been canceled",
                "code": "INVALID",
            }
        ],
        "userErrors": [{"field": ["orderId"], "message": "Cannot cancel an order that has already been canceled"}],
    }
    # without a refund the payment stays captured; the job also finishes on its own as time passes
    data(gql(server, CANCEL_2025_10, {"id": gid(2), "refund": {"originalPaymentMethodsRefund": False}}))
    httpx.post(f"{server.urls['shopify']}/_sandbox/clock", json={"advance_seconds": 6})
    assert data(gql(server, read, {"id": gid(2)}))["order"]["displayFinancialStatus"] == "PAID"
    assert data(gql(server, read, {"id": gid(2)}))["order"]["closed"] is True
    log = [(w["operation"], w["outcome"]) for w in writes(server)]
    assert log == [("orderCancel", "ok"), ("orderCancel", "INVALID"), ("orderCancel", "INVALID"), ("orderCancel", "ok")]
    state = httpx.get(f"{server.urls['shopify']}/_sandbox/state/shopify").json()
    assert [(j["order_id"], j["done"], j["refund"]) for j in state["jobs"]] == [
        (gid(1), True, "original"),
        (gid(2), True, "none"),
    ]
    assert {o["id"]: o["cancel_reason"] for o in state["orders"]} == {gid(1): "CUSTOMER", gid(2): "CUSTOMER"}


def test_order_cancel_refusals(run_sandbox):
    shipped = {
        "seller_fulfillment_order_id": "1003",
        "status": "Complete",
        "shipments": [
            {
                "status": "SHIPPED",
                "packages": [{"package_number": 1, "carrier_code": "UPS", "tracking_number": "1Z999AA10123456784"}],
            }
        ],
    }
    server = run_sandbox(
        {"now": NOW, "orders": [scenario_order(1), scenario_order(3, amazon=shipped)]}, platforms=("shopify",)
    )
    fulfilled = data(
        gql(
            server,
            'query { order(id: "%s") { displayFulfillmentStatus fulfillments(first: 5) '
            "{ status trackingInfo(first: 5) { company number } } } }" % gid(3),
        )
    )["order"]
    assert fulfilled == {
        "displayFulfillmentStatus": "FULFILLED",
        "fulfillments": [{"status": "SUCCESS", "trackingInfo": [{"company": "UPS", "number": "1Z999AA10123456784"}]}],
    }
    errors = {}
    for label, variables in {
        "fulfilled": {"id": gid(3)},
        "missing": {"id": "gid://shopify/Order/1"},
        "note": {"id": gid(1), "note": "x" * 256},
    }.items():
        errors[label] = data(gql(server, CANCEL_2025_10, variables))["orderCancel"]["orderCancelUserErrors"]
    assert errors["fulfilled"][0]["code"] == "INVALID"
    assert errors["missing"] == [{"field": ["orderId"], "message": "Order does not exist", "code": "NOT_FOUND"}]
    assert errors["note"] == [
        {
            "field": ["staffNote"],
            "code": "INVALID",
            "message": "Staff note is too long. Maximum length is 255 characters.",
        }
    ]
    malformed = gql(server, CANCEL_2025_10, {"id": "6100000001"}).json()
    assert malformed["data"]["orderCancel"] is None
    assert malformed["errors"][0]["message"] == "Invalid global id '6100000001'"
    assert [w["outcome"] for w in writes(server)] == ["INVALID", "NOT_FOUND", "INVALID", "argumentLiteralsIncompatible"]


# -- note and tags -----------------------------------------------------------------------------


def test_order_update_note_and_tags(run_sandbox):
    # the shop's clock stands still: updatedAt is the scenario's now, however long the first query takes
    server = run_sandbox(
        {"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",), settings=Settings(clock_rate=0)
    )
    updated = data(
        gql(
            server,
            """mutation($input: OrderInput!) { orderUpdate(input: $input) {
        order { id note tags updatedAt } userErrors { field message } } }""",
            {"input": {"id": gid(1), "note": "Shipping, no tracking ID yet", "tags": ["TikTok", "late"]}},
        )
    )
    assert updated["orderUpdate"] == {
        "order": {"id": gid(1), "note": "Shipping, no tracking ID yet", "tags": ["TikTok", "late"], "updatedAt": NOW},
        "userErrors": [],
    }
    added = data(
        gql(
            server,
            """mutation($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) {
        node { id ... on Order { tags } } userErrors { field message } } }""",
            {"id": gid(1), "tags": ["LATE", "no-tracking-yet, orderops"]},
        )
    )
    # tags are case-insensitively unique and a comma separates tags
    assert added["tagsAdd"] == {
        "node": {"id": gid(1), "tags": ["TikTok", "late", "no-tracking-yet", "orderops"]},
        "userErrors": [],
    }
    removed = data(
        gql(
            server,
            'mutation { tagsRemove(id: "%s", tags: ["late"]) { node { ... on Order { tags } } '
            "userErrors { message } } }" % gid(1),
        )
    )
    assert removed["tagsRemove"]["node"]["tags"] == ["TikTok", "no-tracking-yet", "orderops"]
    missing = data(
        gql(
            server,
            'mutation { tagsAdd(id: "gid://shopify/Order/42", tags: ["x"]) '
            "{ node { id } userErrors { field message } } }",
        )
    )
    assert missing["tagsAdd"] == {"node": None, "userErrors": [{"field": ["id"], "message": "Order does not exist"}]}
    assert [(w["operation"], w["outcome"]) for w in writes(server)] == [
        ("orderUpdate", "ok"),
        ("tagsAdd", "ok"),
        ("tagsRemove", "ok"),
        ("tagsAdd", "NOT_FOUND"),
    ]
    assert names(server, "tag:orderops") == {"#1001"}


# -- cost and throttling -------------------------------------------------------------------------


def test_cost_extensions_use_the_documented_default_quota(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1), scenario_order(2)]}, platforms=("shopify",))
    body = gql(server, "{ orders(first: 50) { edges { node { id name channelInformation { app { title } } } } } }")
    body = body.json()
    cost = body["extensions"]["cost"]
    # 2 for the connection + 50 x (order 1 + channelInformation 1 + app 1); 2 returned: 2 + 2 x 3
    assert cost["requestedQueryCost"] == 152 and cost["actualQueryCost"] == 8
    assert cost["throttleStatus"]["maximumAvailable"] == 2000.0
    assert cost["throttleStatus"]["restoreRate"] == 100.0
    assert 1990 <= cost["throttleStatus"]["currentlyAvailable"] <= 2000
    assert gql(server, "{ shop { name } }").json()["extensions"]["cost"]["requestedQueryCost"] == 1
    mutation = gql(server, 'mutation { tagsAdd(id: "%s", tags: ["a"]) { userErrors { message } } }' % gid(1)).json()
    assert mutation["extensions"]["cost"]["requestedQueryCost"] == 10
    heavy = gql(server, "{ orders(first: 250) { nodes { id lineItems(first: 5) { nodes { sku } } } } }").json()
    assert "data" not in heavy
    assert heavy["errors"][0]["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 2002, "maxCost": 1000}
    assert heavy["errors"][0]["message"].startswith(
        "Query cost is 2002, which exceeds the single query max cost limit (1000)."
    )


def test_rate_scale_scales_the_bucket(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": []}, platforms=("shopify",), settings=Settings(rate_scale=0.5))
    status = gql(server, "{ shop { name } }").json()["extensions"]["cost"]["throttleStatus"]
    assert status["maximumAvailable"] == 1000.0 and status["restoreRate"] == 50.0


def test_throttled_then_recovers(run_sandbox):
    settings = Settings(platforms={"shopify": {"maximum_available": 120, "restore_rate": 100}})
    orders = [scenario_order(i) for i in range(1, 61)]
    server = run_sandbox({"now": NOW, "orders": orders}, platforms=("shopify",), settings=settings)
    # the bucket's clock only moves when the test moves it: a slow machine refills nothing in between
    seconds = [0.0]
    bucket = server.sandbox.platforms["shopify"].bucket
    bucket.clock, bucket.stamp, bucket.tokens = (lambda: seconds[0]), 0.0, bucket.burst
    query = "{ orders(first: 50) { nodes { id } } }"  # requests 52 and, with 60 orders, costs 52
    statuses = []
    for _ in range(3):
        body = gql(server, query).json()
        statuses.append(body.get("errors", [{}])[0].get("extensions", {}).get("code", "ok"))
    assert statuses == ["ok", "ok", "THROTTLED"]
    assert body["errors"][0]["message"] == "Throttled"
    assert "data" not in body
    assert body["extensions"]["cost"]["requestedQueryCost"] == 52
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    available = body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
    assert available < 52
    # a throttled mutation (8 fields x 10 points) is refused, and each field is logged as refused
    fields = " ".join(f'm{k}: tagsAdd(id: "{gid(1)}", tags: ["t{k}"]) {{ userErrors {{ message }} }}' for k in range(8))
    refused = gql(server, "mutation { %s }" % fields).json()
    assert refused["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert refused["extensions"]["cost"]["requestedQueryCost"] == 80
    assert [(w["operation"], w["outcome"]) for w in writes(server)] == [("tagsAdd", "THROTTLED")] * 8
    assert server.sandbox.platforms["shopify"].orders[6100000001].tags == ["TikTok"]
    seconds[0] += (52 - available) / 100 + 0.05
    assert "errors" not in gql(server, query).json()
    calls = httpx.get(f"{server.urls['shopify']}/_sandbox/calls").json()
    assert {"platform": "shopify", "operation": "query orders", "count": 1} in calls["throttled"]


def test_injected_faults_throttle_error_and_token_expiry(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    base = server.urls["shopify"]
    httpx.post(f"{base}/_sandbox/faults", json={"platform": "shopify", "kind": "429"})
    throttled = gql(server, "{ shop { name } }")
    assert throttled.status_code == 429 and float(throttled.headers["Retry-After"]) > 0
    assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    httpx.post(f"{base}/_sandbox/faults", json={"platform": "shopify", "kind": "5xx", "status": 502})
    failed = gql(server, "{ shop { name } }")
    assert failed.status_code == 502
    assert failed.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    httpx.post(f"{base}/_sandbox/faults", json={"platform": "shopify", "kind": "token_expiry"})
    assert gql(server, "{ shop { name } }").status_code == 401
    assert gql(server, "{ shop { name } }").status_code == 401  # the old token stays dead
    bad = httpx.post(
        f"{base}/admin/oauth/access_token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
    )
    assert bad.status_code == 401
    grant = httpx.post(
        f"{base}/admin/oauth/access_token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEFAULT_CREDENTIALS["client_id"],
            "client_secret": DEFAULT_CREDENTIALS["client_secret"],
        },
    ).json()
    assert grant["expires_in"] == 86399 and "read_orders" in grant["scope"].split(",")
    assert data(gql(server, "{ shop { name } }", token=grant["access_token"]))["shop"]["name"]
    assert all(w["body"].get("client_secret") in (None, "***") for w in writes(server))


# -- GraphQL errors ------------------------------------------------------------------------------


def test_syntax_and_validation_errors_in_shopify_shape(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    syntax = gql(server, "query Broken {\n  shop {\n    id\n").json()
    assert syntax == {
        "errors": [
            {
                "message": "syntax error, Expected Name, found <EOF> at [4, 1]",
                "locations": [{"line": 4, "column": 1}],
                "extensions": {"code": "PARSE_ERROR"},
            }
        ]
    }
    unknown = gql(server, "query Find { orders(first: 1) { nodes { id definitelyNotAnOrderField } } }").json()
    assert unknown == {
        "errors": [
            {
                "message": "Field 'definitelyNotAnOrderField' doesn't exist on type 'Order'",
                "locations": [{"line": 1, "column": 44}],
                "path": ["query Find", "orders", "nodes", "definitelyNotAnOrderField"],
                "extensions": {"code": "undefinedField", "typeName": "Order", "fieldName": "definitelyNotAnOrderField"},
            }
        ]
    }
    missing_arg = gql(server, "{ order { id } }").json()["errors"][0]
    assert missing_arg["message"] == "Field 'order' is missing required arguments: id"
    bad_arg = gql(server, "{ orders(first: 1, bogus: 2) { nodes { id } } }").json()["errors"][0]
    assert bad_arg["extensions"]["code"] == "argumentNotAccepted"
    bad_enum = gql(
        server, 'mutation { orderCancel(orderId: "%s", reason: BORED, restock: true) { job { id } } }' % gid(1)
    ).json()
    assert bad_enum == {
        "errors": [
            {
                "message": "Argument 'reason' on Field 'orderCancel' has an invalid value (BORED). "
                "Expected type 'OrderCancelReason!'.",
                "locations": [{"line": 1, "column": 75}],
                "path": ["mutation", "orderCancel", "reason"],
                "extensions": {"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": "reason"},
            }
        ]
    }
    no_var = gql(server, "query($id: ID!) { order(id: $id) { id } }").json()
    assert no_var["errors"][0]["message"] == "Variable $id of type ID! was provided invalid value"
    assert no_var["errors"][0]["extensions"]["problems"] == [
        {"path": [], "explanation": "Expected value to not be null"}
    ]
    empty = httpx.post(
        f"{server.urls['shopify']}/admin/api/2026-07/graphql.json",
        json={"variables": {}},
        headers={"X-Shopify-Access-Token": TOKEN},
    )
    assert empty.status_code == 400
    assert empty.json() == {"errors": {"query": "Required parameter missing or invalid"}}
    raw = httpx.post(
        f"{server.urls['shopify']}/admin/api/2026-07/graphql.json",
        content="{ shop { name } }",
        headers={"X-Shopify-Access-Token": TOKEN, "Content-Type": "application/graphql"},
    )
    assert raw.json()["data"]["shop"]["name"]
    assert [w["outcome"] for w in writes(server)] == ["argumentLiteralsIncompatible"]


def test_every_validation_error_speaks_shopify_without_suggestions(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    near = gql(server, 'query Find { order(id: "%s") { nam } }' % gid(1)).json()[
        "errors"
    ]  # graphql-core: "Did you mean"
    assert near == [
        {
            "message": "Field 'nam' doesn't exist on type 'Order'",
            "locations": [{"line": 1, "column": 60}],
            "path": ["query Find", "order", "nam"],
            "extensions": {"code": "undefinedField", "typeName": "Order", "fieldName": "nam"},
        }
    ]
    cases = {
        "{ orders(frist: 1) { nodes { id } } }": (
            "argumentNotAccepted",
            "Field 'orders' doesn't accept argument 'frist'",
        ),
        "query Q { order(id: $id) { id } }": ("variableNotDefined", "Variable $id is used by Q but not declared"),
        "{ shop @skipp(if: true) { name } }": ("undefinedDirective", "Directive @skipp is not defined"),
        "query Q($n: String) { orders(first: $n) { nodes { id } } }": (
            "variableMismatch",
            "Type mismatch on variable $n and argument first (String / Int)",
        ),
        "query A { shop { name } } query A { shop { id } }": ("GRAPHQL_VALIDATION_FAILED", None),
    }
    for query, (code, message) in cases.items():
        errors = gql(server, query).json()["errors"]
        assert errors and all("Did you mean" not in e["message"] and e["extensions"]["code"] for e in errors), errors
        assert errors[0]["extensions"]["code"] == code, (query, errors)
        if message:
            assert errors[0]["message"] == message
    enum_variable = gql(
        server, "query($r: OrderSortKeys) { orders(first: 1, sortKey: $r) { nodes { id } } }", {"r": "CREATED_ATT"}
    ).json()["errors"][0]
    assert enum_variable["extensions"]["code"] == "INVALID_VARIABLE"
    assert "Did you mean" not in enum_variable["extensions"]["problems"][0]["explanation"]


# -- Shopify's own schema -----------------------------------------------------------------------


def test_the_schema_served_is_shopifys_own(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    fields = {f["name"] for f in data(gql(server, '{ __type(name: "Order") { fields { name } } }'))["__type"]["fields"]}
    assert (
        len(fields) >= 120
        and {
            "fulfillmentOrders",
            "totalPriceSet",
            "refunds",
            "transactions",
            "events",
            "shippingAddress",
            "billingAddress",
            "currentTotalPriceSet",
        }
        <= fields
    )
    with gzip.open(ADMIN_SCHEMA_PATH) as f:
        published = {t["name"] for t in json.load(f)["data"]["__schema"]["types"]}
    set_day(server, "2025-03-01T00:00:00Z")  # while 2025-01 was served as asked
    served = {
        t["name"] for t in data(gql(server, "{ __schema { types { name } } }", version="2025-01"))["__schema"]["types"]
    }
    assert served == published and len(served) > 2000


def test_fields_the_simulator_does_not_model_answer_in_their_documented_shape(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    order = data(
        gql(
            server,
            """query($id: ID!) { order(id: $id) {
        name totalPriceSet { shopMoney { amount currencyCode } }
        fulfillmentOrders(first: 5) { nodes { id status } pageInfo { hasNextPage } }
        refunds { id } transactions { id } shippingAddress { city } events(first: 2) { nodes { id } }
        requiresShipping customer { id } } }""",
            {"id": gid(1)},
        )
    )["order"]
    assert order == {
        "name": "#1001",
        "totalPriceSet": {"shopMoney": {"amount": "0.0", "currencyCode": "USD"}},
        "fulfillmentOrders": {"nodes": [], "pageInfo": {"hasNextPage": False}},
        "refunds": [],
        "transactions": [],
        "shippingAddress": None,
        "events": {"nodes": []},
        "requiresShipping": False,
        "customer": None,
    }


def test_documented_changes_arrive_with_their_version(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    set_day(server, "2025-05-15T12:00:00Z")  # while 2025-01 and 2025-04 were served as asked
    by_identifier = "query($id: ID!) { orderByIdentifier(identifier: {id: $id}) { name } }"
    assert (
        gql(server, by_identifier, {"id": gid(1)}, version="2025-01").json()["errors"][0]["extensions"]["code"]
        == "undefinedField"
    )
    assert data(gql(server, by_identifier, {"id": gid(1)}, version="2025-04"))["orderByIdentifier"] == {"name": "#1001"}

    def cancel_args(version: str) -> dict:
        mutation = data(
            gql(
                server,
                '{ __type(name: "Mutation") { fields { name args(includeDeprecated: true) '
                "{ name isDeprecated type { kind name ofType { name } } } } } }",
                version=version,
            )
        )
        field = next(f for f in mutation["__type"]["fields"] if f["name"] == "orderCancel")
        return {a["name"]: (a["type"]["kind"], a["isDeprecated"]) for a in field["args"]}

    assert cancel_args("2025-04")["refund"] == ("NON_NULL", False) and "refundMethod" not in cancel_args("2025-04")
    assert cancel_args("2025-10")["refund"] == ("SCALAR", True) and cancel_args("2025-10")["refundMethod"] == (
        "INPUT_OBJECT",
        False,
    )


def test_a_filter_value_shopify_does_not_know_is_ignored_not_matched(run_sandbox):
    server = run_sandbox(search_scenario(), platforms=("shopify",))
    body = gql(server, '{ orders(first: 10, query: "status:any") { nodes { name } } }').json()
    assert len(body["data"]["orders"]["nodes"]) == 4
    assert body["extensions"]["search"][0]["warnings"] == [
        {"field": "status", "message": "Invalid value for query filter `status`.", "code": "invalid_value"}
    ]
    assert names(server, "status:any tag:vip") == {"#1001"}
    assert names(server, "financial_status:whatever") == names(server, "")
    assert names(server, "status:open,any") == names(server, "status:open")


def test_calls_are_counted_per_root_field(run_sandbox):
    server = run_sandbox({"now": NOW, "orders": [scenario_order(1)]}, platforms=("shopify",))
    answers = [gql(server, "{ orders(first: 1) { nodes { id } } }").json()]
    gql(server, "query Two { orders(first: 1) { nodes { id } } shop { name } }")
    gql(server, CANCEL_2025_10, {"id": gid(1)})
    answers += [gql(server, "{ orders(first: 1) { nodes { id } } }").json() for _ in range(2)]
    counted = httpx.get(f"{server.urls['shopify']}/_sandbox/calls").json()
    calls = {c["operation"]: c["count"] for c in counted["calls"]}
    assert calls == {"query orders": 3, "query orders,shop": 1, "mutation orderCancel": 1}
    # the points actually charged, per operation, are what the answers reported
    charged = {c["operation"]: c["units"] for c in counted["charged"]}
    assert charged["query orders"] == sum(a["extensions"]["cost"]["actualQueryCost"] for a in answers) > 0
    assert charged["mutation orderCancel"] == 10


def test_node_lookup_and_sixty_day_window(run_sandbox):
    old = scenario_order(2, created="2026-08-01T10:00:00Z")
    scenario = {"now": NOW, "orders": [scenario_order(1), old]}
    server = run_sandbox(scenario, platforms=("shopify",))
    nodes = data(
        gql(
            server,
            "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id ... on Order { name } } }",
            {"ids": [gid(1), gid(2), "gid://shopify/Order/5"]},
        )
    )["nodes"]
    assert nodes == [
        {"__typename": "Order", "id": gid(1), "name": "#1001"},
        {"__typename": "Order", "id": gid(2), "name": "#1002"},
        None,
    ]
    limited = Settings(platforms={"shopify": {"scopes": ["read_orders", "write_orders"]}})
    server = run_sandbox(scenario, platforms=("shopify",), settings=limited)
    assert names(server, "") == {"#1001"}
    assert data(gql(server, 'query { order(id: "%s") { id } }' % gid(2)))["order"] is None
    denied = gql(server, 'mutation { tagsAdd(id: "%s", tags: ["a"]) { userErrors { message } } }' % gid(1))
    assert denied.json()["data"]["tagsAdd"]["userErrors"] == []  # write_orders is granted
    read_only = Settings(platforms={"shopify": {"scopes": ["read_orders"]}})
    server = run_sandbox(scenario, platforms=("shopify",), settings=read_only)
    refused = gql(server, 'mutation { tagsAdd(id: "%s", tags: ["a"]) { userErrors { message } } }' % gid(1)).json()
    assert refused["data"]["tagsAdd"] is None
    assert refused["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
