"""Opening the database for a command: the CLI's composition root, next to `app.py` and
`state.py` for the server. `commands/` and `cli.py` reach the store only through the domain
services they are handed a `Database` for; they never import `store` themselves (an import
contract in pyproject.toml, checked by `dev.py check`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tollway.settings import Settings
from tollway.store.database import Database
from tollway.store.migrate import upgrade


@asynccontextmanager
async def migrated_database(settings: Settings) -> AsyncIterator[Database]:
    """A small pool on the configured database, its schema created or upgraded first."""
    db = Database(settings.database_url, pool_size=2)
    try:
        await upgrade(db.engine)
        yield db
    finally:
        await db.dispose()
