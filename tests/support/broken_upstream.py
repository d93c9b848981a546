"""Upstreams that fail the way a well-behaved server never does: a real TCP server on loopback
that reads each request, answers it with fixed raw bytes and hangs up; and a loopback port
with nothing listening on it."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


def _completion(content: str, usage: dict[str, int]) -> bytes:
    answer = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    return json.dumps(answer).encode()


class _BehavedHandler(socketserver.StreamRequestHandler):
    """A slow, hanging, huge or dripping provider, chosen by the server's `behaviour`."""

    server: _BehavedServer

    def handle(self) -> None:
        length = 0
        while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        request = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests += 1
        try:
            self.server.behaviour(request, self)
        except OSError:
            pass  # the gateway left

    def send_json(self, body: bytes) -> None:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        self.wfile.write(head + body)
        self.wfile.flush()


class _BehavedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _BehavedHandler)
        self.behaviour = behaviour
        self.requests = 0
        self.stop = threading.Event()


Behaviour = Callable[[dict[str, Any], _BehavedHandler], None]


@contextmanager
def behaved_upstream(behaviour: Behaviour) -> Iterator[tuple[str, _BehavedServer]]:
    """A provider answering each request by `behaviour(request body, handler)`; yields (an
    OpenAI base URL, the server: `.requests` counts them)."""
    server = _BehavedServer(behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def generating(ms_per_token: float) -> Behaviour:
    """Like a real model: the answer takes `max_tokens` times `ms_per_token` (no bound: 4096)."""

    def behave(request: dict[str, Any], handler: _BehavedHandler) -> None:
        tokens = int(request.get("max_tokens") or 4096)
        if handler.server.stop.wait(tokens * ms_per_token / 1000):
            return
        usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": tokens + 5}
        handler.send_json(_completion("x " * min(tokens, 100), usage))

    return behave


def hanging(request: dict[str, Any], handler: _BehavedHandler) -> None:
    """Reads the request and never answers (until the server stops)."""
    handler.server.stop.wait(600)


def reporting_usage(prompt_tokens: int, completion_tokens: int) -> Behaviour:
    """Answers at once (a stream if asked) and reports this usage, whatever was sent."""
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }

    def behave(request: dict[str, Any], handler: _BehavedHandler) -> None:
        if request.get("stream"):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "choices": []}
            events = _delta_event("seen")
            events += b"data: " + json.dumps({**chunk, "usage": usage}).encode() + b"\n\n"
            events += b"data: [DONE]\n\n"
            head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            head += b"content-length: %d\r\nconnection: close\r\n\r\n" % len(events)
            handler.wfile.write(head + events)
            handler.wfile.flush()
            return
        handler.send_json(_completion("seen", usage))

    return behave


def huge(size: int) -> Behaviour:
    """A 200 answer of `size` bytes (a JSON object padded with one long string), written in
    64 KiB pieces."""

    def behave(request: dict[str, Any], handler: _BehavedHandler) -> None:
        prefix, suffix = b'{"pad": "', b'"}'
        pad = size - len(prefix) - len(suffix)
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        head += b"content-length: %d\r\nconnection: close\r\n\r\n" % size
        handler.wfile.write(head + prefix)
        piece = b"a" * 65536
        while pad > 0 and not handler.server.stop.is_set():
            handler.wfile.write(piece[: min(pad, len(piece))])
            pad -= len(piece)
        handler.wfile.write(suffix)
        handler.wfile.flush()

    return behave


def dripping(every_s: float) -> Behaviour:
    """A stream that sends one content event every `every_s`, forever (until the gateway
    leaves or the server stops): inside any idle timeout, never ending."""

    def behave(request: dict[str, Any], handler: _BehavedHandler) -> None:
        handler.wfile.write(_SSE_HEAD)
        while not handler.server.stop.wait(every_s):
            handler.wfile.write(_chunk(_delta_event("drip ")))
            handler.wfile.flush()

    return behave


class _IdleCloser(socketserver.StreamRequestHandler):
    """Answers the first `answers` requests of each connection with `reply` (kept alive), then
    reads the next one and hangs up without a byte: what a provider does when it closes an
    idle kept-alive connection just as the gateway sends on it."""

    server: _IdleCloserServer

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        answered = 0
        while True:
            length = -1
            while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                length = max(length, 0)
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length < 0:  # the client closed the connection
                return
            self.rfile.read(length)
            with self.server.lock:
                self.server.requests += 1
            if answered >= self.server.answers:
                return
            self.wfile.write(self.server.reply)
            self.wfile.flush()
            answered += 1


class _IdleCloserServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, reply: bytes, answers: int) -> None:
        super().__init__(("127.0.0.1", 0), _IdleCloser)
        self.reply, self.answers = reply, answers
        self.lock = threading.Lock()
        self.connections = self.requests = 0


@contextmanager
def idle_closing_upstream(reply: bytes, *, answers: int = 1) -> Iterator[_IdleCloserServer]:
    """A server whose connections each answer `answers` requests, then hang up on the next
    (0: hang up on every request). Its `connections` and `requests` count what it saw; its
    base URL is `base_url(server)`."""
    server = _IdleCloserServer(reply, answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def base_url(server: socketserver.TCPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def kept_alive_json(body: bytes) -> bytes:
    """A 200 JSON answer that keeps the connection open."""
    return _OK_JSON + b"content-length: %d\r\n\r\n%s" % (len(body), body)
