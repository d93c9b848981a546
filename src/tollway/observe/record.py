"""The record of one inference request: built once at its end, then handed to the log line
and to the request log writer (never built twice, never carrying prompt or completion text)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The `status` of a record: what became of the request, in a word.
STATUSES = ("success", "client_disconnected", "upstream_error", "refused", "error")
ENDPOINTS = ("chat.completions", "embeddings", "messages", "responses")


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
