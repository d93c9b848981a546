"""Credit leases (billing/leases.py) on both backends: requests reserved in memory against a
lease drawn from the balance, charges group-committed, the books exact after a flush and
after the lease is given back; never more than the balance, on any number of replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, text

from tests.billing.conftest import (
    FakeClock,
    ask,
    assert_invariant,
    balance_of,
    fresh,
    open_reservations,
    payer_of,
    set_balance,
    usage,
)
from tests.support.locks import user_row_locked
from tests.support.world import World
from tollway.audit.actor import CLI
from tollway.billing.budgets import BudgetService, NewBudget
from tollway.billing.leases import Leases
from tollway.billing.meter import Meter
from tollway.billing.recovery import Recovery
from tollway.billing.verify import verify_ledger
from tollway.errors import InsufficientBalance
from tollway.store.budgets import BudgetRow


def leased_meter(world: World, clock: FakeClock, instance: str, **kw: object) -> Meter:
    leases = Leases(world.db, clock, instance_id=instance, **kw)  # type: ignore[arg-type]
    return Meter(world.db, clock, instance_id=instance, leases=leases)


@pytest.fixture
async def lmeter(world: World, clock: FakeClock) -> AsyncIterator[Meter]:
    meter = leased_meter(world, clock, "lease-test")
    await Recovery(world.db, meter, clock, heartbeat_s=1, stale_s=1e9).register()
    yield meter
    assert meter.leases is not None
    await meter.leases.close(1.0)


async def scalar(world: World, sql: str) -> int:
    async with world.db.read() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_requests_are_reserved_in_memory_and_charged_by_the_group_commit(
    world: World, clock: FakeClock, lmeter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    reservations = await asyncio.gather(
        *(lmeter.reserve(ask(payer, prompt=10, max_tokens=40)) for _ in range(20))
    )
    assert {r.lease for r in reservations} != {None}
    assert len({r.lease for r in reservations}) == 1  # one lease for them all
    assert all(r.amount_credits == 50 for r in reservations)
    assert await open_reservations(world.db) == 1  # the lease, not 20 holds
    drawn = 1_000_000 - await balance_of(world.db, alice.user_id)
    assert drawn >= 20 * 50  # the lease covers them all
    charges = [await lmeter.settle(r, usage(10, 7)) for r in reservations]
    assert charges == [17] * 20
    # Settled in memory: nothing charged in the database yet, the invariant holds.
    assert await scalar(world, "SELECT count(*) FROM ledger WHERE kind = 'charge'") == 0
    await assert_invariant(world.db)
    assert lmeter.leases is not None
    await lmeter.leases.flush()
    assert await scalar(world, "SELECT count(*) FROM ledger WHERE kind = 'charge'") == 20
    assert await scalar(world, "SELECT sum(cost_credits) FROM usage_events") == 20 * 17
    await assert_invariant(world.db)
    report = await verify_ledger(world.db, clock, stale_s=1e9, max_age_s=1)
    assert report.ok, report.problems  # a lease is not an old reservation
    # What the user sees: the balance with the lease counted as theirs.
    assert await world.accounts.balance_credits(alice.user_id) == 1_000_000 - 20 * 17
    await lmeter.leases.close(1.0)
    assert await open_reservations(world.db) == 0
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 20 * 17
    await assert_invariant(world.db)
    assert (await verify_ledger(world.db, clock, stale_s=1e9, max_age_s=900)).ok


async def test_settling_twice_charges_once(world: World, lmeter: Meter) -> None:
    bob = await world.member("bob", "p1", credits_eur="1")
    payer = await payer_of(world, bob)
    reservation = await lmeter.reserve(ask(payer))
    assert reservation.lease is not None
    assert await lmeter.settle(reservation, usage(10, 5)) == 15
    assert await lmeter.settle(reservation, usage(10, 5)) == 0
    await lmeter.sync()
    assert await scalar(world, "SELECT count(*) FROM usage_events") == 1
    assert (
        await scalar(world, "SELECT -sum(amount_credits) FROM ledger WHERE kind = 'charge'") == 15
    )


async def test_a_short_balance_is_reserved_in_the_database_against_all_of_it(
    world: World, lmeter: Meter
) -> None:
    """A lease takes at most a quarter of the balance: when that cannot cover the request,
    the database decides against the whole balance (lowering max_tokens) as without leases."""
    carol = await world.member("carol", "p1", credits_eur=None)
    await set_balance(world, carol, 100)
    payer = await payer_of(world, carol)
    reservation = await lmeter.reserve(ask(payer, prompt=10, max_tokens=200))
    assert reservation.lease is None
    assert reservation.lowered and reservation.amount_credits == 100
    with pytest.raises(InsufficientBalance):
        await lmeter.reserve(ask(payer, prompt=10, max_tokens=200))
    assert await lmeter.settle(reservation, usage(10, 20)) == 30
    await assert_invariant(world.db)
    assert await balance_of(world.db, carol.user_id) == 70


async def test_a_request_a_budget_applies_to_is_reserved_in_the_database(
    world: World, clock: FakeClock, lmeter: Meter
) -> None:
    dave = await world.member("dave", "p1", credits_eur="1")
    await BudgetService(world.db, clock).create(
        actor=CLI,
        user_id=dave.user_id,
        project_id=dave.project_id,
        spec=NewBudget("project", "daily", 500_000),
    )
    reservation = await lmeter.reserve(ask(await payer_of(world, dave)))
    assert reservation.lease is None and reservation.windows
    await lmeter.settle(reservation, usage(1, 1))
    await assert_invariant(world.db)


async def test_replicas_with_leases_never_overdraw(world: World, clock: FakeClock) -> None:
    """Four processes' meters on one database and one small balance, every request costing
    its worst case: what they serve never exceeds the balance, which never goes negative."""
    erin = await world.member("erin", "p1", credits_eur=None)
    await set_balance(world, erin, 20_000)
    payer = await payer_of(world, erin)
    meters = [leased_meter(world, clock, f"replica-{i}") for i in range(4)]

    async def spend(meter: Meter) -> int:
        total = 0
        for _ in range(60):
            try:
                r = await meter.reserve(ask(payer, prompt=10, max_tokens=90))
            except InsufficientBalance:
                return total
            # Charged in full: every credit reserved is spent.
            total += await meter.settle(r, usage(r.max_tokens + 10, 0))
        return total

    spent = await asyncio.gather(*(spend(m) for m in meters))
    for meter in meters:
        assert meter.leases is not None
        assert await meter.leases.close(1.0)
    assert sum(spent) <= 20_000
    assert await balance_of(world.db, erin.user_id) == 20_000 - sum(spent)
    assert await open_reservations(world.db) == 0
    await assert_invariant(world.db)
    # A replica may be refused while another's lease still holds credits: held back for a
    # while, never lost. With the leases given back, what is left can be spent.
    last = leased_meter(world, clock, "replica-last")
    left = 20_000 - sum(spent)
    while left >= 100:
        left -= await last.settle(
            await last.reserve(ask(payer, prompt=10, max_tokens=90)), usage(100, 0)
        )
    assert last.leases is not None and await last.leases.close(1.0)
    assert await balance_of(world.db, erin.user_id) == left
    await assert_invariant(world.db)


async def test_a_dead_process_loses_only_its_uncommitted_charges(
    world: World, clock: FakeClock
) -> None:
    """The crash bound: the charges committed before the process died stay; those settled
    after its last group commit are lost, in the user's favour; the sweeper gives the lease
    back in full and the books balance."""
    fay = await world.member("fay", "p1", credits_eur="1")
    payer = await payer_of(world, fay)
    dying = leased_meter(world, clock, "dying")
    assert dying.leases is not None
    for _ in range(5):
        await dying.settle(await dying.reserve(ask(payer)), usage(10, 10))
    await dying.leases.flush()  # 5 x 20 committed
    for _ in range(3):
        await dying.settle(await dying.reserve(ask(payer)), usage(10, 10))  # not committed
    in_flight = await dying.reserve(ask(payer))  # never settled
    assert in_flight.lease is not None
    # The process dies here: no close. Another one's sweeper finds its lease.
    survivor = Meter(world.db, clock, instance_id="survivor")
    recovery = Recovery(world.db, survivor, clock, heartbeat_s=1, stale_s=5)
    await recovery.register()
    assert await recovery.sweep() == 1
    assert await open_reservations(world.db) == 0
    assert await balance_of(world.db, fay.user_id) == 1_000_000 - 5 * 20
    assert await scalar(world, "SELECT count(*) FROM usage_events") == 5  # no "aborted" row
    await assert_invariant(world.db)
    assert (await verify_ledger(world.db, clock, stale_s=5, max_age_s=900)).ok


async def test_the_group_commit_tells_which_keys_were_deleted(
    world: World, clock: FakeClock
) -> None:
    gone: list[int] = []
    meter = leased_meter(world, clock, "keys", on_key_gone=gone.append)
    assert meter.leases is not None
    gus = await world.member("gus", "p1", credits_eur="1")
    payer = await payer_of(world, gus)
    reservation = await meter.reserve(ask(payer))
    async with world.db.write() as conn:
        await conn.execute(text("DELETE FROM api_keys WHERE id = :id"), {"id": payer.key_id})
    await meter.settle(reservation, usage(1, 1))
    await meter.leases.flush()
    assert gone == [payer.key_id]
    await meter.leases.close(1.0)
    await assert_invariant(world.db)


async def test_usage_beyond_a_leased_reservation_takes_the_lease_then_the_balance(
    world: World, clock: FakeClock, lmeter: Meter
) -> None:
    hal = await world.member("hal", "p1", credits_eur="1")
    payer = await payer_of(world, hal)
    first = await lmeter.reserve(ask(payer))
    assert first.lease is not None
    # Far beyond the lease (a quarter of the balance at most): the lease's free credits,
    # then the balance, pay for it.
    assert await lmeter.settle(first, usage(600_000, 0)) == 600_000
    second = await lmeter.reserve(ask(payer))
    # More than is left anywhere: all of it is charged, the rest a shortfall row.
    charged = await lmeter.settle(second, usage(2_000_000, 0))
    assert lmeter.leases is not None
    await lmeter.leases.close(1.0)
    assert charged == 400_000
    assert await balance_of(world.db, hal.user_id) == 0
    assert await scalar(world, "SELECT sum(cost_credits) FROM usage_events") == 1_000_000
    assert await scalar(world, "SELECT count(*) FROM ledger WHERE kind = 'shortfall'") == 1
    assert (
        await scalar(world, "SELECT sum(amount_credits) FROM ledger WHERE kind = 'shortfall'") == 0
    )
    await assert_invariant(world.db)
    assert (await verify_ledger(world.db, clock, stale_s=1e9, max_age_s=900)).ok


async def test_settling_at_once_leaves_what_needs_the_database_untouched(
    world: World, lmeter: Meter
) -> None:
    """`settle_now` settles in memory what fits the reservation or the lease; usage beyond
    both needs the database, and it leaves that untouched for `settle`, which takes what
    the lease has free first, then the balance."""
    ivy = await world.member("ivy", "p1", credits_eur="1")
    payer = await payer_of(world, ivy)
    fits = await lmeter.reserve(ask(payer))
    assert fits.lease is not None
    assert lmeter.settle_now(fits, usage(10, 5)) == 15
    assert lmeter.settle_now(fits, usage(10, 5)) == 0  # settled already: charged once
    beyond = await lmeter.reserve(ask(payer))
    assert beyond.lease == fits.lease
    assert lmeter.settle_now(beyond, usage(600_000, 0)) is None
    assert lmeter.settle_now(beyond, usage(600_000, 0)) is None  # asking twice takes nothing
    assert await lmeter.settle(beyond, usage(600_000, 0)) == 600_000
    await lmeter.sync()
    async with world.db.read() as conn:
        rows = await conn.execute(
            text("SELECT kind, amount_credits FROM ledger WHERE user_id = :user"),
            {"user": ivy.user_id},
        )
        books = [tuple(row) for row in rows]
    drawn = -sum(amount for kind, amount in books if kind == "lease")
    from_lease = drawn - 15  # all the lease had left once `fits` was charged
    assert ("charge", -15) in books
    assert ("charge", -from_lease) in books  # `beyond`: its reservation and the lease's rest
    assert ("charge", -(600_000 - from_lease)) in books  # the rest from the balance
    await assert_invariant(world.db)


async def test_a_release_while_a_settlement_is_written_leaves_it_to_that_settlement(
    world: World, database_url: str, lmeter: Meter
) -> None:
    """A settlement that must write (usage beyond the reservation and the lease) owns the
    request until its write ends: a release meanwhile (the request's task cancelled, its
    `finally` releasing what it reserved) charges nothing and closes nothing. Before, the
    release closed the request in memory with no charge, and the settlement, finding it
    closed when its write returned, charged only the overrun from the balance: the part
    the reservation and the lease covered, and the usage event, were lost."""
    una = await world.member("una", "p1", credits_eur="1")
    payer = await payer_of(world, una)
    reservation = await lmeter.reserve(ask(payer))
    assert reservation.lease is not None

    async with user_row_locked(database_url, una.user_id):
        settling = asyncio.create_task(lmeter.settle(reservation, usage(600_000, 0)))
        for _ in range(5):  # it reaches its write, which waits for the lock held here
            await asyncio.sleep(0)
        assert not settling.done()
        released = await lmeter.settle(reservation, None)
    assert released == 0
    assert await settling == 600_000  # all of it: the reservation, the lease, the balance
    await lmeter.sync()
    assert await scalar(world, "SELECT sum(cost_credits) FROM usage_events") == 600_000
    assert (
        await scalar(world, "SELECT -sum(amount_credits) FROM ledger WHERE kind = 'charge'")
        == 600_000
    )
    await assert_invariant(world.db)


async def test_a_lease_taken_for_dead_while_paused_charges_the_balance_instead(
    world: World, clock: FakeClock
) -> None:
    """A process paused past the stale time: another replica's sweeper releases its lease
    in full. What the process serves after it resumes — settled into the lost lease, or
    queued for a group commit that finds the lease gone — is charged from the balance,
    with its usage events; nothing is lost silently, nothing charged twice."""
    ivy = await world.member("ivy", "p1", credits_eur="1")
    payer = await payer_of(world, ivy)
    paused = leased_meter(world, clock, "paused")
    assert paused.leases is not None
    await paused.settle(await paused.reserve(ask(payer)), usage(10, 10))
    await paused.leases.flush()  # 20 committed
    queued = await paused.reserve(ask(payer))
    await paused.settle(queued, usage(10, 10))  # queued for the next group commit
    in_flight = await paused.reserve(ask(payer))  # served after the resume
    # The pause: a sweeper takes the silent process for dead and releases its lease.
    survivor = Meter(world.db, clock, instance_id="survivor")
    recovery = Recovery(world.db, survivor, clock, heartbeat_s=1, stale_s=5)
    await recovery.register()
    assert await recovery.sweep() == 1
    assert await balance_of(world.db, ivy.user_id) == 1_000_000 - 20
    # The resume: the group commit finds the lease gone; the next settle too.
    await paused.leases.flush()
    assert await paused.settle(in_flight, usage(10, 20)) == 30
    assert await paused.settle(in_flight, usage(10, 20)) == 0  # once
    assert await balance_of(world.db, ivy.user_id) == 1_000_000 - 20 - 20 - 30
    assert await scalar(world, "SELECT count(*) FROM usage_events") == 3
    assert await scalar(world, "SELECT sum(cost_credits) FROM usage_events") == 70
    assert await scalar(world, "SELECT count(*) FROM ledger WHERE kind = 'shortfall'") == 0
    await assert_invariant(world.db)
    assert (await verify_ledger(world.db, clock, stale_s=5, max_age_s=900)).ok
    await paused.leases.close(1.0)


async def test_a_lost_lease_the_balance_cannot_cover_is_a_shortfall(
    world: World, clock: FakeClock
) -> None:
    jo = await world.member("jo", "p1", credits_eur=None)
    await set_balance(world, jo, 10_000)
    payer = await payer_of(world, jo)
    paused = leased_meter(world, clock, "paused")
    assert paused.leases is not None
    in_flight = await paused.reserve(ask(payer))
    assert in_flight.lease is not None
    other = Meter(world.db, clock, instance_id="other")
    recovery = Recovery(world.db, other, clock, heartbeat_s=1, stale_s=5)
    await recovery.register()
    assert await recovery.sweep() == 1
    assert await balance_of(world.db, jo.user_id) == 10_000
    spent = await other.reserve(ask(payer, prompt=9_975, max_tokens=0))  # spent elsewhere
    assert await other.settle(spent, usage(9_975, 0)) == 9_975
    # The lease still looks open here: settled in memory, found lost at the group commit.
    assert await paused.settle(in_flight, usage(10, 20)) == 30
    await paused.leases.flush()
    assert await balance_of(world.db, jo.user_id) == 0
    assert await scalar(world, "SELECT sum(cost_credits) FROM usage_events") == 9_975 + 25
    async with world.db.read() as conn:
        notes = (await conn.execute(text("SELECT note FROM ledger WHERE kind = 'shortfall'"))).all()
    assert len(notes) == 1 and notes[0][0].startswith("5 credits not charged: its credit lease")
    await assert_invariant(world.db)
    await paused.leases.close(1.0)


async def test_a_group_commit_and_a_draw_never_deadlock(
    world: World, clock: FakeClock, database_url: str
) -> None:
    """A draw locks the user's row, then the lease's; the group commit used to take the lease
    row first and then — through the ledger's foreign key — a share lock on the user's row:
    a cycle, one of them rolled back (a deadlock) under load. A draw is played here by
    another connection, holding the user's row while the commit starts, then growing the
    lease row as a draw does."""
    kim = await world.member("kim", "p1", credits_eur="1")
    payer = await payer_of(world, kim)
    meter = leased_meter(world, clock, "order")
    assert meter.leases is not None
    reservation = await meter.reserve(ask(payer))
    assert reservation.lease is not None
    await meter.settle(reservation, usage(10, 10))  # queued for the group commit
    lease_id = reservation.lease
    draw_sql = (
        ("UPDATE users SET balance_credits = balance_credits - 1 WHERE id = {u}"),
        (
            "INSERT INTO ledger (entry_id, user_id, kind, amount_credits, request_id,"
            " created_at) VALUES ('lease:' || {l} || ':x', {u}, 'lease', -1, {l}, 0)"
        ),
        "UPDATE reservations SET amount_credits = amount_credits + 1 WHERE request_id = {l}",
    )
    if database_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        flush = asyncio.create_task(meter.leases.flush())
        await asyncio.sleep(0.3)  # the commit waits for the write lock
        for sql in draw_sql:
            conn.execute(sql.format(u=":u", l=":l"), {"u": kim.user_id, "l": lease_id})
        conn.execute("COMMIT")
        conn.close()
    else:
        import asyncpg

        pg = await asyncpg.connect(database_url)
        try:
            async with pg.transaction():
                await pg.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", kim.user_id)
                flush = asyncio.create_task(meter.leases.flush())
                await asyncio.sleep(0.3)  # the commit waits for the user's row
                for sql in draw_sql:
                    args = [
                        a for a, mark in ((kim.user_id, "{u}"), (lease_id, "{l}")) if mark in sql
                    ]
                    marks = {"u": "$1", "l": f"${len(args)}"}
                    await pg.execute(sql.format(**marks), *args)
        finally:
            await pg.close()
    await flush  # no deadlock victim: the commit lands
    await meter.leases.close(1.0)
    assert await scalar(world, "SELECT count(*) FROM ledger WHERE kind = 'charge'") == 1
    await assert_invariant(world.db)


async def test_a_draw_covers_the_requests_in_flight_not_only_depth(
    world: World, clock: FakeClock
) -> None:
    """With more requests in flight than `depth`, a draw sized only by `depth` was emptied by
    the requests in flight alone: every request that found it empty waited for a draw (a
    transaction on its path). A draw covers twice what is in flight, so the next wave of
    as many requests is reserved in memory without waiting."""
    meter = leased_meter(world, clock, "lease-depth", depth=4)
    await Recovery(world.db, meter, clock, heartbeat_s=1, stale_s=1e9).register()
    erin = await world.member("erin", "p1", credits_eur="1")
    payer = await payer_of(world, erin)
    try:
        first = await asyncio.gather(*(meter.reserve(ask(payer)) for _ in range(16)))
        assert all(r.lease is not None for r in first)  # 16 in flight, never settled here
        assert meter.leases is not None
        for _ in range(3):  # let any background top-up land
            await asyncio.sleep(0)
        second = await asyncio.gather(*(meter.reserve(ask(payer)) for _ in range(16)))
        paths = [r.path for r in second]
        assert all(r.lease is not None for r in second)
        assert paths.count("lease_after_draw") <= 1, paths
        for reservation in (*first, *second):
            await meter.settle(reservation, usage(10, 5))
        await meter.leases.flush()
        await assert_invariant(world.db)
    finally:
        assert meter.leases is not None
        await meter.leases.close(1.0)


async def test_requests_arriving_while_the_budgets_are_read_wait_for_that_one_read(
    world: World, clock: FakeClock, lmeter: Meter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a project's cached budgets expire under load, the requests arriving while they
    are read again wait for that read; each used to go to the database itself (on
    PostgreSQL at c=256, hundreds of round trips queued for the pool every second)."""
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    await lmeter.settle(await lmeter.reserve(ask(payer)), usage(1, 1))  # the lease is drawn
    index = world.db.budget_index
    budgets_of = index.budgets_of
    reads: list[str] = []

    def counted(conn: Connection, project_id: str) -> tuple[BudgetRow, ...]:
        reads.append(project_id)
        return budgets_of(conn, project_id)

    monkeypatch.setattr(index, "budgets_of", counted)
    index.invalidate(alice.project_id)  # the entry is gone, as when it expires
    reservations = await asyncio.gather(*(lmeter.reserve(ask(fresh(payer))) for _ in range(20)))
    assert reads == [alice.project_id]
    assert all(r.lease is not None for r in reservations)
    for reservation in reservations:
        await lmeter.settle(reservation, usage(1, 1))
    assert lmeter.leases is not None
    await lmeter.leases.flush()
    await assert_invariant(world.db)
