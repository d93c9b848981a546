"""Every Management API write path leaves its audit row, written with the change (same
transaction), on both backends; GET /v1/manage/audit shows them by role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.http.conftest import bearer
from tests.support.world import Member, World
from tollway.audit.actor import CLI


async def audit(api: httpx.AsyncClient, key: str, **params: str) -> list[dict[str, Any]]:
    response = await api.get("/v1/manage/audit", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


async def _key_create(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    return await api.post(
        "/v1/manage/api-keys", json={"name": "new"}, headers=bearer(m.management_key)
    )


async def _key_delete(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    return await api.request(
        "DELETE", "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=bearer(m.management_key)
    )


async def _config_put(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    return await api.put(
        "/v1/project-configs",
        json={"active": True, "allow_overwrite": True},
        headers=bearer(m.management_key),
    )


async def _budget_create(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    return await api.post(
        "/v1/manage/budgets",
        json={"scope": "project", "period": "daily", "limit": 5},
        headers=bearer(m.management_key),
    )


async def _budget_delete(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    created = await _budget_create(api, m)
    return await api.request(
        "DELETE",
        "/v1/manage/budgets",
        json={"id": created.json()["id"]},
        headers=bearer(m.management_key),
    )


async def _limit_create(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    return await api.post(
        "/v1/manage/rate-limits",
        json={"scope": "each_key", "requests_per_minute": 30},
        headers=bearer(m.management_key),
    )


async def _limit_delete(api: httpx.AsyncClient, m: Member) -> httpx.Response:
    created = await _limit_create(api, m)
    return await api.request(
        "DELETE",
        "/v1/manage/rate-limits",
        json={"id": created.json()["id"]},
        headers=bearer(m.management_key),
    )


Call = Callable[[httpx.AsyncClient, Member], Awaitable[httpx.Response]]
WRITE_PATHS: list[tuple[str, Call, str, str | None, str | None]] = [
    # (action, the call, target prefix, a field of `before`, a field of `after`)
    ("api_key.create", _key_create, "api_key/new", None, "is_management_key"),
    ("api_key.delete", _key_delete, "api_key/p1-inf", "is_management_key", None),
    ("project_config.update", _config_put, "project_config/", "allow_overwrite", "allow_overwrite"),
    ("budget.create", _budget_create, "budget/", None, "limit"),
    ("budget.delete", _budget_delete, "budget/", "limit", None),
    ("rate_limit.create", _limit_create, "rate_limit/", None, "requests_per_minute"),
    ("rate_limit.delete", _limit_delete, "rate_limit/", "requests_per_minute", None),
]


@pytest.mark.parametrize(
    ("action", "call", "target", "before", "after"),
    WRITE_PATHS,
    ids=[p[0] for p in WRITE_PATHS],
)
async def test_each_write_path_leaves_its_audit_row(
    world: World,
    api: httpx.AsyncClient,
    action: str,
    call: Call,
    target: str,
    before: str | None,
    after: str | None,
) -> None:
    alice = await world.member("alice", "p1")
    response = await call(api, alice)
    assert response.status_code in (200, 201), response.text
    rows = await audit(api, alice.management_key, action=action, actor="p1-mgmt")
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == {"kind": "key", "name": "p1-mgmt", "user_id": alice.user_id}
    assert row["project_id"] == alice.project_id
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["target"].startswith(target)
    assert (row["before"] is None) == (before is None)
    assert (row["after"] is None) == (after is None)
    if before is not None:
        assert before in row["before"]
    if after is not None:
        assert after in row["after"]
    text = orjson.dumps(row).decode()
    assert "tw-" not in text and "digest" not in text  # never a key, never its digest
    if action == "project_config.update":
        assert row["before"]["allow_overwrite"] is False
        assert row["after"]["allow_overwrite"] is True


async def test_a_refused_change_leaves_no_row(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    duplicate = await api.post(
        "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=bearer(alice.management_key)
    )
    assert duplicate.status_code == 400
    unknown = await api.request(
        "DELETE",
        "/v1/manage/api-keys",
        json={"name": "ghost"},
        headers=bearer(alice.management_key),
    )
    assert unknown.status_code == 404
    bad_config = await api.put(
        "/v1/project-configs",
        json={"active": True, "inference_config": {"allowed_providers": ["nowhere"]}},
        headers=bearer(alice.management_key),
    )
    assert bad_config.status_code == 400
    no_budget = await api.request(
        "DELETE", "/v1/manage/budgets", json={"id": "0" * 24}, headers=bearer(alice.management_key)
    )
    assert no_budget.status_code == 404
    # The API made no change, so it wrote no row: every row is the world's (the CLI actor).
    assert await audit(api, alice.management_key, actor="p1-mgmt") == []
    assert {r["actor"]["kind"] for r in await audit(api, alice.management_key)} == {"cli"}


async def test_members_see_their_own_actions_admins_the_project(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")  # admin
    bob = await world.member("bob", "p1", role="member")
    await world.member("carol", "p2")  # another project
    await api.put(
        "/v1/project-configs",
        json={"active": True, "allow_overwrite": True},
        headers=bearer(alice.management_key),
    )
    made = await api.post(
        "/v1/manage/api-keys", json={"name": "b2"}, headers=bearer(bob.management_key)
    )
    assert made.status_code == 201
    mine = await audit(api, bob.management_key)
    assert [r["action"] for r in mine] == ["api_key.create"]
    assert mine[0]["actor"]["user_id"] == bob.user_id
    everyone = await audit(api, alice.management_key)
    assert {"api_key.create", "project_config.update"} <= {r["action"] for r in everyone}
    assert all(r["project_id"] == alice.project_id for r in everyone)
    assert await audit(api, alice.management_key, actor="p1-mgmt", action="api_key.create") == [
        mine[0]
    ]


async def test_paging_and_bad_queries(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    for name in ("k1", "k2", "k3"):
        await world.keys.create(
            actor=CLI,
            user_id=alice.user_id,
            project_id=alice.project_id,
            name=name,
            is_management=False,
        )
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await api.get("/v1/manage/audit", params=params, headers=bearer(alice.management_key))
        ).json()
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = await audit(api, alice.management_key, limit="200")
    assert seen == [e["id"] for e in everything]
    assert len(seen) == len(set(seen)) >= 6
    for params, name in (
        ({"limit": "0"}, "limit"),
        ({"cursor": "nope"}, "cursor"),
        ({"since": "2026-13-01"}, "since"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "since"),
        ({"action": "x" * 500}, "action"),
        # PostgreSQL refuses a NUL even in a comparison: a 400, never a 500 (both backends)
        ({"action": "key.\x00create"}, "action"),
        ({"actor": "\x00"}, "actor"),
    ):
        response = await api.get(
            "/v1/manage/audit", params=params, headers=bearer(alice.management_key)
        )
        assert response.status_code == 400
        assert name in response.json()["error"]
    future = await audit(api, alice.management_key, since="2999-01-01")
    assert future == []
    assert (await api.get("/v1/manage/audit")).status_code == 401
