"""`preference: speed` learns from every served call: a provider only ever called without
streaming competes fairly with one only ever streamed. The mocks' configured delays decide
who is faster, and they are far apart."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import World
from tollway.providers.mock_settings import MockSettings

log = logging.getLogger(__name__)

SAME_HINTS = {"ttft_ms": 500, "tokens_per_second": 50}


@dataclass(frozen=True)
class Env:
    base_url: str
    key: str

    async def chat(self, client: httpx.AsyncClient, **extra: Any) -> httpx.Response:
        response = await client.post(
            f"{self.base_url}/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], **extra},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert response.status_code == 200, response.text
        return response


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    def provider(slug: str, url: str) -> dict[str, Any]:
        return {"slug": slug, "name": slug, "base_url": url, "hints": SAME_HINTS}

    def endpoint(slug: str) -> dict[str, Any]:
        return {
            "provider": slug,
            "upstream_model": "mock-chat",
            "pricing": {"input_token": 1, "output_token": 1},
        }

    url = f"sqlite:///{tmp_path / 'gw.db'}"
    world = World(url)
    await world.migrate()
    member = await world.member("finn", "p1", credits_eur="1")
    with (
        running_mock(MockSettings()) as fast,  # answers at once
        # 600 ms to the first token, then 1000 tokens/s: far slower for any reply under
        # ~600 tokens, though its rate alone beats the 50 tokens/s hint `fast` starts with.
        running_mock(MockSettings(ttft_ms=600, tokens_per_second=1000)) as slow,
    ):
        document: dict[str, object] = {
            # `slow` first: on equal hints, ties go to it; `fast` must earn its place.
            "providers": [provider("slow", slow), provider("fast", fast)],
            "models": [
                {
                    "id": "chat",
                    "context_size": 4096,
                    "endpoints": [endpoint("slow"), endpoint("fast")],
                }
            ],
        }
        registry = write_registry(tmp_path / "registry.yaml", document)
        try:
            with running_gateway(url, registry) as (base_url, _):
                yield Env(base_url, member.inference_key)
        finally:
            await world.close()


async def test_speed_prefers_the_faster_provider_whether_it_streams_or_not(env: Env) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(3):
            await env.chat(client, allowed_providers=["fast"])  # never streamed
            async with client.stream(  # only ever streamed
                "POST",
                f"{env.base_url}/chat/completions",
                json={
                    "model": "chat",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": True,
                    "allowed_providers": ["slow"],
                },
                headers={"Authorization": f"Bearer {env.key}"},
            ) as response:
                assert response.status_code == 200
                assert (await response.aread()).rstrip().endswith(b"data: [DONE]")
        for _ in range(3):
            body = (await env.chat(client, preference="speed", include_metadata=True)).json()
            metadata = body["metadata"]
            scored = {
                c["provider"]: c["scoring_context"]
                for c in metadata["routing_trace"]["scored_candidates"]
            }
            log.info(
                "speed pick: %s; predicted ms: fast %.1f, slow %.1f; samples fast %d, slow %d",
                metadata["routing_results"]["selected_provider"],
                scored["fast"]["predicted_latency_ms"],
                scored["slow"]["predicted_latency_ms"],
                scored["fast"]["samples"],
                scored["slow"]["samples"],
            )
            assert scored["fast"]["samples"] >= 3 and scored["slow"]["samples"] == 3
            assert metadata["routing_results"]["selected_provider"] == "fast"
            assert scored["fast"]["predicted_latency_ms"] < scored["slow"]["predicted_latency_ms"]
