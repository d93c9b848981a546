"""One shared limit across two real `tollway serve` replicas on one PostgreSQL database and
one Redis: under concurrent clients, what is admitted never exceeds the limit in a window."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import text

from tests.limits.conftest import bearer
from tests.limits.test_in_process import LIMITS, registry
from tests.support.databases import postgres_database
from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tests.support.processes import serve_process
from tests.support.redis import seconds_into_minute, shared_redis_url, wait_for_a_fresh_window
from tests.support.world import Member, World
from tollway.providers.mock_settings import MockSettings

METRICS_TOKEN = "rate-limit-test-token"
LIMIT = 25
REQUESTS = 160
TOKENS_LIMIT = 2_000


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Path]:
    with running_mock(MockSettings(tokens_per_second=200)) as url:
        yield write_registry(tmp_path / "registry.yaml", registry(url))


async def local_checks(client: httpx.AsyncClient, root: str) -> float:
    """How many checks this replica counted in process (Redis unreachable or too slow)."""
    scrape = await client.get(
        root + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert scrape.status_code == 200
    for line in scrape.text.splitlines():
        if line.startswith("tollway_ratelimit_local_checks_total "):
            return float(line.split()[1])
    raise AssertionError("no tollway_ratelimit_local_checks_total in the scrape")


def minute_of(client: redis.Redis) -> int:
    seconds, _ = client.time()
    return int(seconds) // 60


async def burst(
    client: httpx.AsyncClient, a: str, b: str, alice: Member, clock: redis.Redis
) -> tuple[list[httpx.Response], bool, int]:
    for root in (a, b):  # warm both replicas (connections, caches) with the same tenant
        warm = await client.post(
            root + "/v1/chat/completions",
            json={"model": "chat-rl", "messages": [{"role": "user", "content": "hi"}]},
            headers=bearer(alice.inference_key),
        )
        assert warm.status_code == 200, warm.text
    # Created through replica a; b reads it within its cache's 1 s.
    for body in (
        {"scope": "project", "requests_per_minute": LIMIT},
        {"scope": "each_key", "tokens_per_minute": TOKENS_LIMIT},
    ):
        created = await client.post(a + LIMITS, json=body, headers=bearer(alice.management_key))
        assert created.status_code == 201, created.text
    await asyncio.sleep(1.2)
    wait_for_a_fresh_window(clock, needed_s=25)
    window = minute_of(clock)

    async def one(i: int) -> httpx.Response:
        return await client.post(
            (a, b)[i % 2] + "/v1/chat/completions",
            json={
                "model": "chat-rl",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 10,
                "stream": i % 3 == 0,
            },
            headers=bearer(alice.inference_key),
        )

    responses = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    same_window = minute_of(clock) == window
    into = seconds_into_minute(clock)
    return responses, same_window, into


async def test_two_replicas_never_admit_more_than_the_shared_limit(upstream: Path) -> None:
    redis_url = shared_redis_url()
    async with postgres_database() as database_url:
        world = World(database_url)
        try:
            await world.migrate()
            alice = await world.member("alice", "p1", credits_eur="100")
            env = {
                "TOLLWAY_PROVIDERS": str(upstream),
                "TOLLWAY_REDIS_URL": redis_url,
                "TOLLWAY_METRICS_TOKEN": METRICS_TOKEN,
                # Exactness holds while Redis answers; on a machine this busy, give it time
                # to (the fallback after a timeout is tested in test_redis.py).
                "TOLLWAY_REDIS_TIMEOUT_S": "10",
            }
            with (
                serve_process(database_url, **env) as (a, _),
                serve_process(database_url, **env) as (b, _),
                redis.Redis.from_url(redis_url) as clock,
            ):
                limits = httpx.Limits(max_connections=REQUESTS)
                async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                    responses, same_window, into = await burst(client, a, b, alice, clock)
                    fallbacks = [await local_checks(client, root) for root in (a, b)]
        finally:
            async with world.db.read() as conn:
                served = int(
                    (await conn.execute(text("SELECT count(*) FROM usage_events"))).scalar_one()
                )
            await world.close()

    statuses = [r.status_code for r in responses]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    assert admitted + 2 == served  # nothing refused was served or charged (2: the warm-up)
    by_replica = [
        sum(1 for i, r in enumerate(responses) if i % 2 == k and r.status_code == 200)
        for k in (0, 1)
    ]
    print(
        f"\nrate limit across 2 replicas: {REQUESTS} concurrent requests, limit {LIMIT}/min: "
        f"admitted {admitted} (replica a {by_replica[0]}, b {by_replica[1]}), "
        f"refused {statuses.count(429)}; burst ended {into} s into the minute"
    )
    assert fallbacks == [0, 0], f"checks counted in process, not in Redis: {fallbacks}"
    assert same_window, "the burst crossed a minute boundary despite waiting for a fresh one"
    assert admitted == LIMIT  # never more, and no fewer: a limit is a promise both ways
    # Each replica got REQUESTS / 2 > LIMIT requests and refused some: on its own it would
    # have admitted LIMIT, so admitting LIMIT in all means one counter shared by both.
    for k in (0, 1):
        assert any(r.status_code == 429 for i, r in enumerate(responses) if i % 2 == k)
    for r in responses:
        if r.status_code == 429:
            assert r.headers["x-ratelimit-limit-requests"] == str(LIMIT)
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
            assert 1 <= int(r.headers["retry-after"]) <= 60
        else:
            assert r.headers["x-ratelimit-limit-tokens"] == str(TOKENS_LIMIT)
    remaining = sorted(
        int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200
    )
    assert remaining == list(range(LIMIT))  # each admission saw its own count: no double use
