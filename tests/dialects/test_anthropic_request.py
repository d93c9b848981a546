"""Anthropic request → internal chat request: what is translated, ignored and refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.dialects.anthropic.request import parse_messages
from tollway.errors import BadRequest


def translate(**fields: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    parsed = parse_messages(orjson.dumps({**body, **fields}))
    return parsed.inference.body


def refusal(**fields: Any) -> BadRequest:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(BadRequest) as caught:
        parse_messages(orjson.dumps({**body, **fields}))
    return caught.value


def test_images_become_image_url_parts_and_count_as_media() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    raw = orjson.dumps(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    )
    parsed = parse_messages(raw)
    assert parsed.inference.body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]
    # Each image reserves the same allowance as on /v1/chat/completions.
    assert parsed.inference.prompt_upper_bound > 2 * 8192
    assert parsed.inference.endpoint == "messages"
    assert parsed.inference.kind == "chat.completions"


def test_tool_history_translates_to_calls_and_tool_messages_in_order() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Lyon"}},
                {"type": "tool_use", "id": "t2", "name": "weather", "input": {"city": "Metz"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "both done"},
                {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "no data"}],
                    "is_error": True,
                },
            ],
        },
    ]
    assert translate(messages=messages)["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Lyon"}'},
                },
                {
                    "id": "t2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Metz"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: no data"},
        {"role": "user", "content": [{"type": "text", "text": "both done"}]},
    ]


def test_parameters_tools_and_router_fields() -> None:
    body = translate(
        system="be brief",
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
        service_tier="auto",
        tools=[{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"a": 1}}],
        tool_choice={"type": "auto"},
        preference="cost",
        stream=True,
    )
    assert body["messages"][0] == {"role": "system", "content": "be brief"}
    assert body["stop"] == ["END"]
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9
    assert body["user"] == "u-1"
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert body["tool_choice"] == "auto"
    assert body["stream_options"] == {"include_usage": True}
    for dropped in ("top_k", "service_tier", "metadata", "preference", "stop_sequences"):
        assert dropped not in body


def test_router_fields_reach_the_policy() -> None:
    raw = orjson.dumps(
        {
            "model": "m",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
            "preference": "speed",
            "include_metadata": True,
        }
    )
    assert parse_messages(raw).inference.router_fields == {
        "preference": "speed",
        "include_metadata": True,
    }
    with pytest.raises(BadRequest) as caught:
        parse_messages(raw.replace(b'"speed"', b"7"))
    assert caught.value.param == "preference"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"system": [{"type": "image", "source": {}}]}, "system.0"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"top_p": -1}, "top_p"),
        ({"stream": "yes"}, "stream"),
        ({"container": "c"}, "container"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice"),
        ({"tool_choice": {"type": "tool", "name": "f"}, "tools": []}, "tool_choice"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}
                ]
            },
            "messages.0.content.0.source",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {}}],
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0.content.0.source",
        ),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]},
            "messages.0.content.0.type",
        ),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ],
)
def test_refusals_name_the_field(fields: dict[str, Any], param: str) -> None:
    error = refusal(**fields)
    assert error.param == param
    assert error.message.startswith(param)


def test_malformed_json_and_non_object_bodies() -> None:
    for raw in (b"{", b"[1]"):
        with pytest.raises(BadRequest):
            parse_messages(raw)
