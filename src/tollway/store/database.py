"""Engine creation for SQLite (WAL, immediate write transactions) and PostgreSQL, and the
one-hop transactions of the hot path (`run_write`, `run_autocommit`).

Every way into the database passes here, so this is the seam where a database that does not
answer becomes one error, `DatabaseUnavailable` (503 with Retry-After at the edge), whatever
the driver said: refused or reset connections, a server shutting down, a pool timeout, a
SQLite file locked past its busy timeout. Errors that mean a bug (a constraint, bad SQL) pass
through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tollway.errors import DatabaseUnavailable
from tollway.store.budgets import BudgetIndex

T = TypeVar("T")

log = logging.getLogger("tollway.store")

# How long a PostgreSQL connection attempt may take before the database counts as down.
_PG_CONNECT_TIMEOUT_S = 5


def _asyncpg_unavailable() -> tuple[type[BaseException], ...]:
    """asyncpg errors that say the server is not there (class 08 connection exceptions,
    class 57 operator intervention: admin/crash shutdown, cannot connect now) or the link is
    gone. Empty while asyncpg is not loaded: SQLite alone never imports it (~60 ms of every
    command's start), and no asyncpg error can exist before it is."""
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return ()
    return (
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.ConnectionDoesNotExistError,
        # Class 40, transaction rollback: a deadlock or serialization failure rolled the
        # whole transaction back; the same request may succeed when retried (503,
        # Retry-After).
        asyncpg.exceptions.TransactionRollbackError,
        # lock_timeout (55P03) ran out waiting for a lock; statement_timeout's 57014 is
        # class 57.
        asyncpg.exceptions.LockNotAvailableError,
    )


# What sqlite3 says when the file is locked past busy_timeout, unwritable or unreadable.
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "database is busy",
    "unable to open database",
    "disk i/o error",
    "readonly database",
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database did not answer (retrying later may succeed), as
    opposed to a bug in what was asked of it."""
    if isinstance(exc, (OSError, TimeoutError, sa_exc.TimeoutError, *_asyncpg_unavailable())):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return True
        orig = exc.orig
        if isinstance(orig, sqlite3.OperationalError):
            return str(orig).lower().startswith(_SQLITE_UNAVAILABLE)
        # The asyncpg adapter wraps the driver's error: look at what it wraps.
        cause = orig.__cause__ if orig is not None else None
        return cause is not None and is_unavailable(cause)
    return False


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except DatabaseUnavailable:
        raise
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("database unavailable: %s", _one_line(exc))
        raise DatabaseUnavailable("database unavailable; retry shortly") from exc


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return text[:300]


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

    ``run_write(fn)`` runs a synchronous ``fn(Connection)`` inside one write
    transaction for the hot path: on SQLite in a dedicated thread over a pysqlite engine (the
    whole transaction is one thread hop; one writer thread serialises this process's writers,
    other processes wait through ``busy_timeout``); on PostgreSQL through ``run_sync`` on the
    asyncpg engine (no thread at all). ``run_autocommit(fn)`` runs one statement with no
    transaction around it on PostgreSQL (saving the BEGIN and COMMIT round trips).
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        sqlite_busy_timeout_s: float = 30.0,
        pg_statement_timeout_s: float | None = None,
        pg_lock_timeout_s: float | None = None,
    ) -> None:
        """`pg_statement_timeout_s`/`pg_lock_timeout_s`: PostgreSQL's `statement_timeout` and
        `lock_timeout` on every connection of the pool (None: the server's, unbounded by
        default); a statement cancelled by either is `DatabaseUnavailable` (503)."""
        self.url = async_url(url)
        self.is_sqlite = make_url(self.url).get_backend_name() == "sqlite"
        busy_s = sqlite_busy_timeout_s
        # A failed statement's error (and so every log line that shows it) names the SQL but
        # not its values: user ids, key names, request contents stay out of the logs.
        kwargs: dict[str, Any] = {"hide_parameters": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": busy_s}
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
            # No pre-ping (a round trip per checkout): a connection found dead on use is
            # reported as DatabaseUnavailable, and SQLAlchemy then recycles every connection
            # of the pool opened before it, so recovery needs no restart.
            kwargs["pool_pre_ping"] = False
            server_settings = {
                name: str(max(1, round(value * 1000)))  # milliseconds
                for name, value in (
                    ("statement_timeout", pg_statement_timeout_s),
                    ("lock_timeout", pg_lock_timeout_s),
                )
                if value is not None
            }
            kwargs["connect_args"] = {
                "timeout": _PG_CONNECT_TIMEOUT_S,
                "server_settings": server_settings,
            }
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # The same pool, each checkout in autocommit (asyncpg: no BEGIN, no COMMIT; switching
        # the level is an attribute of the adapter, no round trip).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # Per-process cache of the budgets of each project (see BudgetIndex).
        self.budget_index = BudgetIndex()
        self._writer: ThreadPoolExecutor | None = None
        self._sync: Engine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine, busy_s)
            database = make_url(self.url).database
            self._sync = create_engine(
                f"sqlite:///{database}",
                connect_args={"timeout": busy_s, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
                hide_parameters=True,
            )
            _configure_sqlite(self._sync, busy_s)
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tollway-sqlite-writer")

    @property
    def sync_engine(self) -> Engine:
        """The engine `run_write` executes on (for statement listeners)."""
        return self._sync if self._sync is not None else self.engine.sync_engine

    async def run_write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one write transaction (committed when it returns, rolled back when it
        raises). On SQLite the transaction starts with ``BEGIN IMMEDIATE``."""
        with _translated():
            if self._sync is None:
                return await self._run_async(fn)
            return await asyncio.get_running_loop().run_in_executor(
                self._writer, _in_write_transaction, self._sync, fn
            )

    async def run_autocommit(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn`, which executes exactly one statement (atomic by itself), without a
        transaction around it: one round trip on PostgreSQL. On SQLite, `run_write`."""
        if self._sync is not None:
            return await self.run_write(fn)
        with _translated():
            async with self._autocommit.connect() as conn:
                return await conn.run_sync(fn)

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """Whether the database answers within `timeout_s` (readiness). On SQLite, whether
        this process could write: reads go on while another process holds the write lock,
        so the probe takes the lock (and rolls back) on a connection of its own, off the
        writer thread, waiting at most `timeout_s` for it."""
        try:
            if self._sync is not None:
                path = make_url(self.url).database or ""
                return await asyncio.to_thread(_sqlite_can_write, path, timeout_s)
            async with asyncio.timeout(timeout_s), self.read() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (DatabaseUnavailable, TimeoutError):
            return False
        return True

    async def _run_async(self, fn: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn, conn.begin():
            return await conn.run_sync(fn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with _translated():
            async with self.engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        with _translated():
            async with self.engine.connect() as raw:
                conn = await raw.execution_options(tollway_write=True) if self.is_sqlite else raw
                async with conn.begin():
                    yield conn

    async def dispose(self) -> None:
        if self._writer is not None:
            # Waits for a transaction still running in a thread to finish.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._writer.shutdown, True)
        if self._sync is not None:
            self._sync.dispose()
        await self.engine.dispose()


def _in_write_transaction(engine: Engine, fn: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        conn.execution_options(tollway_write=True)
        with conn.begin():
            return fn(conn)


def _sqlite_can_write(path: str, timeout_s: float) -> bool:
    try:
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return True


def _configure_sqlite(sync_engine: Engine, busy_timeout_s: float) -> None:
    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how transactions start.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("tollway_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
