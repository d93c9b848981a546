from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import IntegrityError

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
from tollway.audit.actor import CLI
from tollway.billing.budgets import BudgetService, NewBudget
from tollway.billing.meter import Meter
from tollway.billing.records import Reservation
from tollway.errors import InsufficientBalance, Unauthorized
from tollway.store import one_statement
from tollway.store.database import Database
from tollway.store.reservations import OpenReservation


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


async def test_usage_above_the_bound_is_charged_in_full(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    reservation = await meter.reserve(ask(await payer_of(world, alice), prompt=10, max_tokens=50))
    assert reservation.amount_credits == 60
    assert await meter.settle(reservation, usage(12, 80)) == 92  # the usage, not the hold
    assert await meter.settle(reservation, usage(12, 80)) == 92  # settled once
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 92
    await assert_invariant(world.db)


async def test_usage_the_balance_cannot_cover_is_a_shortfall_row(
    world: World, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur=None)
    await set_balance(world, alice, 70)
    reservation = await meter.reserve(ask(await payer_of(world, alice), prompt=10, max_tokens=50))
    assert await meter.settle(reservation, usage(12, 80)) == 70  # all there was, no more
    assert await balance_of(world.db, alice.user_id) == 0
    async with world.db.read() as conn:
        rows = (
            await conn.execute(
                text("SELECT amount_credits, note FROM ledger WHERE kind = 'shortfall'")
            )
        ).all()
    assert [(int(r[0]), r[1]) for r in rows] == [
        (0, "22 credits not charged: the balance could not cover the upstream's reported usage")
    ]
    await assert_invariant(world.db)


async def test_deleted_key_is_refused_at_reserve(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    mgmt = await payer_of(world, alice, "mgmt")
    await world.keys.delete(
        actor=CLI, user_id=alice.user_id, name=payer.key_name, calling_key_id=mgmt.key_id
    )
    with pytest.raises(Unauthorized, match="invalid API key"):
        await meter.reserve(ask(payer))
    assert await balance_of(world.db, alice.user_id) == 1_000_000


async def test_two_hundred_concurrent_reservations_never_overdraw(
    world: World, database_url: str, clock: FakeClock, spy: OneStatementSpy
) -> None:
    """Two `Database` objects stand for two gateway processes sharing the database. On
    PostgreSQL every request tries the one-statement path and exactly five win there."""
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
        if is_postgres(world.db):
            assert (len(spy.reserves), spy.reserves.count(True)) == (200, 5)
        else:
            assert spy.reserves == []
        await assert_invariant(world.db)

        charged = await asyncio.gather(
            *(meters[i % 2].settle(r, usage(500, 100 * i)) for i, r in enumerate(got))
        )
        assert await balance_of(world.db, alice.user_id) == 5_000 - sum(charged)
        assert await open_reservations(world.db) == 0
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


@dataclass
class OneStatementSpy:
    """What the one-statement reserve and settle (PostgreSQL) returned, call by call."""

    reserves: list[bool] = field(default_factory=list)
    settles: list[tuple[int, int] | None] = field(default_factory=list)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> OneStatementSpy:
    seen = OneStatementSpy()
    reserve, settle = one_statement.reserve, one_statement.settle

    def spy_reserve(conn: Connection, r: OpenReservation) -> bool:
        seen.reserves.append(reserve(conn, r))
        return seen.reserves[-1]

    def spy_settle(
        conn: Connection,
        request_id: str,
        *,
        cost: int,
        now: int,
        usage: Mapping[str, object] | None,
    ) -> tuple[int, int] | None:
        seen.settles.append(settle(conn, request_id, cost=cost, now=now, usage=usage))
        return seen.settles[-1]

    monkeypatch.setattr(one_statement, "reserve", spy_reserve)
    monkeypatch.setattr(one_statement, "settle", spy_settle)
    return seen


def is_postgres(db: Database) -> bool:
    return not db.is_sqlite


async def test_common_case_is_one_autocommit_statement_each_on_postgresql(
    world: World, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    await meter.settle(await meter.reserve(ask(payer)), usage(10, 20))  # budgets now cached
    statements: list[tuple[str, object]] = []

    def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append((statement, conn.get_execution_options().get("isolation_level")))

    event.listen(world.db.sync_engine, "before_cursor_execute", record)
    try:
        reservation = await meter.reserve(ask(payer))
        reserved = list(statements)
        statements.clear()
        assert await meter.settle(reservation, usage(10, 20)) == 30
        settled = list(statements)
    finally:
        event.remove(world.db.sync_engine, "before_cursor_execute", record)
    if is_postgres(world.db):
        assert [level for _, level in reserved + settled] == ["AUTOCOMMIT"] * 2
        # The key is still re-checked in the statement that debits the user.
        assert "FROM api_keys" in reserved[0][0] and "users" in reserved[0][0]
    else:  # BEGIN IMMEDIATE, then the transaction's statements
        assert (len(reserved), len(settled)) == (1 + 3, 1 + 4)
    await assert_invariant(world.db)


async def test_one_statement_settle_charges_once_and_records_the_event(
    world: World, meter: Meter, spy: OneStatementSpy
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    reservation = await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    results = await asyncio.gather(*(meter.settle(reservation, usage(10, 20)) for _ in range(6)))
    assert results == [30] * 6
    assert await meter.settle(reservation, None) == 30
    if is_postgres(world.db):
        assert spy.reserves == [True]
        assert sorted(spy.settles, key=str) == [(60, 30)] + [None] * 6
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 30
    rid = reservation.request_id
    async with world.db.read() as conn:
        entries = (
            await conn.execute(
                text("SELECT entry_id, kind, amount_credits FROM ledger WHERE request_id = :r"),
                {"r": rid},
            )
        ).all()
        event_row = (
            await conn.execute(
                text(
                    "SELECT user_id, project_id, key_id, key_name, endpoint, model, provider,"
                    " prompt_tokens, completion_tokens, total_tokens, cost_credits, latency_ms,"
                    " status, usage_source FROM usage_events WHERE request_id = :r"
                ),
                {"r": rid},
            )
        ).one()
    assert sorted(entries) == [
        (f"charge:{rid}", "charge", -30),
        (f"release:{rid}", "release", 60),
        (f"reserve:{rid}", "reserve", -60),
    ]
    assert tuple(event_row) == (
        alice.user_id,
        alice.project_id,
        payer.key_id,
        payer.key_name,
        "chat.completions",
        "m1",
        "p1",
        10,
        20,
        30,
        30,
        12,
        "success",
        "upstream",
    )
    await assert_invariant(world.db)


async def test_settle_charges_beyond_the_hold_and_writes_no_zero_charge(
    world: World, meter: Meter
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    over = await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    assert await meter.settle(over, usage(12, 80)) == 92
    free = await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    assert await meter.settle(free, usage(0, 0)) == 0
    async with world.db.read() as conn:
        kinds = (
            await conn.execute(
                text("SELECT kind FROM ledger WHERE request_id = :r ORDER BY kind"),
                {"r": free.request_id},
            )
        ).all()
    assert [k for (k,) in kinds] == ["release", "reserve"]
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 92
    await assert_invariant(world.db)


async def test_one_statement_reserve_falls_back_to_lower_refuse_or_401(
    world: World, meter: Meter, spy: OneStatementSpy
) -> None:
    alice = await world.member("alice", "p1")
    await set_balance(world, alice, 100)
    payer = await payer_of(world, alice)
    lowered = await meter.reserve(ask(payer, prompt=10, max_tokens=1000, output_price="2"))
    assert (lowered.lowered, lowered.max_tokens, lowered.amount_credits) == (True, 45, 100)
    with pytest.raises(InsufficientBalance):
        await meter.reserve(ask(payer, prompt=10))
    assert await meter.settle(lowered, usage(10, 20, output_price="2")) == 50
    mgmt = await payer_of(world, alice, "mgmt")
    await world.keys.delete(
        actor=CLI, user_id=alice.user_id, name=payer.key_name, calling_key_id=mgmt.key_id
    )
    with pytest.raises(Unauthorized):
        await meter.reserve(ask(payer, prompt=10, max_tokens=10))
    if is_postgres(world.db):
        assert spy.reserves == [False, False, False]  # each decided by the transaction
    assert await balance_of(world.db, alice.user_id) == 50
    assert await open_reservations(world.db) == 0
    await assert_invariant(world.db)


async def test_a_repeated_request_id_moves_nothing(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    request = ask(await payer_of(world, alice))
    await meter.reserve(request)
    with pytest.raises(IntegrityError):
        await meter.reserve(request)
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - 60
    await assert_invariant(world.db)


async def test_settle_leaves_a_reservation_holding_windows_to_the_transaction(
    world: World, meter: Meter, clock: FakeClock, spy: OneStatementSpy
) -> None:
    """Even when the caller's `Reservation` does not name the windows (a cancelled reserve
    releases with an empty one), the one-statement settle never claims a reservation that
    holds budget windows, so the windows are given back too."""
    alice = await world.member("alice", "p1", credits_eur="1")
    await BudgetService(world.db, clock).create(
        actor=CLI,
        user_id=alice.user_id,
        project_id=alice.project_id,
        spec=NewBudget("project", "daily", 1_000),
    )
    payer = await payer_of(world, alice)
    reservation = await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    assert reservation.windows
    unnamed = Reservation(reservation.request_id, payer, 0, 0, False)
    assert await meter.settle(unnamed, usage(10, 20)) == 30
    if is_postgres(world.db):
        assert spy.reserves == [] and spy.settles == [None]
    async with world.db.read() as conn:
        window = (
            await conn.execute(text("SELECT spent_credits, reserved_credits FROM budget_windows"))
        ).one()
    assert tuple(window) == (30, 0)
    await assert_invariant(world.db)
