"""Per-minute counters: in Redis (shared by every replica) or in this process.

Fixed windows keyed by the minute (epoch seconds // 60): a check adds the request's cost to
every applicable counter of the current minute only if all of them stay within their limits,
else adds nothing. In Redis the check is one Lua script (one round trip, atomic across
replicas) and the minute comes from the Redis server's clock, so replicas whose clocks
disagree still count into the same window. Keys expire two minutes after their window starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript

WINDOW_S = 60
KEY_PREFIX = "tollway:rl:"
POOL_SIZE = 64  # connections to Redis per process
POOL_WAIT_S = 5.0  # longest wait for a free connection before the check fails open

# KEYS[i]: a counter (without its minute); ARGV[2i-1]: its limit, ARGV[2i]: the cost.
# Returns {blocked counter index or 0, seconds to the next window, count of each counter}.
_CHECK_AND_ADD = """
local now = tonumber(redis.call('TIME')[1])
local minute = math.floor(now / 60)
local used = {}
local blocked = 0
for i = 1, #KEYS do
  local count = tonumber(redis.call('GET', KEYS[i] .. ':' .. minute) or '0')
  used[i] = count
  if blocked == 0 and count + tonumber(ARGV[2 * i]) > tonumber(ARGV[2 * i - 1]) then
    blocked = i
  end
end
if blocked == 0 then
  for i = 1, #KEYS do
    local key = KEYS[i] .. ':' .. minute
    used[i] = redis.call('INCRBY', key, ARGV[2 * i])
    redis.call('EXPIRE', key, 120)
  end
end
local result = {blocked, 60 - now % 60}
for i = 1, #KEYS do result[i + 2] = used[i] end
return result
"""


@dataclass(frozen=True, slots=True)
class Counter:
    """One limit on one subject: `key` names it, `cost` is what this request adds."""

    key: str
    limit: int
    cost: int


@dataclass(frozen=True, slots=True)
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


class RedisCounters:
    """The check in Redis: one EVALSHA per request (the script is loaded on first use and
    again after a Redis restart, by redis-py)."""

    def __init__(self, url: str, *, timeout_s: float) -> None:
        # A bounded pool that makes a burst wait for a connection (a pool without a bound
        # opens one per concurrent request; redis-py's default pool refuses past its size).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        self._redis: Redis = Redis(connection_pool=pool)
        self._script: AsyncScript = self._redis.register_script(_CHECK_AND_ADD)

    async def check(self, counters: Sequence[Counter]) -> Decision:
        args: list[int] = []
        for c in counters:
            args += [c.limit, c.cost]
        raw: Any = await self._script(keys=[KEY_PREFIX + c.key for c in counters], args=args)
        blocked, reset_s, *used = (int(v) for v in raw)
        return Decision(blocked - 1 if blocked else None, reset_s, tuple(used))

    async def close(self) -> None:
        await self._redis.aclose()
