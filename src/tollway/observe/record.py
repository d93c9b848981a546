"""The record of one inference request: built once at its end, then handed to the log line
and to the request log writer (never built twice, never carrying prompt or completion text)."""

from __future__ import annotations

from math import floor
from typing import Any

from tollway.billing.credits import CREDITS_PER_EUR
from tollway.frozen import frozen

# The `status` of a record: what became of the request, in a word.
STATUSES = ("success", "client_disconnected", "upstream_error", "refused", "error")
ENDPOINTS = ("chat.completions", "embeddings", "messages", "responses")
# Bounds of a Translation: a name is a field path, never a value; a few dozen at most.
_MAX_NOTES, _MAX_NOTE_CHARS = 32, 80


@frozen
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


def rounded(value: float, scale: float) -> float:
    """`value` to the places of `scale` (1e3: three), half up, for showing: ~4x cheaper than
    `round()`, five to seven of which every ranked candidate paid. It differs from `round()`
    only where the binary value sits just below a half (`round(2.675, 2)` is 2.67, this
    2.68). Infinity and NaN are returned as they are."""
    try:
        return floor(value * scale + 0.5) / scale
    except (OverflowError, ValueError):
        return value


@frozen
class ScoringContext:
    """What a candidate was ranked on, as read when it was ranked (the endpoint's speed and
    circuit at that moment): plain numbers, made into the `scoring_context` object only when
    something shows it (`include_metadata`, the request log's row)."""

    expected_cost_credits: float
    predicted_latency_ms: float
    ttft_ms: float
    ms_per_token: float
    samples: int
    consecutive_failures: int

    def as_json(self) -> dict[str, float | int]:
        return {
            "expected_cost_eur": rounded(self.expected_cost_credits / CREDITS_PER_EUR, 1e9),
            "predicted_latency_ms": rounded(self.predicted_latency_ms, 1e3),
            "ttft_ms": rounded(self.ttft_ms, 1e3),
            "ms_per_token": rounded(self.ms_per_token, 1e3),
            "tokens_per_second": rounded(1000.0 / max(self.ms_per_token, 1e-3), 1e3),
            "samples": self.samples,
            "consecutive_failures": self.consecutive_failures,
        }


@frozen
class Filtered:
    """A candidate a filter removed, and why."""

    provider: str
    model: str
    filter_failed: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "filter_failed": self.filter_failed,
            "reason": self.reason,
            "model": self.model,
        }


@frozen
class Scored:
    """A ranked candidate and what became of it (success | failed | not_attempted)."""

    provider: str
    model: str
    score: float
    context: ScoringContext
    status: str
    error: str | None

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "provider": self.provider,
            "model": self.model,
            "score": self.score,
            "scoring_context": self.context.as_json(),
            "status": self.status,
        }
        if self.error is not None:
            entry["error"] = self.error
        return entry


@frozen
class Routing:
    """How a request was routed (served or not), as plain immutable data: built from the
    gateway's trace once the request has ended, made into JSON only where it is shown (the
    answer's `include_metadata`, the request log's detail view)."""

    preference: str
    scoring_function: str
    applied_filters: tuple[str, ...]
    initial: tuple[str, ...]  # "model@provider" when several models were planned
    filtered: tuple[Filtered, ...]
    scored: tuple[Scored, ...]
    tried_models: tuple[str, ...]

    def trace_json(self) -> dict[str, Any]:
        """The `routing_trace` object."""
        return {
            "initial_candidates": list(self.initial),
            "filtered_out_candidates": [f.as_json() for f in self.filtered],
            "scored_candidates": [s.as_json() for s in self.scored],
            "scoring_function": {"function": self.scoring_function, "sort": "ascending"},
        }

    def as_json(self) -> dict[str, Any]:
        """The request log detail view's `routing` object."""
        return {
            "preference": self.preference,
            "applied_filters": list(self.applied_filters),
            "routing_trace": self.trace_json(),
            "fallback_chain": list(self.tried_models),
        }


@frozen
class Attempt:
    provider: str
    model: str
    status: str  # success | failed
    error: str | None


@frozen
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
    # The detail view's "routing" object, as data (made JSON by the writer, off the request
    # path); None when the request never got as far as routing, or the log will not store it.
    routing: Routing | None
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
