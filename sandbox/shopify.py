"""Shopify Admin GraphQL simulator: order lookup, search syntax, orderCancel jobs, cost throttling.

One app ("shopify") serves `POST /admin/api/{version}/graphql.json`. Documents are parsed,
validated and executed by graphql-core against Shopify's own Admin schema (2025-01, as published)
with the documented changes up to the version asked (SCHEMA_DELTAS: `orderByIdentifier` from
2025-04, `orderCancel(refundMethod:)` from 2025-07). The fields the simulator models resolve from
its orders; any other field answers a value of its documented shape (null where nullable, empty
lists, zero amounts), so every valid query runs.
Around execution it reproduces what clients must cope with: the access-token header and its
401, API versions (one past its 12 months of support on the scenario clock falls forward to the oldest
supported, X-Shopify-API-Version naming it; unknown ones 404), the `orders` search syntax with
Relay cursors, calculated query cost with a leaky bucket per shop (`extensions.cost`,
THROTTLED, MAX_COST_EXCEEDED), Shopify's validation-error shapes, and the asynchronous
`orderCancel` job. It also offers the client-credentials token grant so that a client can
recover after the `token_expiry` fault.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_client_schema,
    execute,
    get_named_type,
    is_abstract_type,
    is_composite_type,
    is_enum_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
    is_scalar_type,
    parse,
    print_ast,
    validate,
    validate_schema,
    visit,
)
from graphql.language import VariableNode
from graphql.utilities import value_from_ast_untyped

from sandbox.core import PlatformSandbox, TokenBucket, new_request_id
from sandbox.scenario import Scenario, ScenarioOrder, format_time, parse_time, shopify_order_name

# Shopify's Admin GraphQL schema 2025-01 as Shopify publishes it (introspection JSON, unchanged;
# origin and licence in shopify_admin_schema.LICENSE).
ADMIN_SCHEMA_PATH = Path(__file__).with_name("shopify_admin_schema_2025-01.json.gz")

# Stable quarterly versions modelled. Each is released on the 1st of its month and supported for
# SUPPORT_MONTHS (shopify.dev/docs/api/usage/versioning: "at least 12 months"); see resolve_version.
API_VERSIONS = ("2025-01", "2025-04", "2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
SUPPORT_MONTHS = 12
UNSTABLE = "unstable"

# Fixed sandbox credentials; they work only against this simulator.
DEFAULT_CREDENTIALS = {
    "shop_domain": "orderops-sandbox.myshopify.com",
    "access_token": "shpat_orderops_sandbox_0000000000000000",
    "client_id": "orderops-sandbox-client-id",
    "client_secret": "shpss_orderops_sandbox_secret",
}
DEFAULT_SCOPES = (
    "read_orders",
    "write_orders",
    "read_all_orders",
    "read_marketplace_orders",
    "write_marketplace_orders",
)
DEFAULTS: dict[str, Any] = {
    **DEFAULT_CREDENTIALS,
    "scopes": DEFAULT_SCOPES,
    "maximum_available": 2000.0,  # bucket size (points), Standard plan
    "restore_rate": 100.0,  # points per second, Standard plan
    "max_query_cost": 1000,  # single-query ceiling
    "max_page_size": 250,
    # play a sales-channel connector that copies a Shopify cancel to TikTok as a seller cancellation
    "channel_copies_cancel_to_tiktok": False,
    "cancel_job_polls": 2,  # the job reads done on this job(id:) poll
    "token_lifetime": 86399,  # seconds, client-credentials tokens
    "api_versions": API_VERSIONS,
}

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"
# Where the simulated TikTok channel puts the TikTok order id, per scenario `tiktok_id_in` (a scenario's
# `tiktok_id_key` and `tiktok_id_format` write it as another connector would).
TIKTOK_ATTRIBUTE_KEY = "TikTok Order ID"
TIKTOK_NOTE_PREFIX = "TikTok Shop Order ID: "
CHANNEL = {"handle": "tiktok", "channelName": "TikTok", "subChannelName": "TikTok Shop", "app": "TikTok"}
MUTATION_COST = 10
SIXTY_DAYS = timedelta(days=60)
CARRIER_NAMES = {
    "UPS": "UPS",
    "USPS": "USPS",
    "FEDEX": "FedEx",
    "DHL": "DHL Express",
    "AMZL_US": "Amazon Logistics US",
    "ONTRAC": "OnTrac",
}


# ---------------------------------------------------------------------------------------------
# Schema, per API version
# ---------------------------------------------------------------------------------------------


def released(version: str) -> date:
    """The day a stable version (YYYY-MM) is released: the 1st of its month."""
    return date(int(version[:4]), int(version[5:7]), 1)


def end_of_support(version: str) -> date:
    """The first day a stable version is no longer supported: SUPPORT_MONTHS after its release.
    Worked out here apart from the client's `supported_until` on purpose: the simulator stands for
    Shopify, so a mistake in the client's reading of the rule shows in the contract tests."""
    months = int(version[:4]) * 12 + int(version[5:7]) - 1 + SUPPORT_MONTHS
    return date(months // 12, months % 12 + 1, 1)


def _version_key(version: str) -> str:
    return "9999-99" if version == UNSTABLE else version


def _type_ref(kind: str, name: str | None = None, of: dict | None = None) -> dict:
    return {"kind": kind, "name": name, "ofType": of}


def _input_field(name: str, type_: dict, description: str) -> dict:
    return {
        "name": name,
        "description": description,
        "type": type_,
        "defaultValue": None,
        "isDeprecated": False,
        "deprecationReason": None,
    }


def _since_2025_04(types: dict[str, dict]) -> None:
    """`orderByIdentifier(identifier: OrderIdentifierInput!): Order` (documented from 2025-04)."""
    types["OrderIdentifierInput"] = {
        "kind": "INPUT_OBJECT",
        "name": "OrderIdentifierInput",
        "description": "The identifier of an order.",
        "fields": None,
        "inputFields": [
            _input_field("id", _type_ref("SCALAR", "ID"), "The ID of the order."),
            _input_field(
                "customId",
                _type_ref("INPUT_OBJECT", "UniqueMetafieldValueInput"),
                "The custom ID of the order (a unique metafield value).",
            ),
        ],
        "interfaces": None,
        "enumValues": None,
        "possibleTypes": None,
    }
    if "UniqueMetafieldValueInput" not in types:
        types["UniqueMetafieldValueInput"] = {
            "kind": "INPUT_OBJECT",
            "name": "UniqueMetafieldValueInput",
            "description": "A unique metafield value.",
            "fields": None,
            "inputFields": [
                _input_field("namespace", _type_ref("SCALAR", "String"), "The metafield's namespace."),
                _input_field("key", _type_ref("NON_NULL", of=_type_ref("SCALAR", "String")), "The metafield's key."),
                _input_field("value", _type_ref("NON_NULL", of=_type_ref("SCALAR", "String")), "The value."),
            ],
            "interfaces": None,
            "enumValues": None,
            "possibleTypes": None,
        }
    types["QueryRoot"]["fields"].append(
        {
            "name": "orderByIdentifier",
            "description": "Return an order by an identifier.",
            "args": [
                _input_field(
                    "identifier",
                    _type_ref("NON_NULL", of=_type_ref("INPUT_OBJECT", "OrderIdentifierInput")),
                    "The identifier of the order.",
                )
            ],
            "type": _type_ref("OBJECT", "Order"),
            "isDeprecated": False,
            "deprecationReason": None,
        }
    )


def _since_2025_07(types: dict[str, dict]) -> None:
    """orderCancel refunds by `refundMethod` (store credit possible); `refund` stays, deprecated and optional."""
    cancel = next(f for f in types["Mutation"]["fields"] if f["name"] == "orderCancel")
    refund = next(a for a in cancel["args"] if a["name"] == "refund")
    refund.update(
        type=_type_ref("SCALAR", "Boolean"), isDeprecated=True, deprecationReason="Use `refundMethod` instead."
    )
    at = cancel["args"].index(refund) + 1
    cancel["args"].insert(
        at,
        _input_field(
            "refundMethod",
            _type_ref("INPUT_OBJECT", "OrderCancelRefundMethodInput"),
            "Indicates how to refund the amount paid by the customer. Authorized payments will be voided regardless.",
        ),
    )
    for name, fields in (
        (
            "OrderCancelRefundMethodInput",
            [
                _input_field(
                    "originalPaymentMethodsRefund",
                    _type_ref("SCALAR", "Boolean"),
                    "Whether to refund to the original payment method.",
                ),
                _input_field(
                    "storeCreditRefund",
                    _type_ref("INPUT_OBJECT", "OrderCancelStoreCreditRefundInput"),
                    "Whether to refund to store credit.",
                ),
            ],
        ),
        (
            "OrderCancelStoreCreditRefundInput",
            [_input_field("expiresAt", _type_ref("SCALAR", "DateTime"), "When the store credit expires.")],
        ),
    ):
        types[name] = {
            "kind": "INPUT_OBJECT",
            "name": name,
            "description": None,
            "fields": None,
            "inputFields": fields,
            "interfaces": None,
            "enumValues": None,
            "possibleTypes": None,
        }
    codes = types["OrderCancelUserErrorCode"]["enumValues"]
    for code in (
        "NO_REFUND_TO_STORE_CREDIT_PERMISSION",
        "STORE_CREDIT_REFUND_B2B_NOT_SUPPORTED",
        "STORE_CREDIT_REFUND_EXPIRATION_IN_PAST",
        "STORE_CREDIT_REFUND_MISSING_CUSTOMER",
        "INTERNAL_ERROR",
    ):
        if not any(v["name"] == code for v in codes):
            codes.append({"name": code, "description": None, "isDeprecated": False, "deprecationReason": None})


# The documented changes after 2025-01 to what orderops and the sandbox use, by the version they
# arrive in (Shopify's Admin API changelog); later versions carry every earlier change.
SCHEMA_DELTAS: tuple[tuple[str, Callable[[dict], None]], ...] = (
    ("2025-04", _since_2025_04),
    ("2025-07", _since_2025_07),
)
# graphql-core refuses Shopify's published schema on two GraphQL rules Shopify itself breaks
# (a deprecated field implementing a non-deprecated interface field); those, and only those, are let pass.
_KNOWN_SCHEMA_DEFECT = re.compile(
    r"Interface field \w+\.\w+ is not deprecated, so implementation field "
    r"\w+\.\w+ must not be deprecated\."
)

_SCHEMAS: dict[tuple[str, ...], GraphQLSchema] = {}


def _node_type(value: Any, info, abstract_type) -> str | None:
    if isinstance(value, ShopOrder):
        return "Order"
    return value.get("__typename") if isinstance(value, dict) else None


def _introspection() -> dict:
    with gzip.open(ADMIN_SCHEMA_PATH) as f:
        return json.load(f)["data"]


def schema_for(version: str) -> GraphQLSchema:
    """Shopify's own Admin schema (2025-01) with the documented changes up to `version`; built once
    per distinct set of changes."""
    key = _version_key(version)
    applied = tuple(since for since, _ in SCHEMA_DELTAS if key >= since)
    if applied not in _SCHEMAS:
        data = _introspection()
        types = {t["name"]: t for t in data["__schema"]["types"]}
        for since, change in SCHEMA_DELTAS:
            if since in applied:
                change(types)
        data["__schema"]["types"] = list(types.values())
        schema = build_client_schema(data)
        defects = [e.message for e in validate_schema(schema) if not _KNOWN_SCHEMA_DEFECT.fullmatch(e.message)]
        if defects:
            raise RuntimeError(f"the Shopify schema for {version} is invalid: {defects[:3]}")
        schema._validation_errors = []  # only the known defects above: validate documents against it as it is
        date_time = schema.type_map["DateTime"]
        date_time.serialize = date_time.coerce_output_value = lambda v: format_time(v) if isinstance(v, datetime) else v
        schema.type_map["Node"].resolve_type = _node_type
        _SCHEMAS[applied] = schema
    return _SCHEMAS[applied]


# What a field the simulator does not model answers, for a non-null scalar of each type.
UNMODELED_SCALARS = {
    "Int": 0,
    "Float": 0.0,
    "Boolean": False,
    "Decimal": "0.0",
    "Money": "0.00",
    "UnsignedInt64": "0",
    "BigInt": "0",
    "DateTime": "1970-01-01T00:00:00Z",
    "Date": "1970-01-01",
    "JSON": {},
    "URL": "https://orderops-sandbox.myshopify.com/",
}


def unmodeled_value(type_) -> Any:
    """A value of `type_`'s documented shape for a field the simulator does not model: null where
    nullable, [] for lists, zero-like scalars, the first enum value (USD for currencies), an object
    whose own fields follow the same rule. None for an abstract type (nothing can stand for it)."""
    if not is_non_null_type(type_):
        return None
    inner = type_.of_type
    if is_list_type(inner):
        return []
    if is_enum_type(inner):
        return "USD" if "USD" in inner.values else next(iter(inner.values))
    if is_scalar_type(inner):
        return UNMODELED_SCALARS.get(inner.name, "")
    return {} if is_object_type(inner) else None


# ---------------------------------------------------------------------------------------------
# Search syntax (shopify.dev/docs/api/usage/search-syntax)
# ---------------------------------------------------------------------------------------------


@dataclass
class Term:
    field: str | None  # None: free text
    comparator: str  # ":", "<", "<=", ">", ">="
    value: str
    quoted: bool = False


@dataclass
class Op:
    kind: str  # "and" | "or" | "not"
    items: list


def _tokenize(text: str) -> list:
    """Tokens: "(", ")", "NOT" marker for a leading '-', or ("word", raw, Term-ish parts)."""
    tokens: list = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "()":
            tokens.append(ch)
            i += 1
            continue
        if ch == "-" and i + 1 < n and not text[i + 1].isspace():
            tokens.append("NEG")
            i += 1
            continue
        # a word: runs to unquoted whitespace or parenthesis; quotes and backslashes protect
        parts: list[tuple[str, bool]] = []  # (text, quoted)
        buf = []
        while i < n and not text[i].isspace() and text[i] not in "()":
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                buf.append("\x00" + text[i + 1])  # escaped: never special
                i += 2
                continue
            if ch in "'\"":
                if buf:
                    parts.append(("".join(buf), False))
                    buf = []
                end = text.find(ch, i + 1)
                if end < 0:
                    end = n
                parts.append((text[i + 1 : end], True))
                i = end + 1
                continue
            buf.append(ch)
            i += 1
        if buf:
            parts.append(("".join(buf), False))
        tokens.append(("word", parts))
    return tokens


def _word_to_term(parts: list[tuple[str, bool]]) -> Term | str:
    """A word is AND/OR/NOT, `field:[comparator]value`, or free text."""
    if len(parts) == 1 and not parts[0][1] and parts[0][0] in ("AND", "OR", "NOT"):
        return parts[0][0]
    first, quoted = parts[0]
    colon = next((k for k, ch in enumerate(first) if ch == ":" and (k == 0 or first[k - 1] != "\x00")), -1)
    if not quoted and colon > 0:
        name, rest = first[:colon], first[colon + 1 :]
        comparator = ":"
        for op in ("<=", ">=", "<", ">"):
            if rest.startswith(op):
                comparator, rest = op, rest[len(op) :]
                break
        pieces = [rest] + [p for p, _ in parts[1:]]
        value = "".join(pieces).replace("\x00", "")
        return Term(
            field=name.replace("\x00", "").lower(),
            comparator=comparator,
            value=value,
            quoted=any(q for _, q in parts[1:]),
        )
    value = "".join(p for p, _ in parts).replace("\x00", "")
    return Term(field=None, comparator=":", value=value, quoted=any(q for _, q in parts))


def parse_search(text: str) -> Any:
    """Parse into Term/Op nodes: OR binds loosest, then AND (also implied), then NOT / '-'.

    Lenient like the real search box: stray connectives and parentheses are ignored.
    """
    items = []
    for tok in _tokenize(text or ""):
        if isinstance(tok, tuple):
            word = _word_to_term(tok[1])
            items.append(word)
            continue
        items.append(tok)
    pos = 0

    def peek():
        return items[pos] if pos < len(items) else None

    def take():
        nonlocal pos
        pos += 1
        return items[pos - 1]

    def parse_or():
        branches = [parse_and()]
        while peek() == "OR":
            take()
            branches.append(parse_and())
        branches = [b for b in branches if b is not None]
        if not branches:
            return None
        return branches[0] if len(branches) == 1 else Op("or", branches)

    def parse_and():
        terms = []
        while True:
            tok = peek()
            if tok is None or tok in ("OR", ")"):
                break
            if tok == "AND":
                take()
                continue
            node = parse_unary()
            if node is not None:
                terms.append(node)
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else Op("and", terms)

    def parse_unary():
        tok = peek()
        if tok in ("NOT", "NEG"):
            take()
            inner = parse_unary()
            return None if inner is None else Op("not", [inner])
        if tok == "(":
            take()
            inner = parse_or()
            if peek() == ")":
                take()
            return inner
        take()
        if isinstance(tok, Term):
            return tok
        return None  # a connective where a term should be

    node = parse_or()
    while pos < len(items):  # a stray ")" ends the top level early: keep parsing the rest
        take()
        more = parse_or()
        if more is not None:
            node = more if node is None else Op("and", [node, more])
    return node


def describe_search(node: Any) -> Any:
    """The `parsed` form reported next to search warnings."""
    if node is None:
        return {}
    if isinstance(node, Op):
        if node.kind == "not":
            return {"not": describe_search(node.items[0])}
        return {node.kind: [describe_search(i) for i in node.items]}
    key = {
        ":": "match_phrase" if node.quoted else "match_all",
        "<": "range_lt",
        "<=": "range_lte",
        ">": "range_gt",
        ">=": "range_gte",
    }[node.comparator]
    out = {key: node.value}
    if node.field is not None:
        out = {"field": node.field, **out}
    return out


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


@dataclass
class ShopOrder:
    id: int
    name: str
    number: int
    created_at: datetime
    processed_at: datetime
    updated_at: datetime
    financial_status: str
    fulfillment_status: str
    source_name: str | None
    source_identifier: str | None
    custom_attributes: list[dict]
    tags: list[str]
    note: str | None
    line_items: list[dict]
    fulfillments: list[dict]
    tiktok_id: str
    tiktok_id_in: str
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    closed_at: datetime | None = None
    staff_note: str | None = None
    restocked: bool | None = None
    refund: str | None = None  # "original", "store_credit" or "none" once cancelled
    cancel_job: str | None = None  # id of a running cancel job

    @property
    def gid(self) -> str:
        return f"gid://shopify/Order/{self.id}"

    def webhook_body(self) -> dict:
        """The order as Shopify's orders/* webhooks carry it (the REST Admin Order resource's names)."""
        return {
            "id": self.id,
            "admin_graphql_api_id": self.gid,
            "name": self.name,
            "order_number": self.number,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "processed_at": format_time(self.processed_at),
            "cancelled_at": self.cancelled_at and format_time(self.cancelled_at),
            "cancel_reason": self.cancel_reason and self.cancel_reason.lower(),
            "closed_at": self.closed_at and format_time(self.closed_at),
            "financial_status": self.financial_status.lower(),
            "fulfillment_status": None if self.fulfillment_status == "UNFULFILLED" else self.fulfillment_status.lower(),
            "source_name": self.source_name,
            "source_identifier": self.source_identifier,
            "note": self.note,
            "tags": ", ".join(self.tags),
            "note_attributes": [{"name": a["key"], "value": a["value"]} for a in self.custom_attributes],
            "line_items": [
                {
                    "id": int(li["id"].rsplit("/", 1)[1]),
                    "sku": li["sku"],
                    "title": li["title"],
                    "quantity": li["quantity"],
                }
                for li in self.line_items
            ],
        }

    def dump(self) -> dict:
        return {
            "id": self.gid,
            "legacy_id": self.id,
            "name": self.name,
            "number": self.number,
            "created_at": format_time(self.created_at),
            "updated_at": format_time(self.updated_at),
            "processed_at": format_time(self.processed_at),
            "cancelled_at": self.cancelled_at and format_time(self.cancelled_at),
            "cancel_reason": self.cancel_reason,
            "closed_at": self.closed_at and format_time(self.closed_at),
            "financial_status": self.financial_status,
            "fulfillment_status": self.fulfillment_status,
            "source_name": self.source_name,
            "source_identifier": self.source_identifier,
            "custom_attributes": self.custom_attributes,
            "tags": self.tags,
            "note": self.note,
            "tiktok_id": self.tiktok_id,
            "tiktok_id_in": self.tiktok_id_in,
            "staff_note": self.staff_note,
            "restocked": self.restocked,
            "refund": self.refund,
            "cancel_job": self.cancel_job,
            "fulfillments": [
                {
                    "id": f["id"],
                    "name": f["name"],
                    "status": f["status"],
                    "created_at": format_time(f["createdAt"]),
                    "tracking": f["trackingInfo"],
                }
                for f in self.fulfillments
            ],
        }


@dataclass
class CancelJob:
    id: str
    order_id: int
    created: datetime
    ready_at: datetime
    reason: str
    refund: str
    restock: bool
    staff_note: str | None
    polls: int = 0
    done: bool = False
    done_at: datetime | None = None


@dataclass
class _Context:
    """Per-request execution state handed to resolvers as `info.context`."""

    version: str
    scopes: frozenset
    now: datetime
    actual: int = 0
    warnings: list = field(default_factory=list)
    outcomes: dict = field(default_factory=dict)  # mutation response key -> outcome


def _gid_number(value: Any, kind: str) -> int | None:
    """The numeric id of `gid://shopify/<kind>/<n>`; None for another kind or a missing id.

    A string that is not a global id at all raises the top-level error Shopify gives.
    """
    text = str(value)
    match = re.fullmatch(r"gid://shopify/(\w+)/(\d+)(\?.*)?", text)
    if not match:
        raise GraphQLError(f"Invalid global id '{text}'", extensions={"code": "argumentLiteralsIncompatible"})
    if match.group(1) != kind:
        return None
    return int(match.group(2))


def _encode_cursor(last_id: int, last_value: Any) -> str:
    raw = json.dumps({"last_id": last_id, "last_value": last_value}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str, value_type: type) -> tuple[Any, int]:
    """(sort value, id) of a cursor made for the same sort key; otherwise a BAD_REQUEST error."""
    try:
        data = json.loads(base64.b64decode(cursor.encode(), validate=True))
        last_id, last_value = data["last_id"], data["last_value"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"}) from None
    if not isinstance(last_id, int) or not isinstance(last_value, value_type) or isinstance(last_value, bool):
        raise GraphQLError("Invalid cursor for current pagination sort.", extensions={"code": "BAD_REQUEST"})
    return last_value, last_id


def paginate(
    items: list,
    key: Callable[[Any], tuple[Any, int]],
    value_type: type,
    *,
    descending: bool,
    first,
    after,
    last,
    before,
    max_page: int,
    field_name: str,
) -> dict:
    """A Relay connection window over `items` (already filtered and ordered by `key`).

    Cursors carry the sort value and id of their item, so a page boundary stays put when other
    items appear, disappear or change elsewhere in the list.
    """
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last", extensions={"code": "BAD_REQUEST"})
    for arg, size in (("first", first), ("last", last)):
        if size is not None and (size < 0 or size > max_page):
            raise GraphQLError(
                f"Argument '{arg}' on Field '{field_name}' has an invalid value ({size}). "
                f"Expected a page size from 0 to {max_page}.",
                extensions={"code": "BAD_REQUEST"},
            )
    keys = [key(item) for item in items]
    start, end = 0, len(items)
    if after:
        ck = _decode_cursor(after, value_type)
        start = sum(1 for k in keys if (k >= ck if descending else k <= ck))
    if before:
        ck = _decode_cursor(before, value_type)
        end = sum(1 for k in keys if (k > ck if descending else k < ck))
    end = max(start, end)
    lo, hi = start, end
    if first is not None:
        hi = min(hi, lo + first)
    if last is not None:
        lo = max(lo, hi - last)
    edges = [{"cursor": _encode_cursor(keys[i][1], keys[i][0]), "node": items[i]} for i in range(lo, hi)]
    return {
        "edges": edges,
        "nodes": [items[i] for i in range(lo, hi)],
        "pageInfo": {
            "hasNextPage": hi < len(items),
            "hasPreviousPage": lo > 0,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


# ---------------------------------------------------------------------------------------------
# Validation errors in Shopify's shape
# ---------------------------------------------------------------------------------------------


def _node_paths(document: DocumentNode) -> dict[int, list[str]]:
    """id(AST node) -> the error `path` Shopify reports for it ("query Name", fields...)."""
    paths: dict[int, list[str]] = {}

    def walk(selection_set, prefix: list[str]) -> None:
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                here = prefix + [(sel.alias or sel.name).value]
                paths[id(sel)] = here
                for arg in sel.arguments or ():
                    paths[id(arg)] = here + [arg.name.value]
                    paths[id(arg.value)] = here + [arg.name.value]
                walk(sel.selection_set, here)
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition.name.value if sel.type_condition else ""
                here = prefix + [f"... on {cond}" if cond else "..."]
                paths[id(sel)] = here
                walk(sel.selection_set, here)
            elif isinstance(sel, FragmentSpreadNode):
                paths[id(sel)] = prefix + [f"... {sel.name.value}"]

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            head = definition.operation.value + (f" {definition.name.value}" if definition.name else "")
            paths[id(definition)] = [head]
            walk(definition.selection_set, [head])
        elif isinstance(definition, FragmentDefinitionNode):
            head = f"fragment {definition.name.value}"
            paths[id(definition)] = [head]
            walk(definition.selection_set, [head])
    return paths


def _argument_types(schema: GraphQLSchema, document: DocumentNode) -> dict[int, str]:
    """id(argument value node) -> the argument's declared type, e.g. OrderCancelReason!."""
    types: dict[int, str] = {}
    type_info = TypeInfo(schema)

    class Collect(Visitor):
        def enter_argument(self, node, *_):
            argument = type_info.get_argument()
            if argument is not None:
                types[id(node.value)] = str(argument.type)

    visit(document, TypeInfoVisitor(type_info, Collect()))
    return types


_RULES: list[tuple[re.Pattern, Callable[[re.Match], tuple[str, dict]]]] = [
    (
        re.compile(r"Cannot query field '(\w+)' on type '(\w+)'\.(?: Did you mean .*)?"),
        lambda m: (
            f"Field '{m[1]}' doesn't exist on type '{m[2]}'",
            {"code": "undefinedField", "typeName": m[2], "fieldName": m[1]},
        ),
    ),
    (
        re.compile(r"Field '(\w+)' of type '([\w!\[\]]+)' must have a selection of subfields\..*"),
        lambda m: (
            f"Field must have selections (field '{m[1]}' returns {m[2].strip('![]')} but has no "
            f"selections. Did you mean '{m[1]} {{ ... }}'?)",
            {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2].strip("![]")},
        ),
    ),
    (
        re.compile(r"Field '(\w+)' must not have a selection since type '([\w!\[\]]+)' has no subfields\."),
        lambda m: (
            f"Selections can't be made on scalars (field '{m[1]}' returns {m[2].strip('![]')} but "
            f"has selections [...])",
            {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2].strip("![]")},
        ),
    ),
    (
        re.compile(r"Unknown argument '(\w+)' on field '\w+\.(\w+)'\.(?: Did you mean .*)?"),
        lambda m: (
            f"Field '{m[2]}' doesn't accept argument '{m[1]}'",
            {"code": "argumentNotAccepted", "name": m[2], "typeName": "Field", "argumentName": m[1]},
        ),
    ),
    (
        re.compile(r"Argument '\w+\.(\w+)\((\w+):\)' of type '[^']+' is required, but it was not provided\."),
        lambda m: (
            f"Field '{m[1]}' is missing required arguments: {m[2]}",
            {"code": "missingRequiredArguments", "className": "Field", "name": m[1], "arguments": m[2]},
        ),
    ),
    (
        re.compile(r"Variable '\$(\w+)' is never used(?: in operation '(\w+)')?\."),
        lambda m: (
            f"Variable ${m[1]} is declared by {m[2] or 'anonymous query'} but not used",
            {"code": "variableNotUsed", "variableName": m[1]},
        ),
    ),
    (
        re.compile(r"Unknown type '(\w+)'\..*"),
        lambda m: (f"{m[1]} isn't a defined input type", {"code": "variableRequiresValidType", "typeName": m[1]}),
    ),
    (
        re.compile(r"Unknown fragment '(\w+)'\."),
        lambda m: (
            f"Fragment {m[1]} was used, but not defined",
            {"code": "useAndDefineFragment", "fragmentName": m[1]},
        ),
    ),
    (
        re.compile(r"Fragment '(\w+)' is never used\."),
        lambda m: (
            f"Fragment {m[1]} was defined, but not used",
            {"code": "useAndDefineFragment", "fragmentName": m[1]},
        ),
    ),
    (
        re.compile(r"Variable '\$(\w+)' is not defined(?: by operation '(\w+)')?\."),
        lambda m: (
            f"Variable ${m[1]} is used by {m[2] or 'anonymous query'} but not declared",
            {"code": "variableNotDefined", "variableName": m[1]},
        ),
    ),
    (
        re.compile(r"Unknown directive '@(\w+)'\."),
        lambda m: (f"Directive @{m[1]} is not defined", {"code": "undefinedDirective", "directiveName": m[1]}),
    ),
    (
        re.compile(r"Variable '\$(\w+)' of type '([^']+)' used in position expecting type '([^']+)'\."),
        lambda m: (
            f"Type mismatch on variable ${m[1]} and argument {{argument}} ({m[2]} / {m[3]})",
            {"code": "variableMismatch", "variableName": m[1], "typeName": m[2]},
        ),
    ),
    (
        re.compile(r"Fields '(\w+)' conflict because (.*)"),
        lambda m: (f"Field '{m[1]}' has a field conflict: {m[2]}", {"code": "fieldConflict", "fieldName": m[1]}),
    ),
]
# graphql-core's suggestion suffix, which Shopify's messages never carry.
_SUGGESTION = re.compile(r"\s*Did you mean .*\?$", re.S)


def shopify_validation_error(error: GraphQLError, paths: dict[int, list[str]], arg_types: dict[int, str]) -> dict:
    message, extensions = error.message, None
    node = error.nodes[0] if error.nodes else None
    for pattern, convert in _RULES:
        match = pattern.fullmatch(error.message)
        if match:
            message, extensions = convert(match)
            break
    if extensions is None and node is not None and id(node) in arg_types and id(node) in paths:
        # a literal of the wrong type, reported against the argument that holds it
        field_name, arg_name = paths[id(node)][-2:]
        message = (
            f"Argument '{arg_name}' on Field '{field_name}' has an invalid value ({print_ast(node)}). "
            f"Expected type '{arg_types[id(node)]}'."
        )
        extensions = {"code": "argumentLiteralsIncompatible", "typeName": "Field", "argumentName": arg_name}
    if extensions is not None and extensions["code"] == "variableMismatch":
        used = next((paths[id(n)] for n in error.nodes[1:] if id(n) in paths), ["?"])
        message = message.replace("{argument}", used[-1])
        extensions["argumentName"] = used[-1]
    if extensions is None:
        # a rule without a Shopify counterpart above: its message, no suggestion, a code all the same
        message, extensions = _SUGGESTION.sub("", message), {"code": "GRAPHQL_VALIDATION_FAILED"}
    out: dict[str, Any] = {"message": message}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if node is not None and id(node) in paths:
        out["path"] = paths[id(node)]
    if extensions:
        out["extensions"] = extensions
    return out


def shopify_variable_error(error: GraphQLError, operation: OperationDefinitionNode, variables: dict) -> dict:
    """graphql-core's variable coercion error, as Shopify's INVALID_VARIABLE."""
    match = re.match(r"Variable '\$(\w+)' has invalid value: (.*)", error.message, re.S)
    if not match:
        return error.formatted
    name, problem = match.groups()
    type_text = next(
        (print_ast(d.type) for d in operation.variable_definitions or () if d.variable.name.value == name), "?"
    )
    if problem.startswith("Expected a value of non-null type") or "non-null" in problem:
        problem = "Expected value to not be null"
    problem = _SUGGESTION.sub("", problem)
    out: dict[str, Any] = {"message": f"Variable ${name} of type {type_text} was provided invalid value"}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    out["extensions"] = {
        "code": "INVALID_VARIABLE",
        "value": variables.get(name),
        "problems": [{"path": [], "explanation": problem}],
    }
    return out


# ---------------------------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------------------------


class ShopifySandbox(PlatformSandbox):
    name = "shopify"

    def __init__(self, sandbox):
        super().__init__(sandbox)
        self.config = sandbox.settings.for_platform(self.name, DEFAULTS)
        scale = sandbox.settings.rate_scale
        self.maximum_available = float(self.config["maximum_available"]) * scale
        self.restore_rate = float(self.config["restore_rate"]) * scale
        self.bucket = TokenBucket(self.restore_rate, self.maximum_available, clock=self.sandbox.clock.quota_seconds)
        self.versions = tuple(self.config["api_versions"])
        self.orders: dict[int, ShopOrder] = {}
        self.jobs: dict[str, CancelJob] = {}
        # token -> (scopes, wall-clock expiry or None)
        self.tokens: dict[str, tuple[frozenset, float | None]] = {}
        self._app: FastAPI | None = None
        self._resolvers = self._build_resolvers()

    # -- scenario -------------------------------------------------------------------------
    def load(self, scenario: Scenario) -> None:
        self.orders.clear()
        self.jobs.clear()
        self.tokens = {self.config["access_token"]: (frozenset(self.config["scopes"]), None)}
        self.bucket = TokenBucket(self.restore_rate, self.maximum_available, clock=self.sandbox.clock.quota_seconds)
        now = scenario.now
        used_numbers: set[int] = set()
        for order in scenario.orders:
            for entry in order.shopify:
                shop_order = self._order_from_scenario(order, entry, now)
                used_numbers.add(shop_order.number)
                self.orders[shop_order.id] = shop_order
        # orders whose name carries no number get the next free ones, in id order
        next_number = max(used_numbers | {1000}) + 1
        for shop_order in sorted(self.orders.values(), key=lambda o: o.id):
            if shop_order.number == 0:
                shop_order.number = next_number
                next_number += 1

    def add_order(self, order: ScenarioOrder) -> None:
        """The TikTok channel app copies the order into Shopify now (a living shop, life.py)."""
        entry = order.shopify[0]
        self.orders[entry["id"]] = self._order_from_scenario(
            order, {**entry, "created_at": format_time(self.now())}, self.now()
        )
        self._emit("orders/create", self.orders[entry["id"]])

    def _emit(self, topic: str, order: ShopOrder) -> None:
        self.sandbox.outbox.emit("shopify", topic, order.webhook_body())

    def _order_from_scenario(self, order: ScenarioOrder, entry: dict, now: datetime) -> ShopOrder:
        tt = order.tiktok
        tt_id = tt["id"]
        placed = parse_time(tt["create_time"], "tiktok.create_time")
        # the channel app copies an order after TikTok's one-hour hold
        created = (
            parse_time(entry["created_at"], "shopify.created_at")
            if entry.get("created_at")
            else max(placed, min(placed + timedelta(hours=1), now))
        )
        place = entry["tiktok_id_in"]
        name = shopify_order_name(entry, tt_id)
        digits = re.fullmatch(r"#?(\d{1,9})", name)
        note = entry.get("note") or None
        if place == "note":
            written = (entry.get("tiktok_id_format") or TIKTOK_NOTE_PREFIX + "{id}").replace("{id}", tt_id)
            note = (note + "\n" if note else "") + written
        skus: dict[str, int] = {}
        for line in tt["line_items"]:
            skus[line["seller_sku"]] = skus.get(line["seller_sku"], 0) + 1
        line_items = [
            {
                "id": f"gid://shopify/LineItem/{entry['id']}{k:02d}",
                "sku": sku,
                "title": sku,
                "name": sku,
                "quantity": qty,
                "currentQuantity": qty,
            }
            for k, (sku, qty) in enumerate(skus.items(), start=1)
        ]
        fulfillments, shipments_total = self._fulfillments_from(order, entry["id"], name, created, now)
        if not fulfillments:
            fulfillment_status = "UNFULFILLED"
        elif len(fulfillments) >= shipments_total:
            fulfillment_status = "FULFILLED"
        else:
            fulfillment_status = "PARTIALLY_FULFILLED"
        updated = max([created] + [f["createdAt"] for f in fulfillments])
        shop_order = ShopOrder(
            id=entry["id"],
            name=name,
            number=int(digits.group(1)) if digits else 0,
            created_at=created,
            processed_at=placed,
            updated_at=updated,
            financial_status=entry.get("financial_status") or "PAID",
            fulfillment_status=fulfillment_status,
            source_name=entry.get("source_name") or CHANNEL["handle"],
            source_identifier=tt_id if place == "source_identifier" else None,
            custom_attributes=(
                [{"key": entry.get("tiktok_id_key") or TIKTOK_ATTRIBUTE_KEY, "value": tt_id}]
                if place == "custom_attribute"
                else []
            ),
            tags=list(entry.get("tags") or ["TikTok"]),
            note=note,
            line_items=line_items,
            fulfillments=fulfillments,
            tiktok_id=tt_id,
            tiktok_id_in=place,
        )
        if entry.get("cancelled"):
            cancellation = tt.get("cancellation") or {}
            when = (
                parse_time(cancellation["create_time"], "cancellation")
                if cancellation.get("create_time")
                else created + timedelta(hours=1)
            )
            when = max(created, min(when, now))
            shop_order.cancelled_at = shop_order.closed_at = when
            shop_order.cancel_reason = "CUSTOMER"
            shop_order.refund = "original"
            shop_order.restocked = True
            shop_order.updated_at = max(shop_order.updated_at, when)
            shop_order.financial_status = self._cancelled_financial_status(shop_order.financial_status, "original")
        return shop_order

    @staticmethod
    def _fulfillments_from(
        order: ScenarioOrder, order_id: int, name: str, created: datetime, now: datetime
    ) -> tuple[list[dict], int]:
        """Shipped packages the fulfiller app reported back, as of the scenario's start."""
        shipped: list[list[tuple[str, str]]] = []
        total = 0
        if order.fulfiller == "amazon_mcf" and order.amazon_mcf:
            for shipment in order.amazon_mcf.get("shipments") or []:
                if shipment["status"] in ("CANCELLED_BY_FULFILLER", "CANCELLED_BY_SELLER"):
                    continue
                total += 1
                if shipment["status"] == "SHIPPED" and shipment.get("packages"):
                    shipped.append([(p["carrier_code"], p["tracking_number"]) for p in shipment["packages"]])
        elif order.fulfiller == "shipbob" and order.shipbob:
            for shipment in order.shipbob.get("shipments") or []:
                if shipment["status"] == "Cancelled":
                    continue
                total += 1
                tracking = shipment.get("tracking")
                if shipment["status"] == "Completed" and tracking:
                    shipped.append([(tracking["carrier"], tracking["tracking_number"])])
        when = max(created, min(created + timedelta(hours=20), now))
        fulfillments = []
        for k, packages in enumerate(shipped, start=1):
            fulfillments.append(
                {
                    "id": f"gid://shopify/Fulfillment/{order_id}{k:02d}",
                    "name": f"{name}-F{k}",
                    "status": "SUCCESS",
                    "displayStatus": "FULFILLED",
                    "createdAt": when,
                    "updatedAt": when,
                    "trackingInfo": [
                        {"company": CARRIER_NAMES.get(code.upper(), code), "number": number, "url": None}
                        for code, number in packages
                    ],
                }
            )
        return fulfillments, total

    @staticmethod
    def _cancelled_financial_status(status: str, refund: str) -> str:
        # authorized or pending payments are voided whatever the refund choice
        if status in ("AUTHORIZED", "PENDING", "PARTIALLY_PAID"):
            return "VOIDED"
        if status in ("PAID", "PARTIALLY_REFUNDED") and refund != "none":
            return "REFUNDED"
        return status

    # -- platform hooks -------------------------------------------------------------------
    def apps(self) -> dict[str, FastAPI]:
        if self._app is None:
            self._app = self._build_app()
        return {"shopify": self._app}

    def throttled_response(self, retry_after: float = 1.0) -> Response:
        # The injected fault answers 429 (some clients only back off on it); the organic
        # bucket throttle answers 200, as Shopify GraphQL usually does.
        available = self.bucket.available()
        body = self._throttled_body(requested=int(available + self.restore_rate * retry_after) + 1)
        return JSONResponse(
            body, status_code=429, headers={"Retry-After": f"{retry_after:.1f}", "X-Request-Id": new_request_id()}
        )

    def server_error_response(self, status: int) -> Response:
        request_id = str(uuid.uuid4())
        return JSONResponse(
            {
                "errors": [
                    {
                        "message": "Internal error. Looks like something went wrong on our end.\n"
                        f"Request ID: {request_id} "
                        f"(include this in support requests).",
                        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                    }
                ]
            },
            status_code=status,
            headers={"X-Request-Id": request_id},
        )

    def expire_tokens(self) -> None:
        self.tokens = {token: (scopes, 0.0) for token, (scopes, _) in self.tokens.items()}

    def state(self) -> dict:
        self._settle_jobs(self.now())
        return {
            "shop": self.config["shop_domain"],
            "api_versions": list(self.versions),
            "throttle": self._throttle_status(),
            "max_query_cost": self.config["max_query_cost"],
            "orders": [o.dump() for o in sorted(self.orders.values(), key=lambda o: o.id)],
            "jobs": [
                {
                    "id": j.id,
                    "order_id": f"gid://shopify/Order/{j.order_id}",
                    "done": j.done,
                    "polls": j.polls,
                    "refund": j.refund,
                    "restock": j.restock,
                    "created": format_time(j.created),
                    "done_at": j.done_at and format_time(j.done_at),
                }
                for j in self.jobs.values()
            ],
            "tokens": sum(1 for _, (_, exp) in self.tokens.items() if exp is None or exp > time.time()),
        }

    # -- HTTP -----------------------------------------------------------------------------
    @staticmethod
    def _unrouted(request: Request, exc) -> Response:
        # Shopify answers a path or method it does not serve with a plain 404
        if exc.status_code in (404, 405):
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        return JSONResponse({"errors": str(exc.detail)}, status_code=exc.status_code)

    def _build_app(self) -> FastAPI:
        app = self.sandbox.new_app(self.name, "Shopify Admin API (sandbox)", unrouted=self._unrouted)

        @app.post("/admin/api/{version}/graphql.json")
        async def graphql_endpoint(version: str, request: Request):
            return await self._graphql(version, request)

        @app.post("/admin/oauth/access_token")
        async def access_token(request: Request):
            return await self._access_token(request)

        return app

    def oldest_supported(self, today: date) -> str:
        """The oldest version still inside its support window on `today`; past every window of the
        versions modelled, the newest of them (the sandbox knows no later one)."""
        return next((v for v in self.versions if end_of_support(v) > today), self.versions[-1])

    def resolve_version(self, version: str, today: date) -> str | None:
        """The version that serves a request to `version` on `today`, None for no such version (404).

        A version past its support, or older than every one modelled, falls forward to the oldest
        supported. One released after `today` but modelled is served as asked, as Shopify serves
        release candidates ahead of release (assumed: UNCERTAIN)."""
        if version == UNSTABLE:
            return UNSTABLE
        if not re.fullmatch(r"\d{4}-(01|04|07|10)", version) or version > self.versions[-1]:
            return None
        oldest = self.oldest_supported(today)
        if version < oldest:
            return oldest
        return version if version in self.versions else None

    def _token_scopes(self, request: Request) -> frozenset | None:
        token = request.headers.get("x-shopify-access-token")
        entry = self.tokens.get(token or "")
        if entry is None:
            return None
        scopes, expires = entry
        if expires is not None and expires <= time.time():
            return None
        return scopes

    def _throttle_status(self) -> dict:
        return {
            "maximumAvailable": self.maximum_available,
            "currentlyAvailable": int(self.bucket.available()),
            "restoreRate": self.restore_rate,
        }

    def _throttled_body(self, requested: int) -> dict:
        return {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": self._throttle_status(),
                }
            },
        }

    async def _access_token(self, request: Request) -> Response:
        """Client-credentials grant: a fresh token after the old ones were expired."""
        raw = await request.body()
        if "json" in request.headers.get("content-type", ""):
            try:
                form = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                form = {}
        else:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        form = form if isinstance(form, dict) else {}
        ok = (
            form.get("grant_type") == "client_credentials"
            and form.get("client_id") == self.config["client_id"]
            and form.get("client_secret") == self.config["client_secret"]
        )
        request.state.operation = "oauth access_token"
        if not ok:
            self.record_write(request, form, 401, "invalid_client", operation="oauth access_token")
            return JSONResponse({"errors": INVALID_TOKEN}, status_code=401)
        token = "shpat_" + uuid.uuid4().hex
        lifetime = int(self.config["token_lifetime"])
        scopes = frozenset(self.config["scopes"])
        self.tokens[token] = (scopes, time.time() + lifetime)
        self.record_write(request, form, 200, "ok", operation="oauth access_token")
        return JSONResponse({"access_token": token, "scope": ",".join(sorted(scopes)), "expires_in": lifetime})

    async def _graphql(self, version: str, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        served = self.resolve_version(version, self.now().date())
        if served is None:
            request.state.operation = "graphql unknown version"
            return JSONResponse({"errors": "Not Found"}, status_code=404, headers={"X-Request-Id": request_id})
        headers = {"X-Request-Id": request_id, "X-Shopify-API-Version": served}
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        body: Any
        if "application/graphql" in content_type:
            body = {"query": raw.decode("utf-8", "replace")}
        else:
            try:
                body = json.loads(raw or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
        query = body.get("query") if isinstance(body, dict) else None
        variables = body.get("variables") if isinstance(body, dict) else None
        op_name = body.get("operationName") if isinstance(body, dict) else None
        if not isinstance(query, str) or not query.strip() or not isinstance(variables, (dict, type(None))):
            request.state.operation = "graphql bad request"
            return JSONResponse(
                {"errors": {"query": "Required parameter missing or invalid"}}, status_code=400, headers=headers
            )
        variables = variables or {}

        def respond(payload: dict, status: int = 200) -> Response:
            return JSONResponse(payload, status_code=status, headers=headers)

        # parse first: the operation name is needed to count calls and log refused writes
        try:
            document = parse(query)
        except GraphQLError as exc:
            request.state.operation = "graphql parse error"
            authorized = self._token_scopes(request) is not None
            if re.match(r"\s*mutation\b", query):
                self.record_write(
                    request,
                    body,
                    200 if authorized else 401,
                    "PARSE_ERROR" if authorized else "UNAUTHORIZED",
                    request_id=request_id,
                    operation="mutation",
                )
            if not authorized:
                return JSONResponse({"errors": INVALID_TOKEN}, status_code=401, headers={"X-Request-Id": request_id})
            loc = exc.locations[0] if exc.locations else None
            detail = exc.message.removeprefix("Syntax Error: ").rstrip(".")
            where = f" at [{loc.line}, {loc.column}]" if loc else ""
            error: dict[str, Any] = {"message": f"syntax error, {detail}{where}"}
            if loc:
                error["locations"] = [{"line": loc.line, "column": loc.column}]
            error["extensions"] = {"code": "PARSE_ERROR"}
            return respond({"errors": [error]})
        operation = self._pick_operation(document, op_name)
        root_fields = self._root_fields(operation) if operation else []
        kind = operation.operation.value if operation else "query"
        request.state.operation = f"{kind} {','.join(dict.fromkeys(f for f, _ in root_fields)) or '?'}"
        is_mutation = kind == "mutation"

        def refuse_writes(outcome: str, status: int = 200) -> None:
            if is_mutation:
                for field_name, _ in root_fields:
                    self.record_write(request, body, status, outcome, request_id=request_id, operation=field_name)

        scopes = self._token_scopes(request)
        if scopes is None:
            refuse_writes("UNAUTHORIZED", 401)
            return JSONResponse({"errors": INVALID_TOKEN}, status_code=401, headers={"X-Request-Id": request_id})

        schema = schema_for(served)
        errors = validate(schema, document)
        if not errors and operation is None:
            errors = [
                GraphQLError("An operation name is required" if op_name is None else f'No operation named "{op_name}"')
            ]
        if errors:
            paths = _node_paths(document)
            arg_types = _argument_types(schema, document)
            shaped = [shopify_validation_error(e, paths, arg_types) for e in errors]
            refuse_writes(shaped[0].get("extensions", {}).get("code", "INVALID"))
            return respond({"errors": shaped})

        requested = self._requested_cost(schema, document, operation, variables)
        max_cost = int(self.config["max_query_cost"])
        if requested > max_cost:
            refuse_writes("MAX_COST_EXCEEDED")
            return respond(
                {
                    "errors": [
                        {
                            "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                            f"({max_cost}).\n\n"
                            "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
                            "cost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, "
                            "bulk operations should be used instead.\nSee "
                            "https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n",
                            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": max_cost},
                        }
                    ],
                    "extensions": {
                        "cost": {
                            "requestedQueryCost": requested,
                            "actualQueryCost": None,
                            "throttleStatus": self._throttle_status(),
                        }
                    },
                }
            )
        if self.bucket.take(requested) > 0:
            refuse_writes("THROTTLED")
            self.sandbox.throttles[(self.name, request.state.operation)] += 1
            return respond(self._throttled_body(requested))

        now = self.now()
        self._settle_jobs(now)
        context = _Context(version=served, scopes=scopes, now=now)
        result = execute(
            schema,
            document,
            root_value=None,
            context_value=context,
            variable_values=variables,
            operation_name=op_name,
            field_resolver=self._resolve_field,
        )
        actual = min(context.actual, requested)
        self.bucket.give_back(requested - actual)
        payload: dict[str, Any] = {}
        if result.errors:
            if result.data is None and all(e.path is None for e in result.errors):
                payload["errors"] = [shopify_variable_error(e, operation, variables) for e in result.errors]
                refuse_writes("INVALID_VARIABLE")
                self.bucket.give_back(actual)
                return respond(payload)
            payload["errors"] = [e.formatted for e in result.errors]
        self.sandbox.charged[(self.name, request.state.operation)] += actual
        payload["data"] = result.data
        payload["extensions"] = {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self._throttle_status(),
            }
        }
        if context.warnings:
            payload["extensions"]["search"] = context.warnings
        if is_mutation:
            errors_by_key = {e.path[0]: e for e in result.errors or () if e.path}
            for field_name, key in root_fields:
                outcome = context.outcomes.get(key)
                if outcome is None:
                    error = errors_by_key.get(key)
                    outcome = (error.extensions or {}).get("code", "ERROR") if error else "ERROR"
                self.record_write(request, body, 200, outcome, request_id=request_id, operation=field_name)
        return respond(payload)

    @staticmethod
    def _pick_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if name:
            return next((o for o in operations if o.name and o.name.value == name), None)
        return operations[0] if len(operations) == 1 else None

    @staticmethod
    def _root_fields(operation: OperationDefinitionNode) -> list[tuple[str, str]]:
        """(field name, response key) of the operation's top-level fields (inline fragments too)."""
        out = []

        def walk(selection_set):
            for sel in selection_set.selections:
                if isinstance(sel, FieldNode):
                    out.append((sel.name.value, (sel.alias or sel.name).value))
                elif isinstance(sel, InlineFragmentNode):
                    walk(sel.selection_set)

        walk(operation.selection_set)
        return out

    # -- query cost -------------------------------------------------------------------------
    def _requested_cost(
        self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode, variables: dict
    ) -> int:
        """Static worst case: objects 1, scalars and enums 0, connections 2 + size x node,
        abstract types the most expensive possibility, each mutation field 10."""
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        defaults = {
            d.variable.name.value: value_from_ast_untyped(d.default_value)
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        }

        def arg_value(node: FieldNode, name: str) -> Any:
            for arg in node.arguments or ():
                if arg.name.value == name:
                    if isinstance(arg.value, VariableNode):
                        var = arg.value.name.value
                        return variables.get(var, defaults.get(var))
                    return value_from_ast_untyped(arg.value)
            return None

        def fields_for(type_, selection_set, seen: frozenset = frozenset()) -> list[FieldNode]:
            out: list[FieldNode] = []
            if selection_set is None:
                return out
            for sel in selection_set.selections:
                if isinstance(sel, FieldNode):
                    out.append(sel)
                elif isinstance(sel, InlineFragmentNode):
                    if sel.type_condition is None or _applies(sel.type_condition.name.value, type_):
                        out.extend(fields_for(type_, sel.selection_set, seen))
                elif isinstance(sel, FragmentSpreadNode) and sel.name.value not in seen:
                    frag = fragments.get(sel.name.value)
                    if frag and _applies(frag.type_condition.name.value, type_):
                        out.extend(fields_for(type_, frag.selection_set, seen | {sel.name.value}))
            return out

        def _applies(condition: str, type_) -> bool:
            if condition == type_.name:
                return True
            return any(i.name == condition for i in getattr(type_, "interfaces", ()))

        def selection_cost(type_, selection_set) -> int:
            if is_abstract_type(type_):
                return max((selection_cost(t, selection_set) for t in schema.get_possible_types(type_)), default=0)
            total = 0
            for node in fields_for(type_, selection_set):
                total += field_cost(type_, node)
            return total

        def field_cost(parent, node: FieldNode) -> int:
            name = node.name.value
            if name.startswith("__"):
                return 0
            definition = parent.fields.get(name)
            if definition is None:
                return 0
            named = get_named_type(definition.type)
            if not is_composite_type(named):
                return 0
            if named.name.endswith("Connection"):
                size = arg_value(node, "first")
                if size is None:
                    size = arg_value(node, "last")
                size = size if isinstance(size, int) and size > 0 else 0
                node_type = named.fields["nodes"].type
                node_type = get_named_type(node_type)
                per_node = 0
                for sub in fields_for(named, node.selection_set):
                    if sub.name.value == "nodes":
                        per_node += 1 + selection_cost(node_type, sub.selection_set)
                    elif sub.name.value == "edges":
                        edge_type = get_named_type(named.fields["edges"].type)
                        for edge_field in fields_for(edge_type, sub.selection_set):
                            if edge_field.name.value == "node":
                                per_node += 1 + selection_cost(node_type, edge_field.selection_set)
                return 2 + size * per_node
            return 1 + selection_cost(named, node.selection_set)

        if operation.operation is OperationType.MUTATION:
            return MUTATION_COST * sum(
                1
                for n in fields_for(schema.mutation_type, operation.selection_set)
                if not n.name.value.startswith("__")
            )
        return selection_cost(schema.query_type, operation.selection_set)

    def _count_actual(self, info, value: Any) -> None:
        ctx: _Context = info.context
        if info.operation.operation is OperationType.MUTATION:
            if info.parent_type is info.schema.mutation_type:
                ctx.actual += MUTATION_COST
            return
        named = get_named_type(info.return_type)
        if not is_composite_type(named) or value is None:
            return
        if named.name.endswith("Connection"):
            ctx.actual += 2
        elif named.name.endswith("Edge") or named.name == "PageInfo":
            return
        elif info.parent_type.name.endswith("Connection") and info.field_name == "nodes":
            ctx.actual += len(value)
        elif isinstance(value, list):
            ctx.actual += 1 if value else 0
        else:
            ctx.actual += 1

    # -- execution ------------------------------------------------------------------------
    def _resolve_field(self, source, info, **args):
        resolver = self._resolvers.get((info.parent_type.name, info.field_name))
        if resolver is not None:
            value = resolver(source, info, **args)
        elif isinstance(source, dict) and info.field_name in source:
            value = source[info.field_name]
        elif not isinstance(source, dict) and hasattr(source, info.field_name):
            value = getattr(source, info.field_name)
        else:
            value = unmodeled_value(info.return_type)
        self._count_actual(info, value)
        return value

    def _build_resolvers(self) -> dict[tuple[str, str], Callable]:
        domain = self.config["shop_domain"]
        r: dict[tuple[str, str], Callable] = {
            ("QueryRoot", "shop"): lambda s, i: {
                "id": "gid://shopify/Shop/61000000",
                "name": "orderops sandbox",
                "myshopifyDomain": domain,
                "ianaTimezone": "Etc/UTC",
                "currencyCode": "USD",
                "__typename": "Shop",
            },
            ("QueryRoot", "order"): lambda s, i, id: self._visible_order(i.context, _gid_number(id, "Order")),
            # the scopes the token carries: what an app reads to see what the shop granted it
            ("QueryRoot", "currentAppInstallation"): lambda s, i: {
                "id": "gid://shopify/AppInstallation/5400002",
                "__typename": "AppInstallation",
                "accessScopes": [{"handle": h, "description": h} for h in sorted(i.context.scopes)],
            },
            # no order carries a custom id (a unique metafield) here, so only `id` finds one
            ("QueryRoot", "orderByIdentifier"): lambda s, i, identifier: (
                self._visible_order(i.context, _gid_number(identifier["id"], "Order")) if identifier.get("id") else None
            ),
            ("QueryRoot", "node"): lambda s, i, id: self._node(i.context, id),
            ("QueryRoot", "nodes"): lambda s, i, ids: [self._node(i.context, x) for x in ids],
            ("QueryRoot", "orders"): self._orders_field,
            ("QueryRoot", "ordersCount"): self._orders_count,
            ("QueryRoot", "job"): self._job_field,
            ("Job", "query"): lambda s, i: {},
            ("Mutation", "orderCancel"): self._order_cancel,
            ("Mutation", "orderUpdate"): self._order_update,
            ("Mutation", "tagsAdd"): lambda s, i, id, tags: self._tags(i, id, tags, add=True),
            ("Mutation", "tagsRemove"): lambda s, i, id, tags: self._tags(i, id, tags, add=False),
            ("Order", "id"): lambda o, i: o.gid,
            ("Order", "legacyResourceId"): lambda o, i: str(o.id),
            ("Order", "createdAt"): lambda o, i: o.created_at,
            ("Order", "updatedAt"): lambda o, i: o.updated_at,
            ("Order", "processedAt"): lambda o, i: o.processed_at,
            ("Order", "cancelledAt"): lambda o, i: o.cancelled_at,
            ("Order", "cancelReason"): lambda o, i: o.cancel_reason,
            ("Order", "cancellation"): lambda o, i: {"staffNote": o.staff_note} if o.cancelled_at else None,
            ("Order", "closed"): lambda o, i: o.closed_at is not None,
            ("Order", "closedAt"): lambda o, i: o.closed_at,
            ("Order", "confirmed"): lambda o, i: True,
            ("Order", "test"): lambda o, i: False,
            ("Order", "email"): lambda o, i: None,  # buyer PII is not simulated
            ("Order", "phone"): lambda o, i: None,
            ("Order", "currencyCode"): lambda o, i: "USD",
            ("Order", "displayFinancialStatus"): lambda o, i: o.financial_status,
            ("Order", "displayFulfillmentStatus"): lambda o, i: o.fulfillment_status,
            ("Order", "sourceName"): lambda o, i: o.source_name,
            ("Order", "sourceIdentifier"): lambda o, i: o.source_identifier,
            ("Order", "customAttributes"): lambda o, i: o.custom_attributes,
            ("Order", "channelInformation"): lambda o, i: self._channel(o),
            ("Order", "app"): lambda o, i: {
                "id": "gid://shopify/App/5400001",
                "name": CHANNEL["app"],
                "icon": {"url": "https://cdn.shopify.com/app-icons/tiktok.png", "altText": None},
            },
            ("Order", "fulfillments"): lambda o, i, first=None: (
                o.fulfillments[:first] if first is not None else o.fulfillments
            ),
            ("Order", "lineItems"): self._line_items_field,
            ("Fulfillment", "trackingInfo"): lambda f, i, first=None: (
                f["trackingInfo"][:first] if first is not None else f["trackingInfo"]
            ),
        }
        return r

    @staticmethod
    def _channel(order: ShopOrder) -> dict:
        return {
            "__typename": "ChannelInformation",
            "id": "gid://shopify/ChannelInformation/7100001",
            "channelId": "gid://shopify/Channel/7100001",
            "displayName": CHANNEL["channelName"],
            "app": {
                "__typename": "App",
                "id": "gid://shopify/App/5400001",
                "title": CHANNEL["app"],
                "handle": CHANNEL["handle"],
            },
            "channelDefinition": {
                "__typename": "ChannelDefinition",
                "id": "gid://shopify/ChannelDefinition/7200001",
                "handle": order.source_name or CHANNEL["handle"],
                "channelName": CHANNEL["channelName"],
                "subChannelName": CHANNEL["subChannelName"],
                "isMarketplace": True,
                "svgIcon": None,
            },
        }

    def _visible(self, ctx: _Context) -> list[ShopOrder]:
        """Orders the token may read: the last 60 days unless it has read_all_orders."""
        orders = sorted(self.orders.values(), key=lambda o: o.id)
        if "read_all_orders" in ctx.scopes:
            return orders
        return [o for o in orders if o.created_at >= ctx.now - SIXTY_DAYS]

    def _visible_order(self, ctx: _Context, number: int | None) -> ShopOrder | None:
        self._require(ctx, "read_orders", "read_marketplace_orders", field="order")
        order = self.orders.get(number) if number is not None else None
        if order is None:
            return None
        if "read_all_orders" not in ctx.scopes and order.created_at < ctx.now - SIXTY_DAYS:
            return None
        return order

    def _node(self, ctx: _Context, gid: str) -> Any:
        text = str(gid)
        _gid_number(text, "Order")  # raises for a malformed id
        kind, number = re.match(r"gid://shopify/(\w+)/(\d+)", text).groups()
        if kind == "Order":
            order = self._visible_order(ctx, int(number))
            return order
        if kind in ("Fulfillment", "LineItem"):
            for order in self._visible(ctx):
                for item in order.fulfillments if kind == "Fulfillment" else order.line_items:
                    if item["id"] == text.split("?")[0]:
                        return {**item, "__typename": kind}
        return None

    @staticmethod
    def _require(ctx: _Context, *any_of: str, field: str) -> None:
        if not ctx.scopes & set(any_of):
            needed = " or ".join(f"`{s}`" for s in any_of)
            raise GraphQLError(
                f"Access denied for {field} field. Required access: {needed} access scope.",
                extensions={
                    "code": "ACCESS_DENIED",
                    "documentation": "https://shopify.dev/api/usage/access-scopes",
                    "requiredAccess": f"{needed} access scope.",
                },
            )

    # -- orders query -----------------------------------------------------------------------
    SORT_VALUES: dict[str, tuple[type, Callable[[ShopOrder], Any]]] = {
        "ID": (int, lambda o: o.id),
        "RELEVANCE": (int, lambda o: o.id),
        "ORDER_NUMBER": (int, lambda o: o.number),
        "CREATED_AT": (str, lambda o: format_time(o.created_at)),
        "UPDATED_AT": (str, lambda o: format_time(o.updated_at)),
        "PROCESSED_AT": (str, lambda o: format_time(o.processed_at)),
    }

    def _search(self, ctx: _Context, query: str | None, path: list[str]) -> list[ShopOrder]:
        orders = self._visible(ctx)
        if not query or not query.strip():
            return orders
        tree = parse_search(query)
        warnings: list[dict] = []
        pruned = self._prune(tree, warnings, ctx)
        if warnings:
            ctx.warnings.append({"path": path, "query": query, "parsed": describe_search(tree), "warnings": warnings})
        if pruned is None:
            return orders
        return [o for o in orders if self._matches(pruned, o, ctx)]

    KNOWN_FIELDS = frozenset(
        {
            "name",
            "source_identifier",
            "source_name",
            "channel",
            "status",
            "tag",
            "tag_not",
            "created_at",
            "updated_at",
            "processed_at",
            "id",
            "financial_status",
            "fulfillment_status",
            "sku",
            "test",
            "email",
        }
    )
    TIME_FIELDS = frozenset({"created_at", "updated_at", "processed_at"})

    def _prune(self, node: Any, warnings: list, ctx: _Context) -> Any:
        """Drop terms on unknown fields (Shopify ignores them and says so in a warning)."""
        if node is None:
            return None
        if isinstance(node, Op):
            kept = [k for k in (self._prune(i, warnings, ctx) for i in node.items) if k is not None]
            if not kept:
                return None
            if node.kind == "not":
                return Op("not", kept)
            return kept[0] if len(kept) == 1 else Op(node.kind, kept)
        if node.field is not None and node.field not in self.KNOWN_FIELDS:
            warnings.append(
                {"field": node.field, "message": "Invalid search field for this query.", "code": "invalid_field"}
            )
            return None
        if node.field in self.TIME_FIELDS and node.value != "*" and _time_range(node.value, ctx.now) is None:
            warnings.append(
                {
                    "field": node.field,
                    "message": f"Invalid timestamp for query filter `{node.field}`.",
                    "code": "invalid_value",
                }
            )
            return None
        allowed = _FILTER_VALUES.get(node.field)
        if allowed is not None and node.value != "*" and not any(v.lower() in allowed for v in node.value.split(",")):
            # a value the filter does not know (`status:any`) is ignored like an unknown field, not matched
            warnings.append(
                {
                    "field": node.field,
                    "message": f"Invalid value for query filter `{node.field}`.",
                    "code": "invalid_value",
                }
            )
            return None
        return node

    def _matches(self, node: Any, order: ShopOrder, ctx: _Context) -> bool:
        if isinstance(node, Op):
            if node.kind == "and":
                return all(self._matches(i, order, ctx) for i in node.items)
            if node.kind == "or":
                return any(self._matches(i, order, ctx) for i in node.items)
            return not self._matches(node.items[0], order, ctx)
        return _term_matches(node, order, ctx.now)

    def _orders_field(
        self,
        source,
        info,
        first=None,
        after=None,
        last=None,
        before=None,
        reverse=False,
        sortKey=None,
        query=None,
        savedSearchId=None,
    ):
        ctx: _Context = info.context
        self._require(ctx, "read_orders", "read_marketplace_orders", field="orders")
        path = [info.path.key] if info.path else ["orders"]
        matched = self._search(ctx, query, path)
        # keys the simulator cannot order by (customer name, totals...) fall back to the id order
        value_type, value_of = self.SORT_VALUES.get(sortKey or "PROCESSED_AT", self.SORT_VALUES["ID"])
        matched.sort(key=lambda o: (value_of(o), o.id), reverse=bool(reverse))
        return paginate(
            matched,
            lambda o: (value_of(o), o.id),
            value_type,
            descending=bool(reverse),
            first=first,
            after=after,
            last=last,
            before=before,
            max_page=int(self.config["max_page_size"]),
            field_name=info.field_name,
        )

    def _orders_count(self, source, info, query=None, limit=10000):
        ctx: _Context = info.context
        self._require(ctx, "read_orders", "read_marketplace_orders", field="ordersCount")
        count = len(self._search(ctx, query, [info.path.key]))
        if limit is not None and count > limit:
            return {"count": limit, "precision": "AT_LEAST"}
        return {"count": count, "precision": "EXACT"}

    def _line_items_field(self, order: ShopOrder, info, first=None, after=None, last=None, before=None, reverse=False):
        items = [dict(item, __typename="LineItem", _index=k) for k, item in enumerate(order.line_items)]
        if reverse:
            items.reverse()
        return paginate(
            items,
            lambda x: (x["_index"], x["_index"]),
            int,
            descending=bool(reverse),
            first=first,
            after=after,
            last=last,
            before=before,
            max_page=int(self.config["max_page_size"]),
            field_name="lineItems",
        )

    # -- jobs -------------------------------------------------------------------------------
    def _settle_jobs(self, now: datetime) -> None:
        for job in self.jobs.values():
            if not job.done and now >= job.ready_at:
                self._finish(job, job.ready_at)

    def _finish(self, job: CancelJob, when: datetime) -> None:
        job.done, job.done_at = True, when
        order = self.orders.get(job.order_id)
        if order is None or order.cancelled_at is not None:
            return
        order.cancelled_at = order.closed_at = when
        order.updated_at = max(order.updated_at, when)
        order.cancel_reason = job.reason
        order.staff_note = job.staff_note
        order.restocked = job.restock
        order.refund = job.refund
        order.cancel_job = None
        order.financial_status = self._cancelled_financial_status(order.financial_status, job.refund)
        self._emit("orders/cancelled", order)
        if self.config["channel_copies_cancel_to_tiktok"] and "tiktok" in self.sandbox.platforms:
            self.sandbox.platforms["tiktok"].cancel_from_channel(order.tiktok_id)

    def _job_field(self, source, info, id):
        text = str(id)
        match = re.fullmatch(r"gid://shopify/Job/([\w-]+)", text)
        if not match:
            raise GraphQLError(f"Invalid global id '{text}'", extensions={"code": "argumentLiteralsIncompatible"})
        job = self.jobs.get(text)
        if job is None:
            return None
        if not job.done:
            job.polls += 1
            if job.polls >= int(self.config["cancel_job_polls"]):
                self._finish(job, min(info.context.now, job.ready_at))
        return {"id": job.id, "done": job.done}

    # -- mutations --------------------------------------------------------------------------
    def _order_cancel(
        self, source, info, orderId, reason, restock, notifyCustomer=False, staffNote=None, **refund_args
    ):
        ctx: _Context = info.context
        key = info.path.key
        self._require(ctx, "write_orders", "write_marketplace_orders", field="orderCancel")

        def refused(field_name: str, message: str, code: str) -> dict:
            ctx.outcomes[key] = code
            return {
                "job": None,
                "orderCancelUserErrors": [{"field": [field_name], "message": message, "code": code}],
                "userErrors": [{"field": [field_name], "message": message}],
            }

        number = _gid_number(orderId, "Order")
        if staffNote is not None and len(staffNote) > 255:
            return refused("staffNote", "Staff note is too long. Maximum length is 255 characters.", "INVALID")
        has_refund = "refund" in refund_args and refund_args["refund"] is not None
        method = refund_args.get("refundMethod")
        if has_refund and method is not None:
            return refused("refund", "Only one of the arguments `refund` or `refund_method` is allowed.", "INVALID")
        if method is not None:
            if method.get("storeCreditRefund") is not None:
                expires = method["storeCreditRefund"].get("expiresAt")
                if expires and parse_time(expires, "expiresAt") <= ctx.now:
                    return refused(
                        "refundMethod",
                        "Store credit expiry date must be in the future.",
                        "STORE_CREDIT_REFUND_EXPIRATION_IN_PAST",
                    )
                refund = "store_credit"
            else:
                refund = "original" if method.get("originalPaymentMethodsRefund") else "none"
        else:
            refund = "original" if refund_args.get("refund") else "none"
        order = self._visible_order(ctx, number)
        if order is None:
            return refused("orderId", "Order does not exist", "NOT_FOUND")
        if order.cancelled_at is not None:
            return refused("orderId", "Cannot cancel an order that has already been canceled", "INVALID")
        if order.cancel_job is not None:
            return refused("orderId", "Order cancellation is already in progress", "INVALID")
        if order.fulfillment_status in ("FULFILLED", "PARTIALLY_FULFILLED"):
            return refused(
                "orderId", "Cannot cancel an order with fulfillments. Cancel the fulfillments first.", "INVALID"
            )
        job_id = f"gid://shopify/Job/{uuid.uuid4()}"
        delay = self.sandbox.settings.duration(self.name, "cancel_job", 5.0)
        job = CancelJob(
            id=job_id,
            order_id=order.id,
            created=ctx.now,
            ready_at=ctx.now + timedelta(seconds=delay),
            reason=reason,
            refund=refund,
            restock=bool(restock),
            staff_note=staffNote,
        )
        self.jobs[job_id] = job
        order.cancel_job = job_id
        ctx.outcomes[key] = "ok"
        return {"job": {"id": job_id, "done": False}, "orderCancelUserErrors": [], "userErrors": []}

    def _order_update(self, source, info, input):
        ctx: _Context = info.context
        key = info.path.key
        self._require(ctx, "write_orders", "write_marketplace_orders", field="orderUpdate")
        order = self._visible_order(ctx, _gid_number(input["id"], "Order"))
        if order is None:
            ctx.outcomes[key] = "NOT_FOUND"
            return {"order": None, "userErrors": [{"field": ["id"], "message": "Order does not exist"}]}
        if "tags" in input and input["tags"] is not None:
            tags = _clean_tags(input["tags"])
            problem = _tags_problem(tags, ["tags"])
            if problem:
                ctx.outcomes[key] = "INVALID"
                return {"order": None, "userErrors": [problem]}
            order.tags = tags
        if "note" in input:
            order.note = input["note"]
        if input.get("customAttributes") is not None:
            order.custom_attributes = [{"key": a["key"], "value": a["value"]} for a in input["customAttributes"]]
        order.updated_at = max(order.updated_at, ctx.now)
        self._emit("orders/updated", order)
        ctx.outcomes[key] = "ok"
        return {"order": order, "userErrors": []}

    def _tags(self, info, gid, tags, add: bool) -> dict:
        ctx: _Context = info.context
        key = info.path.key
        field_name = info.field_name
        self._require(ctx, "write_orders", "write_marketplace_orders", field=field_name)
        text = str(gid)
        _gid_number(text, "Order")  # raises for a malformed id
        kind = re.match(r"gid://shopify/(\w+)/", text).group(1)
        order = self._visible_order(ctx, _gid_number(text, "Order")) if kind == "Order" else None
        if order is None:
            ctx.outcomes[key] = "NOT_FOUND"
            return {"node": None, "userErrors": [{"field": ["id"], "message": f"{kind} does not exist"}]}
        wanted = _clean_tags(tags)
        if add:
            merged = list(order.tags)
            lowered = {t.lower() for t in merged}
            for tag in wanted:
                if tag.lower() not in lowered:
                    merged.append(tag)
                    lowered.add(tag.lower())
            problem = _tags_problem(merged, ["tags"])
            if problem:
                ctx.outcomes[key] = "INVALID"
                return {"node": None, "userErrors": [problem]}
            order.tags = merged
        else:
            drop = {t.lower() for t in wanted}
            order.tags = [t for t in order.tags if t.lower() not in drop]
        order.updated_at = max(order.updated_at, ctx.now)
        self._emit("orders/updated", order)
        ctx.outcomes[key] = "ok"
        return {"node": order, "userErrors": []}


def _clean_tags(tags: list[str]) -> list[str]:
    """Split comma lists, trim, drop empties and case-insensitive duplicates (first spelling wins)."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in tags:
        for tag in str(raw).split(","):
            tag = tag.strip()
            if tag and tag.lower() not in seen:
                seen.add(tag.lower())
                out.append(tag)
    return out


def _tags_problem(tags: list[str], field_path: list[str]) -> dict | None:
    if len(tags) > 250:
        return {"field": field_path, "message": "Tags cannot be more than 250"}
    long = next((t for t in tags if len(t) > 255), None)
    if long is not None:
        return {"field": field_path, "message": "Tags is too long (maximum is 255 characters)"}
    return None


# ---------------------------------------------------------------------------------------------
# Term evaluation
# ---------------------------------------------------------------------------------------------


def _time_range(value: str, now: datetime) -> tuple[datetime, datetime] | None:
    """[start, end) named by a search value: an instant, a day, a year, or `now`."""
    text = value.strip()
    if text.lower() == "now":
        return now, now + timedelta(seconds=1)
    if re.fullmatch(r"\d{4}", text):
        start = datetime(int(text), 1, 1, tzinfo=timezone.utc)
        return start, start.replace(year=start.year + 1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            start = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
        return start, start + timedelta(days=1)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)  # the sandbox shop's timezone is UTC
    moment = moment.astimezone(timezone.utc)
    return moment, moment + timedelta(seconds=1)


def _compare_range(moment: datetime, comparator: str, start: datetime, end: datetime) -> bool:
    if comparator == ">":
        return moment >= end
    if comparator == ">=":
        return moment >= start
    if comparator == "<":
        return moment < start
    if comparator == "<=":
        return moment < end
    return start <= moment < end


def _compare_numbers(left: int, comparator: str, right: int) -> bool:
    return {":": left == right, "<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[
        comparator
    ]


def _string_match(candidate: str | None, value: str) -> bool:
    if candidate is None:
        return False
    if value.endswith("*"):
        return candidate.lower().startswith(value[:-1].lower())
    return candidate.lower() == value.lower()


_STATUS = {
    "open": lambda o: o.closed_at is None,
    "not_closed": lambda o: o.closed_at is None,
    "closed": lambda o: o.closed_at is not None,
    "cancelled": lambda o: o.cancelled_at is not None,
}
_FULFILLMENT = {
    "unfulfilled": ("UNFULFILLED",),
    "unshipped": ("UNFULFILLED",),
    "fulfilled": ("FULFILLED",),
    "shipped": ("FULFILLED",),
    "partial": ("PARTIALLY_FULFILLED",),
    "scheduled": ("SCHEDULED",),
    "on_hold": ("ON_HOLD",),
    "request_declined": ("REQUEST_DECLINED",),
}
_FINANCIAL = ("pending", "authorized", "partially_paid", "paid", "partially_refunded", "refunded", "voided", "expired")
# The filters whose values form a closed set (the schema's `orders(query:)` table).
_FILTER_VALUES = {
    "status": frozenset(_STATUS),
    "fulfillment_status": frozenset(_FULFILLMENT),
    "financial_status": frozenset(_FINANCIAL),
}


def _term_matches(term: Term, order: ShopOrder, now: datetime) -> bool:
    value = term.value
    f = term.field
    if f is None:
        return _free_text(order, value, term.quoted)
    if value == "*" and not term.quoted:  # exists query
        present = {
            "source_identifier": order.source_identifier,
            "source_name": order.source_name,
            "tag": order.tags or None,
            "email": None,
            "name": order.name,
        }
        return bool(present.get(f, True))
    values = [v for v in value.split(",")] if term.comparator == ":" and not term.quoted else [value]
    if f in ("created_at", "updated_at", "processed_at"):
        moment = {"created_at": order.created_at, "updated_at": order.updated_at, "processed_at": order.processed_at}[f]
        span = _time_range(value, now)
        return span is not None and _compare_range(moment, term.comparator, *span)
    if f == "id":
        try:
            wanted = int(value.rsplit("/", 1)[-1])
        except ValueError:
            return False
        return _compare_numbers(order.id, term.comparator, wanted)
    if f == "name":
        mine = order.name.lstrip("#")
        if term.comparator != ":":
            theirs = value.lstrip("#")
            return mine.isdigit() and theirs.isdigit() and _compare_numbers(int(mine), term.comparator, int(theirs))
        return any(_string_match(mine, v.lstrip("#")) for v in values)
    if term.comparator != ":":
        return False
    if f == "source_identifier":
        return any(_string_match(order.source_identifier, v) for v in values)
    if f == "source_name":
        return any(_string_match(order.source_name, v) for v in values)
    if f == "channel":
        return any(_string_match(order.source_name or CHANNEL["handle"], v) for v in values)
    if f == "tag":
        return any(_string_match(t, v) for t in order.tags for v in values)
    if f == "tag_not":
        return not any(_string_match(t, v) for t in order.tags for v in values)
    if f == "status":
        return any(_STATUS.get(v.lower(), lambda o: False)(order) for v in values)
    if f == "financial_status":
        return any(order.financial_status == v.upper() for v in values if v.lower() in _FINANCIAL)
    if f == "fulfillment_status":
        return any(order.fulfillment_status in _FULFILLMENT.get(v.lower(), ()) for v in values)
    if f == "sku":
        return any(_string_match(line["sku"], v) for line in order.line_items for v in values)
    if f == "test":
        return value.lower() == "false"
    return False  # email: the sandbox keeps no buyer emails


def _free_text(order: ShopOrder, value: str, quoted: bool) -> bool:
    """Default search: order name and number, tags, line-item SKUs and titles (not note or attributes)."""
    haystack = (
        [order.name, order.name.lstrip("#"), str(order.number)]
        + order.tags
        + [line["sku"] for line in order.line_items]
        + [line["title"] for line in order.line_items]
    )
    if quoted:
        return any(value.lower() in h.lower() for h in haystack)
    words = [w for h in haystack for w in re.split(r"[\s,]+", h) if w]
    return any(_string_match(w, value) for w in words)
