from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import event

from tests.gateway.conftest import GatewayEnv, Mocks, registry_document
from tests.support.gateway import running_gateway, write_registry
from tests.support.money import seen_balance
from tests.support.servers import serving
from tests.support.world import World

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def test_embeddings(gw: GatewayEnv) -> None:
    response = await gw.client().embeddings.create(model="embed-a", input=["one", "two words"])
    assert len(response.data) == 2
    assert len(response.data[0].embedding) > 0
    assert response.usage.prompt_tokens == 3
    again = await gw.client().embeddings.create(model="embed-a", input=["one", "two words"])
    assert again.data[0].embedding == response.data[0].embedding


async def test_models_listing(gw: GatewayEnv) -> None:
    async with httpx.AsyncClient() as client:
        listed = (await client.get(f"{gw.base_url}/models")).json()
        assert listed["object"] == "list"
        by_id = {m["id"]: m for m in listed["data"]}
        chat = by_id["chat-a"]
        assert chat["pricing"] == {
            "input_token": 0.1,
            "output_token": 0.3,
            "cached_input_token": 0.1,  # no class prices: the input price
            "cache_write_token": 0.1,
            "currency": "EUR",
        }
        assert set(chat["providers"]) == {"eu-fast", "us-cheap", "eu-quant"}
        assert {
            "id",
            "object",
            "created",
            "owned_by",
            "description",
            "tags",
            "context_size",
            "pricing",
            "providers",
        } <= set(chat)
        eu = (await client.get(f"{gw.base_url}/models", params={"eu_native": "true"})).json()
        eu_chat = {m["id"]: m for m in eu["data"]}["chat-a"]
        assert "us-cheap" not in eu_chat["providers"]
        assert eu_chat["pricing"]["input_token"] == 0.2  # cheapest EU-native provider
        tagged = (
            await client.get(
                f"{gw.base_url}/models", params=[("tag", "Instruct"), ("tag", "Small")]
            )
        ).json()
        assert [m["id"] for m in tagged["data"]] == ["chat-b"]
        usd = await client.get(f"{gw.base_url}/models", params={"currency": "USD"})
        assert usd.status_code == 400
        assert usd.json()["error"]["param"] == "currency"
    # The SDK lists them too, without a key of ours being needed.
    sdk_models = await gw.client("tw-anything").models.list()
    assert "chat-a" in [m.id for m in sdk_models.data]


async def test_error_statuses_map_to_sdk_exceptions(gw: GatewayEnv) -> None:
    with pytest.raises(openai.AuthenticationError):
        await gw.client("tw-not-a-key").chat.completions.create(model="chat-a", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError) as not_found:
        await gw.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await gw.client().chat.completions.create(model="chat-a", messages=[])
    assert bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as bad_type:
        await gw.client().chat.completions.create(
            model="chat-a", messages=MESSAGES, extra_body={"eu_native": "yes"}
        )
    assert bad_type.value.param == "eu_native"
    with pytest.raises(openai.InternalServerError) as upstream:
        await gw.client().chat.completions.create(
            model="chat-down", messages=MESSAGES, extra_body={"enable_model_fallback": False}
        )
    assert upstream.value.status_code == 503
    async with httpx.AsyncClient() as client:
        malformed = await client.post(
            f"{gw.base_url}/chat/completions",
            content=b"{not json",
            headers={"Authorization": f"Bearer {gw.member.inference_key}"},
        )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "invalid_request_error"


async def test_insufficient_balance_is_402(gw: GatewayEnv) -> None:
    broke = await gw.world.member("dave", "p1", role="member")  # no credits
    with pytest.raises(openai.APIStatusError) as caught:
        await gw.client(broke.inference_key).chat.completions.create(
            model="chat-a", messages=MESSAGES
        )
    assert caught.value.status_code == 402
    assert "insufficient balance" in str(caught.value)


