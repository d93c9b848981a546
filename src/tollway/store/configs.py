"""Project configurations (the routing policy of a project)."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.frozen import frozen
from tollway.store.schema import project_configs


@frozen
class ConfigRow:
    id: str
    project_id: str
    active: bool
    allow_overwrite: bool
    inference_config: str
    schema_version: str
    created_at_ms: int
    updated_at_ms: int


_COLUMNS = (
    project_configs.c.id,
    project_configs.c.project_id,
    project_configs.c.active,
    project_configs.c.allow_overwrite,
    project_configs.c.inference_config,
    project_configs.c.schema_version,
    project_configs.c.created_at_ms,
    project_configs.c.updated_at_ms,
)


async def config_of_project(conn: AsyncConnection, project_id: str) -> ConfigRow | None:
    row = (
        await conn.execute(select(*_COLUMNS).where(project_configs.c.project_id == project_id))
    ).first()
    return ConfigRow(*row) if row else None


async def insert_config(conn: AsyncConnection, row: ConfigRow) -> None:
    await conn.execute(
        insert(project_configs).values(
            id=row.id,
            project_id=row.project_id,
            active=row.active,
            allow_overwrite=row.allow_overwrite,
            inference_config=row.inference_config,
            schema_version=row.schema_version,
            created_at_ms=row.created_at_ms,
            updated_at_ms=row.updated_at_ms,
        )
    )


async def update_config(
    conn: AsyncConnection,
    project_id: str,
    *,
    active: bool,
    allow_overwrite: bool,
    inference_config: str,
    updated_at_ms: int,
) -> bool:
    result = await conn.execute(
        update(project_configs)
        .where(project_configs.c.project_id == project_id)
        .values(
            active=active,
            allow_overwrite=allow_overwrite,
            inference_config=inference_config,
            updated_at_ms=updated_at_ms,
        )
    )
    return result.rowcount > 0
