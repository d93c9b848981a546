"""An Anthropic Messages request → the gateway's internal chat request (OpenAI chat shape).

The translated body goes through the same parser as `POST /v1/chat/completions`, so the
same policy, routing, reservation and metering apply. Every field is translated, accepted and
dropped, or refused with a 400 naming it (`docs/anthropic.md`); what was translated or
dropped beyond the plain mapping is noted in the request's `Translation` (metadata, request
log, log line). The blocks are translated in `content.py`, the tools in `tools.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tollway.dialects.anthropic.content import chat_messages, system_texts
from tollway.dialects.anthropic.notes import Notes
from tollway.dialects.anthropic.tools import chat_tool_choice, chat_tools
from tollway.errors import BadRequest, excerpt
from tollway.gateway.request import InferenceRequest, parse_chat
from tollway.jsonbody import parse_json_body
from tollway.observe.record import Translation
from tollway.projects.policy import ROUTER_FIELDS

# Accepted and not forwarded (named in the translation when set).
DROPPED_FIELDS = frozenset(
    {"top_k", "service_tier", "context_management", "inference_geo", "container_upload"}
)
IGNORED_FIELDS = frozenset({"anthropic_version"})  # a header's value sent in the body
REFUSED_FIELDS = {
    "container": "containers (server-side code execution) are not supported",
    "mcp_servers": "MCP servers run inside Anthropic's service and are not supported",
}
TRANSLATED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "temperature",
        "top_p",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
        "output_format",
    }
)
KNOWN_FIELDS = TRANSLATED_FIELDS | DROPPED_FIELDS | IGNORED_FIELDS | set(ROUTER_FIELDS)
# Anthropic's effort → chat `reasoning_effort` (the values every reasoning upstream knows).
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
THINKING_TYPES = ("enabled", "adaptive", "disabled")


def effort_of_budget(budget: int) -> str:
    """A thinking budget in tokens → the nearest reasoning effort."""
    if budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


@dataclass(slots=True)
class MessagesRequest:
    """The internal request and what translating its answer back needs."""

    inference: InferenceRequest
    stop_sequences: tuple[str, ...]
    translation: Translation


def parse_messages(raw: bytes, *, counting: bool = False) -> MessagesRequest:
    """`counting`: a `count_tokens` body (no `max_tokens`; nothing is generated)."""
    body = parse_json_body(raw)  # strict: a lone surrogate is a 400 naming its field
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    notes = Notes()
    for name in body:
        if name in REFUSED_FIELDS:
            raise BadRequest(f"{name}: {REFUSED_FIELDS[name]}", param=name)
        if name not in KNOWN_FIELDS:
            raise BadRequest(f"{excerpt(str(name), 64)}: unknown field", param=str(name)[:64])
        if name in DROPPED_FIELDS and body[name] is not None:
            notes.drop(name)
    chat: dict[str, Any] = {"model": body.get("model")}
    chat["max_tokens"] = 1 if counting else _max_tokens(body.get("max_tokens"))
    system = system_texts(body.get("system"), notes)
    inline_system, messages = chat_messages(body.get("messages"), notes)
    system += inline_system
    chat["messages"] = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    chat["messages"] += messages
    stops = _stop_sequences(body.get("stop_sequences"))
    if stops:
        chat["stop"] = list(stops)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            chat[name] = _unit_number(name, value)
    _reasoning(body.get("thinking"), body.get("output_config"), chat, notes)
    _output_format(body, chat, notes)
    user = _user(body.get("metadata"))
    if user is not None:
        chat["user"] = user
    tools = chat_tools(body.get("tools"), notes)
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if choice is not None:
        chat.update(chat_tool_choice(choice, has_tools=bool(tools)))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: must be a boolean", param="stream")
    if stream and not counting:
        # The closing message_delta carries the usage: always ask for it.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    for name in ROUTER_FIELDS:
        if name in body:
            chat[name] = body[name]
    inference = parse_chat(orjson.dumps(chat))
    inference.dialect_endpoint = "messages"
    return MessagesRequest(inference, stops, notes.frozen())


def _max_tokens(value: object) -> int:
    if value is None:
        raise BadRequest("max_tokens: required", param="max_tokens")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("max_tokens: must be a positive integer", param="max_tokens")
    return value


def _unit_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise BadRequest(f"{name}: must be a number from 0 to 1", param=name)
    return value


def _stop_sequences(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise BadRequest(
            "stop_sequences: must be a list of non-empty strings", param="stop_sequences"
        )
    return tuple(value)


def _reasoning(thinking: object, config: object, chat: dict[str, Any], notes: Notes) -> None:
    """`output_config.effort`, else an enabled thinking budget → `reasoning_effort`;
    adaptive thinking without an effort leaves the upstream's default (dropped)."""
    budget_effort = _thinking(thinking, notes)
    effort = _effort(config)
    if effort is not None:
        chat["reasoning_effort"] = EFFORTS[effort]
        notes.translate("output_config.effort → reasoning_effort")
    elif budget_effort is not None:
        chat["reasoning_effort"] = budget_effort
        notes.translate("thinking.budget_tokens → reasoning_effort")
    elif isinstance(thinking, dict) and thinking.get("type") == "adaptive":
        notes.drop("thinking")


def _thinking(value: object, notes: Notes) -> str | None:
    """The effort an enabled thinking budget stands for (None: no budget)."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or kind not in THINKING_TYPES:
        raise BadRequest(
            "thinking.type: must be 'enabled', 'adaptive' or 'disabled'", param="thinking.type"
        )
    if value.get("display") is not None:
        notes.drop("thinking.display")  # no thinking blocks come back: nothing to display
    if kind != "enabled":
        return None
    budget = value.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise BadRequest(
            "thinking.budget_tokens: required with type 'enabled', a positive integer",
            param="thinking.budget_tokens",
        )
    return effort_of_budget(budget)


def _effort(config: object) -> str | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        raise BadRequest("output_config: must be an object", param="output_config")
    for name in config:
        if name not in ("effort", "format"):
            raise BadRequest(
                f"output_config.{excerpt(str(name), 64)}: unknown field", param="output_config"
            )
    effort = config.get("effort")
    if effort is not None and effort not in EFFORTS:
        raise BadRequest(
            f"output_config.effort: must be one of {', '.join(EFFORTS)}",
            param="output_config.effort",
        )
    return effort


def _output_format(body: dict[str, Any], chat: dict[str, Any], notes: Notes) -> None:
    """Structured outputs (`output_config.format`, or the older `output_format`) → a chat
    `response_format` of type json_schema."""
    config = body.get("output_config")
    for where, value in (
        ("output_config.format", config.get("format") if isinstance(config, dict) else None),
        ("output_format", body.get("output_format")),
    ):
        if value is None:
            continue
        schema = value.get("schema") if isinstance(value, dict) else None
        if not isinstance(value, dict) or value.get("type") != "json_schema":
            raise BadRequest(f"{where}.type: must be 'json_schema'", param=f"{where}.type")
        if not isinstance(schema, dict):
            raise BadRequest(
                f"{where}.schema: required, a JSON schema object", param=f"{where}.schema"
            )
        spec = {"name": "output", "schema": schema, "strict": True}
        chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        notes.translate(f"{where} → response_format")


def _user(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("metadata: must be an object", param="metadata")
    user = value.get("user_id")
    if user is not None and not isinstance(user, str):
        raise BadRequest("metadata.user_id: must be a string", param="metadata.user_id")
    return user
