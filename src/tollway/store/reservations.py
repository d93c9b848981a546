"""The meter's statements: lock the payer, move the balance with its ledger rows, open and
claim reservations, record usage. Every function runs inside the caller's transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.budgets import WindowKey
from tollway.store.schema import api_keys, instances, ledger, reservations, usage_events, users


@dataclass(frozen=True, slots=True)
class OpenReservation:
    request_id: str
    user_id: str
    project_id: str
    key_id: int | None
    amount_credits: int
    windows: tuple[WindowKey, ...]
    instance_id: str
    created_at: int


async def lock_payer(
    conn: AsyncConnection, *, user_id: str, key_id: int
) -> tuple[int, bool] | None:
    """Lock the user's row (PostgreSQL: FOR UPDATE; SQLite: the write lock is already held)
    and tell, in the same statement, whether the key still exists. None: no such user."""
    key_alive = select(literal(1)).where(api_keys.c.id == key_id).exists()
    row = (
        await conn.execute(
            select(users.c.balance_credits, key_alive)
            .where(users.c.id == user_id)
            .with_for_update(of=users)
        )
    ).first()
    if row is None:
        return None
    return int(row[0]), bool(row[1])


async def debit(conn: AsyncConnection, *, user_id: str, amount: int) -> bool:
    """Take `amount` from the balance only if it is there: the balance never goes negative,
    whatever happened between the read and this write."""
    result = await conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.balance_credits >= amount)
        .values(balance_credits=users.c.balance_credits - amount)
    )
    return result.rowcount == 1


async def credit(conn: AsyncConnection, *, user_id: str, amount: int) -> None:
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(balance_credits=users.c.balance_credits + amount)
    )


async def append_ledger(
    conn: AsyncConnection,
    user_id: str,
    request_id: str,
    now: int,
    entries: Sequence[tuple[str, int]],
) -> None:
    """Ledger rows (kind, amount) keyed `<kind>:<request id>`; the unique entry id makes a
    repeated movement fail instead of counting twice."""
    if not entries:
        return
    await conn.execute(
        insert(ledger),
        [
            {
                "entry_id": f"{kind}:{request_id}",
                "user_id": user_id,
                "kind": kind,
                "amount_credits": amount,
                "request_id": request_id,
                "note": None,
                "created_at": now,
            }
            for kind, amount in entries
        ],
    )


async def open_reservation(conn: AsyncConnection, r: OpenReservation) -> None:
    await conn.execute(
        insert(reservations).values(
            request_id=r.request_id,
            user_id=r.user_id,
            project_id=r.project_id,
            key_id=r.key_id,
            amount_credits=r.amount_credits,
            budget_windows=json.dumps([list(w) for w in r.windows]),
            instance_id=r.instance_id,
            created_at=r.created_at,
        )
    )


async def claim_reservation(conn: AsyncConnection, request_id: str) -> OpenReservation | None:
    """Delete the reservation and return it; only one transaction ever gets it back, so a
    reservation is settled or released exactly once (settle and the sweeper race safely)."""
    row = (
        await conn.execute(
            delete(reservations)
            .where(reservations.c.request_id == request_id)
            .returning(
                reservations.c.request_id,
                reservations.c.user_id,
                reservations.c.project_id,
                reservations.c.key_id,
                reservations.c.amount_credits,
                reservations.c.budget_windows,
                reservations.c.instance_id,
                reservations.c.created_at,
            )
        )
    ).first()
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


async def charged_for(conn: AsyncConnection, request_id: str) -> int:
    """What a closed request was charged (0 if it was released)."""
    amount = (
        await conn.execute(
            select(ledger.c.amount_credits).where(ledger.c.entry_id == f"charge:{request_id}")
        )
    ).scalar_one_or_none()
    return -int(amount) if amount is not None else 0


async def record_usage(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(usage_events).values(**values))


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
    """(user id, Σ open reservations, Σ unreleased `reserve:` ledger rows) where they differ."""
    opened = (
        select(reservations.c.user_id, func.sum(reservations.c.amount_credits).label("held"))
        .group_by(reservations.c.user_id)
        .subquery()
    )
    released = select(ledger.c.request_id).where(ledger.c.kind == "release").scalar_subquery()
    pending = (
        select(ledger.c.user_id, (-func.sum(ledger.c.amount_credits)).label("pending"))
        .where(ledger.c.kind == "reserve", ledger.c.request_id.not_in(released))
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
