"""Real locks held by another connection, for tests of what waits on them."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def user_row_locked(database_url: str, user_id: str) -> AsyncIterator[None]:
    """Another connection holds what a write to the user's balance waits for: the user's
    row (PostgreSQL) or the write lock (SQLite); released, writing nothing, on leaving."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    pg = await asyncpg.connect(database_url)
    try:
        async with pg.transaction():
            await pg.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
            yield
    finally:
        await pg.close()
