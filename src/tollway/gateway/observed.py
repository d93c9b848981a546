"""The gateway's outbound steps, measured: each meter call and each upstream attempt is timed
into the metrics and traced as a span, here, so pipeline.py still reads as the request path."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

from tollway.billing.meter import Meter
from tollway.billing.records import Reservation, ReserveRequest, UsageRecord
from tollway.observe.metrics import Metrics
from tollway.observe.tracing import Span, Tracer
from tollway.providers.registry import ResolvedEndpoint
from tollway.providers.upstream_errors import UpstreamStatusError


class ObservedMeter:
    """The meter as the gateway calls it. Times reserve and settle (the request path's
    database work), counts the reservations open in this process, and the credits charged.
    A reservation is counted open from its reserve to its first settle (a second settle of
    the same one, e.g. a release after a failed settlement, changes nothing)."""

    def __init__(self, meter: Meter, metrics: Metrics, tracer: Tracer) -> None:
        self._meter = meter
        self._metrics = metrics
        self._tracer = tracer
        self._reserve_seconds = metrics.meter_latency.labels("reserve")
        self._settle_seconds = metrics.meter_latency.labels("settle")
        self._by_path = {
            path: metrics.reservations.labels(path)
            for path in ("lease", "lease_after_draw", "database")
        }
        self._open: set[str] = set()
        meter.pending.on_landed = self._charged  # a deferred settlement, once it lands

    async def reserve(self, request: ReserveRequest) -> Reservation:
        started = time.perf_counter()
        try:
            with self._tracer.span(
                "tollway.meter.reserve", request_id=request.payer.request_id
            ) as span:
                reservation = await self._meter.reserve(request)
                span.set("tollway.reserved_credits", reservation.amount_credits)
        finally:
            self._reserve_seconds.observe(time.perf_counter() - started)
        self._open.add(reservation.request_id)
        self._metrics.open_reservations.inc()
        self._by_path[reservation.path].inc()
        return reservation

    def settle_now(self, reservation: Reservation, usage: UsageRecord | None) -> int | None:
        """`Meter.settle_now`: settled at once in memory (the charge), or None when it needs
        the database (then `settle_durably`)."""
        if reservation.lease is None:
            return None  # reserved in the database: settled there
        started = time.perf_counter()
        with self._tracer.span(
            "tollway.meter.settle",
            request_id=reservation.request_id,
            status=usage.status if usage is not None else "released",
        ) as span:
            charged = self._meter.settle_now(reservation, usage)
            if charged is None:
                span.set("tollway.needs_database", True)  # settle_durably's span follows
                return None
            span.set("tollway.charged_credits", charged)
        self._settle_seconds.observe(time.perf_counter() - started)
        self._close(reservation)
        self._credit(usage, charged)
        return charged

    async def settle_durably(self, reservation: Reservation, usage: UsageRecord | None) -> int:
        """`Meter.settle_durably`: a settlement the database refuses is handed to the meter's
        retrier (and counted here as settled: it will land). Usage the balance could not
        cover is counted as uncharged (a settlement done at once never has any: it fits the
        reservation or the lease)."""
        started = time.perf_counter()
        first = reservation.request_id in self._open  # a second settle charges nothing
        deferred = False
        try:
            with self._tracer.span(
                "tollway.meter.settle",
                request_id=reservation.request_id,
                status=usage.status if usage is not None else "released",
            ) as span:
                charged = await self._meter.settle_durably(reservation, usage)
                span.set("tollway.charged_credits", charged)
                deferred = reservation.request_id in self._meter.pending
        finally:
            self._settle_seconds.observe(time.perf_counter() - started)
            self._close(reservation)
        if first and not deferred:  # a deferred one is counted when it lands (`_charged`)
            self._charged(usage, charged)
        return charged

    def _charged(self, usage: UsageRecord | None, charged: int) -> None:
        """What a settlement charged, and what of its usage the balance could not cover."""
        self._credit(usage, charged)
        if usage is not None:
            short = usage.cost - charged
            if short > 0:
                self._metrics.uncharged.labels(usage.model, usage.provider).inc(short)

    def _close(self, reservation: Reservation) -> None:
        if reservation.request_id in self._open:
            self._open.discard(reservation.request_id)
            self._metrics.open_reservations.dec()

    def _credit(self, usage: UsageRecord | None, charged: int) -> None:
        if usage is not None and charged:
            self._metrics.charged(usage.model, usage.provider, charged)


class Attempt:
    """One upstream attempt, as a context manager around the call: its duration goes to
    ``tollway_upstream_duration_seconds`` by outcome, it is a ``tollway.upstream`` span, and
    a success after an earlier failure counts as a fallback."""

    __slots__ = ("_after_failure", "_endpoint", "_metrics", "_span", "_started")

    def __init__(
        self, metrics: Metrics, span: Span, endpoint: ResolvedEndpoint, *, after_failure: bool
    ) -> None:
        self._metrics = metrics
        self._span = span
        self._endpoint = endpoint
        self._after_failure = after_failure
        self._started = 0.0

    @classmethod
    def of(
        cls,
        metrics: Metrics,
        tracer: Tracer,
        endpoint: ResolvedEndpoint,
        *,
        number: int,
        after_failure: bool,
    ) -> Attempt:
        span = tracer.span(
            "tollway.upstream",
            provider=endpoint.provider.slug,
            model=endpoint.model.id,
            upstream_model=endpoint.upstream_model,
            attempt=number,
        )
        return cls(metrics, span, endpoint, after_failure=after_failure)

    def __enter__(self) -> Attempt:
        self._span.__enter__()
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        provider = self._endpoint.provider.slug
        if exc is None:
            outcome = "success"
            if self._after_failure:
                self._metrics.fallbacks.labels(self._endpoint.model.id, provider).inc()
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            outcome = "cancelled"
            self._span.fail(type(exc).__name__)
        else:
            outcome = "error"
            if isinstance(exc, UpstreamStatusError):
                self._span.set("http.response.status_code", exc.upstream_status)
                self._span.fail(str(exc.upstream_status))
            else:
                self._span.fail(type(exc).__name__)
        self._span.set("tollway.outcome", outcome)
        self._metrics.upstream_done(provider, outcome, seconds)
        self._span.__exit__(exc_type, exc, tb)
