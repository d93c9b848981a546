from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.billing.conftest import MONDAY_10H, FakeClock, ask, balance_of, payer_of, usage
from tests.http.conftest import bearer
from tests.support.world import Member, World
from tollway.billing.meter import Meter

HOUR = 3600
RANGE = {"from": "2025-03-01T00:00:00Z", "until": "2025-12-31T00:00:00Z"}


async def spend(
    world: World,
    meter: Meter,
    clock: FakeClock,
    member: Member,
    key: str,
    at: int,
    prompt: int,
    completion: int,
    model: str,
    provider: str,
) -> None:
    clock.now = at
    r = await meter.reserve(ask(await payer_of(world, member, key), prompt=prompt, max_tokens=100))
    await meter.settle(r, usage(prompt, completion, model=model, provider=provider))


@pytest.fixture
async def people(world: World, meter: Meter, clock: FakeClock) -> dict[str, Member]:
    alice = await world.member("alice", "p1", credits_eur="1")
    bob = await world.member("bob", "p1", role="member", credits_eur="1")
    await spend(world, meter, clock, alice, "inf", MONDAY_10H, 10, 20, "m1", "p1")
    await spend(world, meter, clock, bob, "inf", MONDAY_10H + HOUR // 2, 100, 1, "m1", "p2")
    await spend(world, meter, clock, alice, "mgmt", MONDAY_10H + 2 * HOUR, 5, 5, "m2", "p2")
    await spend(world, meter, clock, alice, "inf", MONDAY_10H + 24 * HOUR, 1, 1, "m1", "p1")
    await spend(world, meter, clock, alice, "inf", MONDAY_10H + 23 * 24 * HOUR, 3, 3, "m1", "p1")
    # Reserved and abandoned: nothing served, not in the report.
    clock.now = MONDAY_10H
    await meter.reserve(ask(await payer_of(world, alice), prompt=1, max_tokens=1))
    async with world.db.read() as conn:
        rid = (await conn.execute(text("SELECT request_id FROM reservations"))).scalar_one()
    await meter.release_abandoned(str(rid))
    clock.now = MONDAY_10H + 3 * HOUR
    return {"alice": alice, "bob": bob}


async def report(api: httpx.AsyncClient, member: Member, **params: str) -> dict[str, Any]:
    response = await api.get(
        "/v1/manage/usage", params=params, headers=bearer(member.management_key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def brief(rows: list[dict[str, Any]], *extra: str) -> list[tuple[Any, ...]]:
    return [(r["bucket_start"], *(r[e] for e in extra), r["requests"], r["cost"]) for r in rows]


async def test_daily_report_of_the_whole_project_for_an_admin(
    api: httpx.AsyncClient, people: dict[str, Member]
) -> None:
    body = await report(api, people["alice"], **RANGE)
    assert body["bucket"] == "1d" and body["group_by"] == "none"
    assert body["from"] == "2025-03-01T00:00:00Z" and body["until"] == "2025-12-31T00:00:00Z"
    first = body["rows"][0]
    assert first == {
        "bucket_start": "2025-03-10T00:00:00Z",
        "requests": 3,
        "prompt_tokens": 115,
        "completion_tokens": 26,
        "total_tokens": 141,
        "cached_prompt_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "cost": 0.000141,
    }
    assert brief(body["rows"][1:]) == [
        ("2025-03-11T00:00:00Z", 1, 0.000002),
        ("2025-04-02T00:00:00Z", 1, 0.000006),
    ]


@pytest.mark.parametrize(
    ("bucket", "expected"),
    [
        (
            "1h",
            [
                ("2025-03-10T10:00:00Z", 2, 0.000131),
                ("2025-03-10T12:00:00Z", 1, 0.00001),
                ("2025-03-11T10:00:00Z", 1, 0.000002),
                ("2025-04-02T10:00:00Z", 1, 0.000006),
            ],
        ),
        (
            "6h",
            [
                ("2025-03-10T06:00:00Z", 2, 0.000131),
                ("2025-03-10T12:00:00Z", 1, 0.00001),
                ("2025-03-11T06:00:00Z", 1, 0.000002),
                ("2025-04-02T06:00:00Z", 1, 0.000006),
            ],
        ),
        ("1w", [("2025-03-10T00:00:00Z", 4, 0.000143), ("2025-03-31T00:00:00Z", 1, 0.000006)]),
        ("1M", [("2025-03-01T00:00:00Z", 4, 0.000143), ("2025-04-01T00:00:00Z", 1, 0.000006)]),
        ("1Y", [("2025-01-01T00:00:00Z", 5, 0.000149)]),
    ],
)
async def test_buckets(
    api: httpx.AsyncClient, people: dict[str, Member], bucket: str, expected: list[Any]
) -> None:
    body = await report(api, people["alice"], bucket=bucket, **RANGE)
    assert brief(body["rows"]) == expected


async def test_group_by(api: httpx.AsyncClient, people: dict[str, Member]) -> None:
    alice, bob = people["alice"].user_id, people["bob"].user_id
    by_user = await report(api, people["alice"], bucket="1M", group_by="user", **RANGE)
    assert sorted(brief(by_user["rows"], "user_id")) == sorted(
        [
            ("2025-03-01T00:00:00Z", alice, 3, 0.000042),
            ("2025-03-01T00:00:00Z", bob, 1, 0.000101),
            ("2025-04-01T00:00:00Z", alice, 1, 0.000006),
        ]
    )
    by_key = await report(api, people["alice"], bucket="1Y", group_by="user_key", **RANGE)
    assert sorted(brief(by_key["rows"], "user_id", "key_name")) == sorted(
        [
            ("2025-01-01T00:00:00Z", alice, "p1-inf", 3, 0.000038),
            ("2025-01-01T00:00:00Z", alice, "p1-mgmt", 1, 0.00001),
            ("2025-01-01T00:00:00Z", bob, "p1-inf", 1, 0.000101),
        ]
    )
    by_model = await report(api, people["alice"], bucket="1Y", group_by="model", **RANGE)
    assert brief(by_model["rows"], "model") == [
        ("2025-01-01T00:00:00Z", "m1", 4, 0.000139),
        ("2025-01-01T00:00:00Z", "m2", 1, 0.00001),
    ]
    by_provider = await report(api, people["alice"], bucket="1Y", group_by="provider", **RANGE)
    assert brief(by_provider["rows"], "provider") == [
        ("2025-01-01T00:00:00Z", "p1", 3, 0.000038),
        ("2025-01-01T00:00:00Z", "p2", 2, 0.000111),
    ]
    assert set(by_provider["rows"][0]) == {
        "bucket_start",
        "provider",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_prompt_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "cost",
    }


async def test_defaults_are_today_until_now(
    api: httpx.AsyncClient, people: dict[str, Member]
) -> None:
    body = await report(api, people["alice"])
    assert body["from"] == "2025-03-10T00:00:00Z"
    assert body["until"] == "2025-03-10T13:00:00Z"
    assert brief(body["rows"]) == [("2025-03-10T00:00:00Z", 3, 0.000141)]


async def test_a_member_sees_only_their_own_usage(
    api: httpx.AsyncClient, people: dict[str, Member]
) -> None:
    body = await report(api, people["bob"], group_by="user", **RANGE)
    assert brief(body["rows"], "user_id") == [
        ("2025-03-10T00:00:00Z", people["bob"].user_id, 1, 0.000101)
    ]


async def test_cost_equals_the_balance_drop(
    world: World, api: httpx.AsyncClient, people: dict[str, Member]
) -> None:
    body = await report(api, people["alice"], bucket="1Y", group_by="user", **RANGE)
    for row in body["rows"]:
        drop = 1_000_000 - await balance_of(world.db, row["user_id"])
        assert round(row["cost"] * 1_000_000) == drop


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"bucket": "2d"}, "bucket"),
        ({"group_by": "team"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"until": "2025-13-01"}, "until"),
        ({"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ({"until": "9999-12-31T23:59:59-14:00"}, "until"),
        ({"from": "2025-03-02T00:00:00Z", "until": "2025-03-01T00:00:00Z"}, "from"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    api: httpx.AsyncClient, people: dict[str, Member], params: dict[str, str], name: str
) -> None:
    response = await api.get(
        "/v1/manage/usage", params=params, headers=bearer(people["alice"].management_key)
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{name}:")


async def test_usage_needs_a_management_key(
    api: httpx.AsyncClient, people: dict[str, Member]
) -> None:
    assert (await api.get("/v1/manage/usage")).status_code == 401
    inference = await api.get("/v1/manage/usage", headers=bearer(people["alice"].inference_key))
    assert inference.status_code == 403
