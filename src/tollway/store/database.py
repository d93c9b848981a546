"""Engine creation for SQLite (WAL, immediate write transactions) and PostgreSQL, and the
one-hop transactions of the hot path (`run_write`, `run_read`, `run_autocommit`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tollway.store.budgets import BudgetIndex

T = TypeVar("T")

# SQLite readers of `run_read` (the writer is always one thread).
_SQLITE_READERS = 2


def async_url(url: str) -> str:
    """Map a user-facing URL (``sqlite:///x.db``, ``postgresql://…``) to its async driver."""
    if url.startswith("sqlite+aiosqlite://") or url.startswith("postgresql+asyncpg://"):
        return url
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    if url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")


class Database:
    """The database of one process. ``write()`` opens a transaction that holds the write lock
    at once on SQLite (``BEGIN IMMEDIATE``), so a read-then-write never fails half way.

    ``run_write(fn)`` / ``run_read(fn)`` run a synchronous ``fn(Connection)`` inside one
    transaction for the hot path: on SQLite in a dedicated thread over a pysqlite engine (the
    whole transaction is one thread hop; one writer thread serialises this process's writers,
    other processes wait through ``busy_timeout``); on PostgreSQL through ``run_sync`` on the
    asyncpg engine (no thread at all). ``run_autocommit(fn)`` runs one statement with no
    transaction around it on PostgreSQL (saving the BEGIN and COMMIT round trips).
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.is_sqlite = make_url(self.url).get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
            if ":memory:" in self.url or self.url.endswith("://"):
                raise ValueError("an in-memory SQLite database cannot be shared; use a file")
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
        else:
            # No overflow: under load, overflow connections were opened (TLS negotiation
            # included) and closed again for every burst — measured at ~10% of the gateway's
            # CPU at 64 connections. Requests wait for a pooled connection instead.
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 0
            kwargs["pool_timeout"] = 30
            kwargs["pool_pre_ping"] = False
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # The same pool, each checkout in autocommit (asyncpg: no BEGIN, no COMMIT; switching
        # the level is an attribute of the adapter, no round trip).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # Per-process cache of the budgets of each project (see BudgetIndex).
        self.budget_index = BudgetIndex()
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._sync: Engine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine)
            database = make_url(self.url).database
            self._sync = create_engine(
                f"sqlite:///{database}",
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=1 + _SQLITE_READERS,
                max_overflow=0,
            )
            _configure_sqlite(self._sync)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tollway-sqlite-writer")
            self._readers = ThreadPoolExecutor(
                _SQLITE_READERS, thread_name_prefix="tollway-sqlite-reader"
            )

    @property
    def sync_engine(self) -> Engine:
        """The engine `run_write` / `run_read` execute on (for statement listeners)."""
        return self._sync if self._sync is not None else self.engine.sync_engine

    async def run_write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one write transaction (committed when it returns, rolled back when it
        raises). On SQLite the transaction starts with ``BEGIN IMMEDIATE``."""
        if self._sync is None:
            return await self._run_async(fn)
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, _in_transaction, self._sync, fn, True
        )

    async def run_read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one read transaction (a consistent snapshot)."""
        if self._sync is None:
            return await self._run_async(fn)
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, _in_transaction, self._sync, fn, False
        )

    async def run_autocommit(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn`, which executes exactly one statement (atomic by itself), without a
        transaction around it: one round trip on PostgreSQL. On SQLite, `run_write`."""
        if self._sync is not None:
            return await self.run_write(fn)
        async with self._autocommit.connect() as conn:
            return await conn.run_sync(fn)

    async def _run_async(self, fn: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn, conn.begin():
            return await conn.run_sync(fn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as raw:
            conn = await raw.execution_options(tollway_write=True) if self.is_sqlite else raw
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        if self._writer is not None and self._readers is not None:
            # Waits for a transaction still running in a thread to finish.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._writer.shutdown, True)
            await loop.run_in_executor(None, self._readers.shutdown, True)
        if self._sync is not None:
            self._sync.dispose()
        await self.engine.dispose()


def _in_transaction(engine: Engine, fn: Callable[[Connection], T], write: bool) -> T:
    with engine.connect() as conn:
        if write:
            conn.execution_options(tollway_write=True)
        with conn.begin():
            return fn(conn)


def null_pool_engine(url: str) -> AsyncEngine:
    """An engine without pooling, for one-shot CLI work and migrations."""
    engine = create_async_engine(async_url(url), poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine.sync_engine)
    return engine


def _configure_sqlite(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("tollway_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
