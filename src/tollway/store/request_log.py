"""The request log table: batched inserts, keyset pages (newest first), one row, pruning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store._sql import insert_rows
from tollway.store.schema import request_log

_COLUMNS = tuple(column.name for column in request_log.columns)


# Rows per statement on PostgreSQL, where asyncpg encodes a whole executemany on the event
# loop before sending it: a flush of 280 rows (100 ms at 2,800 req/s) held the loop for
# ~2-3 ms, the p99 of requests at c=1 (bench/README.md, "the request log's insert, in
# slices"). Between two statements of the flush's transaction the loop serves requests;
# nobody waits for the request log, so the extra turns cost no request anything. (SQLite
# writes on its own thread: one statement. The group commit is not sliced: requests wait
# on it, and under load each slice would wait a whole turn of the loop.)
_PG_SLICE = 48  # measured: 32, 48 and 96 (bench/README.md)


def insert_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert a batch (with the driver's executemany); a row already there (a retried batch
    whose commit did land) is skipped, so a retry never fails on it."""
    values = [tuple(row[name] for name in _COLUMNS) for row in rows]
    step = _PG_SLICE if conn.dialect.name == "postgresql" else len(values) or 1
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        insert_rows(conn, "request_log", _COLUMNS, chunk, skip_existing=True)


def prune(conn: Connection, *, before_ms: int, limit: int) -> int:
    """Delete up to `limit` rows created before `before_ms` (ix_request_log_created);
    returns how many."""
    oldest = (
        select(request_log.c.request_id).where(request_log.c.created_at_ms < before_ms).limit(limit)
    )
    result = conn.execute(delete(request_log).where(request_log.c.request_id.in_(oldest)))
    return int(result.rowcount or 0)


@frozen
class RequestFilter:
    project_id: str
    user_id: str | None  # None: the whole project (an admin)
    start_ms: int | None = None
    end_ms: int | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None
    key_name: str | None = None
    after: tuple[int, str] | None = None  # the cursor: (created_at_ms, request_id) last seen


async def page(conn: AsyncConnection, f: RequestFilter, limit: int) -> list[Row[Any]]:
    """Up to `limit` rows, newest first, strictly older than the cursor. Walks
    ix_request_log_user_created or ix_request_log_project_created."""
    c = request_log.c
    where = [c.project_id == f.project_id]
    if f.user_id is not None:
        where.append(c.user_id == f.user_id)
    if f.start_ms is not None:
        where.append(c.created_at_ms >= f.start_ms)
    if f.end_ms is not None:
        where.append(c.created_at_ms <= f.end_ms)
    if f.model is not None:
        where.append(or_(c.model == f.model, c.served_model == f.model))
    if f.provider is not None:
        where.append(c.provider == f.provider)
    if f.status is not None:
        where.append(c.status == f.status)
    if f.key_name is not None:
        where.append(c.key_name == f.key_name)
    if f.after is not None:
        where.append(tuple_(c.created_at_ms, c.request_id) < tuple_(*f.after))
    query = (
        select(request_log)
        .where(and_(*where))
        .order_by(c.created_at_ms.desc(), c.request_id.desc())
        .limit(limit)
    )
    return list(await conn.execute(query))


async def one(conn: AsyncConnection, request_id: str) -> Row[Any] | None:
    return (
        await conn.execute(select(request_log).where(request_log.c.request_id == request_id))
    ).first()
