"""`upgrade` answers "already at head" by one look at the version table, without Alembic;
it must still upgrade a database that is behind (and a new one), and `HEAD` must be
Alembic's own head."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from sqlalchemy import Connection, text

from tests.support.world import World
from tollway.store.migrate import HEAD, _config, head_revision, upgrade


def test_head_is_the_newest_migration() -> None:
    assert head_revision() == HEAD


async def test_a_new_database_and_one_behind_head_are_upgraded_one_at_head_is_left(
    database_url: str,
) -> None:
    world = World(database_url)
    try:
        assert await upgrade(world.db.engine) is True  # new
        assert await upgrade(world.db.engine) is False  # at head

        def back_one(conn: Connection) -> None:
            command.downgrade(_config(conn), "-1")

        async with world.db.engine.begin() as conn:
            await conn.run_sync(back_one)
        assert await upgrade(world.db.engine) is True  # behind
        async with world.db.engine.begin() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert version == [(HEAD,)]
    finally:
        await world.close()


def test_a_command_on_a_database_at_head_imports_neither_alembic_nor_aiohttp(
    tmp_path: Path,
) -> None:
    env = os.environ | {"TOLLWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    init = subprocess.run(
        [sys.executable, "-m", "tollway", "init"], check=False, env=env, capture_output=True
    )
    assert init.returncode == 0, init.stderr
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['tollway', 'users', 'list']\n"
        "try:\n"
        "    runpy.run_module('tollway', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('alembic' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=False, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False"
