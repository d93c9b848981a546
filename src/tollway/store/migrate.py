"""Schema migrations through Alembic; an existing database is upgraded, never dropped.

Every `tollway` command opens the database through `upgrade`, and most find it at head
already: that answer is two SELECTs (the version table exists; its row is `HEAD`), without
importing Alembic or reading the migration scripts (together ~0.3 s of every command's
start). Alembic runs only when there is something to apply. `HEAD` must name the newest
migration (a test checks it against Alembic's own answer)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0007_console_sessions"
_MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant: the PostgreSQL advisory lock that serialises concurrent migrations.
_PG_LOCK_ID = 7_412_019


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    """The newest migration, as Alembic reads it from the scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _at_head(connection: Connection) -> bool:
    """Whether the schema is at `HEAD`: the version table's one row (a new database has no
    table: not at head)."""
    if not inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.execute(text("SELECT version_num FROM alembic_version"))
    return [row[0] for row in versions] == [HEAD]


def _upgrade(connection: Connection) -> bool:
    """Upgrade to head; returns whether anything was applied."""
    if _at_head(connection):
        return False
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    before = _current(connection)
    if before == head_revision():
        return False
    command.upgrade(_config(connection), "head")
    return True


async def upgrade(engine: AsyncEngine) -> bool:
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade)
