"""The OpenAI chunk stream → Responses events: item bookkeeping, text then tool calls,
custom and namespaced tools, usage classes and metadata at the end, a break mid-stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from tollway.dialects.responses.request import ResponsesRequest, parse_responses
from tollway.dialects.responses.stream import ENDED_EARLY, ResponsesEvents

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "f", "parameters": {"type": "object"}},
    {"type": "custom", "name": "patch"},
    {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
]


def request(**extra: Any) -> ResponsesRequest:
    body = {"model": "chat-a", "input": "hi", "stream": True, "tools": TOOLS, **extra}
    return parse_responses(orjson.dumps(body))


async def frames(chunks: list[dict[str, Any]], *, done: bool = True) -> AsyncGenerator[bytes]:
    for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    if done:
        yield b"data: [DONE]\n\n"


def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": d, "finish_reason": finish}
    return {
        "id": "chatcmpl-x1",
        "created": 7,
        "model": "chat-a",
        "provider": "p",
        "choices": [choice],
    }


def call(index: int, call_id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        function["name"] = name
    entry: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        entry |= {"id": call_id, "type": "function"}
    return delta({"tool_calls": [entry]})


async def events(
    chunks: list[dict[str, Any]], parsed: ResponsesRequest | None = None, *, done: bool = True
) -> list[dict[str, Any]]:
    out = []
    translator = ResponsesEvents(parsed or request())
    async for raw in translator.translate(frames(chunks, done=done)):
        head, data = raw.decode().strip().split("\n")
        payload = orjson.loads(data.removeprefix("data: "))
        assert head == f"event: {payload['type']}"
        out.append(payload)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


USAGE = {
    "id": "chatcmpl-x1",
    "choices": [],
    "usage": {
        "prompt_tokens": 10,
        "completion_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}


async def test_text_then_a_function_a_custom_and_a_namespaced_call() -> None:
    got = await events(
        [
            delta({"role": "assistant", "content": "Let "}),
            delta({"content": "me"}),
            call(0, "call_a", "f", ""),
            call(0, None, None, '{"x": '),
            call(0, None, None, "1}"),
            call(1, "call_b", "patch", '{"input": "*** Begin'),
            call(1, None, None, ' Patch"}'),
            call(2, "call_c", "ns__g", "{}"),
            delta({}, "tool_calls"),
            USAGE,
            {"choices": [], "metadata": {"model_used": "chat-a"}},
        ]
    )
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert got[6]["text"] == "Let me"
    assert got[12] == {
        "type": "response.function_call_arguments.done",
        "sequence_number": 12,
        "item_id": "fc_a",
        "output_index": 1,
        "name": "f",
        "arguments": '{"x": 1}',
    }
    assert got[16]["input"] == "*** Begin Patch"
    final = got[-1]["response"]
    assert final["id"] == "resp_x1"
    assert final["created_at"] == 7
    assert final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == [
        "message",
        "function_call",
        "custom_tool_call",
        "function_call",
    ]
    assert [i["output_index"] for i in got if i["type"] == "response.output_item.done"] == [
        0,
        1,
        2,
        3,
    ]
    assert final["output"][2] == {
        "id": "ctc_b",
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_b",
        "name": "patch",
        "input": "*** Begin Patch",
    }
    assert (final["output"][3]["namespace"], final["output"][3]["name"]) == ("ns", "g")
    assert final["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 16,
    }
    assert final["metadata"] == {"model_used": "chat-a"}
    assert final["provider"] == "p"


async def test_length_is_incomplete_and_the_item_too() -> None:
    got = await events([delta({"content": "a b"}), delta({}, "length"), USAGE])
    final = got[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"


async def test_an_error_chunk_is_response_failed_with_what_streamed() -> None:
    error = {"error": {"message": "p: stream ended early", "type": "server_error"}}
    got = await events([delta({"content": "half"}), error], done=False)
    assert [e["type"] for e in got][-1] == "response.failed"
    assert sum(e["type"].endswith(("completed", "incomplete", "failed")) for e in got) == 1
    failed = got[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "p: stream ended early"}
    assert failed["usage"] is None


async def test_an_error_before_any_chunk_still_opens_the_response() -> None:
    got = await events([{"error": {"message": "boom"}}], done=False)
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]


async def test_a_stream_that_stops_short_still_ends_with_one_terminal_event() -> None:
    got = await events([delta({"content": "half"})], done=False)
    assert got[-1]["type"] == "response.failed"
    assert got[-1]["response"]["error"]["message"] == ENDED_EARLY


async def test_request_metadata_is_echoed_and_tollways_merged_in() -> None:
    parsed = request(metadata={"ticket": "T-1"}, max_output_tokens=5)
    got = await events(
        [delta({"content": "x"}, "stop"), {"choices": [], "metadata": {"model_used": "m"}}],
        parsed,
    )
    assert got[0]["response"]["metadata"] == {"ticket": "T-1"}
    assert got[0]["response"]["max_output_tokens"] == 5
    assert got[-1]["response"]["metadata"] == {"ticket": "T-1", "model_used": "m"}
