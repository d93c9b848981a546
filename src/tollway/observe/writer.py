"""The request log writer: records are queued by the request (an append, no I/O) and
inserted in batches by one background task, every `interval_s` or as soon as `batch_size`
rows wait.

Bounded on purpose: while the database is unreachable, rows stay queued (up to `capacity`)
and the task retries with a growing pause; beyond that, new rows are dropped and counted.
One bad row never stops the log: rows are made storable when they are built (`_row`: NUL and
unencodable text replaced), and a batch the database refuses for what is in it is split in
halves until the refused rows stand alone; those are dropped and counted, the others land.
When no row of a batch can be written at all, the fault is not in the rows (a missing table,
say): they stay queued and are retried like an outage.
A crash loses at most the rows of one flush interval (plus whatever a database outage had
queued): this table is an operator's view, not money — the ledger is written on the request
path, in the meter's own transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from functools import partial
from itertools import islice
from typing import Any

import orjson

from tollway.errors import DatabaseUnavailable
from tollway.observe.metrics import Metrics
from tollway.observe.record import RequestRecord
from tollway.store import request_log as store
from tollway.store.database import Database

log = logging.getLogger("tollway.request_log")

_MAX_PAUSE_S = 5.0
_PRUNE_BATCH = 2_000
_PRUNE_ROUNDS = 500  # up to a million rows per round


class RequestLogWriter:
    def __init__(
        self,
        db: Database,
        *,
        interval_s: float = 0.1,
        batch_size: int = 500,
        capacity: int = 20_000,
        retention_s: float = 0,
        clock: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        self._db = db
        self._metrics = metrics
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._capacity = capacity
        self._retention_s = retention_s
        self._clock = clock
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._reported_drops = 0

    @property
    def accepting(self) -> bool:
        """Whether `submit` would queue a record now (not closing, the queue not full)."""
        return not self._closing and len(self._queue) < self._capacity

    def submit(self, record: RequestRecord) -> None:
        """Queue a record's row (called at the end of a request: never blocks, never raises).
        The row is built here, ~10-20 µs per request, rather than a batch at a time in the
        flush: a batch built in one go held the event loop for milliseconds every flush, a
        stall the requests arriving meanwhile waited through (bench/README.md, "the request
        log's flush, and where the sequential tail comes from")."""
        if self._closing or len(self._queue) >= self._capacity:
            self._drop(1, "shutdown" if self._closing else "queue_full")
            return
        try:
            row = _row(record)
        except Exception:  # a bug in building the row must not fail the request it logs
            log.exception("request log: the row of %s could not be built", record.request_id)
            self._drop(1, "refused")
            return
        self._queue.append(row)
        if len(self._queue) == 1 or len(self._queue) >= self._batch_size:
            self._wake.set()

    def start(self, spawn: Callable[..., asyncio.Task[Any]]) -> None:
        """Start the flushing task through the process's task tracker."""
        self._task = spawn(self._run(), name="request-log-writer")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (bounded by `timeout_s`) and stop; later records are dropped."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
        if self._queue:
            self._drop(len(self._queue), "shutdown")
            log.warning("request log: %d rows not written at shutdown", len(self._queue))
            self._queue.clear()

    async def _run(self) -> None:
        pause = self._interval_s
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            if not self._closing and len(self._queue) < self._batch_size:
                self._wake.clear()  # gather a batch: until the interval ends, or it is full
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval_s)
            try:
                await self._flush()
                if not self._closing:
                    await self._prune()
            except Exception as exc:  # the database is away: keep the rows, retry later
                self.failures += 1
                log.warning(
                    "request log: writing %d rows failed (retrying in %.2f s): %r",
                    len(self._queue),
                    pause,
                    exc,
                )
                if self._closing:
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, _MAX_PAUSE_S)
                continue
            pause = self._interval_s
            if self.dropped > self._reported_drops:
                self._reported_drops = self.dropped
                log.warning("request log: %d rows dropped so far", self.dropped)

    async def _flush(self) -> None:
        """Write the rows queued when the flush began, a batch at a time. Rows queued while it
        writes wait for the next interval: chasing them, a flush on PostgreSQL wrote nearly
        every row alone at one request at a time (each insert outlasted the next request)."""
        pending = len(self._queue)
        while pending and self._queue:
            size = min(self._batch_size, pending, len(self._queue))
            rows = list(islice(self._queue, size))
            pending -= size
            refused = await self._insert_isolating(rows)
            if len(refused) == size:  # nothing could be written: not the rows' fault
                raise refused[0][1]
            for _ in range(size):
                self._queue.popleft()
            self.written += size - len(refused)
            if refused:
                self._drop(len(refused), "refused")
                for row, exc in refused:
                    log.error(
                        "request log: row %s refused by the database, dropped: %s",
                        row["request_id"],
                        str(exc).splitlines()[0][:300],
                    )

    async def _insert_isolating(
        self, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], Exception]]:
        """Insert `rows` in one transaction; when the database refuses them (for what they
        hold, not because it is away), split them in halves until each refused row stands
        alone. Returns the refused rows with what the database said."""
        try:
            await self._db.run_write(partial(store.insert_many, rows=rows))
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            if len(rows) == 1:
                return [(rows[0], exc)]
            half = len(rows) // 2
            return await self._insert_isolating(rows[:half]) + await self._insert_isolating(
                rows[half:]
            )
        return []

    def _drop(self, rows: int, reason: str) -> None:
        self.dropped += rows
        self._metrics.request_log_dropped.labels(reason).inc(rows)

    async def _prune(self) -> None:
        """Delete rows older than the retention (a round at most every ten minutes), in
        small batches, each its own transaction: the meter's transactions run in between."""
        now = self._clock()
        if self._retention_s <= 0 or now < self._next_prune:
            return
        self._next_prune = now + 600
        cutoff_ms = int((now - self._retention_s) * 1000)
        total = 0
        for _ in range(_PRUNE_ROUNDS):
            deleted = await self._db.run_write(
                partial(store.prune, before_ms=cutoff_ms, limit=_PRUNE_BATCH)
            )
            total += deleted
            if deleted < _PRUNE_BATCH:
                break
        if total:
            log.info("request log: %d rows older than the retention deleted", total)


