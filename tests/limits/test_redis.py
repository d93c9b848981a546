"""Rate limits in Redis: the Lua check is exact under concurrency; when Redis stops the
gateway fails open to counting in process (one WARNING, a metric) and goes back to Redis when
it answers again. A private redis-server per test, stopped and started for real."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.billing.conftest import FakeClock
from tests.limits.conftest import bearer
from tests.limits.test_in_process import LIMITS, registry
from tests.support.asgi import asgi_client
from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tests.support.redis import PrivateRedis, private_redis, wait_for_a_fresh_window
from tests.support.world import Member, World
from tollway.app import create_app
from tollway.limits.counters import Counter
from tollway.limits.redis_counters import RedisCounters
from tollway.settings import Settings


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


def counted(server: PrivateRedis) -> dict[str, int]:
    with server.client() as client:
        return {key.decode(): int(client.get(key) or 0) for key in client.scan_iter("tollway:rl:*")}


def evalsha_calls(server: PrivateRedis) -> int:
    """Scripts run through EVALSHA (not counting the first one's NOSCRIPT before loading)."""
    with server.client() as client:
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


async def test_concurrent_checks_never_exceed_the_limit(redis_server: PrivateRedis) -> None:
    with redis_server.client() as client:
        wait_for_a_fresh_window(client, needed_s=20)
    counters = RedisCounters(redis_server.url, timeout_s=5)
    try:
        both = [Counter("a:r", 37, 1), Counter("b:t", 10_000, 100)]
        decisions = await asyncio.gather(*(counters.check(both) for _ in range(300)))
    finally:
        await counters.close()
    admitted = [d for d in decisions if d.blocked is None]
    assert len(admitted) == 37
    assert sorted(d.used[0] for d in admitted) == list(range(1, 38))
    assert all(d.blocked == 0 for d in decisions if d.blocked is not None)
    counts = counted(redis_server)
    assert sorted(counts.values()) == [37, 3_700]  # refusals added nothing anywhere


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with running_mock() as url:
        yield url


@pytest.fixture
async def member(tmp_path: Path) -> AsyncIterator[tuple[World, Member]]:
    world = World(f"sqlite:///{tmp_path / 'rl.db'}")
    await world.migrate()
    alice = await world.member("alice", "p1", credits_eur="10")
    try:
        yield world, alice
    finally:
        await world.close()


async def test_redis_down_fails_open_to_the_process_then_recovers(
    tmp_path: Path,
    upstream: str,
    redis_server: PrivateRedis,
    member: tuple[World, Member],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, alice = member
    bob = await world.member("bob", "p2", credits_eur="10")
    path = write_registry(tmp_path / "registry.yaml", registry(upstream))
    settings = Settings(
        database_url=str(world.db.engine.url).replace("sqlite+aiosqlite", "sqlite"),
        providers=str(path),
        redis_url=redis_server.url,
    )
    # The process's own counters use this clock: fixed, so they stay in one window.
    app = create_app(settings, clock=FakeClock())
    body = {"model": "chat-rl", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}

    async def chat(api: httpx.AsyncClient, key: str) -> int:
        response = await api.post("/v1/chat/completions", json=body, headers=bearer(key))
        return response.status_code

    caplog.set_level(logging.INFO, logger="tollway.ratelimit")
    async with asgi_client(app) as api:
        # A project without limits never talks to Redis.
        assert await chat(api, bob.inference_key) == 200
        assert evalsha_calls(redis_server) == 0
        created = await api.post(
            LIMITS,
            json={"scope": "project", "requests_per_minute": 4},
            headers=bearer(alice.management_key),
        )
        assert created.status_code == 201
        assert [await chat(api, alice.inference_key) for _ in range(2)] == [200, 200]
        assert sum(counted(redis_server).values()) == 2  # counted in Redis, one call each
        assert evalsha_calls(redis_server) == 2

        redis_server.stop()
        statuses = [await chat(api, alice.inference_key) for _ in range(6)]
        # Fail open: this process's own counter starts from zero and enforces the limit.
        assert statuses == [200, 200, 200, 200, 429, 429]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()
        scrape = app.state.tollway.metrics.render().decode()
        assert "tollway_ratelimit_local_checks_total 6.0" in scrape

        redis_server.start()  # on the same port, empty (nothing was saved)
        await asyncio.sleep(2.2)  # the limiter's retry interval
        assert await chat(api, alice.inference_key) == 200
        assert sum(counted(redis_server).values()) == 1  # counted in Redis again
        assert any("Redis answers again" in r.getMessage() for r in caplog.records)
