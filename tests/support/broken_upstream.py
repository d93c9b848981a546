"""Upstreams that fail the way a well-behaved server never does: a real TCP server on loopback
that reads each request, answers it with fixed raw bytes and hangs up; and a loopback port
with nothing listening on it."""

from __future__ import annotations

import json
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


class _EchoHandler(socketserver.StreamRequestHandler):
    """Answers with the request's own credential in it, chosen by the body's `model`:
    `echo-<status>` an OpenAI-shaped error echoing the `Authorization` header;
    `echo-stream-error` a stream whose second event is such an error;
    `echo-content` an answer (or stream) whose text is the header's value."""

    def handle(self) -> None:
        length, authorization = 0, ""
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
            if name.strip().lower() == "authorization":
                authorization = value.strip()
        request = json.loads(self.rfile.read(length) or b"{}")
        model, stream = str(request.get("model", "")), bool(request.get("stream"))
        echo = {"message": f"invalid request; got Authorization: {authorization}"}
        error = json.dumps({"error": {**echo, "type": "invalid_request_error", "code": "x"}})
        if model.startswith("echo-") and model[5:].isdigit():
            self._send(f"{model[5:]} Echo", "application/json", error.encode())
        elif model == "echo-stream-error":
            events = _delta_event("fine so far") + b"data: " + error.encode() + b"\n\n"
            self._send("200 OK", "text/event-stream", events)
        elif stream:
            events = _delta_event(authorization) + _usage_event() + b"data: [DONE]\n\n"
            self._send("200 OK", "text/event-stream", events)
        else:
            answer = {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": authorization},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
            self._send("200 OK", "application/json", json.dumps(answer).encode())

    def _send(self, status: str, media_type: str, body: bytes) -> None:
        head = f"HTTP/1.1 {status}\r\ncontent-type: {media_type}\r\n"
        head += f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        self.wfile.write(head.encode() + body)
        self.wfile.flush()


def _delta_event(content: str) -> bytes:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _usage_event() -> bytes:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "choices": []}
    return b"data: " + json.dumps({**chunk, "usage": usage}).encode() + b"\n\n"


@contextmanager
def echoing_upstream() -> Iterator[str]:
    """A provider that echoes the credential it was sent (see `_EchoHandler`); yields an
    OpenAI base URL."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
