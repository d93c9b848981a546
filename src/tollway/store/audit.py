"""The audit log table: one insert per change (inside the change's transaction), keyset
pages newest first. Append-only: the database itself refuses UPDATE and DELETE (migration 0006)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Row, and_, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.ids import new_id
from tollway.store.schema import audit_log

if TYPE_CHECKING:
    from tollway.audit.actor import Actor  # a name for the type checker: store imports no domain

TARGET_MAX = 256


def _values(
    actor: Actor,
    *,
    action: str,
    target: str,
    project_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    now_ms: int,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "created_at_ms": now_ms,
        "actor_kind": actor.kind,
        "actor_name": actor.name[:128],
        "actor_user_id": actor.user_id,
        "action": action,
        "target": target[:TARGET_MAX],
        "project_id": project_id,
        "request_id": actor.request_id,
        "before": None if before is None else orjson.dumps(before).decode(),
        "after": None if after is None else orjson.dumps(after).decode(),
    }


async def append(
    conn: AsyncConnection,
    actor: Actor,
    *,
    action: str,
    target: str,
    project_id: str | None,
    now_ms: int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Record one change, in the caller's (the change's) transaction."""
    values = _values(
        actor,
        action=action,
        target=target,
        project_id=project_id,
        before=before,
        after=after,
        now_ms=now_ms,
    )
    await conn.execute(insert(audit_log).values(**values))


@frozen
class AuditFilter:
    project_id: str | None  # None: every project (the operator at the CLI)
    actor_user_id: str | None = None  # a member: only their own actions
    action: str | None = None
    actor_name: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    after: tuple[int, str] | None = None  # the cursor: (created_at_ms, id) last seen


async def page(conn: AsyncConnection, f: AuditFilter, limit: int) -> list[Row[Any]]:
    """Up to `limit` rows, newest first, strictly older than the cursor
    (ix_audit_log_project_created)."""
    c = audit_log.c
    where = []
    if f.project_id is not None:
        where.append(c.project_id == f.project_id)
    if f.actor_user_id is not None:
        where.append(c.actor_user_id == f.actor_user_id)
    if f.action is not None:
        where.append(c.action == f.action)
    if f.actor_name is not None:
        where.append(c.actor_name == f.actor_name)
    if f.start_ms is not None:
        where.append(c.created_at_ms >= f.start_ms)
    if f.end_ms is not None:
        where.append(c.created_at_ms <= f.end_ms)
    if f.after is not None:
        where.append(tuple_(c.created_at_ms, c.id) < tuple_(*f.after))
    query = (
        select(audit_log)
        .where(and_(True, *where))
        .order_by(c.created_at_ms.desc(), c.id.desc())
        .limit(limit)
    )
    return list(await conn.execute(query))
