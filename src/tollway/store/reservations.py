"""The meter's statements: lock the payer, move the balance with its ledger rows, open and
claim reservations, record usage. Every function runs inside the caller's transaction.

The hot-path functions are synchronous, over a sync `Connection` (see `Database.run_write`),
and execute `text()` constants built once at import."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store._sql import Locking, insert_rows
from tollway.store.budgets import WindowKey
from tollway.store.schema import instances, ledger, reservations, users

# A credit lease (billing/leases.py) is a reservation of its process, not of a request: its
# request id starts with this.
LEASE_PREFIX = "lease-"


def is_lease(request_id: str) -> bool:
    return request_id.startswith(LEASE_PREFIX)


@frozen
class OpenReservation:
    request_id: str
    user_id: str
    project_id: str
    key_id: int | None
    amount_credits: int
    windows: tuple[WindowKey, ...]
    instance_id: str
    created_at: int


# Both statements that touch the payer's row also check, in the same statement, that the key
# still exists: how a key deleted through another replica is refused on its next request.
_LOCK_PAYER = Locking.of(
    "SELECT users.balance_credits,"
    " EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = :key_id)"
    " FROM users WHERE users.id = :user_id",
    "FOR UPDATE OF users",
)
_DEBIT_IF_KEY_ALIVE = text(
    "UPDATE users SET balance_credits = balance_credits - :amount"
    " WHERE id = :user_id AND balance_credits >= :amount"
    " AND EXISTS (SELECT 1 FROM api_keys WHERE api_keys.id = :key_id)"
)
_DEBIT = text(
    "UPDATE users SET balance_credits = balance_credits - :amount"
    " WHERE id = :user_id AND balance_credits >= :amount"
)
_CREDIT = text("UPDATE users SET balance_credits = balance_credits + :amount WHERE id = :user_id")
_LEDGER_ONE = text(
    "INSERT INTO ledger (entry_id, user_id, kind, amount_credits, request_id, created_at)"
    " VALUES (:entry_id, :user_id, :kind, :amount, :request_id, :now)"
)
_LEDGER_TWO = text(
    "INSERT INTO ledger (entry_id, user_id, kind, amount_credits, request_id, created_at)"
    " VALUES (:entry_id, :user_id, :kind, :amount, :request_id, :now),"
    " (:entry_id2, :user_id, :kind2, :amount2, :request_id, :now)"
)
_OPEN = text(
    "INSERT INTO reservations (request_id, user_id, project_id, key_id, amount_credits,"
    " budget_windows, instance_id, created_at) VALUES (:request_id, :user_id, :project_id,"
    " :key_id, :amount_credits, :budget_windows, :instance_id, :created_at)"
)
_CLAIM = text(
    "DELETE FROM reservations WHERE request_id = :request_id RETURNING request_id, user_id,"
    " project_id, key_id, amount_credits, budget_windows, instance_id, created_at"
)
_CHARGED = text("SELECT amount_credits FROM ledger WHERE entry_id = :entry_id")
_CHARGED_ALL = text(
    "SELECT COALESCE(SUM(amount_credits), 0) FROM ledger"
    " WHERE entry_id IN (:charge_id, :overrun_id)"
)
_BALANCE = Locking.of("SELECT balance_credits FROM users WHERE id = :user_id", "FOR UPDATE")
_LEDGER_NOTED = text(
    "INSERT INTO ledger (entry_id, user_id, kind, amount_credits, request_id, note, created_at)"
    " VALUES (:entry_id, :user_id, :kind, :amount, :request_id, :note, :now)"
)
# The columns of a usage event, in the order of `RECORD_USAGE`'s values.
USAGE_COLUMNS = (
    "request_id",
    "created_at",
    "user_id",
    "project_id",
    "key_id",
    "key_name",
    "endpoint",
    "model",
    "provider",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_prompt_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_credits",
    "latency_ms",
    "status",
    "usage_source",
)
RECORD_USAGE = text(
    f"INSERT INTO usage_events ({', '.join(USAGE_COLUMNS)})"  # noqa: S608 (constants)
    f" VALUES ({', '.join(':' + name for name in USAGE_COLUMNS)})"
)


def entry_id(kind: str, request_id: str) -> str:
    """A ledger row's unique key, `<kind>:<request id>`: a request moves each kind once."""
    return f"{kind}:{request_id}"


def lock_payer(conn: Connection, *, user_id: str, key_id: int) -> tuple[int, bool] | None:
    """Lock the user's row (PostgreSQL: FOR UPDATE; SQLite: the write lock is already held)
    and tell, in the same statement, whether the key still exists. None: no such user."""
    row = conn.execute(_LOCK_PAYER.on(conn), {"user_id": user_id, "key_id": key_id}).first()
    if row is None:
        return None
    return int(row[0]), bool(row[1])


