"""The upstream receives exactly the completion bound that was reserved, whatever length
fields the client sent — on an upstream that reads `n_predict` (llama.cpp) or
`max_completion_tokens` (vLLM) ahead of `max_tokens`, as the mock does. Both backends."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.billing.conftest import assert_invariant
from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock_app
from tests.support.money import open_request_holds, seen_balance
from tests.support.world import World
from tollway.providers.mock import MockProvider

INPUT_PRICE, OUTPUT_PRICE = 1, 10  # credits per token


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, MockProvider]]:
    with running_mock_app() as (url, app):
        document = {
            "providers": [{"slug": "vllm-like", "name": "vllm-like", "base_url": url}],
            "models": [
                {
                    "id": "chat",
                    "context_size": 8192,
                    "endpoints": [
                        {
                            "provider": "vllm-like",
                            "upstream_model": "mock-chat",
                            "pricing": {"input_token": INPUT_PRICE, "output_token": OUTPUT_PRICE},
                        }
                    ],
                }
            ],
        }
        yield write_registry(tmp_path / "registry.yaml", document), app


# (fields the client sends, the bound it gets); the mock's whole reply is 16 tokens.
CASES: list[tuple[dict[str, Any], int]] = [
    ({"max_tokens": 1, "max_completion_tokens": 4000}, 1),
    ({"max_completion_tokens": 2, "max_tokens": 4000}, 2),
    ({"max_completion_tokens": 3}, 3),
    ({"max_tokens": 4, "n_predict": 4000}, 4),
    ({"max_new_tokens": 5, "max_tokens": 4000}, 5),
]
BOUND_FIELDS = {"max_tokens", "max_completion_tokens", "n_predict", "max_new_tokens"}


async def test_upstream_gets_exactly_the_reserved_bound(
    world: World, database_url: str, upstream: tuple[Path, MockProvider]
) -> None:
    registry, mock = upstream
    member = await world.member("bea", "p1", credits_eur="1")
    with running_gateway(database_url, registry) as (base_url, _):
        async with httpx.AsyncClient(timeout=30) as client:
            for fields, bound in CASES:
                root = base_url.removesuffix("/v1")
                before = await seen_balance(root, member.management_key)
                response = await client.post(
                    f"{base_url}/chat/completions",
                    json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
                    | fields,
                    headers={"Authorization": f"Bearer {member.inference_key}"},
                )
                assert response.status_code == 200, response.text
                forwarded = mock.stats.last_request
                assert {k: forwarded[k] for k in BOUND_FIELDS & forwarded.keys()} == {
                    "max_tokens": bound
                }, fields
                body = response.json()
                assert body["usage"]["completion_tokens"] == bound, fields
                assert body["choices"][0]["finish_reason"] == "length"
                prompt = body["usage"]["prompt_tokens"]
                spent = before - await seen_balance(root, member.management_key)
                assert spent == INPUT_PRICE * prompt + OUTPUT_PRICE * bound, fields
    await assert_invariant(world.db)
    assert await open_request_holds(world.db) == 0


async def test_best_of_is_reserved_for_like_n(
    world: World, database_url: str, upstream: tuple[Path, MockProvider]
) -> None:
    # vLLM generates `best_of` sequences and returns `n`: every one of them is reserved for.
    # Room for one choice of 10 tokens but not four: the bound is lowered to fit all four.
    registry, mock = upstream
    raw = {
        "model": "chat",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10,
        "best_of": 4,
    }
    content = orjson.dumps(raw)
    credits = INPUT_PRICE * len(content) + OUTPUT_PRICE * 20
    member = await world.member("cyd", "p1", credits_eur=str(Decimal(credits) / 1_000_000))
    with running_gateway(database_url, registry) as (base_url, _):
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{base_url}/chat/completions",
                content=content,
                headers={"Authorization": f"Bearer {member.inference_key}"},
            )
    assert response.status_code == 200, response.text
    forwarded = mock.stats.last_request
    assert forwarded["max_tokens"] == 20 // 4
    assert forwarded["best_of"] == 4
    await assert_invariant(world.db)
