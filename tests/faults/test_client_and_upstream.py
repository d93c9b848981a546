"""Clients that leave mid-stream and upstreams that fail: every request is charged exactly
what it was served, and no credit stays held. Both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.faults.conftest import chat, check_books, funded, open_holds, wait_for_holds
from tests.support.gateway import running_gateway
from tests.support.world import World

STREAMS = 12


@pytest.fixture
def gateway(database_url: str, registry_path: Path) -> Iterator[str]:
    with running_gateway(database_url, registry_path) as (base_url, _app):
        yield base_url.removesuffix("/v1")


async def test_clients_that_leave_mid_stream_are_charged_what_streamed(
    world: World, gateway: str
) -> None:
    alice = await funded(world)
    headers = {"Authorization": f"Bearer {alice.inference_key}"}
    async with httpx.AsyncClient(timeout=30) as client:

        async def leave_after_five_chunks() -> None:
            request = client.build_request(
                "POST", f"{gateway}/v1/chat/completions", json=chat(stream=True), headers=headers
            )
            response = await client.send(request, stream=True)
            assert response.status_code == 200
            chunks = 0
            async for line in response.aiter_lines():
                chunks += line.startswith("data: ")
                if chunks == 5:
                    break
            await response.aclose()  # the client goes away

        await asyncio.gather(*(leave_after_five_chunks() for _ in range(STREAMS)))
    books = await check_books(world, alice, gateway, "client-disconnect")
    async with world.db.read() as conn:
        rows = (
            await conn.execute(
                text("SELECT status, completion_tokens, cost_credits FROM usage_events")
            )
        ).all()
    assert len(rows) == STREAMS
    for status, completion, cost in rows:
        assert status == "client_disconnected"
        assert 5 <= completion < 16  # what streamed before it left, not the whole reply
        assert cost > 0
    assert books.served == STREAMS


async def test_upstream_errors_timeouts_and_cut_streams_charge_only_what_was_served(
    world: World, gateway: str
) -> None:
    alice = await funded(world)
    headers = {"Authorization": f"Bearer {alice.inference_key}"}
    url = f"{gateway}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=30) as client:
        failed = await asyncio.gather(
            client.post(url, json=chat("chat-5xx"), headers=headers),
            client.post(url, json=chat("chat-5xx", stream=True), headers=headers),
            client.post(url, json=chat("chat-down"), headers=headers),
            client.post(url, json=chat("chat-timeout"), headers=headers),
            client.post(url, json=chat("chat-timeout", stream=True), headers=headers),
        )
        cut = await asyncio.gather(
            *(
                client.post(url, json=chat("chat-cut", stream=True), headers=headers)
                for _ in range(4)
            )
        )
    # Nothing served: a clean error in the OpenAI shape, nothing charged. (Which 5xx an
    # upstream 500 maps to is the upstream client's business, not this suite's.)
    statuses = [r.status_code for r in failed]
    assert statuses[:2] == [503, 503] and statuses[2] >= 500 and statuses[3:] == [504, 504]
    for response in failed:
        assert response.json()["error"]["code"] == "upstream_error"
    # Cut after 3 chunks: the client gets the 3 chunks and an error event, and pays for them.
    for response in cut:
        assert response.status_code == 200
        assert response.text.count('"content"') == 3
        assert '"upstream_error"' in response.text
    books = await check_books(world, alice, gateway, "upstream-5xx-timeout-cut")
    async with world.db.read() as conn:
        rows = (
            await conn.execute(text("SELECT status, completion_tokens FROM usage_events"))
        ).all()
    assert sorted(tuple(r) for r in rows) == [("error", 3)] * 4
    assert books.served == 4 and books.charged > 0
    assert await open_holds(world) == 0
    await wait_for_holds(world, 0, 1)
