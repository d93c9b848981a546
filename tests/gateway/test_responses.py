"""POST /v1/responses through the official `openai` SDK (and raw HTTP where the wire itself is
the point), against a real gateway in front of real mock providers: text, streaming event
order, function calls, custom and namespaced tools, errors, upstream failures and charges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import FunctionToolParam, Response
from sqlalchemy import text

from tests.billing.conftest import assert_invariant
from tests.gateway.conftest import GatewayEnv
from tests.gateway.test_streaming import slow_stream_gateway  # noqa: F401 (fixture)
from tests.support.broken_upstream import STREAM_THEN_RESET, broken_upstream
from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import fetch_mock_stats, wait_for_mock_stats
from tests.support.money import open_request_holds, seen_balance
from tests.support.world import World
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS, words_for

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    },
    "strict": False,
}
REPLY = " ".join(words_for("hello there", DEFAULT_REPLY_TOKENS))
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


@pytest.fixture
async def client(gw: GatewayEnv) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gw.client() as sdk:
        yield sdk


async def events_of(
    gw: GatewayEnv, body: dict[str, Any], base_url: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(event line, data) of every event of a streamed response, read off the wire."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST",
            f"{base_url or gw.base_url}/responses",
            json={**body, "stream": True},
            headers={"Authorization": f"Bearer {gw.member.inference_key}"},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            assert "[DONE]" not in line
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, orjson.loads(line[6:])))
    return events


def assert_well_formed(events: list[tuple[str, dict[str, Any]]]) -> None:
    """`event:` names the data's type; sequence numbers rise from 0; one terminal event, last."""
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert [name for name, _ in events if name in TERMINAL] == [events[-1][0]]
    assert [name for name, _ in events[:2]] == ["response.created", "response.in_progress"]


async def test_text_response_with_instructions(gw: GatewayEnv, client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(
        model="chat-b", instructions="you are terse", input="hello there", max_output_tokens=100
    )
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.incomplete_details is None
    assert response.model == "chat-b"
    assert response.output_text == REPLY
    [item] = response.output
    assert item.type == "message"
    assert item.role == "assistant"
    assert item.status == "completed"
    assert response.usage is not None
    # 3 + 2 words of the input, 3 + 3 of the instructions (the mock's counting rule).
    assert response.usage.input_tokens == 11
    assert response.usage.output_tokens == DEFAULT_REPLY_TOKENS
    assert response.usage.total_tokens == 11 + DEFAULT_REPLY_TOKENS
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.model_extra is not None
    assert response.model_extra["store"] is False
    assert response.model_extra["provider"] == "eu-fast"
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"] == [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": "hello there"},
    ]
    assert forwarded["max_tokens"] == 100


async def test_items_with_roles_images_and_history(
    gw: GatewayEnv, client: openai.AsyncOpenAI
) -> None:
    items: list[Any] = [
        {"role": "developer", "content": "be brief"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "what is"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "a cat", "annotations": []}],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "user", "content": "hello there"},
    ]
    response = await client.responses.create(
        model="chat-b",
        input=items,
        reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "text"}, "verbosity": "low"},
    )
    assert response.output_text == REPLY
    assert response.reasoning is not None and response.reasoning.effort == "low"
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                },
            ],
        },
        {"role": "assistant", "content": "a cat"},
        {"role": "user", "content": "hello there"},
    ]
    assert forwarded["reasoning_effort"] == "low"
    assert "verbosity" not in forwarded and "text" not in forwarded


