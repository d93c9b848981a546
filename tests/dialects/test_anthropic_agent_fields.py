"""What Claude Code sends on /v1/messages: each beta field translated to its chat equivalent,
or dropped, and the request's Translation saying which (names only, bounded)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.dialects.anthropic.request import MessagesRequest, effort_of_budget, parse_messages
from tollway.errors import BadRequest
from tollway.observe.record import Translation

HI = [{"role": "user", "content": "hi"}]
EPHEMERAL = {"type": "ephemeral"}


def parse(**fields: Any) -> MessagesRequest:
    body: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": HI}
    return parse_messages(orjson.dumps({**body, **fields}))


def refusal(**fields: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(**fields)
    return caught.value


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (1, "low"),
        (1024, "low"),
        (4095, "low"),
        (4096, "medium"),
        (16383, "medium"),
        (16384, "high"),
        (128_000, "high"),
    ],
)
def test_a_thinking_budget_becomes_the_nearest_effort(budget: int, effort: str) -> None:
    assert effort_of_budget(budget) == effort
    parsed = parse(thinking={"type": "enabled", "budget_tokens": budget}, max_tokens=200_000)
    assert parsed.inference.body["reasoning_effort"] == effort
    assert parsed.translation.translated == ("thinking.budget_tokens → reasoning_effort",)
    assert parsed.translation.dropped == ()


@pytest.mark.parametrize(
    ("effort", "sent"), [("low", "low"), ("medium", "medium"), ("high", "high"), ("max", "high")]
)
def test_output_config_effort_wins_over_a_thinking_budget(effort: str, sent: str) -> None:
    parsed = parse(
        thinking={"type": "enabled", "budget_tokens": 1024}, output_config={"effort": effort}
    )
    assert parsed.inference.body["reasoning_effort"] == sent
    assert parsed.translation.translated == ("output_config.effort → reasoning_effort",)


def test_adaptive_thinking_without_an_effort_is_dropped() -> None:
    parsed = parse(thinking={"type": "adaptive", "display": "omitted"})
    assert "reasoning_effort" not in parsed.inference.body
    assert "thinking" not in parsed.inference.body
    assert parsed.translation.dropped == ("thinking.display", "thinking")


def test_disabled_thinking_and_no_thinking_change_nothing() -> None:
    for fields in ({"thinking": {"type": "disabled"}}, {}):
        parsed = parse(**fields)
        assert "reasoning_effort" not in parsed.inference.body
        assert not parsed.translation


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"thinking": "on"}, "thinking.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 0}}, "thinking.budget_tokens"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"verbosity": "low"}}, "output_config"),
        ({"output_config": "high"}, "output_config"),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format.type"),
        ({"output_format": {"type": "json_schema"}}, "output_format.schema"),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"speed": "fast"}, "speed"),
    ],
)
def test_bad_agent_fields_are_a_400_naming_them(fields: dict[str, Any], param: str) -> None:
    error = refusal(**fields)
    assert error.param == param
    assert error.status == 400


def test_structured_output_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    for fields, where in (
        (
            {"output_config": {"format": {"type": "json_schema", "schema": schema}}},
            "output_config.format",
        ),
        ({"output_format": {"type": "json_schema", "schema": schema}}, "output_format"),
    ):
        parsed = parse(**fields)
        assert parsed.inference.body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }
        assert parsed.translation.translated == (f"{where} → response_format",)


def test_hints_without_a_chat_equivalent_are_dropped_and_named() -> None:
    parsed = parse(
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        top_k=5,
        service_tier="auto",
    )
    body = parsed.inference.body
    assert not {"context_management", "top_k", "service_tier"} & set(body)
    assert parsed.translation.dropped == ("context_management", "top_k", "service_tier")


def test_system_messages_inside_messages_join_the_system_prompt_in_order() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {
            "role": "system",
            "content": [{"type": "text", "text": "env", "cache_control": EPHEMERAL}],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": "late"},
        {"role": "user", "content": "second"},
    ]
    parsed = parse(system=[{"type": "text", "text": "top"}], messages=messages)
    assert parsed.inference.body["messages"] == [
        {"role": "system", "content": "top\n\nenv\n\nlate"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"},
    ]
    assert parsed.translation.translated == ("messages[].role=system → system prompt",)
    assert parsed.translation.dropped == ("cache_control",)


def test_cache_control_on_every_block_type_is_accepted_and_never_forwarded() -> None:
    png = {"type": "base64", "media_type": "image/png", "data": "AAA"}
    pdf = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}
    cc = {"cache_control": EPHEMERAL}
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look", **cc},
                {"type": "image", "source": png, **cc},
                {"type": "document", "source": pdf, "title": "spec.pdf", **cc},
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                    **cc,
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s", **cc},
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "text", "text": "calling", **cc},
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {"path": "a"}, **cc},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    **cc,
                    "content": [
                        {"type": "text", "text": "file body", **cc},
                        {"type": "image", "source": png, **cc},
                        {"type": "tool_reference", "tool_name": "Grep"},
                    ],
                },
            ],
        },
    ]
    tools = [
        {"name": "Read", "description": "read", "input_schema": {"type": "object"}, **cc},
        {
            "name": "Later",
            "input_schema": {"type": "object"},
            "defer_loading": True,
            "strict": True,
        },
    ]
    parsed = parse(system=[{"type": "text", "text": "sys", **cc}], messages=messages, tools=tools)
    body = parsed.inference.body
    assert b"cache_control" not in orjson.dumps(body)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                image,
                {
                    "type": "file",
                    "file": {
                        "file_data": "data:application/pdf;base64,JVBE",
                        "filename": "spec.pdf",
                    },
                },
                {"type": "text", "text": "notes"},
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {
                    "id": "t1",
                    "type": "function",
                    "function": {"name": "Read", "arguments": '{"path":"a"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "file body\nTool reference: Grep"},
        {"role": "user", "content": [image]},  # what the tool returned beyond text
    ]
    assert [t["function"]["name"] for t in body["tools"]] == ["Read", "Later"]
    assert parsed.translation == Translation(
        translated=("tool_result images/documents → user message",),
        dropped=(
            "cache_control",
            "thinking blocks in the history",
            "tools[].cache_control",
            "tools[].defer_loading",
            "tools[].strict",
        ),
    )


def test_count_tokens_bodies_need_no_max_tokens_and_never_stream() -> None:
    raw = orjson.dumps({"model": "m", "messages": HI, "stream": True})
    parsed = parse_messages(raw, counting=True)
    assert parsed.inference.stream is False
    with pytest.raises(BadRequest) as caught:
        parse_messages(raw)
    assert caught.value.param == "max_tokens"


def test_a_translation_names_each_field_once_bounded() -> None:
    translation = Translation.of(["a", "a", "b"], ["x" * 500] + [f"f{i}" for i in range(100)])
    assert translation.translated == ("a", "b")
    assert len(translation.dropped) == 32
    assert all(len(name) <= 80 for name in translation.dropped)
    assert translation.as_json() == {"translated": ["a", "b"], "dropped": list(translation.dropped)}
    assert not Translation.of([], [])
