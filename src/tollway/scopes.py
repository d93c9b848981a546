"""Who a project's rule applies to — a budget (`billing/budgets.py`) or a rate limit
(`limits/service.py`) — and who may change it. One resolver for both, so they name, check and
word the same things the same way.

Scopes: `project` (everyone together), `each_user`, `user` (one member, by `user_id`),
`each_key`, `key` (one key, by `key_name` of the key's owner `user_id`, default the caller;
the key must belong to the project)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.errors import BadRequest, Forbidden, excerpt
from tollway.frozen import frozen
from tollway.store import accounts, keys

SCOPES = ("project", "each_user", "user", "each_key", "key")


@frozen
class ScopeTarget:
    """The user and key a `user` or `key` rule names (None for the project-wide scopes)."""

    user_id: str | None = None
    key_id: int | None = None
    key_name: str | None = None


def check_scope_fields(rule: str, scope: str, user_id: str | None, key_name: str | None) -> None:
    """The scope's own fields, before any database read; `rule` names the rule in messages
    ("budget", "rate limit")."""
    if scope not in SCOPES:
        raise BadRequest(f"scope: must be one of {', '.join(SCOPES)}", param="scope")
    if scope not in ("user", "key") and user_id is not None:
        raise BadRequest(f"user_id: only a 'user' or 'key' {rule} names a user", param="user_id")
    if scope != "key" and key_name is not None:
        raise BadRequest(f"key_name: only a 'key' {rule} names a key", param="key_name")


async def resolve_scope(
    conn: AsyncConnection,
    *,
    rule: str,
    scope: str,
    project_id: str,
    caller_id: str | None,
    user_id: str | None,
    key_name: str | None,
) -> ScopeTarget:
    """The member or key a `user` or `key` rule applies to, checked against the project;
    400 naming the field otherwise. `caller_id` None: the operator (the CLI)."""
    if scope == "user":
        if user_id is None:
            raise BadRequest(f"user_id: required for a 'user' {rule}", param="user_id")
        if await accounts.role_of(conn, user_id, project_id) is None:
            raise BadRequest(
                f"user_id: user '{excerpt(user_id)}' is not a member of the project",
                param="user_id",
            )
        return ScopeTarget(user_id=user_id)
    if scope == "key":
        if key_name is None:
            raise BadRequest(f"key_name: required for a 'key' {rule}", param="key_name")
        owner = user_id or caller_id
        key = None if owner is None else await keys.key_by_name(conn, owner, key_name)
        if owner is None or key is None or key.project_id != project_id:
            who = f"user '{excerpt(owner)}'" if owner is not None else "the key's owner (user_id)"
            raise BadRequest(
                f"key_name: {who} has no API key '{excerpt(key_name)}' in this project",
                param="key_name",
            )
        return ScopeTarget(user_id=owner, key_id=key.id, key_name=key_name)
    return ScopeTarget()


async def require_admin(
    conn: AsyncConnection, user_id: str | None, project_id: str, *, rules: str
) -> None:
    """Only a project admin manages a project's `rules` ("budgets", "rate limits"); 403
    otherwise. `user_id` None: the operator (the CLI), who needs no membership."""
    if user_id is None:
        return
    if await accounts.role_of(conn, user_id, project_id) != "admin":
        raise Forbidden(f"only a project admin may manage {rules}")
