"""The state of one call down the path, and how it is settled: once, durably, out of reach of
the client's cancellation. Both ways of serving (a whole answer in `pipeline`, a relayed stream
in `streaming`) settle a success through `Settler.succeeded`, so neither imports the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tollway.billing.records import Reservation, UsageRecord, UsageSource, UsageStatus
from tollway.gateway.auth import Principal
from tollway.gateway.health import HealthBook
from tollway.gateway.metadata import Trace
from tollway.gateway.observed import ObservedMeter
from tollway.gateway.request import InferenceRequest, counted_prompt_tokens
from tollway.gateway.tally import Settled, Tally
from tollway.observe.metrics import Metrics
from tollway.projects.policy import Policy
from tollway.providers.registry import ResolvedEndpoint
from tollway.providers.usage import TokenUsage, read_usage
from tollway.tasks import TaskTracker


@dataclass(slots=True)
class Call:
    """The state of one request as it moves down the path."""

    principal: Principal
    request: InferenceRequest
    policy: Policy
    trace: Trace
    reservation: Reservation
    started: float
    tally: Tally
    max_tokens: int | None = None  # the per-choice bound lowered to fit the balance


def usage_or_counted(
    request: InferenceRequest, reported: Any, completion: Callable[[], int]
) -> tuple[TokenUsage, UsageSource]:
    """The usage to bill: the upstream's own `usage` object when it is readable, else the
    gateway's count (the prompt as counted, `completion()` for what was answered)."""
    usage = read_usage(reported)
    if usage is not None:
        return usage, "upstream"
    return TokenUsage(counted_prompt_tokens(request), completion()), "counted"


class Settler:
    """Settles reservations and records what was served (metrics, endpoint health, the tally
    of the request log line)."""

    def __init__(
        self, *, meter: ObservedMeter, tasks: TaskTracker, metrics: Metrics, health: HealthBook
    ) -> None:
        self.meter = meter
        self.tasks = tasks
        self.metrics = metrics
        self.health = health

    def settle_later(
        self, reservation: Reservation, usage: UsageRecord | None
    ) -> asyncio.Task[int]:
        """Settle in a tracked task: durable (a settlement the database refuses is retried
        until it lands, see `Meter.settle_durably`) and out of reach of the caller's
        cancellation (a client that leaves while its settlement is on the wire)."""
        return self.tasks.spawn(
            self.meter.settle_durably(reservation, usage), name=f"settle-{reservation.request_id}"
        )

    async def settle(self, reservation: Reservation, usage: UsageRecord | None) -> int:
        """Settle and return the charge (never raises for the database): at once when no
        write is needed (`ObservedMeter.settle_now`), else `settle_later` and wait for it."""
        charged = self.meter.settle_now(reservation, usage)
        if charged is not None:
            return charged
        return await asyncio.shield(self.settle_later(reservation, usage))

    async def succeeded(
        self,
        call: Call,
        endpoint: ResolvedEndpoint,
        *,
        tokens: TokenUsage,
        source: UsageSource,
        total_ms: float,
        ttft_ms: float | None = None,
        owned: Callable[[], None] | None = None,
    ) -> tuple[UsageRecord, int]:
        """Settle a served call: endpoint health, the charge, metrics and the tally. Returns
        the usage record and the credits charged. `owned` is called as soon as the settlement
        task exists (from then on it owns the reservation, whatever happens to the caller)."""
        self.health.record_success(
            endpoint,
            ttft_ms=ttft_ms,
            completion_tokens=tokens.completion,
            total_ms=total_ms,
            project=call.principal.project_id,
        )
        record, settlement = self.settle_served(
            call, endpoint, tokens=tokens, status="success", source=source
        )
        if owned is not None:
            owned()
        if isinstance(settlement, int):
            charged = settlement  # settled at once, tallied already
        else:
            charged = await asyncio.shield(settlement)
            call.tally.settled = Settled(record, charged)
        self.record_served(record)
        return record, charged

    def settle_served(
        self,
        call: Call,
        endpoint: ResolvedEndpoint,
        *,
        tokens: TokenUsage,
        status: UsageStatus,
        source: UsageSource,
    ) -> tuple[UsageRecord, int | asyncio.Task[int]]:
        """Settle what `endpoint` served: at once when no database write is needed (the
        charge, tallied), else start a tracked task (see `settle_later`) and tally the
        estimate of the charge — the cost, unless the balance cannot cover usage beyond the
        reservation — at once: a caller cancelled while awaiting the task (a client leaving a
        stream), or one that cannot await (`StreamRelay.finalize`), still leaves a tally.
        Whoever awaits the task tallies the meter's own figure after."""
        record = self.usage_record(call, endpoint, tokens=tokens, status=status, source=source)
        charged = self.meter.settle_now(call.reservation, record)
        if charged is not None:
            call.tally.settled = Settled(record, charged)
            return record, charged
        call.tally.settled = Settled(record, record.cost)
        return record, self.settle_later(call.reservation, record)

    def record_served(self, record: UsageRecord) -> None:
        self.metrics.served(
            endpoint=record.endpoint,
            model=record.model,
            provider=record.provider,
            status=record.status,
            seconds=record.latency_ms / 1000,
            tokens=record.tokens,
        )

    def usage_record(
        self,
        call: Call,
        endpoint: ResolvedEndpoint,
        *,
        tokens: TokenUsage,
        status: UsageStatus,
        source: UsageSource,
    ) -> UsageRecord:
        return UsageRecord.of(
            tokens,
            endpoint=call.request.endpoint,
            model=endpoint.model.id,
            provider=endpoint.provider.slug,
            pricing=endpoint.pricing,
            latency_ms=int((time.perf_counter() - call.started) * 1000),
            status=status,
            usage_source=source,
        )