async def test_refusals_that_cannot_succeed_tell_the_sdk_not_to_retry(gw: GatewayEnv) -> None:
    """402 and a budget's 429 carry `x-should-retry: false`: the official SDK, which retries
    429 by default, sends each request once."""
    broke = await gw.world.member("erin", "p1", role="member")  # no credits
    sent: list[str] = []

    async def count(request: httpx2.Request) -> None:
        sent.append(request.url.path)

    # The SDK's own HTTP client (httpx2), with a hook that counts what it sends.
    async with httpx2.AsyncClient(event_hooks={"request": [count]}) as http_client:
        sdk = openai.AsyncOpenAI(
            base_url=gw.base_url,
            api_key=broke.inference_key,
            max_retries=3,
            http_client=http_client,
        )
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(model="chat-a", messages=MESSAGES)
        assert caught.value.status_code == 402
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert "needs at least" in str(caught.value) and "0 EUR left" in str(caught.value)
        assert len(sent) == 1
        async with httpx.AsyncClient() as client:
            created = await client.post(
                f"{gw.base_url}/manage/budgets",
                json={"scope": "project", "period": "daily", "limit": 0},
                headers=gw.mgmt_headers(),
            )
        assert created.status_code == 201
        sdk = openai.AsyncOpenAI(
            base_url=gw.base_url,
            api_key=gw.member.inference_key,
            max_retries=3,
            http_client=http_client,
        )
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk.chat.completions.create(model="chat-a", messages=MESSAGES)
        assert limited.value.response.headers["x-should-retry"] == "false"
        assert "is used up" in str(limited.value)
        assert len(sent) == 2


async def test_key_deleted_elsewhere_is_refused_after_the_next_group_commit(
    mocks: Mocks, sqlite_world: World, tmp_path: Any
) -> None:
    """Two gateway replicas on one database: replica B has the key cached; it is deleted
    through replica A; B learns it at the group commit of the key's next request (which B
    serves from its credit lease, and charges) and refuses it from then on."""
    registry = write_registry(tmp_path / "r.yaml", registry_document(mocks))
    member = await sqlite_world.member("erin", "p9", credits_eur="1")
    url = str(sqlite_world.db.engine.url).replace("sqlite+aiosqlite", "sqlite")
    with running_gateway(url, registry) as (a_url, _), running_gateway(url, registry) as (b_url, _):
        b = openai.AsyncOpenAI(base_url=b_url, api_key=member.inference_key, max_retries=0)
        await b.chat.completions.create(model="chat-b", messages=MESSAGES)  # cached in B now
        async with httpx.AsyncClient() as client:
            deleted = await client.request(
                "DELETE",
                f"{a_url}/manage/api-keys",
                json={"name": "p9-inf"},
                headers={"Authorization": f"Bearer {member.management_key}"},
            )
        assert deleted.status_code == 200
        served, deadline = 0, time.monotonic() + 10
        while True:
            try:
                await b.chat.completions.create(model="chat-b", messages=MESSAGES)
            except openai.AuthenticationError:
                break
            served += 1
            assert time.monotonic() < deadline, f"still served after {served} requests"
            await asyncio.sleep(0.01)


async def test_hot_path_skips_the_database_for_a_known_key_and_config(
    mocks: Mocks, sqlite_world: World, tmp_path: Any
) -> None:
    registry = write_registry(tmp_path / "r.yaml", registry_document(mocks))
    member = await sqlite_world.member("fay", "p8", credits_eur="1")
    url = str(sqlite_world.db.engine.url).replace("sqlite+aiosqlite", "sqlite")
    with running_gateway(url, registry, cache_ttl_s=60) as (base_url, app):
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        db = app.state.tollway.db
        # The async engine (key lookups, configurations) and the one the meter's
        # transactions run on (`Database.run_write`: its own sync engine on SQLite).
        for engine in {db.engine.sync_engine, db.sync_engine}:
            event.listen(engine, "before_cursor_execute", record)
        client = openai.AsyncOpenAI(base_url=base_url, api_key=member.inference_key, max_retries=0)
        await client.chat.completions.create(model="chat-b", messages=MESSAGES)
        root = base_url.removesuffix("/v1")
        await seen_balance(root, member.management_key)  # the first one's charge committed
        statements.clear()
        await client.chat.completions.create(model="chat-b", messages=MESSAGES)
        # No key lookup by digest, no configuration read, and no reservation: the request
        # is reserved and settled in memory against the process's credit lease.
        lookups = [s for s in statements if "api_keys.digest" in s or "project_configs" in s]
        assert lookups == [], lookups
        assert not [s for s in statements if "UPDATE users" in s or "FROM users" in s]
        # Its charge comes with the next group commit, which checks the key it charged.
        await seen_balance(root, member.management_key)
        assert any("INSERT INTO usage_events" in s for s in statements)
        assert any("FROM api_keys" in s and "api_keys.id IN" in s for s in statements)


