"""Real Redis servers for tests: the shared one (TOLLWAY_TEST_REDIS, started by .ci/run), or a
private `redis-server` on a free port that a test may stop and start again. Redis tests skip
with the reason when no Redis can be had, and FAIL when CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from tests.support.processes import free_port

SHARED_REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason + " (CI is set: Redis tests must run)")
    pytest.skip(reason)


def shared_redis_url() -> str:
    client = redis.Redis.from_url(SHARED_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        _unavailable(f"Redis unreachable at {SHARED_REDIS_URL}: {exc}")
    finally:
        client.close()
    return SHARED_REDIS_URL


class PrivateRedis:
    """`redis-server` as a child process on a free loopback port, nothing saved to disk."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server is not installed")
        self._binary = str(binary)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except (redis.RedisError, OSError):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def seconds_into_minute(client: redis.Redis) -> int:
    """Where the Redis server's clock is in its current minute (the limiter's window)."""
    seconds, _micros = client.time()
    return int(seconds) % 60


def wait_for_a_fresh_window(client: redis.Redis, needed_s: int) -> None:
    """Sleep into the next minute when fewer than `needed_s` seconds are left in this one, so
    a burst that should fall into one window does."""
    into = seconds_into_minute(client)
    if into > 60 - needed_s:
        time.sleep(60 - into + 0.2)
