"""Memory and connection attacks against a real `tollway serve` (not run in CI): what one and
four 32 MiB JSON bodies of `{}, {}, …` cost (the process's peak RSS, sampled every 20 ms, and
the slowest `GET /health` answered meanwhile), a 64 MiB request header, and 900 connections
that send half a request head and then nothing (RSS and open file descriptors before, while
they are open, and once the head timeout has passed).

Usage: `.venv/bin/python bench/memory.py [--src DIR]` (about a minute). `--src` runs the
gateway from another source tree (e.g. an older commit exported with `git archive`), to
compare. Numbers are written down in bench/README.md, never asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

MIB = 1024 * 1024
BODY_BYTES = 32 * MIB - 4096  # just under the default 32 MiB body limit


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hostile_body() -> bytes:
    head, tail = b'{"model": "tollway-demo-chat", "messages": [', b"{}]}"
    count = (BODY_BYTES - len(head) - len(tail)) // 4
    return head + b"{}, " * count + tail


def post(port: int, path: str, key: str, body: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: tollway\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            sock.sendall(head + body)
        except OSError:
            pass
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
        except OSError:
            return 0
        return response.status


class Watch:
    """Peak RSS every 20 ms and the slowest /health (polled on its own connection) while a
    scenario runs."""

    def __init__(self, pid: int, port: int) -> None:
        self.pid, self.port = pid, port
        self.before = rss(pid)
        self.peak = self.before
        self.slowest_health = 0.0
        self.done = threading.Event()
        self.threads = [
            threading.Thread(target=self._sample),
            threading.Thread(target=self._health),
        ]

    def __enter__(self) -> Watch:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.3)
        self.done.set()
        for thread in self.threads:
            thread.join()

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)

    def _health(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.done.is_set():
            started = time.perf_counter()
            connection.request("GET", "/health")
            connection.getresponse().read()
            self.slowest_health = max(self.slowest_health, time.perf_counter() - started)
            time.sleep(0.05)
        connection.close()


def bodies(pid: int, port: int, key: str, concurrent: int) -> str:
    body = hostile_body()
    statuses: list[int] = []
    with Watch(pid, port) as watch:
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=lambda: statuses.append(post(port, "/v1/chat/completions", key, body))
            )
            for _ in range(concurrent)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    return (
        f"{concurrent} x {len(body) / MIB:.1f} MiB body of {{}}: statuses {sorted(statuses)}, "
        f"RSS {watch.before / MIB:.0f} MB -> peak {watch.peak / MIB:.0f} MB "
        f"(+{(watch.peak - watch.before) / MIB:.0f} MB), slowest /health "
        f"{watch.slowest_health * 1000:.0f} ms, {elapsed:.1f} s"
    )


def big_header(pid: int, port: int) -> str:
    sent = 0
    answer = b""
    with Watch(pid, port) as watch:
        started = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: tollway\r\nX-Big: ")
            try:
                for _ in range(64):
                    sock.sendall(b"a" * MIB)
                    sent += MIB
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass
            try:
                answer = sock.recv(200)
            except OSError:
                answer = b"(reset)"
        elapsed = time.perf_counter() - started
    first = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)"
    return (
        f"64 MiB header: {first}, {sent / MIB:.0f} MiB sent before the server stopped "
        f"reading, RSS {watch.before / MIB:.0f} MB -> peak {watch.peak / MIB:.0f} MB, "
        f"{elapsed:.1f} s"
    )


def silent(pid: int, port: int, count: int, wait_s: float) -> str:
    rss0, fds0 = rss(pid), fds(pid)
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: tollway\r\n")
        socks.append(sock)
    time.sleep(1)
    rss1, fds1 = rss(pid), fds(pid)
    time.sleep(wait_s)
    rss2, fds2 = rss(pid), fds(pid)
    closed = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            if sock.recv(1, socket.MSG_PEEK) is not None:
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        sock.close()
    return (
        f"{count} half-sent heads: fds {fds0} -> {fds1} open -> {fds2} after {wait_s:.0f} s; "
        f"RSS {rss0 / MIB:.0f} -> {rss1 / MIB:.0f} -> {rss2 / MIB:.0f} MB; "
        f"{closed} answered/closed by the server"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="run the gateway from this source tree's src/")
    parser.add_argument("--silent", type=int, default=900)
    parser.add_argument("--wait", type=float, default=12.0, help="seconds to wait for timeouts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"TOLLWAY_DATABASE_URL": f"sqlite:///{tmp}/memory.db"}
        if args.src:
            env["PYTHONPATH"] = str(Path(args.src).resolve() / "src")

        def tollway(*argv: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "tollway", *argv],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            return done.stdout

        management = json.loads(tollway("init", "--json"))["api_key"]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "tollway", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(150):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request(
                "POST",
                "/v1/manage/api-keys",
                body=b'{"name": "bench"}',
                headers={
                    "Authorization": f"Bearer {management}",
                    "Content-Type": "application/json",
                },
            )
            created = json.loads(connection.getresponse().read())
            key = created.get("api_key") or sys.exit(f"cannot create a key: {created}")
            scenarios: list[Callable[[], str]] = [
                lambda: bodies(server.pid, port, key, 1),
                lambda: bodies(server.pid, port, key, 4),
                lambda: big_header(server.pid, port),
                lambda: silent(server.pid, port, args.silent, args.wait),
            ]
            for scenario in scenarios:
                print(scenario(), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
