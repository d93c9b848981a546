"""Upstreams that fail the way a well-behaved server never does: a real TCP server on loopback
that reads each request, answers it with fixed raw bytes and hangs up; and a loopback port
with nothing listening on it."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_OK_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
# The headers promise 1000 bytes; the connection closes after a few.
RESET_MID_BODY = _OK_JSON + b'content-length: 1000\r\n\r\n{"id": "chatcmpl-cut'
NOT_JSON = _OK_JSON + b"content-length: 9\r\nconnection: close\r\n\r\nnot json!"
NOT_HTTP = b"SSH-2.0-OpenSSH_9.6\r\n"
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunked_sse(body: bytes, *, size: int) -> bytes:
    """A complete event-stream answer carrying ``body`` in HTTP chunks of ``size`` bytes."""
    pieces = [_chunk(body[i : i + size]) for i in range(0, len(body), size)]
    return _SSE_HEAD + b"".join(pieces) + b"0\r\n\r\n"


# One content event, then the connection closes inside the chunked body.
STREAM_THEN_RESET = _SSE_HEAD + _chunk(
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"half"},'
    b'"finish_reason":null}]}\n\n'
)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        self.rfile.read(length)
        self.wfile.write(self.server.reply)
        self.wfile.flush()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply


@contextmanager
def broken_upstream(reply: bytes) -> Iterator[str]:
    """Serve ``reply`` to every request; yields an OpenAI base URL (``.../v1``)."""
    server = _Server(reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def refused_url() -> str:
    """A loopback base URL with nothing listening (the port was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"http://127.0.0.1:{port}/v1"
