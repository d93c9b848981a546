"""Live measurements per endpoint (a latency line fitted to every served call) and a circuit
breaker. Each replica measures for itself: no shared state, no round trips.

Speed: an endpoint's latency is modelled as ``a + b * completion_tokens`` (``a``: ms before
the first token, ``b``: ms per generated token), fitted by exponentially weighted least squares
over its samples. A non-streamed call is one point ``(tokens, total ms)``; a stream gives two,
``(0, time to first token)`` and ``(tokens, total ms)``. While the samples span too few
lengths to fix the slope (every call asked for the same length), the line keeps the shape of
the provider's hints, scaled to pass through the samples (``MIN_SPREAD_TOKENS2``).

Breaker: ``is_open`` is a pure check used while ranking; the half-open trial is taken by
``admit`` when an attempt is actually made, and ends with ``record_success``,
``record_failure`` or ``release`` (no verdict: cancelled, or the client's own error).

Two kinds of circuit per endpoint (docs/gateway.md, "Circuit breaker"): the shared one, which
every project's requests skip while it is open, counts only failures that say the provider is
unhealthy; a failure one project's own request may have caused (a timeout of a long or
heavy request) counts in that project's own circuit for the endpoint, which only that
project's requests skip. So one tenant alone cannot take a model down for the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tollway.providers.registry import ResolvedEndpoint

# The weighted variance of the samples' lengths (tokens²) from which they decide the slope
# themselves (least squares); below it, the hinted slope scaled to the measured level.
MIN_SPREAD_TOKENS2 = 1.0
Circuit = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class Breaker:
    consecutive_failures: int = 0
    open_until: float = 0.0
    trial_until: float = 0.0  # a half-open trial is in flight until then


@dataclass(slots=True)
class EndpointHealth:
    hint_ms: float  # the registry's hints, the prior line
    hint_ms_per_token: float
    ttft_ms: float  # the fitted line
    ms_per_token: float
    # Exponentially weighted sums over the samples (x = completion tokens, y = ms).
    w: float = 0.0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    sxy: float = 0.0
    samples: int = 0
    breaker: Breaker = field(default_factory=Breaker)

    def predicted_ms(self, completion_tokens: int) -> float:
        """The fitted line's latency for a completion of that many tokens."""
        return self.ttft_ms + self.ms_per_token * completion_tokens

    def add(self, points: tuple[tuple[float, float], ...], keep: float) -> None:
        """Age the old samples by ``keep``, add the new points and refit."""
        self.w, self.sx, self.sy = self.w * keep, self.sx * keep, self.sy * keep
        self.sxx, self.sxy = self.sxx * keep, self.sxy * keep
        for x, y in points:
            self.w += 1.0
            self.sx += x
            self.sy += y
            self.sxx += x * x
            self.sxy += x * y
        self._fit()

    def _fit(self) -> None:
        mean_x, mean_y = self.sx / self.w, self.sy / self.w
        spread = max(self.sxx / self.w - mean_x * mean_x, 0.0)
        covariance = self.sxy / self.w - mean_x * mean_y
        if spread >= MIN_SPREAD_TOKENS2:
            slope = covariance / spread
        else:
            hinted = self.hint_ms + self.hint_ms_per_token * mean_x
            slope = self.hint_ms_per_token * (mean_y / hinted if hinted > 0 else 1.0)
        intercept = mean_y - slope * mean_x
        if slope < 0:  # faster when longer: noise; the level is all we know
            slope, intercept = 0.0, mean_y
        elif intercept < 0:
            slope, intercept = (mean_y / mean_x if mean_x > 0 else 0.0), 0.0
        self.ttft_ms, self.ms_per_token = intercept, slope


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
        self._keep = 1.0 - alpha
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._on_circuit = on_circuit
        self._book: dict[str, EndpointHealth] = {}
        # (project id, endpoint key) -> that project's own circuit; an entry lives from its
        # first own failure to the project's next success there.
        self._own: dict[tuple[str, str], Breaker] = {}

    def of(self, endpoint: ResolvedEndpoint) -> EndpointHealth:
        health = self._book.get(endpoint.key)
        if health is None:
            hints = endpoint.provider.hints
            per_token = 1000.0 / max(hints.tokens_per_second, 1e-3)
            health = EndpointHealth(hints.ttft_ms, per_token, hints.ttft_ms, per_token)
            self._book[endpoint.key] = health
        return health

    # -- circuit breaker ------------------------------------------------------------------
    # `project`: the project whose request asks; its own circuit for the endpoint counts
    # too. None: the shared circuit alone.

    def _breakers(self, endpoint: ResolvedEndpoint, project: str | None) -> list[Breaker]:
        found = []
        health = self._book.get(endpoint.key)
        if health is not None:
            found.append(health.breaker)
        if project is not None:
            own = self._own.get((project, endpoint.key))
            if own is not None:
                found.append(own)
        return found

    def _is_open(self, breaker: Breaker, now: float) -> bool:
        if breaker.consecutive_failures < self._threshold:
            return False
        return breaker.open_until > now or breaker.trial_until > now

    def is_open(self, endpoint: ResolvedEndpoint, project: str | None = None) -> bool:
        """Open = skip it: failing and cooling down, or its half-open trial is in flight.
        Pure: ranking may ask as often as it likes (for every candidate of every request:
        circuits with fewer failures than the threshold are closed, the clock unread)."""
        threshold = self._threshold
        health = self._book.get(endpoint.key)
        own = self._own.get((project, endpoint.key)) if project is not None else None
        if (health is None or health.breaker.consecutive_failures < threshold) and (
            own is None or own.consecutive_failures < threshold
        ):
            return False
        now = self._clock()
        return any(self._is_open(b, now) for b in self._breakers(endpoint, project))

    def reopens_in(self, endpoint: ResolvedEndpoint, project: str | None = None) -> float:
        """Seconds until an open circuit lets its next trial through (0 when not open); a
        trial in flight counts as a whole cooldown (its outcome decides)."""
        now = self._clock()
        waits = [
            max(b.open_until - now, b.trial_until - now, 0.0)
            for b in self._breakers(endpoint, project)
            if self._is_open(b, now)
        ]
        return max(waits, default=0.0)

    def admit(self, endpoint: ResolvedEndpoint, project: str | None = None) -> bool:
        """An attempt is about to be made: True if it may go ahead. After the cooldown the
        first caller takes the one half-open trial (held until its outcome, at most one
        cooldown); a caller that ranked it before someone else took the trial gets False."""
        if self.is_open(endpoint, project):
            return False
        for breaker in self._breakers(endpoint, project):
            if breaker.consecutive_failures >= self._threshold:
                breaker.trial_until = self._clock() + self._cooldown_s
        return True

    def circuit(self, endpoint: ResolvedEndpoint) -> Circuit:
        """The shared circuit's state, read without side effects: ``half_open`` = the
        cooldown has run out and the next attempt is (or its trial in flight is) the trial."""
        health = self._book.get(endpoint.key)
        if health is None or health.breaker.consecutive_failures < self._threshold:
            return "closed"
        return "open" if health.breaker.open_until > self._clock() else "half_open"

    def release(self, endpoint: ResolvedEndpoint, project: str | None = None) -> None:
        """The attempt ended without a verdict on the endpoint: give the trial back."""
        for breaker in self._breakers(endpoint, project):
            breaker.trial_until = 0.0

    def record_alive(self, endpoint: ResolvedEndpoint, project: str | None = None) -> None:
        """The endpoint answered: close its circuit (and the project's own)."""
        breaker = self.of(endpoint).breaker
        if breaker.consecutive_failures >= self._threshold and self._on_circuit is not None:
            self._on_circuit(endpoint, False)
        breaker.consecutive_failures = 0
        breaker.open_until = breaker.trial_until = 0.0
        if project is not None:
            self._own.pop((project, endpoint.key), None)

    def record_failure(
        self, endpoint: ResolvedEndpoint, project: str | None = None, *, shared: bool = True
    ) -> None:
        """A retriable failure. `shared`: it says the provider is unhealthy (every project's
        circuit); else it may be the request's own doing and counts in `project`'s own."""
        if shared or project is None:
            breaker = self.of(endpoint).breaker
            on_circuit = self._on_circuit
        else:
            breaker = self._own.setdefault((project, endpoint.key), Breaker())
            on_circuit = None  # the gauge is about the shared circuit
            shared_health = self._book.get(endpoint.key)
            if shared_health is not None:  # no verdict on the shared circuit's trial
                shared_health.breaker.trial_until = 0.0
        breaker.consecutive_failures += 1
        breaker.trial_until = 0.0
        if breaker.consecutive_failures >= self._threshold:
            breaker.open_until = self._clock() + self._cooldown_s
            if breaker.consecutive_failures == self._threshold and on_circuit is not None:
                on_circuit(endpoint, True)

    # -- speed ----------------------------------------------------------------------------

    def record_success(
        self,
        endpoint: ResolvedEndpoint,
        *,
        completion_tokens: int,
        total_ms: float,
        ttft_ms: float | None = None,
        project: str | None = None,
    ) -> None:
        """A served call: ``(completion_tokens, total_ms)`` is a point of the endpoint's line;
        a stream also gives ``ttft_ms``, the line's value before the first token."""
        health = self.of(endpoint)
        point = (float(completion_tokens), total_ms)
        points = (point,) if ttft_ms is None else ((0.0, ttft_ms), point)
        health.add(points, self._keep)
        health.samples += 1
        self.record_alive(endpoint, project)

    def predicted_latency_ms(self, endpoint: ResolvedEndpoint, completion_tokens: int) -> float:
        return self.of(endpoint).predicted_ms(completion_tokens)

    def snapshot(self, endpoint: ResolvedEndpoint) -> dict[str, float | int]:
        health = self.of(endpoint)
        return {
            "ttft_ms": round(health.ttft_ms, 3),
            "ms_per_token": round(health.ms_per_token, 3),
            "tokens_per_second": round(1000.0 / max(health.ms_per_token, 1e-3), 3),
            "samples": health.samples,
            "consecutive_failures": health.breaker.consecutive_failures,
        }
