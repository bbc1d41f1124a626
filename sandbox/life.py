"""A shop that lives through time, and the ground truth of what happened to every order.

`ShopLife` plans a stream of orders from a seed (N a day on a daily curve) and, as the sandbox
clock passes each planned moment, makes it happen on the platform simulators: the order is paid
on TikTok (ON_HOLD for an hour, then AWAITING_SHIPMENT), the channel app copies it into Shopify,
the Shopify app hands it to Amazon MCF or ShipBob, the fulfiller moves it through its states with
latencies of its own (some stall for days, some fail), buyers ask to cancel at random moments,
TikTok-label and TikTok-fulfilled orders get their tracking from TikTok itself, and TikTok
auto-cancels what is not shipped by `shipping_due_time`. orderops sees all of it only through the
four APIs.

`truth()` reads the simulators' own records (who put tracking on TikTok and when, who answered each
cancellation request and when, when the fulfiller shipped) and computes per order and per day the
figures TikTok computes. Nothing in orderops reads it: it exists to check what orderops reports.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import math
import random
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sandbox.generate import FULFILLER_SHARE, ID_PLACES, SKUS, _Ids, _pick, tracking_number
from sandbox.scenario import ScenarioOrder, format_time

# Share of the day's orders placed in each hour (UTC; evening-heavy US shopping).
ARRIVAL_CURVE = (3, 2, 1.5, 1, 1, 1, 1.5, 2, 3, 4, 5, 5.5, 6, 6, 6, 6, 6.5, 7, 7.5, 8, 7, 6, 5, 4)
DAY = timedelta(days=1)
# The carrier's first scan after the fulfiller ships, per carrier (normalised name): (median minutes,
# share of parcels that wait for a later pickup, 12-24 h). Carriers not named are regional ones.
SCAN_LAGS: dict[str, tuple[float, float]] = {
    "ups": (90.0, 0.02),
    "fedex": (120.0, 0.03),
    "dhlexpress": (120.0, 0.03),
    "amzlus": (60.0, 0.01),
    "usps": (180.0, 0.25),
    "regional": (180.0, 0.25),
}


@dataclass(frozen=True)
class LifeSettings:
    """How the shop lives. Shares are of all orders; latencies are medians (log-normal spread)."""

    start: datetime  # first arrival day, 00:00 UTC
    days: int = 7
    orders_per_day: int = 1000
    seed: int = 1
    shop_utc_offset_hours: float = -8.0  # ship-by cut-off 23:59:59 shop time (TikTok US: PT)
    handling_business_days: int = 2  # TikTok US: dispatch within 2 business days
    auto_cancel_business_days: int = 7  # TikTok US: auto-cancel 7 business days after the order
    hold_minutes: float = 60.0  # TikTok's one-hour remorse hold
    cancel_deadline_hours: float = 24.0  # seller must answer a buyer's request within (UNCERTAIN 24/48)
    shopify_sync_minutes: float = 5.0  # after the hold, the channel app copies the order
    fulfillment_delay_minutes: float = 10.0  # Shopify -> fulfiller
    cancel_request_share: float = 0.05
    tiktok_label_share: float = 0.03  # shipping_type TIKTOK: TikTok's label, tracking from TikTok
    fbt_share: float = 0.02  # fulfilled by TikTok: nothing for the seller to do
    stall_share: float = 0.03  # the fulfiller sits on the order for 1-4 days
    fail_share: float = 0.01  # Unfulfillable (Amazon) / Exception (ShipBob)
    # carrier -> (median minutes from shipment to the first scan, share scanned 12-24 h later)
    scan_lags: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(SCAN_LAGS))
    fulfiller_speed: float = 1.0  # x the fulfillers' pace (1: ~12 h to ship at Amazon, ~5 h at ShipBob)
    backlog_orders: int = 0  # open orders before the start: paid in the 3 days before, stuck
    # at their fulfiller for the whole stream (a shop with many open)
    fulfiller_share: dict[str, float] = field(default_factory=lambda: dict(FULFILLER_SHARE))

    def __post_init__(self):
        problems = []
        if not isinstance(self.days, int) or not 1 <= self.days <= 366:
            problems.append(f"days: expected 1..366, got {self.days!r}")
        if not isinstance(self.orders_per_day, int) or not 0 <= self.orders_per_day <= 200_000:
            problems.append(f"orders_per_day: expected 0..200000, got {self.orders_per_day!r}")
        if not isinstance(self.backlog_orders, int) or not 0 <= self.backlog_orders <= 200_000:
            problems.append(f"backlog_orders: expected 0..200000, got {self.backlog_orders!r}")
        if not 0 <= self.handling_business_days <= 30:
            problems.append(f"handling_business_days: expected 0..30, got {self.handling_business_days!r}")
        if not self.handling_business_days <= self.auto_cancel_business_days <= 60:
            problems.append(
                "auto_cancel_business_days: expected handling_business_days..60, "
                f"got {self.auto_cancel_business_days!r}"
            )
        for name in ("cancel_request_share", "tiktok_label_share", "fbt_share", "stall_share", "fail_share"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                problems.append(f"{name}: expected a share 0..1, got {value!r}")
        for carrier, lag in self.scan_lags.items():
            if not (
                isinstance(lag, (list, tuple))
                and len(lag) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lag)
                and 0 <= lag[0] <= 10080
                and 0 <= lag[1] <= 1
            ):
                problems.append(
                    f"scan_lags.{carrier}: expected [median minutes 0..10080, late share 0..1], got {lag!r}"
                )
        if "regional" not in self.scan_lags:
            problems.append("scan_lags: needs a 'regional' entry (the lag of carriers it does not name)")
        if not (isinstance(self.fulfiller_speed, (int, float)) and 0.01 <= self.fulfiller_speed <= 100):
            problems.append(f"fulfiller_speed: expected 0.01..100, got {self.fulfiller_speed!r}")
        if self.start.tzinfo is None or self.start.timetz().replace(tzinfo=None) != time.min:
            problems.append(f"start: expected midnight UTC with a timezone, got {self.start!r}")
        if problems:
            raise ValueError("life settings: " + "; ".join(problems))


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th `weekday` (0 Monday) of the month; n = -1: the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + (month == 12), month % 12 + 1, 1) - DAY
    return last - timedelta(days=(last.weekday() - weekday) % 7)


@functools.cache
def us_federal_holidays(year: int) -> frozenset[date]:
    """The days US federal holidays are observed in `year` (5 U.S.C. 6103: a Saturday holiday is
    observed the Friday before, a Sunday one the Monday after; New Year's Day of the next year may
    fall on December 31)."""
    observed = set()
    for y in (year, year + 1):
        for day in (
            date(y, 1, 1),
            _nth_weekday(y, 1, 0, 3),  # Birthday of Martin Luther King, Jr.
            _nth_weekday(y, 2, 0, 3),  # Washington's Birthday
            _nth_weekday(y, 5, 0, -1),  # Memorial Day
            date(y, 6, 19),  # Juneteenth
            date(y, 7, 4),
            _nth_weekday(y, 9, 0, 1),  # Labor Day
            _nth_weekday(y, 10, 0, 2),  # Columbus Day
            date(y, 11, 11),  # Veterans Day
            _nth_weekday(y, 11, 3, 4),  # Thanksgiving Day
            date(y, 12, 25),
        ):
            shift = {5: -1, 6: 1}.get(day.weekday(), 0)
            observed.add(day + timedelta(days=shift))
    return frozenset(d for d in observed if d.year == year)


def is_business_day(day: date) -> bool:
    """TikTok US business days: not a Saturday, Sunday or US federal holiday."""
    return day.weekday() < 5 and day not in us_federal_holidays(day.year)


def business_day_end(moment: datetime, business_days: int, offset_hours: float) -> datetime:
    """23:59:59 shop time on the `business_days`-th business day after `moment`'s shop date
    (0: that day itself, moved to the next business day when it is not one); returned in UTC."""
    shift = timedelta(hours=offset_hours)
    day = (moment + shift).date()
    while not is_business_day(day):
        day += DAY
    left = business_days
    while left > 0:
        day += DAY
        if is_business_day(day):
            left -= 1
    end = datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc) - shift
    return end


@dataclass
class OrderPlan:
    """What will happen to one order, unless someone (orderops) changes it on the way."""

    order: ScenarioOrder
    kind: str  # seller | tiktok_label | fbt
    create: datetime
    fulfiller: str | None
    fulfillment_id: str | int | None
    durations: dict[str, float] = field(default_factory=dict)
    cancel_id: str | None = None
    scanned_at: datetime | None = None  # the carrier's first scan of the parcel
    awaiting_shipment_at: datetime | None = None  # TikTok's one-hour hold ended


class ShopLife:
    """The living shop: plans the order stream, replays it on the simulators, knows the truth."""

    def __init__(self, settings: LifeSettings):
        self.settings = settings
        self.plans: list[OrderPlan] = []
        self.events: list[tuple[datetime, int, str, int]] = []
        self.arrived = 0
        self.sandbox = None
        self._seq = 0
        # the planned moments a platform will announce something that starts a run (a shipment, a
        # buyer's request): a simulation with events steps from one to the next
        self.wake_moments: list[datetime] = []
        self._plan()
        self.wake_moments.sort()

    def next_wake(self, after: datetime) -> datetime | None:
        i = bisect.bisect_right(self.wake_moments, after)
        return self.wake_moments[i] if i < len(self.wake_moments) else None

    # ------------------------------------------------------------------ planning
    def _event(self, at: datetime, kind: str, index: int) -> None:
        self._seq += 1
        heapq.heappush(self.events, (at, self._seq, kind, index))

    @staticmethod
    def _lognormal(rng: random.Random, median_minutes: float, spread: float = 0.5) -> timedelta:
        return timedelta(minutes=median_minutes * math.exp(rng.gauss(0.0, spread)))

    def _plan(self) -> None:
        s = self.settings
        rng = random.Random(f"shop-life:{s.seed}")
        ids = _Ids(base=rng.randrange(10**9, 10**10) * 1000)
        hours = list(range(24))
        i = 0
        # the backlog first, from its own stream of chance: the daily stream keeps its moments and choices
        backlog = random.Random(f"shop-backlog:{s.seed}")
        for create in sorted(
            s.start - timedelta(seconds=backlog.uniform(2 * 3600, 3 * 86400)) for _ in range(s.backlog_orders)
        ):
            self._plan_order(backlog, ids, i, create, stuck=True)
            i += 1
        for d in range(s.days):
            midnight = s.start + d * DAY
            moments = sorted(
                midnight + timedelta(hours=rng.choices(hours, weights=ARRIVAL_CURVE)[0], seconds=rng.randrange(3600))
                for _ in range(s.orders_per_day)
            )
            for create in moments:
                self._plan_order(rng, ids, i, create)
                i += 1

    def _plan_order(self, rng: random.Random, ids: _Ids, i: int, create: datetime, stuck: bool = False) -> None:
        s = self.settings
        roll = rng.random()
        kind = (
            "fbt" if roll < s.fbt_share else "tiktok_label" if roll < s.fbt_share + s.tiktok_label_share else "seller"
        )
        kind = "seller" if stuck else kind
        tiktok_id = ids.tiktok(i)
        rts_sla = business_day_end(create, s.handling_business_days, s.shop_utc_offset_hours)
        ship_due = business_day_end(create, s.auto_cancel_business_days, s.shop_utc_offset_hours)
        tiktok = {
            "id": tiktok_id,
            "status": "ON_HOLD",
            "fulfillment_type": "FULFILLMENT_BY_TIKTOK" if kind == "fbt" else "FULFILLMENT_BY_SELLER",
            "shipping_type": "SELLER" if kind == "seller" else "TIKTOK",
            "create_time": format_time(create),
            "paid_time": format_time(create),
            "update_time": format_time(create),
            "rts_sla_time": format_time(rts_sla),
            "shipping_due_time": format_time(ship_due),
            "line_items": [
                {"id": ids.line(i, j), "seller_sku": rng.choice(SKUS)}
                for j in range(rng.choices([1, 2, 3], weights=[0.75, 0.2, 0.05])[0])
            ],
        }
        place = _pick(rng, ID_PLACES)
        shopify_id, number = 7100000000 + i, 5001 + i
        shopify = {"id": shopify_id, "name": f"#{number}", "tiktok_id_in": place, "cancelled": False}
        fulfiller = None if kind == "fbt" else _pick(rng, s.fulfiller_share)
        amazon = shipbob = None
        fulfillment_id: str | int | None = None
        if fulfiller == "amazon_mcf":
            # the Shopify app names the fulfillment order after the Shopify order
            fulfillment_id = tiktok_id if place == "name" else str(number)
            amazon = {
                "seller_fulfillment_order_id": fulfillment_id,
                "status": "New",
                "displayable_order_id": f"#{tiktok_id}" if place == "name" else f"#{number}",
            }
        elif fulfiller == "shipbob":
            fulfillment_id = 9100000 + i
            shipbob = {"order_id": fulfillment_id, "reference_id": str(shopify_id), "status": "Processing"}
        order = ScenarioOrder(
            index=i, tiktok=tiktok, shopify=[shopify], fulfiller=fulfiller, amazon_mcf=amazon, shipbob=shipbob
        )
        plan = OrderPlan(order=order, kind=kind, create=create, fulfiller=fulfiller, fulfillment_id=fulfillment_id)
        index = len(self.plans)
        self.plans.append(plan)
        hold_end = create + timedelta(minutes=s.hold_minutes)
        self._event(create, "arrive", index)
        self._event(hold_end, "release_hold", index)
        shopify_at = hold_end + self._lognormal(rng, s.shopify_sync_minutes)
        self._event(shopify_at, "shopify", index)
        if kind == "fbt":
            self._event(hold_end + self._lognormal(rng, 18 * 60, 0.4), "fbt_ship", index)
            return
        fo_at = shopify_at + self._lognormal(rng, s.fulfillment_delay_minutes)
        plan.durations = self._latencies(rng, fulfiller)
        stall = stuck or rng.random() < s.stall_share
        if stall:  # one working state takes 1-4 days instead of hours (the backlog: the whole stream)
            state = "Processing" if fulfiller == "amazon_mcf" else "Allocated"
            plan.durations[state] = (s.days + 30) * 86400 if stuck else rng.uniform(1, 4) * 86400
        self._event(fo_at, "fulfillment_order", index)
        # the fulfiller's state machine moves when read; at the planned shipment it is read, so that
        # what the fulfiller sends on its own (webhooks, notifications) goes out at that moment
        ships = fo_at + timedelta(seconds=sum(plan.durations.values()))
        self._event(ships, "fulfiller_tick", index)
        self.wake_moments.append(ships)
        if not stuck and rng.random() < s.fail_share:
            self._event(fo_at + self._lognormal(rng, 120), "fulfiller_fails", index)
        if not stuck and rng.random() < s.cancel_request_share:
            asked = hold_end + timedelta(hours=rng.uniform(0.05, 30))
            self._event(asked, "cancel_request", index)
            self.wake_moments.append(asked)

    def _latencies(self, rng: random.Random, fulfiller: str) -> dict[str, float]:
        """Seconds per working state, up to the shipment (median of each state's default)."""
        medians = (
            {"New": 2, "Received": 15, "Planning": 120, "Processing": 600}
            if fulfiller == "amazon_mcf"
            else {"Allocated": 180, "Picked": 30, "Packed": 10, "Labeled": 90}
        )
        speed = self.settings.fulfiller_speed
        return {state: self._lognormal(rng, minutes / speed, 0.6).total_seconds() for state, minutes in medians.items()}

    # ------------------------------------------------------------------ replay
    def attach(self, sandbox) -> None:
        self.sandbox = sandbox
        sandbox.platforms["tiktok"].in_transit_at_scan = True

    def advance(self, now: datetime) -> None:
        """Make every planned moment up to `now` happen, in time order, each at its own time."""
        if not self.events or self.events[0][0] > now:
            return
        clock = self.sandbox.clock
        try:
            while self.events and self.events[0][0] <= now:
                at, _, kind, index = heapq.heappop(self.events)
                clock.pinned = at
                getattr(self, f"_on_{kind}")(self.plans[index], at)
        finally:
            clock.pinned = None

    def _platform(self, name: str):
        return self.sandbox.platforms[name]

    def _on_arrive(self, plan: OrderPlan, at: datetime) -> None:
        self._platform("tiktok").arrive(plan.order)
        self.arrived += 1

    def _on_release_hold(self, plan: OrderPlan, at: datetime) -> None:
        tiktok = self._platform("tiktok")
        tiktok.release_hold(plan.order.tiktok_id)
        if tiktok.default_shop.orders[plan.order.tiktok_id]["status"] == "AWAITING_SHIPMENT":
            plan.awaiting_shipment_at = at

    def _on_shopify(self, plan: OrderPlan, at: datetime) -> None:
        self._platform("shopify").add_order(plan.order)

    def _on_fulfillment_order(self, plan: OrderPlan, at: datetime) -> None:
        tiktok = self._platform("tiktok").default_shop.orders[plan.order.tiktok_id]
        shopify = self._platform("shopify").orders.get(plan.order.shopify[0]["id"])
        if tiktok["status"] == "CANCELLED" or (shopify is not None and shopify.cancelled_at is not None):
            return  # cancelled before it reached the fulfiller: the Shopify app sends nothing
        if plan.fulfiller == "amazon_mcf":
            self._platform("amazon_mcf").add_fulfillment_order(plan.order, plan.durations)
        else:
            self._platform("shipbob").add_order(plan.order, plan.durations)

    def _on_fulfiller_tick(self, plan: OrderPlan, at: datetime) -> None:
        shipped = self._fulfiller_shipped(plan)
        if shipped is not None:  # the carrier picks the parcel up and scans it, after a lag of its own
            self._event(
                shipped["at"] + self._scan_lag(plan, shipped["packages"][0][0]), "carrier_scan", plan.order.index
            )

    def _scan_lag(self, plan: OrderPlan, carrier: str) -> timedelta:
        lags = self.settings.scan_lags
        median, late_share = lags.get(re.sub(r"[^a-z0-9]", "", carrier.lower()), lags["regional"])
        rng = random.Random(f"scan:{self.settings.seed}:{plan.order.tiktok_id}")
        if rng.random() < late_share:  # not picked up today: the next pickup scans it
            return timedelta(hours=rng.uniform(12, 24))
        return self._lognormal(rng, median, 0.6)

    def _on_fulfiller_fails(self, plan: OrderPlan, at: datetime) -> None:
        if plan.fulfiller == "amazon_mcf" and plan.fulfillment_id in self._platform("amazon_mcf").orders:
            self._platform("amazon_mcf").fail(plan.fulfillment_id, "Unfulfillable")
        elif plan.fulfiller == "shipbob" and plan.fulfillment_id in self._platform("shipbob").orders:
            self._platform("shipbob").fail(plan.fulfillment_id)

    def _on_cancel_request(self, plan: OrderPlan, at: datetime) -> None:
        plan.cancel_id = self._platform("tiktok").buyer_request_cancel(
            plan.order.tiktok_id, int(self.settings.cancel_deadline_hours * 3600)
        )

    def _on_carrier_scan(self, plan: OrderPlan, at: datetime) -> None:
        """The carrier's first scan of the parcel. On TikTok's label it is also how TikTok learns the
        tracking; TikTok shows the order In Transit once it has both the tracking and a scan."""
        shipped = self._fulfiller_shipped(plan)
        if shipped is None:
            return
        plan.scanned_at = at
        tiktok = self._platform("tiktok")
        if plan.kind == "tiktok_label":
            carrier, number = shipped["packages"][0]
            tiktok.ship_by_platform(plan.order.tiktok_id, number, carrier, "tiktok_label")
        tiktok.carrier_scan([number for _, number in shipped["packages"]] + list(shipped.get("aftns", ())))

    def _on_fbt_ship(self, plan: OrderPlan, at: datetime) -> None:
        rng = random.Random(f"fbt:{plan.order.tiktok_id}")
        number = tracking_number(rng, "USPS")
        tiktok = self._platform("tiktok")
        if tiktok.ship_by_platform(plan.order.tiktok_id, number, "USPS", "tiktok_fbt"):
            tiktok.carrier_scan([number])  # TikTok's own warehouse hands the parcel to the carrier

    def _fulfiller_shipped(self, plan: OrderPlan) -> dict | None:
        if plan.fulfiller is None:
            return None
        return self._platform(plan.fulfiller).shipped(plan.fulfillment_id)

    def _fulfiller_alive(self, plan: OrderPlan) -> bool:
        if plan.fulfiller == "amazon_mcf":
            order = self._platform("amazon_mcf").orders.get(plan.fulfillment_id)
            return order is not None and order.status not in ("Cancelled", "Unfulfillable", "Invalid")
        order = self._platform("shipbob").orders.get(plan.fulfillment_id)
        return order is not None and self._platform("shipbob").order_status(order) not in ("Cancelled", "Exception")

    # ------------------------------------------------------------------ ground truth
    def order_truth(self, plan: OrderPlan, as_of: datetime) -> dict:
        """What really happened to one order, as of `as_of`."""
        tiktok = self._platform("tiktok")
        order = tiktok.default_shop.orders[plan.order.tiktok_id]
        stamp = lambda t: datetime.fromtimestamp(t, timezone.utc) if t else None  # noqa: E731
        dispatch = tiktok.dispatches.get(order["id"])
        shipped = self._fulfiller_shipped(plan)
        cancelled_at = stamp(order.get("cancel_time")) if order["status"] == "CANCELLED" else None
        aftn = self._platform("amazon_mcf").aftn(plan.fulfillment_id) if plan.fulfiller == "amazon_mcf" else None
        fulfiller_tracking = {number for _, number in (shipped or {}).get("packages", [])} | {aftn} - {None}
        facts: dict[str, Any] = {
            "tiktok_order_id": order["id"],
            "kind": plan.kind,
            "fulfiller": plan.fulfiller,
            "fulfillment_order_id": plan.fulfillment_id,
            "create_time": stamp(order["create_time"]),
            "awaiting_shipment_at": _on(plan.awaiting_shipment_at, as_of),
            "rts_sla_time": stamp(order["rts_sla_time"]),
            "shipping_due_time": stamp(order["shipping_due_time"]),
            "status": order["status"],
            "dispatched_at": stamp(dispatch["at"]) if dispatch else None,
            "dispatched_by": dispatch["by"] if dispatch else None,
            "tracking_number": dispatch["tracking_number"] if dispatch else None,
            "tracking_valid": None
            if not dispatch
            else (dispatch["by"] != "seller" or dispatch["tracking_number"] in fulfiller_tracking),
            "fulfiller_shipped_at": shipped["at"] if shipped else None,
            # whether TikTok takes the fulfiller's tracking from the seller at all (its USPS rule)
            "tracking_postable": shipped is None or not tiktok.refuses_carrier(shipped["packages"][0][0]),
            "first_scan_at": _on(plan.scanned_at, as_of),
            # TikTok's In Transit moment (its `collection_time`): a carrier scan of tracking TikTok has
            "in_transit_at": stamp(order.get("collection_time")),
            "aftn_issued": aftn is not None,  # Amazon gave the order its early tracking number
            # Amazon's early tracking number (AFTN) or the carrier's
            "tracking_source": None if not dispatch else "aftn" if dispatch["tracking_number"] == aftn else "carrier",
            "cancelled_at": cancelled_at,
            "cancelled_by": order.get("cancellation_initiator") or None if cancelled_at else None,
            "cancellation": None,
        }
        if plan.cancel_id:
            rec = tiktok.default_shop.cancellations[plan.cancel_id]
            response = tiktok.responses.get(plan.cancel_id)
            facts["cancellation"] = {
                "cancel_id": plan.cancel_id,
                "requested_at": stamp(rec["create_time"]),
                "deadline": stamp(rec["create_time"] + int(self.settings.cancel_deadline_hours * 3600)),
                "responded_at": stamp(response["at"]) if response else None,
                "responded_by": response["by"] if response else None,
                "outcome": response["outcome"] if response else None,
            }
        return facts

    def truth(self, as_of: datetime, interval: timedelta) -> dict:
        """Every arrived order's facts, and per day the figures TikTok computes (see `day_figures`)."""
        orders = [self.order_truth(p, as_of) for p in self.plans if p.create <= as_of]
        days = sorted(
            {o["rts_sla_time"].date() for o in orders}
            | {o["cancellation"]["requested_at"].date() for o in orders if o["cancellation"]}
        )
        return {
            "as_of": format_time(as_of),
            "settings": _jsonable(asdict(self.settings)),
            "days": [{"day": d.isoformat(), **day_figures(orders, d, as_of)} for d in days],
            "missed_tracking": missed_tracking(orders, as_of, interval),
            "orders": [_jsonable(o) for o in orders],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _on(moment: datetime | None, as_of: datetime) -> datetime | None:
    return moment if moment is not None and moment <= as_of else None


def day_figures(orders: list[dict], day: date, as_of: datetime) -> dict:
    """TikTok's figures for one UTC day, from order facts, as of `as_of`.

    Seller-shipped orders (TikTok-label ones included, TikTok-fulfilled ones not) whose ship-by time
    falls on the day; an order cancelled without having been dispatched is not due. Two clocks: on
    the upload clock dispatched = tracking on TikTok (from anyone); on the carrier-scan clock (TikTok's
    rule since 01/2026) dispatched = In Transit on TikTok (a carrier scan of tracking TikTok has); on
    time when by the ship-by time. Late Dispatch Rate = (late + past ship-by not dispatched) / due, on
    each clock. Buyer cancellation requests made on the day; late when
    closed at or after the deadline (TikTok's own handling at the deadline included) or still open
    once it passed. Valid Tracking Rate over the orders dispatched on the
    day. Auto-cancels: orders TikTok cancelled on the day for not shipping by `shipping_due_time`.
    """
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    end = start + DAY
    in_day = lambda t: t is not None and start <= t < end  # noqa: E731
    due = on_time = late = past_due = 0
    on_time_scan = late_scan = past_due_scan = 0
    dispatched = valid = cancels = cancels_late = auto = 0
    for o in orders:
        sent = _on(o["dispatched_at"], as_of)
        gone = _on(o["cancelled_at"], as_of)
        if o["kind"] != "fbt":
            if in_day(o["rts_sla_time"]) and not (gone and not sent):
                due += 1
                if sent:
                    on_time += sent <= o["rts_sla_time"]
                    late += sent > o["rts_sla_time"]
                elif o["rts_sla_time"] < as_of:
                    past_due += 1
                moving = _on(o["in_transit_at"], as_of)
                if moving:
                    on_time_scan += moving <= o["rts_sla_time"]
                    late_scan += moving > o["rts_sla_time"]
                elif o["rts_sla_time"] < as_of:
                    past_due_scan += 1
            if in_day(sent):
                dispatched += 1
                valid += bool(o["tracking_valid"])
            if in_day(gone) and o["cancelled_by"] == "SYSTEM":
                auto += 1
        c = o["cancellation"]
        if c and in_day(c["requested_at"]):
            cancels += 1
            closed = _on(c["responded_at"], as_of)  # answered by the seller, or closed by TikTok
            cancels_late += (closed is not None and closed >= c["deadline"]) or (
                closed is None and c["deadline"] <= as_of
            )
    return {
        "orders_due": due,
        "dispatched_on_time": on_time,
        "dispatched_late": late,
        "past_due_no_tracking": past_due,
        "late_dispatch_rate": round((late + past_due) / due, 4) if due else None,
        "dispatched_on_time_scan": on_time_scan,
        "dispatched_late_scan": late_scan,
        "past_due_no_scan": past_due_scan,
        "late_dispatch_rate_scan": round((late_scan + past_due_scan) / due, 4) if due else None,
        "cancellations": cancels,
        "cancellations_late": cancels_late,
        "valid_tracking_rate": round(valid / dispatched, 4) if dispatched else None,
        "auto_cancels": auto,
    }


def missed_tracking(orders: list[dict], as_of: datetime, interval: timedelta) -> list[str]:
    """Orders whose tracking, one TikTok takes from the seller, existed at the fulfiller a whole
    schedule interval before their ship-by time and still reached TikTok after it (or not at all,
    once it passed)."""
    missed = []
    for o in orders:
        shipped = _on(o["fulfiller_shipped_at"], as_of)
        if o["kind"] != "seller" or shipped is None or shipped + interval > o["rts_sla_time"]:
            continue
        if not o["tracking_postable"]:  # TikTok refuses it from the seller: a person's case, not a miss
            continue
        if o["rts_sla_time"] >= as_of or _on(o["cancelled_at"], as_of):
            continue
        sent = _on(o["dispatched_at"], as_of)
        if sent is None or sent > o["rts_sla_time"]:
            missed.append(o["tiktok_order_id"])
    return missed