async def test_stream_event_order_and_sequence(gw: GatewayEnv) -> None:
    events = await events_of(gw, {"model": "chat-b", "input": "hi", "max_output_tokens": 3})
    assert_well_formed(events)
    assert [name for name, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    created = events[0][1]["response"]
    assert created["status"] == "in_progress"
    assert created["output"] == []
    text_done = events[7][1]
    assert text_done["text"] == "".join(data["delta"] for _, data in events[4:7])
    final = events[-1][1]["response"]
    assert final["id"] == created["id"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"] == [events[9][1]["item"]]
    assert final["output"][0]["content"][0]["text"] == text_done["text"]
    assert final["usage"]["input_tokens"] == 4
    assert final["usage"]["output_tokens"] == 3


async def test_sdk_stream_matches_the_whole_response(client: openai.AsyncOpenAI) -> None:
    whole = await client.responses.create(model="chat-b", input="hello there")
    deltas: list[str] = []
    completed: Response | None = None
    stream = await client.responses.create(model="chat-b", input="hello there", stream=True)
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response
    assert "".join(deltas) == whole.output_text == REPLY
    assert len(deltas) == DEFAULT_REPLY_TOKENS
    assert completed is not None
    assert completed.output_text == REPLY
    assert completed.usage == whole.usage

    async with client.responses.stream(model="chat-b", input="hello there") as helper:
        final = await helper.get_final_response()
    assert final.output_text == REPLY
    assert final.status == "completed"


async def test_function_call_round_trip(gw: GatewayEnv, client: openai.AsyncOpenAI) -> None:
    question: list[Any] = [{"role": "user", "content": "weather in Lyon?"}]
    call = await client.responses.create(model="chat-b", input=question, tools=[WEATHER])
    [item] = call.output
    assert item.type == "function_call"
    assert item.name == "get_weather"
    assert item.call_id.startswith("call_")
    assert item.id is not None and item.id.startswith("fc_")
    arguments = json.loads(item.arguments)
    assert isinstance(arguments["city"], str) and isinstance(arguments["days"], int)
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["parameters"],
                "description": "The weather in a city",
            },
        }
    ]

    history: list[Any] = [
        *question,
        *[o.model_dump(exclude_none=True) for o in call.output],
        {"type": "function_call_output", "call_id": item.call_id, "output": "sunny, 21 C"},
    ]
    answer = await client.responses.create(model="chat-b", tools=[WEATHER], input=history)
    assert answer.output_text == " ".join(words_for("sunny, 21 C", DEFAULT_REPLY_TOKENS))
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": item.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": item.call_id, "content": "sunny, 21 C"},
    ]


async def test_streamed_function_call_matches_the_whole_one(
    gw: GatewayEnv, client: openai.AsyncOpenAI
) -> None:
    body: dict[str, Any] = {
        "model": "chat-b",
        "input": "hello",
        "tools": [WEATHER],
        "tool_choice": "required",
    }
    whole = await client.responses.create(
        model="chat-b", input="hello", tools=[WEATHER], tool_choice="required"
    )
    events = await events_of(gw, body)
    assert_well_formed(events)
    names = [name for name, _ in events]
    assert names[2] == "response.output_item.added"
    assert names[-4:] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert set(names[3:-3]) == {"response.function_call_arguments.delta"}
    added = events[2][1]["item"]
    assert added["type"] == "function_call"
    assert added["status"] == "in_progress"
    deltas = "".join(d["delta"] for n, d in events if n.endswith("arguments.delta"))
    done = events[-2][1]["item"]
    [call] = whole.output
    assert call.type == "function_call"
    assert deltas == done["arguments"] == call.arguments
    assert done["call_id"] == added["call_id"]  # (ids hash the body: not the whole one's)
    assert events[-1][1]["response"]["output"] == [done]
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["tool_choice"] == "required"


async def test_custom_and_namespaced_tools_and_a_dropped_web_search(
    gw: GatewayEnv, client: openai.AsyncOpenAI
) -> None:
    tools: list[Any] = [
        {"type": "custom", "name": "apply_patch", "description": "Edit files"},
        {
            "type": "namespace",
            "name": "agents",
            "description": "sub-agents",
            "tools": [{"type": "function", "name": "spawn", "parameters": WEATHER["parameters"]}],
        },
        {"type": "web_search", "external_web_access": False},
    ]
    custom = await client.responses.create(
        model="chat-b",
        input="fix it",
        tools=tools,
        tool_choice={"type": "custom", "name": "apply_patch"},
    )
    [item] = custom.output
    assert item.type == "custom_tool_call"
    assert item.name == "apply_patch"
    assert isinstance(item.input, str) and item.input
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert [t["function"]["name"] for t in forwarded["tools"]] == ["apply_patch", "agents__spawn"]
    assert forwarded["tools"][0]["function"]["parameters"]["required"] == ["input"]

    namespaced = await raw_post(
        gw,
        {
            "model": "chat-b",
            "input": "go",
            "tools": tools,
            "tool_choice": {"type": "function", "name": "spawn", "namespace": "agents"},
        },
    )
    [call] = namespaced.json()["output"]
    assert (call["type"], call["namespace"], call["name"]) == ("function_call", "agents", "spawn")

    # The history carries both back under their chat names.
    history: list[Any] = [
        {"role": "user", "content": "go"},
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": "x"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "done"},
        {**call, "call_id": "call_2"},
        {"type": "function_call_output", "call_id": "call_2", "output": "ok"},
    ]
    await client.responses.create(model="chat-b", tools=tools, input=history)
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    calls = [m["tool_calls"][0]["function"] for m in forwarded["messages"] if "tool_calls" in m]
    assert calls == [
        {"name": "apply_patch", "arguments": '{"input":"x"}'},
        {"name": "agents__spawn", "arguments": call["arguments"]},
    ]


