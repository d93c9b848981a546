"""Real databases for tests: a fresh SQLite file, or a uniquely named PostgreSQL database
that is dropped afterwards. PostgreSQL tests fail under CI=true when the server is down and
skip (with the reason) elsewhere."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

PG_ADMIN_DSN = os.environ.get("TOLLWAY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _pg_admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: PostgreSQL tests must run)")
        pytest.skip(reason)


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    name = f"tollway_test_{uuid.uuid4().hex[:12]}"
    admin = await _pg_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await _pg_admin()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def database_url_for(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tollway.db'}"
    else:
        async with postgres_database() as url:
            yield url
