"""`tollway audit list`: the audit trail as the operator sees it (every project)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tollway.accounts.service import AccountService
from tollway.audit.service import AuditService, parse_audit_query
from tollway.clock import system_clock
from tollway.commands.common import group, print_json, print_table, run
from tollway.settings import Settings

if TYPE_CHECKING:
    from tollway.store.database import Database

audit_app = group("Read the audit trail (every change, who made it, before and after).")


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option(help="Only this project (by name).")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action (api_key.create…).")] = None,
    actor: Annotated[str | None, typer.Option(help="Only this actor (a name).")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 date or time (UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 date or time (UTC).")] = None,
    limit: Annotated[str | None, typer.Option(help="Entries per page (1-200, default 50).")] = None,
    cursor: Annotated[str | None, typer.Option(help="The next_cursor of a previous page.")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Changes, newest first, with who made them."""

    async def work(_s: Settings, db: Database) -> dict[str, Any]:
        query = parse_audit_query(
            action=action, actor=actor, since=since, until=until, limit=limit, cursor=cursor
        )
        project_id = None
        if project is not None:
            project_id = (await AccountService(db, system_clock).project(project)).id
        return await AuditService(db).list(user_id=None, project_id=project_id, query=query)

    page = run(ctx, work)
    if json:
        print_json(page)
        return
    print_table(
        ("time", "actor", "action", "target", "request"),
        [
            (
                e["created_at"],
                f"{e['actor']['kind']}:{e['actor']['name']}",
                e["action"],
                e["target"],
                e["request_id"] or "",
            )
            for e in page["entries"]
        ],
        empty="no audit entries",
    )
    if page["next_cursor"]:
        typer.echo(f"next page: --cursor {page['next_cursor']}", err=True)
