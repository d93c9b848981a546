"""A Responses request → the gateway's internal chat request (OpenAI chat shape).

The translated body goes through the same parser as `POST /v1/chat/completions`, so the same
policy, routing, reservation and metering apply. Every top-level field is translated, accepted
and dropped (named in `dropped`: hints with no chat equivalent whose absence changes no
answer), or refused with a 400 naming it (`docs/responses.md`). Tollway stores no responses:
`previous_response_id`, `conversation` and `background` need stored state and are refused;
`store` is accepted and nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tollway.dialects.responses.items import input_messages
from tollway.dialects.responses.tools import Tools, parse_tool_choice, parse_tools
from tollway.errors import BadRequest, excerpt
from tollway.frozen import frozen
from tollway.gateway.request import InferenceRequest, parse_chat
from tollway.jsonbody import parse_json_body
from tollway.projects.policy import ROUTER_FIELDS

# Accepted and not forwarded; named in `dropped` when the client set them.
DROPPED_FIELDS = frozenset(
    {
        "include",  # extra output data (encrypted reasoning, logprobs): never produced here
        "prompt_cache_key",  # a cache-routing hint of OpenAI's
        "prompt_cache_retention",
        "client_metadata",  # Codex's per-turn telemetry
        "service_tier",
        "stream_options",  # include_obfuscation: no obfuscation padding is sent
        "max_tool_calls",  # bounds built-in tool calls: none run here
        "truncation",  # nothing is truncated: a prompt that does not fit is refused
        "store",  # nothing is stored (see previous_response_id)
    }
)
# Refused unless absent or null (or false, for background).
STATEFUL_FIELDS = {
    "previous_response_id": "Tollway does not store responses, so a conversation cannot be"
    " continued by id; send the whole conversation in 'input'",
    "conversation": "Tollway does not store conversations; send the whole conversation in 'input'",
    "background": "background responses need stored responses, which Tollway does not keep",
    "prompt": "stored prompt templates are not supported",
    "top_logprobs": "log probabilities are not supported on /v1/responses",
}
TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "metadata",
        "user",
        "safety_identifier",
        "stream",
    }
)
KNOWN_FIELDS = TRANSLATED_FIELDS | DROPPED_FIELDS | set(STATEFUL_FIELDS) | set(ROUTER_FIELDS)
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
METADATA_PAIRS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512


@frozen
class Echo:
    """What a response object repeats of its request, as OpenAI's does."""

    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    parallel_tool_calls: bool
    reasoning_effort: str | None
    temperature: float | None
    text_format: dict[str, Any]
    tool_choice: object
    tools: list[Any]
    top_p: float | None
    user: str | None

    def fields(self) -> dict[str, Any]:
        return {
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "parallel_tool_calls": self.parallel_tool_calls,
            "previous_response_id": None,
            "reasoning": {"effort": self.reasoning_effort, "summary": None},
            "store": False,  # nothing is stored, whatever the request asked
            "temperature": self.temperature,
            "text": {"format": self.text_format},
            "tool_choice": self.tool_choice,
            "tools": self.tools,
            "top_p": self.top_p,
            "truncation": "disabled",
            "user": self.user,
        }


@dataclass(slots=True)
class ResponsesRequest:
    """The internal request and what translating its answer back needs."""

    inference: InferenceRequest
    tools: Tools
    echo: Echo
    dropped: tuple[str, ...]  # field names only, never a value (safe to log)


