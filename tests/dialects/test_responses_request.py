"""A Responses request → the internal chat request: what is translated, dropped or refused,
and the answer's way back (output items, usage classes, statuses)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tollway.dialects.responses.request import ResponsesRequest, parse_responses
from tollway.dialects.responses.response import to_response
from tollway.errors import BadRequest


def parse(**body: Any) -> ResponsesRequest:
    return parse_responses(orjson.dumps({"model": "m", "input": "hi", **body}))


def refused(**body: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(**body)
    return caught.value


def test_string_input_instructions_and_sampling() -> None:
    parsed = parse(
        instructions="be brief",
        max_output_tokens=64,
        temperature=0.5,
        top_p=0.9,
        user="u-1",
        reasoning={"effort": "high"},
        parallel_tool_calls=False,  # no tools: not forwarded (OpenAI refuses it alone)
    )
    inference = parsed.inference
    assert inference.endpoint == "responses"
    assert inference.max_tokens == 64
    assert not inference.stream
    assert inference.body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 64,
        "temperature": 0.5,
        "top_p": 0.9,
        "reasoning_effort": "high",
        "user": "u-1",
    }
    assert parsed.dropped == ()


def test_stream_always_asks_for_usage_and_router_fields_go_to_the_policy() -> None:
    parsed = parse(stream=True, preference="cost", eu_native=True, include_metadata=True)
    inference = parsed.inference
    assert inference.stream and inference.include_usage
    assert inference.body["stream_options"] == {"include_usage": True}
    assert inference.router_fields == {
        "preference": "cost",
        "eu_native": True,
        "include_metadata": True,
    }
    assert "preference" not in inference.body


def test_what_codex_sends_is_accepted_and_the_rest_dropped_by_name() -> None:
    parsed = parse(
        input=[
            {
                "type": "message",
                "id": "msg_1",
                "role": "developer",
                "content": [{"type": "input_text", "text": "rules"}],
            },
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        ],
        tools=[
            {"type": "function", "name": "exec_command", "strict": False, "parameters": {}},
            {"type": "web_search", "external_web_access": False},
        ],
        tool_choice="auto",
        parallel_tool_calls=True,
        reasoning={"summary": "auto"},
        store=False,
        include=["reasoning.encrypted_content"],
        prompt_cache_key="k",
        client_metadata={"session_id": "s"},
        stream=True,
    )
    body = parsed.inference.body
    assert body["messages"] == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ]
    assert body["tools"] == [
        {"type": "function", "function": {"name": "exec_command", "parameters": {}}}
    ]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True
    assert "reasoning_effort" not in body
    assert set(parsed.dropped) == {
        "store",
        "include",
        "prompt_cache_key",
        "client_metadata",
        "reasoning.summary",
        "tools.1 (web_search)",
    }


def test_history_merges_text_and_parallel_calls_into_one_assistant_message() -> None:
    parsed = parse(
        input=[
            {"role": "user", "content": "go"},
            {"type": "reasoning", "summary": [], "encrypted_content": "x"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "On it."}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "namespace": "ns",
             "arguments": '{"a": 1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2",
             "output": [{"type": "input_text", "text": "two"},
                        {"type": "input_text", "text": "!"}]},
        ]
    )  # fmt: skip
    assert parsed.inference.body["messages"] == [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "On it.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "ns__g", "arguments": '{"a": 1}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two\n!"},
    ]


def test_text_formats_become_response_format() -> None:
    schema = {"type": "object", "properties": {}}
    spec = {"type": "json_schema", "name": "n", "schema": schema, "strict": True}
    parsed = parse(text={"format": spec})
    assert parsed.inference.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": schema, "strict": True},
    }
    assert parsed.echo.text_format == spec
    loose = parse(text={"format": {"type": "json_object"}, "verbosity": "low"})
    assert loose.inference.body["response_format"] == {"type": "json_object"}
    assert loose.dropped == ("text.verbosity",)


def test_allowed_tools_narrows_the_tools() -> None:
    tools = [
        {"type": "function", "name": "a"},
        {"type": "function", "name": "b"},
    ]
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "b"}],
    }
    body = parse(tools=tools, tool_choice=choice).inference.body
    assert [t["function"]["name"] for t in body["tools"]] == ["b"]
    assert body["tool_choice"] == "required"


def test_only_a_web_search_leaves_no_tools_and_no_tool_choice() -> None:
    body = parse(tools=[{"type": "web_search_preview"}], tool_choice="auto").inference.body
    assert "tools" not in body and "tool_choice" not in body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"background": True}, "background"),
        ({"prompt": {"id": "p"}}, "prompt"),
        ({"unknown_thing": 1}, "unknown_thing"),
        ({"input": 5}, "input"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),
        ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input.0.type"),
        ({"input": [{"role": "system", "content": [{"type": "input_image", "image_url": "u"}]}]},
         "input.0.content.0.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
         "input.0.content.0.image_url"),
        ({"input": [{"type": "function_call_output", "call_id": "c",
                     "output": [{"type": "input_image", "image_url": "u"}]}]},
         "input.0.output.0.type"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]},
         "tools.1.name"),
        ({"tools": [{"type": "namespace", "name": "n",
                     "tools": [{"type": "custom", "name": "c"}]}]},
         "tools.0.tools.0.type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema"),
        ({"reasoning": {"effort": "max"}}, "reasoning.effort"),
        ({"top_p": 1.5}, "top_p"),
        ({"stream": "yes"}, "stream"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({"preference": "fastest"}, "preference"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(body: dict[str, Any], param: str) -> None:
    error = refused(**body)
    assert error.param == param
    assert error.message.startswith(param)


def test_the_answer_maps_back_with_usage_classes_and_statuses() -> None:
    parsed = parse(
        tools=[{"type": "custom", "name": "patch"}, {"type": "function", "name": "f"}],
        metadata={"k": "v"},
    )
    completion = {
        "id": "chatcmpl-abc",
        "created": 5,
        "model": "m",
        "provider": "p",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {
                    "role": "assistant",
                    "content": "partial",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "function": {"name": "patch", "arguments": '{"input": "x"}'},
                        },
                        {"id": "call_2", "function": {"name": "f", "arguments": "{}"}},
                    ],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 5},
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
        "metadata": {"model_used": "m"},
    }
    response = to_response(completion, parsed)
    assert response["id"] == "resp_abc"
    assert response["object"] == "response"
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in response["output"]] == [
        "message",
        "custom_tool_call",
        "function_call",
    ]
    assert response["output"][0]["status"] == "incomplete"
    assert response["output"][1]["input"] == "x"
    assert response["output"][2]["id"] == "fc_2"
    assert response["usage"] == {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 5},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 12,
    }
    assert response["metadata"] == {"k": "v", "model_used": "m"}
    assert response["store"] is False


def test_usage_details_default_to_zero() -> None:
    completion = {"id": "chatcmpl-a", "choices": [], "usage": {"prompt_tokens": 2}}
    usage = to_response(completion, parse())["usage"]
    assert usage["input_tokens_details"] == {"cached_tokens": 0}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["total_tokens"] == 2


def test_a_call_without_an_id_gets_one() -> None:
    completion = {
        "id": "chatcmpl-q",
        "choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}}],
    }
    [item] = to_response(completion, parse(tools=[{"type": "function", "name": "f"}]))["output"]
    assert item["call_id"] == "call_q_0"
    assert item["id"] == "fc_q_0"