async def test_json_schema_format(gw: GatewayEnv, client: openai.AsyncOpenAI) -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    }
    response = await client.responses.create(
        model="chat-b",
        input="count",
        text={"format": {"type": "json_schema", "name": "count", "schema": schema}},
    )
    assert isinstance(json.loads(response.output_text)["n"], int)
    forwarded = fetch_mock_stats(gw.mocks.fast)["last_request"]
    assert forwarded["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema},
    }


async def test_metadata_echoed_and_merged_with_tollways(client: openai.AsyncOpenAI) -> None:
    plain = await client.responses.create(
        model="chat-b", input="hi", metadata={"ticket": "T-1"}, store=True
    )
    assert plain.metadata == {"ticket": "T-1"}
    assert plain.model_extra is not None
    assert plain.model_extra["store"] is False  # accepted, nothing stored
    routed = await client.responses.create(
        model="chat-flaky",
        input="hi",
        metadata={"ticket": "T-2"},
        tools=[{"type": "web_search"}],
        extra_body={"preference": "cost", "include_metadata": True},
    )
    assert routed.metadata is not None
    assert routed.metadata["ticket"] == "T-2"
    metadata: Any = routed.metadata
    assert metadata["routing_results"]["selected_provider"] == "eu-quant"
    scored = metadata["routing_trace"]["scored_candidates"]
    statuses = {c["provider"]: c["status"] for c in scored if c["model"] == "chat-flaky"}
    assert statuses == {"eu-broken": "failed", "eu-quant": "success"}
    assert metadata["translation"] == {"translated": [], "dropped": ["tools.0 (web_search)"]}


async def raw_post(gw: GatewayEnv, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{gw.base_url}/responses",
            json=body,
            headers={"Authorization": f"Bearer {gw.member.inference_key}"},
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"background": True}, "background"),
        ({"input": None}, "input"),
        ({"input": []}, "input"),
        ({"model": None}, "model"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"temperature": 2.5}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs"]}]}, "tools.0.type"),
        ({"tools": [{"type": "function"}]}, "tools.0.name"),
        ({"tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input.0.role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input.0.content.0.type",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
    ],
)
async def test_bad_requests_are_400s_naming_the_field(
    gw: GatewayEnv, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"model": "chat-b", "input": "hi", **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = await raw_post(gw, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(field), error
    assert error["param"] == field or field.startswith(error["param"]), error


async def test_sdk_errors_in_the_openai_shape(gw: GatewayEnv, client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="chat-b", input="hi", previous_response_id="resp_1")
    assert refused.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.responses.create(model="no-such-model", input="hi")
    assert unknown.value.code == "model_not_found"
    async with gw.client("tw-not-a-real-key") as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.responses.create(model="chat-b", input="hi")
    broke = await gw.world.member("bob", "p2")
    async with gw.client(broke.inference_key) as poor:
        with pytest.raises(openai.APIStatusError) as unpaid:
            await poor.responses.create(model="chat-b", input="hi")
    assert unpaid.value.status_code == 402
    with pytest.raises(openai.BadRequestError) as upstream:
        await client.responses.create(model="chat-invalid", input="hi")
    assert upstream.value.message.endswith("mock error 400 requested")


async def test_responses_are_not_stored(gw: GatewayEnv, client: openai.AsyncOpenAI) -> None:
    created = await client.responses.create(model="chat-b", input="hi", store=True)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.retrieve(created.id)
    assert caught.value.param == "response_id"
    assert "does not store responses" in caught.value.message
    async with httpx.AsyncClient() as http:
        anonymous = await http.get(f"{gw.base_url}/responses/{created.id}")
        deleted = await http.delete(
            f"{gw.base_url}/responses/{created.id}",
            headers={"Authorization": f"Bearer {gw.member.inference_key}"},
        )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert deleted.status_code in (404, 405)
    assert isinstance(deleted.json()["error"], dict)  # the OpenAI shape, whatever the path


async def test_upstream_cut_mid_stream_is_response_failed(gw: GatewayEnv) -> None:
    events = await events_of(gw, {"model": "chat-cut", "input": "hello there"})
    assert_well_formed(events)
    names = [name for name, _ in events]
    assert names.count("response.output_text.delta") == 3  # what streamed before the cut
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "eu-fast: stream ended early"}


@pytest.fixture(scope="module")
def reset_upstream() -> Iterator[str]:
    with ExitStack() as stack:
        yield stack.enter_context(broken_upstream(STREAM_THEN_RESET))


async def test_connection_reset_mid_stream_is_response_failed(
    gw: GatewayEnv, reset_upstream: str, tmp_path: Path
) -> None:
    document = {
        "providers": [{"slug": "p-reset", "name": "p-reset", "base_url": reset_upstream}],
        "models": [
            {
                "id": "resetting",
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": "p-reset",
                        "upstream_model": "m",
                        "pricing": {"input_token": 0.01, "output_token": 0.01},
                    }
                ],
            }
        ],
    }
    registry = write_registry(tmp_path / "reset.yaml", document)
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    with running_gateway(url, registry) as (base_url, _):
        events = await events_of(gw, {"model": "resetting", "input": "hi"}, base_url)
    assert_well_formed(events)
    assert [name for name, _ in events][2:5] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert events[4][1]["delta"] == "half"
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert failed["error"]["message"].startswith("p-reset:")


