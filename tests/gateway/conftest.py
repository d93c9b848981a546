"""Three mock providers (fast, slow, failing) behind one registry, and a gateway before them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import Member, World
from tollway.providers.mock_settings import MockSettings


@dataclass(frozen=True)
class Mocks:
    fast: str
    slow: str
    failing: str


@pytest.fixture(scope="module")
def mocks() -> Iterator[Mocks]:
    with (
        running_mock(MockSettings()) as fast,
        running_mock(MockSettings(ttft_ms=20, tokens_per_second=400)) as slow,
        running_mock(MockSettings(error_rate=1.0, error_status=503)) as failing,
    ):
        yield Mocks(fast, slow, failing)


def registry_document(m: Mocks) -> dict[str, Any]:
    def provider(slug: str, url: str, *, eu: bool, zdr: bool, ttft: float) -> dict[str, Any]:
        return {
            "slug": slug,
            "name": slug,
            "base_url": url,
            "eu_native": eu,
            "zero_data_retention": zdr,
            "timeout_s": 5,
            "hints": {"ttft_ms": ttft, "tokens_per_second": 100},
        }

    def ep(provider: str, inp: float, out: float, **extra: Any) -> dict[str, Any]:
        return {
            "provider": provider,
            "upstream_model": extra.pop("upstream_model", "mock-chat"),
            "pricing": {"input_token": inp, "output_token": out},
            **extra,
        }

    return {
        "providers": [
            provider("eu-fast", m.fast, eu=True, zdr=True, ttft=50),
            provider("us-cheap", m.fast, eu=False, zdr=False, ttft=2000),
            provider("eu-quant", m.slow, eu=True, zdr=False, ttft=400),
            provider("eu-broken", m.failing, eu=True, zdr=True, ttft=10),
        ],
        "models": [
            {
                "id": "chat-a",
                "description": "three providers",
                "tags": ["Instruct"],
                "context_size": 4096,
                "fallback": ["chat-b"],
                "endpoints": [
                    ep("eu-fast", 0.5, 1.5),
                    ep("us-cheap", 0.1, 0.3),
                    ep("eu-quant", 0.2, 0.6, quantization="fp8"),
                ],
            },
            {
                "id": "chat-b",
                "tags": ["Instruct", "Small"],
                "context_size": 4096,
                "endpoints": [ep("eu-fast", 0.05, 0.15, upstream_model="mock-chat-small")],
            },
            {
                "id": "chat-flaky",
                "context_size": 4096,
                "fallback": ["chat-b"],
                "endpoints": [ep("eu-broken", 0.01, 0.01), ep("eu-quant", 0.3, 0.9)],
            },
            {
                "id": "chat-down",
                "context_size": 4096,
                "fallback": ["chat-b"],
                "endpoints": [ep("eu-broken", 0.01, 0.01)],
            },
            {
                "id": "chat-invalid",
                "context_size": 4096,
                "endpoints": [ep("eu-fast", 0.1, 0.1, upstream_model="x-mock-error-400")],
            },
            {
                "id": "chat-keyfail",
                "context_size": 4096,
                "endpoints": [
                    ep("eu-fast", 0.01, 0.01, upstream_model="x-mock-error-401"),
                    ep("us-cheap", 0.1, 0.3),
                ],
            },
            {
                "id": "chat-counted",
                "context_size": 4096,
                "endpoints": [ep("eu-fast", 0.05, 0.15, upstream_model="mock-no-usage")],
            },
            {
                "id": "chat-cut",
                "context_size": 4096,
                "endpoints": [ep("eu-fast", 0.05, 0.15, upstream_model="x-mock-cut-3")],
            },
            {
                "id": "chat-tiny",
                "context_size": 64,
                "endpoints": [ep("eu-fast", 0.1, 0.1)],
            },
            {
                "id": "embed-a",
                "kind": "embedding",
                "tags": ["Embedding"],
                "context_size": 8192,
                "endpoints": [
                    ep("eu-fast", 0.02, 0, upstream_model="mock-embed"),
                    ep("us-cheap", 0.01, 0, upstream_model="mock-embed"),
                ],
            },
        ],
    }


@dataclass
class GatewayEnv:
    base_url: str
    member: Member
    world: World
    mocks: Mocks

    def client(self, key: str | None = None, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=key or self.member.inference_key,
            max_retries=0,
            **kwargs,
        )

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def mgmt_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.member.management_key}"}


@pytest.fixture
async def sqlite_world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(f"sqlite:///{tmp_path / 'gw.db'}")
    await w.migrate()
    try:
        yield w
    finally:
        await w.close()


@pytest.fixture
async def gw(sqlite_world: World, mocks: Mocks, tmp_path: Path) -> AsyncIterator[GatewayEnv]:
    registry = write_registry(tmp_path / "registry.yaml", registry_document(mocks))
    member = await sqlite_world.member("alice", "p1", credits_eur="10")
    url = str(sqlite_world.db.engine.url).replace("sqlite+aiosqlite", "sqlite")
    with running_gateway(url, registry) as (base_url, _app):
        yield GatewayEnv(base_url, member, sqlite_world, mocks)


@pytest.fixture
async def gw_both(
    world: World, database_url: str, mocks: Mocks, tmp_path: Path
) -> AsyncIterator[GatewayEnv]:
    """`gw` on each backend (SQLite and PostgreSQL), for the tests that check money."""
    registry = write_registry(tmp_path / "registry.yaml", registry_document(mocks))
    member = await world.member("alice", "p1", credits_eur="10")
    with running_gateway(database_url, registry) as (base_url, _app):
        yield GatewayEnv(base_url, member, world, mocks)
