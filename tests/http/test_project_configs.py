from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.http.conftest import bearer
from tests.support.world import World
from tollway.audit.actor import CLI

DEFAULT_INFERENCE: dict[str, Any] = {
    "allowed_providers": None,
    "blacklisted_models": [],
    "eu_native": False,
    "include_metadata": False,
    "preference": "balanced",
    "allow_quantization": True,
    "allow_zero_data_retention": False,
    "enable_model_fallback": True,
}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.mark.parametrize("path", ["/v1/project-configs", "/api/v1/project-configs"])
async def test_get_default_configuration(world: World, api: httpx.AsyncClient, path: str) -> None:
    alice = await world.member("alice", "p1")
    response = await api.get(path, headers=bearer(alice.management_key))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "_id",
        "project_id",
        "active",
        "allow_overwrite",
        "inference_config",
        "schema_version",
        "created_at",
        "updated_at",
    }
    assert body["project_id"] == alice.project_id
    assert body["active"] is True
    assert body["allow_overwrite"] is False
    assert body["inference_config"] == DEFAULT_INFERENCE
    assert body["schema_version"] == "v1"
    assert ISO_MS.match(body["created_at"]) and ISO_MS.match(body["updated_at"])


async def test_put_partial_update_keeps_other_fields(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    h = bearer(alice.management_key)
    response = await api.put(
        "/v1/project-configs",
        json={"active": True, "inference_config": {"eu_native": True, "preference": "cost"}},
        headers=h,
    )
    assert response.status_code == 200
    assert response.json() == {"success": True}
    body = (await api.get("/v1/project-configs", headers=h)).json()
    assert body["inference_config"] == DEFAULT_INFERENCE | {"eu_native": True, "preference": "cost"}
    # Server-owned timestamps and ids are accepted and ignored; GET → PUT round-trips.
    echoed = dict(body)
    echoed["created_at"] = "2000-01-01T00:00:00.000Z"
    echoed["updated_at"] = 946684800  # any type: server-owned, ignored
    assert (await api.put("/api/v1/project-configs", json=echoed, headers=h)).status_code == 200
    again = (await api.get("/v1/project-configs", headers=h)).json()
    assert again["created_at"] == body["created_at"]
    assert again["_id"] == body["_id"]
    # allowed_providers may be reset to null (= all).
    await api.put(
        "/v1/project-configs",
        json={"active": True, "inference_config": {"allowed_providers": ["demo-eu"]}},
        headers=h,
    )
    await api.put(
        "/v1/project-configs",
        json={"active": False, "inference_config": {"allowed_providers": None}},
        headers=h,
    )
    final = (await api.get("/v1/project-configs", headers=h)).json()
    assert final["inference_config"]["allowed_providers"] is None
    assert final["active"] is False


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "active"),
        ({"active": "yes"}, "active"),
        ({"active": True, "inference_config": {"preference": "fastest"}}, "preference"),
        ({"active": True, "inference_config": {"unknown_field": 1}}, "unknown_field"),
        ({"active": True, "inference_config": {"eu_native": 1}}, "eu_native"),
        ({"active": True, "allow_overwrite": "no"}, "allow_overwrite"),
        ({"active": True, "inference_config": {"allowed_providers": ["nope", "demo-eu"]}}, "nope"),
        ({"active": True, "inference_config": {"blacklisted_models": ["gpt-x"]}}, "gpt-x"),
        (
            {
                "active": True,
                "inference_config": {"allowed_providers": ["demo-cheap"], "eu_native": True},
            },
            "no routable model",
        ),
    ],
)
async def test_put_invalid_is_400_naming_the_value(
    world: World, api: httpx.AsyncClient, body: dict[str, Any], needle: str
) -> None:
    alice = await world.member("alice", "p1")
    h = bearer(alice.management_key)
    before = (await api.get("/v1/project-configs", headers=h)).json()
    response = await api.put("/v1/project-configs", json=body, headers=h)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert (await api.get("/v1/project-configs", headers=h)).json() == before  # nothing written


