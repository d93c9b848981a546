"""A per-process cache of values read from the database, each kept for a TTL, with one read
in flight per key.

Without the one-read rule, an entry that expires under load is read again by every request
that arrives while the first read runs (64 concurrent requests: up to 64 identical reads, each
an executor hop, which slow each other and widen the window). Here the first miss starts the
read as a task and every later miss of the same key awaits that task; a waiter that goes away
(a client disconnecting) does not cancel the read for the others.

Used on the event loop only. `forget` drops the entry and detaches the read in flight: that
read still answers the requests already waiting for it, but its value is not stored, and the
next miss reads again (a change made through this process is seen at once).

`Flights` is the one-read rule by itself, for a cache kept elsewhere (the budget index, which
the SQLite writer thread fills too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Flights(Generic[K, V]):
    """One call in flight per key: the first caller starts it as a task, every later caller
    with the same key awaits that task, and a caller that goes away does not cancel it for
    the others. Used on the event loop only."""

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._tasks[key] = task
            task.add_done_callback(partial(self._landed, key))
        return await asyncio.shield(task)

    def flying(self, key: K, task: asyncio.Future[V] | None) -> bool:
        """Whether `task` is still the call in flight for `key` (not detached)."""
        return task is not None and self._tasks.get(key) is task

    def detach(self, key: K) -> None:
        """The call in flight still answers those waiting for it; the next caller starts
        another."""
        self._tasks.pop(key, None)

    def _landed(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # its waiters were given it (or all of them left): not unseen


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        *,
        ttl_s: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._reads: Flights[K, V] = Flights()

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        return await self._reads.run(key, partial(self._read, key))

    async def _read(self, key: K) -> V:
        value = await self._load(key)
        if self._reads.flying(key, asyncio.current_task()):  # not forgotten meanwhile
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (self._clock() + self._ttl_s, value)
        return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
        self._reads.detach(key)
