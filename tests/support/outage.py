"""Real database outages for the fault tests.

PostgreSQL: a private cluster (``initdb`` into a temporary directory owned by the
``postgres`` user, started with ``pg_ctl`` on a free loopback port) that a test can stop
and start; the shared server is never touched. Without ``initdb`` the tests skip, or fail
when ``CI`` is set.

SQLite has no server to stop. What makes it unavailable in production is another process
holding the write lock for longer than ``busy_timeout`` (a long ``tollway`` CLI transaction,
a backup tool, an ``sqlite3`` shell left in ``BEGIN EXCLUSIVE``): writes fail with "database
is locked" while reads go on (WAL). `SqliteLock` does exactly that from a separate process.
(Making the file unwritable does not work for tests that run as root.)
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.processes import free_port
from tollway.store.database import Database


class Outage(Protocol):
    url: str

    def down(self) -> None: ...

    def up(self) -> None: ...


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    command = list(args)
    if os.geteuid() == 0:  # initdb refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)


class PrivateCluster:
    """A PostgreSQL cluster of this test session only: stop it, start it, nothing else
    depends on it."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self._bin = bin_dir
        self._root = root
        self._data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        done = _as_postgres(
            str(self._bin / "initdb"), "-D", str(self._data), "-U", "postgres", "-N",
            "--auth=trust",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-500:]}")

    def up(self) -> None:
        if self.is_up():
            return
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self._root}"
            " -c fsync=off -c max_connections=60"
        )
        done = _as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self._data), "-o", options,
            "-l", str(self._root / "log"), "-w", "-t", "30", "start",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout[-300:]} {done.stderr[-300:]}")

    def down(self) -> None:
        done = _as_postgres(
            str(self._bin / "pg_ctl"), "-D", str(self._data), "-m", "fast", "-w", "stop"
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stderr[-300:]}")

    def is_up(self) -> bool:
        done = _as_postgres(str(self._bin / "pg_ctl"), "-D", str(self._data), "status")
        return done.returncode == 0


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        reason = "initdb not found: the PostgreSQL outage tests need a private cluster"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set: they must run)")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="tollway-pg-", dir="/tmp"))
    shutil.chown(root, user="postgres")
    cluster = PrivateCluster(bin_dir, root)
    try:
        cluster.init()
        cluster.up()
        yield cluster
    finally:
        if cluster.is_up():
            cluster.down()
        shutil.rmtree(root, ignore_errors=True)


# Run by a child process: hold SQLite's write lock until stdin closes.
_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


class SqliteLock:
    """Another process holding the database's write lock: SQLite's outage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._holder: subprocess.Popen[str] | None = None

    def down(self) -> None:
        self._holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._holder.stdout is not None
        assert self._holder.stdout.readline().strip() == "locked"

    def up(self) -> None:
        holder, self._holder = self._holder, None
        if holder is None:
            return
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        if holder.stdout:
            holder.stdout.close()


async def reconnected(db: Database, timeout_s: float = 15.0) -> None:
    """Wait until `db` answers again. A pool's connections opened before an outage are dead:
    the first use of one fails (and makes the pool replace them all)."""
    deadline = time.monotonic() + timeout_s
    while not await db.ping():
        assert time.monotonic() < deadline, "the database did not come back"
        await asyncio.sleep(0.1)


@contextmanager
def database_outage(backend: str, tmp_path: Path) -> Iterator[Outage]:
    """A database of `backend` that the test can take down and bring back."""
    if backend == "sqlite":
        lock = SqliteLock(tmp_path / "outage.db")
        try:
            yield lock
        finally:
            lock.up()
    else:
        with private_cluster() as cluster:
            yield cluster
