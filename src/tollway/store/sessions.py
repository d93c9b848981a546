"""Console sessions: stored by digest only, refused once expired."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store.schema import console_sessions, memberships, projects, users


@frozen
class SessionRow:
    digest: str
    user_id: str
    user_name: str
    expires_at_ms: int


async def insert_session(
    conn: AsyncConnection,
    *,
    digest: str,
    user_id: str,
    subject: str,
    now_ms: int,
    expires_at_ms: int,
) -> None:
    await conn.execute(
        insert(console_sessions).values(
            digest=digest,
            user_id=user_id,
            subject=subject[:255],
            created_at_ms=now_ms,
            expires_at_ms=expires_at_ms,
        )
    )


async def live_session(conn: AsyncConnection, digest: str, now_ms: int) -> SessionRow | None:
    c = console_sessions.c
    row = (
        await conn.execute(
            select(c.digest, c.user_id, users.c.name, c.expires_at_ms)
            .select_from(console_sessions.join(users, users.c.id == c.user_id))
            .where(c.digest == digest, c.expires_at_ms > now_ms)
        )
    ).first()
    return SessionRow(*row) if row else None


async def delete_session(conn: AsyncConnection, digest: str) -> bool:
    result = await conn.execute(delete(console_sessions).where(console_sessions.c.digest == digest))
    return result.rowcount > 0


async def prune_expired(conn: AsyncConnection, now_ms: int) -> None:
    await conn.execute(delete(console_sessions).where(console_sessions.c.expires_at_ms <= now_ms))


@frozen
class ProjectOfUser:
    id: str
    name: str
    role: str


async def projects_of_user(conn: AsyncConnection, user_id: str) -> list[ProjectOfUser]:
    """The projects a user is a member of, by name, with the role there."""
    rows = await conn.execute(
        select(projects.c.id, projects.c.name, memberships.c.role)
        .select_from(memberships.join(projects, projects.c.id == memberships.c.project_id))
        .where(memberships.c.user_id == user_id)
        .order_by(projects.c.name)
    )
    return [ProjectOfUser(*r) for r in rows]