def parse_responses(raw: bytes) -> ResponsesRequest:
    body = parse_json_body(raw)  # strict: a lone surrogate is a 400 naming its field
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    dropped: list[str] = []
    for name, value in body.items():
        if name not in KNOWN_FIELDS:
            raise BadRequest(f"{excerpt(name)}: unknown field", param=str(name)[:64])
        if name in STATEFUL_FIELDS and value is not None and value is not False:
            raise BadRequest(f"{name}: {STATEFUL_FIELDS[name]}", param=name)
        if name in DROPPED_FIELDS and value is not None:
            dropped.append(name)
    instructions = _optional_string(body, "instructions")
    messages = input_messages(body.get("input"))
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = parse_tools(body.get("tools"))
    dropped.extend(tools.dropped)
    if tools.functions:
        chat["tools"] = list(tools.functions)
    chat.update(parse_tool_choice(body.get("tool_choice"), tools))
    if not chat.get("tools"):
        chat.pop("tools", None)  # `allowed_tools` may leave none
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise BadRequest("parallel_tool_calls: must be a boolean", param="parallel_tool_calls")
    if parallel is not None and "tools" in chat:
        chat["parallel_tool_calls"] = parallel  # OpenAI refuses it without tools
    max_output = _max_output_tokens(body.get("max_output_tokens"))
    if max_output is not None:
        chat["max_tokens"] = max_output
    temperature = _number(body, "temperature", 2)
    top_p = _number(body, "top_p", 1)
    for name, number in (("temperature", temperature), ("top_p", top_p)):
        if number is not None:
            chat[name] = number
    text_format = _text(body.get("text"), chat, dropped)
    effort = _reasoning(body.get("reasoning"), dropped)
    if effort is not None:
        chat["reasoning_effort"] = effort
    user = _optional_string(body, "user") or _optional_string(body, "safety_identifier")
    if user is not None:
        chat["user"] = user
    if _stream(body.get("stream")):
        chat["stream"] = True  # the closing event carries the usage: always ask for it
        chat["stream_options"] = {"include_usage": True}
    for name in ROUTER_FIELDS:
        if name in body:
            chat[name] = body[name]
    inference = parse_chat(orjson.dumps(chat))
    inference.dialect_endpoint = "responses"
    echo = Echo(
        instructions=instructions,
        max_output_tokens=max_output,
        metadata=_metadata(body.get("metadata")),
        parallel_tool_calls=parallel is not False,
        reasoning_effort=effort,
        temperature=temperature,
        text_format=text_format,
        tool_choice=body.get("tool_choice") or "auto",
        tools=body.get("tools") or [],
        top_p=top_p,
        user=user,
    )
    return ResponsesRequest(inference, tools, echo, tuple(dropped))


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string", param=name)
    return value


def _max_output_tokens(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("max_output_tokens: must be a positive integer", param="max_output_tokens")
    return value


def _number(body: dict[str, Any], name: str, upper: int) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= upper:
        raise BadRequest(f"{name}: must be a number from 0 to {upper}", param=name)
    return value


def _stream(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest("stream: must be a boolean", param="stream")
    return value


def _text(value: object, chat: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """`text.format` → `response_format`; the format as the response repeats it."""
    if value is None:
        return {"type": "text"}
    if not isinstance(value, dict):
        raise BadRequest("text: must be an object", param="text")
    for name in value:
        if name == "verbosity":
            dropped.append("text.verbosity")
        elif name != "format":
            raise BadRequest(f"text.{excerpt(name)}: unknown field", param="text")
    fmt = value.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return {"type": "text"}
    if not isinstance(fmt, dict):
        raise BadRequest("text.format: must be an object", param="text.format")
    if kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
        return fmt
    if kind != "json_schema":
        raise BadRequest(
            "text.format.type: must be 'text', 'json_object' or 'json_schema'",
            param="text.format.type",
        )
    name, schema = fmt.get("name"), fmt.get("schema")
    if not isinstance(name, str) or not name:
        raise BadRequest("text.format.name: required, a string", param="text.format.name")
    if not isinstance(schema, dict):
        raise BadRequest(
            "text.format.schema: required, a JSON schema object", param="text.format.schema"
        )
    spec: dict[str, Any] = {"name": name, "schema": schema}
    for extra in ("description", "strict"):
        if fmt.get(extra) is not None:
            spec[extra] = fmt[extra]
    chat["response_format"] = {"type": "json_schema", "json_schema": spec}
    return fmt


def _reasoning(value: object, dropped: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("reasoning: must be an object", param="reasoning")
    for name in value:
        if name in ("summary", "generate_summary"):
            if value[name] is not None:
                dropped.append(f"reasoning.{name}")
        elif name != "effort":
            raise BadRequest(f"reasoning.{excerpt(name)}: unknown field", param="reasoning")
    effort = value.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise BadRequest(
            f"reasoning.effort: must be one of {', '.join(EFFORTS)}", param="reasoning.effort"
        )
    return effort


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("metadata: must be an object of strings", param="metadata")
    if len(value) > METADATA_PAIRS:
        raise BadRequest(f"metadata: at most {METADATA_PAIRS} pairs", param="metadata")
    for key, item in value.items():
        if len(key) > METADATA_KEY_CHARS or not isinstance(item, str):
            raise BadRequest(
                f"metadata.{excerpt(key)}: keys up to {METADATA_KEY_CHARS} characters,"
                " values strings",
                param="metadata",
            )
        if len(item) > METADATA_VALUE_CHARS:
            raise BadRequest(
                f"metadata.{excerpt(key)}: at most {METADATA_VALUE_CHARS} characters",
                param="metadata",
            )
    return value