async def test_prometheus_metrics(mocks: Mocks, sqlite_world: World, tmp_path: Any) -> None:
    registry = write_registry(tmp_path / "r.yaml", registry_document(mocks))
    member = await sqlite_world.member("hal", "p7", credits_eur="1")
    url = str(sqlite_world.db.engine.url).replace("sqlite+aiosqlite", "sqlite")
    with running_gateway(url, registry, metrics_token="scrape-secret") as (base_url, _):
        client = openai.AsyncOpenAI(base_url=base_url, api_key=member.inference_key, max_retries=0)
        await client.chat.completions.create(model="chat-b", messages=MESSAGES)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=MESSAGES)
        root = base_url.removesuffix("/v1")
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{root}/metrics")).status_code == 401
            wrong = await http.get(f"{root}/metrics", headers={"Authorization": "Bearer no"})
            assert wrong.status_code == 401
            inference_key = {"Authorization": f"Bearer {member.inference_key}"}
            assert (await http.get(f"{root}/metrics", headers=inference_key)).status_code == 401
            text = (
                await http.get(f"{root}/metrics", headers={"Authorization": "Bearer scrape-secret"})
            ).text
    assert (
        'tollway_requests_total{endpoint="chat.completions",model="chat-b",'
        'provider="eu-fast",status="success"} 1.0' in text
    )
    # A model name the registry does not know is not a label (clients could invent many).
    assert 'model="unknown",provider="",status="404"} 1.0' in text
    assert "nope" not in text
    assert "tollway_request_duration_seconds_bucket" in text


async def test_metrics_are_off_without_a_token(gw: GatewayEnv) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{gw.root}/metrics")
    assert response.status_code == 404


async def test_malformed_upstream_usage_is_counted_by_the_gateway(
    sqlite_world: World, tmp_path: Any
) -> None:
    """An upstream reporting impossible usage (negative counts) is not believed: the gateway
    counts the tokens itself and says so, instead of failing the served request."""

    async def bad_usage_upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = orjson.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "three words here"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": -5, "completion_tokens": 2, "total_tokens": -3},
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    member = await sqlite_world.member("ivy", "p6", credits_eur="1")
    url = str(sqlite_world.db.engine.url).replace("sqlite+aiosqlite", "sqlite")
    with serving(bad_usage_upstream, lifespan_off=True) as port:
        registry = write_registry(
            tmp_path / "bad.yaml",
            {
                "providers": [
                    {"slug": "odd", "name": "odd", "base_url": f"http://127.0.0.1:{port}/v1"}
                ],
                "models": [
                    {
                        "id": "odd-chat",
                        "context_size": 4096,
                        "endpoints": [
                            {
                                "provider": "odd",
                                "upstream_model": "m",
                                "pricing": {"input_token": 1, "output_token": 1},
                            }
                        ],
                    }
                ],
            },
        )
        with running_gateway(url, registry) as (base_url, _):
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{base_url}/chat/completions",
                    json={"model": "odd-chat", "messages": MESSAGES, "include_metadata": True},
                    headers={"Authorization": f"Bearer {member.inference_key}"},
                )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"] == {
        "prompt_tokens": 4,
        "completion_tokens": 3,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert body["metadata"]["routing_results"]["usage_source"] == "counted"
