"""The mock upstream's knobs (`MockSettings`), its counters (`MockStats`), the pace of its
models (`Pace`, the demo's `DEMO_PACES`) and the model names it lists (`providers/mock.py`
serves them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tollway.frozen import frozen

# What GET /v1/models lists (any model name is served): the mock's own names and the
# upstream models of the built-in demo registry, so `tollway providers check` passes there.
MOCK_MODELS = (
    "mock-chat",
    "mock-chat-small",
    "mock-embed",
    "demo-chat",
    "demo-chat-fp8",
    "demo-small",
    "demo-embed",
    "demo-chat-lite",
    "demo-small-lite",
    "demo-embed-lite",
)


@frozen
class Pace:
    """How fast one upstream model answers: time to the first token, then tokens per second."""

    ttft_ms: float
    tokens_per_second: float

    def whole_answer_s(self, completion_tokens: int) -> float:
        return (self.ttft_ms + 1000 * completion_tokens / self.tokens_per_second) / 1000


# The built-in demo registry's upstream models, each paced like its provider's hints in
# demo.yaml (demo-eu: demo-chat, demo-small; demo-cheap: *-lite; demo-fast: demo-chat-fp8),
# so cost, speed and balanced routing pick three different providers in the demo.
DEMO_PACES: Mapping[str, Pace] = {
    "demo-chat": Pace(250, 100),
    "demo-small": Pace(250, 100),
    "demo-chat-lite": Pace(800, 30),
    "demo-small-lite": Pace(800, 30),
    "demo-chat-fp8": Pace(100, 200),
}


@dataclass(frozen=True)
class MockSettings:
    """Behaviour knobs of one mock process; per-request variations use the model hooks."""

    latency_ms: float = 0
    ttft_ms: float = 0
    tokens_per_second: float = 0  # 0 = unlimited
    error_rate: float = 0.0
    error_status: int = 500
    cut_stream_after: int | None = None
    omit_usage: bool = False
    embedding_dim: int = 8
    seed: int | None = None  # seeds the error_rate dice; None = a fresh seed per process
    # When set, every /v1/ call must send `Authorization: Bearer <api_key>` (else 401),
    # like a real provider checking the gateway's secret.
    api_key: str | None = None
    # Per upstream model: answer at this pace instead of ttft_ms / tokens_per_second.
    paces: Mapping[str, Pace] = field(default_factory=dict)


@dataclass
class MockStats:
    """Counters that let a test prove what the gateway did to its upstream."""

    requests: int = 0
    open_streams: int = 0
    aborted_streams: int = 0
    completed_streams: int = 0
    cut_streams: int = 0
    last_request: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "open_streams": self.open_streams,
            "aborted_streams": self.aborted_streams,
            "completed_streams": self.completed_streams,
            "cut_streams": self.cut_streams,
            "last_request": self.last_request,
        }
