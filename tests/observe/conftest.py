"""Fixtures of the observability tests: real mock upstreams and real gateways on real
databases (both backends), for the request log, the log lines, metrics and tracing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import Mocks, registry_document
from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import Member, World
from tollway.providers.mock_settings import MockSettings


@pytest.fixture(scope="module")
def observed_mocks() -> Iterator[Mocks]:
    """The gateway tests' three upstreams: fast, slow, and always failing (503)."""
    with (
        running_mock(MockSettings()) as fast,
        running_mock(MockSettings(ttft_ms=20, tokens_per_second=400)) as slow,
        running_mock(MockSettings(error_rate=1.0, error_status=503)) as failing,
    ):
        yield Mocks(fast, slow, failing)


@pytest.fixture
def registry_path(observed_mocks: Mocks, tmp_path: Path) -> Path:
    return write_registry(tmp_path / "registry.yaml", registry_document(observed_mocks))


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Scrape:
    """Every sample of a scrape: (name, labels) → value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(scrape: Scrape, name: str, **labels: str) -> float:
    """The sum of one metric's samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and wanted <= ls)


# -- the request log and the log lines: upstreams that serve, fail, crawl or break off


@dataclass(frozen=True)
class Upstreams:
    good: str
    broken: str
    slow: str  # 50 tokens/s
    cut: str  # streams break after 3 chunks


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with (
        running_mock(MockSettings()) as good,
        running_mock(MockSettings(error_rate=1.0, error_status=503)) as broken,
        running_mock(MockSettings(tokens_per_second=50)) as slow,
        running_mock(MockSettings(cut_stream_after=3)) as cut,
    ):
        yield Upstreams(good, broken, slow, cut)


def request_log_registry(u: Upstreams) -> dict[str, Any]:
    def provider(slug: str, url: str, ttft: float) -> dict[str, Any]:
        return {
            "slug": slug,
            "name": slug,
            "base_url": url,
            "eu_native": True,
            "zero_data_retention": True,
            "timeout_s": 5,
            "hints": {"ttft_ms": ttft, "tokens_per_second": 100},
        }

    def ep(provider: str, upstream_model: str = "mock-chat") -> dict[str, Any]:
        return {
            "provider": provider,
            "upstream_model": upstream_model,
            "pricing": {"input_token": 1, "output_token": 2},
        }

    return {
        "providers": [
            provider("broken", u.broken, 10),
            provider("good", u.good, 2000),
            provider("slow", u.slow, 2000),
            provider("cut", u.cut, 2000),
        ],
        "models": [
            {"id": "m-good", "context_size": 4096, "endpoints": [ep("good")]},
            # "broken" ranks first (by its hints) and fails: "good" serves.
            {"id": "m-flaky", "context_size": 4096, "endpoints": [ep("broken"), ep("good")]},
            {"id": "m-down", "context_size": 4096, "endpoints": [ep("broken")]},
            {"id": "m-slow", "context_size": 4096, "endpoints": [ep("slow")]},
            {"id": "m-cut", "context_size": 4096, "endpoints": [ep("cut")]},
            {
                "id": "m-embed",
                "kind": "embedding",
                "context_size": 4096,
                "endpoints": [ep("good", "mock-embed")],
            },
        ],
    }


@dataclass
class Env:
    root: str
    app: FastAPI
    world: World
    alice: Member  # admin of p1
    bob: Member  # member of p1
    carol: Member  # admin of p2

    async def chat(self, who: Member, model: str = "m-good", **extra: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(
                f"{self.root}/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
                headers={"Authorization": f"Bearer {who.inference_key}"},
            )

    async def manage(self, who: Member, path: str, **params: Any) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(
                f"{self.root}/v1/manage/{path}",
                params=params,
                headers={"Authorization": f"Bearer {who.management_key}"},
            )

    async def wait_for_rows(self, who: Member, count: int, **params: Any) -> list[dict[str, Any]]:
        """The writer flushes in the background: poll until `count` rows are visible."""
        deadline = time.monotonic() + 10
        while True:
            response = await self.manage(who, "requests", limit=200, **params)
            assert response.status_code == 200, response.text
            rows: list[dict[str, Any]] = response.json()["requests"]
            if len(rows) >= count or time.monotonic() > deadline:
                assert len(rows) == count, rows
                return rows
            await asyncio.sleep(0.05)


async def make_env(
    world: World, upstreams: Upstreams, tmp_path: Path, **settings: object
) -> AsyncIterator[Env]:
    registry = write_registry(tmp_path / "registry.yaml", request_log_registry(upstreams))
    alice = await world.member("alice", "p1", role="admin", credits_eur="10")
    bob = await world.member("bob", "p1", role="member", credits_eur="10")
    carol = await world.member("carol", "p2", role="admin", credits_eur="10")
    url = str(world.db.engine.url.render_as_string(hide_password=False))
    url = url.replace("sqlite+aiosqlite", "sqlite").replace("postgresql+asyncpg", "postgresql")
    with running_gateway(url, registry, **settings) as (base_url, app):
        yield Env(base_url.removesuffix("/v1"), app, world, alice, bob, carol)


@pytest.fixture
async def env(world: World, upstreams: Upstreams, tmp_path: Path) -> AsyncIterator[Env]:
    async for e in make_env(world, upstreams, tmp_path, request_log_flush_ms=10):
        yield e
