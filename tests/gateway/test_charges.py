"""Exact charges through the gateway: streamed = non-streamed, a client gone mid-stream,
max_tokens lowered to fit the balance, budgets refusing with 429."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import text

from tests.billing.conftest import assert_invariant, balance_of
from tests.gateway.conftest import GatewayEnv
from tests.gateway.test_streaming import slow_stream_gateway  # noqa: F401 (fixture)
from tests.support.mock_server import fetch_mock_stats
from tests.support.money import open_request_holds, seen_balance
from tests.support.world import World

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
CHAT_B_IN, CHAT_B_OUT = Decimal("0.05"), Decimal("0.15")  # chat-b @ eu-fast, credits/token


def exact_charge(prompt: int, completion: int) -> int:
    cost = CHAT_B_IN * prompt + CHAT_B_OUT * completion
    return int(cost.to_integral_value(rounding="ROUND_CEILING"))


async def test_streamed_and_non_streamed_charges_are_identical(gw: GatewayEnv) -> None:
    db = gw.world.db
    client = gw.client()
    start = await seen_balance(gw.root, gw.member.management_key)
    whole = await client.chat.completions.create(model="chat-b", messages=MESSAGES, max_tokens=9)
    after_whole = await seen_balance(gw.root, gw.member.management_key)
    stream = await client.chat.completions.create(
        model="chat-b",
        messages=MESSAGES,
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for _ in stream:
        pass
    after_stream = await seen_balance(gw.root, gw.member.management_key)
    assert whole.usage is not None
    expected = exact_charge(whole.usage.prompt_tokens, whole.usage.completion_tokens)
    assert expected > 0
    assert start - after_whole == expected
    assert after_whole - after_stream == expected
    await assert_invariant(db)
    assert await open_request_holds(db) == 0


async def test_client_gone_mid_stream_pays_for_what_streamed(
    slow_stream_gateway: tuple[str, str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    base_url, key, _upstream = slow_stream_gateway
    world = World(f"sqlite:///{tmp_path / 'slow.db'}")
    try:
        async with httpx.AsyncClient() as client:
            async with client.stream(
                "POST",
                f"{base_url}/chat/completions",
                json={
                    "model": "slow-chat",
                    "messages": [{"role": "user", "content": "go on"}],
                    "stream": True,
                },
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                lines = response.aiter_lines()
                seen = 0
                while seen < 3:
                    if (await anext(lines)).startswith("data: "):
                        seen += 1
        row = None
        for _ in range(200):
            async with world.db.read() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT prompt_tokens, completion_tokens, cost_credits, status,"
                            " usage_source FROM usage_events"
                        )
                    )
                ).first()
            if row is not None:
                break
            await asyncio.sleep(0.02)
        assert row is not None, "the disconnected stream was never settled"
        prompt, completion, cost, status, source = row
        assert status == "client_disconnected"
        assert source == "counted"  # the upstream never got to send its usage
        assert prompt == 2 + 3  # "go on" + per-message overhead
        assert 3 <= completion < 16  # what streamed, not the whole reply
        assert cost == prompt * 1 + completion * 1  # 1 credit per token both ways
        await assert_invariant(world.db)
        assert await open_request_holds(world.db) == 0
    finally:
        await world.close()


async def test_max_tokens_lowered_to_fit_the_balance(gw: GatewayEnv) -> None:
    balance = 7  # credits
    poor = await gw.world.member("gus", "p1", role="member", credits_eur="0.000007")
    raw = orjson.dumps(
        {"model": "chat-b", "messages": MESSAGES, "max_tokens": 1000, "include_metadata": True}
    )
    # Reserved: the prompt's bound (the body's bytes, at 0.05 credits per token) plus what is
    # left for completion tokens at 0.15 — far fewer than the 1000 asked for.
    room = Decimal(balance) - CHAT_B_IN * len(raw)
    granted = int((room / CHAT_B_OUT).to_integral_value(rounding="ROUND_FLOOR"))
    assert 1 <= granted < 16  # the mock's reply is 16 words: the cut must show
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{gw.base_url}/chat/completions",
            content=raw,
            headers={"Authorization": f"Bearer {poor.inference_key}"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == granted
    stats = await asyncio.to_thread(fetch_mock_stats, gw.mocks.fast)
    assert stats["last_request"]["max_tokens"] == granted
    applied = body["metadata"]["routing_results"]["applied_filters"]
    assert f"max_tokens lowered to {granted} to fit the balance" in applied
    spent = exact_charge(body["usage"]["prompt_tokens"], granted)
    assert await balance_of(gw.world.db, poor.user_id) == balance - spent
    await assert_invariant(gw.world.db)


async def test_n_choices_are_reserved_for(gw: GatewayEnv) -> None:
    # 40 credits cover one choice of 100 tokens (about 5 + 15) but not three of them: with
    # n=3 the gateway lowers max_tokens so that all three fit.
    member = await gw.world.member("ida", "p1", role="member", credits_eur="0.000040")
    raw = orjson.dumps({"model": "chat-b", "messages": MESSAGES, "max_tokens": 100, "n": 3})
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{gw.base_url}/chat/completions",
            content=raw,
            headers={"Authorization": f"Bearer {member.inference_key}"},
        )
    assert response.status_code == 200, response.text
    stats = await asyncio.to_thread(fetch_mock_stats, gw.mocks.fast)
    room = Decimal(40) - CHAT_B_IN * len(raw)
    total = int((room / CHAT_B_OUT).to_integral_value(rounding="ROUND_FLOOR"))
    assert stats["last_request"]["max_tokens"] == total // 3 < 100
    await assert_invariant(gw.world.db)


async def test_budget_refuses_with_429_naming_it(gw: GatewayEnv) -> None:
    async with httpx.AsyncClient() as client:
        created = await client.post(
            f"{gw.base_url}/manage/budgets",
            json={"scope": "project", "period": "daily", "limit": 0},
            headers=gw.mgmt_headers(),
        )
    assert created.status_code == 201, created.text
    budget_id = created.json()["id"]
    with pytest.raises(openai.RateLimitError) as caught:
        await gw.client().chat.completions.create(model="chat-b", messages=MESSAGES)
    message = str(caught.value)
    assert budget_id in message
    assert "T00:00:00" in message  # the reset time, midnight UTC
