"""The gateway's OpenAI-shaped chat completion → a Responses `response` object.

The pieces (ids, output items, usage, the envelope) are shared with the stream translation,
so a streamed response ends with exactly the object a whole one would be.
"""

from __future__ import annotations

from typing import Any

from tollway.dialects.responses.request import ResponsesRequest
from tollway.dialects.responses.tools import ToolName, custom_input
from tollway.providers.usage import classes_of

# finish_reason → (status, incomplete_details.reason)
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(completion_id: object) -> str:
    return "resp_" + _suffix(completion_id, "chatcmpl-")


def message_item_id(completion_id: object) -> str:
    return "msg_" + _suffix(completion_id, "chatcmpl-")


def call_item_id(call_id: object, known: ToolName) -> str:
    return ("ctc_" if known.custom else "fc_") + _suffix(call_id, "call_")


def call_id_of(sent: object, completion_id: object, position: object) -> str:
    """The upstream's call id; one made from the completion's id for an upstream that sends
    none (the client needs one to send the call's output back)."""
    if isinstance(sent, str) and sent:
        return sent
    return f"call_{_suffix(completion_id, 'chatcmpl-')}_{position}"


def _suffix(value: object, prefix: str) -> str:
    return value.removeprefix(prefix) if isinstance(value, str) else ""


def message_item(item_id: str, text: str, refusal: str | None, status: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text or refusal is None:
        content.append(output_text(text))
    if refusal is not None:
        content.append({"type": "refusal", "refusal": refusal})
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(
    call_id: str, known: ToolName, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    """A `function_call` item, or a `custom_tool_call` for a custom tool."""
    item_id = call_item_id(call_id, known)
    if known.custom:
        return {
            "id": item_id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call_id,
            "name": known.name,
            "input": custom_input(arguments) if status == "completed" else "",
        }
    item = {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": known.name,
        "arguments": arguments,
    }
    if known.namespace is not None:
        item["namespace"] = known.namespace
    return item


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage_of(usage: object) -> dict[str, Any]:
    """Chat usage → Responses usage (cached and reasoning tokens: 0 when not reported).
    `input_tokens` include the cached ones, as OpenAI's do."""
    tokens = classes_of(usage)
    return {
        "input_tokens": tokens.prompt,
        "input_tokens_details": {"cached_tokens": tokens.cached_prompt},
        "output_tokens": tokens.completion,
        "output_tokens_details": {"reasoning_tokens": tokens.reasoning},
        "total_tokens": tokens.total,
    }


def status_of(finish_reason: object) -> tuple[str, dict[str, str] | None]:
    """(status, incomplete_details) of a response that ended with this finish reason."""
    reason = INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def envelope(
    parsed: ResponsesRequest,
    head: dict[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete: dict[str, str] | None = None,
    error: dict[str, str] | None = None,
    tollway_metadata: object = None,
) -> dict[str, Any]:
    """The `response` object. `head` is the completion (or first chunk): its id, creation
    time, model and provider. Tollway's routing metadata (`include_metadata`) is merged into
    the request's own `metadata`, and says which fields the translation dropped."""
    metadata: dict[str, Any] = dict(parsed.echo.metadata)
    if isinstance(tollway_metadata, dict):
        metadata.update(tollway_metadata)
        if parsed.dropped:  # what the translation left out, by name
            metadata["translation"] = {"translated": [], "dropped": list(parsed.dropped)}
    return {
        "id": response_id(head.get("id")),
        "object": "response",
        "created_at": _int(head.get("created")),
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "model": head.get("model"),
        "output": output,
        **parsed.echo.fields(),
        "metadata": metadata,
        "usage": usage,
        "provider": head.get("provider"),
    }


def to_response(completion: dict[str, Any], parsed: ResponsesRequest) -> dict[str, Any]:
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    status, incomplete = status_of(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    text, refusal = message.get("content"), message.get("refusal")
    text = text if isinstance(text, str) else ""
    refusal = refusal if isinstance(refusal, str) else None
    if text or refusal is not None:
        item_id = message_item_id(completion.get("id"))
        output.append(message_item(item_id, text, refusal, status))
    calls = message.get("tool_calls")
    for position, call in enumerate(calls if isinstance(calls, list) else []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        known = parsed.tools.of(function.get("name"))
        call_id = call_id_of(call.get("id"), completion.get("id"), position)
        output.append(call_item(call_id, known, arguments if isinstance(arguments, str) else ""))
    return envelope(
        parsed,
        completion,
        status=status,
        output=output,
        usage=usage_of(completion.get("usage")),
        incomplete=incomplete,
        tollway_metadata=completion.get("metadata"),
    )
