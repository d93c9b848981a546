"""An Anthropic Messages request → the gateway's internal chat request (OpenAI chat shape).

The translated body goes through the same parser as `POST /v1/chat/completions`, so the
same policy, routing, reservation and metering apply. Every field is either translated,
ignored (harmless hints: `cache_control`, `top_k`, `service_tier`, thinking blocks replayed
in the history, citations) or refused with a 400 naming it (`docs/anthropic.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tollway.errors import BadRequest
from tollway.gateway.request import InferenceRequest, parse_chat
from tollway.projects.policy import ROUTER_FIELDS

# Fields accepted and not forwarded (ROUTER_FIELDS are handled by the chat parser).
IGNORED_FIELDS = frozenset({"top_k", "service_tier", "anthropic_version"})
REFUSED_FIELDS = {
    "container": "containers (server-side code execution) are not supported",
    "mcp_servers": "MCP servers are not supported",
    "context_management": "context management is not supported",
    "output_format": "structured outputs are not supported on /v1/messages",
    "output_config": "output configuration is not supported on /v1/messages",
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
    }
)
KNOWN_FIELDS = TRANSLATED_FIELDS | IGNORED_FIELDS | set(ROUTER_FIELDS)


@dataclass(slots=True)
class MessagesRequest:
    """The internal request and what translating its answer back needs."""

    inference: InferenceRequest
    stop_sequences: tuple[str, ...]


def parse_messages(raw: bytes) -> MessagesRequest:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("malformed JSON body") from exc
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    for name in body:
        if name in REFUSED_FIELDS:
            raise BadRequest(f"{name}: {REFUSED_FIELDS[name]}", param=name)
        if name not in KNOWN_FIELDS:
            raise BadRequest(f"{name}: unknown field", param=str(name)[:64])
    chat: dict[str, Any] = {"model": body.get("model")}
    chat["max_tokens"] = _max_tokens(body.get("max_tokens"))
    chat["messages"] = _system(body.get("system")) + _messages(body.get("messages"))
    stops = _stop_sequences(body.get("stop_sequences"))
    if stops:
        chat["stop"] = list(stops)
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            chat[name] = _unit_number(name, value)
    _thinking(body.get("thinking"))
    user = _user(body.get("metadata"))
    if user is not None:
        chat["user"] = user
    tools = _tools(body.get("tools"))
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if choice is not None:
        chat.update(_tool_choice(choice, has_tools=bool(tools)))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream: must be a boolean", param="stream")
    if stream:
        # The closing message_delta carries the usage: always ask for it.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    for name in ROUTER_FIELDS:
        if name in body:
            chat[name] = body[name]
    inference = parse_chat(orjson.dumps(chat))
    inference.dialect_endpoint = "messages"
    return MessagesRequest(inference, stops)


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


def _thinking(value: object) -> None:
    if value is None or (isinstance(value, dict) and value.get("type") == "disabled"):
        return
    raise BadRequest(
        "thinking: extended thinking cannot be translated to the gateway's upstreams;"
        " omit it or send {'type': 'disabled'}",
        param="thinking",
    )


def _user(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("metadata: must be an object", param="metadata")
    user = value.get("user_id")
    if user is not None and not isinstance(user, str):
        raise BadRequest("metadata.user_id: must be a string", param="metadata.user_id")
    return user


def _system(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "system", "content": value}] if value else []
    if not isinstance(value, list):
        raise BadRequest("system: must be a string or a list of text blocks", param="system")
    texts = []
    for i, block in enumerate(value):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise BadRequest(f"system.{i}: only text blocks are supported", param="system")
        texts.append(_text(block, f"system.{i}"))
    return [{"role": "system", "content": "\n\n".join(texts)}] if texts else []


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"{where}.text: required, a string", param=f"{where}.text")
    return text


def _messages(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise BadRequest("messages: required, a non-empty list", param="messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise BadRequest(f"{where}: must be an object", param=where)
        role = message.get("role")
        content = message.get("content")
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: must be 'user' or 'assistant'", param=f"{where}.role")
        if isinstance(content, str):
            out.append({"role": role, "content": content})
        elif isinstance(content, list):
            translate = _user_blocks if role == "user" else _assistant_blocks
            out.extend(translate(content, where))
        else:
            raise BadRequest(
                f"{where}.content: must be a string or a list of content blocks",
                param=f"{where}.content",
            )
    return out


def _block_type(block: object, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise BadRequest(f"{where}: must be a content block with a 'type'", param=where)
    return str(block["type"])


def _unsupported(kind: str, where: str) -> BadRequest:
    return BadRequest(
        f"{where}.type: '{kind[:64]}' content blocks cannot be translated on this gateway",
        param=f"{where}.type",
    )


def _user_blocks(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """Tool results become `tool` messages first (they must follow the assistant's calls);
    text and images become one user message after them."""
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            tool_messages.append(_tool_result(block, at))
        else:
            raise _unsupported(kind, at)
    out = list(tool_messages)
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise BadRequest(
                f"{where}.source: base64 images need 'media_type' and 'data'",
                param=f"{where}.source",
            )
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise BadRequest(
        f"{where}.source: only base64 and url image sources can be translated",
        param=f"{where}.source",
    )


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.tool_use_id: required, a string", param=f"{where}.tool_use_id")
    content = block.get("content", "")
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            at = f"{where}.content.{k}"
            if _block_type(part, at) != "text":
                raise BadRequest(
                    f"{at}.type: only text can be returned in a tool result on this gateway",
                    param=f"{at}.type",
                )
            texts.append(_text(part, at))
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise BadRequest(
            f"{where}.content: must be a string or a list of text blocks",
            param=f"{where}.content",
        )
    if block.get("is_error") is True:
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _assistant_blocks(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at)
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_use(block, at))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # replayed history of a model that thought: nothing to forward
        else:
            raise _unsupported(kind, at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return [message]


def _tool_use(block: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.id: required, a string", param=f"{where}.id")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}.name: required, a string", param=f"{where}.name")
    if not isinstance(arguments, dict):
        raise BadRequest(f"{where}.input: must be an object", param=f"{where}.input")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def _tools(value: object) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest("tools: must be a list", param="tools")
    tools = []
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise BadRequest(f"{where}: must be an object", param=where)
        kind = tool.get("type", "custom")
        if kind != "custom":
            raise BadRequest(
                f"{where}.type: server and Anthropic-defined tools ('{str(kind)[:64]}')"
                " cannot be translated; only custom tools with an input_schema",
                param=f"{where}.type",
            )
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}.name: required, a string", param=f"{where}.name")
        if not isinstance(schema, dict):
            raise BadRequest(
                f"{where}.input_schema: required, a JSON schema object",
                param=f"{where}.input_schema",
            )
        function: dict[str, Any] = {"name": name, "parameters": schema}
        description = tool.get("description")
        if isinstance(description, str):
            function["description"] = description
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(value: object, *, has_tools: bool) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(value, dict) or kind not in ("auto", "any", "tool", "none"):
        raise BadRequest(
            "tool_choice.type: must be 'auto', 'any', 'tool' or 'none'", param="tool_choice.type"
        )
    if kind != "none" and not has_tools:
        raise BadRequest("tool_choice: requires tools", param="tool_choice")
    out: dict[str, Any] = {}
    if kind == "tool":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("tool_choice.name: required, a string", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if value.get("disable_parallel_tool_use") is True and has_tools:
        out["parallel_tool_calls"] = False
    if kind == "none" and not has_tools:
        out.pop("tool_choice")  # nothing to choose from: OpenAI refuses a lone tool_choice
    return out
