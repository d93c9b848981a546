"""Hot-path statements built once: `text()` constants, one variant per dialect where the SQL
differs (row locks), so no statement is constructed or cache-keyed per call."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, TextClause, text

from tollway.frozen import frozen


@frozen
class Locking:
    """A SELECT with its row-lock clause on PostgreSQL; on SQLite the transaction already
    holds the database write lock (``BEGIN IMMEDIATE``) and there is no ``FOR UPDATE``."""

    sqlite: TextClause
    postgresql: TextClause

    @classmethod
    def of(cls, select: str, lock: str) -> Locking:
        return cls(text(select), text(f"{select} {lock}"))

    def on(self, conn: Connection) -> TextClause:
        return self.postgresql if conn.dialect.name == "postgresql" else self.sqlite


@functools.cache
def _insert_sql(dialect: str, table: str, columns: tuple[str, ...], skip_existing: bool) -> str:
    marks = (
        ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        if dialect == "postgresql"
        else ", ".join("?" for _ in columns)
    )
    conflict = " ON CONFLICT DO NOTHING" if skip_existing else ""
    # Table and column names are the schema's constants; every value is a bound parameter.
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){conflict}"  # noqa: S608


def insert_rows(
    conn: Connection,
    table: str,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    skip_existing: bool = False,
) -> None:
    """Insert many rows (tuples in `columns` order) with the driver's own executemany —
    sqlite3's loop in C, asyncpg's pipelined executemany — bypassing SQLAlchemy's
    per-row parameter processing, which was most of a batch's cost. The SQL text is built
    once per (dialect, table, columns). `skip_existing`: a row whose key is there already
    is skipped (a retried batch whose commit did land)."""
    if rows:
        sql = _insert_sql(conn.dialect.name, table, columns, skip_existing)
        conn.exec_driver_sql(sql, list(rows))
