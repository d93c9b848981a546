"""Usage aggregation in SQL: one integer bucket expression that PostgreSQL and SQLite agree on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store.schema import usage_events

_CLASSES = ("cached_prompt_tokens", "cache_write_tokens", "reasoning_tokens")


@frozen
class UsageSum:
    bucket_start: int
    group: tuple[str, ...]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_credits: int
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def plus(self, other: UsageSum, *, bucket_start: int) -> UsageSum:
        return UsageSum(
            bucket_start,
            self.group,
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_credits + other.cost_credits,
            self.cached_prompt_tokens + other.cached_prompt_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


async def aggregate(
    conn: AsyncConnection,
    *,
    project_id: str,
    user_id: str | None,
    start: int,
    end: int,
    step: int,
    offset: int,
    group_by: Sequence[str],
) -> list[UsageSum]:
    """Σ usage per `step`-second bucket aligned at `offset` (epoch seconds), from `start` to
    `end` inclusive. With `user_id` the query walks ix_usage_events_user_created, without it
    ix_usage_events_project_created. Aborted requests (nothing served) are left out."""
    created = usage_events.c.created_at
    bucket = (created - (created - offset) % step).label("bucket_start")
    groups = [usage_events.c[name] for name in group_by]
    scope = (
        [usage_events.c.user_id == user_id, usage_events.c.project_id == project_id]
        if user_id is not None
        else [usage_events.c.project_id == project_id]
    )
    query = (
        select(
            bucket,
            *groups,
            func.count(),
            func.coalesce(func.sum(usage_events.c.prompt_tokens), 0),
            func.coalesce(func.sum(usage_events.c.completion_tokens), 0),
            func.coalesce(func.sum(usage_events.c.cost_credits), 0),
            *(func.coalesce(func.sum(usage_events.c[name]), 0) for name in _CLASSES),
        )
        .where(*scope, created >= start, created <= end, usage_events.c.status != "aborted")
        .group_by(bucket, *groups)
        .order_by(bucket, *groups)
    )
    rows = await conn.execute(query)
    width = len(groups)
    return [
        UsageSum(
            int(r[0]),
            tuple(str(v) for v in r[1 : 1 + width]),
            int(r[1 + width]),
            int(r[2 + width]),
            int(r[3 + width]),
            int(r[4 + width]),
            int(r[5 + width]),
            int(r[6 + width]),
            int(r[7 + width]),
        )
        for r in rows
    ]
