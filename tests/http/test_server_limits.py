"""The HTTP server's bounds, against a real `tollway serve` over raw sockets: a request head
over the limit is 431 and the connection closed without reading the rest, an incomplete head
is 408 and closed after the (short, injected) timeout, a silent connection is closed, a body
that stops arriving closes the connection, a request beyond the connection limit is 503 with
Retry-After; and a process paused (SIGSTOP) longer than its keep-alive timeout answers the
requests that were sent to it while it was stopped."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import serve_process, tollway

MIB = 1024 * 1024
HEAD_TIMEOUT_S = 1.0
GENEROUS_S = 30.0  # bounds on waits: never a measure of speed


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str]]:
    db_path = tmp_path_factory.mktemp("server") / "server.db"
    url = f"sqlite:///{db_path}"
    init = tollway("init", "--json", database_url=url)
    assert init.returncode == 0, init.stderr
    key = json.loads(init.stdout)["api_key"]
    with serve_process(
        url,
        TOLLWAY_HTTP_HEAD_TIMEOUT_S=str(HEAD_TIMEOUT_S),
        TOLLWAY_HTTP_BODY_TIMEOUT_S="1",
        TOLLWAY_HTTP_KEEPALIVE_S="1",
        TOLLWAY_HTTP_MAX_CONNECTIONS="20",
    ) as (root, _process):
        host, port = root.removeprefix("http://").split(":")
        yield host, int(port), key


def _connect(server: tuple[str, int, str]) -> socket.socket:
    host, port, _ = server
    return socket.create_connection((host, port), timeout=GENEROUS_S)


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _health(sock: socket.socket) -> int:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\n\r\n")
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def test_a_64_mib_header_is_431_without_being_read(server: tuple[str, int, str]) -> None:
    sent = 0
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\nX-Big: ")
        chunk = b"a" * MIB
        try:
            for _ in range(64):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # closed on us: what was not sent was never read
        answer = _read_until_closed(sock)
    assert sent < 32 * MIB, sent  # closed long before the end (socket buffers hold a few MiB)
    if answer:  # the answer can be lost to the reset of the unread bytes; if it came, it is:
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["message"] == "request head larger than 65536 bytes"
    with _connect(server) as other:  # the process is fine
        assert _health(other) == 200


def test_a_head_just_over_the_limit_is_431_in_full(server: tuple[str, int, str]) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\nX-Big: " + b"a" * 70_000)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in answer


def test_headers_within_the_limit_are_served(server: tuple[str, int, str]) -> None:
    with _connect(server) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: tollway\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n"
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200


def test_the_head_limit_is_per_request_not_per_connection(server: tuple[str, int, str]) -> None:
    """Many requests on one kept-alive connection, one by one and pipelined in one write,
    carry far more than the head limit in total; each head is small, so all are served."""
    request = b"GET /health HTTP/1.1\r\nHost: tollway\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n"
    with _connect(server) as sock:
        for _ in range(60):  # 120 KB of heads, one at a time
            sock.sendall(request)
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            assert response.status == 200
        sock.sendall(request * 60)  # and pipelined
        answers = sock.makefile("rb")
        for _ in range(60):
            assert answers.readline().startswith(b"HTTP/1.1 200 ")
            length = 0
            while (line := answers.readline()) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            answers.read(length)


def test_a_half_sent_head_is_408_and_closed_after_the_timeout(
    server: tuple[str, int, str],
) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: tollway\r\n")
        answer = _read_until_closed(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request head not complete within 1 s" in answer
    assert HEAD_TIMEOUT_S * 0.9 <= waited < GENEROUS_S


def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_timeout(
    server: tuple[str, int, str],
) -> None:
    """Slowloris: bytes keep coming, but the head's time counts from its start."""
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\n")
        answer = None
        while answer is None and time.monotonic() - started < GENEROUS_S:
            try:
                sock.sendall(b"X-A: b\r\n")
            except OSError:
                answer = b""
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                answer = _read_until_closed(sock)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408 "), answer


def test_a_silent_connection_is_closed(server: tuple[str, int, str]) -> None:
    with _connect(server) as sock:
        assert _read_until_closed(sock) == b""  # closed, nothing said


def test_a_body_that_stops_arriving_closes_the_connection(server: tuple[str, int, str]) -> None:
    """An authenticated Management request (its body is read after authentication)."""
    with _connect(server) as sock:
        sock.sendall(
            b"PUT /v1/project-configs HTTP/1.1\r\nHost: tollway\r\n"
            b"Authorization: Bearer " + server[2].encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        started = time.monotonic()
        answer = _read_until_closed(sock)
        assert time.monotonic() - started < GENEROUS_S
    assert answer == b""  # nothing to answer: the client is taken for gone
    with _connect(server) as sock:
        assert _health(sock) == 200


def test_a_request_beyond_the_connection_limit_is_503_with_retry_after(
    server: tuple[str, int, str],
) -> None:
    held = [_connect(server) for _ in range(25)]
    try:
        statuses = []
        for sock in held[20:]:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            statuses.append((response.status, response.getheader("retry-after")))
            response.read()
        assert (503, "1") in statuses, statuses
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)  # let the process see them gone
    with _connect(server) as sock:
        assert _health(sock) == 200


def test_requests_sent_to_a_paused_process_are_answered_when_it_resumes(
    tmp_path: Path,
) -> None:
    """SIGSTOP longer than the keep-alive timeout: the kept-alive connections' next requests,
    sent during the pause, are answered after SIGCONT (they used to be reset)."""
    url = f"sqlite:///{tmp_path / 'paused.db'}"
    assert tollway("init", "--json", database_url=url).returncode == 0
    with serve_process(url, TOLLWAY_HTTP_KEEPALIVE_S="1") as (root, process):
        host, port = root.removeprefix("http://").split(":")
        socks = [socket.create_connection((host, int(port)), timeout=GENEROUS_S) for _ in range(8)]
        try:
            for sock in socks:
                assert _health(sock) == 200  # now idle, kept alive
            os.kill(process.pid, signal.SIGSTOP)
            try:
                for sock in socks:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\n\r\n")
                time.sleep(3)  # well past the 1 s keep-alive timeout
            finally:
                os.kill(process.pid, signal.SIGCONT)
            statuses = []
            for sock in socks:
                response = http.client.HTTPResponse(sock)
                response.begin()
                response.read()
                statuses.append(response.status)
            assert statuses == [200] * len(socks)
        finally:
            for sock in socks:
                sock.close()


def test_keep_alive_connections_still_close_when_idle(server: tuple[str, int, str]) -> None:
    with _connect(server) as sock:
        assert _health(sock) == 200
        started = time.monotonic()
        assert _read_until_closed(sock) == b""
        assert time.monotonic() - started < GENEROUS_S
