"""Rate limits counted in one process (no Redis), through the real gateway and a real mock
upstream on SQLite: what is admitted, what is refused and how, when a window resets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.billing.conftest import FakeClock
from tests.limits.conftest import bearer
from tests.support.asgi import asgi_client
from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tests.support.world import Member, World
from tollway.app import create_app
from tollway.audit.actor import CLI
from tollway.settings import Settings

LIMITS = "/v1/manage/rate-limits"


def registry(url: str) -> dict[str, Any]:
    return {
        "providers": [{"slug": "mock", "name": "mock", "base_url": url, "timeout_s": 30}],
        "models": [
            {
                "id": "chat-rl",
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": "mock",
                        "upstream_model": "mock-chat",
                        "pricing": {"input_token": 1, "output_token": 1},
                    }
                ],
            }
        ],
    }


@dataclass
class Env:
    api: httpx.AsyncClient
    world: World
    alice: Member
    clock: FakeClock

    async def limit(self, **body: Any) -> str:
        response = await self.api.post(LIMITS, json=body, headers=bearer(self.alice.management_key))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def chat(
        self, key: str | None = None, *, max_tokens: int = 20, stream: bool = False
    ) -> httpx.Response:
        return await self.api.post(
            "/v1/chat/completions",
            json={
                "model": "chat-rl",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": max_tokens,
                "stream": stream,
            },
            headers=bearer(key or self.alice.inference_key),
        )

    async def served(self) -> int:
        # A Management API read commits the process's credit-lease charges first.
        await self.api.get("/v1/user/balance", headers=bearer(self.alice.management_key))
        async with self.world.db.read() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM usage_events"))).scalar_one())


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with running_mock() as url:
        yield url


@pytest.fixture
async def env(tmp_path: Path, upstream: str, clock: FakeClock) -> AsyncIterator[Env]:
    url = f"sqlite:///{tmp_path / 'rl.db'}"
    world = World(url)
    await world.migrate()
    alice = await world.member("alice", "p1", credits_eur="10")
    path = write_registry(tmp_path / "registry.yaml", registry(upstream))
    app = create_app(Settings(database_url=url, providers=str(path)), clock=clock)
    try:
        async with asgi_client(app) as api:
            yield Env(api, world, alice, clock)
    finally:
        await world.close()


async def test_requests_per_minute_admits_the_limit_then_429_until_the_window_resets(
    env: Env,
) -> None:
    env.clock.now = 1_741_600_800 + 15  # 15 s into a minute: 45 s to the next window
    await env.limit(scope="project", requests_per_minute=3)
    for remaining in (2, 1, 0):
        ok = await env.chat()
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == str(remaining)
        assert ok.headers["x-ratelimit-reset-requests"] == "45s"
    refused = await env.chat()
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "45"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers.get("x-should-retry") != "false"
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_exceeded"
    assert "3 requests per minute" in error["message"]
    assert await env.served() == 3  # the refused one was neither served nor charged

    env.clock.advance(44)  # still the same window
    assert (await env.chat()).status_code == 429
    env.clock.advance(1)  # the next minute
    again = await env.chat()
    assert again.status_code == 200
    assert again.headers["x-ratelimit-remaining-requests"] == "2"
    assert await env.served() == 4


async def test_tokens_per_minute_count_the_request_s_bound(env: Env) -> None:
    await env.limit(scope="each_key", tokens_per_minute=100)
    first = await env.chat(max_tokens=30)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "100"
    cost = 100 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert cost >= 30  # the prompt estimate plus max_tokens
    assert "x-ratelimit-limit-requests" not in first.headers
    admitted = 1
    while (await env.chat(max_tokens=30)).status_code == 200:
        admitted += 1
    assert admitted == 100 // cost
    # each_key: another key of the project has its own counter
    other = await env.world.keys.create(
        actor=CLI,
        user_id=env.alice.user_id,
        project_id=env.alice.project_id,
        name="k2",
        is_management=False,
    )
    assert (await env.chat(other.api_key, max_tokens=30)).status_code == 200
    # a request that could never fit is a 400 naming max_tokens, not a 429 to retry forever
    too_big = await env.chat(other.api_key, max_tokens=200)
    assert too_big.status_code == 400
    assert too_big.json()["error"]["param"] == "max_tokens"


async def test_user_limit_applies_to_that_user_only_and_streams_carry_the_headers(
    env: Env,
) -> None:
    bob = await env.world.member("bob", "p1", role="member", credits_eur="1")
    await env.limit(scope="user", requests_per_minute=1, user_id=bob.user_id)
    assert (await env.chat(bob.inference_key, stream=True)).status_code == 200
    refused = await env.chat(bob.inference_key, stream=True)
    assert refused.status_code == 429
    streamed = await env.chat(stream=True)  # alice: no limit applies
    assert streamed.status_code == 200
    assert "x-ratelimit-limit-requests" not in streamed.headers


async def test_a_change_through_the_same_process_applies_at_once(env: Env) -> None:
    limit_id = await env.limit(scope="key", requests_per_minute=1, key_name="p1-inf")
    streamed = await env.chat(stream=True)
    assert streamed.status_code == 200
    assert streamed.headers["x-ratelimit-remaining-requests"] == "0"
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert (await env.chat()).status_code == 429
    deleted = await env.api.request(
        "DELETE", LIMITS, json={"id": limit_id}, headers=bearer(env.alice.management_key)
    )
    assert deleted.status_code == 200
    freed = await env.chat()
    assert freed.status_code == 200
    assert not any(h.startswith("x-ratelimit") for h in freed.headers)


async def test_every_applicable_limit_must_fit_and_a_refusal_counts_nothing(env: Env) -> None:
    await env.limit(scope="project", requests_per_minute=3)
    await env.limit(scope="key", requests_per_minute=1, key_name="p1-inf")
    other = await env.world.keys.create(
        actor=CLI,
        user_id=env.alice.user_id,
        project_id=env.alice.project_id,
        name="k2",
        is_management=False,
    )
    assert (await env.chat()).status_code == 200  # project 1/3, key 1/1
    for _ in range(3):  # refused by the key limit: the project counter must not move
        assert (await env.chat()).status_code == 429
    ok = await env.chat(other.api_key)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"  # project: 2 of 3 used
    assert (await env.chat(other.api_key)).status_code == 200
    assert (await env.chat(other.api_key)).status_code == 429


async def test_anthropic_messages_share_the_limits_and_get_their_own_error_shape(
    env: Env,
) -> None:
    await env.limit(scope="project", requests_per_minute=2)
    body = {
        "model": "chat-rl",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"x-api-key": env.alice.inference_key, "anthropic-version": "2023-06-01"}
    first = await env.api.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await env.chat()).status_code == 200  # the same counter as chat completions
    refused = await env.api.post("/v1/messages", json=body, headers=headers)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "rate_limit_error"


async def test_token_counts_are_limited_in_counters_of_their_own(env: Env) -> None:
    """`POST /v1/messages/count_tokens` is free but not unlimited: each limit's requests per
    minute apply to it, counted apart from inference (a client counting its prompts does not
    use up what it may send), and tokens per minute do not."""
    await env.limit(scope="project", requests_per_minute=2, tokens_per_minute=10_000)
    body = {"model": "chat-rl", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": env.alice.inference_key, "anthropic-version": "2023-06-01"}
    counted = [
        await env.api.post("/v1/messages/count_tokens", json=body, headers=headers)
        for _ in range(2)
    ]
    assert [r.status_code for r in counted] == [200, 200], counted[0].text
    assert counted[1].headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in counted[1].headers
    refused = await env.api.post("/v1/messages/count_tokens", json=body, headers=headers)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert "2 token counts per minute" in refused.json()["error"]["message"]
    # Inference's own counters are untouched: both requests of the minute are still there.
    first = await env.chat()
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await env.chat()).status_code == 200
    assert (await env.chat()).status_code == 429
    env.clock.advance(60)  # the next window: counting is admitted again
    again = await env.api.post("/v1/messages/count_tokens", json=body, headers=headers)
    assert again.status_code == 200
