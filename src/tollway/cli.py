"""The ``tollway`` command. It calls services; it never speaks SQL or HTTP itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from tollway.accounts.service import AccountService
from tollway.billing.verify import LedgerReport, verify_ledger
from tollway.clock import system_clock
from tollway.commands.common import CliContext, error_line, fail, print_json, run
from tollway.commands.rate_limits import rate_limits_app
from tollway.keys.service import KeyService
from tollway.observe.metrics import metrics_directory
from tollway.observe.tracing import TracingUnavailable, build_tracer
from tollway.providers.registry import RegistryError, load_registry
from tollway.settings import Settings
from tollway.store.database import Database

T = TypeVar("T")

app = typer.Typer(
    help="Tollway: a self-hosted LLM gateway.", no_args_is_help=True, add_completion=False
)
users_app = typer.Typer(help="Manage users.", no_args_is_help=True)
projects_app = typer.Typer(help="Manage projects.", no_args_is_help=True)
members_app = typer.Typer(help="Manage project memberships.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Top up balances.", no_args_is_help=True)
ledger_app = typer.Typer(help="Check the money ledger.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(projects_app, name="projects")
app.add_typer(members_app, name="members")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.add_typer(ledger_app, name="ledger")
app.add_typer(rate_limits_app, name="rate-limits")


@app.callback()
def _root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None, typer.Option(help="Database URL (env TOLLWAY_DATABASE_URL).")
    ] = None,
    providers: Annotated[
        str | None, typer.Option(help="Provider registry YAML (env TOLLWAY_PROVIDERS).")
    ] = None,
) -> None:
    overrides = {"database_url": database_url, "providers": providers}
    ctx.obj = CliContext({k: v for k, v in overrides.items() if v is not None})


@app.command()
def init(
    ctx: typer.Context,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create or migrate the schema; on a new database create admin, default and a key."""

    async def work(_settings: Settings, db: Database) -> None:
        boot = await AccountService(db, system_clock).bootstrap()
        if boot is None:
            message = "database already initialised: nothing changed"
            if json:
                print_json({"user": None, "project": None, "api_key": None, "message": message})
            else:
                Console(stderr=True).print(message)
            return
        if json:
            print_json(
                {"user": boot.user.name, "project": boot.project.name, "api_key": boot.api_key}
            )
            return
        console = Console()
        console.print(
            f"Initialised: user [b]{boot.user.name}[/b], project [b]{boot.project.name}[/b]."
        )
        console.print("Management API key (shown once, store it now):")
        sys.stdout.write(boot.api_key + "\n")

    run(ctx, work)


@users_app.command("add")
def users_add(ctx: typer.Context, name: str) -> None:
    """Create a user (balance 0)."""
    row = run(ctx, lambda _s, db: AccountService(db, system_clock).add_user(name))
    Console().print(f"user {row.name} created (id {row.id})", highlight=False)


@projects_app.command("add")
def projects_add(ctx: typer.Context, name: str) -> None:
    """Create a project with the default configuration."""
    row = run(ctx, lambda _s, db: AccountService(db, system_clock).add_project(name))
    Console().print(f"project {row.name} created (id {row.id})", highlight=False)


@members_app.command("add")
def members_add(
    ctx: typer.Context,
    project: Annotated[str, typer.Option(help="Project name.")],
    user: Annotated[str, typer.Option(help="User name.")],
    role: Annotated[str, typer.Option(help="admin or member.")],
) -> None:
    """Add or change a membership."""
    run(
        ctx,
        lambda _s, db: AccountService(db, system_clock).set_membership(
            project=project, user=user, role=role
        ),
    )
    Console().print(f"{user} is now {role} of {project}", highlight=False)


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="User name.")],
    project: Annotated[str, typer.Option(help="Project name.")],
    name: Annotated[str | None, typer.Option(help="Key name (default: random).")] = None,
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
            user_id=user_row.id, project_id=project_row.id, name=key_name, is_management=management
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
        Console(stderr=True).print(f"key {key.name} created (shown once):", highlight=False)
        sys.stdout.write(key.api_key + "\n")


@credits_app.command("add")
def credits_add(
    ctx: typer.Context,
    amount_eur: Annotated[str, typer.Argument(metavar="AMOUNT_EUR")],
    user: Annotated[str, typer.Option(help="User name.")],
) -> None:
    """Top up a user's balance by AMOUNT_EUR (one ledger row)."""
    balance = run(
        ctx,
        lambda _s, db: AccountService(db, system_clock).add_credits(
            user=user, amount_eur=amount_eur
        ),
    )
    Console().print(f"balance of {user}: {balance / 1_000_000:.6f} EUR", highlight=False)


