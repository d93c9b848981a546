"""The record of one inference request: built once at its end, then handed to the log line
and to the request log writer (never built twice, never carrying prompt or completion text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The `status` of a record: what became of the request, in a word.
STATUSES = ("success", "client_disconnected", "upstream_error", "refused", "error")
ENDPOINTS = ("chat.completions", "embeddings", "messages", "responses")
# Bounds of a Translation: a name is a field path, never a value; a few dozen at most.
_MAX_NOTES, _MAX_NOTE_CHARS = 32, 80


@dataclass(frozen=True, slots=True)
class Translation:
    """What a dialect's request translation did with the fields a chat-completions upstream
    has no field of its own for: `translated` (e.g. "output_config.effort → reasoning_effort")
    and `dropped` (accepted, not forwarded). Field names only, never a value: safe to log."""

    translated: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()

    @classmethod
    def of(cls, translated: list[str], dropped: list[str]) -> Translation:
        """Each name once, in first-seen order, bounded in count and length."""

        def bounded(names: list[str]) -> tuple[str, ...]:
            unique = dict.fromkeys(name[:_MAX_NOTE_CHARS] for name in names)
            return tuple(unique)[:_MAX_NOTES]

        return cls(bounded(translated), bounded(dropped))

    def __bool__(self) -> bool:
        return bool(self.translated or self.dropped)

    def as_json(self) -> dict[str, list[str]]:
        return {"translated": list(self.translated), "dropped": list(self.dropped)}


@dataclass(frozen=True, slots=True)
class Attempt:
    provider: str
    model: str
    status: str  # success | failed
    error: str | None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    client_request_id: str | None
    created_at_ms: int
    user_id: str
    project_id: str
    key_id: int
    key_name: str
    endpoint: str
    model: str
    served_model: str | None
    provider: str | None
    status: str
    http_status: int
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cost_credits: int
    latency_ms: int
    ttft_ms: int | None
    usage_source: str | None
    error: str | None
    attempts: tuple[Attempt, ...]
    # Built by the writer, off the request path: the detail view's "routing" object.
    routing: Callable[[], dict[str, Any]] | None
    # Token classes (docs/billing.md): parts of the prompt and completion tokens.
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    # Another dialect's request (messages, responses): what its translation did.
    translation: Translation | None = None

    @property
    def fallbacks(self) -> int:
        """Attempts after the first: each one a fallback to the next candidate."""
        return max(len(self.attempts) - 1, 0)


def outcome_of(http_status: int, stream_outcome: str | None, attempts: tuple[Attempt, ...]) -> str:
    """The record's status: a stream says how it ended; otherwise the HTTP status and whether
    upstreams were tried and all failed decide."""
    if stream_outcome is not None:
        return stream_outcome
    if http_status < 400:
        return "success"
    if http_status == 499:  # gone before its request body was complete (http/edge.py)
        return "client_disconnected"
    if http_status in (402, 429):
        return "refused"
    if http_status in (502, 503, 504):
        return "upstream_error"
    if attempts and all(a.status == "failed" for a in attempts):
        return "upstream_error"  # an upstream's validation error, relayed as is
    return "error"
