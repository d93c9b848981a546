"""A gateway in front of one mock provider, with a model whose context fits what coding
agents send (tens of kilobytes of instructions and tool schemas), for the real clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import Member, World

AGENT_MODEL = "tollway-demo-chat"


@dataclass(frozen=True)
class AgentGateway:
    base_url: str  # ends in /v1
    member: Member
    world: World
    mock: str  # the mock provider's base URL

    @property
    def key(self) -> str:
        return self.member.inference_key


@asynccontextmanager
async def serving_agents(database_url: str, tmp_path: Path) -> AsyncIterator[AgentGateway]:
    """A gateway on `database_url` in front of one mock, with AGENT_MODEL on it."""
    world = World(database_url)
    await world.migrate()
    member = await world.member("dev", "agents", credits_eur="10")
    with running_mock() as mock:
        registry = write_registry(
            tmp_path / "agents.yaml",
            {
                "providers": [{"slug": "mock", "name": "mock", "base_url": mock}],
                "models": [
                    {
                        "id": AGENT_MODEL,
                        "context_size": 200_000,
                        "endpoints": [
                            {
                                "provider": "mock",
                                "upstream_model": "demo-chat",
                                "pricing": {"input_token": 0.2, "output_token": 0.6},
                            }
                        ],
                    }
                ],
            },
        )
        try:
            with running_gateway(database_url, registry) as (base_url, _app):
                yield AgentGateway(base_url, member, world, mock)
        finally:
            await world.close()


@pytest.fixture
async def agent_gateway(tmp_path: Path) -> AsyncIterator[AgentGateway]:
    async with serving_agents(f"sqlite:///{tmp_path / 'agents.db'}", tmp_path) as gateway:
        yield gateway
