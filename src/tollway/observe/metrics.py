"""Prometheus metrics of the server, right with any number of worker processes.

One process: the metrics live on this object's own registry (never the global default one).
Several workers (``tollway serve --workers N``): ``PROMETHEUS_MULTIPROC_DIR`` names a directory
private to one server start (`metrics_directory`); every worker writes its values to its own
memory-mapped files there, and a scrape, whichever worker answers it, adds up the files of
every worker, dead ones included, so counters equal what the whole server did. Gauges count
live workers only (``livesum``): a dead worker's gauge files are dropped at the next scrape.

Labels are registry ids (models, providers) and fixed words only: clients cannot create
series. Recording a value is a dict lookup and an add (an mmap write with several workers);
nothing here does I/O on the request path.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import Gauge as PromGauge
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from tollway.frozen import frozen
from tollway.providers.usage import TokenUsage

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


@frozen
class _Served:
    requests: Counter
    latency: Histogram
    prompt: Counter
    completion: Counter
    cached_prompt: Counter
    cache_write: Counter
    reasoning: Counter


class Metrics:
    def __init__(self) -> None:
        # prometheus_client chose its value store from the same variable when it was first
        # imported: set (by `metrics_directory`) before the worker started, never changed.
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir is not None:
            # A dead worker's pid, reused by this one: never inherit its gauges' values.
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # The children `served` counts into, per label set (registry ids and fixed words
        # only: bounded).
        self._served: dict[tuple[str, str, str, str], _Served] = {}
        self._charged: dict[tuple[str, str], Counter] = {}
        self._upstream: dict[tuple[str, str], Histogram] = {}
        self.requests = Counter(
            "tollway_requests",
            "Inference requests by outcome.",
            ("endpoint", "model", "provider", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "tollway_request_duration_seconds",
            "Inference request duration, gateway side (streams: until the last chunk).",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "tollway_upstream_duration_seconds",
            "One upstream attempt: until the whole answer (streams: the first event) or the "
            "failure.",
            ("provider", "outcome"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tollway_time_to_first_token_seconds",
            "Streams: from sending the upstream request to its first event.",
            ("model", "provider"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_failures = Counter(
            "tollway_upstream_failures",
            "Failed upstream attempts (each one may have fallen back).",
            ("provider",),
            registry=r,
        )
        self.fallbacks = Counter(
            "tollway_fallbacks",
            "Requests served after at least one failed attempt, by the endpoint serving them.",
            ("model", "provider"),
            registry=r,
        )
        self.tokens = Counter(
            "tollway_tokens",
            "Tokens billed.",
            ("model", "provider", "kind"),
            registry=r,
        )
        self.class_tokens = Counter(
            "tollway_class_tokens",
            "Billed tokens of a priced class, parts of tollway_tokens: cached_prompt and"
            " cache_write of the prompt, reasoning of the completion.",
            ("model", "provider", "class"),
            registry=r,
        )
        self.credits = Counter(
            "tollway_credits_charged",
            "Credits charged for served requests (1 EUR = 1,000,000 credits).",
            ("model", "provider"),
            registry=r,
        )
        self.uncharged = Counter(
            "tollway_credits_uncharged",
            "Credits of served usage the balance could not cover, recorded as a shortfall in"
            " the ledger (usage an upstream reported beyond what was reserved).",
            ("model", "provider"),
            registry=r,
        )
        self.meter_latency = Histogram(
            "tollway_meter_duration_seconds",
            "The meter's database work per request: one reserve, one settle.",
            ("operation",),
            buckets=DB_BUCKETS,
            registry=r,
        )
        self.open_streams = PromGauge(
            "tollway_open_streams",
            "Streams being relayed now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.reservations = Counter(
            "tollway_reservations_total",
            "Reservations by how they were made: lease (in memory), lease_after_draw (after "
            "waiting for the credit lease to be drawn or topped up), database.",
            ["path"],
            registry=r,
        )
        self.open_reservations = PromGauge(
            "tollway_open_reservations",
            "Reservations held by requests in flight now (reserved, not yet settled).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.circuit_open = PromGauge(
            "tollway_circuit_open",
            "Worker processes whose circuit breaker for this endpoint is open (0: closed).",
            ("model", "provider"),
            registry=r,
            multiprocess_mode="livesum",
        )
        self.request_log_dropped = Counter(
            "tollway_request_log_rows_dropped",
            "Request log rows not written: refused (the database refused the row itself), "
            "queue_full (the buffer was full during an outage), shutdown.",
            ("reason",),
            registry=r,
        )
        self.ratelimit_local = Counter(
            "tollway_ratelimit_local_checks",
            "Rate-limit checks counted in the process because Redis was unreachable.",
            registry=r,
        )

    def served(
        self,
        *,
        endpoint: str,
        model: str,
        provider: str,
        status: str,
        seconds: float,
        tokens: TokenUsage,
    ) -> None:
        key = (endpoint, model, provider, status)
        children = self._served.get(key)
        if children is None:  # once per label set: `labels()` costs ~2.5 µs a call
            children = _Served(
                self.requests.labels(endpoint, model, provider, status),
                self.latency.labels(endpoint),
                self.tokens.labels(model, provider, "prompt"),
                self.tokens.labels(model, provider, "completion"),
                self.class_tokens.labels(model, provider, "cached_prompt"),
                self.class_tokens.labels(model, provider, "cache_write"),
                self.class_tokens.labels(model, provider, "reasoning"),
            )
            self._served[key] = children
        children.requests.inc()
        children.latency.observe(seconds)
        children.prompt.inc(tokens.prompt)
        children.completion.inc(tokens.completion)
        if tokens.cached_prompt:  # each inc takes a lock: none for the usual zero
            children.cached_prompt.inc(tokens.cached_prompt)
        if tokens.cache_write:
            children.cache_write.inc(tokens.cache_write)
        if tokens.reasoning:
            children.reasoning.inc(tokens.reasoning)

    def charged(self, model: str, provider: str, credits: int) -> None:
        """`tollway_credits_charged_total` (its child found once per label set)."""
        child = self._charged.get((model, provider))
        if child is None:
            child = self._charged[model, provider] = self.credits.labels(model, provider)
        child.inc(credits)

    def upstream_done(self, provider: str, outcome: str, seconds: float) -> None:
        """`tollway_upstream_duration_seconds` (its child found once per label set)."""
        child = self._upstream.get((provider, outcome))
        if child is None:
            child = self._upstream[provider, outcome] = self.upstream_latency.labels(
                provider, outcome
            )
        child.observe(seconds)

    def refused(self, *, endpoint: str, model: str, status: str) -> None:
        self.requests.labels(endpoint, model, "", status).inc()

    def circuit_changed(self, model: str, provider: str, is_open: bool) -> None:
        self.circuit_open.labels(model, provider).set(1 if is_open else 0)

    def render(self) -> bytes:
        """The exposition text: this process's registry, or every worker's files summed."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        forget_dead_workers(self.multiprocess_dir)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def close(self) -> None:
        """At a worker's orderly exit: its gauges stop counting (its counters stay)."""
        if self.multiprocess_dir is not None:
            mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


def forget_dead_workers(path: str) -> None:
    """Drop the live-gauge files of processes that no longer exist (a killed worker never
    reached its own `Metrics.close`)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        match = _LIVE_GAUGE_FILE.search(name)
        if match is not None and not _alive(int(match.group(1))):
            mark_process_dead(int(match.group(1)), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def metrics_directory() -> Iterator[str]:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for one server start, set in the environment the
    workers inherit, removed when the server stops. Always a new one: files left by an
    earlier run would be added to this run's counters."""
    path = tempfile.mkdtemp(prefix="tollway-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)
