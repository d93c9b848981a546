"""The counters in Redis: one Lua script per check (atomic across replicas, one round trip).

Imported only when `TOLLWAY_REDIS_URL` is set: redis-py loads OpenTelemetry's SDK at import
when it is installed, which a gateway without Redis (or tracing) should not pay for. Keys
expire two minutes after their window starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from tollway.limits.counters import Counter, CountersUnavailable, Decision

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
        try:
            raw: Any = await self._script(keys=[KEY_PREFIX + c.key for c in counters], args=args)
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(type(exc).__name__) from exc
        blocked, reset_s, *used = (int(v) for v in raw)
        return Decision(blocked - 1 if blocked else None, reset_s, tuple(used))

    async def close(self) -> None:
        await self._redis.aclose()
