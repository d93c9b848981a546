"""Budgets (docs/billing.md): EUR limits per UTC period on a scope, managed by project admins.

The meter enforces them inside the reservation transaction; this module owns the periods
(when a window starts and resets) and the management operations.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tollway.billing.credits import credits_to_eur
from tollway.clock import Clock
from tollway.errors import BadRequest, NotFound, excerpt
from tollway.frozen import frozen
from tollway.ids import new_id
from tollway.scopes import check_scope_fields, require_admin, resolve_scope
from tollway.store import audit
from tollway.store import budgets as store
from tollway.store.budgets import BudgetRow, WindowKey, WindowRow
from tollway.store.database import Database

if TYPE_CHECKING:
    from tollway.audit.actor import Actor  # a name only: billing does not import audit

PERIODS = ("daily", "weekly", "monthly")
_DAY = 86_400
_WEEK = 7 * _DAY
_FIRST_MONDAY = 4 * _DAY  # 1970-01-05, the first Monday after the epoch (a Thursday)


def window_start(period: str, now: float) -> int:
    """Start (epoch seconds) of the UTC period containing `now`."""
    t = int(now)
    if period == "daily":
        return t - t % _DAY
    if period == "weekly":
        return t - (t - _FIRST_MONDAY) % _WEEK
    day = datetime.fromtimestamp(t, tz=UTC)
    return int(datetime(day.year, day.month, 1, tzinfo=UTC).timestamp())


def window_end(period: str, start: int) -> int:
    """When the window starting at `start` resets."""
    if period == "daily":
        return start + _DAY
    if period == "weekly":
        return start + _WEEK
    first = datetime.fromtimestamp(start, tz=UTC)
    year, month = (first.year + 1, 1) if first.month == 12 else (first.year, first.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())


def iso_utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def subject_of(budget: BudgetRow, *, user_id: str, key_id: int) -> str:
    """Who a window counts for: "" for the project, else the user id or the key id."""
    if budget.scope == "project":
        return ""
    if budget.scope in ("each_user", "user"):
        return user_id
    return str(key_id)


def window_key_of(budget: BudgetRow, *, user_id: str, key_id: int, now: float) -> WindowKey:
    return (
        budget.id,
        subject_of(budget, user_id=user_id, key_id=key_id),
        window_start(budget.period, now),
    )


def describe(budget: BudgetRow, start: int, *, needed: int, left: int) -> str:
    """The 429 message: which budget, what the request needs against what is left of it
    (in EUR), and when it resets."""
    state = (
        "is used up"
        if left <= 0
        else f"has {eur(left)} EUR left; this request needs at least {eur(needed)} EUR"
    )
    return (
        f"budget exceeded: {budget.period} {budget.scope} budget {budget.id} "
        f"(limit {eur(budget.limit_credits)} EUR) {state}; "
        f"it resets at {iso_utc(window_end(budget.period, start))}"
    )


def eur(credits: int) -> str:
    """Credits as an exact EUR amount for a message: 1500000 → '1.5', 0 → '0'."""
    return f"{credits_to_eur(credits).normalize():f}"


@frozen
class NewBudget:
    scope: str
    period: str
    limit_credits: int
    user_id: str | None = None
    key_name: str | None = None


@frozen
class SubjectSpend:
    user_id: str | None
    key_name: str | None
    spent_credits: int
    reserved_credits: int


@frozen
class BudgetView:
    budget: BudgetRow
    window_start: int
    resets_at: int
    spent_credits: int
    reserved_credits: int
    subjects: tuple[SubjectSpend, ...]


class BudgetService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def list(self, *, user_id: str, project_id: str) -> list[BudgetView]:
        now = self._clock()
        async with self._db.read() as conn:
            await require_admin(conn, user_id, project_id, rules="budgets")
            rows = await store.budgets_of_project(conn, project_id)
            starts = {b.id: window_start(b.period, now) for b in rows}
            windows = await store.windows_starting(conn, [b.id for b in rows], starts)
            key_ids = [int(w.subject) for w in windows if w.subject.isdigit()]
            names = await store.key_names(conn, key_ids)
        return [_view(b, starts[b.id], windows, names) for b in rows]

    async def create(
        self, *, actor: Actor, user_id: str, project_id: str, spec: NewBudget
    ) -> BudgetView:
        check_scope_fields("budget", spec.scope, spec.user_id, spec.key_name)
        if spec.period not in PERIODS:
            raise BadRequest(f"period: must be one of {', '.join(PERIODS)}", param="period")
        if spec.limit_credits < 0:
            raise BadRequest("limit: must not be negative", param="limit")
        now_s = self._clock()
        now = int(now_s)
        async with self._db.write() as conn:
            await require_admin(conn, user_id, project_id, rules="budgets")
            target = await resolve_scope(
                conn,
                rule="budget",
                scope=spec.scope,
                project_id=project_id,
                caller_id=user_id,
                user_id=spec.user_id,
                key_name=spec.key_name,
            )
            row = BudgetRow(
                id=new_id(),
                project_id=project_id,
                scope=spec.scope,
                user_id=target.user_id,
                key_id=target.key_id,
                period=spec.period,
                limit_credits=spec.limit_credits,
                created_at=now,
                key_name=target.key_name,
            )
            await store.insert_budget(conn, row)
            await audit.append(
                conn,
                actor,
                action="budget.create",
                target=f"budget/{row.id}",
                project_id=project_id,
                now_ms=int(now_s * 1000),
                after=budget_fields(row),
            )
        self._db.budget_index.invalidate(project_id)  # the meter of this process: at once
        start = window_start(row.period, now)
        return BudgetView(row, start, window_end(row.period, start), 0, 0, ())

    async def delete(self, *, actor: Actor, user_id: str, project_id: str, budget_id: str) -> None:
        async with self._db.write() as conn:
            await require_admin(conn, user_id, project_id, rules="budgets")
            found = [
                b for b in await store.budgets_of_project(conn, project_id) if b.id == budget_id
            ]
            if not found or not await store.delete_budget(conn, project_id, budget_id):
                raise NotFound(f"budget '{excerpt(budget_id)}' not found")
            await audit.append(
                conn,
                actor,
                action="budget.delete",
                target=f"budget/{budget_id}",
                project_id=project_id,
                now_ms=int(self._clock() * 1000),
                before=budget_fields(found[0]),
            )
        self._db.budget_index.invalidate(project_id)


def budget_fields(row: BudgetRow) -> dict[str, object]:
    """What the audit log says of a budget."""
    return {
        "scope": row.scope,
        "period": row.period,
        "limit": eur(row.limit_credits),
        "user_id": row.user_id,
        "key_name": row.key_name,
    }


def _view(
    budget: BudgetRow,
    start: int,
    windows: list[WindowRow],
    names: dict[int, tuple[str, str]],
) -> BudgetView:
    mine = [w for w in windows if w.budget_id == budget.id]
    subjects: list[SubjectSpend] = []
    if budget.scope == "each_user":
        subjects = [
            SubjectSpend(w.subject, None, w.spent_credits, w.reserved_credits) for w in mine
        ]
    elif budget.scope == "each_key":
        for w in mine:
            owner, name = names.get(int(w.subject), (None, None))
            subjects.append(SubjectSpend(owner, name, w.spent_credits, w.reserved_credits))
    return BudgetView(
        budget=budget,
        window_start=start,
        resets_at=window_end(budget.period, start),
        spent_credits=sum(w.spent_credits for w in mine),
        reserved_credits=sum(w.reserved_credits for w in mine),
        subjects=tuple(subjects),
    )
