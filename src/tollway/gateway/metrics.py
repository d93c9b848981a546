"""Prometheus metrics of one process, on its own registry (no global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import Gauge as PromGauge

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tollway_requests",
            "Inference requests by outcome.",
            ("endpoint", "model", "provider", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tollway_request_duration_seconds",
            "Inference request duration, gateway side (streams: until the last chunk).",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_failures = Counter(
            "tollway_upstream_failures",
            "Failed upstream attempts (each one may have fallen back).",
            ("provider",),
            registry=self.registry,
        )
        self.tokens = Counter(
            "tollway_tokens",
            "Tokens billed.",
            ("model", "provider", "kind"),
            registry=self.registry,
        )
        self.open_streams = PromGauge(
            "tollway_open_streams", "Streams being relayed now.", registry=self.registry
        )

    def served(
        self,
        *,
        endpoint: str,
        model: str,
        provider: str,
        status: str,
        seconds: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> None:
        self.requests.labels(endpoint, model, provider, status).inc()
        self.latency.labels(endpoint).observe(seconds)
        self.tokens.labels(model, provider, "prompt").inc(prompt_tokens)
        self.tokens.labels(model, provider, "completion").inc(completion_tokens)

    def refused(self, *, endpoint: str, model: str, status: str) -> None:
        self.requests.labels(endpoint, model, "", status).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
