"""One POST called straight into an ASGI app, `n` times, with no server and no HTTP client:
the CPU µs of this process per call. Shared by `micro_request.py` (the whole app, a warm
chat request) and `micro_edge.py` (the edge alone)."""

from __future__ import annotations

import time
from typing import Any


async def cpu_us_per_call(app: Any, path: str, body: bytes, authorization: str, n: int) -> float:
    """CPU µs per call of `POST path` with `body`; every answer must be a 200."""
    scope_base = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"authorization", authorization.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    message = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    statuses: list[int] = []

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            statuses.append(msg["status"])

    started = time.process_time()
    for _ in range(n):
        await app(dict(scope_base), receive, send)
    elapsed = time.process_time() - started
    assert set(statuses) == {200}, set(statuses)
    return elapsed / n * 1e6
