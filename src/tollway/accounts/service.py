"""Tenancy administration, used by the CLI: users, projects, memberships, top-ups."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError

from tollway.audit.actor import Actor
from tollway.billing.credits import credits_to_eur, parse_eur
from tollway.clock import Clock
from tollway.errors import BadRequest, NotFound
from tollway.frozen import frozen
from tollway.ids import new_id
from tollway.keys.secrets import NAME_PATTERN, digest_of, generate_key
from tollway.projects.service import default_config_row
from tollway.store import accounts, audit, configs, keys, ledger
from tollway.store.accounts import (
    MembershipListing,
    ProjectListing,
    ProjectRow,
    UserListing,
    UserRow,
)
from tollway.store.database import Database

ROLES = ("admin", "member")
REASON_MAX = 200  # the ledger's note column


@frozen
class Identity:
    """Who a key acts as: its user, its project, and the user's role there."""

    user: UserRow
    project: ProjectRow
    role: str | None


@frozen
class Bootstrap:
    user: UserRow
    project: ProjectRow
    api_key: str  # shown once


class AccountService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_user(self, name: str, *, actor: Actor) -> UserRow:
        _check_name("user", name)
        user_id = new_id()
        now = self._clock()
        try:
            async with self._db.write() as conn:
                await accounts.insert_user(conn, user_id, name, int(now))
                await audit.append(
                    conn,
                    actor,
                    action="user.create",
                    target=f"user/{name}",
                    project_id=None,
                    now_ms=int(now * 1000),
                    after={"user_id": user_id, "name": name},
                )
        except IntegrityError as exc:
            raise BadRequest(f"user '{name}' already exists") from exc
        return UserRow(user_id, name, 0)

    async def add_project(self, name: str, *, actor: Actor) -> ProjectRow:
        _check_name("project", name)
        project_id = new_id()
        now = self._clock()
        try:
            async with self._db.write() as conn:
                await accounts.insert_project(conn, project_id, name, int(now))
                await configs.insert_config(conn, default_config_row(project_id, now))
                await audit.append(
                    conn,
                    actor,
                    action="project.create",
                    target=f"project/{name}",
                    project_id=project_id,
                    now_ms=int(now * 1000),
                    after={"project_id": project_id, "name": name},
                )
        except IntegrityError as exc:
            raise BadRequest(f"project '{name}' already exists") from exc
        return ProjectRow(project_id, name)

    async def balance_credits(self, user_id: str) -> int:
        """The spendable balance: funds minus charges and the holds of requests reserved in
        the database; credits leased to a gateway process count as the user's until charged
        (docs/billing.md)."""
        async with self._db.read() as conn:
            credits = await accounts.spendable_credits(conn, user_id)
        if credits is None:
            raise NotFound("user not found")
        return credits

    async def identity(self, *, user_id: str, project_id: str) -> Identity:
        async with self._db.read() as conn:
            user = await accounts.user_by_id(conn, user_id)
            project = await accounts.project_by_id(conn, project_id)
            role = await accounts.role_of(conn, user_id, project_id)
        if user is None or project is None:
            raise NotFound("user or project not found")
        return Identity(user, project, role)

    async def user(self, name: str) -> UserRow:
        async with self._db.read() as conn:
            row = await accounts.user_by_name(conn, name)
        if row is None:
            raise NotFound(f"unknown user '{name}'")
        return row

    async def project(self, name: str) -> ProjectRow:
        async with self._db.read() as conn:
            row = await accounts.project_by_name(conn, name)
        if row is None:
            raise NotFound(f"unknown project '{name}'")
        return row

    async def set_membership(self, *, actor: Actor, project: str, user: str, role: str) -> None:
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        project_row = await self.project(project)
        user_row = await self.user(user)
        async with self._db.write() as conn:
            before = await accounts.role_of(conn, user_row.id, project_row.id)
            await accounts.upsert_membership(conn, user_row.id, project_row.id, role)
            await audit.append(
                conn,
                actor,
                action="membership.set",
                target=f"membership/{project}/{user}",
                project_id=project_row.id,
                now_ms=int(self._clock() * 1000),
                before=None if before is None else {"user_id": user_row.id, "role": before},
                after={"user_id": user_row.id, "role": role},
            )

    async def users(self) -> list[UserListing]:
        async with self._db.read() as conn:
            return await accounts.list_users(conn)

    async def projects(self) -> list[ProjectListing]:
        async with self._db.read() as conn:
            return await accounts.list_projects(conn)

    async def memberships(
        self, *, project: str | None = None, user: str | None = None
    ) -> list[MembershipListing]:
        project_id = (await self.project(project)).id if project is not None else None
        user_id = (await self.user(user)).id if user is not None else None
        async with self._db.read() as conn:
            return await accounts.list_memberships(conn, project_id=project_id, user_id=user_id)

    async def add_credits(self, *, actor: Actor, user: str, amount_eur: str) -> int:
        """Top up a balance by a positive amount; returns the new balance in credits."""
        credits = parse_eur(amount_eur)
        user_row = await self.user(user)
        now = self._clock()
        entry_id = f"topup:{uuid.uuid4().hex}"
        async with self._db.write() as conn:
            await ledger.post_entry(
                conn,
                entry_id=entry_id,
                user_id=user_row.id,
                kind="topup",
                amount_credits=credits,
                now=int(now),
            )
            updated = await accounts.user_by_id(conn, user_row.id)
            assert updated is not None
            await audit.append(
                conn,
                actor,
                action="credits.add",
                target=f"user/{user}",
                project_id=None,
                now_ms=int(now * 1000),
                before={"balance_eur": _eur(updated.balance_credits - credits)},
                after={
                    "balance_eur": _eur(updated.balance_credits),
                    "amount_eur": _eur(credits),
                    "ledger_entry": entry_id,
                },
            )
        return updated.balance_credits

    async def adjust_credits(self, *, actor: Actor, user: str, amount_eur: str, reason: str) -> int:
        """Refund (positive) or debit (negative) a balance, with the reason in the ledger row;
        returns the new balance in credits.

        A debit never takes the balance below zero: the check and the write happen in one
        transaction with the user's row locked, so a concurrent reservation cannot slip in
        between. A debit may take at most the spendable balance (funds minus open
        reservations), so no request in flight loses the credits it reserved."""
        credits = parse_eur(amount_eur, signed=True)
        note = " ".join(reason.split())
        if not note:
            raise BadRequest("reason must not be empty: it is recorded in the ledger")
        if len(note) > REASON_MAX:
            raise BadRequest(f"reason must be at most {REASON_MAX} characters")
        user_row = await self.user(user)
        async with self._db.write() as conn:
            await accounts.lock_user(conn, user_row.id)
            current = await accounts.user_by_id(conn, user_row.id)
            assert current is not None
            if current.balance_credits + credits < 0:
                raise BadRequest(
                    f"a debit of {credits_to_eur(-credits)} EUR would take the balance of "
                    f"{user} below zero (spendable balance "
                    f"{credits_to_eur(current.balance_credits)} EUR)"
                )
            now = self._clock()
            entry_id = f"adjust:{uuid.uuid4().hex}"
            await ledger.post_entry(
                conn,
                entry_id=entry_id,
                user_id=user_row.id,
                kind="adjustment",
                amount_credits=credits,
                now=int(now),
                note=note,
            )
            await audit.append(
                conn,
                actor,
                action="credits.adjust",
                target=f"user/{user}",
                project_id=None,
                now_ms=int(now * 1000),
                before={"balance_eur": _eur(current.balance_credits)},
                after={
                    "balance_eur": _eur(current.balance_credits + credits),
                    "amount_eur": _eur(credits),
                    "reason": note,
                    "ledger_entry": entry_id,
                },
            )
        return current.balance_credits + credits

    async def bootstrap(self, *, actor: Actor) -> Bootstrap | None:
        """On an empty database, in ONE transaction: user ``admin``, project ``default``
        (admin of it, default configuration) and a management key ``default``. None when
        the database has users already (then nothing is written)."""
        now = self._clock()
        user = UserRow(new_id(), "admin", 0)
        project = ProjectRow(new_id(), "default")
        secret = generate_key()
        try:
            async with self._db.write() as conn:
                if await accounts.count_users(conn) > 0:
                    return None
                await accounts.insert_user(conn, user.id, user.name, int(now))
                await accounts.insert_project(conn, project.id, project.name, int(now))
                await configs.insert_config(conn, default_config_row(project.id, now))
                await accounts.upsert_membership(conn, user.id, project.id, "admin")
                await keys.insert_key(
                    conn,
                    user_id=user.id,
                    project_id=project.id,
                    name="default",
                    digest=digest_of(secret),
                    is_management=True,
                    now=int(now),
                )
                await audit.append(
                    conn,
                    actor,
                    action="bootstrap",
                    target=f"project/{project.name}",
                    project_id=project.id,
                    now_ms=int(now * 1000),
                    after={
                        "user": user.name,
                        "project": project.name,
                        "role": "admin",
                        "management_key": "default",
                    },
                )
        except IntegrityError:  # a concurrent init won the race
            return None
        return Bootstrap(user, project, secret)


def _eur(credits: int) -> str:
    return f"{credits_to_eur(credits).normalize():f}"


def _check_name(what: str, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise BadRequest(f"{what} name must be 1-64 characters of A-Z a-z 0-9 . _ -")
