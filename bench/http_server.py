"""Which HTTP/1.1 protocol to serve with: the server process's CPU time per request (user +
system, from /proc, so the client's own speed does not count) for `GET /health` over four
kept-alive connections, under uvicorn's httptools protocol, its h11 protocol (which bounds
the request head itself), and Tollway's guarded httptools protocol (http/server.py).

Usage: `.venv/bin/python bench/http_server.py [-n REQUESTS]` (about a minute). Numbers are
written down in bench/README.md, never asserted.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVE = """
import sys, uvicorn
from tollway.http.server import guarded_http
from tollway.settings import Settings
kind, port = sys.argv[1], int(sys.argv[2])
http = {"guarded": guarded_http(Settings()), "httptools": "httptools", "h11": "h11"}[kind]
uvicorn.run("tollway.app:create_app_from_env", factory=True, port=port, loop="uvloop",
            http=http, access_log=False, log_level="warning")
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(kind: str, requests: int, env: dict[str, str]) -> tuple[float, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, kind, str(port)],
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

        def client(count: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(count):
                connection.request("GET", "/health", headers={"User-Agent": "bench"})
                connection.getresponse().read()
            connection.close()

        client(200)  # warm-up
        before = cpu_seconds(server.pid)
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(requests // 4,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - before
        return cpu / requests * 1e6, requests / elapsed
    finally:
        server.terminate()
        server.wait(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"TOLLWAY_DATABASE_URL": f"sqlite:///{tmp}/http.db"}
        subprocess.run(
            [sys.executable, "-m", "tollway", "init", "--json"],
            env=env,
            capture_output=True,
            check=True,
        )
        for round_ in range(args.rounds):
            for kind in ("httptools", "h11", "guarded"):
                cpu_us, rate = run(kind, args.n, env)
                print(
                    f"round {round_ + 1} {kind:9}: {cpu_us:6.0f} µs server CPU per request, "
                    f"{rate:6.0f} requests/s",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
