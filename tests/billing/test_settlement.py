"""Settlement is durable until done: a settlement the database refuses is retried until it
lands, on both backends, against a real outage (a stopped private PostgreSQL cluster; another
process holding SQLite's write lock past the busy timeout)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
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
from tests.support.outage import Outage, database_outage, reconnected
from tests.support.world import World
from tollway.billing.meter import Meter
from tollway.billing.recovery import Recovery
from tollway.billing.settlement import FIRST_RETRY_S, MAX_FAILED_ATTEMPTS, MAX_RETRY_S
from tollway.errors import DatabaseUnavailable
from tollway.store.database import Database

# After the database is back, every pending settlement lands within the longest backoff
# plus the time to write it; generous, since the machine is shared.
LANDS_WITHIN_S = MAX_RETRY_S + 8
# A settlement failing for a bug: MAX_FAILED_ATTEMPTS attempts with the backoff between.
MAX_ATTEMPTS_WITHIN_S = (
    sum(min(FIRST_RETRY_S * 2**i, MAX_RETRY_S) for i in range(MAX_FAILED_ATTEMPTS)) + 8
)


@pytest.fixture(params=["sqlite", "postgres"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    with database_outage(str(request.param), tmp_path) as o:
        yield o


@pytest.fixture
async def fragile(outage: Outage) -> AsyncIterator[tuple[World, Database]]:
    """(the test's World, the meter's Database: 0.3 s busy timeout on SQLite)."""
    world = World(outage.url)
    await world.migrate()
    db = Database(outage.url, pool_size=2, sqlite_busy_timeout_s=0.3)
    try:
        yield world, db
    finally:
        outage.up()
        await db.dispose()
        await world.close()


async def eventually_no_holds(db: Database, timeout_s: float) -> float:
    started = time.monotonic()
    while await open_reservations(db):
        assert time.monotonic() - started < timeout_s, "reservations still held"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_settlement_refused_by_the_database_lands_once_it_is_back(
    outage: Outage, fragile: tuple[World, Database]
) -> None:
    world, db = fragile
    alice = await world.member("alice", "p1", credits_eur="1")
    meter = Meter(db, FakeClock(), instance_id="live")
    payer = await payer_of(world, alice)
    held = [await meter.reserve(ask(payer)) for _ in range(3)]
    outage.down()
    with pytest.raises(DatabaseUnavailable):
        await meter.settle(held[0], usage(10, 20))  # one attempt: the database is down
    # Durably: no exception, the charge it will make, and it is kept until it lands.
    charges = [await meter.settle_durably(r, usage(10, 20)) for r in held]
    assert charges == [30, 30, 30]
    assert len(meter.pending) == 3
    assert all(meter.is_open(r.request_id) for r in held)
    await asyncio.sleep(0.5)  # a few retries against the outage change nothing
    assert len(meter.pending) == 3
    outage.up()
    await reconnected(world.db)
    await eventually_no_holds(world.db, LANDS_WITHIN_S)
    assert len(meter.pending) == 0
    assert not any(meter.is_open(r.request_id) for r in held)
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 90
    # Idempotent: settling again (a retry of one that did commit) charges nothing twice.
    assert await meter.settle(held[0], usage(10, 20)) == 30
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 90
    async with world.db.read() as conn:
        events = (await conn.execute(text("SELECT status, cost_credits FROM usage_events"))).all()
    assert sorted(tuple(e) for e in events) == [("success", 30)] * 3
    await assert_invariant(world.db)
    await meter.pending.close(0)


async def test_a_full_backlog_refuses_new_requests_and_drops_nothing(
    outage: Outage, fragile: tuple[World, Database]
) -> None:
    world, db = fragile
    bea = await world.member("bea", "p1", credits_eur="1")
    meter = Meter(db, FakeClock(), instance_id="live", max_pending=2)
    payer = await payer_of(world, bea)
    held = [await meter.reserve(ask(payer)) for _ in range(3)]
    outage.down()
    # In flight when the backlog filled: still kept (never dropped), past the bound.
    assert [await meter.settle_durably(r, usage(10, 20)) for r in held] == [30, 30, 30]
    assert len(meter.pending) == 3 and meter.pending.full
    outage.up()  # the backlog has not drained yet: new requests are refused without a try
    with pytest.raises(DatabaseUnavailable, match="settlements are waiting"):
        await meter.reserve(ask(payer))
    assert len(meter.pending) == 3  # the refusal added nothing to it
    await reconnected(world.db)
    await eventually_no_holds(world.db, LANDS_WITHIN_S)
    assert not meter.pending.full
    served = await meter.reserve(ask(payer))  # drained: served again
    await meter.settle(served, usage(10, 20))
    assert await balance_of(world.db, bea.user_id) == 1_000_000 - 4 * 30
    await assert_invariant(world.db)
    await meter.pending.close(0)


async def test_a_graceful_shutdown_during_an_outage_leaves_the_hold_to_the_sweeper(
    outage: Outage, fragile: tuple[World, Database]
) -> None:
    world, db = fragile
    alice = await world.member("alice", "p1", credits_eur="1")
    clock = FakeClock()
    meter = Meter(db, clock, instance_id="leaving")
    leaving = Recovery(db, meter, clock, heartbeat_s=5, stale_s=20, shutdown_settle_s=0.5)
    await leaving.start()
    reservation = await meter.reserve(ask(await payer_of(world, alice)))
    outage.down()
    assert await meter.settle_durably(reservation, usage(10, 20)) == 30
    await leaving.stop()  # bounded: gives up after shutdown_settle_s, raises nothing
    outage.up()
    await reconnected(world.db)
    await reconnected(db)
    await assert_invariant(world.db)  # never half-written
    # The successor (or any replica) releases it, uncharged, once the instance is stale.
    # (On SQLite the last attempt may still be waiting for the lock in the writer thread,
    # which no cancellation stops: it then lands, charged, when the lock goes. Either way
    # the request is closed exactly once.)
    clock.advance(21)
    successor = Recovery(db, Meter(db, clock, instance_id="next"), clock, heartbeat_s=5, stale_s=20)
    await successor.start()
    try:
        assert await open_reservations(world.db) == 0
        async with world.db.read() as conn:
            [(status, cost)] = (
                await conn.execute(text("SELECT status, cost_credits FROM usage_events"))
            ).all()
        assert (status, cost) in {("aborted", 0), ("success", 30)}
        assert await balance_of(world.db, alice.user_id) == 1_000_000 - cost
        if outage.url.startswith("postgresql"):  # nothing was in flight: the sweeper's
            assert status == "aborted"
    finally:
        await successor.stop()
    await assert_invariant(world.db)


async def test_a_reservation_whose_undo_failed_is_reconciled_by_the_live_instance(
    world: World, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    meter = Meter(world.db, clock, instance_id="live")
    recovery = Recovery(world.db, meter, clock, heartbeat_s=5, stale_s=20)
    await recovery.register()
    payer = await payer_of(world, alice)
    orphan = await meter.reserve(ask(payer))
    in_flight = await meter.reserve(ask(payer))
    meter.forget(orphan.request_id)  # what nothing in this process will settle any more
    assert await recovery.reconcile() == 1
    assert await recovery.reconcile() == 0
    assert await open_reservations(world.db) == 1  # the request still in flight keeps its hold
    assert await meter.settle(in_flight, usage(10, 5)) == 15
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 15
    await assert_invariant(world.db)


async def test_a_settlement_that_fails_for_a_bug_is_released_not_held_forever(
    world: World, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    meter = Meter(world.db, clock, instance_id="live")
    reservation = await meter.reserve(ask(await payer_of(world, alice)))
    async with world.db.write() as conn:  # a usage event already there: the insert must fail
        await conn.execute(
            text(
                "INSERT INTO usage_events (request_id, created_at, user_id, project_id, key_id,"
                " key_name, endpoint, model, provider, prompt_tokens, completion_tokens,"
                " total_tokens, cost_credits, latency_ms, status, usage_source) VALUES"
                " (:r, 0, :u, :p, NULL, '', '', '', '', 0, 0, 0, 0, 0, 'error', 'none')"
            ),
            {"r": reservation.request_id, "u": alice.user_id, "p": alice.project_id},
        )
    assert await meter.settle_durably(reservation, usage(10, 20)) == 30
    assert len(meter.pending) == 1
    await eventually_no_holds(world.db, MAX_ATTEMPTS_WITHIN_S)
    assert len(meter.pending) == 0 and not meter.is_open(reservation.request_id)
    assert await balance_of(world.db, alice.user_id) == 1_000_000  # released, uncharged
    await assert_invariant(world.db)
    await meter.pending.close(0)
