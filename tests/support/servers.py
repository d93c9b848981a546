"""Serve an ASGI app on a free loopback port from a background thread (a real HTTP server)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

STARTUP_TIMEOUT_S = 15.0


@contextmanager
def serving(
    app: Any, *, config: uvicorn.Config | None = None, lifespan_off: bool = False
) -> Iterator[int]:
    """Yields the port; the server stops (gracefully, bounded) when the block ends.
    ``config`` is the app's own uvicorn set-up, if it has one (its host and port are ignored:
    the server gets a socket bound here, on a free port, without a race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    if config is None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off" if lifespan_off else "on",
            log_level="warning",
            access_log=False,
        )
    config.timeout_graceful_shutdown = 2
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.005)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
