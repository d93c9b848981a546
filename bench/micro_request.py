"""Micro-benchmark of one warm chat request through the whole app, in process: CPU µs per
request (this process's CPU: the event loop and the SQLite group commit's thread) from the
ASGI call to the last byte sent, the upstream being the mock in its own process.

    .venv/bin/python bench/micro_request.py [-n 2000] [--metadata]

The app of `create_app` on a fresh SQLite file, one member with credits, requests
`tollway-demo-chat` (three demo providers, so three candidates are ranked) with a Bearer
key, non-streamed, called as ASGI without a server or HTTP client on our side; 200 warm-up
requests (key cached, lease drawn, speeds measured), then best of 5 rounds of `n`.
`--metadata` asks for the routing metadata in the answer (`include_metadata`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asgi_calls import cpu_us_per_call  # noqa: E402
from tests.support.world import World  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_mock() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    tollway = Path(sys.executable).parent / "tollway"
    argv = [str(tollway), "mock-provider", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the mock did not start")


async def run(app: Any, key: str, body: bytes, n: int) -> float:
    return await cpu_us_per_call(app, "/v1/chat/completions", body, f"Bearer {key}", n)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--metadata", action="store_true")
    args = parser.parse_args()
    mock, mock_url = start_mock()
    os.environ["TOLLWAY_MOCK_URL"] = mock_url
    os.environ.setdefault("TOLLWAY_LOG_LEVEL", "warning")
    from tollway.app import create_app
    from tollway.settings import Settings

    body: dict[str, Any] = {
        "model": "tollway-demo-chat",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
    }
    if args.metadata:
        body["include_metadata"] = True
    raw = httpx.Request("POST", "http://x", json=body).content
    try:
        with tempfile.TemporaryDirectory() as tmp:
            database_url = f"sqlite:///{tmp}/micro.db"
            world = World(database_url)
            await world.migrate()
            member = await world.member("u", "p", credits_eur="1000")
            await world.close()
            app = create_app(Settings(database_url=database_url))
            async with app.router.lifespan_context(app):
                await run(app, member.inference_key, raw, 200)
                rounds = [await run(app, member.inference_key, raw, args.n) for _ in range(5)]
    finally:
        mock.kill()
        mock.wait()
    label = "with include_metadata" if args.metadata else "plain"
    best = min(rounds)
    print(f"warm chat request ({label}): {best:7.1f} µs CPU per request (best of 5, n={args.n})")
    print("rounds:", " ".join(f"{r:.1f}" for r in rounds))


if __name__ == "__main__":
    asyncio.run(main())