async def test_member_rules(world: World, api: httpx.AsyncClient) -> None:
    admin = await world.member("alice", "p1", role="admin")
    member = await world.member("bob", "p1", role="member")
    change = {"active": True, "inference_config": {"eu_native": True}}
    # allow_overwrite false: a member may not change the configuration.
    denied = await api.put(
        "/v1/project-configs", json=change, headers=bearer(member.management_key)
    )
    assert denied.status_code == 403
    assert "admin" in denied.json()["error"]
    # A member can read it.
    assert (
        await api.get("/v1/project-configs", headers=bearer(member.management_key))
    ).status_code == 200
    # The admin opens it up; now the member may change the rest, but not allow_overwrite.
    opened = await api.put(
        "/v1/project-configs",
        json={"active": True, "allow_overwrite": True},
        headers=bearer(admin.management_key),
    )
    assert opened.status_code == 200
    allowed = await api.put(
        "/v1/project-configs", json=change, headers=bearer(member.management_key)
    )
    assert allowed.status_code == 200
    closing = await api.put(
        "/v1/project-configs",
        json={"active": True, "allow_overwrite": False},
        headers=bearer(member.management_key),
    )
    assert closing.status_code == 403
    assert "allow_overwrite" in closing.json()["error"]
    same = await api.put(
        "/v1/project-configs",
        json={"active": True, "allow_overwrite": True},
        headers=bearer(member.management_key),
    )
    assert same.status_code == 200  # restating the current value changes nothing


async def test_projects_never_see_each_other(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    bob = await world.member("bob", "p2")
    await api.put(
        "/v1/project-configs",
        json={"active": True, "inference_config": {"eu_native": True}},
        headers=bearer(alice.management_key),
    )
    bobs = (await api.get("/v1/project-configs", headers=bearer(bob.management_key))).json()
    assert bobs["project_id"] == bob.project_id
    assert bobs["inference_config"]["eu_native"] is False


async def test_missing_configuration_is_404(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    async with world.db.write() as conn:
        await conn.exec_driver_sql(
            f"DELETE FROM project_configs WHERE project_id = '{alice.project_id}'"
        )
    for method in ("GET", "PUT"):
        response = await api.request(
            method,
            "/v1/project-configs",
            json={"active": True},
            headers=bearer(alice.management_key),
        )
        assert response.status_code == 404
        assert response.json() == {"error": "project configuration not found"}


async def test_balance_is_exact(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1", credits_eur="0.999874")
    for path in ("/v1/user/balance", "/api/v1/user/balance"):
        response = await api.get(path, headers=bearer(alice.management_key))
        assert response.status_code == 200
        assert response.text.replace(" ", "") == '{"current_balance":0.999874,"currency":"EUR"}'
    await world.accounts.add_credits(actor=CLI, user="alice", amount_eur="1233.560126")
    body = (await api.get("/v1/user/balance", headers=bearer(alice.management_key))).json()
    assert body == {"current_balance": 1234.56, "currency": "EUR"}


async def test_health_and_docs_are_public(api: httpx.AsyncClient) -> None:
    assert (await api.get("/health")).json() == {"status": "ok"}
    spec = (await api.get("/openapi.json")).json()
    for path in (
        "/v1/manage/api-keys",
        "/v1/project-configs",
        "/v1/user/balance",
        "/v1/chat/completions",
        "/v1/models",
    ):
        assert path in spec["paths"]
    assert (await api.get("/docs")).status_code == 200


async def test_unknown_path_is_404_json(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/nothing-here")
    assert response.status_code == 404
    assert "error" in response.json()


async def test_unexpected_fault_is_500_without_stack_trace(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")
    async with world.db.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE users RENAME COLUMN balance_credits TO gone")
    response = await api.get("/v1/user/balance", headers=bearer(alice.management_key))
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert "Traceback" not in response.text
