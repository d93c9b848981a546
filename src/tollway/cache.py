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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


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
        self._reads: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(self._read(key))
            self._reads[key] = read
        return await asyncio.shield(read)

    async def _read(self, key: K) -> V:
        try:
            value = await self._load(key)
        finally:
            current = self._reads.get(key)
            detached = current is None or current is not asyncio.current_task()
            if not detached:
                del self._reads[key]
        if not detached:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (self._clock() + self._ttl_s, value)
        return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)
        self._reads.pop(key, None)
