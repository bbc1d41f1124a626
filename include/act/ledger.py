"""The action ledger: every side effect at most once, across retries, reruns, backfills and crashes.

Protocol for one action (one row per (shop, idempotency key)):
1. `claim` inserts the row as `pending` if it is new, then takes a lease on it with one
   conditional UPDATE (atomic on SQLite and PostgreSQL): only one runner can hold an action.
   Rows already `succeeded` or `skipped` are never claimed again.
2. A row found `in_flight` with an expired lease means a runner died after (maybe) calling the
   platform: the caller must `reconcile` it from the remote state before any new attempt.
3. `finish` records the outcome, the response and the platform's request id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from include.decide.model import POST_TRACKING, Action
from include.extract.staging import strip_pii
from include.store.warehouse import Warehouse, action_ledger, utcnow

PENDING, IN_FLIGHT, SUCCEEDED, FAILED, SKIPPED = "pending", "in_flight", "succeeded", "failed", "skipped"
DONE_STATES = (SUCCEEDED, SKIPPED)
# What a runner reports of an action it did not carry out (never a ledger row's state): another
# runner holds it, or its saga's earlier step has not succeeded yet.
HELD, WAITING = "held", "waiting"
# how the detail of a failed row a person asked to retry begins while it waits, pending, for a run
RETRY_ASKED = "retry asked by "


@dataclass(frozen=True)
class RunContext:
    """Where an action was taken from (Airflow dag/run/task/try/map index) for lineage."""

    shop: str
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    try_number: int = 0
    map_index: int = -1
    now: datetime | None = None  # the run's decision clock (the sandbox's clock in tests and demos)

    @property
    def owner(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}/{self.try_number}"


@dataclass(frozen=True)
class Claim:
    """A lease on one ledger row. `recovering` means an earlier attempt may have reached the platform."""

    row_id: int
    key: str
    attempts: int
    recovering: bool


class Ledger:
    def __init__(self, warehouse: Warehouse, lease_seconds: float = 600):
        self.warehouse = warehouse
        self.lease = timedelta(seconds=lease_seconds)

    def record(self, ctx: RunContext, action: Action, *, rule: str, decision_run_id: str, tiktok_order_id: str) -> None:
        """Make sure a row exists for the action (pending), without touching an existing one."""
        now = utcnow()
        row = dict(
            shop=ctx.shop,
            idempotency_key=action.idempotency_key,
            kind=action.kind,
            target=action.target,
            tiktok_order_id=tiktok_order_id,
            rule=rule,
            decision_run_id=decision_run_id,
            request=_jsonable(action.params),
            tracking_number=action.params.get("tracking_number") if action.kind == POST_TRACKING else None,
            state=PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
            dag_id=ctx.dag_id,
            run_id=ctx.run_id,
        )
        table = action_ledger
        dialect = sa.dialects.postgresql if self.warehouse.dialect == "postgresql" else sa.dialects.sqlite
        stmt = dialect.insert(table).values(row).on_conflict_do_nothing(index_elements=["shop", "idempotency_key"])
        with self.warehouse.engine.begin() as conn:
            conn.execute(stmt)

    def claim(
        self, ctx: RunContext, key: str, now: datetime | None = None, *, stale_only: bool = False
    ) -> Claim | None:
        """Lease the action for this runner, or None when it is done or another runner holds it.

        `stale_only` claims only a row left in flight by a runner whose lease ran out (to settle it).
        """
        now = now or utcnow()
        t = action_ledger.c
        stale = sa.and_(t.state == IN_FLIGHT, sa.or_(t.lease_until.is_(None), t.lease_until < now))
        claimable = stale if stale_only else sa.or_(t.state.in_([PENDING, FAILED]), stale)
        with self.warehouse.engine.begin() as conn:
            before = conn.execute(
                sa.select(t.id, t.state, t.attempts).where(t.shop == ctx.shop, t.idempotency_key == key)
            ).first()
            if before is None:
                raise KeyError(f"no ledger row for {key!r} in shop {ctx.shop!r}: record it first")
            updated = conn.execute(
                action_ledger.update()
                .where(t.id == before.id, claimable)
                .values(
                    state=IN_FLIGHT,
                    lease_owner=ctx.owner,
                    lease_until=now + self.lease,
                    attempts=t.attempts + 1,
                    updated_at=now,
                    dag_id=ctx.dag_id,
                    run_id=ctx.run_id,
                    task_id=ctx.task_id,
                    try_number=ctx.try_number,
                    map_index=ctx.map_index,
                )
            ).rowcount
        if updated != 1:
            return None
        return Claim(row_id=before.id, key=key, attempts=before.attempts + 1, recovering=before.state == IN_FLIGHT)

    def finish(
        self,
        claim: Claim,
        state: str,
        *,
        response: Any = None,
        request_id: str | None = None,
        detail: str | None = None,
        acted_at: datetime | None = None,
    ) -> None:
        if state not in (SUCCEEDED, FAILED, SKIPPED, IN_FLIGHT):
            raise ValueError(f"ledger: cannot finish in state {state!r}")
        # platforms echo the order back, buyer included (a ShipBob cancel does): never stored
        # a request id is the platform's header, kept for tracing: cut to its column rather than lose the row
        request_id = (
            request_id[: cast(sa.String, action_ledger.c.platform_request_id.type).length] if request_id else None
        )
        values = dict(
            state=state,
            response=_jsonable(strip_pii(response)),
            platform_request_id=request_id,
            detail=detail,
            updated_at=utcnow(),
        )
        if state == SUCCEEDED:
            values["acted_at"] = acted_at or utcnow()
        if state != IN_FLIGHT:
            values["lease_until"] = None
        with self.warehouse.engine.begin() as conn:
            conn.execute(action_ledger.update().where(action_ledger.c.id == claim.row_id).values(**values))

    def expire_lease(self, claim: Claim) -> None:
        """Let the next attempt (a task retry or the next run) claim the row at once and reconcile."""
        with self.warehouse.engine.begin() as conn:
            conn.execute(
                action_ledger.update()
                .where(action_ledger.c.id == claim.row_id)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )

    def wait(self, shop: str, key: str, detail: str) -> None:
        """A check that found the platform not there yet: its row waits, pending, for a later run to
        check again (it did not fail)."""
        t = action_ledger.c
        with self.warehouse.engine.begin() as conn:
            conn.execute(
                action_ledger.update()
                .where(t.shop == shop, t.idempotency_key == key, t.state == FAILED)
                .values(state=PENDING, detail=detail, lease_until=None, updated_at=utcnow())
            )

    def rows(self, shop: str, **filters: Any) -> list[dict]:
        t = action_ledger
        query = sa.select(t).where(t.c.shop == shop)
        for name, value in filters.items():
            query = query.where(t.c[name] == value)
        with self.warehouse.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(t.c.id))]

    def rows_by_key(self, shop: str, keys: list[str]) -> dict[str, dict]:
        t = action_ledger
        with self.warehouse.engine.connect() as conn:
            return {
                r.idempotency_key: dict(r._mapping)
                for r in conn.execute(sa.select(t).where(t.c.shop == shop, t.c.idempotency_key.in_(keys)))
            }

    def done_keys(self, shop: str) -> set[str]:
        """Keys of the shop's actions that are over (succeeded or skipped): never planned again."""
        t = action_ledger.c
        with self.warehouse.engine.connect() as conn:
            return set(
                conn.execute(sa.select(t.idempotency_key).where(t.shop == shop, t.state.in_(DONE_STATES))).scalars()
            )

    def state_of(self, shop: str, key: str) -> str | None:
        t = action_ledger.c
        with self.warehouse.engine.connect() as conn:
            return conn.execute(sa.select(t.state).where(t.shop == shop, t.idempotency_key == key)).scalar()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else None
