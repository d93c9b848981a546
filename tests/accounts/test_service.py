from __future__ import annotations

import asyncio

from tests.support.world import World
from tollway.accounts.service import AccountService
from tollway.audit.actor import CLI
from tollway.billing.verify import verify_ledger
from tollway.clock import system_clock
from tollway.errors import BadRequest
from tollway.store.database import Database


async def test_concurrent_debits_never_overdraw(world: World, database_url: str) -> None:
    """Ten debits of 3 EUR race for 10 EUR: exactly three pass, the balance ends at 1 EUR,
    never below zero, and balance = Σ ledger."""
    await world.member("alice", "p", credits_eur="10")
    db = Database(database_url, pool_size=10)
    try:
        accounts = AccountService(db, system_clock)
        results = await asyncio.gather(
            *(
                accounts.adjust_credits(
                    actor=CLI, user="alice", amount_eur="-3", reason=f"debit {i}"
                )
                for i in range(10)
            ),
            return_exceptions=True,
        )
    finally:
        await db.dispose()
    passed = sorted(r for r in results if isinstance(r, int))
    assert passed == [1_000_000, 4_000_000, 7_000_000]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 7 and all(isinstance(r, BadRequest) for r in refused)
    assert (await world.accounts.user("alice")).balance_credits == 1_000_000
    report = await verify_ledger(world.db, system_clock, stale_s=20, max_age_s=900)
    assert report.ok, report.problems
    assert report.ledger_rows == 4  # the top-up and the three debits


async def test_listings_are_scoped_by_the_filters(world: World) -> None:
    await world.member("alice", "p")
    await world.member("bob", "q", role="member")
    assert [(m.project, m.user) for m in await world.accounts.memberships(user="bob")] == [
        ("q", "bob")
    ]
    users = {u.name: u for u in await world.accounts.users()}
    assert (users["alice"].projects, users["alice"].keys) == (1, 2)
    alice = await world.accounts.user("alice")
    keys = await world.keys.listing(user_id=alice.id)
    assert [k.name for k in keys] == ["p-mgmt", "p-inf"]
