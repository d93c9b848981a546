"""The store seam turns "the database did not answer" into one error, and only that."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from tests.support.outage import SqliteLock
from tests.support.processes import free_port
from tests.support.world import World
from tollway.errors import DatabaseUnavailable
from tollway.store.database import Database


async def test_a_postgresql_server_that_is_not_there_is_unavailable() -> None:
    db = Database(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere", pool_size=1)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            await db.run_write(lambda conn: conn.execute(text("SELECT 1")))
        assert "127.0.0.1" not in caught.value.message  # nothing internal for the client
        with pytest.raises(DatabaseUnavailable):
            await db.run_autocommit(lambda conn: conn.execute(text("SELECT 1")))
        with pytest.raises(DatabaseUnavailable):
            async with db.read() as conn:
                await conn.execute(text("SELECT 1"))
        assert await db.ping() is False
    finally:
        await db.dispose()


async def test_a_sqlite_file_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    lock = SqliteLock(tmp_path / "locked.db")
    world = World(lock.url)
    await world.migrate()
    await world.close()
    db = Database(lock.url, pool_size=1, sqlite_busy_timeout_s=0.2)
    lock.down()
    try:
        with pytest.raises(DatabaseUnavailable):
            await db.run_write(lambda conn: conn.execute(text("DELETE FROM instances")))
        with pytest.raises(DatabaseUnavailable):
            async with db.write() as conn:
                await conn.execute(text("DELETE FROM instances"))
        # Reads go on in WAL mode, but this process cannot write: not ready.
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0
        assert await db.ping(timeout_s=0.2) is False
        lock.up()
        assert await db.ping() is True
        await db.run_write(lambda conn: conn.execute(text("DELETE FROM instances")))
    finally:
        lock.up()
        await db.dispose()


async def test_errors_that_are_bugs_are_not_unavailability(world: World) -> None:
    await world.member("alice", "p1")
    with pytest.raises(sa_exc.IntegrityError):
        await world.db.run_write(
            lambda conn: conn.execute(
                text("INSERT INTO projects (id, name, created_at) SELECT id, name, 0 FROM projects")
            )
        )
    with pytest.raises(sa_exc.DBAPIError) as caught:
        async with world.db.read() as conn:
            await conn.execute(text("SELECT no_such_column FROM users"))
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert await world.db.ping() is True


async def test_ping_is_bounded_in_time(world: World) -> None:
    assert await asyncio.wait_for(world.db.ping(timeout_s=1.0), 5) is True
