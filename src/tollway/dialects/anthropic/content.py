"""Anthropic's system prompt and messages → chat messages.

- `system` (a string or text blocks) and every `role: "system"` message inside `messages`
  become the one leading system message, in order (many open-weight chat templates accept a
  system message only first);
- user `text`, `image` and `document` blocks → one user message of text, `image_url` and
  `file` parts; `tool_result` blocks → `tool` messages before it (images a tool returned
  follow in that user message: a chat tool message carries text only);
- assistant `text` + `tool_use` → one assistant message with `tool_calls`; `thinking` and
  `redacted_thinking` blocks replayed in the history are dropped (a chat upstream cannot
  take them back);
- `cache_control` on any block is dropped (no chat equivalent; named in the translation).
Anything else is a 400 naming the block.
"""

from __future__ import annotations

from typing import Any

import orjson

from tollway.dialects.anthropic.notes import Notes
from tollway.errors import BadRequest, excerpt

ROLES = ("user", "assistant", "system")


def system_texts(value: object, notes: Notes) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list):
        raise BadRequest("system: must be a string or a list of text blocks", param="system")
    return _texts(value, "system", notes)


def _texts(blocks: list[Any], where: str, notes: Notes) -> list[str]:
    texts = []
    for i, block in enumerate(blocks):
        at = f"{where}.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise BadRequest(f"{at}: only text blocks are supported", param=at)
        notes.hints(block)
        texts.append(text_of(block, at))
    return texts


def text_of(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise BadRequest(f"{where}.text: required, a string", param=f"{where}.text")
    return text


def chat_messages(value: object, notes: Notes) -> tuple[list[str], list[dict[str, Any]]]:
    """(system texts found among the messages, the chat messages)."""
    if not isinstance(value, list) or not value:
        raise BadRequest("messages: required, a non-empty list", param="messages")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise BadRequest(f"{where}: must be an object", param=where)
        role = message.get("role")
        content = message.get("content")
        if role not in ROLES:
            raise BadRequest(
                f"{where}.role: must be 'user', 'assistant' or 'system'", param=f"{where}.role"
            )
        if not isinstance(content, str | list):
            raise BadRequest(
                f"{where}.content: must be a string or a list of content blocks",
                param=f"{where}.content",
            )
        if role == "system":
            notes.translate("messages[].role=system → system prompt")
            texts = [content] if isinstance(content, str) else _texts(content, where, notes)
            system.extend(text for text in texts if text)
        elif isinstance(content, str):
            out.append({"role": role, "content": content})
        elif role == "user":
            out.extend(_user_blocks(content, where, notes))
        else:
            out.append(_assistant_blocks(content, where, notes))
    return system, out


def _block_type(block: object, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise BadRequest(f"{where}: must be a content block with a 'type'", param=where)
    return str(block["type"])


def _unsupported(kind: str, where: str) -> BadRequest:
    return BadRequest(
        f"{where}.type: '{excerpt(kind, 64)}' content blocks cannot be translated on this gateway",
        param=f"{where}.type",
    )


def _user_blocks(blocks: list[Any], where: str, notes: Notes) -> list[dict[str, Any]]:
    """Tool results become `tool` messages first (they must follow the assistant's calls);
    text, images and documents become one user message after them."""
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at)
        notes.hints(block)
        if kind == "tool_result":
            message, media = _tool_result(block, at, notes)
            tool_messages.append(message)
            parts.extend(media)
        else:
            parts.append(_part(kind, block, at))
    out = list(tool_messages)
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _part(kind: str, block: dict[str, Any], where: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": text_of(block, where)}
    if kind == "image":
        return _image(block, where)
    if kind == "document":
        return _document(block, where)
    raise _unsupported(kind, where)


def _source(block: dict[str, Any], where: str) -> tuple[str | None, dict[str, Any]]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BadRequest(f"{where}.source: required, an object", param=f"{where}.source")
    kind = source.get("type")
    return (kind if isinstance(kind, str) else None), source


def _base64(source: dict[str, Any], where: str) -> str:
    media, data = source.get("media_type"), source.get("data")
    if not isinstance(media, str) or not isinstance(data, str):
        raise BadRequest(
            f"{where}.source: base64 sources need 'media_type' and 'data'",
            param=f"{where}.source",
        )
    return f"data:{media};base64,{data}"


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    kind, source = _source(block, where)
    if kind == "base64":
        return {"type": "image_url", "image_url": {"url": _base64(source, where)}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise BadRequest(
        f"{where}.source: only base64 and url image sources can be translated",
        param=f"{where}.source",
    )


def _document(block: dict[str, Any], where: str) -> dict[str, Any]:
    """A PDF (base64) → a chat `file` part; a plain-text document → its text."""
    kind, source = _source(block, where)
    if kind == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    if kind == "base64":
        title = block.get("title")
        file: dict[str, Any] = {"file_data": _base64(source, where)}
        file["filename"] = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": file}
    raise BadRequest(
        f"{where}.source: only base64 and text document sources can be translated",
        param=f"{where}.source",
    )


def _tool_result(
    block: dict[str, Any], where: str, notes: Notes
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The `tool` message, and the images/documents the tool returned (for the user message
    that follows: a chat tool message carries text only)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest(f"{where}.tool_use_id: required, a string", param=f"{where}.tool_use_id")
    content = block.get("content", "")
    media: list[dict[str, Any]] = []
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            at = f"{where}.content.{k}"
            kind = _block_type(part, at)
            notes.hints(part)
            if kind == "tool_reference":  # a tool found by a tool search: named as text
                name = part.get("tool_name")
                texts.append(f"Tool reference: {name if isinstance(name, str) else ''}")
            elif kind == "text":
                texts.append(text_of(part, at))
            else:
                media.append(_part(kind, part, at))
                notes.translate("tool_result images/documents → user message")
        content = "\n".join(texts)
    elif not isinstance(content, str):
        raise BadRequest(
            f"{where}.content: must be a string or a list of content blocks",
            param=f"{where}.content",
        )
    if block.get("is_error") is True:
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": call_id, "content": content}, media


def _assistant_blocks(blocks: list[Any], where: str, notes: Notes) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{where}.content.{j}"
        kind = _block_type(block, at)
        notes.hints(block)
        if kind == "text":
            texts.append(text_of(block, at))
        elif kind == "tool_use":
            calls.append(_tool_use(block, at))
        elif kind in ("thinking", "redacted_thinking"):
            notes.drop("thinking blocks in the history")  # a chat upstream cannot take them
        else:
            raise _unsupported(kind, at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


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
