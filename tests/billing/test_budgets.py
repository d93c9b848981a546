from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.billing.conftest import (
    FakeClock,
    ask,
    assert_invariant,
    payer_of,
    usage,
)
from tests.http.conftest import bearer
from tests.support.world import Member, World
from tollway.audit.actor import CLI
from tollway.billing.budgets import BudgetService, NewBudget, window_end, window_start
from tollway.billing.meter import Meter
from tollway.billing.records import Payer
from tollway.errors import BudgetExceeded


def ts(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("period", "moment", "start", "end"),
    [
        ("daily", "2025-03-12T23:59:59", "2025-03-12T00:00:00", "2025-03-13T00:00:00"),
        ("weekly", "2025-03-16T23:00:00", "2025-03-10T00:00:00", "2025-03-17T00:00:00"),
        ("weekly", "2025-03-10T00:00:00", "2025-03-10T00:00:00", "2025-03-17T00:00:00"),
        ("monthly", "2025-12-31T12:00:00", "2025-12-01T00:00:00", "2026-01-01T00:00:00"),
        ("monthly", "2024-02-29T12:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),
    ],
)
def test_periods_are_utc_calendar_windows(period: str, moment: str, start: str, end: str) -> None:
    assert window_start(period, ts(moment)) == ts(start)
    assert window_end(period, ts(start)) == ts(end)


async def add_budget(
    world: World,
    clock: FakeClock,
    admin: Member,
    scope: str,
    limit: int,
    *,
    period: str = "daily",
    user_id: str | None = None,
    key_name: str | None = None,
) -> str:
    view = await BudgetService(world.db, clock).create(
        actor=CLI,
        user_id=admin.user_id,
        project_id=admin.project_id,
        spec=NewBudget(scope, period, limit, user_id=user_id, key_name=key_name),
    )
    return view.budget.id


async def fits(meter: Meter, payer: Payer, *, prompt: int = 10, max_tokens: int = 50) -> bool:
    try:
        r = await meter.reserve(ask(payer, prompt=prompt, max_tokens=max_tokens))
    except BudgetExceeded:
        return False
    await meter.settle(r, usage(prompt, r.max_tokens))
    return True


async def test_project_budget_lowers_then_refuses_with_reset_time(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    budget_id = await add_budget(world, clock, alice, "project", 100)
    payer = await payer_of(world, alice)
    first = await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    assert first.amount_credits == 60
    second = await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    assert second.lowered and (second.max_tokens, second.amount_credits) == (30, 40)
    with pytest.raises(BudgetExceeded) as refused:
        await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    message = refused.value.message
    assert budget_id in message and "daily" in message and "project" in message
    assert "(limit 0.0001 EUR) is used up" in message  # 60 + 40 of 100: nothing left
    assert "resets at 2025-03-11T00:00:00Z" in message
    assert refused.value.status == 429
    # Settling frees what was not used: 20 + 15 spent of 100.
    await meter.settle(first, usage(10, 10))
    await meter.settle(second, usage(10, 5))
    assert await fits(meter, payer, prompt=10, max_tokens=50)  # 35 + 60 <= 100
    await assert_invariant(world.db)


async def test_a_refusal_says_what_the_request_needs_and_what_is_left(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    await add_budget(world, clock, alice, "project", 100)
    payer = await payer_of(world, alice)
    held = await meter.reserve(ask(payer, prompt=45, max_tokens=50))  # 95 of 100
    with pytest.raises(BudgetExceeded) as refused:
        await meter.reserve(ask(payer, prompt=10, max_tokens=50))
    message = refused.value.message
    assert "used up" not in message
    assert "has 0.000005 EUR left; this request needs at least 0.00001" in message
    await meter.settle(held, usage(45, 50))
    await assert_invariant(world.db)


async def test_window_rolls_over_at_midnight_utc(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    await add_budget(world, clock, alice, "project", 60)
    payer = await payer_of(world, alice)
    assert await fits(meter, payer)
    assert not await fits(meter, payer)
    clock.now = ts("2025-03-10T23:59:59")
    assert not await fits(meter, payer)
    clock.now = ts("2025-03-11T00:00:00")
    assert await fits(meter, payer)


@pytest.mark.parametrize(
    ("period", "still_closed", "reopens"),
    [
        ("weekly", "2025-03-16T23:59:59", "2025-03-17T00:00:00"),
        ("monthly", "2025-03-31T23:59:59", "2025-04-01T00:00:00"),
    ],
)
async def test_weekly_and_monthly_windows(
    world: World,
    meter: Meter,
    clock: FakeClock,
    period: str,
    still_closed: str,
    reopens: str,
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    budget_id = await add_budget(world, clock, alice, "project", 60, period=period)
    payer = await payer_of(world, alice)
    assert await fits(meter, payer)
    with pytest.raises(BudgetExceeded, match=f"{period} project budget {budget_id}.*{reopens}Z"):
        await meter.reserve(ask(payer))
    clock.now = ts(still_closed)
    assert not await fits(meter, payer)
    clock.now = ts(reopens)
    assert await fits(meter, payer)


async def test_each_user_counts_every_user_separately(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    bob = await world.member("bob", "p1", role="member", credits_eur="1")
    await add_budget(world, clock, alice, "each_user", 60)
    a, b = await payer_of(world, alice), await payer_of(world, bob)
    assert await fits(meter, a)
    assert not await fits(meter, a)
    assert await fits(meter, b)
    assert not await fits(meter, await payer_of(world, alice, "mgmt"))  # same user, other key


async def test_user_budget_applies_to_that_user_only(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    bob = await world.member("bob", "p1", role="member", credits_eur="1")
    await add_budget(world, clock, alice, "user", 60, user_id=bob.user_id)
    b = await payer_of(world, bob)
    assert await fits(meter, b)
    assert not await fits(meter, b)
    a = await payer_of(world, alice)
    assert await fits(meter, a) and await fits(meter, a)


async def test_each_key_and_key_budgets(world: World, meter: Meter, clock: FakeClock) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    await add_budget(world, clock, alice, "each_key", 120)
    await add_budget(world, clock, alice, "key", 60, key_name="p1-inf")
    inf, mgmt = await payer_of(world, alice), await payer_of(world, alice, "mgmt")
    assert await fits(meter, inf)
    assert not await fits(meter, inf)  # the key budget (60) binds first
    assert await fits(meter, mgmt)
    assert await fits(meter, mgmt)
    assert not await fits(meter, mgmt)  # each_key: 120 per key


async def test_budgets_are_conjunctive_and_stay_in_their_project(
    world: World, meter: Meter, clock: FakeClock
) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    other = await world.member("alice", "p2")
    await add_budget(world, clock, alice, "project", 1_000)
    tight = await add_budget(world, clock, alice, "each_user", 60)
    a = await payer_of(world, alice)
    assert await fits(meter, a)
    with pytest.raises(BudgetExceeded, match=tight):
        await meter.reserve(ask(a))
    assert await fits(meter, await payer_of(world, other))  # p2 has no budget


async def test_deleting_a_key_deletes_its_budgets(world: World, clock: FakeClock) -> None:
    alice = await world.member("alice", "p1")
    await add_budget(world, clock, alice, "key", 60, key_name="p1-inf")
    mgmt = await payer_of(world, alice, "mgmt")
    await world.keys.delete(
        actor=CLI, user_id=alice.user_id, name="p1-inf", calling_key_id=mgmt.key_id
    )
    views = await BudgetService(world.db, clock).list(
        user_id=alice.user_id, project_id=alice.project_id
    )
    assert views == []


# -- the HTTP API -------------------------------------------------------------------------


async def test_budget_api_roundtrip(world: World, api: httpx.AsyncClient, meter: Meter) -> None:
    alice = await world.member("alice", "p1", credits_eur="1")
    bob = await world.member("bob", "p1", role="member", credits_eur="1")
    h = bearer(alice.management_key)
    created = await api.post(
        "/v1/manage/budgets",
        json={"scope": "each_user", "period": "daily", "limit": 0.5},
        headers=h,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["scope"] == "each_user" and body["period"] == "daily" and body["limit"] == 0.5
    assert body["resets_at"] == "2025-03-11T00:00:00Z" and body["spent"] == 0
    key_budget = await api.post(
        "/v1/manage/budgets",
        json={
            "scope": "key",
            "period": "monthly",
            "limit": 1.25,
            "key_name": "p1-inf",
            "user_id": bob.user_id,
        },
        headers=h,
    )
    assert key_budget.status_code == 201, key_budget.text
    assert key_budget.json()["key_name"] == "p1-inf"
    assert key_budget.json()["user_id"] == bob.user_id

    r = await meter.reserve(ask(await payer_of(world, bob), prompt=100, max_tokens=100))
    await meter.settle(r, usage(100, 23))
    listed = await api.get("/v1/manage/budgets", headers=h)
    assert listed.status_code == 200
    budgets = {b["id"]: b for b in listed.json()["budgets"]}
    each_user = budgets[body["id"]]
    assert each_user["spent"] == 0.000123
    assert each_user["subjects"] == [
        {"user_id": bob.user_id, "key_name": None, "spent": 0.000123, "reserved": 0}
    ]
    assert budgets[key_budget.json()["id"]]["spent"] == 0.000123
    assert budgets[key_budget.json()["id"]]["resets_at"] == "2025-04-01T00:00:00Z"

    deleted = await api.request("DELETE", "/v1/manage/budgets", json={"id": body["id"]}, headers=h)
    assert deleted.status_code == 200 and deleted.json() == {"success": True, "deleted": body["id"]}
    again = await api.request("DELETE", "/v1/manage/budgets", json={"id": body["id"]}, headers=h)
    assert again.status_code == 404 and isinstance(again.json()["error"], str)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scope": "galaxy", "period": "daily", "limit": 1}, "scope"),
        ({"scope": "project", "period": "hourly", "limit": 1}, "period"),
        ({"scope": "project", "period": "daily", "limit": -1}, "limit"),
        ({"scope": "project", "period": "daily", "limit": "lots"}, "limit"),
        ({"scope": "project", "period": "daily", "limit": 0.0000001}, "limit"),
        ({"scope": "project", "period": "daily"}, "limit"),
        ({"scope": "user", "period": "daily", "limit": 1}, "user_id"),
        ({"scope": "user", "period": "daily", "limit": 1, "user_id": "nobody"}, "user_id"),
        ({"scope": "key", "period": "daily", "limit": 1}, "key_name"),
        ({"scope": "key", "period": "daily", "limit": 1, "key_name": "nope"}, "key_name"),
        ({"scope": "project", "period": "daily", "limit": 1, "key_name": "p1-inf"}, "key_name"),
    ],
)
async def test_budget_api_rejects_bad_input_naming_the_field(
    world: World, api: httpx.AsyncClient, payload: dict[str, object], field: str
) -> None:
    alice = await world.member("alice", "p1")
    response = await api.post(
        "/v1/manage/budgets", json=payload, headers=bearer(alice.management_key)
    )
    assert response.status_code == 400
    assert field in response.json()["error"]


async def test_budget_api_is_for_project_admins_with_management_keys(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")
    bob = await world.member("bob", "p1", role="member")
    payload = {"scope": "project", "period": "daily", "limit": 1}
    for method, path, body in [
        ("GET", "/v1/manage/budgets", None),
        ("POST", "/v1/manage/budgets", payload),
        ("DELETE", "/v1/manage/budgets", {"id": "0" * 24}),
    ]:
        as_member = await api.request(method, path, json=body, headers=bearer(bob.management_key))
        assert as_member.status_code == 403, (method, as_member.text)
        inference = await api.request(method, path, json=body, headers=bearer(alice.inference_key))
        assert inference.status_code == 403
        anonymous = await api.request(method, path, json=body)
        assert anonymous.status_code == 401


async def test_budgets_of_another_project_are_invisible(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")
    carol = await world.member("carol", "p2")
    created = await api.post(
        "/v1/manage/budgets",
        json={"scope": "project", "period": "daily", "limit": 1},
        headers=bearer(alice.management_key),
    )
    listed = await api.get("/v1/manage/budgets", headers=bearer(carol.management_key))
    assert listed.json() == {"budgets": []}
    deleted = await api.request(
        "DELETE",
        "/v1/manage/budgets",
        json={"id": created.json()["id"]},
        headers=bearer(carol.management_key),
    )
    assert deleted.status_code == 404
