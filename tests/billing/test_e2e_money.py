"""Money end to end: real `tollway serve` processes, a real mock upstream, a real database."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.billing.conftest import assert_invariant, balance_of, open_reservations
from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tests.support.processes import serve_process, tollway
from tests.support.world import Member, World
from tollway.audit.actor import CLI
from tollway.providers.mock_settings import MockSettings

BALANCE = 3_000  # credits: a handful of the requests below


def registry(url: str) -> dict[str, Any]:
    return {
        "providers": [{"slug": "mock", "name": "mock", "base_url": url, "timeout_s": 30}],
        "models": [
            {
                "id": "chat-e2e",
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


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Path]:
    with running_mock(MockSettings(tokens_per_second=50)) as url:
        yield write_registry(tmp_path / "registry.yaml", registry(url))


async def funded(world: World) -> Member:
    alice = await world.member("alice", "p1")
    await world.accounts.add_credits(actor=CLI, user="alice", amount_eur=str(BALANCE / 1_000_000))
    return alice


def chat(stream: bool = False) -> dict[str, Any]:
    return {
        "model": "chat-e2e",
        "messages": [{"role": "user", "content": "tell me a story"}],
        "max_tokens": 100,
        "stream": stream,
    }


async def test_two_hundred_concurrent_requests_on_two_replicas_never_overdraw(
    world: World, database_url: str, upstream: Path
) -> None:
    alice = await funded(world)
    env = {"TOLLWAY_PROVIDERS": str(upstream)}
    with serve_process(database_url, **env) as (a, _), serve_process(database_url, **env) as (b, _):
        headers = {"Authorization": f"Bearer {alice.inference_key}"}
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:

            async def one(i: int) -> httpx.Response:
                root = (a, b)[i % 2]
                return await client.post(
                    f"{root}/v1/chat/completions", json=chat(stream=i % 3 == 0), headers=headers
                )

            responses = await asyncio.gather(*(one(i) for i in range(200)))
            statuses = [r.status_code for r in responses]
            others = [r.text[:300] for r in responses if r.status_code not in (200, 402)]
            assert set(statuses) <= {200, 402}, others
            assert 200 in statuses and 402 in statuses
            usage = await client.get(
                f"{a}/v1/manage/usage",
                params={"bucket": "1Y", "from": "2000-01-01T00:00:00Z"},
                headers={"Authorization": f"Bearer {alice.management_key}"},
            )
    balance = await balance_of(world.db, alice.user_id)
    assert balance >= 0
    assert await open_reservations(world.db) == 0
    async with world.db.read() as conn:
        charged, served = (
            await conn.execute(text("SELECT sum(cost_credits), count(*) FROM usage_events"))
        ).one()
    assert int(charged) == BALANCE - balance
    assert int(served) == statuses.count(200)
    [row] = usage.json()["rows"]
    assert round(row["cost"] * 1_000_000) == BALANCE - balance
    assert row["requests"] == statuses.count(200)
    await assert_invariant(world.db)


async def test_a_killed_gateway_s_reservation_is_released_by_the_next_one(
    world: World, database_url: str, upstream: Path
) -> None:
    alice = await funded(world)
    env = {
        "TOLLWAY_PROVIDERS": str(upstream),
        "TOLLWAY_HEARTBEAT_S": "0.2",
        "TOLLWAY_RESERVATION_STALE_S": "1",
    }
    headers = {"Authorization": f"Bearer {alice.inference_key}"}
    with serve_process(database_url, **env) as (root, process):
        async with httpx.AsyncClient(timeout=30) as client:
            request = client.build_request(
                "POST", f"{root}/v1/chat/completions", json=chat(stream=True), headers=headers
            )
            response = await client.send(request, stream=True)
            assert response.status_code == 200
            chunks = response.aiter_bytes()
            await anext(chunks)  # streaming: the reservation is held
            assert await open_reservations(world.db) == 1
            assert await balance_of(world.db, alice.user_id) < BALANCE
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            await response.aclose()
    assert await open_reservations(world.db) == 1  # nobody released it: the process died

    with serve_process(database_url, **env):
        for _ in range(200):  # the new gateway sweeps every 0.2 s; wait up to 20 s
            if not await open_reservations(world.db):
                break
            await asyncio.sleep(0.1)
    assert await open_reservations(world.db) == 0
    assert await balance_of(world.db, alice.user_id) == BALANCE
    await assert_invariant(world.db)
    verified = await asyncio.to_thread(tollway, "ledger", "verify", database_url=database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
