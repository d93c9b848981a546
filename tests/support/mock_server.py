"""Run the mock provider as a real HTTP server in a background thread, for tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support.servers import serving
from tollway.providers.mock import MockProvider, create_mock_app, uvicorn_config
from tollway.providers.mock_settings import MockSettings

STARTUP_TIMEOUT_S = 10.0


@contextmanager
def running_mock_app(settings: MockSettings | None = None) -> Iterator[tuple[str, MockProvider]]:
    """Like `running_mock`, also yielding the app so a test can read `app.stats` directly."""
    app = create_mock_app(settings or MockSettings())
    with serving(app, config=uvicorn_config(app, "127.0.0.1", 0)) as port:
        yield f"http://127.0.0.1:{port}/v1", app


@contextmanager
def running_mock(settings: MockSettings | None = None) -> Iterator[str]:
    """Serve the mock on a free loopback port; yields its OpenAI base URL (`.../v1`)."""
    with running_mock_app(settings) as (base_url, _):
        yield base_url


def mock_root(base_url: str) -> str:
    """The server root of a mock base URL, where `/_mock/stats` and `/health` live."""
    return base_url.removesuffix("/v1")


def fetch_mock_stats(base_url: str) -> dict[str, Any]:
    """The mock's counters: requests, open/aborted/completed/cut streams, last request."""
    response = httpx.get(f"{mock_root(base_url)}/_mock/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def wait_for_mock_stats(
    base_url: str, key: str, expected: int, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Poll the counters until `key` reaches `expected` (the server settles asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = fetch_mock_stats(base_url)
        if stats[key] == expected or time.monotonic() > deadline:
            return stats
        time.sleep(0.01)