def debit(conn: Connection, *, user_id: str, amount: int) -> bool:
    """Take `amount` from the balance only if it is there: the balance never goes negative,
    whatever happened between the read and this write."""
    result = conn.execute(_DEBIT, {"user_id": user_id, "amount": amount})
    return result.rowcount == 1


def debit_if_key_alive(conn: Connection, *, user_id: str, key_id: int, amount: int) -> bool:
    """The common case in one statement: take `amount` if the balance covers it and the key
    still exists (row-locking the user on PostgreSQL like `lock_payer`). False: nothing was
    changed, and the caller decides with `lock_payer`."""
    params = {"user_id": user_id, "key_id": key_id, "amount": amount}
    return conn.execute(_DEBIT_IF_KEY_ALIVE, params).rowcount == 1


def credit(conn: Connection, *, user_id: str, amount: int) -> None:
    conn.execute(_CREDIT, {"user_id": user_id, "amount": amount})


def append_ledger(
    conn: Connection,
    user_id: str,
    request_id: str,
    now: int,
    entries: Sequence[tuple[str, int]],
) -> None:
    """Ledger rows (kind, amount) keyed `<kind>:<request id>`, in one statement; the unique
    entry id makes a repeated movement fail instead of counting twice."""
    if not entries:
        return
    if len(entries) > 2:
        raise ValueError("a request moves at most two ledger rows at once")
    kind, amount = entries[0]
    params: dict[str, object] = {
        "entry_id": entry_id(kind, request_id),
        "user_id": user_id,
        "kind": kind,
        "amount": amount,
        "request_id": request_id,
        "now": now,
    }
    if len(entries) == 1:
        conn.execute(_LEDGER_ONE, params)
        return
    kind2, amount2 = entries[1]
    params.update(entry_id2=entry_id(kind2, request_id), kind2=kind2, amount2=amount2)
    conn.execute(_LEDGER_TWO, params)


def open_reservation(conn: Connection, r: OpenReservation) -> None:
    windows = json.dumps([list(w) for w in r.windows]) if r.windows else "[]"
    conn.execute(
        _OPEN,
        {
            "request_id": r.request_id,
            "user_id": r.user_id,
            "project_id": r.project_id,
            "key_id": r.key_id,
            "amount_credits": r.amount_credits,
            "budget_windows": windows,
            "instance_id": r.instance_id,
            "created_at": r.created_at,
        },
    )


_RESERVATION_USER = text("SELECT user_id FROM reservations WHERE request_id = :request_id")


def reservation_user(conn: Connection, request_id: str) -> str | None:
    """Whose reservation this is (None: there is none), without locking it."""
    user_id = conn.execute(_RESERVATION_USER, {"request_id": request_id}).scalar_one_or_none()
    return None if user_id is None else str(user_id)


def claim_reservation(conn: Connection, request_id: str) -> OpenReservation | None:
    """Delete the reservation and return it; only one transaction ever gets it back, so a
    reservation is settled or released exactly once (settle and the sweeper race safely)."""
    row = conn.execute(_CLAIM, {"request_id": request_id}).first()
    if row is None:
        return None
    windows = tuple((str(b), str(s), int(w)) for b, s, w in json.loads(row[5]))
    return OpenReservation(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        row[3],
        int(row[4]),
        windows,
        str(row[6]),
        int(row[7]),
    )


def charged_for(conn: Connection, request_id: str) -> int:
    """What a closed request was charged (0 if it was released): its `charge:` row and any
    `overrun:` row (usage beyond the reservation)."""
    params = {
        "charge_id": entry_id("charge", request_id),
        "overrun_id": entry_id("overrun", request_id),
    }
    return -int(conn.execute(_CHARGED_ALL, params).scalar_one())


def entry_amount(conn: Connection, entry: str) -> int | None:
    """The amount of the ledger row with this entry id, None when there is none."""
    amount = conn.execute(_CHARGED, {"entry_id": entry}).scalar_one_or_none()
    return None if amount is None else int(amount)


def locked_balance(conn: Connection, user_id: str) -> int:
    """The user's balance, the row locked for the transaction (0 for no such user)."""
    value = conn.execute(_BALANCE.on(conn), {"user_id": user_id}).scalar_one_or_none()
    return 0 if value is None else int(value)


def append_noted(
    conn: Connection,
    *,
    entry: str,
    user_id: str,
    kind: str,
    amount: int,
    request_id: str,
    note: str,
    now: int,
) -> None:
    """One ledger row with a note (what a reader of the ledger needs to know about it)."""
    conn.execute(
        _LEDGER_NOTED,
        {
            "entry_id": entry,
            "user_id": user_id,
            "kind": kind,
            "amount": amount,
            "request_id": request_id,
            "note": note[:200],
            "now": now,
        },
    )


