"""Schema migrations through Alembic; an existing database is upgraded, never dropped."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

_MIGRATIONS = Path(__file__).parent / "migrations"
# Arbitrary constant: the PostgreSQL advisory lock that serialises concurrent migrations.
_PG_LOCK_ID = 7_412_019


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> bool:
    """Upgrade to head; returns whether anything was applied."""
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
