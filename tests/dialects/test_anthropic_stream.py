"""The OpenAI chunk stream → Anthropic events: block bookkeeping, tool calls after text,
stop sequences, usage and metadata at the end, an error mid-stream."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from tollway.dialects.anthropic.stream import AnthropicEvents


async def frames(chunks: list[dict[str, Any]], *, done: bool = True) -> AsyncGenerator[bytes]:
    for chunk in chunks:
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    if done:
        yield b"data: [DONE]\n\n"


def delta(d: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": d, "finish_reason": finish, **extra}
    return {"id": "chatcmpl-x1", "model": "chat-a", "provider": "p", "choices": [choice]}


async def events(
    chunks: list[dict[str, Any]], stops: tuple[str, ...] = (), *, done: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    out = []
    async for raw in AnthropicEvents(stops).translate(frames(chunks, done=done)):
        head, data = raw.decode().strip().split("\n")
        out.append((head.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


async def test_text_then_two_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
    got = await events(
        [
            delta({"role": "assistant", "content": "Looking"}),
            delta({"tool_calls": [{"index": 0, **call}]}),
            delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": 1}'}}]}),
            delta({"tool_calls": [{"index": 1, **call, "id": "c2"}]}),
            delta({}, "tool_calls"),
            {
                "id": "chatcmpl-x1",
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5},
            },
            {"choices": [], "metadata": {"model_used": "chat-a"}},
        ]
    )
    names = [name for name, _ in got]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = got[0][1]["message"]
    assert start["id"] == "msg_x1"
    assert start["model"] == "chat-a"
    assert start["provider"] == "p"
    assert [p["index"] for n, p in got if n.startswith("content_block")] == [0, 0, 0, 1, 1, 1, 2, 2]
    assert got[5][1]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert got[6][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a": 1}'}
    assert got[8][1]["content_block"]["id"] == "c2"
    final = got[10][1]
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert final["usage"] == {
        "input_tokens": 7,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 5,
    }
    assert final["metadata"] == {"model_used": "chat-a"}


async def test_stop_sequence_reported_by_the_upstream() -> None:
    got = await events(
        [delta({"content": "a"}), delta({}, "stop", stop_reason="END")], stops=("END",)
    )
    assert got[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    # A stop reason the request did not ask for is an ordinary end of turn.
    got = await events([delta({"content": "a"}), delta({}, "stop", stop_reason="END")])
    assert got[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


async def test_an_upstream_error_mid_stream_is_an_error_event() -> None:
    broken = {"error": {"message": "eu-fast: stream ended early", "type": "server_error"}}
    got = await events([delta({"content": "a"}), broken], done=False)
    assert [name for name, _ in got][-1] == "error"
    assert got[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "eu-fast: stream ended early"},
    }
    assert "message_stop" not in [name for name, _ in got]
