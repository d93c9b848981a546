"""The usage report (docs/billing.md): requests, tokens and cost per time bucket and group."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tollway.billing.budgets import iso_utc
from tollway.billing.credits import credits_to_json_number
from tollway.clock import Clock
from tollway.errors import BadRequest, excerpt
from tollway.frozen import frozen
from tollway.store import accounts
from tollway.store import usage as store
from tollway.store.database import Database
from tollway.store.usage import UsageSum

BUCKETS = ("1h", "6h", "1d", "1w", "1M", "1Y")
GROUPS: dict[str, tuple[str, ...]] = {
    "none": (),
    "user": ("user_id",),
    "user_key": ("user_id", "key_name"),
    "model": ("model",),
    "provider": ("provider",),
}
_HOUR = 3600
_DAY = 86_400
# bucket → (seconds per SQL bucket, alignment offset); 1M and 1Y are rolled up from days.
_SQL_STEP = {
    "1h": (_HOUR, 0),
    "6h": (6 * _HOUR, 0),
    "1d": (_DAY, 0),
    "1w": (7 * _DAY, 4 * _DAY),  # weeks start on Monday; 1970-01-05 was one
    "1M": (_DAY, 0),
    "1Y": (_DAY, 0),
}


@frozen
class UsageQuery:
    start: int
    until: int
    bucket: str
    group_by: str


def parse_query(
    clock: Clock, from_: str | None, until: str | None, bucket: str | None, group_by: str | None
) -> UsageQuery:
    """Validate the query string; every error is a 400 naming its parameter."""
    now = int(clock())
    bucket = bucket or "1d"
    if bucket not in BUCKETS:
        raise BadRequest(f"bucket: must be one of {', '.join(BUCKETS)}", param="bucket")
    group_by = group_by or "none"
    if group_by not in GROUPS:
        raise BadRequest(f"group_by: must be one of {', '.join(GROUPS)}", param="group_by")
    start = parse_time("from", from_) if from_ else now - now % _DAY
    end = parse_time("until", until) if until else now
    if start > end:
        raise BadRequest("from: must not be after until", param="from")
    return UsageQuery(start, end, bucket, group_by)


def parse_time(name: str, value: str) -> int:
    """An ISO 8601 date or time (UTC unless it says otherwise) → epoch seconds; else a 400
    naming the parameter."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        epoch = int(moment.timestamp())
        datetime.fromtimestamp(epoch, tz=UTC)  # the answer must be able to print it back
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRequest(
            f"{name}: not a usable ISO 8601 date or time: '{excerpt(value)}'", param=name
        ) from exc
    return epoch


class UsageService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def report(self, *, user_id: str, project_id: str, query: UsageQuery) -> dict[str, Any]:
        """The caller's own usage in the key's project; a project admin's covers everyone."""
        step, offset = _SQL_STEP[query.bucket]
        columns = GROUPS[query.group_by]
        async with self._db.read() as conn:
            admin = await accounts.role_of(conn, user_id, project_id) == "admin"
            sums = await store.aggregate(
                conn,
                project_id=project_id,
                user_id=None if admin else user_id,
                start=query.start,
                end=query.until,
                step=step,
                offset=offset,
                group_by=columns,
            )
        if query.bucket in ("1M", "1Y"):
            sums = _roll_up(sums, yearly=query.bucket == "1Y")
        return {
            "from": iso_utc(query.start),
            "until": iso_utc(query.until),
            "bucket": query.bucket,
            "group_by": query.group_by,
            "rows": [_render(s, columns) for s in sums],
        }


def _calendar_start(epoch: int, *, yearly: bool) -> int:
    day = datetime.fromtimestamp(epoch, tz=UTC)
    return int(datetime(day.year, 1 if yearly else day.month, 1, tzinfo=UTC).timestamp())


def _roll_up(days: list[UsageSum], *, yearly: bool) -> list[UsageSum]:
    merged: dict[tuple[int, tuple[str, ...]], UsageSum] = {}
    for s in days:
        key = (_calendar_start(s.bucket_start, yearly=yearly), s.group)
        seen = merged.get(key)
        zero = UsageSum(key[0], s.group, 0, 0, 0, 0)
        merged[key] = (seen or zero).plus(s, bucket_start=key[0])
    return [merged[k] for k in sorted(merged)]


def _render(s: UsageSum, columns: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {"bucket_start": iso_utc(s.bucket_start)}
    row.update(zip(columns, s.group, strict=True))
    row.update(
        requests=s.requests,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        total_tokens=s.prompt_tokens + s.completion_tokens,
        cached_prompt_tokens=s.cached_prompt_tokens,
        cache_write_tokens=s.cache_write_tokens,
        reasoning_tokens=s.reasoning_tokens,
        cost=credits_to_json_number(s.cost_credits),
    )
    return row
