"""One tenant cannot take a model down for every tenant: a project's own slow requests open
at most its own circuit; a provider that is really down opens the shared one (and every 503
says when to come back)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.broken_upstream import behaved_upstream, generating, hanging, refused_url
from tests.support.gateway import running_gateway, write_registry
from tests.support.world import World
from tollway.gateway.blame import SMALL_PROMPT_TOKENS
from tollway.gateway.health import HealthBook


def document(url: str, *, timeout_s: float) -> dict[str, Any]:
    return {
        "providers": [
            {
                "slug": "solo",
                "name": "solo",
                "base_url": url,
                "timeout_s": timeout_s,
                "connect_timeout_s": 1,
                # 1 ms per token: a 100-token answer is predicted well inside the timeout.
                "hints": {"ttft_ms": 5, "tokens_per_second": 1000},
            }
        ],
        "models": [
            {
                "id": "only",
                "context_size": 100_000,
                "endpoints": [
                    {
                        "provider": "solo",
                        "upstream_model": "m",
                        "pricing": {"input_token": 0.01, "output_token": 0.01},
                    }
                ],
            }
        ],
    }


@contextmanager
def gateway(database_url: str, tmp_path: Path, url: str, timeout_s: float) -> Iterator[str]:
    registry = write_registry(tmp_path / "registry.yaml", document(url, timeout_s=timeout_s))
    with running_gateway(database_url, registry, circuit_cooldown_s=30.0) as (base_url, _):
        yield base_url


async def chat(
    client: httpx.AsyncClient, key: str, *, max_tokens: int, stream: bool = False, **extra: Any
) -> httpx.Response:
    body = {
        "model": "only",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
        **extra,
    }
    return await client.post(
        "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )


async def test_one_projects_slow_requests_do_not_open_the_circuit_for_another(
    world: World, database_url: str, tmp_path: Path
) -> None:
    a = await world.member("ann", "pa", credits_eur="5")
    b = await world.member("bob", "pb", credits_eur="5")
    # A real provider that takes 2 ms per generated token, behind a 1 s timeout: project
    # A's long requests (2,000 tokens: 4 s) time out; a short one is served in milliseconds.
    with (
        behaved_upstream(generating(2.0)) as (url, upstream),
        gateway(database_url, tmp_path, url, timeout_s=1.0) as base_url,
    ):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for _ in range(3):
                slow = await chat(client, a.inference_key, max_tokens=2000)
                assert slow.status_code == 504, slow.text
            # Project A's own circuit is open: A is told to come back later…
            refused = await chat(client, a.inference_key, max_tokens=10)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "no_healthy_provider"
            assert 1 <= int(refused.headers["retry-after"]) <= 30
            assert upstream.requests == 3
            # …while project B is served (before: 503 no_healthy_provider for 30 s).
            for _ in range(3):
                served = await chat(client, b.inference_key, max_tokens=10)
                assert served.status_code == 200, served.text
            assert upstream.requests == 6


async def test_a_heavy_prompt_timing_out_stays_its_projects_own(
    world: World, database_url: str, tmp_path: Path
) -> None:
    a = await world.member("ann", "pa", credits_eur="5")
    b = await world.member("bob", "pb", credits_eur="5")
    heavy = "word " * (SMALL_PROMPT_TOKENS * 2)  # well over the small-prompt estimate
    with (
        behaved_upstream(hanging) as (url, _),
        gateway(database_url, tmp_path, url, timeout_s=0.5) as base_url,
    ):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for _ in range(3):
                body = {"messages": [{"role": "user", "content": heavy}]}
                slow = await chat(client, a.inference_key, max_tokens=5, stream=True, **body)
                assert slow.status_code == 504, slow.text
            # The provider hangs for everyone, but only B's small request says so: B is
            # tried (504), not refused by A's doing.
            tried = await chat(client, b.inference_key, max_tokens=5, stream=True)
            assert tried.status_code == 504, tried.text


async def test_a_provider_really_down_opens_the_circuit_for_everyone(
    world: World, database_url: str, tmp_path: Path
) -> None:
    a = await world.member("ann", "pa", credits_eur="5")
    b = await world.member("bob", "pb", credits_eur="5")
    with gateway(database_url, tmp_path, refused_url(), timeout_s=1.0) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for _ in range(3):
                down = await chat(client, a.inference_key, max_tokens=2000)
                assert down.status_code == 503, down.text
                assert down.headers["retry-after"] == "2"  # unreachable: the default
            refused = await chat(client, b.inference_key, max_tokens=10)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "no_healthy_provider"
            assert 25 <= int(refused.headers["retry-after"]) <= 30  # the cooldown left


async def test_small_requests_timing_out_open_the_shared_circuit(
    world: World, database_url: str, tmp_path: Path
) -> None:
    a = await world.member("ann", "pa", credits_eur="5")
    b = await world.member("bob", "pb", credits_eur="5")
    with (
        behaved_upstream(hanging) as (url, upstream),
        gateway(database_url, tmp_path, url, timeout_s=0.5) as base_url,
    ):
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            for _ in range(3):
                assert (await chat(client, a.inference_key, max_tokens=5)).status_code == 504
            refused = await chat(client, b.inference_key, max_tokens=5)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "no_healthy_provider"
            assert "retry-after" in refused.headers
            assert upstream.requests == 3


def test_own_failures_never_touch_the_shared_circuit() -> None:
    from tests.gateway.test_health import Clock, endpoint

    clock = Clock()
    book = HealthBook(failure_threshold=2, cooldown_s=30, clock=clock)
    ep = endpoint()
    for _ in range(5):
        book.record_failure(ep, "pa", shared=False)
    assert book.is_open(ep, "pa")
    assert not book.is_open(ep, "pb") and not book.is_open(ep)
    assert book.circuit(ep) == "closed"
    assert book.reopens_in(ep, "pa") == 30
    clock.now += 31
    assert book.admit(ep, "pa")  # A's trial
    book.record_success(ep, completion_tokens=1, total_ms=5, project="pa")
    assert not book.is_open(ep, "pa")
