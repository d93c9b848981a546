"""POST /v1/messages through the official `anthropic` SDK, against a real gateway in front of
real mock providers: text, system prompts, stop sequences, max_tokens, tools, streaming,
errors, charges and fallback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import MessageParam, ToolParam
from sqlalchemy import text

from tests.billing.conftest import assert_invariant
from tests.gateway.conftest import GatewayEnv
from tests.gateway.test_streaming import slow_stream_gateway  # noqa: F401 (fixture)
from tests.support.mock_server import fetch_mock_stats, wait_for_mock_stats
from tests.support.money import open_request_holds, seen_balance
from tests.support.world import World
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS, words_for
from tollway.providers.tokens import count_tokens

HELLO: list[MessageParam] = [{"role": "user", "content": "hello there"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
}
CLOCK: ToolParam = {
    "name": "get_time",
    "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}},
}
CHAT_B_IN, CHAT_B_OUT = Decimal("0.05"), Decimal("0.15")  # chat-b @ eu-fast, credits/token


@asynccontextmanager
async def sdk(gw: GatewayEnv, key: str | None = None) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gw.root, api_key=key or gw.member.inference_key, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def claude(gw: GatewayEnv) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with sdk(gw) as client:
        yield client


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def charge(prompt: int, completion: int) -> int:
    cost = CHAT_B_IN * prompt + CHAT_B_OUT * completion
    return int(cost.to_integral_value(rounding="ROUND_CEILING"))


async def test_message_with_a_system_prompt(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    message = await claude.messages.create(
        model="chat-b",
        max_tokens=100,
        system="you are terse",
        messages=HELLO,
        extra_headers={"anthropic-version": "2023-06-01"},
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == "chat-b"
    assert text_of(message) == " ".join(words_for("hello there", DEFAULT_REPLY_TOKENS))
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    # 3 + 2 words of the user message, 3 + 3 of the system prompt (the mock's counting rule).
    assert message.usage.input_tokens == 11
    assert message.usage.output_tokens == DEFAULT_REPLY_TOKENS
    assert message.model_extra is not None
    assert message.model_extra["provider"] == "eu-fast"
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"][0] == {"role": "system", "content": "you are terse"}
    assert forwarded["max_tokens"] == 100


async def test_system_prompt_as_text_blocks_with_cache_control(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    message = await claude.messages.create(
        model="chat-b",
        max_tokens=50,
        system=[
            {"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "be kind"},
        ],
        messages=HELLO,
    )
    assert message.stop_reason == "end_turn"
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"][0] == {"role": "system", "content": "be brief\n\nbe kind"}
    assert "cache_control" not in orjson.dumps(forwarded).decode()


async def test_stop_sequence_and_max_tokens_stop_reasons(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    words = words_for("hello there", DEFAULT_REPLY_TOKENS)
    stopped = await claude.messages.create(
        model="chat-b", max_tokens=100, messages=HELLO, stop_sequences=["nothing", words[3]]
    )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == words[3]
    assert text_of(stopped) == " ".join(words[:3])
    assert stopped.usage.output_tokens == 3

    cut = await claude.messages.create(model="chat-b", max_tokens=4, messages=HELLO)
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 4
    assert text_of(cut) == " ".join(words[:4])


async def test_streaming_matches_the_whole_message(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    whole = await claude.messages.create(model="chat-b", max_tokens=100, messages=HELLO)
    pieces: list[str] = []
    async with claude.messages.stream(model="chat-b", max_tokens=100, messages=HELLO) as stream:
        async for piece in stream.text_stream:
            pieces.append(piece)
        final = await stream.get_final_message()
    assert len(pieces) == DEFAULT_REPLY_TOKENS
    assert "".join(pieces) == text_of(whole)
    assert text_of(final) == text_of(whole)
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens


async def test_stream_event_sequence(gw: GatewayEnv, claude: anthropic.AsyncAnthropic) -> None:
    body = {
        "model": "chat-b",
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    names: list[str] = []
    payloads: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST",
            f"{gw.root}/v1/messages",
            json=body,
            headers={"x-api-key": gw.member.inference_key, "anthropic-version": "2023-06-01"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line[7:])
            elif line.startswith("data: "):
                payloads.append(orjson.loads(line[6:]))
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [p["type"] for p in payloads] == names
    assert payloads[2]["content_block"] == {"type": "text", "text": ""}
    assert payloads[3]["delta"]["type"] == "text_delta"
    assert payloads[7]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert payloads[7]["usage"] == {
        "input_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    }


async def test_tool_use_round_trip(gw: GatewayEnv, claude: anthropic.AsyncAnthropic) -> None:
    question: list[MessageParam] = [{"role": "user", "content": "weather in Lyon?"}]
    call = await claude.messages.create(
        model="chat-b", max_tokens=200, tools=[WEATHER], messages=question
    )
    assert call.stop_reason == "tool_use"
    [block] = call.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.id.startswith("call_")
    assert isinstance(block.input, dict)
    assert isinstance(block.input["city"], str)
    assert isinstance(block.input["days"], int)
    # The mock's rule: the arguments' whitespace-separated words ({"city": "x", "days": 5}).
    assert call.usage.output_tokens == count_tokens(json.dumps(block.input)) == 4
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "The weather in a city",
            },
        }
    ]

    answer = await claude.messages.create(
        model="chat-b",
        max_tokens=200,
        tools=[WEATHER],
        messages=[
            *question,
            {"role": "assistant", "content": call.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block.id, "content": "sunny, 21 C"}
                ],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert text_of(answer) == " ".join(words_for("sunny, 21 C", DEFAULT_REPLY_TOKENS))
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"][1]["tool_calls"][0]["id"] == block.id
    assert forwarded["messages"][2] == {
        "role": "tool",
        "tool_call_id": block.id,
        "content": "sunny, 21 C",
    }


async def test_tool_choice_tool_any_and_none(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    named = await claude.messages.create(
        model="chat-b",
        max_tokens=200,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=HELLO,
    )
    assert [(b.type, getattr(b, "name", None)) for b in named.content] == [("tool_use", "get_time")]
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}

    none = await claude.messages.create(
        model="chat-b", max_tokens=200, tools=[WEATHER], tool_choice={"type": "none"},
        messages=HELLO,
    )  # fmt: skip
    assert none.stop_reason == "end_turn"
    assert [b.type for b in none.content] == ["text"]

    required = await claude.messages.create(
        model="chat-b",
        max_tokens=200,
        tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=HELLO,
    )
    assert required.stop_reason == "tool_use"
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["tool_choice"] == "required"
    assert forwarded["parallel_tool_calls"] is False


async def test_streamed_tool_use_matches_the_whole_answer(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    whole = await claude.messages.create(
        model="chat-b", max_tokens=200, tools=[WEATHER], messages=HELLO
    )
    kinds: list[str] = []
    async with claude.messages.stream(
        model="chat-b", max_tokens=200, tools=[WEATHER], messages=HELLO
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
        final = await stream.get_final_message()
    assert set(kinds) == {"input_json_delta"}
    assert final.stop_reason == "tool_use"
    [streamed], [complete] = final.content, whole.content
    assert streamed.type == complete.type == "tool_use"
    assert streamed.name == complete.name
    assert streamed.input == complete.input
    assert final.usage.output_tokens == whole.usage.output_tokens


async def test_authentication_with_x_api_key_and_bearer(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=gw.root, auth_token=gw.member.inference_key, max_retries=0
    ) as bearer:
        message = await bearer.messages.create(model="chat-b", max_tokens=5, messages=HELLO)
    assert message.usage.output_tokens == 5
    async with sdk(gw, "tw-not-a-real-key") as stranger:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await stranger.messages.create(model="chat-b", max_tokens=5, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid API key"},
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gw.root}/v1/messages", json={"model": "chat-b", "max_tokens": 5, "messages": []}
        )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert "x-api-key" in response.json()["error"]["message"]


async def test_unknown_model_is_a_404_not_found_error(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await claude.messages.create(model="no-such-model", max_tokens=5, messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'no-such-model' not found"},
    }


async def raw_post(gw: GatewayEnv, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{gw.root}/v1/messages", json=body, headers={"x-api-key": gw.member.inference_key}
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"temperature": 1.5}, "temperature"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "search_result",
                                "source": "https://example.com",
                                "title": "x",
                                "content": [],
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0.type",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ],
)
async def test_bad_requests_are_400s_naming_the_field(
    gw: GatewayEnv, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"model": "chat-b", "max_tokens": 10, "messages": HELLO, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await raw_post(gw, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(field), error


async def test_sdk_thinking_budget_becomes_a_reasoning_effort(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    message = await claude.messages.create(
        model="chat-b",
        max_tokens=2000,
        messages=HELLO,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert message.stop_reason == "end_turn"
    assert fetch_mock_stats(gw.mocks.fast)["last_request"]["reasoning_effort"] == "low"


async def test_sdk_raises_bad_request_for_a_refused_block(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(
            model="chat-b",
            max_tokens=10,
            messages=HELLO,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )
    assert "tools.0.type" in caught.value.message


async def test_upstream_validation_error_in_anthropic_shape(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await claude.messages.create(model="chat-invalid", max_tokens=10, messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "mock error 400 requested"},
    }


async def test_insufficient_balance_is_a_402_billing_error(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    broke = await gw.world.member("bob", "p2")
    async with sdk(gw, broke.inference_key) as broke_client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await broke_client.messages.create(model="chat-b", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 402
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "billing_error"
    assert body["error"]["message"].startswith("insufficient balance: this request needs")
    assert caught.value.response.headers["x-should-retry"] == "false"


async def test_fallback_from_a_failing_provider_with_metadata(
    gw: GatewayEnv, claude: anthropic.AsyncAnthropic
) -> None:
    message = await claude.messages.create(
        model="chat-flaky",
        max_tokens=10,
        messages=HELLO,
        extra_body={"preference": "cost", "include_metadata": True},
    )
    assert message.model_extra is not None
    assert message.model_extra["provider"] == "eu-quant"
    metadata = message.model_extra["metadata"]
    scored = metadata["routing_trace"]["scored_candidates"]
    statuses = {c["provider"]: c["status"] for c in scored if c["model"] == "chat-flaky"}
    assert statuses == {"eu-broken": "failed", "eu-quant": "success"}

    async with claude.messages.stream(
        model="chat-down",
        max_tokens=10,
        messages=HELLO,
        extra_body={"include_metadata": True},
    ) as stream:
        final = await stream.get_final_message()
    assert final.model == "chat-b"  # the fallback model served
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 10


async def test_upstream_broken_mid_stream_is_an_error_event(
    claude: anthropic.AsyncAnthropic,
) -> None:
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with claude.messages.stream(
            model="chat-cut", max_tokens=100, messages=HELLO
        ) as stream:
            async for piece in stream.text_stream:
                received.append(piece)
    assert len(received) == 3  # what streamed before the upstream broke
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "api_error", "message": "eu-fast: stream ended early"},
    }


async def test_message_charges_equal_usage(gw_both: GatewayEnv) -> None:
    db = gw_both.world.db
    start = await seen_balance(gw_both.root, gw_both.member.management_key)
    async with sdk(gw_both) as claude:
        whole = await claude.messages.create(
            model="chat-b", max_tokens=9, system="short", messages=HELLO
        )
        after_whole = await seen_balance(gw_both.root, gw_both.member.management_key)
        async with claude.messages.stream(
            model="chat-b", max_tokens=9, system="short", messages=HELLO
        ) as stream:
            streamed = await stream.get_final_message()
    after_stream = await seen_balance(gw_both.root, gw_both.member.management_key)
    expected = charge(whole.usage.input_tokens, whole.usage.output_tokens)
    assert whole.usage.output_tokens == 9
    assert streamed.usage.input_tokens == whole.usage.input_tokens
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    assert start - after_whole == expected
    assert after_whole - after_stream == expected
    async with db.read() as conn:
        rows = (await conn.execute(text("SELECT endpoint, cost_credits FROM usage_events"))).all()
    assert [(endpoint, int(cost)) for endpoint, cost in rows] == [("messages", expected)] * 2
    await assert_invariant(db)
    assert await open_request_holds(db) == 0


async def test_client_gone_mid_message_stream_pays_for_what_streamed(
    slow_stream_gateway: tuple[str, str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The translated stream settles like any other: the upstream is closed and what
    streamed is charged."""
    base_url, key, upstream = slow_stream_gateway
    root = base_url.removesuffix("/v1")
    body = {"model": "slow-chat", "max_tokens": 100, "messages": HELLO, "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream("POST", f"{root}/v1/messages", json=body, headers={"x-api-key": key}) as r,
    ):
        lines = r.aiter_lines()
        deltas = 0
        while deltas < 3:
            if (await anext(lines)) == "event: content_block_delta":
                deltas += 1
    stats = await asyncio.to_thread(wait_for_mock_stats, upstream, "aborted_streams", 1)
    assert stats["aborted_streams"] == 1
    world = World(f"sqlite:///{tmp_path / 'slow.db'}")
    try:
        row = None
        for _ in range(200):
            async with world.db.read() as conn:
                query = text("SELECT endpoint, completion_tokens, status FROM usage_events")
                row = (await conn.execute(query)).first()
            if row is not None:
                break
            await asyncio.sleep(0.02)
        assert row is not None, "the disconnected stream was never settled"
        endpoint, completion, status = row
        assert (endpoint, status) == ("messages", "client_disconnected")
        assert 3 <= completion < DEFAULT_REPLY_TOKENS
        await assert_invariant(world.db)
        assert await open_request_holds(world.db) == 0
    finally:
        await world.close()
