"""Rate limits on the request path: one check per request, after policy, before the
reservation. A project's limits come from a per-process cache (≤ 1 s); a project without
limits costs a dictionary lookup, never a Redis call.

With `TOLLWAY_REDIS_URL` the counters live in Redis, shared by every replica (one EVALSHA per
request); without it, in this process. When Redis cannot be reached the check fails open to
this process's own counters (WARNING once per outage, a metric per check) and Redis is tried
again after `retry_s`: a rate limit protects capacity, not money — balances and budgets are
enforced in the database whatever Redis does — so an outage of Redis should not stop all
inference. Each replica then enforces the limit on its own: N replicas admit up to N times
the limit until Redis answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from tollway.errors import BadRequest, RateLimited
from tollway.gateway.auth import Principal
from tollway.limits.counters import (
    Counter,
    CountersUnavailable,
    Decision,
    LocalCounters,
    SharedCounters,
)
from tollway.limits.service import RateLimitIndex, applicable, subject_of
from tollway.observe.metrics import Metrics

log = logging.getLogger("tollway.ratelimit")

REQUESTS, TOKENS = "requests", "tokens"


class RateLimiter:
    def __init__(
        self,
        index: RateLimitIndex,
        *,
        clock: Callable[[], float],
        metrics: Metrics,
        redis_url: str | None,
        redis_timeout_s: float = 1.0,
        retry_s: float = 2.0,
    ) -> None:
        self._index = index
        self._metrics = metrics
        self._local = LocalCounters(clock)
        self._redis: SharedCounters | None = None
        if redis_url:
            # Only now: redis-py loads OpenTelemetry's SDK at import when it is installed.
            from tollway.limits.redis_counters import RedisCounters

            self._redis = RedisCounters(redis_url, timeout_s=redis_timeout_s)
        self._retry_s = retry_s
        self._redis_down_until = 0.0  # time.monotonic(); 0 = Redis is believed up

    async def admit(self, principal: Principal, tokens: int) -> dict[str, str]:
        """Count this request (and its token bound) against every limit that applies, or
        raise `RateLimited` counting nothing. Returns the `x-ratelimit-*` headers."""
        return await self._admit(principal, tokens, counting=False)

    async def admit_counting(self, principal: Principal) -> dict[str, str]:
        """A token count (`POST /v1/messages/count_tokens`): counted against each limit's
        requests per minute in counters of its own, as Anthropic's token counting has
        limits of its own, so counting never uses up what inference may send; tokens per
        minute do not apply (nothing is generated)."""
        return await self._admit(principal, 0, counting=True)

    async def _admit(self, principal: Principal, tokens: int, *, counting: bool) -> dict[str, str]:
        rows = await self._index.limits_of(principal.project_id)
        if not rows:
            return {}
        counters: list[Counter] = []
        kinds: list[str] = []
        for row in applicable(rows, user_id=principal.user_id, key_id=principal.key_id):
            base = f"{row.id}:{subject_of(row, user_id=principal.user_id, key_id=principal.key_id)}"
            if row.requests_per_minute is not None:
                kind = ":c" if counting else ":r"
                counters.append(Counter(base + kind, row.requests_per_minute, 1))
                kinds.append(REQUESTS)
            if row.tokens_per_minute is not None and not counting:
                if tokens > row.tokens_per_minute:
                    raise BadRequest(
                        f"max_tokens: this request may use up to {tokens} tokens, more than "
                        f"rate limit {row.id} allows in a minute ({row.tokens_per_minute}); "
                        "lower max_tokens or shorten the prompt",
                        param="max_tokens",
                    )
                counters.append(Counter(base + ":t", row.tokens_per_minute, tokens))
                kinds.append(TOKENS)
        if not counters:
            return {}
        decision = await self._check(counters)
        headers = _headers(counters, kinds, decision)
        if decision.blocked is not None:
            kind = "token counts" if counting else kinds[decision.blocked]
            limit = counters[decision.blocked].limit
            raise RateLimited(
                f"rate limit exceeded: {limit} {kind} per minute; retry after {decision.reset_s} s",
                retry_after_s=decision.reset_s,
                headers=headers,
            )
        return headers

    async def _check(self, counters: Sequence[Counter]) -> Decision:
        if self._redis is None:
            return self._local.check(counters)
        if self._redis_down_until and time.monotonic() < self._redis_down_until:
            self._metrics.ratelimit_local.inc()
            return self._local.check(counters)
        try:
            decision = await self._redis.check(counters)
        except CountersUnavailable as exc:
            if not self._redis_down_until:
                log.warning(
                    "rate limits: Redis unreachable (%s); counting in this process "
                    "until it answers again",
                    exc,
                )
            self._redis_down_until = time.monotonic() + self._retry_s
            self._metrics.ratelimit_local.inc()
            return self._local.check(counters)
        if self._redis_down_until:
            log.warning("rate limits: Redis answers again; counting in Redis")
            self._redis_down_until = 0.0
        return decision

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.close()


def _headers(
    counters: Sequence[Counter], kinds: Sequence[str], decision: Decision
) -> dict[str, str]:
    """OpenAI's headers, for the tightest limit of each kind (the fewest left)."""
    headers: dict[str, str] = {}
    for kind in (REQUESTS, TOKENS):
        left = [
            (max(0, c.limit - used), c.limit)
            for c, k, used in zip(counters, kinds, decision.used, strict=True)
            if k == kind
        ]
        if left:
            remaining, limit = min(left)
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = f"{decision.reset_s}s"
    return headers
