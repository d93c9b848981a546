"""API keys: stored by SHA-256 digest only."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store.schema import api_keys, budgets, projects, rate_limits, users


@frozen
class KeyRow:
    id: int
    user_id: str
    project_id: str
    name: str
    digest: str
    is_management: bool
    created_at: int


@frozen
class KeyListing:
    """A key as an operator sees it: never the secret, nor its digest."""

    user: str
    project: str
    name: str
    is_management: bool
    created_at: int


_COLUMNS = (
    api_keys.c.id,
    api_keys.c.user_id,
    api_keys.c.project_id,
    api_keys.c.name,
    api_keys.c.digest,
    api_keys.c.is_management,
    api_keys.c.created_at,
)


def _row(row: object) -> KeyRow:
    return KeyRow(*row)  # type: ignore[misc]


async def key_by_digest(conn: AsyncConnection, digest: str) -> KeyRow | None:
    row = (await conn.execute(select(*_COLUMNS).where(api_keys.c.digest == digest))).first()
    return _row(row) if row else None


async def keys_of_user(conn: AsyncConnection, user_id: str) -> list[KeyRow]:
    rows = await conn.execute(
        select(*_COLUMNS)
        .where(api_keys.c.user_id == user_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [_row(r) for r in rows]


async def count_keys(conn: AsyncConnection, user_id: str) -> int:
    result = await conn.execute(
        select(func.count()).select_from(api_keys).where(api_keys.c.user_id == user_id)
    )
    return int(result.scalar_one())


async def key_name_taken(conn: AsyncConnection, user_id: str, name: str) -> bool:
    row = (
        await conn.execute(
            select(api_keys.c.id).where(api_keys.c.user_id == user_id, api_keys.c.name == name)
        )
    ).first()
    return row is not None


async def insert_key(
    conn: AsyncConnection,
    *,
    user_id: str,
    project_id: str,
    name: str,
    digest: str,
    is_management: bool,
    now: int,
) -> int:
    result = await conn.execute(
        insert(api_keys)
        .values(
            user_id=user_id,
            project_id=project_id,
            name=name,
            digest=digest,
            is_management=is_management,
            created_at=now,
        )
        .returning(api_keys.c.id)
    )
    return int(result.scalar_one())


async def key_by_name(conn: AsyncConnection, user_id: str, name: str) -> KeyRow | None:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(api_keys.c.user_id == user_id, api_keys.c.name == name)
        )
    ).first()
    return _row(row) if row else None


async def lock_key_by_name(conn: AsyncConnection, user_id: str, name: str) -> KeyRow | None:
    """The key, row-locked for the transaction (PostgreSQL: a budget or rate limit being
    created on it concurrently waits, then finds it gone)."""
    row = (
        await conn.execute(
            select(*_COLUMNS)
            .where(api_keys.c.user_id == user_id, api_keys.c.name == name)
            .with_for_update()
        )
    ).first()
    return _row(row) if row else None


async def limits_on_key(conn: AsyncConnection, key_id: int) -> tuple[int, int]:
    """(budgets, rate limits) set on this one key (scope `key`)."""
    row = (
        await conn.execute(
            select(
                select(func.count())
                .select_from(budgets)
                .where(budgets.c.key_id == key_id)
                .scalar_subquery(),
                select(func.count())
                .select_from(rate_limits)
                .where(rate_limits.c.key_id == key_id)
                .scalar_subquery(),
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def delete_key(conn: AsyncConnection, key_id: int) -> None:
    # Budgets and rate limits cascade by foreign key; deleting them explicitly keeps SQLite
    # files created without foreign_keys=ON consistent too.
    await conn.execute(delete(budgets).where(budgets.c.key_id == key_id))
    await conn.execute(delete(rate_limits).where(rate_limits.c.key_id == key_id))
    await conn.execute(delete(api_keys).where(api_keys.c.id == key_id))


async def list_keys(
    conn: AsyncConnection, *, user_id: str | None = None, project_id: str | None = None
) -> list[KeyListing]:
    """Keys by user name then age, optionally of one user and/or one project."""
    query = (
        select(
            users.c.name,
            projects.c.name,
            api_keys.c.name,
            api_keys.c.is_management,
            api_keys.c.created_at,
        )
        .select_from(
            api_keys.join(users, users.c.id == api_keys.c.user_id).join(
                projects, projects.c.id == api_keys.c.project_id
            )
        )
        .order_by(users.c.name, api_keys.c.created_at, api_keys.c.id)
    )
    if user_id is not None:
        query = query.where(api_keys.c.user_id == user_id)
    if project_id is not None:
        query = query.where(api_keys.c.project_id == project_id)
    return [KeyListing(r[0], r[1], r[2], bool(r[3]), int(r[4])) for r in await conn.execute(query)]
