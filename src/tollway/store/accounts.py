"""Users, projects and memberships."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.schema import memberships, projects, users


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    name: str
    balance_credits: int


@dataclass(frozen=True, slots=True)
class ProjectRow:
    id: str
    name: str


async def insert_user(conn: AsyncConnection, user_id: str, name: str, now: int) -> None:
    await conn.execute(
        insert(users).values(id=user_id, name=name, balance_credits=0, created_at=now)
    )


async def user_by_name(conn: AsyncConnection, name: str) -> UserRow | None:
    row = (
        await conn.execute(
            select(users.c.id, users.c.name, users.c.balance_credits).where(users.c.name == name)
        )
    ).first()
    return UserRow(row.id, row.name, row.balance_credits) if row else None


async def user_by_id(conn: AsyncConnection, user_id: str) -> UserRow | None:
    row = (
        await conn.execute(
            select(users.c.id, users.c.name, users.c.balance_credits).where(users.c.id == user_id)
        )
    ).first()
    return UserRow(row.id, row.name, row.balance_credits) if row else None


async def lock_user(conn: AsyncConnection, user_id: str) -> None:
    """Serialise writers of one user's rows (FOR UPDATE on PostgreSQL; SQLite's write
    transactions are serialised already)."""
    await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())


async def insert_project(conn: AsyncConnection, project_id: str, name: str, now: int) -> None:
    await conn.execute(insert(projects).values(id=project_id, name=name, created_at=now))


async def project_by_name(conn: AsyncConnection, name: str) -> ProjectRow | None:
    row = (
        await conn.execute(select(projects.c.id, projects.c.name).where(projects.c.name == name))
    ).first()
    return ProjectRow(row.id, row.name) if row else None


async def project_by_id(conn: AsyncConnection, project_id: str) -> ProjectRow | None:
    row = (
        await conn.execute(
            select(projects.c.id, projects.c.name).where(projects.c.id == project_id)
        )
    ).first()
    return ProjectRow(row.id, row.name) if row else None


async def count_users(conn: AsyncConnection) -> int:
    return len((await conn.execute(select(users.c.id).limit(1))).all())


async def role_of(conn: AsyncConnection, user_id: str, project_id: str) -> str | None:
    row = (
        await conn.execute(
            select(memberships.c.role).where(
                memberships.c.user_id == user_id, memberships.c.project_id == project_id
            )
        )
    ).first()
    return str(row.role) if row else None


async def upsert_membership(
    conn: AsyncConnection, user_id: str, project_id: str, role: str
) -> None:
    updated = await conn.execute(
        update(memberships)
        .where(memberships.c.user_id == user_id, memberships.c.project_id == project_id)
        .values(role=role)
    )
    if updated.rowcount == 0:
        await conn.execute(
            insert(memberships).values(user_id=user_id, project_id=project_id, role=role)
        )
