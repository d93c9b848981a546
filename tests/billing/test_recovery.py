from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.billing.conftest import (
    FakeClock,
    ask,
    assert_invariant,
    balance_of,
    open_reservations,
    payer_of,
    usage,
)
from tests.support.world import World
from tollway.billing.meter import Meter
from tollway.billing.recovery import Recovery


def recovery_for(world: World, clock: FakeClock, instance_id: str) -> tuple[Meter, Recovery]:
    meter = Meter(world.db, clock, instance_id=instance_id)
    return meter, Recovery(world.db, meter, clock, heartbeat_s=5, stale_s=20)


async def release_rows(world: World, request_id: str) -> list[str]:
    async with world.db.read() as conn:
        rows = await conn.execute(
            text("SELECT kind FROM ledger WHERE request_id = :r ORDER BY id"), {"r": request_id}
        )
        return [str(r[0]) for r in rows]


async def test_stale_instance_reservation_is_released_exactly_once(
    world: World, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    dead_meter, dead = recovery_for(world, clock, "dead")
    _, alive = recovery_for(world, clock, "alive")
    await dead.register()
    await alive.register()
    reservation = await dead_meter.reserve(ask(await payer_of(world, alice)))
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 60

    clock.advance(15)
    await alive.beat()
    assert await alive.sweep() == 0  # 15 s of silence is not death yet
    clock.advance(10)
    await alive.beat()
    assert await alive.sweep() == 1
    assert await alive.sweep() == 0
    assert await balance_of(world.db, alice.user_id) == 1_000_000
    assert await open_reservations(world.db) == 0
    assert await release_rows(world, reservation.request_id) == ["reserve", "release"]
    async with world.db.read() as conn:
        event = (
            await conn.execute(
                text("SELECT status, cost_credits FROM usage_events WHERE request_id = :r"),
                {"r": reservation.request_id},
            )
        ).one()
        instances = (await conn.execute(text("SELECT id FROM instances ORDER BY id"))).all()
    assert tuple(event) == ("aborted", 0)
    assert [r[0] for r in instances] == ["alive"]  # the dead one is forgotten

    # The "dead" process was only paused: its late settlement charges nothing twice.
    assert await dead_meter.settle(reservation, usage(10, 50)) == 0
    assert await balance_of(world.db, alice.user_id) == 1_000_000
    await assert_invariant(world.db)


async def test_reservations_of_a_vanished_instance_are_released_on_start(
    world: World, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    ghost = Meter(world.db, clock, instance_id="never-registered")
    await ghost.reserve(ask(await payer_of(world, alice)))
    _, recovery = recovery_for(world, clock, "fresh")
    await recovery.start()
    try:
        assert await open_reservations(world.db) == 0
        assert await balance_of(world.db, alice.user_id) == 1_000_000
    finally:
        await recovery.stop()
    await assert_invariant(world.db)


async def test_live_instance_keeps_its_reservations(world: World, clock: FakeClock) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    meter, mine = recovery_for(world, clock, "mine")
    _, other = recovery_for(world, clock, "other")
    await mine.register()
    await other.register()
    reservation = await meter.reserve(ask(await payer_of(world, alice)))
    for _ in range(10):
        clock.advance(5)
        await mine.beat()
        await other.beat()
        assert await other.sweep() == 0
    assert await meter.settle(reservation, usage(10, 5)) == 15
    await assert_invariant(world.db)


async def test_sweepers_and_a_late_settlement_race_safely(world: World, clock: FakeClock) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    dead_meter, dead = recovery_for(world, clock, "dead")
    await dead.register()
    held = [await dead_meter.reserve(ask(payer)) for _ in range(20)]
    clock.advance(60)
    sweepers = [recovery_for(world, clock, f"s{i}")[1] for i in range(3)]
    for s in sweepers:
        await s.register()
    results = await asyncio.gather(
        *(s.sweep() for s in sweepers),
        *(dead_meter.settle(r, usage(10, 10)) for r in held),
    )
    released = sum(results[:3])
    charged = results[3:]
    assert released + sum(1 for c in charged if c) == 20
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - sum(charged)
    assert await open_reservations(world.db) == 0
    await assert_invariant(world.db)


async def test_graceful_stop_releases_own_reservations(world: World, clock: FakeClock) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    meter, recovery = recovery_for(world, clock, "leaving")
    await recovery.start()
    await meter.reserve(ask(await payer_of(world, alice)))
    await recovery.stop()
    assert await open_reservations(world.db) == 0
    assert await balance_of(world.db, alice.user_id) == 1_000_000
    async with world.db.read() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM instances"))).scalar_one()
    assert left == 0
    await assert_invariant(world.db)


async def test_heartbeat_reregisters_a_forgotten_instance(world: World, clock: FakeClock) -> None:
    _, recovery = recovery_for(world, clock, "sleepy")
    await recovery.register()
    async with world.db.write() as conn:
        await conn.execute(text("DELETE FROM instances"))
    await recovery.beat()
    async with world.db.read() as conn:
        ids = (await conn.execute(text("SELECT id FROM instances"))).all()
    assert [r[0] for r in ids] == ["sleepy"]