def _row(record: RequestRecord) -> dict[str, Any]:
    """The stored row: text clipped to its column and made storable (`storable`); JSON
    columns are orjson's output, which escapes every control character."""
    routing = record.routing.as_json() if record.routing is not None else None
    if record.translation:  # kept with the routing (the detail view shows it on its own)
        routing = {**(routing or {}), "translation": record.translation.as_json()}
    return {
        "request_id": record.request_id,
        "created_at_ms": record.created_at_ms,
        "client_request_id": _clip(record.client_request_id, 128),
        "user_id": record.user_id,
        "project_id": record.project_id,
        "key_id": record.key_id,
        "key_name": record.key_name,
        "endpoint": record.endpoint,
        "model": storable(record.model[:128]),
        "served_model": _clip(record.served_model, 128),
        "provider": _clip(record.provider, 64),
        "status": record.status,
        "http_status": record.http_status,
        "stream": record.stream,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_prompt_tokens": record.cached_prompt_tokens,
        "cache_write_tokens": record.cache_write_tokens,
        "reasoning_tokens": record.reasoning_tokens,
        "cost_credits": record.cost_credits,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "usage_source": record.usage_source,
        "error": None if record.error is None else storable(record.error),
        "attempts": orjson.dumps(
            [
                {"provider": a.provider, "model": a.model, "status": a.status, "error": a.error}
                for a in record.attempts
            ]
        ).decode(),
        "routing": None if routing is None else orjson.dumps(routing).decode(),
    }


def _clip(value: str | None, size: int) -> str | None:
    return None if value is None else storable(value[:size])


def storable(text: str) -> str:
    """`text` as every backend stores it: PostgreSQL refuses NUL in text (it becomes
    U+FFFD), and a lone surrogate cannot be encoded at all (it becomes `?`)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
