"""Token classes end to end, on both backends: a long prompt (the mock reports half of it
read from its cache and a quarter written to it) with reasoning, through
/v1/chat/completions, /v1/messages and /v1/responses, streamed and not. Each dialect shows the
classes in its own fields; each request is charged by class, exactly; the usage API, the
request log and the ledger agree."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import text

from tests.billing.conftest import assert_invariant
from tests.gateway.conftest import GatewayEnv, Mocks, registry_document
from tests.gateway.test_chat import _metadata
from tests.support.gateway import running_gateway, write_registry
from tests.support.money import open_request_holds, seen_balance
from tests.support.world import World
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS
from tollway.providers.mock_usage import REASONING_TOKENS

INPUT, CACHED, WRITE, OUTPUT = Decimal("0.40"), Decimal("0.10"), Decimal("0.50"), Decimal("1.60")
LONG = " ".join(f"w{i % 50}" for i in range(1500))
PROMPT = 1500 + 3  # one message: its words plus 3
CACHED_TOKENS, WRITE_TOKENS = PROMPT // 2, PROMPT // 4  # the mock's rule
LOW = REASONING_TOKENS["low"]


def class_charge(completion: int) -> int:
    uncached = PROMPT - CACHED_TOKENS - WRITE_TOKENS
    cost = INPUT * uncached + CACHED * CACHED_TOKENS + WRITE * WRITE_TOKENS + OUTPUT * completion
    return int(cost.to_integral_value(rounding=ROUND_CEILING))


@pytest.fixture
async def gwc(
    world: World, database_url: str, mocks: Mocks, tmp_path: Path
) -> AsyncIterator[GatewayEnv]:
    document = registry_document(mocks)
    pricing = {
        "input_token": str(INPUT),
        "output_token": str(OUTPUT),
        "cached_input_token": str(CACHED),
        "cache_write_token": str(WRITE),
    }
    document["models"].append(
        {
            "id": "chat-cache",
            "context_size": 8192,
            "endpoints": [
                {"provider": "eu-fast", "upstream_model": "mock-chat", "pricing": pricing}
            ],
        }
    )
    for model_id, extra in (("chat-plain", {}), ("chat-dear-write", {"cache_write_token": 10})):
        document["models"].append(
            {
                "id": model_id,
                "context_size": 8192,
                "endpoints": [
                    {
                        "provider": "eu-fast",
                        "upstream_model": "mock-chat",
                        "pricing": {"input_token": 0.1, "output_token": 0.1, **extra},
                    }
                ],
            }
        )
    registry = write_registry(tmp_path / "registry.yaml", document)
    member = await world.member("alice", "p1", credits_eur="10")
    with running_gateway(database_url, registry, request_log_flush_ms=10) as (base_url, _app):
        yield GatewayEnv(base_url, member, world, mocks)


async def manage(gw: GatewayEnv, path: str, **params: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            f"{gw.root}/v1/manage/{path}", params=params, headers=gw.mgmt_headers()
        )
    assert response.status_code == 200, response.text
    return response.json()


async def logged(gw: GatewayEnv, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows: list[dict[str, Any]] = (await manage(gw, "requests", limit="200"))["requests"]
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        await asyncio.sleep(0.05)


async def assert_charged_by_class(
    gw: GatewayEnv, endpoint: str, completion: int, reasoning: int, spent: int
) -> None:
    """Two requests (whole and streamed) of the same tokens: usage events, ledger, balance,
    request log and usage API all show the classes and the exact class charge."""
    expected = class_charge(completion)
    assert spent == 2 * expected
    db = gw.world.db
    async with db.read() as conn:
        events = (
            await conn.execute(
                text(
                    "SELECT endpoint, prompt_tokens, completion_tokens, cached_prompt_tokens,"
                    " cache_write_tokens, reasoning_tokens, cost_credits, status"
                    " FROM usage_events"
                )
            )
        ).all()
        charges = (
            await conn.execute(text("SELECT amount_credits FROM ledger WHERE kind = 'charge'"))
        ).all()
    row = (
        endpoint,
        PROMPT,
        completion,
        CACHED_TOKENS,
        WRITE_TOKENS,
        reasoning,
        expected,
        "success",
    )
    assert [tuple(e) for e in events] == [row, row]
    assert sorted(int(c) for (c,) in charges) == [-expected, -expected]
    await assert_invariant(db)
    assert await open_request_holds(db) == 0
    for log in await logged(gw, 2):
        assert log["endpoint"] == endpoint and log["status"] == "success"
        assert (log["prompt_tokens"], log["completion_tokens"]) == (PROMPT, completion)
        assert log["cached_prompt_tokens"] == CACHED_TOKENS
        assert log["cache_write_tokens"] == WRITE_TOKENS
        assert log["reasoning_tokens"] == reasoning
        assert log["cost"] == expected / 1_000_000
    [usage] = (await manage(gw, "usage", group_by="model"))["rows"]
    assert usage["model"] == "chat-cache" and usage["requests"] == 2
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2 * PROMPT, 2 * completion)
    assert usage["cached_prompt_tokens"] == 2 * CACHED_TOKENS
    assert usage["cache_write_tokens"] == 2 * WRITE_TOKENS
    assert usage["reasoning_tokens"] == 2 * reasoning
    assert usage["cost"] == 2 * expected / 1_000_000


async def test_chat_completions_report_and_charge_the_classes(gwc: GatewayEnv) -> None:
    start = await seen_balance(gwc.root, gwc.member.management_key)
    messages: Any = [{"role": "user", "content": LONG}]
    async with gwc.client() as client:
        whole = await client.chat.completions.create(
            model="chat-cache",
            messages=messages,
            reasoning_effort="low",
            extra_body={"include_metadata": True},
        )
        chunks = await client.chat.completions.create(
            model="chat-cache",
            messages=messages,
            reasoning_effort="low",
            stream=True,
            stream_options={"include_usage": True},
        )
        usages = [chunk.usage async for chunk in chunks if chunk.usage is not None]
    spent = start - await seen_balance(gwc.root, gwc.member.management_key)
    completion = DEFAULT_REPLY_TOKENS + LOW
    for usage in (whole.usage, *usages):
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT, completion)
        assert usage.total_tokens == PROMPT + completion
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
        assert usage.completion_tokens_details is not None
        assert usage.completion_tokens_details.reasoning_tokens == LOW
        # The cache-written tokens, as OpenRouter reports them (an extra field).
        assert usage.prompt_tokens_details.to_dict()["cache_write_tokens"] == WRITE_TOKENS
    assert len(usages) == 1
    # The metadata prices the prompt by class too.
    cost = _metadata(whole)["routing_results"]["cost"]
    uncached = PROMPT - CACHED_TOKENS - WRITE_TOKENS
    prompt_cost = INPUT * uncached + CACHED * CACHED_TOKENS + WRITE * WRITE_TOKENS
    assert cost["prompt_cost"] == float(prompt_cost / 1_000_000)
    assert cost["total_cost"] == class_charge(completion) / 1_000_000
    await assert_charged_by_class(gwc, "chat.completions", completion, LOW, spent)


async def test_messages_report_the_cache_apart_from_input_tokens(gwc: GatewayEnv) -> None:
    start = await seen_balance(gwc.root, gwc.member.management_key)
    messages: Any = [{"role": "user", "content": LONG}]
    async with anthropic.AsyncAnthropic(
        base_url=gwc.root, api_key=gwc.member.inference_key, max_retries=0
    ) as claude:
        whole = await claude.messages.create(model="chat-cache", max_tokens=100, messages=messages)
        async with claude.messages.stream(
            model="chat-cache", max_tokens=100, messages=messages
        ) as stream:
            streamed = await stream.get_final_message()
    spent = start - await seen_balance(gwc.root, gwc.member.management_key)
    for usage in (whole.usage, streamed.usage):
        # Anthropic's input_tokens exclude what was read from or written to the cache.
        assert usage.input_tokens == PROMPT - CACHED_TOKENS - WRITE_TOKENS
        assert usage.cache_read_input_tokens == CACHED_TOKENS
        assert usage.cache_creation_input_tokens == WRITE_TOKENS
        assert usage.output_tokens == DEFAULT_REPLY_TOKENS
    await assert_charged_by_class(gwc, "messages", DEFAULT_REPLY_TOKENS, 0, spent)


async def test_responses_report_and_charge_the_classes(gwc: GatewayEnv) -> None:
    start = await seen_balance(gwc.root, gwc.member.management_key)
    client: openai.AsyncOpenAI
    async with gwc.client() as client:
        whole = await client.responses.create(
            model="chat-cache", input=LONG, reasoning={"effort": "low"}
        )
        events = await client.responses.create(
            model="chat-cache", input=LONG, reasoning={"effort": "low"}, stream=True
        )
        completed = [e.response async for e in events if e.type == "response.completed"]
    spent = start - await seen_balance(gwc.root, gwc.member.management_key)
    completion = DEFAULT_REPLY_TOKENS + LOW
    assert len(completed) == 1
    for response in (whole, completed[0]):
        usage = response.usage
        assert usage is not None
        assert (usage.input_tokens, usage.output_tokens) == (PROMPT, completion)
        assert usage.total_tokens == PROMPT + completion
        assert usage.input_tokens_details.cached_tokens == CACHED_TOKENS
        assert usage.output_tokens_details.reasoning_tokens == LOW
    await assert_charged_by_class(gwc, "responses", completion, LOW, spent)


async def test_the_reservation_covers_the_dearest_prompt_class(gwc: GatewayEnv) -> None:
    """Which prompt tokens a provider will write to its cache is unknown before the call, so
    the reservation prices every prompt token at the highest class price: 10 credits a token
    here, where the plain input price is 0.1. A balance that covers the prompt at the input
    price but not at the cache-write price is refused before anything is forwarded."""
    bob = await gwc.world.member("bob", "p1", credits_eur="0.01")  # 10,000 credits
    messages: Any = [{"role": "user", "content": LONG}]  # ~6,000 bytes: prompt bound ~6,000
    async with gwc.client(bob.inference_key) as client:
        plain = await client.chat.completions.create(
            model="chat-plain", messages=messages, max_tokens=10
        )
        assert plain.usage is not None and plain.usage.prompt_tokens == PROMPT
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(
                model="chat-dear-write", messages=messages, max_tokens=10
            )
    assert refused.value.status_code == 402
    assert "insufficient balance" in str(refused.value)
    await seen_balance(gwc.root, bob.management_key)  # commits the process's lease charges
    async with gwc.world.db.read() as conn:
        models = (await conn.execute(text("SELECT model FROM usage_events"))).scalars().all()
    assert models == ["chat-plain"]
    await assert_invariant(gwc.world.db)
