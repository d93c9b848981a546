"""Live measurements per endpoint (EWMA of time to first token and tokens/s) and a circuit
breaker. Each replica measures for itself: no shared state, no round trips."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tollway.providers.registry import ResolvedEndpoint

Circuit = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class EndpointHealth:
    ttft_ms: float
    tokens_per_second: float
    samples: int = 0
    consecutive_failures: int = 0
    open_until: float = 0.0


class HealthBook:
    """``alpha`` weights the newest sample; ``failure_threshold`` consecutive retriable failures
    open the circuit for ``cooldown_s``; after it one trial request may pass (half-open) and a
    success closes it, a failure opens it again. ``on_circuit(endpoint, is_open)`` is told
    when a circuit opens or closes (the metrics' gauge)."""

    def __init__(
        self,
        *,
        alpha: float = 0.2,
        failure_threshold: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_circuit: Callable[[ResolvedEndpoint, bool], None] | None = None,
    ) -> None:
        self._alpha = alpha
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._on_circuit = on_circuit
        self._book: dict[str, EndpointHealth] = {}

    def of(self, endpoint: ResolvedEndpoint) -> EndpointHealth:
        health = self._book.get(endpoint.key)
        if health is None:
            hints = endpoint.provider.hints
            health = EndpointHealth(hints.ttft_ms, hints.tokens_per_second)
            self._book[endpoint.key] = health
        return health

    def is_open(self, endpoint: ResolvedEndpoint) -> bool:
        """Open = skip it. When the cooldown of an open circuit has run out, the first caller
        gets one trial (half-open) and the circuit stays open for everyone else until that
        trial's outcome closes it (success) or re-opens it (failure)."""
        health = self._book.get(endpoint.key)
        if health is None or health.consecutive_failures < self._threshold:
            return False
        now = self._clock()
        if health.open_until > now:
            return True
        health.open_until = now + self._cooldown_s  # this caller's trial holds the others off
        return False

    def circuit(self, endpoint: ResolvedEndpoint) -> Circuit:
        """The circuit's state, read without side effects (``is_open`` spends the trial):
        ``half_open`` = the cooldown has run out and the next request is the trial."""
        health = self._book.get(endpoint.key)
        if health is None or health.consecutive_failures < self._threshold:
            return "closed"
        return "open" if health.open_until > self._clock() else "half_open"

    def predicted_latency_ms(self, endpoint: ResolvedEndpoint, completion_tokens: int) -> float:
        health = self.of(endpoint)
        return health.ttft_ms + 1000.0 * completion_tokens / max(health.tokens_per_second, 1e-3)

    def record_success(
        self, endpoint: ResolvedEndpoint, *, ttft_ms: float, completion_tokens: int, total_ms: float
    ) -> None:
        health = self.of(endpoint)
        a = self._alpha if health.samples else 1.0
        health.ttft_ms += a * (ttft_ms - health.ttft_ms)
        generation_s = max(total_ms - ttft_ms, 0.0) / 1000.0
        if completion_tokens > 1 and generation_s > 0:
            tps = completion_tokens / generation_s
            health.tokens_per_second += a * (tps - health.tokens_per_second)
        health.samples += 1
        if health.consecutive_failures >= self._threshold and self._on_circuit is not None:
            self._on_circuit(endpoint, False)
        health.consecutive_failures = 0
        health.open_until = 0.0

    def record_failure(self, endpoint: ResolvedEndpoint) -> None:
        health = self.of(endpoint)
        health.consecutive_failures += 1
        if health.consecutive_failures >= self._threshold:
            health.open_until = self._clock() + self._cooldown_s
            if health.consecutive_failures == self._threshold and self._on_circuit is not None:
                self._on_circuit(endpoint, True)

    def snapshot(self, endpoint: ResolvedEndpoint) -> dict[str, float | int]:
        health = self.of(endpoint)
        return {
            "ttft_ms": round(health.ttft_ms, 3),
            "tokens_per_second": round(health.tokens_per_second, 3),
            "samples": health.samples,
            "consecutive_failures": health.consecutive_failures,
        }
