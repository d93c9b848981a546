"""The gateway's OpenAI-shaped SSE relay → Responses stream events, chunk by chunk.

Every event is `event: <type>` plus a JSON `data` carrying `type` and a `sequence_number`
rising from 0. On the first chunk: `response.created`, `response.in_progress`. Text opens a
`message` item (`response.output_item.added`, `response.content_part.added`), streams
`response.output_text.delta` and closes with `response.output_text.done`,
`response.content_part.done`, `response.output_item.done`; each tool call is a
`function_call` item (`response.function_call_arguments.delta` / `.done`) or, for a custom
tool, a `custom_tool_call` item (its input in one `response.custom_tool_call_input.delta`
/ `.done`, since it is known only once the arguments are whole). The end is exactly one of
`response.completed`, `response.incomplete` (the completion bound was reached) or
`response.failed` (the upstream broke mid-stream), carrying the whole response object with
the billed usage. There is no `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson

from tollway.dialects.responses.request import ResponsesRequest
from tollway.dialects.responses.response import (
    call_id_of,
    call_item,
    envelope,
    message_item,
    message_item_id,
    output_text,
    status_of,
    usage_of,
)
from tollway.dialects.responses.tools import ToolName, custom_input

ENDED_EARLY = "the upstream stream ended before its end"


@dataclass(slots=True)
class _OpenItem:
    """The output item being streamed: a message (`slot` None) or the tool call `slot`."""

    index: int  # output_index
    item_id: str
    slot: int | None = None
    call_id: str = ""
    known: ToolName = field(default_factory=lambda: ToolName(""))
    pieces: list[str] = field(default_factory=list)


class ResponsesEvents:
    """The state of one translated stream."""

    def __init__(self, parsed: ResponsesRequest) -> None:
        self._parsed = parsed
        self._sequence = 0
        self._head: dict[str, Any] = {}
        self._started = False
        self._output: list[dict[str, Any]] = []  # items done so far
        self._open: _OpenItem | None = None
        self._finish: object = None
        self._usage: object = None
        self._metadata: object = None

    async def translate(self, chunks: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
        async with aclosing(chunks):
            async for frame in chunks:
                if not frame.startswith(b"data: "):
                    continue
                data = frame[6:].strip()
                if data == b"[DONE]":
                    for out in self._complete():
                        yield out
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(chunk, dict):
                    continue
                if isinstance(chunk.get("error"), dict):
                    for out in self._failed(str(chunk["error"].get("message", "upstream error"))):
                        yield out
                    return
                for out in self._chunk(chunk):
                    yield out
        # The relay ends with [DONE] or an error chunk unless the client went away; should it
        # ever stop short, the client still gets a terminal event.
        for out in self._failed(ENDED_EARLY):
            yield out

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        self._head = {k: chunk.get(k) for k in ("id", "created", "model", "provider")}
        response = envelope(self._parsed, self._head, status="in_progress", output=[])
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def _chunk(self, chunk: dict[str, Any]) -> list[bytes]:
        out = self._start(chunk)
        if "usage" in chunk:
            self._usage = chunk["usage"]
        if "metadata" in chunk:
            self._metadata = chunk["metadata"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # a response has one answer
            delta = choice.get("delta")
            if isinstance(delta, dict):
                out.extend(self._delta(delta))
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]
                out.extend(self._close())
        return out

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._open is None or self._open.slot is not None:
                out.extend(self._close())
                out.extend(self._open_message())
            assert self._open is not None
            self._open.pieces.append(text)
            out.append(self._event("response.output_text.delta", **self._at(), delta=text))
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out.extend(self._call_delta(call))
        return out

    def _at(self, content: bool = True) -> dict[str, Any]:
        assert self._open is not None
        at: dict[str, Any] = {"item_id": self._open.item_id, "output_index": self._open.index}
        if content:
            at["content_index"] = 0
        return at

    def _open_message(self) -> list[bytes]:
        item_id = message_item_id(self._head.get("id"))
        if self._output:  # a second message item in one response: keep ids unique
            item_id = f"{item_id}_{len(self._output)}"
        self._open = _OpenItem(len(self._output), item_id)
        item = message_item(item_id, "", None, "in_progress")
        item["content"] = []
        at = self._at()
        return [
            self._event("response.output_item.added", output_index=self._open.index, item=item),
            self._event("response.content_part.added", **at, part=output_text("")),
        ]

    def _call_delta(self, call: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        slot = call.get("index", 0)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        if self._open is None or self._open.slot != slot:
            out.extend(self._close())
            call_id = call_id_of(call.get("id"), self._head.get("id"), slot)
            known = self._parsed.tools.of(function.get("name"))
            item = call_item(call_id, known, "", status="in_progress")
            self._open = _OpenItem(len(self._output), item["id"], slot, call_id, known)
            index = len(self._output)
            out.append(self._event("response.output_item.added", output_index=index, item=item))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._open.pieces.append(arguments)
            if not self._open.known.custom:  # a custom tool's input is known only at the end
                kind = "response.function_call_arguments.delta"
                out.append(self._event(kind, **self._at(content=False), delta=arguments))
        return out

    def _close(self) -> list[bytes]:
        """Close the open item, if any: its `.done` events, then `output_item.done`."""
        item, self._open = self._open, None
        if item is None:
            return []
        at = {"item_id": item.item_id, "output_index": item.index}
        whole = "".join(item.pieces)
        out: list[bytes] = []
        if item.slot is None:
            status, _ = status_of(self._finish)
            done = message_item(item.item_id, whole, None, status)
            part = done["content"][0]
            at["content_index"] = 0
            out.append(self._event("response.output_text.done", **at, text=whole, logprobs=[]))
            out.append(self._event("response.content_part.done", **at, part=part))
        else:
            done = call_item(item.call_id, item.known, whole)
            if item.known.custom:
                text = custom_input(whole)
                out.append(self._event("response.custom_tool_call_input.delta", **at, delta=text))
                out.append(self._event("response.custom_tool_call_input.done", **at, input=text))
            else:
                at |= {"name": item.known.name, "arguments": whole}
                out.append(self._event("response.function_call_arguments.done", **at))
        self._output.append(done)
        out.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return out

    def _complete(self) -> list[bytes]:
        out = self._start({})
        out.extend(self._close())
        status, incomplete = status_of(self._finish)
        response = envelope(
            self._parsed,
            self._head,
            status=status,
            output=self._output,
            usage=usage_of(self._usage),
            incomplete=incomplete,
            tollway_metadata=self._metadata,
        )
        out.append(self._event(f"response.{status}", response=response))
        return out

    def _failed(self, message: str) -> list[bytes]:
        out = self._start({})
        error = {"code": "server_error", "message": message[:500]}
        response = envelope(
            self._parsed,
            self._head,
            status="failed",
            output=self._output,
            error=error,
            tollway_metadata=self._metadata,
        )
        out.append(self._event("response.failed", response=response))
        return out
