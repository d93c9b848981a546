from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select, text

from tests.support.asgi import asgi_client
from tests.support.world import Member, World
from tollway.app import create_app
from tollway.audit.actor import CLI
from tollway.billing.meter import Meter
from tollway.billing.records import Payer, Reservation, ReserveRequest, UsageRecord
from tollway.providers.pricing import Pricing
from tollway.settings import Settings
from tollway.store import keys, ledger
from tollway.store.database import Database
from tollway.store.schema import users

# 2025-03-10 was a Monday; 10:00 UTC.
MONDAY_10H = 1_741_600_800


@dataclass
class FakeClock:
    now: float = float(MONDAY_10H)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def meter(world: World, clock: FakeClock) -> AsyncIterator[Meter]:
    yield Meter(world.db, clock, instance_id="test-instance")


async def payer_of(world: World, member: Member, key: str = "inf") -> Payer:
    name = f"{member.project}-{key}" if key in ("inf", "mgmt") else key
    async with world.db.read() as conn:
        row = await keys.key_by_name(conn, member.user_id, name)
    assert row is not None
    return Payer(uuid.uuid4().hex, member.user_id, member.project_id, row.id, row.name)


def fresh(payer: Payer) -> Payer:
    """The same payer for a new request."""
    return Payer(uuid.uuid4().hex, payer.user_id, payer.project_id, payer.key_id, payer.key_name)


def ask(
    payer: Payer,
    *,
    prompt: int = 10,
    max_tokens: int = 50,
    input_price: str = "1",
    output_price: str = "1",
) -> ReserveRequest:
    return ReserveRequest(
        fresh(payer), Decimal(input_price), Decimal(output_price), prompt, max_tokens
    )


def usage(
    prompt: int,
    completion: int,
    *,
    input_price: str = "1",
    output_price: str = "1",
    model: str = "m1",
    provider: str = "p1",
) -> UsageRecord:
    return UsageRecord(
        endpoint="chat.completions",
        model=model,
        provider=provider,
        prompt_tokens=prompt,
        completion_tokens=completion,
        pricing=Pricing(input_token=Decimal(input_price), output_token=Decimal(output_price)),
        latency_ms=12,
        status="success",
        usage_source="upstream",
    )


async def balance_of(db: Database, user_id: str) -> int:
    async with db.read() as conn:
        value = (
            await conn.execute(select(users.c.balance_credits).where(users.c.id == user_id))
        ).scalar_one()
    return int(value)


async def set_balance(world: World, member: Member, credits: int) -> None:
    """Top up through the ledger so the invariant holds (topups are in whole credits)."""
    current = await balance_of(world.db, member.user_id)
    assert credits >= current
    if credits > current:
        await world.accounts.add_credits(
            actor=CLI, user=member.user, amount_eur=str(Decimal(credits - current).scaleb(-6))
        )


async def assert_invariant(db: Database) -> None:
    async with db.read() as conn:
        assert await ledger.ledger_mismatches(conn) == []
        negative = (
            await conn.execute(text("SELECT count(*) FROM users WHERE balance_credits < 0"))
        ).scalar_one()
    assert negative == 0


async def open_reservations(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM reservations"))).scalar_one())


async def settle_all(
    meter: Meter, reservations: list[Reservation], record: UsageRecord | None
) -> int:
    total = 0
    for r in reservations:
        total += await meter.settle(r, record)
    return total


@pytest.fixture
async def api(
    world: World, database_url: str, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process on the test's database, with the injected clock."""
    app = create_app(Settings(database_url=database_url), clock=clock)
    async with asgi_client(app) as client:
        yield client