async def test_a_response_costs_what_the_same_chat_completion_costs(
    gw_both: GatewayEnv,
) -> None:
    db = gw_both.world.db
    root, management = gw_both.root, gw_both.member.management_key
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "short"},
        {"role": "user", "content": "hello there"},
    ]
    charges: dict[str, int] = {}
    async with gw_both.client() as sdk:
        for stream in (False, True):
            before = await seen_balance(root, management)
            if stream:
                chunks = await sdk.chat.completions.create(
                    model="chat-b", messages=messages, max_tokens=100, stream=True
                )
                async for _ in chunks:
                    pass
            else:
                await sdk.chat.completions.create(model="chat-b", messages=messages, max_tokens=100)
            middle = await seen_balance(root, management)
            response: Response
            if stream:
                async with sdk.responses.stream(
                    model="chat-b", instructions="short", input="hello there", max_output_tokens=100
                ) as events:
                    response = await events.get_final_response()
            else:
                response = await sdk.responses.create(
                    model="chat-b", instructions="short", input="hello there", max_output_tokens=100
                )
            after = await seen_balance(root, management)
            assert response.usage is not None
            assert response.usage.output_tokens == DEFAULT_REPLY_TOKENS
            assert before - middle == middle - after > 0
            charges[f"stream={stream}"] = middle - after
    assert charges["stream=False"] == charges["stream=True"]
    async with db.read() as conn:
        query = text(
            "SELECT endpoint, prompt_tokens, completion_tokens, cost_credits FROM usage_events"
        )
        rows = sorted((await conn.execute(query)).all())
    chat_rows = [r[1:] for r in rows if r[0] == "chat.completions"]
    response_rows = [r[1:] for r in rows if r[0] == "responses"]
    assert len(chat_rows) == len(response_rows) == 2
    assert response_rows == chat_rows
    await assert_invariant(db)
    assert await open_request_holds(db) == 0


async def test_client_gone_mid_stream_pays_for_what_streamed(
    slow_stream_gateway: tuple[str, str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The translated stream settles like any other: the upstream is closed and what
    streamed is charged."""
    base_url, key, upstream = slow_stream_gateway
    body = {"model": "slow-chat", "input": "hello there", "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", f"{base_url}/responses", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        lines = response.aiter_lines()
        deltas = 0
        while deltas < 3:
            if (await anext(lines)) == "event: response.output_text.delta":
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
        assert (endpoint, status) == ("responses", "client_disconnected")
        assert 3 <= completion < DEFAULT_REPLY_TOKENS
        await assert_invariant(world.db)
        assert await open_request_holds(world.db) == 0
    finally:
        await world.close()
