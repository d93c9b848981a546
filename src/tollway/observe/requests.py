"""The request log API: what was served, to whom, how — scoped like the usage report (a
member sees their own requests, a project admin the whole project; anything else is unknown).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row

from tollway.billing.credits import credits_to_json_number
from tollway.billing.usage import parse_time
from tollway.errors import BadRequest, NotFound, excerpt
from tollway.frozen import frozen
from tollway.observe.paging import cut, decode_cursor, parse_limit, text_filter
from tollway.observe.record import STATUSES
from tollway.store import accounts
from tollway.store import request_log as store
from tollway.store.database import Database
from tollway.store.request_log import RequestFilter


@frozen
class RequestQuery:
    start_ms: int | None
    end_ms: int | None
    model: str | None
    provider: str | None
    status: str | None
    key_name: str | None
    limit: int
    after: tuple[int, str] | None


def parse_request_query(
    *,
    from_: str | None,
    until: str | None,
    model: str | None,
    provider: str | None,
    status: str | None,
    key_name: str | None,
    limit: str | None,
    cursor: str | None,
) -> RequestQuery:
    """Validate the query string; every error is a 400 naming its parameter."""
    start = parse_time("from", from_) if from_ else None
    end = parse_time("until", until) if until else None
    if start is not None and end is not None and start > end:
        raise BadRequest("from: must not be after until", param="from")
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status: must be one of {', '.join(STATUSES)}", param="status")
    return RequestQuery(
        start_ms=None if start is None else start * 1000,
        # `until` names a second: every request within it is included.
        end_ms=None if end is None else end * 1000 + 999,
        model=text_filter("model", model),
        provider=text_filter("provider", provider),
        status=status,
        key_name=text_filter("key_name", key_name),
        limit=parse_limit(limit),
        after=None if cursor is None else decode_cursor(cursor),
    )


class RequestLogService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self, *, user_id: str, project_id: str, query: RequestQuery) -> dict[str, Any]:
        """The caller's requests in the key's project, newest first; an admin's cover all."""
        async with self._db.read() as conn:
            admin = await accounts.role_of(conn, user_id, project_id) == "admin"
            rows = await store.page(
                conn,
                RequestFilter(
                    project_id=project_id,
                    user_id=None if admin else user_id,
                    start_ms=query.start_ms,
                    end_ms=query.end_ms,
                    model=query.model,
                    provider=query.provider,
                    status=query.status,
                    key_name=query.key_name,
                    after=query.after,
                ),
                query.limit + 1,  # one more tells whether there is a next page
            )
        page, next_cursor = cut(rows, query.limit, lambda r: (r.created_at_ms, r.request_id))
        return {"requests": [render(r) for r in page], "next_cursor": next_cursor}

    async def get(self, *, user_id: str, project_id: str, request_id: str) -> dict[str, Any]:
        """One request with its routing; 404 when unknown or not the caller's to see."""
        if "\x00" in request_id:  # no id holds one (and PostgreSQL refuses to compare it)
            raise NotFound(f"request '{excerpt(request_id)}' not found")
        async with self._db.read() as conn:
            row = await store.one(conn, request_id)
            visible = row is not None and row.project_id == project_id
            if visible and row is not None and row.user_id != user_id:
                visible = await accounts.role_of(conn, user_id, project_id) == "admin"
        if not visible or row is None:
            raise NotFound(f"request '{excerpt(request_id)}' not found")
        detail = render(row)
        routing = orjson.loads(row.routing) if row.routing else {}
        # Another dialect's request (messages, responses): which fields it translated/dropped.
        detail["translation"] = routing.pop("translation", None)
        detail["routing"] = routing or None
        return detail


def iso_ms(epoch_ms: int) -> str:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def render(row: Row[Any]) -> dict[str, Any]:
    return {
        "request_id": row.request_id,
        "client_request_id": row.client_request_id,
        "created_at": iso_ms(row.created_at_ms),
        "endpoint": row.endpoint,
        "model": row.model,
        "served_model": row.served_model,
        "provider": row.provider,
        "status": row.status,
        "http_status": row.http_status,
        "stream": bool(row.stream),
        "user_id": row.user_id,
        "key_name": row.key_name,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.prompt_tokens + row.completion_tokens,
        "cached_prompt_tokens": row.cached_prompt_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost": credits_to_json_number(row.cost_credits),
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "usage_source": row.usage_source,
        "error": row.error,
        "attempts": orjson.loads(row.attempts),
    }
