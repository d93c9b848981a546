"""Users, projects and memberships."""

from __future__ import annotations

from sqlalchemy import Column, ScalarSelect, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store.reservations import LEASE_PREFIX
from tollway.store.schema import api_keys, memberships, projects, reservations, users


@frozen
class UserRow:
    id: str
    name: str
    balance_credits: int


@frozen
class ProjectRow:
    id: str
    name: str


@frozen
class UserListing:
    id: str
    name: str
    balance_credits: int
    created_at: int
    projects: int
    keys: int


@frozen
class ProjectListing:
    id: str
    name: str
    created_at: int
    members: int
    keys: int


@frozen
class MembershipListing:
    project: str
    user: str
    role: str


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


# What a user may spend: the balance plus what gateway processes hold of it as credit leases
# (still the user's until charged; billing/leases.py). Requests in flight against a lease are
# not subtracted; requests reserved in the database are (their hold left the balance).
_SPENDABLE = (
    users.c.balance_credits
    + select(func.coalesce(func.sum(reservations.c.amount_credits), 0))
    .where(
        reservations.c.user_id == users.c.id,
        reservations.c.request_id.like(f"{LEASE_PREFIX}%"),
    )
    .scalar_subquery()
)


async def spendable_credits(conn: AsyncConnection, user_id: str) -> int | None:
    """The balance as shown to its user (None: no such user)."""
    value = (await conn.execute(select(_SPENDABLE).where(users.c.id == user_id))).scalar()
    return None if value is None else int(value)


def _count_by(column: Column[str], key: Column[str]) -> ScalarSelect[int]:
    """A scalar subquery: how many rows of ``column``'s table have ``column == key``."""
    return select(func.count()).where(column == key).scalar_subquery()


async def list_users(conn: AsyncConnection) -> list[UserListing]:
    """Every user, by name, with the number of projects and keys they hold."""
    rows = await conn.execute(
        select(
            users.c.id,
            users.c.name,
            _SPENDABLE,
            users.c.created_at,
            _count_by(memberships.c.user_id, users.c.id),
            _count_by(api_keys.c.user_id, users.c.id),
        ).order_by(users.c.name)
    )
    return [UserListing(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


async def list_projects(conn: AsyncConnection) -> list[ProjectListing]:
    """Every project, by name, with its number of members and keys."""
    rows = await conn.execute(
        select(
            projects.c.id,
            projects.c.name,
            projects.c.created_at,
            _count_by(memberships.c.project_id, projects.c.id),
            _count_by(api_keys.c.project_id, projects.c.id),
        ).order_by(projects.c.name)
    )
    return [ProjectListing(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in rows]


async def list_memberships(
    conn: AsyncConnection, *, project_id: str | None = None, user_id: str | None = None
) -> list[MembershipListing]:
    """Memberships by project then user name, optionally of one project and/or one user."""
    query = (
        select(projects.c.name, users.c.name, memberships.c.role)
        .select_from(
            memberships.join(users, users.c.id == memberships.c.user_id).join(
                projects, projects.c.id == memberships.c.project_id
            )
        )
        .order_by(projects.c.name, users.c.name)
    )
    if project_id is not None:
        query = query.where(memberships.c.project_id == project_id)
    if user_id is not None:
        query = query.where(memberships.c.user_id == user_id)
    return [MembershipListing(r[0], r[1], r[2]) for r in await conn.execute(query)]
