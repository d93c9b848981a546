"""Hostile and malformed input on every Management API body and query parameter, and on the
inference bodies: a 400 that names the field, never a 500, nothing written; error messages
bounded whatever the size of the input. Both backends (PostgreSQL cannot store a NUL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.http.conftest import bearer
from tests.support.asgi import asgi_client
from tests.support.world import Member, World
from tollway.app import create_app
from tollway.errors import MESSAGE_CHARS
from tollway.settings import Settings

SURROGATE = "\\ud800"  # as it appears in JSON text: a lone UTF-16 surrogate escape
NUL = "\\u0000"

# Every string field of every Management API body: (method, path, JSON text with a
# placeholder where the hostile string goes, the field the 400 must name).
STRING_FIELDS = [
    ("POST", "/v1/manage/api-keys", '{"name": "$"}', "name"),
    ("DELETE", "/v1/manage/api-keys", '{"name": "$"}', "name"),
    ("POST", "/v1/manage/budgets", '{"scope": "$", "period": "daily", "limit": 1}', "scope"),
    ("POST", "/v1/manage/budgets", '{"scope": "project", "period": "$", "limit": 1}', "period"),
    (
        "POST",
        "/v1/manage/budgets",
        '{"scope": "project", "period": "daily", "limit": "$"}',
        "limit",
    ),
    (
        "POST",
        "/v1/manage/budgets",
        '{"scope": "user", "period": "daily", "limit": 1, "user_id": "$"}',
        "user_id",
    ),
    (
        "POST",
        "/v1/manage/budgets",
        '{"scope": "key", "period": "daily", "limit": 1, "key_name": "$"}',
        "key_name",
    ),
    ("DELETE", "/v1/manage/budgets", '{"id": "$"}', "id"),
    (
        "PUT",
        "/v1/project-configs",
        '{"active": true, "inference_config": {"allowed_providers": ["$"]}}',
        "allowed_providers",
    ),
    (
        "PUT",
        "/v1/project-configs",
        '{"active": true, "inference_config": {"blacklisted_models": ["$"]}}',
        "blacklisted_models",
    ),
    ("PUT", "/v1/project-configs", '{"active": true, "schema_version": "$"}', "schema_version"),
]


Edge = tuple[World, httpx.AsyncClient]


@pytest.fixture
async def sqlite_world(tmp_path: Path) -> AsyncIterator[Edge]:
    """For what involves no storage: the edge alone, on SQLite."""
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    world = World(url)
    await world.migrate()
    try:
        async with asgi_client(create_app(Settings(database_url=url))) as client:
            yield world, client
    finally:
        await world.close()


async def _state(api: httpx.AsyncClient, member: Member) -> list[Any]:
    """What a write could have changed: keys, budgets, the configuration."""
    h = bearer(member.management_key)
    return [
        (await api.get("/v1/manage/api-keys", headers=h)).json(),
        (await api.get("/v1/manage/budgets", headers=h)).json(),
        (await api.get("/v1/project-configs", headers=h)).json(),
    ]


async def _send(api: httpx.AsyncClient, member: Member, method: str, path: str, text: str) -> Any:
    response = await api.request(
        method,
        path,
        content=text.encode(),
        headers=bearer(member.management_key) | {"content-type": "application/json"},
    )
    assert response.status_code == 400, (method, path, text, response.text)
    return response.json()["error"]


@pytest.mark.parametrize(("method", "path", "template", "field"), STRING_FIELDS)
async def test_lone_surrogate_or_nul_in_any_string_is_400_naming_the_field(
    world: World, api: httpx.AsyncClient, method: str, path: str, template: str, field: str
) -> None:
    alice = await world.member("alice", "p1")
    before = await _state(api, alice)
    for hostile in (SURROGATE, NUL, f"ok{NUL}", f"x{SURROGATE}y"):
        error = await _send(api, alice, method, path, template.replace("$", hostile))
        assert field in error, (hostile, error)
        assert "malformed" not in error
    assert await _state(api, alice) == before


async def test_lone_surrogate_in_a_field_name_is_400(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    error = await _send(
        api, alice, "POST", "/v1/manage/api-keys", '{"name": "a", "$": 1}'.replace("$", SURROGATE)
    )
    assert "not valid Unicode" in error


@pytest.mark.parametrize(
    "limit",
    [
        "1e300",
        '"1e400"',
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        str(2**63),
        "9223372036854.775808",  # 2^63 credits
        '"9223372036854775808"',
        "1000000000000.000001",
        "-1",
        '"1"',  # amounts are JSON numbers: a string is refused, not converted
        '"0.5"',
        "true",
    ],
)
async def test_budget_limit_out_of_range_is_400(
    world: World, api: httpx.AsyncClient, limit: str
) -> None:
    alice = await world.member("alice", "p1")
    text = '{"scope": "project", "period": "daily", "limit": $}'.replace("$", limit)
    error = await _send(api, alice, "POST", "/v1/manage/budgets", text)
    assert error.startswith("limit:"), error
    listed = await api.get("/v1/manage/budgets", headers=bearer(alice.management_key))
    assert listed.json() == {"budgets": []}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/manage/rate-limits", '{"scope": "project", "requests_per_minute": "5"}', "requests"),
        ("/v1/manage/rate-limits", '{"scope": "project", "tokens_per_minute": 5.0}', "tokens"),
        ("/v1/manage/rate-limits", '{"scope": "project", "tokens_per_minute": true}', "tokens"),
        ("/v1/manage/api-keys", '{"name": "k", "is_management_key": "true"}', "is_management"),
        ("/v1/manage/api-keys", '{"name": "k", "is_management_key": 1}', "is_management"),
    ],
)
async def test_numbers_and_booleans_are_strict(
    world: World, api: httpx.AsyncClient, path: str, body: str, field: str
) -> None:
    alice = await world.member("alice", "p1")
    before = await _state(api, alice)
    error = await _send(api, alice, "POST", path, body)
    assert field in error, error
    assert await _state(api, alice) == before


@pytest.mark.parametrize("value", ["1.5", "0", "false", "[]", '""'])
async def test_inference_config_must_be_an_object(
    world: World, api: httpx.AsyncClient, value: str
) -> None:
    """A fraction (read exactly, as a Decimal) once passed as an empty patch: 200."""
    alice = await world.member("alice", "p1")
    before = await _state(api, alice)
    text = '{"active": true, "inference_config": $}'.replace("$", value)
    error = await _send(api, alice, "PUT", "/v1/project-configs", text)
    assert error.startswith("inference_config:"), error
    assert await _state(api, alice) == before


NESTED = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    ("method", "path", "template", "field"),
    [
        ("POST", "/v1/manage/api-keys", '{"name": $}', "name"),
        ("DELETE", "/v1/manage/api-keys", '{"name": "k", "x": $}', "x"),
        ("POST", "/v1/manage/budgets", '{"scope": "project", "limit": $}', "limit"),
        ("DELETE", "/v1/manage/budgets", '{"id": $}', "id"),
        ("POST", "/v1/manage/rate-limits", '{"scope": $}', "scope"),
        ("PUT", "/v1/project-configs", '{"active": true, "created_at": $}', "created_at"),
        ("PUT", "/v1/project-configs", '{"inference_config": {"a": $}}', "inference_config.a"),
    ],
)
async def test_bodies_nested_1000_deep_are_400_naming_the_field(
    world: World, api: httpx.AsyncClient, method: str, path: str, template: str, field: str
) -> None:
    alice = await world.member("alice", "p1")
    before = await _state(api, alice)
    error = await _send(api, alice, method, path, template.replace("$", NESTED))
    assert error.startswith(f"{field}.0.0.0"), error
    assert "nested deeper than" in error
    assert len(error) < 400
    assert await _state(api, alice) == before


async def test_largest_budget_limit_is_stored_exactly(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    created = await api.post(
        "/v1/manage/budgets",
        content=b'{"scope": "project", "period": "daily", "limit": 1000000000000}',
        headers=bearer(alice.management_key) | {"content-type": "application/json"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["limit"] == 10**12


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("from=2025-01-01%00", "from"),
        ("until=%00", "until"),
        ("bucket=1d%00", "bucket"),
        ("group_by=%ED%BF%BF", "group_by"),  # a surrogate, encoded as UTF-8 would if it could
        ("from=%ED%A0%80", "from"),
        ("until=%FF", "until"),
    ],
)
async def test_hostile_query_parameters_are_400(
    world: World, api: httpx.AsyncClient, query: str, name: str
) -> None:
    alice = await world.member("alice", "p1")
    response = await api.get(f"/v1/manage/usage?{query}", headers=bearer(alice.management_key))
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{name}:"), response.text


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/manage/api-keys", {"name": "typo", "is_management": True}, "is_management"),
        ("DELETE", "/v1/manage/api-keys", {"name": "p1-inf", "force": True}, "force"),
        (
            "POST",
            "/v1/manage/budgets",
            {"scope": "project", "period": "daily", "limit": 1, "currency": "USD"},
            "currency",
        ),
        ("DELETE", "/v1/manage/budgets", {"id": "0" * 24, "scope": "project"}, "scope"),
        ("PUT", "/v1/project-configs", {"active": True, "alow_overwrite": True}, "alow_overwrite"),
    ],
)
async def test_unknown_fields_are_400_naming_them(
    world: World, api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    alice = await world.member("alice", "p1")
    before = await _state(api, alice)
    error = await _send(api, alice, method, path, orjson.dumps(body).decode())
    assert error == f"{field}: unknown field"
    assert await _state(api, alice) == before


async def test_key_name_with_a_trailing_newline_is_refused(
    world: World, api: httpx.AsyncClient
) -> None:
    alice = await world.member("alice", "p1")
    error = await _send(api, alice, "POST", "/v1/manage/api-keys", '{"name": "abc\\n"}')
    assert error.startswith("name:")


async def test_error_messages_are_bounded(world: World, api: httpx.AsyncClient) -> None:
    alice = await world.member("alice", "p1")
    h = bearer(alice.management_key) | {"content-type": "application/json"}
    cases = [
        # 20,000 unknown model ids: five named, the rest counted.
        (
            "PUT",
            "/v1/project-configs",
            {
                "active": True,
                "inference_config": {"blacklisted_models": [f"m{i}" for i in range(20_000)]},
            },
            "and 19995 more",
        ),
        # 50,000 values of the wrong type.
        (
            "PUT",
            "/v1/project-configs",
            {"active": True, "inference_config": {"blacklisted_models": list(range(50_000))}},
            "more",
        ),
        # A 600 KB name: the pattern says what is wrong without echoing it.
        ("DELETE", "/v1/manage/api-keys", {"name": "x" * 600_000}, "name:"),
        # A 600 KB unknown field name: cut.
        ("POST", "/v1/manage/api-keys", {"name": "ok", "y" * 600_000: 1}, "unknown field"),
        # A 600 KB key name in a budget.
        (
            "POST",
            "/v1/manage/budgets",
            {"scope": "key", "period": "daily", "limit": 1, "key_name": "k" * 600_000},
            "key_name",
        ),
    ]
    for method, path, body, needle in cases:
        response = await api.request(method, path, content=orjson.dumps(body), headers=h)
        assert response.status_code == 400, response.text[:200]
        assert len(response.content) < MESSAGE_CHARS + 200, (path, len(response.content))
        assert needle in response.json()["error"]
    long_date = await api.get(
        "/v1/manage/usage", params={"from": "2" * 30_000}, headers=bearer(alice.management_key)
    )
    assert long_date.status_code == 400
    assert len(long_date.content) < 300


async def test_lone_surrogate_in_inference_bodies_is_400_in_openai_shape(
    sqlite_world: Edge,
) -> None:
    world, api = sqlite_world
    alice = await world.member("alice", "p1", credits_eur="1")
    for path, text, param in [
        (
            "/v1/chat/completions",
            '{"model": "tollway-demo-chat", "messages": [{"role": "user", "content": "hi $"}]}',
            "messages.0.content",
        ),
        ("/v1/embeddings", '{"model": "m", "input": ["ok", "$"]}', "input.1"),
        ("/v1/chat/completions", '{"model": "$", "messages": []}', "model"),
    ]:
        response = await api.post(
            path,
            content=(text.replace("$", SURROGATE)).encode(),
            headers=bearer(alice.inference_key) | {"content-type": "application/json"},
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == param
        assert error["message"].startswith(f"{param}: not valid Unicode")
        assert error["type"] == "invalid_request_error"
    anthropic = await api.post(
        "/v1/messages",
        content=('{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "$"}]}')
        .replace("$", SURROGATE)
        .encode(),
        headers={"x-api-key": alice.inference_key, "content-type": "application/json"},
    )
    assert anthropic.status_code == 400
    assert anthropic.json() == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.0.content: not valid Unicode (a lone UTF-16 surrogate escape)",
        },
    }
    number = await api.post(
        "/v1/chat/completions",
        content=b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 1e400}',
        headers=bearer(alice.inference_key),
    )
    assert number.status_code == 400
    assert number.json()["error"]["param"] == "n"


async def test_unknown_paths_are_404_in_one_shape_per_api(
    sqlite_world: Edge,
) -> None:
    _, api = sqlite_world
    for path in ("/api/v1/nothing", "/nothing", "/v1"):
        response = await api.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": f"not found: GET {path}"}
    # Under /v1/ (the inference API's base, where SDKs send whatever they know): OpenAI's shape.
    for path in ("/v1/nothing", "/v1/manage/nothing", "/v1/modelsx", "/v1/chat/completions/x"):
        response = await api.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"not found: GET {path}"
    for path in ("/v1/chat/completions/x", "/v1/chat/completions/x/y", "/v1/embeddings/x"):
        response = await api.post(path)
        assert response.status_code == 404
        assert response.json() == {
            "error": {
                "message": f"not found: POST {path}",
                "type": "not_found_error",
                "code": "not_found",
                "param": None,
            }
        }


async def test_405_names_every_method_of_the_path(
    sqlite_world: Edge,
) -> None:
    _, api = sqlite_world
    for path, allowed in [
        ("/v1/manage/api-keys", "DELETE, GET, POST"),
        ("/v1/project-configs", "GET, PUT"),
        ("/v1/chat/completions", "POST"),
    ]:
        response = await api.request("PATCH", path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert "PATCH" in str(response.json()["error"])


async def test_openapi_document_is_truthful(sqlite_world: Edge) -> None:
    _, api = sqlite_world
    document = (await api.get("/openapi.json")).json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if "requestBody" in operation or operation.get("parameters"):
                assert "400" in operation["responses"], (method, path)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    create_key = schemas["CreateKeyBody"]
    assert create_key["additionalProperties"] is False
    assert create_key["properties"]["name"]["pattern"] == "^[A-Za-z0-9._-]{1,64}$"
    budget = schemas["CreateBudgetBody"]["properties"]
    assert budget["scope"]["enum"] == ["project", "each_user", "user", "each_key", "key"]
    usage = document["paths"]["/v1/manage/usage"]["get"]
    bucket = next(p for p in usage["parameters"] if p["name"] == "bucket")
    assert "1M" in str(bucket["schema"])
    assert document["paths"]["/v1/manage/api-keys"]["post"]["security"] == [{"apiKey": []}]
