"""The ``tollway`` command. It calls services; it never speaks SQL or HTTP itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging.config
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tollway.accounts.service import AccountService
from tollway.audit.actor import CLI
from tollway.clock import system_clock
from tollway.commands.audit import audit_app
from tollway.commands.common import (
    CliContext,
    error_line,
    fail,
    fail_registry,
    print_json,
    run,
)
from tollway.commands.money import credits_app, ledger_app
from tollway.commands.providers import providers_app
from tollway.commands.rate_limits import rate_limits_app
from tollway.commands.tenancy import keys_app, members_app, projects_app, users_app
from tollway.keys.service import KeyService
from tollway.observe.banner import log_banner
from tollway.observe.logs import logging_config
from tollway.observe.tracing import TracingUnavailable, build_tracer
from tollway.providers.registry import RegistryError, load_registry
from tollway.settings import Settings

if TYPE_CHECKING:
    from tollway.store.database import Database

app = typer.Typer(
    help="Tollway: a self-hosted LLM gateway.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(users_app, name="users")
app.add_typer(projects_app, name="projects")
app.add_typer(members_app, name="members")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.add_typer(ledger_app, name="ledger")
app.add_typer(providers_app, name="providers")
app.add_typer(rate_limits_app, name="rate-limits")
app.add_typer(audit_app, name="audit")


@app.callback()
def _root(
    ctx: typer.Context,
    database_url: Annotated[
        str | None, typer.Option(metavar="URL", help="Database URL (env TOLLWAY_DATABASE_URL).")
    ] = None,
    providers: Annotated[
        str | None,
        typer.Option(metavar="PATH", help="Provider registry YAML (env TOLLWAY_PROVIDERS)."),
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
        boot = await AccountService(db, system_clock).bootstrap(actor=CLI)
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


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(metavar="HOST", help="Bind address (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
) -> None:
    """Run the gateway."""
    import uvicorn

    from tollway.http.server import guarded_http

    cli = ctx.ensure_object(CliContext)
    for name, value in (("host", host), ("port", port), ("workers", workers)):
        if value is not None:
            cli.overrides[name] = str(value)
    settings = cli.settings()
    try:
        registry = load_registry(settings.providers)
    except RegistryError as exc:
        fail_registry(exc)
    try:
        build_tracer(settings.tracing).shutdown()  # fail here, once, if it cannot run
    except TracingUnavailable as exc:
        fail(str(exc), 2)
    log_config = logging_config(settings.log_level, settings.log_format)
    logging.config.dictConfig(log_config)  # uvicorn applies it again in every worker
    log_banner(settings, registry)
    run(ctx, lambda _s, _db: asyncio.sleep(0))  # create or upgrade the schema once
    # Workers are separate processes: hand them the effective settings through the env.
    for name, value in cli.overrides.items():
        os.environ[f"TOLLWAY_{name.upper()}"] = value
    with contextlib.ExitStack() as stack:
        if settings.workers > 1:  # the workers add up their metrics through this directory
            from tollway.observe.metrics import metrics_directory  # only `serve` needs it

            stack.enter_context(metrics_directory())
        uvicorn.run(
            "tollway.app:create_app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            loop=_best_loop(),
            # uvicorn's httptools protocol with bounds on heads, bodies and connections
            # (http/server.py; the choice is in docs/operations.md, "The HTTP server").
            http=guarded_http(settings),  # type: ignore[arg-type]
            timeout_keep_alive=settings.http_keepalive_s,  # type: ignore[arg-type]
            access_log=False,  # the request line of `observe` replaces it
            log_config=log_config,
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
    demo_pace: Annotated[
        bool,
        typer.Option(
            "--demo-pace",
            help="Answer the demo registry's upstream models at their providers' speeds.",
        ),
    ] = False,
    require_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            envvar="TOLLWAY_MOCK_API_KEY",
            help="Answer 401 unless /v1/ calls send 'Authorization: Bearer KEY'.",
        ),
    ] = None,
) -> None:
    """Run an OpenAI-compatible mock upstream (deterministic) for demos, tests and benchmarks."""
    from tollway.providers.mock import run_mock_provider
    from tollway.providers.mock_settings import DEMO_PACES, MockSettings

    run_mock_provider(
        MockSettings(
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            tokens_per_second=tokens_per_second,
            error_rate=error_rate,
            error_status=error_status,
            cut_stream_after=cut_stream_after,
            omit_usage=omit_usage,
            api_key=require_key,
            paces=DEMO_PACES if demo_pace else {},
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
    cli = ctx.ensure_object(CliContext)
    host = cli.settings().host
    # Before anything changes: a second demo must not replace the running one's key and
    # then fail to bind.
    if port == mock_port:
        fail(f"--port and --mock-port must differ (both {port})")
    for what, address, number, flag in (
        ("gateway", host, port, "--port"),
        ("mock provider", "127.0.0.1", mock_port, "--mock-port"),
    ):
        problem = _bind_problem(address, number)
        if problem is not None:
            fail(
                f"{what} port {address}:{number} is not available ({problem}); is a demo "
                f"already running? Stop it, or choose another with {flag}"
            )
    os.environ.setdefault("TOLLWAY_MOCK_URL", f"http://127.0.0.1:{mock_port}/v1")

    async def work(settings: Settings, db: Database) -> str:
        accounts = AccountService(db, system_clock)
        boot = await accounts.bootstrap(actor=CLI)
        if boot is not None:
            await accounts.add_credits(actor=CLI, user="admin", amount_eur="10")
            return boot.api_key
        # An existing database: the first key was shown once already. Replace the previous
        # demo key by a fresh one, so repeated demos do not pile keys up to the key limit.
        user = await accounts.user("admin")
        project = await accounts.project("default")
        keys = KeyService(db, system_clock, key_limit=settings.key_limit)
        for old in await keys.list(user.id):
            if old.name.startswith("demo-"):
                await keys.delete(
                    actor=CLI, user_id=user.id, name=old.name, calling_key_id=0, operator=True
                )
        key = await keys.create(
            actor=CLI,
            user_id=user.id,
            project_id=project.id,
            name=f"demo-{secrets.token_hex(3)}",
            is_management=True,
        )
        return key.api_key

    # The mock starts first and comes up while the database and the key are made.
    mock = subprocess.Popen([sys.executable, "-m", "tollway.providers.demo_mock", str(mock_port)])
    # uvicorn re-raises a SIGTERM once it has shut down; with the default handler that would
    # end this process before `finally` stops the mock, leaving it running. Exit instead.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        api_key = run(ctx, work)
        console = Console(stderr=True)
        console.print(
            f"Demo gateway on http://127.0.0.1:{port}/v1 (mock provider on :{mock_port})."
        )
        console.print("A management key for this demo (shown once):", highlight=False)
        sys.stdout.write(api_key + "\n")
        sys.stdout.flush()
        if not _wait_for_listener(mock, "127.0.0.1", mock_port, timeout_s=30):
            fail(f"the demo's mock provider did not start on port {mock_port}")
        cli.overrides.setdefault("port", str(port))
        serve(ctx)
    finally:
        mock.terminate()
        mock.wait(timeout=10)


def _bind_problem(host: str, port: int) -> str | None:
    """Why a server could not listen on (host, port) now, or None. Binds the way uvicorn
    does (SO_REUSEADDR), so a port held only by closed connections counts as free."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait_for_listener(
    process: subprocess.Popen[bytes], host: str, port: int, *, timeout_s: float
) -> bool:
    """Wait until `process` accepts connections on (host, port); False if it exits first
    or the time runs out. The gateway's first request must not race its upstream."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return True
    return False


def _best_loop() -> str:
    """uvloop, accepting waiting connections in batches (http/accept.py), when installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "tollway.http.accept:new_event_loop"


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
