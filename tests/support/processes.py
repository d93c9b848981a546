"""Run the real `tollway` command as a separate process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx


def tollway(*args: str, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tollway", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"TOLLWAY_DATABASE_URL": database_url} | env,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux's /proc;
    elsewhere, assumed). A free port picked by one test may be taken by another test's
    server before this one binds it: that server's /health must not pass for this one's."""
    net = f"/proc/{pid}/net/tcp"
    if not os.path.exists(net):
        return True
    wanted = f"0100007F:{port:04X}"
    with open(net) as table:
        inodes = {
            fields[9]
            for fields in (line.split() for line in table.readlines()[1:])
            if fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
        }
    wanted_links = {f"socket:[{inode}]" for inode in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # the process is gone
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted_links:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


@contextmanager
def serve_process(database_url: str, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`tollway serve` on a free port; yields (root URL, process) once /health answers from
    that process (a port another test took first: a new one, up to three times). Stopped
    with SIGTERM at the end.

    Its log (one line per request) goes to a temporary file, never to a pipe nobody reads:
    a full pipe would block the server's logging, and with it the server."""
    with _serving(database_url, None, env) as served:
        yield served


@contextmanager
def serve_logged(database_url: str, log_path: Path, **env: str) -> Iterator[str]:
    """`serve_process` with the server's log (stderr) in `log_path`; yields the root URL."""
    with _serving(database_url, log_path, env) as (root, _):
        yield root


@contextmanager
def _serving(
    database_url: str, log_path: Path | None, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    keep = os.environ.get("TOLLWAY_TEST_SERVE_LOG")  # a directory: keep each server's log
    for attempt in range(3):
        port = free_port()
        log: IO[bytes] = (
            log_path.open("w+b")
            if log_path is not None
            else tempfile.NamedTemporaryFile(dir=keep, delete=not keep, suffix=".log")
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "tollway", "serve", "--port", str(port)],
            env=os.environ | {"TOLLWAY_DATABASE_URL": database_url} | env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        root = f"http://127.0.0.1:{port}"
        try:
            if _ready(process, root, port, log, last=attempt == 2):
                yield root, process
                return
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()


def _ready(
    process: subprocess.Popen[bytes], root: str, port: int, log: IO[bytes], *, last: bool
) -> bool:
    """Wait for `process` to answer /health on `port`; False when it exited because the port
    was taken meanwhile (and this is not the last attempt)."""
    deadline = time.monotonic() + 120  # a hang guard only: loaded machines start slowly
    seen = 0  # ready observations in a row: twice, 0.2 s apart, with the process alive
    while True:
        if process.poll() is not None:
            log.seek(0)
            text = log.read().decode(errors="replace")
            if not last and "address already in use" in text.lower():
                return False
            raise RuntimeError(f"tollway serve exited: {text[-4000:]!r}")
        try:
            healthy = httpx.get(f"{root}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            healthy = False
        seen = seen + 1 if healthy and _listens(process.pid, port) else 0
        if seen == 2:
            return True
        if time.monotonic() > deadline:
            raise RuntimeError("tollway serve did not become ready")
        time.sleep(0.2 if seen else 0.1)
