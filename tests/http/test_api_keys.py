from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.http.conftest import bearer
from tests.support.world import World
from tollway.keys.secrets import KEY_PREFIX


async def test_create_list_delete_roundtrip(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    created = await api.post(
        "/v1/manage/api-keys", json={"name": "my-new-key"}, headers=bearer(alice.management_key)
    )
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"name", "api_key", "created_at", "is_management_key"}
    assert body["name"] == "my-new-key"
    assert body["api_key"].startswith(KEY_PREFIX)
    assert len(body["api_key"]) >= len(KEY_PREFIX) + 43  # 256 bits, base64url
    assert body["is_management_key"] is False
    assert isinstance(body["created_at"], int)

    listed = await api.get("/v1/manage/api-keys", headers=bearer(alice.management_key))
    assert listed.status_code == 200
    keys = listed.json()["api_keys"]
    assert [k["name"] for k in keys] == ["p1-mgmt", "p1-inf", "my-new-key"]
    assert all(set(k) == {"name", "created_at", "is_management_key"} for k in keys)

    deleted = await api.request(
        "DELETE",
        "/v1/manage/api-keys",
        json={"name": "my-new-key"},
        headers=bearer(alice.management_key),
    )
    assert deleted.status_code == 200
    assert deleted.json() == {"success": True, "deleted": "my-new-key"}
    listed = await api.get("/v1/manage/api-keys", headers=bearer(alice.management_key))
    assert "my-new-key" not in [k["name"] for k in listed.json()["api_keys"]]


async def test_new_management_key_works(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    created = await api.post(
        "/v1/manage/api-keys",
        json={"name": "ops", "is_management_key": True},
        headers=bearer(alice.management_key),
    )
    assert created.status_code == 201
    new_key = created.json()["api_key"]
    assert (await api.get("/v1/manage/api-keys", headers=bearer(new_key))).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer tw-unknown"},
        {"Authorization": "Bearer sk-foo"},
    ],
)
async def test_missing_or_invalid_token_is_401(
    world: World, api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/v1/manage/api-keys"),
        ("POST", "/v1/manage/api-keys"),
        ("DELETE", "/v1/manage/api-keys"),
        ("GET", "/v1/project-configs"),
        ("PUT", "/v1/project-configs"),
        ("GET", "/v1/user/balance"),
        ("GET", "/api/v1/user/balance"),
    ]:
        response = await api.request(
            method, path, json={"name": "x", "active": True}, headers=headers
        )
        assert response.status_code == 401, (method, path)
        assert isinstance(response.json()["error"], str)


