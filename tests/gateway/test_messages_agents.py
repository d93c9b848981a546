"""/v1/messages as coding agents use it: Claude Code's beta fields through a real gateway in
front of real mock providers (what is forwarded, the translation in the metadata, the request
log and the log line), `count_tokens` (free), `GET`/`HEAD /`, and unknown paths under /v1."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import openai
import orjson
import pytest
from sqlalchemy import text

from tests.gateway.conftest import GatewayEnv
from tests.observe.test_logs import lines_for
from tests.support.mock_server import fetch_mock_stats
from tests.support.money import seen_balance

EPHEMERAL = {"type": "ephemeral"}
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,"
    "context-management-2025-06-27,effort-2025-11-24",
    "x-app": "cli",
}


def claude_code_body(**extra: Any) -> dict[str, Any]:
    """The shape of Claude Code's first request (2.1.x), small."""
    return {
        "model": "chat-b",
        "max_tokens": 200,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": EPHEMERAL},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "say hi"}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\ncwd: /w"}]},
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Run a command",
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            },
            {
                "name": "Placeholder",
                "description": "never call this tool",
                "input_schema": {"type": "object", "properties": {}},
                "defer_loading": True,
            },
        ],
        "tool_choice": {"type": "none"},
        "metadata": {"user_id": '{"device_id":"d1","session_id":"s1"}'},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        **extra,
    }


EXPECTED_TRANSLATION = {
    "translated": [
        "messages[].role=system → system prompt",
        "output_config.effort → reasoning_effort",
    ],
    "dropped": ["context_management", "cache_control", "thinking.display", "tools[].defer_loading"],
}


async def post(gw: GatewayEnv, path: str, body: object, **headers: str) -> httpx.Response:
    sent = {"x-api-key": gw.member.inference_key, **CLAUDE_CODE_HEADERS, **headers}
    async with httpx.AsyncClient(base_url=gw.root, timeout=30) as client:
        return await client.post(path, content=orjson.dumps(body), headers=sent)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="tollway.request")
    return caplog


async def test_claude_codes_request_is_served_and_says_what_was_translated(
    gw: GatewayEnv, captured: pytest.LogCaptureFixture
) -> None:
    response = await post(gw, "/v1/messages?beta=true", claude_code_body(include_metadata=True))
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["type"] == "message" and message["content"][0]["type"] == "text"
    assert message["metadata"]["translation"] == EXPECTED_TRANSLATION
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"][0] == {
        "role": "system",
        "content": "x-anthropic-billing-header: cc_version=2.1\n\nYou are Claude Code."
        "\n\n# Environment\ncwd: /w",
    }
    assert [m["role"] for m in forwarded["messages"]] == ["system", "user"]
    assert forwarded["reasoning_effort"] == "medium"
    assert forwarded["user"] == '{"device_id":"d1","session_id":"s1"}'
    for name in ("thinking", "context_management", "output_config", "defer_loading"):
        assert name.encode() not in orjson.dumps(forwarded)
    request_id = response.headers["x-request-id"]
    line = await lines_for(captured, request_id)
    assert line["translated"] == ", ".join(EXPECTED_TRANSLATION["translated"])
    assert line["dropped"] == ", ".join(EXPECTED_TRANSLATION["dropped"])
    detail = await logged_detail(gw, request_id)
    assert detail["translation"] == EXPECTED_TRANSLATION
    assert detail["endpoint"] == "messages"
    assert detail["routing"]["preference"]  # the routing is still there, beside it


async def test_a_streamed_answer_carries_the_translation_in_its_message_delta(
    gw: GatewayEnv,
) -> None:
    body = claude_code_body(stream=True, include_metadata=True)
    response = await post(gw, "/v1/messages?beta=true", body)
    assert response.status_code == 200, response.text
    events = [
        orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2]["metadata"]["translation"] == EXPECTED_TRANSLATION


async def test_without_include_metadata_the_answer_has_no_metadata(gw: GatewayEnv) -> None:
    response = await post(gw, "/v1/messages", claude_code_body())
    assert response.status_code == 200, response.text
    assert "metadata" not in response.json()


