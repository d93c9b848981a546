"""A response's head and body go out in one write (`http/server.py`, `_OneWrite`), against a
real `tollway serve` over raw sockets: each whole answer reaches the client as one TCP data
segment (the kernel's own count, `TCP_INFO`), where uvicorn alone sends two; and what must not
wait still does not: `100 Continue` goes out before the body is sent, a HEAD answer and a
stream's head arrive whole, on one kept-alive connection."""

from __future__ import annotations

import http.client
import json
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.support.mock_server import running_mock
from tests.support.processes import serve_process, tollway

GENEROUS_S = 30.0  # bounds on waits: never a measure of speed
# `struct tcp_info` (linux/tcp.h): tcpi_data_segs_in, the segments received that held data.
_DATA_SEGS_IN = 152
CHAT = json.dumps(
    {"model": "tollway-demo-chat", "messages": [{"role": "user", "content": "hi"}]}
).encode()

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_INFO"), reason="TCP_INFO (the kernel's segment count) is Linux's"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('one-write') / 'one.db'}"
    init = tollway("init", "--json", database_url=url)
    assert init.returncode == 0, init.stderr
    topped = tollway("credits", "add", "--user", "admin", "10", database_url=url)
    assert topped.returncode == 0, topped.stderr
    with running_mock() as mock_url, serve_process(url, TOLLWAY_MOCK_URL=mock_url) as (root, _):
        host, port = root.removeprefix("http://").split(":")
        yield host, int(port), json.loads(init.stdout)["api_key"]


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


def _exchange(sock: socket.socket, request: bytes, method: str = "GET") -> tuple[int, bytes]:
    sock.sendall(request)
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return response.status, response.read()


def _chat(key: str, body: bytes = CHAT, extra: str = "") -> bytes:
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def test_each_whole_answer_is_one_segment(server: tuple[str, int, str]) -> None:
    host, port, key = server
    with socket.create_connection((host, port), timeout=GENEROUS_S) as sock:
        for _ in range(3):  # warm: the key cached, the lease drawn
            assert _exchange(sock, _chat(key))[0] == 200
        before = _data_segments_in(sock)
        for _ in range(20):
            status, body = _exchange(sock, _chat(key))
            assert status == 200 and json.loads(body)["choices"]
            assert _exchange(sock, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
        # 40 answers, each a few hundred bytes: one segment each (uvicorn's two writes: 80).
        assert _data_segments_in(sock) - before == 40


def test_what_must_not_wait_does_not(server: tuple[str, int, str]) -> None:
    host, port, key = server
    with socket.create_connection((host, port), timeout=GENEROUS_S) as sock:
        # 100 Continue before the body is sent: the interim answer is never held.
        sock.sendall(_chat(key, extra="Expect: 100-continue\r\n").removesuffix(CHAT))
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(CHAT)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200 and json.loads(response.read())["choices"]
        # A HEAD answer has no body to wait for.
        status, body = _exchange(sock, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", method="HEAD")
        assert status == 200 and body == b""
        # A stream: its head, every event and its end, on the same connection.
        stream = json.dumps({**json.loads(CHAT), "stream": True}).encode()
        status, body = _exchange(sock, _chat(key, stream))
        assert status == 200
        assert body.rstrip().endswith(b"data: [DONE]")
        assert _exchange(sock, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
