"""The mock's answers beyond plain text: n choices, tool calls, JSON formats, stop
sequences — deterministic, and framed as OpenAI frames them when streamed."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest

from tests.support.mock_server import running_mock
from tollway.providers.mock_choices import build_answer
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS, MockRejection, words_for
from tollway.providers.tokens import count_tokens

USER = [{"role": "user", "content": "plan a trip"}]
BOOKING: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "nights": {"type": "integer"},
        "budget": {"type": ["number", "null"]},
        "refundable": {"type": "boolean"},
        "class": {"type": "string", "enum": ["economy", "business"]},
        "note": {"type": "string"},
    },
    "required": ["city", "nights", "budget", "refundable", "class"],
}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "book", "parameters": BOOKING}},
    {"type": "function", "function": {"name": "noop"}},
]
BOOK = {"type": "function", "function": {"name": "book"}}


def answer(max_tokens: int | None = None, **fields: Any) -> Any:
    body = {"model": "m", "messages": USER, **fields}
    return build_answer(orjson.dumps(body), body, max_tokens)


def test_n_choices_differ_and_choice_zero_is_the_plain_reply() -> None:
    three = answer(n=3)
    words = [c.words for c in three.choices]
    assert words[0] == words_for("plan a trip", DEFAULT_REPLY_TOKENS)
    assert len(set(words)) == 3
    assert three.usage()["completion_tokens"] == 3 * DEFAULT_REPLY_TOKENS
    assert answer(n=3) == three  # a pure function of the request
    for bad in (0, 129, "2", True):
        with pytest.raises(MockRejection):
            answer(n=bad)


def test_tool_calls_fill_required_keys_by_type_with_distinct_ids() -> None:
    two = answer(n=2, tools=TOOLS, tool_choice=BOOK)
    calls = [c.tool_calls[0] for c in two.choices]
    assert {c.name for c in calls} == {"book"}
    assert len({c.id for c in calls}) == 2
    arguments = json.loads(calls[0].arguments)
    assert set(arguments) == {"city", "nights", "budget", "refundable", "class"}
    assert isinstance(arguments["city"], str)
    assert isinstance(arguments["nights"], int)
    assert isinstance(arguments["budget"], float)
    assert arguments["refundable"] is True
    assert arguments["class"] == "economy"
    assert two.choices[0].finish_reason == "tool_calls"
    assert two.choices[0].content is None
    assert two.choices[0].completion_tokens == count_tokens(calls[0].arguments)
    # Another request, other ids.
    other = answer(tools=TOOLS, tool_choice="required", messages=[*USER, *USER])
    assert other.choices[0].tool_calls[0].id not in {c.id for c in calls}


def test_when_the_mock_answers_in_text_instead_of_calling() -> None:
    assert not answer(tools=TOOLS, tool_choice="none").choices[0].tool_calls
    after_result = [*USER, {"role": "tool", "tool_call_id": "x", "content": "done"}]
    assert not answer(tools=TOOLS, messages=after_result).choices[0].tool_calls
    assert answer(tools=TOOLS, messages=after_result, tool_choice="required").choices[0].tool_calls
    too_small = answer(1, tools=TOOLS, tool_choice=BOOK)
    assert too_small.choices[0].tool_calls == ()
    assert too_small.choices[0].finish_reason == "length"
    with pytest.raises(MockRejection):
        answer(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})


def test_response_formats_answer_valid_json() -> None:
    loose = answer(response_format={"type": "json_object"}).choices[0]
    assert set(json.loads(loose.content)) == {"reply"}
    assert loose.completion_tokens == count_tokens(loose.content)
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": BOOKING}}
    strict = answer(response_format=schema).choices[0]
    assert set(json.loads(strict.content)) == {"city", "nights", "budget", "refundable", "class"}


def test_stop_sequences_cut_the_content() -> None:
    words = words_for("plan a trip", DEFAULT_REPLY_TOKENS)
    choice = answer(stop=["zzz", words[5]]).choices[0]
    assert choice.words == words[:5]
    assert choice.finish_reason == "stop"
    assert choice.stop_reason == words[5]
    assert choice.as_dict()["stop_reason"] == words[5]
    assert answer(stop="zzz").choices[0].stop_reason is None


def stream(base_url: str, **fields: Any) -> list[dict[str, Any]]:
    body = {"model": "m", "messages": USER, "stream": True, **fields}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        response = client.post("/chat/completions", json=body)
    return [
        orjson.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def test_streamed_tool_calls_and_choices() -> None:
    with running_mock() as base_url:
        chunks = stream(base_url, tools=TOOLS, tool_choice="required", n=2)
        whole = httpx.post(
            f"{base_url}/chat/completions",
            json={
                "model": "m",
                "messages": USER,
                "tools": TOOLS,
                "tool_choice": "required",
                "n": 2,
            },
        ).json()
        stopped = stream(base_url, stop=[words_for("plan a trip", 3)[2]])
    arguments: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                if "id" in call:
                    assert choice["delta"].get("role") == "assistant"
                arguments[choice["index"]] = arguments.get(choice["index"], "") + call[
                    "function"
                ].get("arguments", "")
            if choice["finish_reason"]:
                finishes[choice["index"]] = choice["finish_reason"]
    assert finishes == {0: "tool_calls", 1: "tool_calls"}
    for index in (0, 1):
        expected = whole["choices"][index]["message"]["tool_calls"][0]["function"]["arguments"]
        assert arguments[index] == expected
    finish = [c["choices"][0] for c in stopped if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[0]["finish_reason"] == "stop"
    assert finish[0]["stop_reason"] == words_for("plan a trip", 3)[2]
