from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.gateway.conftest import GatewayEnv
from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock, wait_for_mock_stats
from tests.support.world import World
from tollway.providers.mock_settings import MockSettings

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "stream me a reply please"}
]


async def test_stream_matches_non_stream_and_carries_usage(gw: GatewayEnv) -> None:
    client = gw.client()
    whole = await client.chat.completions.create(model="chat-b", messages=MESSAGES)
    stream = await client.chat.completions.create(
        model="chat-b", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    usage = None
    chunks = 0
    async for chunk in stream:
        chunks += 1
        assert chunk.model == "chat-b"
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    assert chunks > 3  # relayed chunk by chunk, not as one buffered blob
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert usage.prompt_tokens == whole.usage.prompt_tokens
    assert usage.completion_tokens == whole.usage.completion_tokens


async def test_stream_without_include_usage_sends_no_usage(gw: GatewayEnv) -> None:
    stream = await gw.client().chat.completions.create(
        model="chat-b", messages=MESSAGES, stream=True
    )
    async for chunk in stream:
        assert chunk.usage is None


async def test_stream_metadata_on_final_chunk(gw: GatewayEnv) -> None:
    async with httpx.AsyncClient() as client:
        async with client.stream(
            "POST",
            f"{gw.base_url}/chat/completions",
            json={
                "model": "chat-a",
                "messages": MESSAGES,
                "stream": True,
                "include_metadata": True,
            },
            headers={"Authorization": f"Bearer {gw.member.inference_key}"},
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    import orjson

    final = orjson.loads(lines[-2][6:])
    assert final["choices"] == []
    assert final["metadata"]["model_used"] == "chat-a"
    assert final["metadata"]["routing_results"]["cost"]["total_cost"] > 0
    others = [orjson.loads(line[6:]) for line in lines[:-2]]
    assert all("metadata" not in chunk for chunk in others)
    assert all(chunk["provider"] == final["provider"] for chunk in others)


@pytest.fixture
async def slow_stream_gateway(tmp_path: Path) -> AsyncIterator[tuple[str, str, str]]:
    world = World(f"sqlite:///{tmp_path / 'slow.db'}")
    await world.migrate()
    member = await world.member("carol", "slow", credits_eur="5")
    with running_mock(MockSettings(tokens_per_second=20)) as upstream:
        registry = write_registry(
            tmp_path / "slow.yaml",
            {
                "providers": [{"slug": "slow", "name": "slow", "base_url": upstream}],
                "models": [
                    {
                        "id": "slow-chat",
                        "context_size": 4096,
                        "endpoints": [
                            {
                                "provider": "slow",
                                "upstream_model": "mock-chat",
                                "pricing": {"input_token": 1, "output_token": 1},
                            }
                        ],
                    }
                ],
            },
        )
        url = f"sqlite:///{tmp_path / 'slow.db'}"
        with running_gateway(url, registry) as (base_url, _):
            yield base_url, member.inference_key, upstream
    await world.close()


async def test_client_disconnect_closes_the_upstream_stream(
    slow_stream_gateway: tuple[str, str, str],
) -> None:
    base_url, key, upstream = slow_stream_gateway
    async with httpx.AsyncClient() as client:
        async with client.stream(
            "POST",
            f"{base_url}/chat/completions",
            json={"model": "slow-chat", "messages": MESSAGES, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            lines = response.aiter_lines()
            first = await anext(lines)
            assert first.startswith("data: ")
        # Leaving the block closes the connection mid-stream (16 words at 20 tokens/s).
    stats = await asyncio.to_thread(wait_for_mock_stats, upstream, "aborted_streams", 1)
    assert stats["aborted_streams"] == 1
    assert stats["completed_streams"] == 0
    assert stats["open_streams"] == 0
