"""Revision 0005 (token classes) on both backends: rows written before it read 0 for every
class, and it downgrades and upgrades again."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from sqlalchemy import Connection, inspect, text

from tests.support.world import World
from tollway.store.migrate import _config

CLASSES = {"cached_prompt_tokens", "cache_write_tokens", "reasoning_tokens"}


def _to(revision: str, *, down: bool = False) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        if down:
            command.downgrade(_config(conn), revision)
        else:
            command.upgrade(_config(conn), revision)

    return run


def _columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(table)}


async def test_old_rows_get_zero_classes_and_the_revision_reverts(database_url: str) -> None:
    world = World(database_url)
    try:
        async with world.db.engine.begin() as conn:
            await conn.run_sync(_to("0004"))
            await conn.execute(
                text(
                    "INSERT INTO usage_events (request_id, created_at, user_id, project_id,"
                    " key_id, key_name, endpoint, model, provider, prompt_tokens,"
                    " completion_tokens, total_tokens, cost_credits, latency_ms, status,"
                    " usage_source) VALUES ('r1', 1, 'u', 'p', NULL, 'k', 'chat.completions',"
                    " 'm', 'pv', 10, 5, 15, 20, 1, 'success', 'upstream')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO request_log (request_id, created_at_ms, user_id, project_id,"
                    " key_name, endpoint, model, status, http_status, stream, prompt_tokens,"
                    " completion_tokens, cost_credits, latency_ms, attempts) VALUES ('r1', 1,"
                    " 'u', 'p', 'k', 'chat.completions', 'm', 'success', 200, false, 10, 5,"
                    " 20, 1, '[]')"
                )
            )
        async with world.db.engine.begin() as conn:
            await conn.run_sync(_to("head"))
            for table in ("usage_events", "request_log"):
                row = (
                    await conn.execute(
                        text(
                            "SELECT prompt_tokens, cached_prompt_tokens, cache_write_tokens,"
                            f" reasoning_tokens FROM {table}"
                        )
                    )
                ).one()
                assert tuple(row) == (10, 0, 0, 0)
        async with world.db.engine.begin() as conn:
            await conn.run_sync(_to("0004", down=True))
            for table in ("usage_events", "request_log"):
                columns = await conn.run_sync(_columns, table)
                assert not CLASSES & columns and "prompt_tokens" in columns
            await conn.run_sync(_to("head"))
            for table in ("usage_events", "request_log"):
                assert CLASSES <= await conn.run_sync(_columns, table)
    finally:
        await world.close()
