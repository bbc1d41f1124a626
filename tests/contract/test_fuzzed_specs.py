"""A short fuzzing run of the Amazon and ShipBob simulators from the platforms' own API files.

Requests are generated from each operation's schema (valid and invalid values alike) and sent
over HTTP to a running sandbox, authorized like a real client; every answer must be no 5xx and
conform to the response the file documents for its status. The operations are the ones orderops
calls and the others of the same resources the simulators serve. Deviations that come from the
files themselves are listed in KNOWN_SPEC_DEFECTS with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from sandbox.amazon_mcf import DEFAULT_CREDENTIALS as AMAZON
from sandbox.core import Settings
from sandbox.generate import generate
from sandbox.shipbob import DEFAULT_CREDENTIALS as SHIPBOB
from tests.contract.test_shipbob import _normalize as normalize_shipbob

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "vendor-specs"
EXAMPLES = 25  # per operation: a short run; raise it locally for a longer one

AMAZON_OPERATIONS = (
    "listAllFulfillmentOrders",
    "getFulfillmentOrder",
    "cancelFulfillmentOrder",
    "getPackageTrackingDetails",
    "createReport",
    "getReport",
    "getReports",
    "cancelReport",
    "getReportDocument",
)
SHIPBOB_OPERATIONS = (
    "GET /2026-01/order",
    "GET /2026-01/order/{orderId}",
    "POST /2026-01/order/{orderId}:cancel",
    "GET /2026-01/order/{orderId}/shipment",
)
KNOWN_SPEC_DEFECTS: dict[str, str] = {}


@pytest.fixture
def sandbox_server(run_sandbox):
    # quotas x1000: the fuzzing is about shapes, not pacing
    return run_sandbox(
        generate(200, seed=3), platforms=("amazon_mcf", "shipbob"), settings=Settings(rate_scale=1000, clock_rate=0)
    )


def fuzz(operation, base_url: str, headers: dict, known: dict | None = None) -> list[str]:
    """Run the operation's generated cases (with the path ids in `known` fixed, when given, so that
    requests reach real records); the failures, one line each."""
    failures: list[str] = []
    sent: list[int] = []

    @given(case=operation.as_strategy(path_parameters=known) if known else operation.as_strategy())
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    def run(case):
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        sent.append(response.status_code)
        try:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
        except (Failure, FailureGroup) as exc:
            found = exc.exceptions if isinstance(exc, FailureGroup) else [exc]
            failures.extend(
                f"{case.method} {case.formatted_path} {case.query or ''} -> {response.status_code}: "
                f"{f.title}: {str(f.message)[:300]} | {response.text[:200]}"
                for f in found
            )

    run()
    # with every parameter fixed there is one request to make; otherwise a real run
    assert len(sent) >= (1 if known else EXAMPLES // 2), f"{operation.label}: only {len(sent)} requests generated"
    return failures


def fuzz_all(found: dict, base_url: str, headers: dict, known: dict) -> tuple[list[str], set[int]]:
    """Each operation fuzzed freely, and again with real ids where it takes some."""
    failures: list[str] = []
    for name, operation in found.items():
        if name in KNOWN_SPEC_DEFECTS:
            continue
        failures += fuzz(operation, base_url, headers)
        ids = {p.name: known[p.name] for p in operation.path_parameters if p.name in known}
        if ids:
            failures += fuzz(operation, base_url, headers, ids)
    return failures


def operations(spec: Path, wanted: tuple[str, ...], base_url: str, key: str, read=json.loads):
    schema = schemathesis.openapi.from_dict(read(spec.read_text()))
    schema.config.update(base_url=base_url)
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        name = operation.definition.raw.get("operationId") if key == "operationId" else operation.label
        if name in wanted:
            found[name] = operation
    assert sorted(found) == sorted(wanted), f"operations missing from {spec.name}"
    return found


def test_amazon_simulator_answers_fuzzed_requests_as_its_models_say(sandbox_server):
    base = sandbox_server.urls["amazon_mcf"]
    token = httpx.post(
        sandbox_server.urls["amazon_lwa"] + "/auth/o2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": AMAZON["refresh_token"],
            "client_id": AMAZON["client_id"],
            "client_secret": AMAZON["client_secret"],
        },
    ).json()["access_token"]
    headers = {"x-amz-access-token": token}
    amazon = sandbox_server.sandbox.platforms["amazon_mcf"]
    report = httpx.post(
        f"{base}/reports/2021-06-30/reports",
        headers=headers,
        json={
            "reportType": "GET_AMAZON_FULFILLED_SHIPMENTS_DATA_GENERAL",
            "marketplaceIds": [AMAZON["marketplace_id"]],
            "dataStartTime": "2026-11-18T00:00:00Z",
            "dataEndTime": "2026-11-20T00:00:00Z",
        },
    ).json()["reportId"]
    known = {"sellerFulfillmentOrderId": next(iter(amazon.orders)), "reportId": report}
    failures = []
    for spec, wanted in (
        ("fulfillmentOutbound_2020-07-01.json", AMAZON_OPERATIONS[:4]),
        ("reports_2021-06-30.json", AMAZON_OPERATIONS[4:]),
    ):
        found = operations(SPECS / "amazon-sp-api" / spec, wanted, base, "operationId")
        failures += fuzz_all(found, base, headers, known)
    assert not failures, "\n".join(failures[:20])


def test_shipbob_simulator_answers_fuzzed_requests_as_its_file_says(sandbox_server):
    base = sandbox_server.urls["shipbob"]
    headers = {
        "Authorization": f"Bearer {SHIPBOB['personal_access_tokens'][0]}",
        "shipbob_channel_id": str(SHIPBOB["channel_id"]),
    }
    # the file's own defects (keywords beside $ref, additionalProperties: false on bare oneOf/allOf)
    # read as OpenAPI 3.0 means them, as in the ShipBob contract tests
    found = operations(
        SPECS / "shipbob" / "openapi-2026-01.json",
        SHIPBOB_OPERATIONS,
        base,
        "label",
        read=lambda text: normalize_shipbob(json.loads(text)),
    )
    known = {"orderId": next(iter(sandbox_server.sandbox.platforms["shipbob"].orders))}
    failures = fuzz_all(found, base, headers, known)
    assert not failures, "\n".join(failures[:20])
