"""Tenants for tests, made through the same services the CLI uses."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.accounts.service import AccountService
from tollway.audit.actor import CLI
from tollway.clock import system_clock
from tollway.keys.service import KeyService
from tollway.store.database import Database
from tollway.store.migrate import upgrade


@dataclass(frozen=True)
class Member:
    user: str
    user_id: str
    project: str
    project_id: str
    management_key: str
    inference_key: str


class World:
    """Creates users, projects, memberships, keys and credits in a real database."""

    def __init__(self, database_url: str) -> None:
        self.db = Database(database_url, pool_size=2)
        self.accounts = AccountService(self.db, system_clock)
        self.keys = KeyService(self.db, system_clock, key_limit=100)

    async def migrate(self) -> None:
        await upgrade(self.db.engine)

    async def member(
        self, user: str, project: str, *, role: str = "admin", credits_eur: str | None = None
    ) -> Member:
        try:
            user_row = await self.accounts.user(user)
        except Exception:
            user_row = await self.accounts.add_user(user, actor=CLI)
        try:
            project_row = await self.accounts.project(project)
        except Exception:
            project_row = await self.accounts.add_project(project, actor=CLI)
        await self.accounts.set_membership(actor=CLI, project=project, user=user, role=role)
        mgmt = await self.keys.create(
            actor=CLI,
            user_id=user_row.id,
            project_id=project_row.id,
            name=f"{project}-mgmt",
            is_management=True,
        )
        inf = await self.keys.create(
            actor=CLI,
            user_id=user_row.id,
            project_id=project_row.id,
            name=f"{project}-inf",
            is_management=False,
        )
        if credits_eur is not None:
            await self.accounts.add_credits(actor=CLI, user=user, amount_eur=credits_eur)
        return Member(user, user_row.id, project, project_row.id, mgmt.api_key, inf.api_key)

    async def close(self) -> None:
        await self.db.dispose()
