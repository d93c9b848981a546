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


@contextmanager
def serve_process(database_url: str, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`tollway serve` on a free port; yields (root URL, process) once /health answers.

    Its log (one line per request) goes to a temporary file, never to a pipe nobody reads:
    a full pipe would block the server's logging, and with it the server."""
    port = free_port()
    keep = os.environ.get("TOLLWAY_TEST_SERVE_LOG")  # a directory: keep each server's log
    log = tempfile.NamedTemporaryFile(dir=keep, delete=not keep, suffix=".log")
    process = subprocess.Popen(
        [sys.executable, "-m", "tollway", "serve", "--port", str(port)],
        env=os.environ | {"TOLLWAY_DATABASE_URL": database_url} | env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a hang guard only: loaded machines start slowly
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"tollway serve exited: {log.read()[-4000:]!r}")
            try:
                if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("tollway serve did not become ready")
            time.sleep(0.1)
        yield root, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
