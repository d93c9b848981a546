"""The event loop `tollway serve` runs (http/accept.py) accepts the connections waiting in the
kernel's queue in a few turns of the loop, not one per turn as libuv does: on a loop slowed by
load, one per turn kept clients waiting for seconds before their first byte was read.

Counted in turns of the loop (each `asyncio.sleep(0)` is one), never in time. And a real
`tollway serve` out of file descriptors keeps serving and accepts again once it can."""

from __future__ import annotations

import asyncio
import http.client
import math
import os
import resource
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import serve_process, tollway
from tollway.http.accept import ACCEPT_BATCH, AcceptingLoop, AcceptingServer

CLIENTS = 200  # over three batches
MAX_TURNS = 100  # libuv's one-per-turn would have accepted 100 of them by then
GENEROUS_S = 30.0  # bounds on waits: never a measure of speed


class Counted(asyncio.Protocol):
    def __init__(self, made: list[asyncio.BaseTransport]) -> None:
        self.made = made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)


@pytest.fixture
def loop() -> Iterator[AcceptingLoop]:
    loop = AcceptingLoop()
    yield loop
    loop.close()


def _connect(port: int, count: int) -> list[socket.socket]:
    """Blocking connects: the kernel completes each handshake and queues it for accept()."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


async def _serve(
    loop: AcceptingLoop, factory: Callable[[], asyncio.Protocol], backlog: int = 100
) -> tuple[AcceptingServer, int]:
    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=backlog)
    assert isinstance(server, AcceptingServer)  # plain TCP: the batching server
    return server, server.sockets[0].getsockname()[1]


async def _turns_until(done: Callable[[], bool]) -> int:
    """Turns of the loop until `done()`, at most MAX_TURNS."""
    for turns in range(MAX_TURNS):
        if done():
            return turns
        await asyncio.sleep(0)
    return MAX_TURNS


def test_waiting_connections_are_accepted_in_a_few_turns(loop: AcceptingLoop) -> None:
    async def scenario() -> int:
        made: list[asyncio.BaseTransport] = []
        server, port = await _serve(loop, lambda: Counted(made), backlog=1024)
        clients = _connect(port, CLIENTS)  # the loop is held meanwhile: all of them wait
        turns = await _turns_until(lambda: len(made) >= CLIENTS)
        assert len(made) == CLIENTS, f"{len(made)} accepted after {turns} turns"
        for transport in made:
            transport.close()
        for client in clients:
            client.close()
        server.close()
        return turns

    turns = loop.run_until_complete(scenario())
    # A batch per turn, and a turn or two for each connection's transport to be made.
    assert turns <= math.ceil(CLIENTS / ACCEPT_BATCH) + 3


def test_a_closed_server_refuses_new_connections_and_keeps_open_ones(
    loop: AcceptingLoop,
) -> None:
    async def scenario() -> None:
        made: list[asyncio.BaseTransport] = []
        server, port = await _serve(loop, lambda: Counted(made))
        (client,) = _connect(port, 1)
        await _turns_until(lambda: bool(made))
        assert server.is_serving()
        server.close()
        assert not server.is_serving()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10)
        assert not made[0].is_closing()  # the connection accepted before stays open
        client.sendall(b"x")
        made[0].close()
        client.close()

    loop.run_until_complete(scenario())


def test_a_client_gone_before_it_was_accepted_costs_nothing(loop: AcceptingLoop) -> None:
    """A client that connects and resets before the loop accepts it: the next ones are
    still accepted and nothing is left half made."""

    async def scenario() -> None:
        made: list[asyncio.BaseTransport] = []
        server, port = await _serve(loop, lambda: Counted(made))
        gone = _connect(port, 5)
        for client in gone:  # a reset (SO_LINGER 0) while it waits in the queue
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        kept = _connect(port, 5)
        await _turns_until(lambda: len(made) >= 10)
        alive = [t for t in made if not t.is_closing()]
        assert len(alive) >= len(kept)
        for transport in made:
            transport.close()
        for client in kept:
            client.close()
        server.close()

    loop.run_until_complete(scenario())


def test_a_connection_whose_set_up_fails_is_closed_and_the_next_is_served(
    loop: AcceptingLoop, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        made: list[asyncio.BaseTransport] = []
        calls = 0

        def factory() -> asyncio.Protocol:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in the protocol")
            return Counted(made)

        server, port = await _serve(loop, factory)
        (failed,) = _connect(port, 1)
        await _turns_until(lambda: calls == 1)
        (served,) = _connect(port, 1)
        await _turns_until(lambda: bool(made))
        assert len(made) == 1
        failed.settimeout(10)
        assert failed.recv(1) == b""  # closed by the server, not left open
        for transport in made:
            transport.close()
        served.close()
        server.close()

    with caplog.at_level("ERROR", logger="tollway.http"):
        loop.run_until_complete(scenario())
    assert "could not set up an accepted connection" in caplog.text


def test_out_of_descriptors_the_server_serves_its_connections_and_accepts_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `tollway serve` whose file limit is reached: the connections it has are
    served, the reason is logged, and once descriptors are free it accepts again."""
    monkeypatch.setenv("TOLLWAY_TEST_SERVE_LOG", str(tmp_path))  # keep the server's log
    url = f"sqlite:///{tmp_path / 'accept.db'}"
    assert tollway("init", "--json", database_url=url).returncode == 0
    with serve_process(url) as (root, process):
        port = int(root.rsplit(":", 1)[1])
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=GENEROUS_S)
        assert _health(kept) == 200
        open_now = len(os.listdir(f"/proc/{process.pid}/fd"))
        _, hard = resource.prlimit(process.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (open_now + 2, hard))
        waiting = _connect(port, 10)  # two accepted, then EMFILE; the rest wait in the queue
        log = next(tmp_path.glob("*.log"))
        deadline = time.monotonic() + GENEROUS_S
        while "cannot accept connections" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        assert _health(kept) == 200  # the open connection is served meanwhile

        for client in waiting:
            client.close()
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (open_now + 50, hard))
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=GENEROUS_S)
        assert _health(fresh) == 200  # accepting resumed (after at most the 1 s pause)
        assert process.poll() is None
        kept.close()
        fresh.close()


def _health(connection: http.client.HTTPConnection) -> int:
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    return response.status
