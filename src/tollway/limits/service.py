"""Rate limits as project admins manage them, and the per-process index the gateway reads.

A limit caps requests and/or tokens per minute on a scope, like a budget: the whole project,
each user, one user, each key or one key. The gateway reads a project's limits from
`RateLimitIndex` (cached ≤ 1 s, a change through this process seen at once), never from the
database on each request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tollway.audit.actor import Actor
from tollway.cache import TtlCache
from tollway.clock import Clock
from tollway.errors import BadRequest, NotFound
from tollway.frozen import frozen
from tollway.ids import new_id
from tollway.scopes import check_scope_fields, require_admin, resolve_scope
from tollway.store import audit
from tollway.store import rate_limits as store
from tollway.store.database import Database
from tollway.store.rate_limits import RateLimitRow

PROJECT_WIDE_SCOPES = ("project", "each_user", "each_key")
MAX_PER_MINUTE = 10**12

# How long a process may go on using the limits of a project it read (seconds): a limit
# created or deleted through another process applies within this time.
RATE_LIMIT_INDEX_TTL_S = 1.0


@frozen
class NewRateLimit:
    scope: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    user_id: str | None = None
    key_name: str | None = None


def applicable(rows: tuple[RateLimitRow, ...], *, user_id: str, key_id: int) -> list[RateLimitRow]:
    """The limits of a project that a request of this user's key counts against."""
    return [
        r
        for r in rows
        if r.scope in PROJECT_WIDE_SCOPES
        or (r.scope == "user" and r.user_id == user_id)
        or (r.scope == "key" and r.key_id == key_id)
    ]


def subject_of(row: RateLimitRow, *, user_id: str, key_id: int) -> str:
    """Whose counter a request increments: "" for the project, else the user or the key."""
    if row.scope == "project":
        return ""
    if row.scope in ("each_user", "user"):
        return user_id
    return str(key_id)


def rate_limit_json(row: RateLimitRow) -> dict[str, Any]:
    """A limit as the Management API and `tollway rate-limits --json` show it."""
    return {
        "id": row.id,
        "scope": row.scope,
        "requests_per_minute": row.requests_per_minute,
        "tokens_per_minute": row.tokens_per_minute,
        "user_id": row.user_id,
        "key_name": row.key_name,
        "created_at": row.created_at,
    }


class RateLimitIndex:
    """Each project's limits, cached per process for `ttl_s`, one read per project when it
    expires (`TtlCache`). Read and invalidated on the event loop only; a read that began
    before an invalidation answers its waiters but is not stored."""

    def __init__(
        self,
        db: Database,
        ttl_s: float = RATE_LIMIT_INDEX_TTL_S,
        *,
        max_projects: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._cache: TtlCache[str, tuple[RateLimitRow, ...]] = TtlCache(
            self._read, ttl_s=ttl_s, max_entries=max_projects, clock=clock
        )

    async def limits_of(self, project_id: str) -> tuple[RateLimitRow, ...]:
        return await self._cache.get(project_id)

    async def _read(self, project_id: str) -> tuple[RateLimitRow, ...]:
        async with self._db.read() as conn:
            return tuple(await store.rate_limits_of_project(conn, project_id))

    def invalidate(self, project_id: str) -> None:
        self._cache.forget(project_id)


class RateLimitService:
    def __init__(self, db: Database, clock: Clock, index: RateLimitIndex) -> None:
        self._db = db
        self._clock = clock
        self.index = index

    async def list(self, *, user_id: str | None, project_id: str) -> list[RateLimitRow]:
        """`user_id` None: the operator (the CLI), who needs no membership."""
        async with self._db.read() as conn:
            await require_admin(conn, user_id, project_id, rules="rate limits")
            return await store.rate_limits_of_project(conn, project_id)

    async def create(
        self, *, actor: Actor, user_id: str | None, project_id: str, spec: NewRateLimit
    ) -> RateLimitRow:
        _validate(spec)
        async with self._db.write() as conn:
            await require_admin(conn, user_id, project_id, rules="rate limits")
            target = await resolve_scope(
                conn,
                rule="rate limit",
                scope=spec.scope,
                project_id=project_id,
                caller_id=user_id,
                user_id=spec.user_id,
                key_name=spec.key_name,
            )
            now_s = self._clock()
            row = RateLimitRow(
                id=new_id(),
                project_id=project_id,
                scope=spec.scope,
                user_id=target.user_id,
                key_id=target.key_id,
                requests_per_minute=spec.requests_per_minute,
                tokens_per_minute=spec.tokens_per_minute,
                created_at=int(now_s),
                key_name=target.key_name,
            )
            await store.insert_rate_limit(conn, row)
            await audit.append(
                conn,
                actor,
                action="rate_limit.create",
                target=f"rate_limit/{row.id}",
                project_id=project_id,
                now_ms=int(now_s * 1000),
                after=rate_limit_json(row),
            )
        self.index.invalidate(project_id)  # the gateway of this process: at once
        return row

    async def delete(
        self, *, actor: Actor, user_id: str | None, project_id: str, limit_id: str
    ) -> None:
        async with self._db.write() as conn:
            await require_admin(conn, user_id, project_id, rules="rate limits")
            rows = await store.rate_limits_of_project(conn, project_id)
            found = [r for r in rows if r.id == limit_id]
            if not found or not await store.delete_rate_limit(conn, project_id, limit_id):
                raise NotFound(f"rate limit '{limit_id[:80]}' not found")
            await audit.append(
                conn,
                actor,
                action="rate_limit.delete",
                target=f"rate_limit/{limit_id}",
                project_id=project_id,
                now_ms=int(self._clock() * 1000),
                before=rate_limit_json(found[0]),
            )
        self.index.invalidate(project_id)


def _validate(spec: NewRateLimit) -> None:
    check_scope_fields("rate limit", spec.scope, spec.user_id, spec.key_name)
    if spec.requests_per_minute is None and spec.tokens_per_minute is None:
        raise BadRequest(
            "requests_per_minute: give requests_per_minute, tokens_per_minute or both",
            param="requests_per_minute",
        )
    for name, value in (
        ("requests_per_minute", spec.requests_per_minute),
        ("tokens_per_minute", spec.tokens_per_minute),
    ):
        if value is not None and not 1 <= value <= MAX_PER_MINUTE:
            raise BadRequest(f"{name}: must be between 1 and {MAX_PER_MINUTE}", param=name)
