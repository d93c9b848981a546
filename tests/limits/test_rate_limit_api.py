"""/v1/manage/rate-limits on SQLite and PostgreSQL: shapes, validation, who may do what."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.limits.conftest import bearer
from tests.support.world import World

PATH = "/v1/manage/rate-limits"


async def test_create_list_delete(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    bob = await world.member("bob", "p1", role="member")
    h = bearer(alice.management_key)
    project = await api.post(PATH, json={"scope": "project", "requests_per_minute": 60}, headers=h)
    assert project.status_code == 201, project.text
    body = project.json()
    assert body["scope"] == "project"
    assert body["requests_per_minute"] == 60
    assert body["tokens_per_minute"] is None
    assert body["user_id"] is None and body["key_name"] is None
    key = await api.post(
        PATH,
        json={
            "scope": "key",
            "requests_per_minute": 5,
            "tokens_per_minute": 1000,
            "user_id": bob.user_id,
            "key_name": "p1-inf",
        },
        headers=h,
    )
    assert key.status_code == 201, key.text
    assert key.json()["key_name"] == "p1-inf"
    assert key.json()["user_id"] == bob.user_id
    user = await api.post(
        PATH, json={"scope": "user", "tokens_per_minute": 10, "user_id": bob.user_id}, headers=h
    )
    each_key = await api.post(PATH, json={"scope": "each_key", "tokens_per_minute": 7}, headers=h)
    assert user.status_code == each_key.status_code == 201

    listed = await api.get(PATH, headers=h)
    assert listed.status_code == 200
    rows = listed.json()["rate_limits"]
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {r.json()["id"] for r in (project, key, user, each_key)}
    assert by_id[key.json()["id"]] == key.json()

    deleted = await api.request("DELETE", PATH, json={"id": body["id"]}, headers=h)
    assert deleted.status_code == 200
    assert deleted.json() == {"success": True, "deleted": body["id"]}
    again = await api.request("DELETE", PATH, json={"id": body["id"]}, headers=h)
    assert again.status_code == 404
    assert len((await api.get(PATH, headers=h)).json()["rate_limits"]) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scope": "project"}, "requests_per_minute"),
        ({"scope": "project", "requests_per_minute": 0}, "requests_per_minute"),
        ({"scope": "project", "tokens_per_minute": -5}, "tokens_per_minute"),
        ({"scope": "project", "requests_per_minute": True}, "requests_per_minute"),
        ({"scope": "project", "requests_per_minute": "10"}, "requests_per_minute"),
        ({"scope": "project", "requests_per_minute": 10**13}, "requests_per_minute"),
        ({"scope": "galaxy", "requests_per_minute": 1}, "scope"),
        ({"scope": "project", "requests_per_minute": 1, "rpm": 3}, "rpm"),
        ({"scope": "key", "requests_per_minute": 1}, "key_name"),
        ({"scope": "key", "requests_per_minute": 1, "key_name": "nope"}, "key_name"),
        ({"scope": "key", "requests_per_minute": 1, "key_name": "k" * 65}, "key_name"),
        ({"scope": "user", "requests_per_minute": 1}, "user_id"),
        ({"scope": "user", "requests_per_minute": 1, "user_id": "nobody"}, "user_id"),
        ({"scope": "project", "requests_per_minute": 1, "user_id": "x"}, "user_id"),
        ({"scope": "each_user", "requests_per_minute": 1, "key_name": "x"}, "key_name"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    world: World, api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    alice = await world.member("alice", "p1")
    response = await api.post(PATH, json=body, headers=bearer(alice.management_key))
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    assert len(response.text) < 1000
    assert (await api.get(PATH, headers=bearer(alice.management_key))).json() == {"rate_limits": []}


@pytest.mark.parametrize("body", [{"id": 5}, {"id": ""}, {"id": "x" * 65}, {"id": "a", "b": 1}])
async def test_bad_delete_is_a_400(
    world: World, api: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    alice = await world.member("alice", "p1")
    response = await api.request("DELETE", PATH, json=body, headers=bearer(alice.management_key))
    assert response.status_code == 400, response.text
    assert ("b" if "b" in body else "id") in response.json()["error"]


async def test_only_project_admins_with_management_keys(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")
    bob = await world.member("bob", "p1", role="member")
    body = {"scope": "project", "requests_per_minute": 1}
    for method, json in (("GET", None), ("POST", body), ("DELETE", {"id": "0" * 24})):
        as_member = await api.request(method, PATH, json=json, headers=bearer(bob.management_key))
        assert as_member.status_code == 403, (method, as_member.text)
        inference = await api.request(method, PATH, json=json, headers=bearer(alice.inference_key))
        assert inference.status_code in (401, 403), (method, inference.text)
        assert (await api.request(method, PATH, json=json)).status_code == 401


async def test_another_project_s_limits_are_invisible_and_untouchable(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")
    carol = await world.member("carol", "p2")
    created = await api.post(
        PATH,
        json={"scope": "project", "requests_per_minute": 1},
        headers=bearer(alice.management_key),
    )
    assert created.status_code == 201
    assert (await api.get(PATH, headers=bearer(carol.management_key))).json() == {"rate_limits": []}
    deleted = await api.request(
        "DELETE", PATH, json={"id": created.json()["id"]}, headers=bearer(carol.management_key)
    )
    assert deleted.status_code == 404
    # alice's key in p1 cannot be named from p2 either
    foreign = await api.post(
        PATH,
        json={
            "scope": "key",
            "requests_per_minute": 1,
            "user_id": alice.user_id,
            "key_name": "p1-inf",
        },
        headers=bearer(carol.management_key),
    )
    assert foreign.status_code == 400 and "key_name" in foreign.json()["error"]
    assert (
        len((await api.get(PATH, headers=bearer(alice.management_key))).json()["rate_limits"]) == 1
    )


async def test_deleting_a_key_deletes_its_rate_limits(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    h = bearer(alice.management_key)
    created = await api.post(
        PATH, json={"scope": "key", "requests_per_minute": 3, "key_name": "p1-inf"}, headers=h
    )
    assert created.status_code == 201
    deleted = await api.request("DELETE", "/v1/manage/api-keys", json={"name": "p1-inf"}, headers=h)
    assert deleted.status_code == 200, deleted.text
    assert (await api.get(PATH, headers=h)).json() == {"rate_limits": []}
