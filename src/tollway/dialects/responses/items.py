"""Responses `input` (a string, or a list of items) → chat messages.

- a string → one user message;
- `message` items (or bare `{role, content}`): `user` → user; `system` and `developer` →
  system (OpenAI-compatible servers rarely know `developer`); `assistant` → assistant.
  Parts: `input_text`/`output_text` → text, `refusal` → text, `input_image` (URL or data URL)
  → `image_url`; `input_file`, `input_audio` and file ids → a 400 naming the part;
- `function_call` / `custom_tool_call` → a tool call of an assistant message (consecutive
  calls, and the assistant text just before them, make one message, as chat requires);
- `function_call_output` / `custom_tool_call_output` → a `tool` message (output text parts
  joined; an image in a tool output is a 400: chat `tool` messages carry text);
- `reasoning` → dropped (a chat upstream cannot take it back);
- anything else (`item_reference`, built-in tool calls, …) → a 400 naming `input.N.type`.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.dialects.responses.tools import CUSTOM_INPUT, chat_name
from tollway.errors import BadRequest, excerpt

ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def input_messages(value: object) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise BadRequest("input: required, a string or a non-empty list of items", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise BadRequest(f"{where}: must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, where))
        elif kind in ("function_call", "custom_tool_call"):
            _append_call(out, _call(item, where, custom=kind == "custom_tool_call"))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out.append(_output(item, where))
        elif kind == "reasoning":
            continue
        else:
            raise BadRequest(
                f"{where}.type: '{excerpt(kind)}' items cannot be translated on this gateway",
                param=f"{where}.type",
            )
    if not out:
        raise BadRequest("input: no message left to send (only reasoning items)", param="input")
    return out


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    sent = item.get("role")
    role = ROLES.get(sent) if isinstance(sent, str) else None
    if role is None:
        raise BadRequest(
            f"{where}.role: must be 'user', 'assistant', 'system' or 'developer'",
            param=f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise BadRequest(
            f"{where}.content: must be a string or a list of content parts",
            param=f"{where}.content",
        )
    parts = [_part(part, f"{where}.content.{j}") for j, part in enumerate(content)]
    if role == "user":
        return {"role": role, "content": parts}
    texts = []
    for j, part in enumerate(parts):
        if part["type"] != "text":
            at = f"{where}.content.{j}.type"
            raise BadRequest(f"{at}: only text in a {sent} message", param=at)
        texts.append(part["text"])
    return {"role": role, "content": "".join(texts) if role == "assistant" else "\n\n".join(texts)}


def _part(part: object, where: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(part, dict) or not isinstance(kind, str):
        raise BadRequest(f"{where}: must be a content part with a 'type'", param=where)
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": _string(part, "text", where)}
    if kind == "refusal":
        return {"type": "text", "text": _string(part, "refusal", where)}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise BadRequest(
                f"{where}.image_url: required, a URL or data URL (file ids cannot be resolved"
                " by this gateway)",
                param=f"{where}.image_url",
            )
        image: dict[str, Any] = {"url": url}
        detail = part.get("detail")
        if detail in ("low", "high"):
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    raise BadRequest(
        f"{where}.type: '{excerpt(kind)}' content cannot be translated on this gateway",
        param=f"{where}.type",
    )


def _string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{name}: required, a string", param=f"{where}.{name}")
    return value


def _call(item: dict[str, Any], where: str, *, custom: bool) -> dict[str, Any]:
    call_id = _string(item, "call_id", where)
    name = _string(item, "name", where)
    if custom:
        arguments = orjson.dumps({CUSTOM_INPUT: _string(item, "input", where)}).decode()
        namespace = None
    else:
        arguments = _string(item, "arguments", where)
        namespace = item.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise BadRequest(f"{where}.namespace: must be a string", param=f"{where}.namespace")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": chat_name(name, namespace), "arguments": arguments},
    }


def _append_call(out: list[dict[str, Any]], call: dict[str, Any]) -> None:
    """Onto the assistant message just before (its text, or its other calls), else a new one."""
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant":
        if not last.get("content"):
            last["content"] = None
        last.setdefault("tool_calls", []).append(call)
        return
    out.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = _string(item, "call_id", where)
    output = item.get("output")
    if isinstance(output, list):
        texts = []
        for j, part in enumerate(output):
            translated = _part(part, f"{where}.output.{j}")
            if translated["type"] != "text":
                at = f"{where}.output.{j}.type"
                raise BadRequest(f"{at}: only text can be returned in a tool output", param=at)
            texts.append(translated["text"])
        output = "\n".join(texts)
    elif not isinstance(output, str):
        raise BadRequest(
            f"{where}.output: required, a string or a list of text parts",
            param=f"{where}.output",
        )
    return {"role": "tool", "tool_call_id": call_id, "content": output}
