"""Create, list and delete API keys (see docs/api.md, API keys)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from tollway.audit.actor import Actor
from tollway.clock import Clock
from tollway.errors import BadRequest, NotFound, excerpt
from tollway.frozen import frozen
from tollway.keys.secrets import NAME_PATTERN, digest_of, generate_key
from tollway.store import accounts, audit, keys
from tollway.store.database import Database
from tollway.store.keys import KeyListing, KeyRow


@frozen
class CreatedKey:
    name: str
    api_key: str
    created_at: int
    is_management_key: bool


class KeyService:
    def __init__(self, db: Database, clock: Clock, *, key_limit: int) -> None:
        self._db = db
        self._clock = clock
        self._key_limit = key_limit

    async def listing(
        self, *, user_id: str | None = None, project_id: str | None = None
    ) -> list[KeyListing]:
        """Keys of every user (operators' view, without secrets), optionally narrowed."""
        async with self._db.read() as conn:
            return await keys.list_keys(conn, user_id=user_id, project_id=project_id)

    async def by_digest(self, digest: str) -> KeyRow | None:
        async with self._db.read() as conn:
            return await keys.key_by_digest(conn, digest)

    async def list(self, user_id: str) -> list[KeyRow]:
        async with self._db.read() as conn:
            return await keys.keys_of_user(conn, user_id)

    async def create(
        self, *, actor: Actor, user_id: str, project_id: str, name: str, is_management: bool
    ) -> CreatedKey:
        if not NAME_PATTERN.fullmatch(name):
            raise BadRequest("name: must be 1-64 characters of A-Z a-z 0-9 . _ -", param="name")
        secret = generate_key()
        now_s = self._clock()
        now = int(now_s)
        try:
            async with self._db.write() as conn:
                await accounts.lock_user(conn, user_id)  # the key limit holds under concurrency
                if await accounts.role_of(conn, user_id, project_id) is None:
                    raise BadRequest("user is not a member of the project", param="project")
                if await keys.key_name_taken(conn, user_id, name):
                    raise BadRequest(
                        f"name: an API key named '{excerpt(name)}' already exists", param="name"
                    )
                if await keys.count_keys(conn, user_id) >= self._key_limit:
                    raise BadRequest(
                        f"key limit reached: a user may hold at most {self._key_limit} API keys"
                    )
                await keys.insert_key(
                    conn,
                    user_id=user_id,
                    project_id=project_id,
                    name=name,
                    digest=digest_of(secret),
                    is_management=is_management,
                    now=now,
                )
                await audit.append(
                    conn,
                    actor,
                    action="api_key.create",
                    target=f"api_key/{name}",
                    project_id=project_id,
                    now_ms=int(now_s * 1000),
                    after=_key_fields(user_id, project_id, name, is_management=is_management),
                )
        except IntegrityError as exc:  # a concurrent create with the same name won the race
            raise BadRequest(
                f"name: an API key named '{excerpt(name)}' already exists", param="name"
            ) from exc
        return CreatedKey(name, secret, now, is_management)

    async def delete(
        self, *, actor: Actor, user_id: str, name: str, calling_key_id: int, operator: bool = False
    ) -> KeyRow:
        """Delete one of the user's keys, with its budgets and rate limits. A key that
        carries a budget or rate limit of its own (set by a project admin) may be deleted
        only by an admin of its project, or by an operator (`operator`: the CLI) — else a
        member could shed the limit by deleting the key and creating it again."""
        async with self._db.write() as conn:
            row = await keys.lock_key_by_name(conn, user_id, name)
            if row is None:
                raise NotFound(f"API key '{excerpt(name)}' not found")
            if row.id == calling_key_id:
                raise BadRequest(
                    "name: cannot delete the API key used for this request", param="name"
                )
            if not operator and await accounts.role_of(conn, user_id, row.project_id) != "admin":
                budgets, rate_limits = await keys.limits_on_key(conn, row.id)
                if budgets or rate_limits:
                    held = " and ".join(
                        what
                        for what, count in (("a budget", budgets), ("a rate limit", rate_limits))
                        if count
                    )
                    raise BadRequest(
                        f"name: the API key '{excerpt(name)}' carries {held} set by a project"
                        " admin; only a project admin can remove it (then the key can be"
                        " deleted)",
                        param="name",
                        code="key_limited_by_admin",
                    )
            await keys.delete_key(conn, row.id)
            await audit.append(
                conn,
                actor,
                action="api_key.delete",
                target=f"api_key/{name}",
                project_id=row.project_id,
                now_ms=int(self._clock() * 1000),
                before=_key_fields(user_id, row.project_id, name, is_management=row.is_management),
            )
        return row


def _key_fields(
    user_id: str, project_id: str, name: str, *, is_management: bool
) -> dict[str, object]:
    """What the audit log says of a key: never its secret nor its digest."""
    return {
        "name": name,
        "user_id": user_id,
        "project_id": project_id,
        "is_management_key": is_management,
    }
