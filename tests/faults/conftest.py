"""The fault suite's harness: a mock upstream with every fault as a model, tenants with a
known balance, and the money invariant checked the same way after every fault."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tests.support.world import Member, World
from tollway.billing.verify import verify_ledger
from tollway.clock import system_clock
from tollway.errors import DatabaseUnavailable
from tollway.providers.mock_settings import MockSettings

BALANCE = 1_000_000  # credits (1 EUR): far more than any test spends
# Holds must be gone this long after the fault ends (the sweeper, the settlement retrier).
HOLDS_GONE_WITHIN_S = 15.0


def _endpoint(provider: str, upstream_model: str) -> dict[str, Any]:
    return {
        "provider": provider,
        "upstream_model": upstream_model,
        "pricing": {"input_token": 1, "output_token": 1},
    }


def registry(url: str) -> dict[str, Any]:
    """One model per fault, all on one mock process (the faults are hooks in the upstream
    model name, see `tollway.providers.mock`)."""
    models = {
        "chat": "mock-chat",
        "chat-slow": "mock-latency-2500",
        "chat-cut": "mock-cut-3",
        "chat-5xx": "x-mock-error-503",
        "chat-down": "x-mock-error-500",
    }
    document: dict[str, Any] = {
        "providers": [
            {"slug": "mock", "name": "mock", "base_url": url, "timeout_s": 30},
            {"slug": "mock-impatient", "name": "mock", "base_url": url, "timeout_s": 0.5},
        ],
        "models": [
            {"id": model, "context_size": 4096, "endpoints": [_endpoint("mock", upstream)]}
            for model, upstream in models.items()
        ],
    }
    document["models"].append(
        {
            "id": "chat-timeout",
            "context_size": 4096,
            "endpoints": [_endpoint("mock-impatient", "mock-latency-3000")],
        }
    )
    return document


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    # 4 tokens/s: a stream (16 tokens) lasts 4 s, much longer than a test needs to act
    # within it (leave after 5 chunks, stop the database after the first).
    with running_mock(MockSettings(tokens_per_second=4)) as url:
        yield url


@pytest.fixture
def registry_path(upstream_url: str, tmp_path: Path) -> Path:
    return write_registry(tmp_path / "registry.yaml", registry(upstream_url))


def chat(model: str = "chat", *, stream: bool = False, max_tokens: int = 200) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "tell me a long story"}],
        "max_tokens": max_tokens,
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
    }


async def funded(world: World) -> Member:
    return await world.member("alice", "p1", credits_eur=str(BALANCE / 1_000_000))


@dataclass(frozen=True)
class Books:
    """What the money looks like after a fault: the figures of the closing note."""

    balance_drop: int
    charged: int  # Σ charge ledger rows
    usage_events_cost: int
    usage_api_cost: int  # what GET /v1/manage/usage reports, in credits
    served: int  # usage events other than "aborted"
    holds: int
    holds_gone_after_s: float


async def _retrying(world: World, sql: str) -> Any:
    """One value; a pool's connections from before an outage fail once each."""
    deadline = time.monotonic() + HOLDS_GONE_WITHIN_S
    while True:
        try:
            async with world.db.read() as conn:
                return (await conn.execute(text(sql))).scalar_one()
        except DatabaseUnavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def open_holds(world: World) -> int:
    return int(await _retrying(world, "SELECT count(*) FROM reservations"))


async def wait_for_holds(world: World, expected: int, timeout_s: float) -> float:
    started = time.monotonic()
    seen = []
    while (held := await open_holds(world)) != expected:
        seen.append(held)
        assert time.monotonic() - started < timeout_s, (
            f"{held} reservation(s) held, not {expected}: {seen[-50:]}"
        )
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def check_books(world: World, member: Member, root: str, fault: str) -> Books:
    """Wait (bounded) for every hold to go, then assert the money invariant: balance drop =
    Σ charges = Σ usage events = what the usage API reports, and `ledger verify` passes."""
    gone_after = await wait_for_holds(world, 0, HOLDS_GONE_WITHIN_S)
    balance = int(
        await _retrying(world, f"SELECT balance_credits FROM users WHERE id = '{member.user_id}'")
    )
    charged = -int(
        await _retrying(
            world, "SELECT coalesce(sum(amount_credits), 0) FROM ledger WHERE kind = 'charge'"
        )
    )
    events_cost = int(
        await _retrying(world, "SELECT coalesce(sum(cost_credits), 0) FROM usage_events")
    )
    served = int(
        await _retrying(world, "SELECT count(*) FROM usage_events WHERE status != 'aborted'")
    )
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"{root}/v1/manage/usage",
            params={"bucket": "1Y", "from": "2000-01-01T00:00:00Z"},
            headers={"Authorization": f"Bearer {member.management_key}"},
        )
    assert response.status_code == 200, response.text
    api_cost = sum(round(row["cost"] * 1_000_000) for row in response.json()["rows"])
    books = Books(
        balance_drop=BALANCE - balance,
        charged=charged,
        usage_events_cost=events_cost,
        usage_api_cost=api_cost,
        served=served,
        holds=0,
        holds_gone_after_s=round(gone_after, 2),
    )
    assert books.balance_drop == books.charged == books.usage_events_cost == books.usage_api_cost
    report = await verify_ledger(world.db, system_clock, stale_s=20, max_age_s=900)
    assert report.ok, report.problems
    backend = "sqlite" if world.db.is_sqlite else "postgres"
    print(f"\nBOOKS {fault} / {backend}: {books}")  # the closing note's figures (pytest -s)
    return books