def record_usage(conn: Connection, values: dict[str, Any]) -> None:
    """One `usage_events` row; `values` names every column of the table."""
    conn.execute(RECORD_USAGE, values)


def record_usage_once(conn: Connection, values: dict[str, Any]) -> None:
    """`record_usage`, nothing when the request's row is there already (a retry)."""
    insert_rows(
        conn,
        "usage_events",
        USAGE_COLUMNS,
        [tuple(values[name] for name in USAGE_COLUMNS)],
        skip_existing=True,
    )


async def register_instance(conn: AsyncConnection, instance_id: str, now: int) -> None:
    await conn.execute(insert(instances).values(id=instance_id, started_at=now, heartbeat_at=now))


async def heartbeat(conn: AsyncConnection, instance_id: str, now: int) -> bool:
    result = await conn.execute(
        update(instances).where(instances.c.id == instance_id).values(heartbeat_at=now)
    )
    return result.rowcount == 1


async def forget_instance(conn: AsyncConnection, instance_id: str) -> None:
    await conn.execute(delete(instances).where(instances.c.id == instance_id))


async def abandoned_reservations(
    conn: AsyncConnection, *, stale_before: int, limit: int = 500
) -> list[str]:
    """Reservations whose instance is gone or has not beaten since `stale_before`."""
    rows = await conn.execute(
        select(reservations.c.request_id)
        .select_from(
            reservations.outerjoin(instances, instances.c.id == reservations.c.instance_id)
        )
        .where((instances.c.id.is_(None)) | (instances.c.heartbeat_at < stale_before))
        .order_by(reservations.c.created_at)
        .limit(limit)
    )
    return [str(r[0]) for r in rows]


async def held_since(conn: AsyncConnection, *, created_before: int) -> tuple[int, int]:
    """(count, Σ credits) of the open reservations of requests created before
    `created_before`."""
    row = (
        await conn.execute(
            select(func.count(), func.coalesce(func.sum(reservations.c.amount_credits), 0)).where(
                reservations.c.created_at < created_before,
                # A credit lease lives as long as its process uses it (its liveness is the
                # instance's heartbeat): only requests have a maximum age.
                reservations.c.request_id.not_like(f"{LEASE_PREFIX}%"),
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def reservations_of_instance(conn: AsyncConnection, instance_id: str) -> list[str]:
    rows = await conn.execute(
        select(reservations.c.request_id).where(reservations.c.instance_id == instance_id)
    )
    return [str(r[0]) for r in rows]


async def drop_dead_instances(conn: AsyncConnection, *, stale_before: int) -> None:
    """Forget instances silent since `stale_before` that hold no reservation any more."""
    held = select(reservations.c.request_id).where(reservations.c.instance_id == instances.c.id)
    await conn.execute(
        delete(instances).where(instances.c.heartbeat_at < stale_before, ~held.exists())
    )


async def open_reservation_totals(conn: AsyncConnection) -> list[tuple[str, int, int]]:
    """(user id, Σ open reservations, what the ledger says they hold) where they differ.

    A reservation's `reserve` row is matched by its `release` row once closed; a credit
    lease's `lease` rows (draws) by its `release` rows (what it passed on to the requests it
    charged, and what it gave back). So what is held is minus the sum of those three kinds."""
    opened = (
        select(reservations.c.user_id, func.sum(reservations.c.amount_credits).label("held"))
        .group_by(reservations.c.user_id)
        .subquery()
    )
    pending = (
        select(ledger.c.user_id, (-func.sum(ledger.c.amount_credits)).label("pending"))
        .where(ledger.c.kind.in_(("reserve", "release", "lease")))
        .group_by(ledger.c.user_id)
        .subquery()
    )
    held = func.coalesce(opened.c.held, 0)
    due = func.coalesce(pending.c.pending, 0)
    rows = await conn.execute(
        select(users.c.id, held, due)
        .select_from(
            users.outerjoin(opened, opened.c.user_id == users.c.id).outerjoin(
                pending, pending.c.user_id == users.c.id
            )
        )
        .where(held != due)
    )
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


async def counts(conn: AsyncConnection) -> tuple[int, int, int]:
    """(users, ledger rows, open reservations)."""
    row = (
        await conn.execute(
            select(
                select(func.count()).select_from(users).scalar_subquery(),
                select(func.count()).select_from(ledger).scalar_subquery(),
                select(func.count()).select_from(reservations).scalar_subquery(),
            )
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def negative_balances(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    rows = await conn.execute(
        select(users.c.id, users.c.name, users.c.balance_credits).where(users.c.balance_credits < 0)
    )
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]
