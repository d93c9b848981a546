"""The append-only money ledger. Every balance change is one row here plus the matching
update of ``users.balance_credits`` in the same transaction, so balance = Σ ledger always."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.schema import ledger, users


async def post_entry(
    conn: AsyncConnection,
    *,
    entry_id: str,
    user_id: str,
    kind: str,
    amount_credits: int,
    now: int,
    request_id: str | None = None,
    note: str | None = None,
) -> None:
    """Append one ledger row and move the balance by the same amount (caller's transaction)."""
    await conn.execute(
        insert(ledger).values(
            entry_id=entry_id,
            user_id=user_id,
            kind=kind,
            amount_credits=amount_credits,
            request_id=request_id,
            note=note,
            created_at=now,
        )
    )
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(balance_credits=users.c.balance_credits + amount_credits)
    )


async def ledger_mismatches(conn: AsyncConnection) -> list[tuple[str, str, int, int]]:
    """Users whose balance differs from the sum of their ledger: (id, name, balance, Σ)."""
    sums = (
        select(ledger.c.user_id, func.coalesce(func.sum(ledger.c.amount_credits), 0).label("s"))
        .group_by(ledger.c.user_id)
        .subquery()
    )
    rows = await conn.execute(
        select(users.c.id, users.c.name, users.c.balance_credits, func.coalesce(sums.c.s, 0))
        .select_from(users.outerjoin(sums, sums.c.user_id == users.c.id))
        .where(users.c.balance_credits != func.coalesce(sums.c.s, 0))
    )
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]
