"""The hooks never send a secret to the wrong host.

A second HTTP server on loopback plays "another host" and records everything it receives. Answers
of the real sandbox are rewritten on their way back (`RewritingTransport`, standing in for a
platform, proxy or attacker that hands out foreign links, which the simulators never do) so that:

- an Amazon report document URL points at the other host (as real presigned URLs do: another
  host, no credentials wanted): it is downloaded there without the access token or any secret;
- a ShipBob Next-Page link points at the other host: refused, nothing is sent there;
- any platform (or token endpoint) answers with a redirect to the other host: not followed.

And over a whole run with token refreshes on three platforms, every request is checked: each
secret travels only to the host (and in the place) it belongs to.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus, urlsplit

import httpx
import pytest

from include.run.pipeline import run_all
from include.run.platforms import Platforms
from include.run.runconfig import run_settings
from orderops_provider.base import PagingError, PlatformError, RetryPolicy
from tests.chaos.harness import (
    NOW,
    POLICY,
    WINDOW,
    RewritingTransport,
    chaos_scenario,
    fresh_warehouse,
    hook_client,
    patched_env,
    platform_secrets,
)

SCENARIO = chaos_scenario()


class OtherHost:
    """A plain HTTP server that records every request; it serves report documents it is told about."""

    def __init__(self):
        self.requests: list[dict] = []
        self.documents: dict[str, str] = {}  # path -> the real document URL it stands in for
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self, body: bytes = b"") -> None:
                owner.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body.decode("latin-1"),
                    }
                )

            def do_GET(self):
                self._record()
                path = urlsplit(self.path).path
                if path in owner.documents:
                    with httpx.stream("GET", owner.documents[path], timeout=10) as real:  # the bytes as stored
                        data = b"".join(real.iter_raw())
                else:
                    data = gzip.compress(b"amazon-order-id\tmerchant-order-id\ttracking-number\n")
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                self._record(self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other():
    host = OtherHost()
    yield host
    host.stop()


def carried(request: dict | httpx.Request, secret: str) -> list[str]:
    """Where in a request a secret travels: url, header <name>, body."""
    if isinstance(request, httpx.Request):
        url, headers, body = str(request.url), dict(request.headers), request.content.decode("latin-1")
    else:
        url, headers, body = request["path"], request["headers"], request["body"]
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}  # as sent in a query or a form

    def has(text):
        return any(form in text for form in forms)

    places = ["url"] if has(url) else []
    places += [f"header {k.lower()}" for k, v in headers.items() if has(v)]
    return places + (["body"] if has(body) else [])


def test_report_document_on_another_host_gets_no_credential(rig, other, tmp_path):
    rig.load(SCENARIO)

    def foreign_document(request: httpx.Request, data):
        if "/documents/" in request.url.path and isinstance(data, dict) and "url" in data:
            path = f"/report-bucket/{data['reportDocumentId']}"
            other.documents[path] = data["url"]
            data["url"] = f"{other.url}{path}?X-Amz-Expires=300&X-Amz-Signature=0123abcd"
            return data
        return None

    transport = RewritingTransport(foreign_document)
    with patched_env(rig.connection_env()), fresh_warehouse("sqlite", tmp_path) as wh:
        settings = run_settings(
            dag_id="orderops_sla", run_id="foreign-document", params={"now": NOW, **WINDOW, "policy": POLICY}
        )
        platforms = Platforms(
            settings, factory=lambda p: hook_client(p, transport=transport) if p == "amazon_mcf" else hook_client(p)
        )
        try:
            summary = run_all(settings, platforms, wh)
        finally:
            platforms.close()
    downloads = [r for r in other.requests if r["path"].startswith("/report-bucket/")]
    assert downloads, "the document was never fetched from the other host"
    assert summary["actions"].get("post_tracking:succeeded", 0) > 0  # tracking came from that document
    for request in other.requests:
        assert {k.lower() for k in request["headers"]} & {"x-amz-access-token", "authorization", "cookie"} == set()
        for name, secret in platform_secrets(rig).items():
            assert not carried(request, secret), f"{name} was sent to the other host"


def test_a_next_page_link_to_another_host_is_not_followed(rig, other):
    rig.load(SCENARIO)

    class ForeignNextPage(RewritingTransport):
        def handle_request(self, request):
            response = super().handle_request(request)
            if request.url.path.endswith("/order"):
                body = response.read()
                headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
                headers["next-page"] = f"{other.url}/2026-01/order?Page=2&Limit=250"
                return httpx.Response(response.status_code, headers=headers, content=body, request=request)
            return response

    with patched_env(rig.connection_env()):
        client = hook_client("shipbob", transport=ForeignNextPage())
        with client, pytest.raises(PagingError, match="another host"):
            list(client.orders(limit=5))
    assert other.requests == []


REDIRECTED = {
    # platform -> (operation to call, path of the request to answer with a redirect)
    "tiktok": (lambda c: list(c.search_orders({"order_status": "AWAITING_SHIPMENT"})), "/orders/search"),
    "tiktok_refresh": (lambda c: c.refresh_access_token(), "/api/v2/token/refresh"),
    "shopify": (lambda c: list(c.orders("")), "/graphql.json"),
    "amazon_mcf": (lambda c: list(c.list_fulfillment_orders()), "/fulfillmentOrders"),
    "amazon_lwa": (lambda c: c.access_token(), "/auth/o2/token"),
    "shipbob": (lambda c: list(c.orders(limit=5)), "/order"),
}


@pytest.mark.parametrize("case", list(REDIRECTED))
def test_a_redirect_to_another_host_is_not_followed(rig, other, case):
    rig.load(SCENARIO)
    call, path = REDIRECTED[case]
    platform = {"tiktok_refresh": "tiktok", "amazon_lwa": "amazon_mcf"}.get(case, case)

    def redirect(request: httpx.Request):
        if request.url.path.endswith(path):
            return httpx.Response(
                307, headers={"location": f"{other.url}{request.url.raw_path.decode()}"}, request=request
            )
        return None

    with patched_env(rig.connection_env()):
        client = hook_client(
            platform, transport=RewritingTransport(respond=redirect), retry=RetryPolicy(max_attempts=2, base=0.01)
        )
        with client, pytest.raises(PlatformError):
            call(client)
    assert other.requests == []


def test_every_secret_goes_only_where_it_belongs(rig, tmp_path):
    """A whole run, with access tokens expiring on TikTok, Shopify and Amazon along the way."""
    rig.load(SCENARIO)
    for platform, path in (("tiktok", "/packages$"), ("shopify", ".*"), ("amazon_mcf", "/cancel$")):
        rig.fault({"platform": platform, "kind": "token_expiry", "path": path, "count": 1})
    transports = {p: RewritingTransport() for p in ("tiktok", "shopify", "amazon_mcf", "shipbob")}
    with patched_env(rig.connection_env()), fresh_warehouse("sqlite", tmp_path) as wh:
        settings = run_settings(
            dag_id="orderops_sla", run_id="where-secrets-go", params={"now": NOW, **WINDOW, "policy": POLICY}
        )
        platforms = Platforms(settings, factory=lambda p: hook_client(p, transport=transports[p]))
        try:
            run_all(settings, platforms, wh)
        finally:
            platforms.close()
    assert all(f["fired"] for f in rig.faults()), "a token expiry never happened"
    host = {name: urlsplit(url).netloc for name, url in rig.urls.items()}
    # secret name prefix -> the (host, place) pairs it may travel to
    allowed = {
        "tiktok app secret": {(host["tiktok_auth"], "url")},
        "tiktok refresh token": {(host["tiktok_auth"], "url")},
        "tiktok access token": {(host["tiktok"], "header x-tts-access-token")},
        "shopify client secret": {(host["shopify"], "body")},
        "shopify access token": {(host["shopify"], "header x-shopify-access-token")},
        "amazon client secret": {(host["amazon_lwa"], "body")},
        "amazon refresh token": {(host["amazon_lwa"], "body")},
        "amazon access token": {(host["amazon_mcf"], "header x-amz-access-token")},
        "shipbob token": {(host["shipbob"], "header authorization")},
    }
    secrets = platform_secrets(rig)
    assert sum(1 for n in secrets if n.startswith("tiktok access token")) >= 2  # the refresh happened
    travelled = set()
    for transport in transports.values():
        for request in transport.requests:
            for name, secret in secrets.items():
                kind = next(k for k in allowed if name.startswith(k))
                for place in carried(request, secret):
                    assert (request.url.netloc.decode(), place) in allowed[kind], (
                        f"{name} sent to {request.url.host}:{request.url.port} in the {place} "
                        f"({request.method} {request.url.path})"
                    )
                    travelled.add(kind)
    # the grants really ran: each secret was used, and only where it belongs
    assert travelled == set(allowed), set(allowed) - travelled
    assert json.dumps(sorted(travelled))
