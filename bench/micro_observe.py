"""Micro-benchmark of what observability adds to one request, in process, without I/O.

    .venv/bin/python bench/micro_observe.py [-n 20000]

Times the observability calls one non-streaming request makes (spans for auth, policy,
routing, one upstream attempt, reserve and settle; the metrics of the attempt, the meter and
the request), around a meter that does nothing: CPU µs per request, best of 5 rounds. Variants:
the metrics alone as before tracing existed (`served` only), tracing off, tracing on (SDK,
no exporter), and the same with PROMETHEUS_MULTIPROC_DIR set (several workers), run in a
child process because prometheus_client picks its value store at import.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tollway.billing.meter import Meter
from tollway.billing.records import Payer, Reservation, ReserveRequest, UsageRecord
from tollway.gateway.observed import Attempt, ObservedMeter
from tollway.observe.metrics import Metrics
from tollway.observe.tracing import Tracer
from tollway.providers.pricing import Pricing
from tollway.providers.registry import load_registry

PAYER = Payer("r", "u", "p", 1, "k")
REQUEST = ReserveRequest(PAYER, Decimal(1), Decimal(1), 10, 10)
RESERVATION = Reservation("r", PAYER, 100, 10, False)
PRICING = Pricing(input_token=Decimal(1), output_token=Decimal(1))
USAGE = UsageRecord("chat.completions", "m", "p", 10, 10, PRICING, 5, "success", "upstream")


class NullMeter:
    async def reserve(self, request: ReserveRequest) -> Reservation:
        return RESERVATION

    async def settle(self, reservation: Reservation, usage: UsageRecord | None) -> int:
        return 20


async def one_request_before(metrics: Metrics, meter: NullMeter) -> None:
    await meter.reserve(REQUEST)
    await meter.settle(RESERVATION, USAGE)
    metrics.served(
        endpoint="chat.completions",
        model="m",
        provider="p",
        status="success",
        seconds=0.001,
        prompt_tokens=10,
        completion_tokens=10,
    )


async def one_request_after(
    metrics: Metrics, tracer: Tracer, meter: ObservedMeter, endpoint: Any
) -> None:
    with tracer.span("tollway.auth") as span:
        span.set("tollway.project_id", "p")
    with tracer.span("tollway.policy", stream=False) as span:
        span.set("tollway.model", "m")
    with tracer.span("tollway.route") as span:
        span.set("tollway.candidates", 3)
    reservation = await meter.reserve(REQUEST)
    tracer.current().set("tollway.request_id", reservation.request_id)
    with Attempt.of(metrics, tracer, endpoint, number=1, after_failure=False):
        pass
    await meter.settle(reservation, USAGE)
    metrics.served(
        endpoint="chat.completions",
        model="m",
        provider="p",
        status="success",
        seconds=0.001,
        prompt_tokens=10,
        completion_tokens=10,
    )


async def measure(n: int, variant: str) -> float:
    metrics = Metrics()
    tracer: Tracer = Tracer()
    if variant == "tracing":
        from opentelemetry.sdk.trace import TracerProvider

        from tollway.observe._otel import OtelTracer

        tracer = OtelTracer(TracerProvider())
    endpoint = load_registry(None).endpoints_of("tollway-demo-chat")[0]
    null = NullMeter()
    observed = ObservedMeter(cast(Meter, null), metrics, tracer)
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            if variant == "before":
                await one_request_before(metrics, null)
            else:
                await one_request_after(metrics, tracer, observed, endpoint)
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()
    if args.variant:
        print(f"{asyncio.run(measure(args.n, args.variant)):.2f}")
        return
    for variant, multiprocess in (
        ("before", False),
        ("after", False),
        ("tracing", False),
        ("before", True),
        ("after", True),
    ):
        env = dict(os.environ)
        with tempfile.TemporaryDirectory() as directory:
            if multiprocess:
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, __file__, "-n", str(args.n), "--variant", variant],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        mode = "several workers (mmap)" if multiprocess else "one process"
        print(f"{variant:8} {mode:24} {out} µs per request")


if __name__ == "__main__":
    main()
