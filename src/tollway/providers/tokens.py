"""The one token-counting rule shared by the mock provider and the gateway.

The mock reports usage with it, and the gateway falls back to it when an upstream omits
usage, so both sides of a test agree on every count.
"""

from __future__ import annotations

from collections.abc import Iterable

PER_MESSAGE_TOKENS = 3
"""Overhead charged per chat message, like OpenAI's role/separator tokens."""


def count_tokens(text: str) -> int:
    """Whitespace-separated words; at least 1 for any non-empty text."""
    if not text:
        return 0
    return max(1, len(text.split()))


def content_text(content: object) -> str:
    """The text of a message `content`: a string, or a list of `{type: text, text}` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
        return " ".join(texts)
    return ""


def count_prompt_tokens(messages: Iterable[object]) -> int:
    """Prompt tokens of chat `messages`: each message's content words plus a fixed overhead."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += count_tokens(content_text(content)) + PER_MESSAGE_TOKENS
    return total


def answer_tokens(message: object) -> int:
    """Completion tokens of one answer (a choice's `message`): its content's words plus the
    argument words of each tool call, each counted on its own."""
    if not isinstance(message, dict):
        return 0
    total = count_tokens(content_text(message.get("content")))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str):
            total += count_tokens(arguments)
    return total
