"""The audit log is append-only in the database itself, and a change cannot commit without
its row: when the audit insert fails, the change is rolled back (both backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from tests.support.world import Member, World
from tollway.audit.actor import CLI
from tollway.billing.budgets import BudgetService, NewBudget
from tollway.clock import system_clock
from tollway.projects.config import ProjectConfigUpdate
from tollway.projects.service import ProjectService
from tollway.providers.registry import load_registry
from tollway.store.schema import api_keys, audit_log, budgets, ledger, project_configs


async def count(world: World, table: object) -> int:
    async with world.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def test_rows_cannot_be_updated_deleted_or_truncated(world: World) -> None:
    await world.member("alice", "p1")
    before = await count(world, audit_log)
    assert before > 0
    statements = ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"]
    if not world.db.is_sqlite:
        statements.append("TRUNCATE audit_log")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            async with world.db.write() as conn:
                await conn.execute(text(statement))
    assert await count(world, audit_log) == before
    async with world.db.read() as conn:
        actions = {r[0] for r in await conn.execute(select(audit_log.c.action))}
    assert "x" not in actions


@pytest.fixture
async def refusing_audit(world: World) -> AsyncIterator[Member]:
    """A member, then a trigger that makes every audit insert fail."""
    alice = await world.member("alice", "p1", credits_eur="5")
    async with world.db.write() as conn:
        if world.db.is_sqlite:
            await conn.execute(
                text(
                    "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit insert refused'); END"
                )
            )
        else:
            await conn.execute(
                text(
                    "CREATE FUNCTION audit_refused() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit insert refused'; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION audit_refused()"
                )
            )
    yield alice


async def test_a_change_cannot_commit_without_its_audit_row(
    world: World, refusing_audit: Member
) -> None:
    alice = refusing_audit
    rows = await count(world, audit_log)
    keys_before = await count(world, api_keys)
    ledger_before = await count(world, ledger)
    async with world.db.read() as conn:
        config_before = (await conn.execute(select(project_configs))).all()

    with pytest.raises(Exception):  # noqa: B017 - whatever the driver says, nothing commits
        await world.keys.create(
            actor=CLI,
            user_id=alice.user_id,
            project_id=alice.project_id,
            name="k",
            is_management=False,
        )
    with pytest.raises(Exception):  # noqa: B017
        await world.keys.delete(actor=CLI, user_id=alice.user_id, name="p1-inf", calling_key_id=0)
    with pytest.raises(Exception):  # noqa: B017
        await world.accounts.add_credits(actor=CLI, user="alice", amount_eur="1")
    with pytest.raises(Exception):  # noqa: B017
        await world.accounts.adjust_credits(actor=CLI, user="alice", amount_eur="-1", reason="r")
    with pytest.raises(Exception):  # noqa: B017
        await world.accounts.add_user("bob", actor=CLI)
    with pytest.raises(Exception):  # noqa: B017
        await BudgetService(world.db, system_clock).create(
            actor=CLI,
            user_id=alice.user_id,
            project_id=alice.project_id,
            spec=NewBudget(scope="project", period="daily", limit_credits=5),
        )
    projects = ProjectService(world.db, load_registry(None), system_clock)
    with pytest.raises(Exception):  # noqa: B017
        await projects.update(
            actor=CLI,
            user_id=alice.user_id,
            project_id=alice.project_id,
            change=ProjectConfigUpdate.model_validate({"active": False, "allow_overwrite": True}),
        )

    assert await count(world, audit_log) == rows
    assert await count(world, api_keys) == keys_before
    assert await count(world, ledger) == ledger_before
    assert await count(world, budgets) == 0
    async with world.db.read() as conn:
        assert (await conn.execute(select(project_configs))).all() == config_before
    assert (await world.accounts.user("alice")).balance_credits == 5_000_000
    with pytest.raises(Exception, match="unknown user"):
        await world.accounts.user("bob")
