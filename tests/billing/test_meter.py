from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import text

from tests.billing.conftest import (
    FakeClock,
    ask,
    assert_invariant,
    balance_of,
    open_reservations,
    payer_of,
    set_balance,
    usage,
)
from tests.support.world import World
from tollway.billing.meter import Meter, Reservation
from tollway.errors import InsufficientBalance, Unauthorized
from tollway.store.database import Database


async def test_reserve_then_settle_charges_exact_cost_rounded_up(
    world: World, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    reservation = await meter.reserve(
        ask(payer, prompt=10, max_tokens=100, input_price="0.1", output_price="0.3")
    )
    assert reservation.amount_credits == 31  # 10 x 0.1 + 100 x 0.3
    assert not reservation.lowered and reservation.max_tokens == 100
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 31
    charged = await meter.settle(reservation, usage(7, 5, input_price="0.1", output_price="0.3"))
    assert charged == 3  # 0.7 + 1.5 = 2.2, rounded up
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 3
    async with world.db.read() as conn:
        rows = (
            await conn.execute(
                text("SELECT entry_id, amount_credits FROM ledger WHERE request_id = :r"),
                {"r": reservation.request_id},
            )
        ).all()
        event = (
            await conn.execute(
                text(
                    "SELECT cost_credits, total_tokens, status FROM usage_events"
                    " WHERE request_id = :r"
                ),
                {"r": reservation.request_id},
            )
        ).one()
    rid = reservation.request_id
    assert sorted(rows) == sorted(
        [(f"reserve:{rid}", -31), (f"release:{rid}", 31), (f"charge:{rid}", -3)]
    )
    assert tuple(event) == (3, 12, "success")
    await assert_invariant(world.db)


async def test_settling_twice_charges_once(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    reservation = await meter.reserve(ask(await payer_of(world, alice)))
    assert await meter.settle(reservation, usage(10, 20)) == 30
    assert await meter.settle(reservation, usage(10, 20)) == 30
    assert await meter.settle(reservation, None) == 30
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 30
    await assert_invariant(world.db)


async def test_concurrent_double_settle_charges_once(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    reservation = await meter.reserve(ask(await payer_of(world, alice)))
    results = await asyncio.gather(*(meter.settle(reservation, usage(10, 20)) for _ in range(8)))
    assert results == [30] * 8
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 30
    await assert_invariant(world.db)


async def test_settle_none_releases_everything(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    reservation = await meter.reserve(ask(await payer_of(world, alice)))
    assert await meter.settle(reservation, None) == 0
    assert await balance_of(world.db, alice.user_id) == 1_000_000
    assert await open_reservations(world.db) == 0
    await assert_invariant(world.db)


async def test_max_tokens_lowered_to_what_the_balance_covers(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 100)
    reservation = await meter.reserve(
        ask(await payer_of(world, alice), prompt=10, max_tokens=1000, output_price="2")
    )
    assert reservation.lowered
    assert reservation.max_tokens == 45  # (100 - 10) / 2
    assert reservation.amount_credits == 100
    assert await balance_of(world.db, alice.user_id) == 0
    assert await meter.settle(reservation, usage(10, 45, output_price="2")) == 100
    await assert_invariant(world.db)


async def test_fractional_prices_lower_without_overdrawing(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 7)
    reservation = await meter.reserve(
        ask(
            await payer_of(world, alice),
            prompt=3,
            max_tokens=1000,
            input_price="0.7",
            output_price="0.3",
        )
    )
    # 3 x 0.7 = 2.1; (7 - 2.1) / 0.3 = 16.33 → 16 tokens; 2.1 + 4.8 = 6.9 → 7 credits
    assert (reservation.max_tokens, reservation.amount_credits) == (16, 7)
    await assert_invariant(world.db)


async def test_free_output_is_never_lowered(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 10)
    reservation = await meter.reserve(
        ask(await payer_of(world, alice), prompt=10, max_tokens=10_000, output_price="0")
    )
    assert (reservation.max_tokens, reservation.amount_credits, reservation.lowered) == (
        10_000,
        10,
        False,
    )


async def test_prompt_not_covered_is_402(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 9)
    payer = await payer_of(world, alice)
    with pytest.raises(InsufficientBalance, match="insufficient balance"):
        await meter.reserve(ask(payer, prompt=10))
    # The prompt fits but not a single completion token either: refused too.
    await set_balance(world, alice, 10)
    with pytest.raises(InsufficientBalance):
        await meter.reserve(ask(payer, prompt=10, output_price="1"))
    assert await balance_of(world.db, alice.user_id) == 10
    assert await open_reservations(world.db) == 0
    await assert_invariant(world.db)


async def test_embeddings_reserve_only_the_prompt(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 10)
    reservation = await meter.reserve(ask(await payer_of(world, alice), prompt=10, max_tokens=0))
    assert (reservation.amount_credits, reservation.max_tokens) == (10, 0)


async def test_usage_above_the_bound_is_capped_at_the_reservation(
    world: World, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    reservation = await meter.reserve(ask(await payer_of(world, alice), prompt=10, max_tokens=50))
    assert await meter.settle(reservation, usage(12, 80)) == 60
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 60
    await assert_invariant(world.db)


async def test_deleted_key_is_refused_at_reserve(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    mgmt = await payer_of(world, alice, "mgmt")
    await world.keys.delete(user_id=alice.user_id, name=payer.key_name, calling_key_id=mgmt.key_id)
    with pytest.raises(Unauthorized, match="invalid API key"):
        await meter.reserve(ask(payer))
    assert await balance_of(world.db, alice.user_id) == 1_000_000


async def test_two_hundred_concurrent_reservations_never_overdraw(
    world: World, database_url: str, clock: FakeClock
) -> None:
    """Two `Database` objects stand for two gateway processes sharing the database."""
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 5_000)
    payer = await payer_of(world, alice)
    second = Database(database_url, pool_size=10)
    try:
        meters = [Meter(world.db, clock, instance_id="a"), Meter(second, clock, instance_id="b")]

        async def attempt(i: int) -> Reservation | None:
            try:
                return await meters[i % 2].reserve(ask(payer, prompt=500, max_tokens=500))
            except InsufficientBalance:
                return None

        got = [r for r in await asyncio.gather(*(attempt(i) for i in range(200))) if r]
        # 5,000 credits cover exactly five requests of 1,000; the rest find nothing left.
        assert len(got) == 5
        assert all(r.amount_credits == 1_000 and not r.lowered for r in got)
        assert await balance_of(world.db, alice.user_id) == 0
        await assert_invariant(world.db)

        charged = await asyncio.gather(
            *(meters[i % 2].settle(r, usage(500, 100 * i)) for i, r in enumerate(got))
        )
        assert await balance_of(world.db, alice.user_id) == 5_000 - sum(charged)
        await assert_invariant(world.db)
    finally:
        await second.dispose()


async def test_concurrent_reserve_and_settle_keep_the_books(
    world: World, database_url: str, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 20_000)
    payer = await payer_of(world, alice)
    second = Database(database_url, pool_size=10)
    rng = random.Random(7)
    plan = [(rng.randint(1, 300), rng.randint(1, 700)) for _ in range(200)]
    try:
        meters = [Meter(world.db, clock, instance_id="a"), Meter(second, clock, instance_id="b")]

        async def request(i: int) -> int:
            meter = meters[i % 2]
            try:
                r = await meter.reserve(ask(payer, prompt=300, max_tokens=700))
            except InsufficientBalance:
                return 0
            prompt, completion = plan[i]
            return await meter.settle(r, usage(prompt, min(completion, r.max_tokens)))

        charged = await asyncio.gather(*(request(i) for i in range(200)))
        assert sum(charged) > 0
        assert await balance_of(world.db, alice.user_id) == 20_000 - sum(charged)
        assert await open_reservations(world.db) == 0
        await assert_invariant(world.db)
        async with world.db.read() as conn:
            recorded = (
                await conn.execute(text("SELECT coalesce(sum(cost_credits), 0) FROM usage_events"))
            ).scalar_one()
        assert int(recorded) == sum(charged)
    finally:
        await second.dispose()


async def test_a_cancelled_reservation_gives_the_credits_back(world: World, meter: Meter) -> None:
    """Cancelled while its transaction runs (it may commit all the same): released at once."""
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    for _ in range(5):
        task = asyncio.create_task(meter.reserve(ask(payer)))
        await asyncio.sleep(0)  # started: its transaction is on its way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await open_reservations(world.db) == 0
    assert await balance_of(world.db, alice.user_id) == 1_000_000
    await assert_invariant(world.db)
