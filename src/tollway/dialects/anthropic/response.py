"""The gateway's OpenAI-shaped chat completion → an Anthropic `message`."""

from __future__ import annotations

from typing import Any

import orjson

from tollway.observe.record import Translation
from tollway.providers.usage import classes_of

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(completion_id: object) -> str:
    text = completion_id if isinstance(completion_id, str) else ""
    return "msg_" + text.removeprefix("chatcmpl-")


def stop_reason(
    finish_reason: object, matched: object, stops: tuple[str, ...]
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). OpenAI's `stop` does not say whether a stop sequence
    ended the turn; the sequence is known when the upstream reports it (vLLM's
    `stop_reason` field on the choice) and it is one of the request's."""
    if finish_reason == "stop" and isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    return STOP_REASONS.get(str(finish_reason), "end_turn"), None


def tool_input(arguments: object) -> dict[str, Any]:
    """A call's arguments as Anthropic's `input` object ({} when not a JSON object)."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def usage_of(usage: object) -> dict[str, int]:
    """Chat usage → Anthropic usage: `input_tokens` are the prompt tokens neither read from
    nor written to the prompt cache, which Anthropic counts apart."""
    tokens = classes_of(usage)
    return {
        "input_tokens": tokens.uncached_prompt,
        "cache_creation_input_tokens": tokens.cache_write,
        "cache_read_input_tokens": tokens.cached_prompt,
        "output_tokens": tokens.completion,
    }


def with_translation(metadata: object, translation: Translation | None) -> object:
    """Tollway's metadata (`include_metadata`), saying what the translation did."""
    if isinstance(metadata, dict) and translation:
        return {**metadata, "translation": translation.as_json()}
    return metadata


def to_message(
    completion: dict[str, Any], stops: tuple[str, ...], translation: Translation | None = None
) -> dict[str, Any]:
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": tool_input(function.get("arguments")),
            }
        )
    choice = choice if isinstance(choice, dict) else {}
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), stops)
    if calls and reason == "end_turn":
        reason = "tool_use"
    out: dict[str, Any] = {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model"),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_of(completion.get("usage")),
        "provider": completion.get("provider"),
    }
    if "metadata" in completion:
        out["metadata"] = with_translation(completion["metadata"], translation)
    return out
