"""`tollway rate-limits`: list, add and delete a project's rate limits as the operator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tollway.accounts.service import AccountService
from tollway.audit.actor import CLI
from tollway.clock import system_clock
from tollway.commands.common import fail, group, print_json, print_table, run
from tollway.limits.service import (
    NewRateLimit,
    RateLimitIndex,
    RateLimitService,
    rate_limit_json,
)
from tollway.scopes import SCOPES
from tollway.settings import Settings

if TYPE_CHECKING:
    from tollway.store.database import Database
    from tollway.store.rate_limits import RateLimitRow

rate_limits_app = group("Manage rate limits (requests and tokens per minute).")
JSON_HELP = "Print one JSON object."


def _service(db: Database) -> RateLimitService:
    return RateLimitService(db, system_clock, RateLimitIndex(db))


def _describe(row: RateLimitRow) -> str:
    who = row.key_name or row.user_id or ""
    parts = [f"{row.id}  {row.scope}{' ' + who if who else ''}"]
    if row.requests_per_minute is not None:
        parts.append(f"{row.requests_per_minute} requests/min")
    if row.tokens_per_minute is not None:
        parts.append(f"{row.tokens_per_minute} tokens/min")
    return "  ".join(parts)


@rate_limits_app.command("list")
def rate_limits_list(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project name.")],
    json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """The rate limits of a project."""

    async def work(_s: Settings, db: Database) -> list[RateLimitRow]:
        project_row = await AccountService(db, system_clock).project(project)
        return await _service(db).list(user_id=None, project_id=project_row.id)

    rows = run(ctx, work)
    if json:
        print_json({"rate_limits": [rate_limit_json(r) for r in rows]})
        return
    print_table(
        ("id", "scope", "user / key", "requests/min", "tokens/min"),
        [
            (
                r.id,
                r.scope,
                r.key_name or r.user_id,
                r.requests_per_minute,
                r.tokens_per_minute,
            )
            for r in rows
        ],
        empty=f"no rate limits in {project}",
    )


@rate_limits_app.command("add")
def rate_limits_add(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project name.")],
    scope: Annotated[str, typer.Option(metavar="SCOPE", help=" | ".join(SCOPES))],
    rpm: Annotated[
        int | None, typer.Option("--rpm", metavar="N", help="Requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None, typer.Option("--tpm", metavar="N", help="Tokens per minute.")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="The user of a 'user' limit, the key's owner of a 'key' one."
        ),
    ] = None,
    key: Annotated[
        str | None, typer.Option(metavar="KEY_NAME", help="The key of a 'key' limit.")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Add a rate limit to a project (every applicable limit must fit)."""
    if scope == "key" and user is None:
        fail("--user: a 'key' limit names the key's owner")

    async def work(_s: Settings, db: Database) -> RateLimitRow:
        accounts = AccountService(db, system_clock)
        project_row = await accounts.project(project)
        user_id = None if user is None else (await accounts.user(user)).id
        spec = NewRateLimit(
            scope=scope,
            requests_per_minute=rpm,
            tokens_per_minute=tpm,
            user_id=user_id,
            key_name=key,
        )
        return await _service(db).create(
            actor=CLI, user_id=None, project_id=project_row.id, spec=spec
        )

    row = run(ctx, work)
    if json:
        print_json(rate_limit_json(row))
    else:
        Console(highlight=False).print(f"rate limit added: {_describe(row)}")


@rate_limits_app.command("delete")
def rate_limits_delete(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(metavar="PROJECT", help="Project name.")],
    limit_id: Annotated[str, typer.Argument(metavar="ID", help="The rate limit's id.")],
) -> None:
    """Delete a rate limit of a project."""

    async def work(_s: Settings, db: Database) -> None:
        project_row = await AccountService(db, system_clock).project(project)
        await _service(db).delete(
            actor=CLI, user_id=None, project_id=project_row.id, limit_id=limit_id
        )

    run(ctx, work)
    Console(highlight=False).print(f"rate limit {limit_id} deleted")