async def test_count_tokens_is_the_gateways_count_and_costs_nothing(gw_both: GatewayEnv) -> None:
    gw = gw_both
    body = claude_code_body()
    root = gw.root
    before = await seen_balance(root, gw.member.management_key)
    counting = {k: v for k, v in body.items() if k != "max_tokens"}
    counted = await post(gw, "/v1/messages/count_tokens?beta=true", counting)
    assert counted.status_code == 200, counted.text
    assert counted.json() == {"input_tokens": counted.json()["input_tokens"]}
    assert await seen_balance(root, gw.member.management_key) == before
    assert await rows(gw, "request_log") == 0 and await rows(gw, "usage_events") == 0
    # The same prompt, served: the upstream's count of it is the same (one counting rule).
    served = await post(gw, "/v1/messages", body)
    assert served.status_code == 200, served.text
    assert served.json()["usage"]["input_tokens"] == counted.json()["input_tokens"]
    assert await seen_balance(root, gw.member.management_key) < before


@pytest.mark.parametrize(
    ("body", "headers", "status", "kind"),
    [
        ({"model": "chat-b", "messages": [{"role": "user", "content": "hi"}]},
         {"x-api-key": "tw-not-a-key"}, 401, "authentication_error"),
        ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, {}, 404,
         "not_found_error"),
        ({"model": "tollway-embed", "messages": [{"role": "user", "content": "hi"}]}, {}, 404,
         "not_found_error"),
        ({"model": "chat-b"}, {}, 400, "invalid_request_error"),
        ({"model": "chat-b", "messages": [], "tools": 5}, {}, 400, "invalid_request_error"),
    ],
)  # fmt: skip
async def test_count_tokens_refusals_in_anthropics_shape(
    gw: GatewayEnv, body: dict[str, Any], headers: dict[str, str], status: int, kind: str
) -> None:
    response = await post(gw, "/v1/messages/count_tokens", body, **headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert await rows(gw, "request_log") == 0


async def test_the_root_answers_get_and_head(gw: GatewayEnv) -> None:
    async with httpx.AsyncClient(base_url=gw.root) as client:
        got, head = await client.get("/"), await client.head("/")
    assert got.status_code == 200 and got.json()["api"] == "/v1"
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_unknown_paths_under_v1_are_a_404_in_the_openai_shape(
    gw: GatewayEnv, method: str
) -> None:
    async with httpx.AsyncClient(base_url=gw.root) as client:
        response = await client.request(method, "/v1/assistants/asst_1", json={})
        long = await client.request(method, "/v1/" + "x" * 5000)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": f"not found: {method} /v1/assistants/asst_1",
            "type": "not_found_error",
            "code": "not_found",
            "param": None,
        }
    }
    assert long.status_code == 404 and len(long.text) < 600


async def test_the_openai_sdk_names_an_unknown_path(gw: GatewayEnv) -> None:
    async with gw.client() as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.batches.list()
    assert "not found: GET /v1/batches" in str(caught.value)


async def test_unknown_paths_under_v1_messages_are_a_404_in_anthropics_shape(
    gw: GatewayEnv,
) -> None:
    response = await post(gw, "/v1/messages/batches", {})
    assert response.status_code == 404
    assert response.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "not found: POST /v1/messages/batches"},
    }


async def rows(gw: GatewayEnv, table: str) -> int:
    async with gw.world.db.read() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def logged_detail(gw: GatewayEnv, request_id: str) -> dict[str, Any]:
    """The request log's detail view (written off the request path: waited for, briefly)."""
    async with httpx.AsyncClient(base_url=gw.base_url, headers=gw.mgmt_headers()) as client:
        for _ in range(250):
            response = await client.get(f"/manage/requests/{request_id}")
            if response.status_code == 200:
                return dict(response.json())
            await asyncio.sleep(0.02)
    raise AssertionError(f"{request_id} not in the request log")
