"""Paths and methods a simulator does not serve are answered in that platform's own error format,
never in the web framework's ({"detail": "Not Found"})."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.test_scenario import DESIGN_EXAMPLE


@pytest.fixture(scope="module")
def server():
    from sandbox.core import Sandbox, Settings
    from sandbox.scenario import parse_scenario
    from sandbox.server import SandboxServer

    sandbox = Sandbox(parse_scenario(DESIGN_EXAMPLE), Settings())
    running = SandboxServer(sandbox, ports={name: 0 for name in sandbox.apps()})
    running.start()
    yield running
    running.stop()


def ask(server, platform: str, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    with httpx.Client(base_url=server.urls[platform], timeout=10) as client:
        return client.request(method, path, headers=headers or {})


def test_shopify_answers_a_plain_404(server):
    for method, path in (("GET", "/admin/api/2026-07/products.json"), ("GET", "/admin/api/2026-07/graphql.json")):
        reply = ask(server, "shopify", method, path)
        assert (reply.status_code, reply.json()) == (404, {"errors": "Not Found"}), path


def test_amazon_sp_api_answers_in_its_envelope(server):
    for method, path in (
        ("GET", "/fba/outbound/2020-07-01/features"),
        ("DELETE", "/fba/outbound/2020-07-01/fulfillmentOrders"),
    ):
        reply = ask(server, "amazon_mcf", method, path, {"x-amz-access-token": "Atza|any"})
        assert reply.status_code == 404 and reply.json()["errors"][0]["code"] == "NotFound", path
        assert reply.headers["x-amzn-RequestId"]


def test_login_with_amazon_answers_an_oauth_error(server):
    reply = ask(server, "amazon_lwa", "GET", "/auth/o2/authorize")
    assert reply.status_code == 404 and reply.json()["error"] == "invalid_request"


def test_shipbob_checks_the_token_before_routing(server):
    assert ask(server, "shipbob", "GET", "/2026-07/product").status_code == 401
    token = sorted(server.sandbox.platforms["shipbob"].active_tokens)[0]
    auth = {"Authorization": f"Bearer {token}"}
    reply = ask(server, "shipbob", "GET", "/2026-07/product", auth)
    assert reply.status_code == 404 and reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["title"] == "Not Found"
    reply = ask(server, "shipbob", "DELETE", "/2026-07/order", auth)
    assert reply.status_code == 405 and reply.json()["status"] == 405


def test_the_admin_api_keeps_its_own_shape(server):
    reply = ask(server, "shopify", "GET", "/_sandbox/nothing-here")
    assert reply.status_code == 404 and "detail" in reply.json()
