"""The HTTP/1.1 connection: uvicorn's httptools protocol with the bounds it lacks.

uvicorn's httptools protocol (the fastest it has, docs/operations.md "The HTTP server")
reads a request head of any size and waits for an incomplete request forever; its h11
protocol bounds the head but is pure Python. `GuardedHttpTools` adds, per connection:

- **Head size**: a request head (request line and headers) over `max_head_bytes` is answered
  431 and the connection closed, after at most one read past the limit.
- **Head time**: a head not complete `head_timeout_s` after the connection opened (or after
  its first byte, on a kept-alive connection) is answered 408 and closed; a connection that
  sent nothing at all is closed without an answer.
- **Body silence**: a request body that stops arriving for `body_timeout_s` (while the app
  is ready for more) closes the connection; the app sees the client gone.
- **Connections**: a request on a connection beyond `max_connections` open in this process
  is answered 503 with `Retry-After` and the connection closed.
- **A paused process**: a process stopped (SIGSTOP, a frozen VM or container) for longer than
  a timeout wakes with that timer expired and the requests sent meanwhile still unread in
  the socket. uvloop runs expired timers before it polls the sockets, so the keep-alive
  timer used to close a connection whose next request had already arrived (the client saw a
  reset). A timer that fires while the socket holds unread bytes gives the read a chance
  first: every request the process accepted is read and answered.

And one thing for speed: **a response's head and its first body bytes go out in one write**
(`_OneWrite`). uvicorn writes the head of a response, then its body, each with its own
`transport.write`, and uvloop sends each at once: two `send()` calls, and two TCP segments,
for every answer. Holding the head until the body comes (in the same turn of the loop, for a
whole answer) makes it one (bench/README.md, "2026-12-03, late", item 6).

Everything else (parsing, pipelining, flow control, the ASGI cycle) is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tollway.frozen import frozen
from tollway.observe.logs import FIELDS
from tollway.settings import Settings

log = logging.getLogger("tollway.http")

_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
# How long an expired timer waits for the bytes found unread in the socket to be read.
_GRACE_S = 1.0


@frozen
class ServerLimits:
    max_head_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 2048


class GuardedHttpTools(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits or ServerLimits()
        self._in_head = True  # waiting for or reading a request head (not a body)
        self._head_bytes = 0
        self._heads = 0  # request heads completed on this connection
        self._received_any = False
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._body_seen = 0.0  # loop time of the last body bytes

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.head_timeout_s, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._received_any = True
        was_in_head = self._in_head
        heads_before = self._heads
        super().data_received(data)
        if self._refused or self.transport.is_closing() or not self._in_head:
            return
        # Ends in an incomplete head: every byte of this read belongs to it, unless the read
        # began in a body or held a whole request before it (then its share is unknown, at
        # most one read, and counting starts with the next read).
        whole = was_in_head and self._heads == heads_before
        self._head_bytes = self._head_bytes + len(data) if whole else 0
        if self._head_bytes > self.limits.max_head_bytes:
            self._refuse(
                431,
                f"request head larger than {self.limits.max_head_bytes} bytes",
                code="request_header_fields_too_large",
            )

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._timer is None:  # a kept-alive connection's next request: the head's clock
            self._arm(self.limits.head_timeout_s, self._head_expired)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._heads += 1
        self._disarm()
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503,
                f"this process has more than {self.limits.max_connections} open connections",
                code="too_many_connections",
                retry_after=1,
            )
            return
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:
            self.cycle.transport = _OneWrite(self.transport, self.loop)  # type: ignore[assignment]
        self._body_seen = self.loop.time()
        self._arm(self.limits.body_timeout_s, self._body_expired)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_seen = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._in_head = True
        super().on_message_complete()

    # Timers

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing() and _unread_input(self.transport):
            self.timeout_keep_alive_task = None  # the next request is here: read it
            return
        super().timeout_keep_alive_handler()

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_expired(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if _unread_input(self.transport):
            self._arm(_GRACE_S, self._head_expired)
            return
        if not self._received_any:  # opened and never used: nothing to answer
            log.debug("idle connection closed", extra={FIELDS: {"client": self._client()}})
            self.transport.close()
            return
        self._refuse(
            408,
            f"request head not complete within {self.limits.head_timeout_s:g} s",
            code="request_timeout",
        )

    def _body_expired(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._in_head:
            return
        silent = self.loop.time() - self._body_seen
        waiting_for_app = self.flow.read_paused or (
            self.cycle is not None and self.cycle.waiting_for_100_continue
        )
        if silent < self.limits.body_timeout_s or waiting_for_app:
            # Bytes came since, or the app has not read what it has (or not yet asked for the
            # body the client holds back until `100 Continue`): not the client's delay.
            self._arm(max(self.limits.body_timeout_s - silent, _GRACE_S), self._body_expired)
            return
        if _unread_input(self.transport):
            self._arm(_GRACE_S, self._body_expired)
            return
        self._log("request body silent", 0, self.limits.body_timeout_s)
        self.transport.close()  # the app's next receive() is a disconnect

    # Refusals

    def _refuse(
        self, status: int, message: str, *, code: str, retry_after: int | None = None
    ) -> None:
        """Answer `status` and close: the rest of what the client sends is not read."""
        self._refused = True
        self._disarm()
        body = orjson.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        )
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
        ]
        if retry_after is not None:
            head.append(b"retry-after: %d\r\n" % retry_after)
        self.transport.write(b"".join([*head, b"\r\n", body]))
        self.transport.close()
        self._log(message, status, None)

    def _log(self, message: str, status: int, after_s: float | None) -> None:
        fields = {"status": status or None, "client": self._client(), "after_s": after_s}
        log.warning(message, extra={FIELDS: fields})

    def _client(self) -> str | None:
        return f"{self.client[0]}:{self.client[1]}" if self.client else None


class _OneWrite:
    """The transport as one response's cycle sees it: the response's head (its first write
    that is not an interim `1xx`) is held until the body's first bytes and both go out in one
    `writelines` (uvloop: one `send()`). A head whose body is not written in this turn of
    the loop (a stream waiting for its first event, a HEAD request) goes out at the next one.
    Everything else is the transport's."""

    __slots__ = ("_handle", "_head", "_loop", "_started", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._handle: asyncio.Handle | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            self._release([self._head, data])
        elif not self._started and data.startswith(b"HTTP/") and data[9:10] != b"1":
            self._started = True
            self._head = data
            self._handle = self._loop.call_soon(self.flush)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            self._release([self._head])

    def _release(self, parts: list[bytes]) -> None:
        self._head = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self.transport.is_closing():  # gone meanwhile: nobody to send it to
            self.transport.writelines(parts)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def guarded_http(settings: Settings) -> Callable[..., GuardedHttpTools]:
    """The protocol factory `uvicorn.run(http=...)` takes, with the limits of `settings`
    (a partial: it pickles, for worker processes)."""
    return partial(
        GuardedHttpTools,
        limits=ServerLimits(
            max_head_bytes=settings.http_max_head_bytes,
            head_timeout_s=settings.http_head_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_connections=settings.http_max_connections,
        ),
    )


def _unread_input(transport: asyncio.BaseTransport) -> bool:
    """Whether the connection's socket holds bytes not read yet (a peek, nothing consumed)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        probe = socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:
        return False
    with probe:
        try:
            return bool(probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing there (EAGAIN), or the connection is gone
            return False
