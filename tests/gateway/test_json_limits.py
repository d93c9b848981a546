"""What a request body may cost to parse: nesting depth and the number of values are bounded
before anything is parsed, on every inference endpoint (OpenAI, Anthropic and Responses
shapes), against a real gateway in front of a real mock provider, on both backends. A body
within the limits is forwarded (the forwarding serializer has its own recursion limit); one
beyond them is refused with the limit named, and nothing is charged."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.gateway.conftest import GatewayEnv
from tests.support.money import seen_balance
from tollway.settings import Settings

DEPTH = Settings().max_json_depth
VALUES = Settings().max_json_values


def nested_schema(levels: int) -> bytes:
    """A JSON Schema `levels` JSON objects deep (an array of arrays of … strings)."""
    inner = b'{"type": "string"}'
    for _ in range(levels - 1):
        inner = b'{"type": "array", "items": ' + inner + b"}"
    return inner


def chat_body(schema: bytes) -> bytes:
    return (
        b'{"model": "chat-a", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"type": "function", "function": {"name": "f", "parameters": '
        + schema
        + b"}}]}"
    )


def messages_body(schema: bytes) -> bytes:
    return (
        b'{"model": "chat-a", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],'
        b' "tools": [{"name": "f", "input_schema": ' + schema + b"}]}"
    )


def responses_body(schema: bytes) -> bytes:
    return (
        b'{"model": "chat-a", "max_output_tokens": 5, "input": "hi",'
        b' "tools": [{"type": "function", "name": "f", "parameters": ' + schema + b"}]}"
    )


# (path, body builder, levels above the schema, the path the refusal names)
ENDPOINTS = [
    ("/v1/chat/completions", chat_body, 4, "tools.0.function.parameters.items.items"),
    ("/v1/messages", messages_body, 3, "tools.0.input_schema.items.items"),
    ("/v1/responses", responses_body, 3, "tools.0.parameters.items.items"),
]


def _headers(gw: GatewayEnv, path: str) -> dict[str, str]:
    if path == "/v1/messages":
        return {"x-api-key": gw.member.inference_key, "content-type": "application/json"}
    return {
        "authorization": f"Bearer {gw.member.inference_key}",
        "content-type": "application/json",
    }


async def _post(gw: GatewayEnv, path: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{gw.root}{path}", content=body, headers=_headers(gw, path))


def _error(path: str, response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    if path == "/v1/messages":
        assert response.json()["type"] == "error"
    return error


@pytest.mark.parametrize(("path", "build", "above", "named"), ENDPOINTS)
async def test_tool_schema_nested_300_deep_is_400_naming_the_field(
    gw_both: GatewayEnv, path: str, build: Any, above: int, named: str
) -> None:
    before = await seen_balance(gw_both.root, gw_both.member.management_key)
    response = await _post(gw_both, path, build(nested_schema(300)))
    assert response.status_code == 400, response.text
    error = _error(path, response)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(named), error
    assert f"nested deeper than {DEPTH} levels" in error["message"]
    assert len(response.content) < 1500  # the path is cut, not echoed 300 levels deep
    assert await seen_balance(gw_both.root, gw_both.member.management_key) == before


@pytest.mark.parametrize(("path", "build", "above", "named"), ENDPOINTS)
async def test_tool_schema_at_the_depth_limit_is_forwarded(
    gw_both: GatewayEnv, path: str, build: Any, above: int, named: str
) -> None:
    body = build(nested_schema(DEPTH - above))
    response = await _post(gw_both, path, body)
    assert response.status_code == 200, response.text
    deeper = await _post(gw_both, path, build(nested_schema(DEPTH - above + 1)))
    assert deeper.status_code == 400, deeper.text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"])
async def test_a_body_of_too_many_values_is_413_naming_the_limit(
    gw_both: GatewayEnv, path: str
) -> None:
    before = await seen_balance(gw_both.root, gw_both.member.management_key)
    body = b'{"model": "chat-a", "messages": [' + b"{}, " * VALUES + b"{}]}"
    response = await _post(gw_both, path, body)
    assert response.status_code == 413, response.text
    error = _error(path, response)
    assert f"more than {VALUES} JSON values" in error["message"]
    assert await seen_balance(gw_both.root, gw_both.member.management_key) == before


async def test_many_separators_inside_strings_are_not_values(gw_both: GatewayEnv) -> None:
    """Commas, colons and brackets in text are not counted: a long CSV is a chat message (and
    goes on to the gateway's checks: this one is too long for the model's context)."""
    text = "a,b:c[{," * (VALUES // 2)
    body = orjson.dumps(
        {"model": "chat-a", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
    )
    response = await _post(gw_both, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "no_candidate"
    assert "context_size" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
async def test_an_unknown_model_is_echoed_cut_to_64_characters(
    gw_both: GatewayEnv, path: str
) -> None:
    model = "m" * 1024
    messages = [{"role": "user", "content": "hi"}]
    body = orjson.dumps(
        {
            "/v1/chat/completions": {"model": model, "messages": messages},
            "/v1/messages": {"model": model, "max_tokens": 5, "messages": messages},
            "/v1/responses": {"model": model, "input": "hi"},
        }[path]
    )
    response = await _post(gw_both, path, body)
    assert response.status_code == 404, response.text
    message = _error(path, response)["message"]
    assert message == f"model '{'m' * 64}… (960 more characters)' not found"
