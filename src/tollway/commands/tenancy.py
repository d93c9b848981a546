"""`tollway users | projects | members | keys`: tenancy administration."""

from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from tollway.accounts.service import AccountService
from tollway.audit.actor import CLI
from tollway.billing.credits import credits_to_eur, credits_to_json_number
from tollway.clock import system_clock
from tollway.commands.common import JSON_FLAG_HELP, group, print_json, print_table, run, utc
from tollway.keys.service import KeyService
from tollway.settings import Settings

if TYPE_CHECKING:
    from tollway.store.database import Database
    from tollway.store.keys import KeyListing

users_app = group("Manage users.")
projects_app = group("Manage projects.")
members_app = group("Manage project memberships.")
keys_app = group("Manage API keys.")

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_FLAG_HELP)]


@users_app.command("add")
def users_add(ctx: typer.Context, name: str) -> None:
    """Create a user (balance 0)."""
    row = run(ctx, lambda _s, db: AccountService(db, system_clock).add_user(name, actor=CLI))
    Console().print(f"user {row.name} created (id {row.id})", highlight=False, markup=False)


@users_app.command("list")
def users_list(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List every user with balance (EUR, spendable), projects and keys."""
    rows = run(ctx, lambda _s, db: AccountService(db, system_clock).users())
    if json:
        print_json(
            {
                "users": [
                    {
                        "id": r.id,
                        "name": r.name,
                        "balance": credits_to_json_number(r.balance_credits),
                        "balance_credits": r.balance_credits,
                        "currency": "EUR",
                        "projects": r.projects,
                        "keys": r.keys,
                        "created_at": r.created_at,
                    }
                    for r in rows
                ]
            }
        )
        return
    print_table(
        ("name", "id", "balance EUR", "projects", "keys", "created"),
        [
            (r.name, r.id, credits_to_eur(r.balance_credits), r.projects, r.keys, utc(r.created_at))
            for r in rows
        ],
        empty="no users (tollway init creates the first)",
    )


@projects_app.command("add")
def projects_add(ctx: typer.Context, name: str) -> None:
    """Create a project with the default configuration."""
    row = run(ctx, lambda _s, db: AccountService(db, system_clock).add_project(name, actor=CLI))
    Console().print(f"project {row.name} created (id {row.id})", highlight=False, markup=False)


@projects_app.command("list")
def projects_list(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List every project with its number of members and keys."""
    rows = run(ctx, lambda _s, db: AccountService(db, system_clock).projects())
    if json:
        print_json(
            {
                "projects": [
                    {
                        "id": r.id,
                        "name": r.name,
                        "members": r.members,
                        "keys": r.keys,
                        "created_at": r.created_at,
                    }
                    for r in rows
                ]
            }
        )
        return
    print_table(
        ("name", "id", "members", "keys", "created"),
        [(r.name, r.id, r.members, r.keys, utc(r.created_at)) for r in rows],
        empty="no projects",
    )


@members_app.command("add")
def members_add(
    ctx: typer.Context,
    project: Annotated[str, typer.Option(metavar="NAME", help="Project name.")],
    user: Annotated[str, typer.Option(metavar="NAME", help="User name.")],
    role: Annotated[str, typer.Option(metavar="ROLE", help="admin or member.")],
) -> None:
    """Add or change a membership."""
    run(
        ctx,
        lambda _s, db: AccountService(db, system_clock).set_membership(
            actor=CLI, project=project, user=user, role=role
        ),
    )
    Console().print(f"{user} is now {role} of {project}", highlight=False, markup=False)


@members_app.command("list")
def members_list(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(metavar="NAME", help="Only this project.")] = None,
    user: Annotated[str | None, typer.Option(metavar="NAME", help="Only this user.")] = None,
    json: JsonFlag = False,
) -> None:
    """List memberships (project, user, role)."""
    rows = run(
        ctx,
        lambda _s, db: AccountService(db, system_clock).memberships(project=project, user=user),
    )
    if json:
        print_json(
            {"members": [{"project": r.project, "user": r.user, "role": r.role} for r in rows]}
        )
        return
    print_table(
        ("project", "user", "role"),
        [(r.project, r.user, r.role) for r in rows],
        empty="no memberships",
    )


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(metavar="NAME", help="User name.")],
    project: Annotated[str, typer.Option(metavar="NAME", help="Project name.")],
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="Key name (default: random).")
    ] = None,
    management: Annotated[bool, typer.Option("--management", help="A management key.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API key for a member of a project; the key is printed once."""
    key_name = name or f"key-{secrets.token_hex(4)}"

    async def work(settings: Settings, db: Database) -> Any:
        accounts = AccountService(db, system_clock)
        user_row = await accounts.user(user)
        project_row = await accounts.project(project)
        keys = KeyService(db, system_clock, key_limit=settings.key_limit)
        return await keys.create(
            actor=CLI,
            user_id=user_row.id,
            project_id=project_row.id,
            name=key_name,
            is_management=management,
        )

    key = run(ctx, work)
    if json:
        print_json(
            {
                "name": key.name,
                "api_key": key.api_key,
                "created_at": key.created_at,
                "is_management_key": key.is_management_key,
            }
        )
    else:
        Console(stderr=True).print(
            f"key {key.name} created (shown once):", highlight=False, markup=False
        )
        sys.stdout.write(key.api_key + "\n")


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(metavar="NAME", help="Only this user's keys.")] = None,
    project: Annotated[
        str | None, typer.Option(metavar="NAME", help="Only keys of this project.")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """List API keys (never their secrets: only digests are stored)."""

    async def work(settings: Settings, db: Database) -> list[KeyListing]:
        accounts = AccountService(db, system_clock)
        user_id = (await accounts.user(user)).id if user is not None else None
        project_id = (await accounts.project(project)).id if project is not None else None
        keys = KeyService(db, system_clock, key_limit=settings.key_limit)
        return await keys.listing(user_id=user_id, project_id=project_id)

    rows = run(ctx, work)
    if json:
        print_json(
            {
                "api_keys": [
                    {
                        "user": r.user,
                        "project": r.project,
                        "name": r.name,
                        "is_management_key": r.is_management,
                        "created_at": r.created_at,
                    }
                    for r in rows
                ]
            }
        )
        return
    print_table(
        ("user", "project", "name", "type", "created"),
        [
            (
                r.user,
                r.project,
                r.name,
                "management" if r.is_management else "inference",
                utc(r.created_at),
            )
            for r in rows
        ],
        empty="no API keys",
    )


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The key's name.")],
    user: Annotated[str, typer.Option(metavar="NAME", help="The key's user.")],
) -> None:
    """Delete a user's key (its budgets and rate limits go too): refused at once on
    Management calls; on inference calls within one credit-lease group commit of its next
    use (docs/api.md)."""

    async def work(settings: Settings, db: Database) -> None:
        user_row = await AccountService(db, system_clock).user(user)
        keys = KeyService(db, system_clock, key_limit=settings.key_limit)
        await keys.delete(
            actor=CLI, user_id=user_row.id, name=name, calling_key_id=0, operator=True
        )

    run(ctx, work)
    Console().print(f"key {name} of {user} revoked", highlight=False, markup=False)
