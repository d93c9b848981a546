"""The request log writer on both backends: batches land, a database outage is waited out
with a bounded buffer (drops counted), shutdown flushes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select

from tests.support.world import World
from tollway.app import request_log_flush_s
from tollway.clock import system_clock
from tollway.observe.metrics import Metrics
from tollway.observe.record import Attempt, RequestRecord, Routing
from tollway.observe.writer import RequestLogWriter
from tollway.settings import Settings
from tollway.store.schema import request_log

ROUTING = Routing("cost", "expected_cost_credits", (), ("p",), (), (), ("m",))
STORED_ROUTING = (
    '{"preference":"cost","applied_filters":[],"routing_trace":{"initial_candidates":["p"],'
    '"filtered_out_candidates":[],"scored_candidates":[],"scoring_function":'
    '{"function":"expected_cost_credits","sort":"ascending"}},"fallback_chain":["m"]}'
)


def record(n: int, **changes: Any) -> RequestRecord:
    return replace(
        RequestRecord(
            request_id=f"req-{n}",
            client_request_id=None,
            created_at_ms=1_700_000_000_000 + n,
            user_id="u1",
            project_id="p1",
            key_id=1,
            key_name="k",
            endpoint="chat.completions",
            model="m" * 300,  # longer than the column: clipped, not a rejected batch
            served_model="m",
            provider="p",
            status="success",
            http_status=200,
            stream=False,
            prompt_tokens=1,
            completion_tokens=2,
            cost_credits=3,
            latency_ms=4,
            ttft_ms=None,
            usage_source="upstream",
            error=None,
            attempts=(Attempt("p", "m", "success", None),),
            routing=ROUTING,
        ),
        **changes,
    )


async def count(world: World) -> int:
    async with world.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(request_log))).scalar_one())


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


def spawn(coro: object, name: str) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(coro, name=name)  # type: ignore[arg-type]


async def test_rows_wait_out_an_outage_then_land(world: World) -> None:
    writer = RequestLogWriter(
        world.db, interval_s=0.01, capacity=3, clock=system_clock, metrics=Metrics()
    )
    writer.start(spawn)
    async with world.db.write() as conn:  # the table is gone: every insert fails
        await conn.exec_driver_sql("ALTER TABLE request_log RENAME TO request_log_away")
    for n in range(5):
        writer.submit(record(n))
    await until(lambda: writer.failures >= 2)  # retried, not given up
    assert writer.dropped == 2  # the buffer holds 3; the other 2 are counted
    async with world.db.write() as conn:
        await conn.exec_driver_sql("ALTER TABLE request_log_away RENAME TO request_log")
    await until(lambda: writer.written == 3)
    assert await count(world) == 3
    writer.submit(record(2))  # a row already written (a retried batch): skipped, no error
    writer.submit(record(9))
    await until(lambda: writer.written == 5)
    await writer.close()
    assert await count(world) == 4
    async with world.db.read() as conn:
        row = await conn.execute(select(request_log).where(request_log.c.request_id == "req-9"))
        stored = row.one()
    assert len(stored.model) == 128 and stored.routing == STORED_ROUTING


async def test_close_flushes_what_is_queued(world: World) -> None:
    writer = RequestLogWriter(world.db, interval_s=60, clock=system_clock, metrics=Metrics())
    writer.start(spawn)
    for n in range(7):
        writer.submit(record(n))
    await asyncio.sleep(0.05)
    assert await count(world) == 0  # still gathering its batch
    await writer.close()
    assert await count(world) == 7 and writer.written == 7
    writer.submit(record(8))  # after close: dropped and counted, never lost silently
    assert writer.dropped == 1


async def test_a_full_batch_is_written_without_waiting(world: World) -> None:
    writer = RequestLogWriter(
        world.db, interval_s=60, batch_size=4, clock=system_clock, metrics=Metrics()
    )
    writer.start(spawn)
    for n in range(4):
        writer.submit(record(n))
    await until(lambda: writer.written == 4)
    await writer.close()


async def test_old_rows_are_pruned(world: World) -> None:
    now = 1_700_000_100.0  # 100 s after record(0) was created
    writer = RequestLogWriter(
        world.db, interval_s=0.01, retention_s=50, clock=lambda: now, metrics=Metrics()
    )
    writer.start(spawn)
    writer.submit(record(0))
    await until(lambda: writer.written == 1)
    await writer.close()
    # The prune ran after the flush: the row was older than the retention.
    assert await count(world) == 0


async def test_one_refused_row_is_dropped_alone_and_counted(world: World) -> None:
    metrics = Metrics()
    writer = RequestLogWriter(
        world.db, interval_s=60, batch_size=5, clock=system_clock, metrics=metrics
    )
    writer.start(spawn)
    writer.submit(record(0))
    writer.submit(record(1, model="x\x00y", error="bad \x00 byte"))  # made storable
    writer.submit(record(2, prompt_tokens=2**64))  # no backend stores this: refused
    writer.submit(record(3))
    writer.submit(record(4))
    await until(lambda: writer.written == 4)
    assert writer.dropped == 1
    assert metrics.request_log_dropped.labels("refused")._value.get() == 1
    writer.submit(record(5))  # and the log goes on
    await writer.close()
    assert writer.written == 5
    async with world.db.read() as conn:
        rows = {r.request_id: r for r in await conn.execute(select(request_log))}
    assert sorted(rows) == ["req-0", "req-1", "req-3", "req-4", "req-5"]
    assert (rows["req-1"].model, rows["req-1"].error) == ("x\ufffdy", "bad \ufffd byte")


async def test_a_flush_writes_what_was_queued_when_it_began(world: World) -> None:
    """Rows that arrive while a batch is being written wait for the next interval: a flush
    that chased them wrote nearly every row alone under a steady trickle of requests."""
    writer = RequestLogWriter(world.db, interval_s=60, clock=system_clock, metrics=Metrics())
    run_write = world.db.run_write
    inserts: list[int] = []

    async def arriving_meanwhile(fn: Callable[[Any], Any]) -> Any:
        inserts.append(len(fn.keywords["rows"]))  # type: ignore[attr-defined]
        if len(inserts) == 1:
            writer.submit(record(100))  # a request ends while the batch is being written
        return await run_write(fn)

    world.db.run_write = arriving_meanwhile  # type: ignore[method-assign]
    try:
        for n in range(3):
            writer.submit(record(n))
        await writer._flush()
    finally:
        world.db.run_write = run_write  # type: ignore[method-assign]
    assert inserts == [3] and writer.written == 3
    assert await count(world) == 3
    await writer._flush()  # the row that arrived meanwhile: written by the next flush
    assert await count(world) == 4 and writer.written == 4


async def test_a_batch_larger_than_a_statement_lands_whole_and_a_refused_row_alone(
    world: World,
) -> None:
    """On PostgreSQL a batch is inserted a slice at a time (the event loop runs between
    them); every row of a batch of several slices lands, once, and a row the database
    refuses in a middle slice is dropped alone."""
    writer = RequestLogWriter(
        world.db, interval_s=60, batch_size=500, clock=system_clock, metrics=Metrics()
    )
    writer.start(spawn)
    for n in range(130):
        writer.submit(record(n, prompt_tokens=2**64) if n == 70 else record(n))
    await writer.close()
    assert writer.written == 129 and writer.dropped == 1
    async with world.db.read() as conn:
        stored = {r.request_id for r in await conn.execute(select(request_log.c.request_id))}
    assert stored == {f"req-{n}" for n in range(130) if n != 70}


def test_the_flush_interval_is_shorter_on_sqlite_unless_set(world: World) -> None:
    """SQLite writes on its own thread, on the requests' core: smaller batches more often
    (25 ms) keep the tail short; PostgreSQL flushes every 100 ms. A set value wins."""
    unset = Settings(database_url=world.db.url)
    assert request_log_flush_s(unset, world.db) == (0.025 if world.db.is_sqlite else 0.1)
    chosen = Settings(database_url=world.db.url, request_log_flush_ms=250)
    assert request_log_flush_s(chosen, world.db) == 0.25
