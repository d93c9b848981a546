"""Reading the audit trail (docs/audit.md): a project admin sees every change to the project,
a member only their own; the operator at the CLI sees everything."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Row

from tollway.billing.usage import parse_time
from tollway.errors import BadRequest
from tollway.frozen import frozen
from tollway.observe.paging import cut, decode_cursor, parse_limit, text_filter
from tollway.observe.requests import iso_ms
from tollway.store import accounts
from tollway.store import audit as store
from tollway.store.audit import AuditFilter
from tollway.store.database import Database

FILTER_MAX = 128


@frozen
class AuditQuery:
    action: str | None
    actor: str | None
    start_ms: int | None
    end_ms: int | None
    limit: int
    after: tuple[int, str] | None


def parse_audit_query(
    *,
    action: str | None,
    actor: str | None,
    since: str | None,
    until: str | None,
    limit: str | None,
    cursor: str | None,
) -> AuditQuery:
    """Validate the query string; every error is a 400 naming its parameter."""
    start = parse_time("since", since) if since else None
    end = parse_time("until", until) if until else None
    if start is not None and end is not None and start > end:
        raise BadRequest("since: must not be after until", param="since")
    return AuditQuery(
        action=text_filter("action", action, max_length=FILTER_MAX),
        actor=text_filter("actor", actor, max_length=FILTER_MAX),
        start_ms=None if start is None else start * 1000,
        end_ms=None if end is None else end * 1000 + 999,  # `until` names a whole second
        limit=parse_limit(limit),
        after=None if cursor is None else decode_cursor(cursor),
    )


class AuditService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(
        self, *, user_id: str | None, project_id: str | None, query: AuditQuery
    ) -> dict[str, Any]:
        """Newest first. `user_id` None: the operator (every row, or one project's)."""
        async with self._db.read() as conn:
            own_only: str | None = None
            if user_id is not None:
                if project_id is None:
                    raise BadRequest("a project is required")
                if await accounts.role_of(conn, user_id, project_id) != "admin":
                    own_only = user_id
            rows = await store.page(
                conn,
                AuditFilter(
                    project_id=project_id,
                    actor_user_id=own_only,
                    action=query.action,
                    actor_name=query.actor,
                    start_ms=query.start_ms,
                    end_ms=query.end_ms,
                    after=query.after,
                ),
                query.limit + 1,  # one more tells whether there is a next page
            )
        page, next_cursor = cut(rows, query.limit, lambda r: (r.created_at_ms, r.id))
        return {"entries": [render(r) for r in page], "next_cursor": next_cursor}


def render(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": iso_ms(row.created_at_ms),
        "actor": {"kind": row.actor_kind, "name": row.actor_name, "user_id": row.actor_user_id},
        "action": row.action,
        "target": row.target,
        "project_id": row.project_id,
        "request_id": row.request_id,
        "before": None if row.before is None else orjson.loads(row.before),
        "after": None if row.after is None else orjson.loads(row.after),
    }
