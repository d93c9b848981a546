"""What every `tollway` command shares: settings, one-line errors, JSON."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from tollway.errors import ConfigError, DatabaseUnavailable, TollwayError
from tollway.providers.registry import RegistryError
from tollway.settings import Settings
from tollway.store.database import Database
from tollway.store.migrate import upgrade

T = TypeVar("T")


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


def run(ctx: typer.Context, work: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run one async unit of CLI work with a database, turning known failures into one line."""
    settings = ctx.ensure_object(CliContext).settings()

    async def main() -> T:
        db = Database(settings.database_url, pool_size=2)
        try:
            await upgrade(db.engine)
            return await work(settings, db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except DatabaseUnavailable as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        fail(f"database unavailable: {str(cause).splitlines()[0]}", 2)
    except TollwayError as exc:
        fail(exc.message)
    except (ConfigError, RegistryError) as exc:
        fail(str(exc), 2)
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"database unavailable: {str(exc).splitlines()[0]}", 2)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
