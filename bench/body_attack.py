"""Oversized request bodies against a real `tollway serve`: eight concurrent 100 MB POSTs per
scenario (anonymous and authenticated, declared and chunked), the process's peak RSS
sampled every 20 ms. Usage: `.venv/bin/python bench/body_attack.py` (about a minute).

Prints one line per scenario: statuses, RSS before and at peak, and the time it took.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

MIB = 1024 * 1024
BODY = 100 * MIB
CONCURRENT = 8
CHUNK = b"a" * (256 * 1024)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(port: int, path: str, headers: dict[str, str], *, chunked: bool) -> int:
    head = [f"POST {path} HTTP/1.1", "Host: tollway", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}")
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for _ in range(BODY // len(CHUNK)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the rest was never wanted
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
        except OSError:
            return 0
        return response.status


def scenario(pid: int, port: int, path: str, headers: dict[str, str], chunked: bool) -> str:
    before = rss(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(pid))
            time.sleep(0.02)

    statuses: Counter[int] = Counter()

    def attack() -> None:
        statuses[post(port, path, headers, chunked=chunked)] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=attack) for _ in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    time.sleep(0.3)
    done.set()
    sampler.join()
    who = "authenticated" if headers else "anonymous"
    how = "chunked" if chunked else "Content-Length"
    return (
        f"{path:22} {who:13} {how:14} statuses {dict(statuses)}  "
        f"RSS {before / MIB:.0f} MB -> peak {peak / MIB:.0f} MB  ({elapsed:.1f} s)"
    )


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"TOLLWAY_DATABASE_URL": f"sqlite:///{tmp}/attack.db"}
        init = subprocess.run(
            [sys.executable, "-m", "tollway", "init", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = json.loads(init.stdout)["api_key"]
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "tollway", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            auth = {"Authorization": f"Bearer {key}"}
            for path, headers, chunked in [
                ("/v1/manage/api-keys", {}, False),
                ("/v1/manage/api-keys", {}, True),
                ("/v1/manage/api-keys", auth, True),
                ("/v1/chat/completions", {}, True),
                ("/v1/chat/completions", auth, True),
            ]:
                print(scenario(server.pid, port, path, headers, chunked), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
