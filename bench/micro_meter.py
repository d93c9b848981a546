"""Micro-benchmark of the money path: `Meter.reserve` + `Meter.settle`, in process.

    .venv/bin/python bench/micro_meter.py [-n 300] [--tasks 50] [--pg URL | --no-pg]

Sequential: N reserve+settle pairs one after the other, timing each call (ms per reserve, per
settle: mean, p50, p99). Concurrent: `--tasks` asyncio tasks each doing N/10 pairs at once
(pairs per second, mean ms per pair). SQLite in a temp file; PostgreSQL (a fresh database,
dropped afterwards) when the server answers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.world import World

from tollway.billing.meter import Meter
from tollway.billing.records import Payer, ReserveRequest, UsageRecord
from tollway.clock import system_clock
from tollway.providers.pricing import Pricing
from tollway.store import keys

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PRICE = Decimal("0.5")
USAGE = UsageRecord(
    endpoint="chat.completions",
    model="m",
    provider="p",
    prompt_tokens=20,
    completion_tokens=16,
    pricing=Pricing(input_token=PRICE, output_token=PRICE),
    latency_ms=1,
    status="success",
    usage_source="upstream",
)


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"mean {statistics.fmean(values) * 1e3:.3f} p50 {statistics.median(values) * 1e3:.3f}"
        f" p99 {p99 * 1e3:.3f}"
    )


async def _payer(world: World) -> Payer:
    member = await world.member("bench", "bench", credits_eur="1000000")
    async with world.db.read() as conn:
        row = await keys.key_by_name(conn, member.user_id, "bench-inf")
    assert row is not None
    return Payer("", member.user_id, member.project_id, row.id, row.name)


def _ask(payer: Payer) -> ReserveRequest:
    fresh = Payer(uuid.uuid4().hex, payer.user_id, payer.project_id, payer.key_id, payer.key_name)
    return ReserveRequest(fresh, PRICE, PRICE, 20, 256)


async def _pair(meter: Meter, payer: Payer) -> tuple[float, float]:
    t0 = time.perf_counter()
    reservation = await meter.reserve(_ask(payer))
    t1 = time.perf_counter()
    await meter.settle(reservation, USAGE)
    return t1 - t0, time.perf_counter() - t1


async def bench(label: str, url: str, n: int, tasks: int) -> None:
    world = World(url)
    try:
        await world.migrate()
        payer = await _payer(world)
        meter = Meter(world.db, system_clock, instance_id="bench")
        for _ in range(20):  # warm-up: connections, statement caches
            await _pair(meter, payer)
        reserves: list[float] = []
        settles: list[float] = []
        for _ in range(n):
            r, s = await _pair(meter, payer)
            reserves.append(r)
            settles.append(s)
        print(f"{label} sequential x{n}: reserve {_ms(reserves)} ms | settle {_ms(settles)} ms")

        per_task = max(1, n // 10)

        async def worker() -> None:
            for _ in range(per_task):
                await _pair(meter, payer)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        elapsed = time.perf_counter() - t0
        pairs = tasks * per_task
        print(
            f"{label} concurrent {tasks} tasks x{per_task}: {pairs / elapsed:,.0f} pairs/s,"
            f" {elapsed / pairs * 1e3:.3f} ms per pair (wall / pairs)"
        )
    finally:
        await world.close()


@asynccontextmanager
async def _postgres(admin_dsn: str) -> AsyncIterator[str | None]:
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL unreachable ({exc}); skipped")
        yield None
        return
    name = f"tollway_micro_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield f"{admin_dsn.rsplit('/', 1)[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_dsn, timeout=3)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--pg", default=PG_ADMIN, help="admin DSN of a PostgreSQL server")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bench("sqlite", f"sqlite:///{tmp}/micro.db", args.n, args.tasks)
    if not args.no_pg:
        async with _postgres(args.pg) as url:
            if url is not None:
                await bench("postgres", url, args.n, args.tasks)


if __name__ == "__main__":
    asyncio.run(main())
