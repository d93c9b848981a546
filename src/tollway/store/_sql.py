"""Hot-path statements built once: `text()` constants, one variant per dialect where the SQL
differs (row locks), so no statement is constructed or cache-keyed per call."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, TextClause, text


@dataclass(frozen=True, slots=True)
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
