"""Per-minute counters: in Redis (shared by every replica) or in this process.

Fixed windows keyed by the minute (epoch seconds // 60): a check adds the request's cost to
every applicable counter of the current minute only if all of them stay within their limits,
else adds nothing. In Redis the check is one Lua script (one round trip, atomic across
replicas, `redis_counters.py`) and the minute comes from the Redis server's clock, so
replicas whose clocks disagree still count into the same window.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from tollway.frozen import frozen

WINDOW_S = 60


@frozen
class Counter:
    """One limit on one subject: `key` names it, `cost` is what this request adds."""

    key: str
    limit: int
    cost: int


@frozen
class Decision:
    """`blocked`: the index of the first counter the request would overflow, or None when it
    was admitted (and counted). `used`: each counter's count (after adding, when admitted)."""

    blocked: int | None
    reset_s: int
    used: tuple[int, ...]


class LocalCounters:
    """The same check in this process's memory: exact for one process. Synchronous, so on one
    event loop a check and its additions are never interleaved with another request's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._minute = -1
        self._counts: dict[str, int] = {}

    def check(self, counters: Sequence[Counter]) -> Decision:
        now = int(self._clock())
        minute = now // WINDOW_S
        if minute != self._minute:  # a new window: every count starts again from zero
            self._minute = minute
            self._counts = {}
        used = [self._counts.get(c.key, 0) for c in counters]
        reset_s = WINDOW_S - now % WINDOW_S
        for i, c in enumerate(counters):
            if used[i] + c.cost > c.limit:
                return Decision(i, reset_s, tuple(used))
        for c in counters:
            self._counts[c.key] = self._counts.get(c.key, 0) + c.cost
        return Decision(None, reset_s, tuple(self._counts[c.key] for c in counters))


class CountersUnavailable(Exception):
    """The shared counters could not be reached (the Redis client's errors, translated)."""


class SharedCounters(Protocol):
    async def check(self, counters: Sequence[Counter]) -> Decision: ...

    async def close(self) -> None: ...
