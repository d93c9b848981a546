"""What the mock answers to a chat request, beyond plain text: `n` choices, tool calls,
`response_format` JSON and `stop` sequences — every one a pure function of the request.

- `n`: choice 0 is the plain reply; choice i > 0 draws its words from a hash of the last
  message and i, so the choices differ.
- Tools: when `tools` are given and `tool_choice` is not `"none"`, each choice calls one
  function — the named one (`{"type": "function", "function": {"name": …}}`), otherwise one
  picked by a hash of the last message. With `tool_choice` `"auto"` (or absent) the mock
  answers in text instead when the last message is a tool result, so a conversation ends.
  Arguments are a JSON object with the schema's `required` keys (all `properties` when none
  is required), each filled by its declared type. A call that would not fit `max_tokens` is
  answered with (truncated) text instead. Call ids hash the request, choice and call index.
- `response_format` `json_object`: `{"reply": "<words>"}`; `json_schema`: an object built
  from the schema like tool arguments.
- `stop`: the content is cut before the first stop sequence it contains;
  `finish_reason` is `"stop"` and the choice carries `stop_reason` (the matched sequence, as
  vLLM reports it).

Completion tokens: the content's whitespace-separated words plus each call's argument words
(`tollway.providers.tokens`), so the gateway's own count agrees, plus the reasoning tokens
of `reasoning_effort`; cached and reasoning tokens follow `tollway.providers.mock_usage`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from tollway.providers import mock_usage
from tollway.providers.mock_replies import (
    DEFAULT_REPLY_TOKENS,
    MockRejection,
    last_message_text,
    stable_hash,
    words_for,
)
from tollway.providers.mock_usage import reasoning_tokens
from tollway.providers.tokens import count_prompt_tokens, count_tokens

MAX_CHOICES = 128


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object, as text

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Choice:
    index: int
    words: tuple[str, ...]
    finish_reason: str
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str | None = None
    reasoning_tokens: int = 0  # thought, not sent (`tollway.providers.mock_usage`)

    @property
    def content(self) -> str | None:
        if self.tool_calls and not self.words:
            return None
        return " ".join(self.words)

    @property
    def completion_tokens(self) -> int:
        return self.answer_tokens + self.reasoning_tokens

    @property
    def answer_tokens(self) -> int:
        return len(self.words) + sum(count_tokens(c.arguments) for c in self.tool_calls)

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [c.as_dict() for c in self.tool_calls]
        return message

    def as_dict(self) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": self.index,
            "message": self.message(),
            "logprobs": None,
            "finish_reason": self.finish_reason,
        }
        if self.stop_reason is not None:
            choice["stop_reason"] = self.stop_reason
        return choice


@dataclass(frozen=True)
class Answer:
    """The deterministic answer to one chat request: its id, choices and prompt size."""

    id: str
    choices: tuple[Choice, ...]
    prompt_tokens: int

    def usage(self) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in self.choices)
        reasoning = sum(c.reasoning_tokens for c in self.choices)
        return mock_usage.usage(self.prompt_tokens, completion, reasoning)

    def completion(self, model: str, *, with_usage: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [c.as_dict() for c in self.choices],
        }
        if with_usage:
            payload["usage"] = self.usage()
        return payload


def build_answer(raw_body: bytes, body: Mapping[str, Any], max_tokens: int | None) -> Answer:
    messages = body["messages"]
    text = last_message_text(messages)
    stops = _stops(body.get("stop"))
    tools = _tools(body.get("tools"))
    forced = _forced_tool(body.get("tool_choice"), tools, messages)
    schema = _json_format(body.get("response_format"))
    choices = []
    for index in range(_choice_count(body.get("n"))):
        tool_calls: tuple[ToolCall, ...] = ()
        if forced is not None:
            tool = forced or tools[stable_hash(f"{text}\x00{index}".encode()) % len(tools)]
            call = _call(raw_body, index, tool, text)
            if max_tokens is None or count_tokens(call.arguments) <= max_tokens:
                tool_calls = (call,)
        if tool_calls:
            choices.append(Choice(index, (), "tool_calls", tool_calls))
            continue
        if schema is not None:
            words = tuple(_json_text(schema, text, index).split())
        else:
            words = words_for(text, DEFAULT_REPLY_TOKENS, index)
        choices.append(_text_choice(index, words, max_tokens, stops))
    effort = body.get("reasoning_effort")
    thought = [
        replace(c, reasoning_tokens=reasoning_tokens(effort, c.answer_tokens, max_tokens))
        for c in choices
    ]
    return Answer(
        id=f"chatcmpl-{stable_hash(raw_body):016x}",
        choices=tuple(thought),
        prompt_tokens=count_prompt_tokens(messages),
    )


def _text_choice(
    index: int, words: tuple[str, ...], max_tokens: int | None, stops: list[str]
) -> Choice:
    finish_reason = "stop"
    if max_tokens is not None and max_tokens < len(words):
        words, finish_reason = words[:max_tokens], "length"
    content = " ".join(words)
    hits = [(content.find(s), s) for s in stops if s in content]
    if hits:
        at, matched = min(hits)
        return Choice(index, tuple(content[:at].split()), "stop", stop_reason=matched)
    return Choice(index, words, finish_reason)


def _choice_count(value: object) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHOICES:
        raise MockRejection(400, f"'n' must be an integer from 1 to {MAX_CHOICES}")
    return value


def _stops(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise MockRejection(400, "'stop' must be a string or a list of non-empty strings")
    return list(value)


def _tools(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MockRejection(400, "'tools' must be a list")
    functions = []
    for tool in value:
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise MockRejection(400, "every tool must be {'type': 'function', 'function': {name}}")
        functions.append(function)
    return functions


def _forced_tool(
    choice: object, tools: list[dict[str, Any]], messages: list[Any]
) -> dict[str, Any] | None:
    """None: answer in text; {}: call a tool picked by hash; else the named function."""
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        for tool in tools:
            if tool["name"] == name:
                return tool
        raise MockRejection(400, f"tool_choice names an unknown function {name!r}")
    if choice == "required":
        return {}
    last = messages[-1] if messages else None
    answered = isinstance(last, dict) and last.get("role") == "tool"
    return None if answered else {}


def _call(raw_body: bytes, index: int, tool: dict[str, Any], text: str) -> ToolCall:
    arguments = _object_for(tool.get("parameters"), text, index)
    call_id = stable_hash(raw_body + f"\x00{index}\x000".encode())
    return ToolCall(f"call_{call_id:016x}", tool["name"], json.dumps(arguments))


def _object_for(schema: object, text: str, variant: int) -> dict[str, Any]:
    """An object with the schema's required keys (else all its properties), by type."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    required = schema.get("required") if isinstance(schema, dict) else None
    keys = [k for k in required if k in properties] if isinstance(required, list) else []
    keys = keys or list(properties)
    words = words_for(text, max(1, len(keys)), variant)
    return {key: _value_for(properties[key], words[i]) for i, key in enumerate(keys)}


