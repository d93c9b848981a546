"""Budgets and their windows. A window is one (budget, subject, period start) row; a new
period simply starts a new row, so budgets reset without any scheduled job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.schema import api_keys, budget_windows, budgets

# (budget_id, subject, window_start): the primary key of a window, also its lock order.
WindowKey = tuple[str, str, int]

# Scopes that apply to every request of the project, whoever makes it.
PROJECT_WIDE_SCOPES = ("project", "each_user", "each_key")


@dataclass(frozen=True, slots=True)
class BudgetRow:
    id: str
    project_id: str
    scope: str
    user_id: str | None
    key_id: int | None
    period: str
    limit_credits: int
    created_at: int
    key_name: str | None = None


@dataclass(frozen=True, slots=True)
class WindowRow:
    budget_id: str
    subject: str
    window_start: int
    spent_credits: int
    reserved_credits: int

    @property
    def key(self) -> WindowKey:
        return (self.budget_id, self.subject, self.window_start)


_BUDGET_COLUMNS = (
    budgets.c.id,
    budgets.c.project_id,
    budgets.c.scope,
    budgets.c.user_id,
    budgets.c.key_id,
    budgets.c.period,
    budgets.c.limit_credits,
    budgets.c.created_at,
)


async def insert_budget(conn: AsyncConnection, row: BudgetRow) -> None:
    await conn.execute(
        insert(budgets).values(
            id=row.id,
            project_id=row.project_id,
            scope=row.scope,
            user_id=row.user_id,
            key_id=row.key_id,
            period=row.period,
            limit_credits=row.limit_credits,
            created_at=row.created_at,
        )
    )


async def budgets_of_project(conn: AsyncConnection, project_id: str) -> list[BudgetRow]:
    rows = await conn.execute(
        select(*_BUDGET_COLUMNS, api_keys.c.name)
        .select_from(budgets.outerjoin(api_keys, api_keys.c.id == budgets.c.key_id))
        .where(budgets.c.project_id == project_id)
        .order_by(budgets.c.created_at, budgets.c.id)
    )
    return [BudgetRow(*r) for r in rows]


async def delete_budget(conn: AsyncConnection, project_id: str, budget_id: str) -> bool:
    await conn.execute(delete(budget_windows).where(budget_windows.c.budget_id == budget_id))
    result = await conn.execute(
        delete(budgets).where(budgets.c.id == budget_id, budgets.c.project_id == project_id)
    )
    return result.rowcount > 0


async def applicable_budgets(
    conn: AsyncConnection, *, project_id: str, user_id: str, key_id: int
) -> list[BudgetRow]:
    """Every budget a request of this key must fit (uses ix_budgets_project_id)."""
    rows = await conn.execute(
        select(*_BUDGET_COLUMNS).where(
            budgets.c.project_id == project_id,
            or_(
                budgets.c.scope.in_(PROJECT_WIDE_SCOPES),
                and_(budgets.c.scope == "user", budgets.c.user_id == user_id),
                and_(budgets.c.scope == "key", budgets.c.key_id == key_id),
            ),
        )
    )
    return [BudgetRow(*r) for r in rows]


def _match(keys: Sequence[WindowKey]) -> object:
    return or_(
        *(
            and_(
                budget_windows.c.budget_id == b,
                budget_windows.c.subject == s,
                budget_windows.c.window_start == w,
            )
            for b, s, w in keys
        )
    )


async def lock_windows(
    conn: AsyncConnection, keys: Sequence[WindowKey]
) -> dict[WindowKey, WindowRow]:
    """Create missing windows, then lock all of them in key order (the order every writer
    uses, so two transactions never wait on each other in a cycle)."""
    ordered = sorted(keys)
    values = [
        {"budget_id": b, "subject": s, "window_start": w, "spent_credits": 0, "reserved_credits": 0}
        for b, s, w in ordered
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    await conn.execute(dialect.insert(budget_windows).values(values).on_conflict_do_nothing())
    rows = await conn.execute(
        select(
            budget_windows.c.budget_id,
            budget_windows.c.subject,
            budget_windows.c.window_start,
            budget_windows.c.spent_credits,
            budget_windows.c.reserved_credits,
        )
        .where(_match(ordered))  # type: ignore[arg-type]
        .order_by(
            budget_windows.c.budget_id, budget_windows.c.subject, budget_windows.c.window_start
        )
        .with_for_update()
    )
    found = [WindowRow(*r) for r in rows]
    return {w.key: w for w in found}


async def move_windows(
    conn: AsyncConnection, keys: Sequence[WindowKey], *, reserved_delta: int, spent_delta: int
) -> None:
    """Shift reserved and spent credits of the given windows, in lock order."""
    for b, s, w in sorted(keys):
        await conn.execute(
            update(budget_windows)
            .where(
                budget_windows.c.budget_id == b,
                budget_windows.c.subject == s,
                budget_windows.c.window_start == w,
            )
            .values(
                reserved_credits=budget_windows.c.reserved_credits + reserved_delta,
                spent_credits=budget_windows.c.spent_credits + spent_delta,
            )
        )


async def windows_starting(
    conn: AsyncConnection, budget_ids: Sequence[str], starts: dict[str, int]
) -> list[WindowRow]:
    """The current window rows (any subject) of the given budgets; `starts` maps budget id
    to the start of its current period."""
    if not budget_ids:
        return []
    rows = await conn.execute(
        select(
            budget_windows.c.budget_id,
            budget_windows.c.subject,
            budget_windows.c.window_start,
            budget_windows.c.spent_credits,
            budget_windows.c.reserved_credits,
        ).where(
            or_(
                *(
                    and_(
                        budget_windows.c.budget_id == b,
                        budget_windows.c.window_start == starts[b],
                    )
                    for b in budget_ids
                )
            )
        )
    )
    return [WindowRow(*r) for r in rows]


async def key_names(conn: AsyncConnection, key_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """key id → (owner user id, key name)."""
    if not key_ids:
        return {}
    rows = await conn.execute(
        select(api_keys.c.id, api_keys.c.user_id, api_keys.c.name).where(
            api_keys.c.id.in_(list(key_ids))
        )
    )
    return {int(r[0]): (str(r[1]), str(r[2])) for r in rows}
