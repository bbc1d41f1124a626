"""Carrying out decided actions through the ledger, with reconciliation before any retry.

Each action kind has a `perform` (the platform write) and a `reconcile` (read the remote state:
did an earlier attempt already take effect?). `Executor.run` claims the ledger row, reconciles
when an earlier attempt may have reached the platform, performs, and records the outcome. An
ambiguous failure (timeout or 5xx after the request was sent) leaves the row in flight with an
expired lease, so the next attempt reconciles first and nothing happens twice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include.act.ledger import DONE_STATES, FAILED, HELD, IN_FLIGHT, SKIPPED, SUCCEEDED, Claim, Ledger, RunContext
from include.decide.enums import (
    AMAZON_ORDER_STATUSES,
    SHIPBOB_ORDER_STATUSES,
    TIKTOK_CANCEL_STATUSES,
    TIKTOK_ORDER_STATUSES,
    status_of,
)
from include.decide.model import APPROVE_CANCELLATION, REJECT_CANCELLATION, VERIFY_FULFILLMENT_CANCEL
from include.extract import staging
from orderops_provider.base import BusinessError, MalformedResponseError, NotFoundError, PlatformError, Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    key: str
    kind: str
    state: str  # a ledger state, or HELD (another runner has it) or WAITING (its saga step before)
    detail: str = ""


class NotDone(Exception):
    """Reconciliation found no trace of the action on the platform: it may be performed."""


def _reply(data: Any = None, request_id: str | None = None) -> Reply:
    return Reply(data=data, request_id=request_id)


def as_reply(result: Any) -> Reply:
    """Client results come as Reply or as a small result dataclass; the ledger stores either."""
    if isinstance(result, Reply):
        return result
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        request_id = getattr(result, "request_id", None) or next(iter(getattr(result, "request_ids", ()) or ()), None)
        return Reply(data=dataclasses.asdict(result), request_id=request_id)
    return Reply(data=result)


def _received(record: Any, key: str) -> datetime | None:
    """When a fulfiller received its order, or None when that does not read (then it counts as recent)."""
    try:
        return staging.iso_time(record, key, "fulfillment order", required=False) if isinstance(record, dict) else None
    except staging.BadRecord:
        return None


class Handlers:
    """perform/reconcile per action kind, over the platform clients of one shop."""

    def __init__(self, platforms):
        self.platforms = platforms

    # post_tracking ---------------------------------------------------------------------------
    def perform_post_tracking(self, p: dict) -> Reply:
        return self.platforms.tiktok().mark_package_shipped(
            p["tiktok_order_id"],
            p["tracking_number"],
            p["shipping_provider_id"],
            order_line_item_ids=p.get("order_line_item_ids") or None,
        )

    def reconcile_post_tracking(self, p: dict) -> Reply:
        orders = self.platforms.tiktok().get_orders([p["tiktok_order_id"]])
        if not orders:
            raise NotFoundError("tiktok", "get_orders", f"order {p['tiktok_order_id']} not found")
        order = orders[0]
        numbers = {order.get("tracking_number") or ""} | {
            line.get("tracking_number") or "" for line in order.get("line_items", [])
        }
        if p["tracking_number"] in numbers:
            return _reply({"reconciled": True, "status": order.get("status")})
        if numbers - {""}:
            raise BusinessError(
                "tiktok",
                "post_tracking",
                "TikTok already carries other tracking; not overwritten",
                code="already_has_tracking",
            )
        if status_of(order, "status", TIKTOK_ORDER_STATUSES) == "CANCELLED":
            raise BusinessError("tiktok", "post_tracking", "order is cancelled on TikTok", code="order_cancelled")
        raise NotDone

    # add_note ----------------------------------------------------------------------------------
    def perform_add_note(self, p: dict) -> Reply:
        return self.platforms.shopify().add_note_and_tags(p["shopify_order_id"], p["note"], [p["tag"]])

    def reconcile_add_note(self, p: dict) -> Reply:
        order = self.platforms.shopify().order(p["shopify_order_id"])
        if p["tag"] in (order.get("tags") or []) and p["note"] in (order.get("note") or ""):
            return _reply({"reconciled": True})
        raise NotDone

    # cancel_fulfillment ------------------------------------------------------------------------
    def perform_cancel_fulfillment(self, p: dict) -> Reply:
        if p["fulfiller"] == "amazon_mcf":
            return self.platforms.amazon_mcf().cancel_fulfillment_order(p["fulfillment_order_id"])
        from orderops_provider.shipbob import CancelOutcome

        order_id = int(p["fulfillment_order_id"])
        reply = self.platforms.shipbob().cancel_order(order_id)
        # ShipBob answers 200 even when shipments past picking could not be cancelled
        outcome = CancelOutcome.from_reply(order_id, reply)
        if not outcome.fully_cancelled:
            raise BusinessError(
                "shipbob",
                "cancel_order",
                f"order {order_id}: {outcome.status}; refused {outcome.refused}",
                code="not_cancellable",
                request_id=reply.request_id,
            )
        return reply

    def fulfillment_status(self, p: dict) -> str:
        """The fulfiller's order status in its vocabulary's spelling (a platform may send any case)."""
        if p["fulfiller"] == "amazon_mcf":
            order = self.platforms.amazon_mcf().get_fulfillment_order(p["fulfillment_order_id"])
            status = status_of(
                order.get("fulfillmentOrder") if isinstance(order, dict) else None,
                "fulfillmentOrderStatus",
                AMAZON_ORDER_STATUSES,
            )
        else:
            order = self.platforms.shipbob().order(int(p["fulfillment_order_id"]))
            status = status_of(order, "status", SHIPBOB_ORDER_STATUSES)
        if status is None:
            raise MalformedResponseError(
                p["fulfiller"],
                "fulfillment_status",
                f"fulfillment order {p['fulfillment_order_id']} read without its status",
            )
        return status

    def reconcile_cancel_fulfillment(self, p: dict) -> Reply:
        status = self.fulfillment_status(p)
        if status == "Cancelled":
            return _reply({"reconciled": True, "status": status})
        raise NotDone

    # verify_fulfillment_cancel: a read, once per run while the saga waits ------------------------
    def perform_verify_fulfillment_cancel(self, p: dict) -> Reply:
        status = self.fulfillment_status(p)
        if status != "Cancelled":
            raise BusinessError(
                p["fulfiller"],
                "verify_cancel",
                f"fulfillment order {p['fulfillment_order_id']} is {status}",
                code="not_cancelled_yet",
            )
        return _reply({"status": status})

    def reconcile_verify_fulfillment_cancel(self, p: dict) -> Reply:
        raise NotDone

    # cancel_shopify_order ----------------------------------------------------------------------
    def perform_cancel_shopify_order(self, p: dict) -> Reply:
        self._confirm_no_open_fulfillment(p)
        return self.platforms.shopify().cancel_order_and_wait(
            p["shopify_order_id"],
            reason=p["reason"],
            refund_method=p["refund_method"],
            restock=p["restock"],
            notify_customer=p["notify_customer"],
            staff_note=p.get("staff_note"),
        )

    def _confirm_no_open_fulfillment(self, p: dict) -> None:
        """The first write of a cancellation (`fulfillment_keys` in its request) rests on nothing of
        the order still going to ship: a listing that left a fulfillment order out, or one made after
        the listing, would cancel an order that ships. Each configured fulfiller is asked by the
        order's own ids right before the write; one not Cancelled, received since the order was
        placed (an older one under the same number is another order), stops it."""
        keys = p.get("fulfillment_keys")
        if not keys:
            return
        placed_at = datetime.fromisoformat(p["placed_at"])
        for fulfiller in self.platforms.settings.fulfillers:
            for order_id, status, received in self._fulfillment_orders_under(fulfiller, keys):
                if status != "Cancelled" and (received is None or received >= placed_at):
                    raise BusinessError(
                        fulfiller,
                        "confirm_no_fulfillment",
                        f"{fulfiller} fulfillment order {order_id} is {status}, not cancelled: "
                        "not approved, not refunded",
                        code="fulfillment_order_found",
                    )

    def _fulfillment_orders_under(
        self, fulfiller: str, keys: list[str]
    ) -> list[tuple[str, str | None, datetime | None]]:
        """(id, status, received) of the fulfiller's orders filed under any of `keys`."""
        if fulfiller == "amazon_mcf":
            client, found = self.platforms.amazon_mcf(), []
            for key in keys:
                try:
                    payload = client.get_fulfillment_order(key)
                except (NotFoundError, ValueError):  # ValueError: not a possible sellerFulfillmentOrderId
                    continue
                order = payload.get("fulfillmentOrder") if isinstance(payload, dict) else None
                found.append(
                    (
                        key,
                        status_of(order, "fulfillmentOrderStatus", AMAZON_ORDER_STATUSES),
                        _received(order, "receivedDate"),
                    )
                )
            return found
        usable = [k for k in keys if "," not in k]  # ShipBob's ReferenceIds is a comma-separated list
        return [
            (str(o.get("id")), status_of(o, "status", SHIPBOB_ORDER_STATUSES), _received(o, "created_date"))
            for o in (self.platforms.shipbob().orders(reference_ids=usable) if usable else ())
            if isinstance(o, dict)
        ]

    def reconcile_cancel_shopify_order(self, p: dict) -> Reply:
        order = self.platforms.shopify().order(p["shopify_order_id"])
        if order.get("cancelledAt"):
            return _reply({"reconciled": True, "cancelledAt": order["cancelledAt"]})
        raise NotDone

    # approve / reject: TikTok honours the idempotency key; a recovering attempt still reads first --
    def perform_approve_cancellation(self, p: dict, key: str) -> Reply:
        self._confirm_no_open_fulfillment(p)
        return self.platforms.tiktok().approve_cancellation(p["cancel_id"], idempotency_key=key)

    def perform_reject_cancellation(self, p: dict, key: str) -> Reply:
        return self.platforms.tiktok().reject_cancellation(p["cancel_id"], p["reject_reason"], idempotency_key=key)

    def _cancellation_status(self, p: dict) -> str:
        found = list(self.platforms.tiktok().search_cancellations({"cancel_ids": [p["cancel_id"]]}))
        if not found:
            raise NotFoundError("tiktok", "search_cancellations", f"cancellation {p['cancel_id']} not found")
        return status_of(found[0], "cancel_status", TIKTOK_CANCEL_STATUSES) or ""

    def reconcile_approve_cancellation(self, p: dict) -> Reply:
        status = self._cancellation_status(p)
        if status in ("CANCELLATION_REQUEST_SUCCESS", "CANCELLATION_REQUEST_COMPLETE"):
            return _reply({"reconciled": True, "cancel_status": status})
        if status == "CANCELLATION_REQUEST_PENDING":
            raise NotDone
        raise BusinessError("tiktok", "approve_cancellation", f"the request is {status}", code="cancellation_closed")

    def reconcile_reject_cancellation(self, p: dict) -> Reply:
        status = self._cancellation_status(p)
        if status == "CANCELLATION_REQUEST_CANCEL":
            return _reply({"reconciled": True, "cancel_status": status})
        if status == "CANCELLATION_REQUEST_PENDING":
            raise NotDone
        raise BusinessError("tiktok", "reject_cancellation", f"the request is {status}", code="cancellation_closed")

    # escalate: recorded in the ledger, listed in reports and the UI ----------------------------
    def perform_escalate(self, p: dict) -> Reply:
        return _reply({"escalated": p["reason_code"], "detail": p["detail"]})