def _value_for(schema: object, word: str) -> Any:
    if not isinstance(schema, dict):
        return word
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    values: dict[str, Any] = {
        "integer": len(word),
        "number": len(word) / 2,
        "boolean": True,
        "array": [],
        "object": {},
        "null": None,
    }
    return values.get(str(kind), word)


def _json_format(value: object) -> dict[str, Any] | None:
    """The schema to answer with ({} for json_object), or None for text."""
    if not isinstance(value, dict) or value.get("type") not in ("json_object", "json_schema"):
        return None
    if value["type"] == "json_object":
        return {}
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {}


def _json_text(schema: dict[str, Any], text: str, variant: int) -> str:
    if not schema.get("properties"):
        words = words_for(text, DEFAULT_REPLY_TOKENS - 1, variant)
        return json.dumps({"reply": " ".join(words)})
    return json.dumps(_object_for(schema, text, variant))


# -- streaming ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFrames:
    """One streamed answer framed as Server-Sent Events: every choice in turn, token by
    token, then the finish chunks and (when asked) the usage chunk."""

    model: str
    answer: Answer
    include_usage: bool
    cut_after: int | None
    created: int = field(default_factory=lambda: int(time.time()))

    def frame(self, choices: list[Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.answer.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        body = b"data: " + orjson.dumps(chunk) + b"\n\n"
        return {"type": "http.response.body", "body": body, "more_body": True}

    def token_events(self) -> Iterator[dict[str, Any]]:
        """One event per token (a content word or a piece of a call's arguments)."""
        for choice in self.answer.choices:
            for delta in _token_deltas(choice):
                yield self.frame([_delta_choice(choice.index, delta, None)])

    def closing_events(self) -> Iterator[dict[str, Any]]:
        for choice in self.answer.choices:
            finish = _delta_choice(choice.index, {}, choice.finish_reason)
            if choice.stop_reason is not None:
                finish["stop_reason"] = choice.stop_reason
            yield self.frame([finish])
        if self.include_usage:
            yield self.frame([], self.answer.usage())


def _delta_choice(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _pieces(text: str) -> list[str]:
    """Whitespace-separated pieces that concatenate back to `text` (single spaces)."""
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def _token_deltas(choice: Choice) -> Iterator[dict[str, Any]]:
    first = True
    for piece in _pieces(" ".join(choice.words)) if choice.words else []:
        yield {"role": "assistant", "content": piece} if first else {"content": piece}
        first = False
    for position, call in enumerate(choice.tool_calls):
        opening = {
            "index": position,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        head: dict[str, Any] = {"tool_calls": [opening]}
        if first:
            head = {"role": "assistant", "content": None, **head}
            first = False
        yield head
        for piece in _pieces(call.arguments):
            yield {"tool_calls": [{"index": position, "function": {"arguments": piece}}]}
