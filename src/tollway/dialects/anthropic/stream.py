"""The gateway's OpenAI-shaped SSE relay → Anthropic's stream events, chunk by chunk.

`message_start` (usage so far: 0 — OpenAI upstreams report usage only at the end) and a
`ping` on the first chunk; text deltas in a `text` block, each tool call in its own
`tool_use` block (`input_json_delta`); at the end `message_delta` with the stop reason and
the billed usage (`input_tokens`, the cache classes and `output_tokens`, plus Tollway's
`metadata` when asked), then `message_stop`. An upstream failure mid-stream is an `error` event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from tollway.dialects.anthropic.errors import error_body
from tollway.dialects.anthropic.response import (
    message_id,
    stop_reason,
    usage_of,
    with_translation,
)
from tollway.observe.record import Translation


def event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class AnthropicEvents:
    """The state of one translated stream (which block is open, how it ended)."""

    def __init__(self, stops: tuple[str, ...], translation: Translation | None = None) -> None:
        self._stops = stops
        self._translation = translation
        self._started = False
        self._blocks = 0  # content blocks opened so far
        self._open: str | None = None  # "text" or "tool:<openai tool index>"
        self._finish: object = None
        self._matched: object = None
        self._has_tool_calls = False
        self._usage: object = None
        self._metadata: object = None

    async def translate(self, chunks: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
        async with aclosing(chunks):
            async for frame in chunks:
                if not frame.startswith(b"data: "):
                    continue
                data = frame[6:].strip()
                if data == b"[DONE]":
                    for out in self._close():
                        yield out
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(chunk, dict):
                    continue
                if isinstance(chunk.get("error"), dict):
                    message = str(chunk["error"].get("message", "upstream error"))[:500]
                    yield event("error", error_body(502, message))
                    return
                for out in self._chunk(chunk):
                    yield out

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(event("message_start", self._message_start(chunk)))
            out.append(event("ping", {"type": "ping"}))
        if "usage" in chunk:
            self._usage = chunk["usage"]
        if "metadata" in chunk:
            self._metadata = chunk["metadata"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # Anthropic has one answer per request
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
                self._matched = choice.get("stop_reason")
                out.extend(self._stop_block())
        return out

    def _message_start(self, chunk: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_of(None),
            "provider": chunk.get("provider"),
        }
        return {"type": "message_start", "message": message}

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open != "text":
                out.extend(self._stop_block())
                out.extend(self._start_block("text", {"type": "text", "text": ""}))
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            self._has_tool_calls = True
            function = call.get("function")
            if not isinstance(function, dict):
                function = {}
            key = f"tool:{call.get('index', 0)}"
            if self._open != key:
                out.extend(self._stop_block())
                block = {"type": "tool_use", "id": call.get("id"), "name": function.get("name")}
                out.extend(self._start_block(key, {**block, "input": {}}))
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                json_delta = {"type": "input_json_delta", "partial_json": arguments}
                out.append(self._block_delta(json_delta))
        return out

    def _start_block(self, key: str, block: dict[str, Any]) -> list[bytes]:
        self._open = key
        payload = {"type": "content_block_start", "index": self._blocks, "content_block": block}
        return [event("content_block_start", payload)]

    def _block_delta(self, delta: dict[str, Any]) -> bytes:
        payload = {"type": "content_block_delta", "index": self._blocks, "delta": delta}
        return event("content_block_delta", payload)

    def _stop_block(self) -> list[bytes]:
        if self._open is None:
            return []
        self._open = None
        index, self._blocks = self._blocks, self._blocks + 1
        return [event("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _close(self) -> list[bytes]:
        out = self._stop_block()
        reason, sequence = stop_reason(self._finish, self._matched, self._stops)
        if self._has_tool_calls and reason == "end_turn":
            reason = "tool_use"
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_of(self._usage),
        }
        if self._metadata is not None:
            delta["metadata"] = with_translation(self._metadata, self._translation)
        out.append(event("message_delta", delta))
        out.append(event("message_stop", {"type": "message_stop"}))
        return out
