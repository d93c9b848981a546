"""What every `tollway` command shares: settings, one-line errors, JSON and tables."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError, OperationalError

from tollway.errors import ConfigError, DatabaseUnavailable, TollwayError
from tollway.providers.registry import RegistryError
from tollway.settings import Settings
from tollway.wiring import migrated_database

if TYPE_CHECKING:
    from tollway.store.database import Database

T = TypeVar("T")


def group(help_text: str) -> typer.Typer:
    """A command group. Plain help (no rich panels): the rich renderer of typer 0.29 shows
    every flag as `--json <bool>`, as if it took a value."""
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


@dataclass(slots=True)
class CliContext:
    overrides: dict[str, str]

    def settings(self) -> Settings:
        try:
            return Settings(**self.overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            first = exc.errors()[0]
            name = "TOLLWAY_" + "_".join(str(p) for p in first["loc"]).upper()
            fail(f"invalid setting {name}: {first['msg']}")


def error_line(message: str) -> None:
    """Errors are one line on stderr: no wrapping, no markup, no traceback."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")


def fail(message: str, code: int = 1) -> NoReturn:
    error_line(message)
    raise typer.Exit(code)


def fail_registry(error: RegistryError) -> NoReturn:
    """A registry may have several problems: one line each."""
    for problem in error.problems:
        error_line(problem)
    raise typer.Exit(2)


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(CliContext).settings()


def run(ctx: typer.Context, work: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run one async unit of CLI work with a database, turning known failures into one line."""
    settings = settings_of(ctx)

    async def main() -> T:
        async with migrated_database(settings) as db:
            return await work(settings, db)

    try:
        return asyncio.run(main())
    except DatabaseUnavailable as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        fail(f"database unavailable: {str(cause).splitlines()[0]}", 2)
    except TollwayError as exc:
        fail(exc.message)
    except RegistryError as exc:
        fail_registry(exc)
    except ConfigError as exc:
        fail(str(exc), 2)
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"database unavailable: {str(exc).splitlines()[0]}", 2)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    """A plain, aligned table on stdout (no colour, no truncation when piped)."""
    if not rows:
        Console(stderr=True, highlight=False).print(empty)
        return
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 400)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text("-" if cell is None else str(cell)) for cell in row))
    console.print(table)


def utc(timestamp: int) -> str:
    """Unix seconds as a readable UTC time for tables (JSON keeps the integer)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


JSON_FLAG_HELP = "Print one JSON object instead of a table."