KEYED = {APPROVE_CANCELLATION, REJECT_CANCELLATION}
# Business refusals that mean "already in the state we wanted": reconcile instead of failing.
ALREADY_DONE_HINTS = (
    "DuplicateCancelRequest",
    "already been canceled",
    "already cancelled",
    "already shipped",
    "21019002",
)


class Executor:
    def __init__(self, ledger: Ledger, ctx: RunContext, handlers: Handlers):
        self.ledger = ledger
        self.ctx = ctx
        self.handlers = handlers

    def _call(self, kind: str, verb: str, params: dict, key: str) -> Reply:
        fn: Callable = getattr(self.handlers, f"{verb}_{kind}")
        return as_reply(fn(params, key) if verb == "perform" and kind in KEYED else fn(params))

    def run(self, row: dict) -> Outcome:
        key, kind, params = row["idempotency_key"], row["kind"], row["request"]
        claim = self.ledger.claim(self.ctx, key)
        if claim is None:
            state = self.ledger.state_of(self.ctx.shop, key)
            return Outcome(key, kind, state if state in DONE_STATES else HELD, "not claimed")
        # Keyed writes are read first too: how long TikTok honours an idempotency key is not documented.
        if claim.recovering:
            try:
                reply = self._call(kind, "reconcile", params, key)
                return self._finish(claim, kind, SUCCEEDED, reply, "reconciled: an earlier attempt took effect")
            except NotDone:
                pass
            except BusinessError as exc:
                return self._finish(claim, kind, SKIPPED, None, f"reconciled: {exc.platform_message}")
            except Exception as exc:  # a platform error or anything else: the outcome stays unknown
                return self._leave_in_flight(claim, kind, exc)
        try:
            reply = self._call(kind, "perform", params, key)
        except BusinessError as exc:
            if any(hint in str(exc) for hint in ALREADY_DONE_HINTS) and kind not in KEYED:
                try:
                    reply = self._call(kind, "reconcile", params, key)
                    return self._finish(claim, kind, SUCCEEDED, reply, f"already done: {exc.platform_message}")
                except (NotDone, PlatformError):
                    pass
            return self._finish(claim, kind, FAILED, None, str(exc), exc.request_id)
        except PlatformError as exc:
            if exc.retryable:
                return self._leave_in_flight(claim, kind, exc)
            return self._finish(claim, kind, FAILED, None, str(exc), exc.request_id)
        except Exception as exc:
            # not a platform's answer (a wrong-shaped reply, a bug): whether the write happened is
            # unknown, so the row records the error and the next attempt reads the remote state first
            log.exception("%s %s: %s after the claim", kind, key, type(exc).__name__)
            return self._leave_in_flight(claim, kind, exc)
        return self._finish(claim, kind, SUCCEEDED, reply, "")

    def settle(self, row: dict) -> Outcome:
        """Record what became of an action that no decision asks for any more, read from the platform
        and never written to it: one an earlier attempt left in flight (often the situation moved on
        because that very attempt took effect), or a fulfiller-cancel check the saga no longer needs
        (the cancel showed in the extracted data). Without this such rows would stay open forever."""
        key, kind, params = row["idempotency_key"], row["kind"], row["request"]
        claim = self.ledger.claim(self.ctx, key, stale_only=row["state"] == IN_FLIGHT)
        if claim is None:
            return Outcome(key, kind, HELD, "not claimed")
        try:
            if kind == VERIFY_FULFILLMENT_CANCEL:
                reply = self._call(kind, "perform", params, key)
                return self._finish(claim, kind, SUCCEEDED, reply, "settled: the fulfiller shows the order cancelled")
            reply = self._call(kind, "reconcile", params, key)
            return self._finish(claim, kind, SUCCEEDED, reply, "settled: an earlier attempt took effect")
        except NotDone:
            # failed, not skipped: a later decision with the same key must still be able to carry it out
            return self._finish(
                claim,
                kind,
                FAILED,
                None,
                "settled: the earlier attempt did not take effect and no decision asks for it now; not sent again",
            )
        except BusinessError as exc:
            if kind == VERIFY_FULFILLMENT_CANCEL:  # never "skipped": that would count as verified
                return self._finish(
                    claim, kind, FAILED, None, f"settled: {exc.platform_message}; no decision asks to verify it now"
                )
            return self._finish(claim, kind, SKIPPED, None, f"settled: {exc.platform_message}")
        except Exception as exc:
            return self._leave_in_flight(claim, kind, exc)

    def _finish(
        self, claim: Claim, kind: str, state: str, reply: Reply | None, detail: str, request_id: str | None = None
    ) -> Outcome:
        self.ledger.finish(
            claim,
            state,
            response=reply.data if reply else None,
            request_id=(reply.request_id if reply else None) or request_id,
            detail=detail or None,
            acted_at=self.ctx.now,
        )
        return Outcome(claim.key, kind, state, detail)

    def _leave_in_flight(self, claim: Claim, kind: str, exc: Exception) -> Outcome:
        """Outcome unknown: the next attempt must read the remote state first."""
        error = str(exc) if isinstance(exc, PlatformError) else f"{type(exc).__name__}: {exc}"
        self.ledger.finish(claim, IN_FLIGHT, detail=f"outcome unknown, reconcile before retry: {error}")
        self.ledger.expire_lease(claim)
        return Outcome(claim.key, kind, IN_FLIGHT, str(exc))


def log_outcome(outcome: Outcome) -> dict:
    """Log one action's outcome (a warning unless it is over) and return it for the task's result."""
    (log.info if outcome.state in DONE_STATES else log.warning)(
        "%-22s %-9s %s %s", outcome.kind, outcome.state, outcome.key, outcome.detail
    )
    return {"key": outcome.key, "kind": outcome.kind, "state": outcome.state, "detail": outcome.detail}
