"""Rate limits of a project: requests and tokens per minute on a scope (as budgets)."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store.schema import api_keys, rate_limits


@frozen
class RateLimitRow:
    id: str
    project_id: str
    scope: str
    user_id: str | None
    key_id: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    created_at: int
    key_name: str | None = None


async def insert_rate_limit(conn: AsyncConnection, row: RateLimitRow) -> None:
    await conn.execute(
        insert(rate_limits).values(
            id=row.id,
            project_id=row.project_id,
            scope=row.scope,
            user_id=row.user_id,
            key_id=row.key_id,
            requests_per_minute=row.requests_per_minute,
            tokens_per_minute=row.tokens_per_minute,
            created_at=row.created_at,
        )
    )


async def rate_limits_of_project(conn: AsyncConnection, project_id: str) -> list[RateLimitRow]:
    """Every rate limit of a project, oldest first, with the name of a key limit's key
    (uses ix_rate_limits_project_id)."""
    c = rate_limits.c
    rows = await conn.execute(
        select(
            c.id,
            c.project_id,
            c.scope,
            c.user_id,
            c.key_id,
            c.requests_per_minute,
            c.tokens_per_minute,
            c.created_at,
            api_keys.c.name,
        )
        .select_from(rate_limits.outerjoin(api_keys, api_keys.c.id == c.key_id))
        .where(c.project_id == project_id)
        .order_by(c.created_at, c.id)
    )
    return [RateLimitRow(*r) for r in rows]


async def delete_rate_limit(conn: AsyncConnection, project_id: str, limit_id: str) -> bool:
    c = rate_limits.c
    result = await conn.execute(
        delete(rate_limits).where(c.id == limit_id, c.project_id == project_id)
    )
    return result.rowcount > 0