@ledger_app.command("verify")
def ledger_verify(ctx: typer.Context) -> None:
    """Check balance = sum of ledger for every user, that no reservation is left open by a dead
    process or held longer than TOLLWAY_RESERVATION_MAX_AGE_S; exit status 1 on any problem."""
    report: LedgerReport = run(
        ctx,
        lambda settings, db: verify_ledger(
            db,
            system_clock,
            stale_s=settings.reservation_stale_s,
            max_age_s=settings.reservation_max_age_s,
        ),
    )
    console = Console(highlight=False, soft_wrap=True)
    console.print(
        f"checked {report.users} users, {report.ledger_rows} ledger rows, "
        f"{report.open_reservations} open reservations"
    )
    if report.ok:
        console.print("ledger OK: every balance equals the sum of its ledger rows")
        return
    for problem in report.problems:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"problem: {problem}", markup=False
        )
    fail(f"ledger verification failed: {len(report.problems)} problem(s)")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
) -> None:
    """Run the gateway."""
    import uvicorn

    cli = ctx.ensure_object(CliContext)
    for name, value in (("host", host), ("port", port), ("workers", workers)):
        if value is not None:
            cli.overrides[name] = str(value)
    settings = cli.settings()
    try:
        load_registry(settings.providers)
    except RegistryError as exc:
        fail(str(exc), 2)
    try:
        build_tracer(settings.tracing).shutdown()  # fail here, once, if it cannot run
    except TracingUnavailable as exc:
        fail(str(exc), 2)
    run(ctx, lambda _s, _db: asyncio.sleep(0))  # create or upgrade the schema once
    # Workers are separate processes: hand them the effective settings through the env.
    for name, value in cli.overrides.items():
        os.environ[f"TOLLWAY_{name.upper()}"] = value
    with contextlib.ExitStack() as stack:
        if settings.workers > 1:  # the workers add up their metrics through this directory
            stack.enter_context(metrics_directory())
        uvicorn.run(
            "tollway.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop=_best_loop(),
            http="httptools",
            access_log=False,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
        )


@app.command("mock-provider")
def mock_provider(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 9100,
    latency_ms: Annotated[float, typer.Option(min=0, help="Delay before answering.")] = 0,
    ttft_ms: Annotated[float, typer.Option(min=0, help="Delay before the first chunk.")] = 0,
    tokens_per_second: Annotated[
        float, typer.Option(min=0, help="Stream pacing; 0 = unlimited.")
    ] = 0,
    error_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests that fail.")
    ] = 0.0,
    error_status: Annotated[
        int, typer.Option(min=400, max=599, help="Status of those failures.")
    ] = 500,
    cut_stream_after: Annotated[
        int | None, typer.Option(min=0, help="End streams after N chunks, without [DONE].")
    ] = None,
    omit_usage: Annotated[bool, typer.Option(help="Never report usage.")] = False,
) -> None:
    """Run an OpenAI-compatible mock upstream (deterministic) for demos, tests and benchmarks."""
    from tollway.providers.mock import MockSettings, run_mock_provider

    run_mock_provider(
        MockSettings(
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            tokens_per_second=tokens_per_second,
            error_rate=error_rate,
            error_status=error_status,
            cut_stream_after=cut_stream_after,
            omit_usage=omit_usage,
        ),
        host,
        port,
    )


@app.command()
def demo(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    mock_port: Annotated[int, typer.Option(help="Mock provider port.")] = 9100,
) -> None:
    """Initialise (if new), top up 10 EUR of demo credits once, print a fresh key, start the
    built-in mock provider and serve the gateway in front of it."""
    import subprocess

    cli = ctx.ensure_object(CliContext)
    os.environ.setdefault("TOLLWAY_MOCK_URL", f"http://127.0.0.1:{mock_port}/v1")

    async def work(settings: Settings, db: Database) -> str:
        accounts = AccountService(db, system_clock)
        boot = await accounts.bootstrap()
        if boot is not None:
            await accounts.add_credits(user="admin", amount_eur="10")
            return boot.api_key
        # An existing database: the first key was shown once already. Replace the previous
        # demo key by a fresh one, so repeated demos do not pile keys up to the key limit.
        user = await accounts.user("admin")
        project = await accounts.project("default")
        keys = KeyService(db, system_clock, key_limit=settings.key_limit)
        for old in await keys.list(user.id):
            if old.name.startswith("demo-"):
                await keys.delete(user_id=user.id, name=old.name, calling_key_id=0)
        key = await keys.create(
            user_id=user.id,
            project_id=project.id,
            name=f"demo-{secrets.token_hex(3)}",
            is_management=True,
        )
        return key.api_key

    api_key = run(ctx, work)
    console = Console(stderr=True)
    console.print(f"Demo gateway on http://127.0.0.1:{port}/v1 (mock provider on :{mock_port}).")
    console.print("A management key for this demo (shown once):", highlight=False)
    sys.stdout.write(api_key + "\n")
    sys.stdout.flush()
    mock = subprocess.Popen(
        [sys.executable, "-m", "tollway", "mock-provider", "--port", str(mock_port)]
    )
    try:
        cli.overrides.setdefault("port", str(port))
        serve(ctx)
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def _best_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main() -> None:
    """Entry point: usage errors are one line on stderr too, like every other failure."""
    try:
        result = app(standalone_mode=False)
    except typer.TyperException as exc:
        message = exc.format_message()
        if message:  # empty when the help was shown for a bare group
            error_line(message)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        raise SystemExit(130) from None
    raise SystemExit(result if isinstance(result, int) else 0)
