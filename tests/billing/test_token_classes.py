"""Charging by token class (docs/billing.md) on both backends, along every settle path: the
transaction (SQLite; PostgreSQL with a budget), PostgreSQL's one statement, and a credit
lease's group commit. The ledger charge and the usage event's class columns are exact."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import text

from tests.billing.conftest import (
    FakeClock,
    ask,
    assert_invariant,
    balance_of,
    payer_of,
    usage,
)
from tests.support.world import World
from tollway.audit.actor import CLI
from tollway.billing.budgets import BudgetService, NewBudget
from tollway.billing.leases import Leases
from tollway.billing.meter import Meter
from tollway.billing.records import UsageRecord
from tollway.billing.recovery import Recovery
from tollway.billing.usage import UsageQuery, UsageService
from tollway.providers.pricing import Pricing
from tollway.providers.usage import TokenUsage

PRICING = Pricing(
    input_token=Decimal("0.40"),
    output_token=Decimal("1.60"),
    cached_input_token=Decimal("0.10"),
    cache_write_token=Decimal("0.50"),
)
TOKENS = TokenUsage(1001, 203, cached_prompt=500, cache_write=250, reasoning=150)
# 0.4 x 251 + 0.1 x 500 + 0.5 x 250 + 1.6 x 203 = 100.4 + 50 + 125 + 324.8 = 600.2 → 601
CHARGE = 601


def classed() -> UsageRecord:
    plain = usage(0, 0)
    return UsageRecord.of(
        TOKENS,
        **{
            f.name: getattr(plain, f.name)
            for f in dataclasses.fields(UsageRecord)
            if not f.name.endswith("_tokens")
        }
        | {"pricing": PRICING},
    )


async def ledger_and_event(
    world: World, request_id: str
) -> tuple[list[tuple[str, int]], tuple[int, ...]]:
    async with world.db.read() as conn:
        ledger = (
            await conn.execute(
                text("SELECT kind, amount_credits FROM ledger WHERE request_id = :r"),
                {"r": request_id},
            )
        ).all()
        event = (
            await conn.execute(
                text(
                    "SELECT prompt_tokens, completion_tokens, total_tokens, cached_prompt_tokens,"
                    " cache_write_tokens, reasoning_tokens, cost_credits FROM usage_events"
                    " WHERE request_id = :r"
                ),
                {"r": request_id},
            )
        ).one()
    return sorted((k, int(a)) for k, a in ledger), tuple(int(v) for v in event)


EVENT = (1001, 203, 1204, 500, 250, 150, CHARGE)


def test_the_record_costs_the_exact_class_charge() -> None:
    record = classed()
    assert record.tokens == TOKENS
    assert record.cost == CHARGE
    # The same tokens all priced as plain input would cost more: 0.4 x 1001 + 1.6 x 203.
    assert PRICING.credits_for(1001, 203) == 726 > CHARGE


async def test_the_settlement_charges_each_class_at_its_price(world: World, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    payer = await payer_of(world, alice)
    reservation = await meter.reserve(
        ask(payer, prompt=1001, max_tokens=300, input_price="0.50", output_price="1.60")
    )
    assert await meter.settle(reservation, classed()) == CHARGE
    rid = reservation.request_id
    ledger, event = await ledger_and_event(world, rid)
    held = reservation.amount_credits
    assert ledger == sorted([("reserve", -held), ("release", held), ("charge", -CHARGE)])
    assert event == EVENT
    assert await balance_of(world.db, alice.user_id) == 1_000_000 - CHARGE
    await assert_invariant(world.db)


async def test_the_budget_transaction_charges_each_class_at_its_price(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    """With a budget the settlement is the transaction on PostgreSQL too; the budget's
    window is charged the same exact amount."""
    bob = await world.member("bob", "p1", credits_eur="1")
    await BudgetService(world.db, clock).create(
        actor=CLI,
        user_id=bob.user_id,
        project_id=bob.project_id,
        spec=NewBudget("project", "daily", 900_000),
    )
    reservation = await meter.reserve(
        ask(await payer_of(world, bob), prompt=1001, max_tokens=300, input_price="0.5")
    )
    assert reservation.windows
    assert await meter.settle(reservation, classed()) == CHARGE
    _, event = await ledger_and_event(world, reservation.request_id)
    assert event == EVENT
    async with world.db.read() as conn:
        spent = (await conn.execute(text("SELECT spent_credits FROM budget_windows"))).scalar_one()
    assert int(spent) == CHARGE
    await assert_invariant(world.db)


@pytest.fixture
async def lmeter(world: World, clock: FakeClock) -> AsyncIterator[Meter]:
    leases = Leases(world.db, clock, instance_id="classes")
    meter = Meter(world.db, clock, instance_id="classes", leases=leases)
    await Recovery(world.db, meter, clock, heartbeat_s=1, stale_s=1e9).register()
    yield meter
    await leases.close(1.0)


async def test_a_lease_group_commit_writes_the_classes(world: World, lmeter: Meter) -> None:
    carol = await world.member("carol", "p1", credits_eur="1")
    reservation = await lmeter.reserve(
        ask(await payer_of(world, carol), prompt=1001, max_tokens=300, input_price="0.5")
    )
    assert reservation.lease is not None
    assert await lmeter.settle(reservation, classed()) == CHARGE
    assert lmeter.leases is not None
    await lmeter.leases.flush()
    ledger, event = await ledger_and_event(world, reservation.request_id)
    assert ledger == [("charge", -CHARGE)]
    assert event == EVENT
    await assert_invariant(world.db)


async def test_the_usage_report_sums_the_classes(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    dave = await world.member("dave", "p1", credits_eur="1")
    payer = await payer_of(world, dave)
    for _ in range(2):
        reservation = await meter.reserve(
            ask(payer, prompt=1001, max_tokens=300, input_price="0.5", output_price="1.6")
        )
        await meter.settle(reservation, classed())
    plain = await meter.reserve(ask(payer, prompt=10, max_tokens=10))
    await meter.settle(plain, usage(10, 5))
    service = UsageService(world.db, clock)
    now = int(clock())
    for bucket in ("1d", "1M"):  # the SQL sum, and the roll-up of days
        report = await service.report(
            user_id=dave.user_id,
            project_id=dave.project_id,
            query=UsageQuery(now - 3600, now, bucket, "none"),
        )
        [row] = report["rows"]
        assert row["requests"] == 3
        assert row["prompt_tokens"] == 2 * 1001 + 10
        assert row["completion_tokens"] == 2 * 203 + 5
        assert row["cached_prompt_tokens"] == 1000
        assert row["cache_write_tokens"] == 500
        assert row["reasoning_tokens"] == 300
        assert row["cost"] == (2 * CHARGE + 15) / 1_000_000
