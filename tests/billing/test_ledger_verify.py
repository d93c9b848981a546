from __future__ import annotations

import asyncio

from sqlalchemy import text
from typer.testing import CliRunner, Result

from tests.billing.conftest import FakeClock, ask, payer_of, usage
from tests.support.world import World
from tollway.billing.meter import Meter
from tollway.billing.recovery import Recovery
from tollway.cli import app
from tollway.clock import system_clock


async def verify(database_url: str) -> Result:
    # The CLI runs its own event loop: give it a thread of its own.
    runner = CliRunner()
    return await asyncio.to_thread(
        runner.invoke, app, ["--database-url", database_url, "ledger", "verify"]
    )


async def test_verify_passes_on_consistent_books(
    world: World, database_url: str, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    r = await meter.reserve(ask(await payer_of(world, alice)))
    await meter.settle(r, usage(10, 10))
    result = await verify(database_url)
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output
    assert "checked 1 users, 4 ledger rows, 0 open reservations" in result.output


async def test_verify_fails_on_a_corrupted_balance(world: World, database_url: str) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    async with world.db.write() as conn:
        await conn.execute(
            text("UPDATE users SET balance_credits = balance_credits + 1 WHERE id = :u"),
            {"u": alice.user_id},
        )
    result = await verify(database_url)
    assert result.exit_code == 1
    assert "balance 1000001 credits != ledger sum 1000000" in result.output
    assert "ledger verification failed" in result.output


async def test_verify_fails_on_a_reservation_left_by_a_dead_process(
    world: World, database_url: str
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    dead = Meter(world.db, FakeClock(), instance_id="gone")
    await dead.reserve(ask(await payer_of(world, alice)))
    result = await verify(database_url)
    assert result.exit_code == 1
    assert "held by dead gateway processes" in result.output


async def test_verify_fails_when_a_reservation_lost_its_ledger_row(
    world: World, database_url: str, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    await meter.reserve(ask(await payer_of(world, alice)))
    async with world.db.write() as conn:
        await conn.execute(text("DELETE FROM reservations"))
    result = await verify(database_url)
    assert result.exit_code == 1
    assert "open reservations hold 0 credits but unreleased reserve ledger rows total 60" in (
        result.output
    )


async def test_verify_fails_on_a_reservation_held_longer_than_its_bound(
    world: World, database_url: str
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    long_ago = FakeClock()  # 2025: far older than TOLLWAY_RESERVATION_MAX_AGE_S
    live = Recovery(world.db, Meter(world.db, long_ago, instance_id="live"), system_clock,
                    heartbeat_s=5, stale_s=20)  # fmt: skip
    await live.register()  # a live instance: not the dead-process check
    meter = Meter(world.db, long_ago, instance_id="live")
    await meter.reserve(ask(await payer_of(world, alice)))
    result = await verify(database_url)
    assert result.exit_code == 1
    assert "1 reservation(s) holding 60 credits are older than 900 s" in result.output
    assert "dead gateway" not in result.output
