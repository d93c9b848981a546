"""Budgets and their windows. A window is one (budget, subject, period start) row; a new
period simply starts a new row, so budgets reset without any scheduled job."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, and_, delete, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store._sql import Locking
from tollway.store.schema import api_keys, budget_windows, budgets

# (budget_id, subject, window_start): the primary key of a window, also its lock order.
WindowKey = tuple[str, str, int]

# Scopes that apply to every request of the project, whoever makes it.
PROJECT_WIDE_SCOPES = ("project", "each_user", "each_key")


@frozen
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


@frozen
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


_PROJECT_BUDGETS = text(
    "SELECT id, project_id, scope, user_id, key_id, period, limit_credits, created_at"
    " FROM budgets WHERE project_id = :project_id ORDER BY created_at, id"
)
# INSERT … SELECT: no window for a budget that is gone (no foreign-key failure, no row).
_CREATE_WINDOW = text(
    "INSERT INTO budget_windows"
    " (budget_id, subject, window_start, spent_credits, reserved_credits)"
    " SELECT id, CAST(:subject AS VARCHAR(64)), CAST(:window_start AS BIGINT), 0, 0"
    " FROM budgets WHERE id = :budget_id ON CONFLICT DO NOTHING"
)
_LOCK_WINDOW = Locking.of(
    "SELECT spent_credits, reserved_credits FROM budget_windows"
    " WHERE budget_id = :budget_id AND subject = :subject AND window_start = :window_start",
    "FOR UPDATE",
)
_MOVE_WINDOW = text(
    "UPDATE budget_windows SET reserved_credits = reserved_credits + :reserved,"
    " spent_credits = spent_credits + :spent"
    " WHERE budget_id = :budget_id AND subject = :subject AND window_start = :window_start"
)

# How long a process may go on using the budget list of a project it read (seconds): a
# budget created or deleted through another process applies within this time.
BUDGET_INDEX_TTL_S = 1.0


class BudgetIndex:
    """Per-process cache of each project's budgets, so a request of a project without budgets
    makes no budget query at all. Entries live `ttl_s`; a budget created or deleted through
    this process invalidates its project at once. Filled from the hot-path writer (a thread
    on SQLite) and invalidated from the event loop: a generation counter, under a lock, keeps
    a list read before an invalidation from being stored after it."""

    def __init__(
        self,
        ttl_s: float = BUDGET_INDEX_TTL_S,
        *,
        max_projects: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_projects = max_projects
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, tuple[BudgetRow, ...]]] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, project_id: str) -> tuple[BudgetRow, ...] | None:
        entry = self._entries.get(project_id)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, project_id: str, rows: tuple[BudgetRow, ...], generation: int) -> None:
        """Store what was read while `generation` was current, unless invalidated since."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self._max_projects:
                self._entries.clear()
            self._entries[project_id] = (self._clock() + self._ttl_s, rows)

    def invalidate(self, project_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(project_id, None)

    def budgets_of(self, conn: Connection, project_id: str) -> tuple[BudgetRow, ...]:
        """The project's budgets: cached, or read in the caller's transaction."""
        cached = self.get(project_id)
        if cached is not None:
            return cached
        generation = self._generation
        rows = project_budgets(conn, project_id)
        self.put(project_id, rows, generation)
        return rows


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


def project_budgets(conn: Connection, project_id: str) -> tuple[BudgetRow, ...]:
    """Every budget of a project, for `BudgetIndex` (uses ix_budgets_project_id)."""
    rows = conn.execute(_PROJECT_BUDGETS, {"project_id": project_id})
    return tuple(BudgetRow(*r) for r in rows)


def applicable(rows: Sequence[BudgetRow], *, user_id: str, key_id: int) -> list[BudgetRow]:
    """The budgets of a project that a request of this user's key must fit."""
    return [
        b
        for b in rows
        if b.scope in PROJECT_WIDE_SCOPES
        or (b.scope == "user" and b.user_id == user_id)
        or (b.scope == "key" and b.key_id == key_id)
    ]


def lock_windows(conn: Connection, keys: Sequence[WindowKey]) -> dict[WindowKey, WindowRow]:
    """Create missing windows, then lock all of them in key order (the order every writer
    uses, so two transactions never wait on each other in a cycle). A window of a budget
    deleted meanwhile is neither created nor returned: that budget no longer applies."""
    ordered = sorted(keys)
    params = [{"budget_id": b, "subject": s, "window_start": w} for b, s, w in ordered]
    conn.execute(_CREATE_WINDOW, params)
    lock = _LOCK_WINDOW.on(conn)
    found: dict[WindowKey, WindowRow] = {}
    for key, p in zip(ordered, params, strict=True):
        row = conn.execute(lock, p).first()
        if row is not None:
            found[key] = WindowRow(key[0], key[1], key[2], int(row[0]), int(row[1]))
    return found


def move_windows(
    conn: Connection, keys: Sequence[WindowKey], *, reserved_delta: int, spent_delta: int
) -> None:
    """Shift reserved and spent credits of the given windows, in lock order."""
    conn.execute(
        _MOVE_WINDOW,
        [
            {
                "budget_id": b,
                "subject": s,
                "window_start": w,
                "reserved": reserved_delta,
                "spent": spent_delta,
            }
            for b, s, w in sorted(keys)
        ],
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
