"""The event loop `tollway serve` runs: uvloop, accepting waiting connections in batches.

libuv (under uvloop) accepts **one** connection per turn of the event loop (since libuv
PR #3696 of 2022, "unix: don't accept() connections in a loop"). A saturated loop turns slowly
(each turn runs the work of every ready request), so under load new connections waited in
the kernel's accept queue for seconds while the kept-alive ones were served: after a load
generator dropped 256 connections with requests in flight, 100 of the 256 it opened next sat
unaccepted for the whole run, and p99 went from 0.13 s to 1.2 s (a plain ASGI app that burns
0.4 ms a request, `bench/README.md`, "Connections waiting to be accepted"). asyncio's own
loop and granian accept in batches and do not show it.

`AcceptingLoop` is uvloop's loop with `create_server` replaced for plain TCP: the listening
socket is watched with `add_reader`, and each time it is readable up to `ACCEPT_BATCH`
connections are accepted and handed to uvloop as accepted sockets (`connect_accepted_socket`,
the same transports and protocols). Everything else is uvloop's. When the process is out of
file descriptors (or memory for sockets), accepting pauses for `ACCEPT_RETRY_S` and the error
is logged, as asyncio does; the connections wait in the kernel's queue meanwhile, and the
connections already open are served.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

import uvloop

log = logging.getLogger("tollway.http")

# Connections accepted per wake-up of the listening socket: enough to take a burst of new
# clients in a turn or two; bounded so that a flood cannot hold the loop (and, with several
# workers on one socket, so that one worker does not take every waiting connection).
ACCEPT_BATCH = 64
ACCEPT_RETRY_S = 1.0

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class AcceptingServer(asyncio.AbstractServer):
    """The server object `create_server` returns: what uvicorn uses of `asyncio.Server`
    (`sockets`, `close`, `wait_closed`, `is_serving`)."""

    def __init__(
        self, loop: AcceptingLoop, factory: ProtocolFactory, sockets: Iterable[socket.socket]
    ) -> None:
        self._loop = loop
        self._factory = factory
        self._sockets = list(sockets)
        self._serving = False
        self._connecting: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def start(self) -> None:
        self._serving = True
        for sock in self._sockets:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # nothing more waiting
            except ConnectionAbortedError:
                continue  # the client left while it waited: take the next one
            except OSError as exc:  # out of descriptors or socket memory, most likely
                log.error(
                    "cannot accept connections (%s); retrying in %.0f s",
                    exc.strerror or type(exc).__name__,
                    ACCEPT_RETRY_S,
                )
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(ACCEPT_RETRY_S, self._resume, sock)
                return
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _resume(self, sock: socket.socket) -> None:
        if self._serving:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as exc:  # the client reset before its transport was made
            log.debug("accepted connection lost before it was set up: %s", exc)
            conn.close()
        except Exception:  # a bug in setting it up: this connection is lost, not the server
            log.exception("could not set up an accepted connection")
            conn.close()

    def close(self) -> None:
        """Stop accepting and close the listening sockets (connections stay open)."""
        if not self._serving:
            return
        self._serving = False
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return self._serving

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:  # pragma: no cover - uvicorn runs its own loop
        raise NotImplementedError

    async def __aenter__(self) -> AcceptingServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class AcceptingLoop(uvloop.Loop):
    """uvloop's loop whose plain-TCP servers accept in batches (see the module)."""

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: ProtocolFactory,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        **kwargs: Any,
    ) -> asyncio.AbstractServer:
        if ssl is not None or kwargs or (sock is not None and sock.family == socket.AF_UNIX):
            uvloop_server: Any = super().create_server  # TLS, Unix sockets: uvloop's own
            return await uvloop_server(  # type: ignore[no-any-return]
                protocol_factory, host, port, sock=sock, backlog=backlog, ssl=ssl, **kwargs
            )
        if sock is None:
            sock = _listening_socket(host, port or 0, backlog)
        else:
            sock.listen(backlog)
        server = AcceptingServer(self, protocol_factory, [sock])
        server.start()
        return server


def _listening_socket(host: str | None, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    return socket.create_server((host or "", port), family=family, backlog=backlog)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop factory `uvicorn.run(loop="tollway.http.accept:new_event_loop")` imports."""
    return AcceptingLoop()