async def test_inference_key_is_403(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    for method, path in [
        ("GET", "/v1/manage/api-keys"),
        ("POST", "/v1/manage/api-keys"),
        ("DELETE", "/v1/manage/api-keys"),
        ("GET", "/v1/project-configs"),
        ("PUT", "/api/v1/project-configs"),
        ("GET", "/v1/user/balance"),
    ]:
        response = await api.request(
            method, path, json={"name": "x", "active": True}, headers=bearer(alice.inference_key)
        )
        assert response.status_code == 403, (method, path)
        assert "management" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": ""}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "is_management_key": "yes"}, "is_management_key"),
    ],
)
async def test_create_invalid_input_is_400_naming_field(
    world: World, api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    alice = await world.member("alice", "p1")
    response = await api.post(
        "/v1/manage/api-keys", json=body, headers=bearer(alice.management_key)
    )
    assert response.status_code == 400
    assert field in response.json()["error"]


async def test_malformed_json_is_400(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    response = await api.post(
        "/v1/manage/api-keys",
        content=b'{"name": ',
        headers=bearer(alice.management_key) | {"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


async def test_duplicate_name_and_key_limit_are_400(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")  # 2 keys; the app's limit is 5
    h = bearer(alice.management_key)
    assert (await api.post("/v1/manage/api-keys", json={"name": "a"}, headers=h)).status_code == 201
    dup = await api.post("/v1/manage/api-keys", json={"name": "a"}, headers=h)
    assert dup.status_code == 400
    assert "already exists" in dup.json()["error"]
    for name in ("b", "c"):
        assert (
            await api.post("/v1/manage/api-keys", json={"name": name}, headers=h)
        ).status_code == 201
    over = await api.post("/v1/manage/api-keys", json={"name": "d"}, headers=h)
    assert over.status_code == 400
    assert "limit" in over.json()["error"]


async def test_delete_errors(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    h = bearer(alice.management_key)
    own = await api.request("DELETE", "/v1/manage/api-keys", json={"name": "p1-mgmt"}, headers=h)
    assert own.status_code == 400
    assert "used for this request" in own.json()["error"]
    missing = await api.request("DELETE", "/v1/manage/api-keys", json={"name": "nope"}, headers=h)
    assert missing.status_code == 404
    bad = await api.request("DELETE", "/v1/manage/api-keys", json={}, headers=h)
    assert bad.status_code == 400
    assert "name" in bad.json()["error"]


async def test_deleted_key_is_refused_at_once(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    second = await api.post(
        "/v1/manage/api-keys",
        json={"name": "second", "is_management_key": True},
        headers=bearer(alice.management_key),
    )
    second_key = second.json()["api_key"]
    assert (await api.get("/v1/manage/api-keys", headers=bearer(second_key))).status_code == 200
    await api.request(
        "DELETE",
        "/v1/manage/api-keys",
        json={"name": "second"},
        headers=bearer(alice.management_key),
    )
    assert (await api.get("/v1/manage/api-keys", headers=bearer(second_key))).status_code == 401


async def test_tenant_isolation_of_keys(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    bob = await world.member("bob", "p2")
    listed = await api.get("/v1/manage/api-keys", headers=bearer(bob.management_key))
    assert [k["name"] for k in listed.json()["api_keys"]] == ["p2-mgmt", "p2-inf"]
    # Bob cannot delete Alice's key, even knowing its name: it is not his.
    response = await api.request(
        "DELETE", "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=bearer(bob.management_key)
    )
    assert response.status_code == 404
    listed = await api.get("/v1/manage/api-keys", headers=bearer(alice.management_key))
    assert "p1-inf" in [k["name"] for k in listed.json()["api_keys"]]
    # Names are unique per user, not globally.
    same_name = await api.post(
        "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=bearer(bob.management_key)
    )
    assert same_name.status_code == 201


async def test_no_key_in_plaintext_in_the_database(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    created = await api.post(
        "/v1/manage/api-keys", json={"name": "secret"}, headers=bearer(alice.management_key)
    )
    secrets = [created.json()["api_key"], alice.management_key, alice.inference_key]
    dump: list[str] = []
    async with world.db.read() as conn:
        for table in ("api_keys", "users", "projects", "ledger", "project_configs", "memberships"):
            rows = await conn.exec_driver_sql(f"SELECT * FROM {table}")
            dump.extend(str(value) for row in rows for value in row)
    text = "\n".join(dump)
    for secret in secrets:
        assert secret not in text
        assert secret[len(KEY_PREFIX) :] not in text


async def test_key_limit_holds_under_concurrent_creates(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")  # 2 keys; the app's limit is 5
    h = bearer(alice.management_key)
    responses = await asyncio.gather(
        *(api.post("/v1/manage/api-keys", json={"name": f"k{i}"}, headers=h) for i in range(8))
    )
    assert sorted(r.status_code for r in responses) == [201] * 3 + [400] * 5
    listed = await api.get("/v1/manage/api-keys", headers=h)
    assert len(listed.json()["api_keys"]) == 5


async def test_a_member_cannot_shed_an_admins_limits_by_deleting_the_key(
    world: World, api: httpx.AsyncClient
) -> None:
    admin = await world.member("alice", "p1")
    bob = await world.member("bob", "p1", role="member")
    h_admin, h_bob = bearer(admin.management_key), bearer(bob.management_key)
    target = {"scope": "key", "user_id": bob.user_id, "key_name": "p1-inf"}
    budget = await api.post(
        "/v1/manage/budgets", json={**target, "period": "daily", "limit": 1}, headers=h_admin
    )
    limit = await api.post(
        "/v1/manage/rate-limits", json={**target, "requests_per_minute": 2}, headers=h_admin
    )
    assert budget.status_code == limit.status_code == 201, (budget.text, limit.text)

    async def delete_bobs_key() -> httpx.Response:
        return await api.request(
            "DELETE", "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=h_bob
        )

    refused = await delete_bobs_key()
    assert refused.status_code == 400
    message = refused.json()["error"]
    assert "p1-inf" in message and "a budget and a rate limit" in message
    # Nothing changed: the key works and both limits are still on it.
    assert (await api.get("/v1/models", headers=bearer(bob.inference_key))).status_code == 200
    budgets = (await api.get("/v1/manage/budgets", headers=h_admin)).json()["budgets"]
    assert [b["key_name"] for b in budgets] == ["p1-inf"]
    limits = (await api.get("/v1/manage/rate-limits", headers=h_admin)).json()["rate_limits"]
    assert [r["key_name"] for r in limits] == ["p1-inf"]

    # The admin lifts the budget: the rate limit still holds the key.
    removed = await api.request(
        "DELETE", "/v1/manage/budgets", json={"id": budget.json()["id"]}, headers=h_admin
    )
    assert removed.status_code == 200
    still = await delete_bobs_key()
    assert still.status_code == 400 and "a rate limit" in still.json()["error"]
    removed = await api.request(
        "DELETE", "/v1/manage/rate-limits", json={"id": limit.json()["id"]}, headers=h_admin
    )
    assert removed.status_code == 200
    deleted = await delete_bobs_key()
    assert deleted.status_code == 200, deleted.text


async def test_an_admin_deletes_a_limited_key_of_their_own_with_its_limits(
    world: World, api: httpx.AsyncClient
) -> None:
    admin = await world.member("alice", "p1")
    h = bearer(admin.management_key)
    target = {"scope": "key", "user_id": admin.user_id, "key_name": "p1-inf"}
    budget = await api.post(
        "/v1/manage/budgets", json={**target, "period": "daily", "limit": 1}, headers=h
    )
    assert budget.status_code == 201, budget.text
    deleted = await api.request("DELETE", "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=h)
    assert deleted.status_code == 200, deleted.text
    assert (await api.get("/v1/manage/budgets", headers=h)).json()["budgets"] == []
