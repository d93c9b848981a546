"""Every enum-like value the code writes fits its column, on both backends.

SQLite ignores declared lengths, so a value too long for its column only fails on
PostgreSQL — where `client_disconnected` (19 characters) in `usage_events.status`
VARCHAR(16) once made every disconnected stream's settlement fail. The values come from the
constants the code itself uses, so a new one is covered without touching this test."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, String, Table, select, update

from tests.support.world import World
from tollway.accounts.service import ROLES
from tollway.billing.budgets import PERIODS
from tollway.billing.records import USAGE_SOURCES, USAGE_STATUSES
from tollway.gateway.pipeline import PATHS
from tollway.scopes import SCOPES
from tollway.store.schema import LEDGER_KINDS, budgets, ledger, memberships, usage_events

VALUES: list[tuple[Column[Any], tuple[str, ...]]] = [
    (usage_events.c.status, USAGE_STATUSES),
    (usage_events.c.usage_source, USAGE_SOURCES),
    (usage_events.c.endpoint, tuple(PATHS)),
    (ledger.c.kind, LEDGER_KINDS),
    (budgets.c.scope, SCOPES),
    (budgets.c.period, PERIODS),
    (memberships.c.role, ROLES),
]


def test_the_meter_writes_what_the_constants_name() -> None:
    assert "client_disconnected" in USAGE_STATUSES
    assert "aborted" in USAGE_STATUSES
    assert set(USAGE_SOURCES) == {"upstream", "counted", "none"}


@pytest.mark.parametrize(("column", "values"), VALUES, ids=str)
def test_declared_lengths_fit_every_value(column: Column[Any], values: tuple[str, ...]) -> None:
    assert isinstance(column.type, String)
    assert column.type.length is not None
    assert max(len(v) for v in values) <= column.type.length, column


async def _round_trip(world: World, table: Table, column: Column[Any], value: str) -> str:
    """Write `value` into an existing row's `column` and read it back."""
    key = next(iter(table.primary_key.columns))
    async with world.db.write() as conn:
        first = (await conn.execute(select(key).limit(1))).scalar_one()
        await conn.execute(update(table).where(key == first).values({column.name: value}))
        return str((await conn.execute(select(column).where(key == first))).scalar_one())


async def test_every_value_round_trips(world: World) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    async with world.db.write() as conn:
        await conn.execute(
            usage_events.insert().values(
                request_id="r1", created_at=0, user_id=alice.user_id,
                project_id=alice.project_id, key_id=None, key_name="k", endpoint="embeddings",
                model="m", provider="p", prompt_tokens=0, completion_tokens=0,
                total_tokens=0, cost_credits=0, latency_ms=0, status="success",
                usage_source="none",
            )
        )  # fmt: skip
        await conn.execute(
            budgets.insert().values(
                id="b1", project_id=alice.project_id, scope="project", user_id=None,
                key_id=None, period="daily", limit_credits=1, created_at=0,
            )
        )  # fmt: skip
    for column, values in VALUES:  # each table has exactly one row now
        table = column.table
        assert isinstance(table, Table)
        for value in values:
            assert await _round_trip(world, table, column, value) == value
