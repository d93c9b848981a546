"""The rest of the OpenAI surface through the official `openai` SDK: tool calls (streamed
too), tool_choice, n > 1 (metered per choice), response_format, models.retrieve."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.billing.conftest import assert_invariant
from tests.gateway.conftest import GatewayEnv
from tests.support.mock_server import fetch_mock_stats
from tests.support.money import open_request_holds, seen_balance
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS
from tollway.providers.tokens import count_tokens

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "weather in Lyon?"}]
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "unit"],
        },
    },
}
CLOCK: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
CHAT_B_IN, CHAT_B_OUT = Decimal("0.05"), Decimal("0.15")  # chat-b @ eu-fast, credits/token


@pytest.fixture
async def sdk(gw: GatewayEnv) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gw.client() as client:
        yield client


async def test_tool_call_round_trip(gw: GatewayEnv, sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.chat.completions.create(model="chat-b", messages=QUESTION, tools=[WEATHER])
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city", "unit"}  # the required keys
    assert arguments["unit"] == "celsius"
    assert response.usage is not None
    assert response.usage.completion_tokens == count_tokens(call.function.arguments)

    answer = await sdk.chat.completions.create(
        model="chat-b",
        tools=[WEATHER],
        messages=[
            *QUESTION,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content


async def test_tool_choice_none_and_named(sdk: openai.AsyncOpenAI) -> None:
    none = await sdk.chat.completions.create(
        model="chat-b", messages=QUESTION, tools=[WEATHER, CLOCK], tool_choice="none"
    )
    assert none.choices[0].finish_reason == "stop"
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content
    named = await sdk.chat.completions.create(
        model="chat-b",
        messages=QUESTION,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    calls = named.choices[0].message.tool_calls
    assert calls is not None
    assert [c.function.name for c in calls] == ["get_time"]  # type: ignore[union-attr]


async def test_streamed_tool_call_deltas(sdk: openai.AsyncOpenAI) -> None:
    whole = await sdk.chat.completions.create(model="chat-b", messages=QUESTION, tools=[WEATHER])
    stream = await sdk.chat.completions.create(
        model="chat-b",
        messages=QUESTION,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    name, arguments, ids, deltas, finish = "", "", set(), 0, None
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                deltas += 1
                if call.id:
                    ids.add(call.id)
                if call.function and call.function.name:
                    name += call.function.name
                if call.function and call.function.arguments:
                    arguments += call.function.arguments
    assert deltas > 2  # the arguments arrive in pieces
    assert len(ids) == 1
    assert finish == "tool_calls"
    assert whole.choices[0].message.tool_calls is not None
    [expected] = whole.choices[0].message.tool_calls
    assert name == expected.function.name  # type: ignore[union-attr]
    assert json.loads(arguments) == json.loads(expected.function.arguments)  # type: ignore[union-attr]
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


async def test_n_choices_are_distinct_and_metered(gw_both: GatewayEnv) -> None:
    db = gw_both.world.db
    async with gw_both.client() as sdk:
        single = await sdk.chat.completions.create(model="chat-b", messages=QUESTION)
        start = await seen_balance(gw_both.root, gw_both.member.management_key)
        three = await sdk.chat.completions.create(model="chat-b", messages=QUESTION, n=3)
        after = await seen_balance(gw_both.root, gw_both.member.management_key)
        stream = await sdk.chat.completions.create(
            model="chat-b",
            messages=QUESTION,
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        texts: dict[int, str] = {}
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        after_stream = await seen_balance(gw_both.root, gw_both.member.management_key)
    contents = [c.message.content for c in three.choices]
    assert [c.index for c in three.choices] == [0, 1, 2]
    assert len(set(contents)) == 3
    assert contents[0] == single.choices[0].message.content
    assert three.usage is not None and single.usage is not None
    assert three.usage.completion_tokens == 3 * single.usage.completion_tokens
    assert three.usage.completion_tokens == 3 * DEFAULT_REPLY_TOKENS
    cost = CHAT_B_IN * three.usage.prompt_tokens + CHAT_B_OUT * three.usage.completion_tokens
    assert start - after == int(cost.to_integral_value(rounding="ROUND_CEILING"))
    assert [texts[i] for i in range(3)] == contents
    assert usage is not None and usage.completion_tokens == three.usage.completion_tokens
    assert after - after_stream == start - after
    await assert_invariant(db)
    assert await open_request_holds(db) == 0


async def test_response_format_json(gw: GatewayEnv, sdk: openai.AsyncOpenAI) -> None:
    loose = await sdk.chat.completions.create(
        model="chat-b", messages=QUESTION, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
        "required": ["city", "temperature"],
    }
    strict = await sdk.chat.completions.create(
        model="chat-b",
        messages=QUESTION,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        },
    )
    parsed = json.loads(strict.choices[0].message.content or "")
    assert set(parsed) == {"city", "temperature"}
    assert isinstance(parsed["temperature"], float)
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["response_format"]["json_schema"]["schema"] == schema


async def test_models_retrieve(gw: GatewayEnv, sdk: openai.AsyncOpenAI) -> None:
    model = await sdk.models.retrieve("chat-a")
    assert model.id == "chat-a"
    assert model.object == "model"
    assert model.owned_by == "tollway"
    assert model.model_extra is not None
    assert model.model_extra["pricing"]["currency"] == "EUR"
    assert model.model_extra["pricing"]["input_token"] == 0.1  # the cheapest provider
    assert set(model.model_extra["providers"]) == {"eu-fast", "us-cheap", "eu-quant"}
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    async with gw.client("tw-not-a-key") as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.retrieve("chat-a")


async def test_counted_usage_covers_tool_calls_and_every_choice(sdk: openai.AsyncOpenAI) -> None:
    """An upstream without usage: the gateway counts what was answered — call arguments, and
    each choice on its own — the same way whether streamed or not."""
    whole = await sdk.chat.completions.create(
        model="chat-counted",
        messages=QUESTION,
        tools=[WEATHER],
        extra_body={"include_metadata": True},
    )
    metadata: Any = getattr(whole, "metadata", None)  # a field of its own in newer SDKs
    assert metadata["routing_results"]["usage_source"] == "counted"
    calls = whole.choices[0].message.tool_calls
    assert calls is not None and whole.usage is not None
    arguments = calls[0].function.arguments  # type: ignore[union-attr]
    assert whole.usage.completion_tokens == count_tokens(arguments) > 0
    for fields in ({"tools": [WEATHER]}, {"n": 3}):
        complete = await sdk.chat.completions.create(
            model="chat-counted", messages=QUESTION, extra_body=fields
        )
        stream = await sdk.chat.completions.create(
            model="chat-counted",
            messages=QUESTION,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=fields,
        )
        usage = None
        async for chunk in stream:
            usage = chunk.usage or usage
        assert usage is not None and complete.usage is not None
        assert usage.completion_tokens == complete.usage.completion_tokens
        last = complete.usage.completion_tokens
    assert last == 3 * DEFAULT_REPLY_TOKENS  # n = 3, counted per choice
