"""GET /v1/manage/requests and /v1/manage/requests/{id} on both backends, fed by real
requests through the gateway to real mock upstreams."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.observe.conftest import Env, Upstreams, make_env
from tests.support.world import World
from tollway.store.schema import request_log

RECORD_FIELDS = {
    "request_id",
    "client_request_id",
    "created_at",
    "endpoint",
    "model",
    "served_model",
    "provider",
    "status",
    "http_status",
    "stream",
    "user_id",
    "key_name",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_prompt_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "usage_source",
    "error",
    "attempts",
}


async def test_a_served_request_is_recorded_with_what_it_cost(env: Env) -> None:
    served = await env.chat(env.alice, max_tokens=5)
    assert served.status_code == 200
    body = served.json()
    [row] = await env.wait_for_rows(env.alice, 1)
    assert set(row) == RECORD_FIELDS
    assert row["request_id"] == served.headers["x-request-id"]
    assert row["client_request_id"] is None
    assert row["endpoint"] == "chat.completions"
    assert (row["model"], row["served_model"], row["provider"]) == ("m-good", "m-good", "good")
    assert (row["status"], row["http_status"], row["stream"]) == ("success", 200, False)
    assert row["user_id"] == env.alice.user_id and row["key_name"] == "p1-inf"
    usage = body["usage"]
    assert row["prompt_tokens"] == usage["prompt_tokens"]
    assert row["completion_tokens"] == usage["completion_tokens"]
    assert row["total_tokens"] == usage["total_tokens"]
    assert (row["cached_prompt_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == (
        0,
        0,
        0,
    )
    # 1 EUR / 1M input tokens, 2 EUR / 1M output tokens: credits = tokens * price.
    credits = usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2
    assert row["cost"] == credits / 1_000_000
    assert row["usage_source"] == "upstream"
    assert row["error"] is None and row["ttft_ms"] is None
    assert row["latency_ms"] >= 0
    created = datetime.fromisoformat(row["created_at"])
    assert created.tzinfo is not None and abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert row["attempts"] == [
        {"provider": "good", "model": "m-good", "status": "success", "error": None}
    ]


async def test_the_token_classes_are_recorded(env: Env) -> None:
    """A long prompt (the mock caches half of it, writes a quarter) with reasoning."""
    long = [{"role": "user", "content": " ".join(["word"] * 2000)}]
    served = await env.chat(env.alice, messages=long, reasoning_effort="low", max_tokens=40)
    assert served.status_code == 200
    usage = served.json()["usage"]
    [row] = await env.wait_for_rows(env.alice, 1)
    assert row["prompt_tokens"] == usage["prompt_tokens"] == 2003
    assert row["cached_prompt_tokens"] == usage["prompt_tokens_details"]["cached_tokens"] == 1001
    assert row["cache_write_tokens"] == usage["prompt_tokens_details"]["cache_write_tokens"] == 500
    assert row["reasoning_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] == 16
    assert row["completion_tokens"] == usage["completion_tokens"]
    # No class prices in this registry: every prompt token at the input price (1), the
    # completion, reasoning included, at the output price (2).
    assert row["cost"] == (2003 * 1 + usage["completion_tokens"] * 2) / 1_000_000
    detail = (await env.manage(env.alice, f"requests/{row['request_id']}")).json()
    assert detail["cached_prompt_tokens"] == 1001 and detail["reasoning_tokens"] == 16


async def test_detail_shows_the_attempts_of_a_real_fallback(env: Env) -> None:
    served = await env.chat(env.alice, model="m-flaky", include_metadata=True)
    assert served.status_code == 200
    request_id = served.headers["x-request-id"]
    await env.wait_for_rows(env.alice, 1)
    detail = (await env.manage(env.alice, f"requests/{request_id}")).json()
    assert set(detail) == RECORD_FIELDS | {"routing", "translation"}
    assert detail["translation"] is None  # a chat completion: nothing translated
    assert detail["status"] == "success" and detail["provider"] == "good"
    [failed, succeeded] = detail["attempts"]
    assert (failed["provider"], failed["model"]) == ("broken", "m-flaky")
    assert failed["status"] == "failed"
    assert failed["error"]
    assert succeeded == {"provider": "good", "model": "m-flaky", "status": "success", "error": None}
    routing = detail["routing"]
    assert set(routing) == {"preference", "applied_filters", "routing_trace", "fallback_chain"}
    assert routing["preference"] == "balanced"
    assert routing["fallback_chain"] == ["m-flaky"]
    # The same routing_trace the response's metadata carried.
    assert routing["routing_trace"] == served.json()["metadata"]["routing_trace"]
    statuses = {c["provider"]: c["status"] for c in routing["routing_trace"]["scored_candidates"]}
    assert statuses == {"broken": "failed", "good": "success"}


async def test_failures_refusals_and_bad_requests_are_recorded(env: Env) -> None:
    down = await env.chat(env.alice, model="m-down")
    assert down.status_code == 503
    unknown = await env.chat(env.alice, model="no-such-model")
    assert unknown.status_code == 404
    async with httpx.AsyncClient() as client:
        malformed = await client.post(
            f"{env.root}/v1/chat/completions",
            content=b"{not json",
            headers={"Authorization": f"Bearer {env.alice.inference_key}"},
        )
    assert malformed.status_code == 400
    poor = await env.world.member("dora", "p1", role="member")  # no credits at all
    refused = await env.chat(poor, max_tokens=5)
    assert refused.status_code == 402
    rows = await env.wait_for_rows(env.alice, 4)
    by_id = {r["request_id"]: r for r in rows}
    r = by_id[down.headers["x-request-id"]]
    assert (r["status"], r["http_status"], r["cost"]) == ("upstream_error", 503, 0)
    assert [a["status"] for a in r["attempts"]] == ["failed"] and r["error"]
    r = by_id[unknown.headers["x-request-id"]]
    assert (r["status"], r["http_status"], r["model"]) == ("error", 404, "no-such-model")
    r = by_id[malformed.headers["x-request-id"]]
    assert (r["status"], r["http_status"], r["model"]) == ("error", 400, "")
    r = by_id[refused.headers["x-request-id"]]
    assert (r["status"], r["http_status"], r["user_id"]) == ("refused", 402, poor.user_id)
    assert r["error"] == refused.json()["error"]["message"]  # the message the client got
    assert r["error"].startswith("insufficient balance")
    # An unauthenticated request is in the log line only, never in the table.
    async with httpx.AsyncClient() as client:
        anonymous = await client.post(f"{env.root}/v1/chat/completions", json={})
    assert anonymous.status_code == 401
    await env.wait_for_rows(env.alice, 4)


async def test_a_nul_in_a_model_name_stops_nobody_s_log(env: Env) -> None:
    # PostgreSQL refuses NUL in text: the writer used to retry that batch forever, and no
    # later request of any tenant was logged.
    hostile = await env.chat(env.alice, model="x\u0000\u001b[31m")
    assert hostile.status_code == 404
    other = await env.world.member("bob", "p2", credits_eur="1")
    after = await env.chat(other, max_tokens=5)
    assert after.status_code == 200
    [mine] = await env.wait_for_rows(env.alice, 1)
    assert mine["model"] == "x\ufffd\u001b[31m" and mine["http_status"] == 404
    [theirs] = await env.wait_for_rows(other, 1)
    assert theirs["request_id"] == after.headers["x-request-id"]


async def test_a_stream_is_recorded_with_its_time_to_first_token(env: Env) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream(
            "POST",
            f"{env.root}/v1/chat/completions",
            json={"model": "m-good", "stream": True, "messages": [{"role": "user", "content": ""}]},
            headers={"Authorization": f"Bearer {env.bob.inference_key}"},
        ) as response,
    ):
        assert response.status_code == 200
        body = (await response.aread()).decode()
    assert body.endswith("data: [DONE]\n\n")
    [row] = await env.wait_for_rows(env.bob, 1)
    assert (row["stream"], row["status"], row["provider"]) == (True, "success", "good")
    assert row["ttft_ms"] is not None and 0 <= row["ttft_ms"] <= row["latency_ms"]
    assert row["completion_tokens"] > 0


async def test_a_stream_the_client_left_or_the_upstream_broke(env: Env) -> None:
    body = {"stream": True, "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {env.alice.inference_key}"}
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream(
            "POST",
            f"{env.root}/v1/chat/completions",
            json=body | {"model": "m-slow"},
            headers=headers,
        ) as response:
            async for _ in response.aiter_lines():
                break  # one chunk, then leave: ~10 s of stream unread
        left = response.headers["x-request-id"]
        cut = await client.post(
            f"{env.root}/v1/chat/completions", json=body | {"model": "m-cut"}, headers=headers
        )
    assert cut.status_code == 200 and '"code":"upstream_error"' in cut.text
    rows = {r["request_id"]: r for r in await env.wait_for_rows(env.alice, 2)}
    r = rows[left]
    assert (r["status"], r["http_status"], r["provider"]) == ("client_disconnected", 200, "slow")
    assert r["completion_tokens"] > 0 and r["cost"] > 0  # what streamed is charged
    assert r["usage_source"] == "counted"
    r = rows[cut.headers["x-request-id"]]
    assert (r["status"], r["http_status"], r["provider"]) == ("upstream_error", 200, "cut")
    assert r["error"]


async def test_anthropic_messages_and_embeddings_are_recorded(env: Env) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        message = await client.post(
            f"{env.root}/v1/messages",
            json={
                "model": "m-good",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": env.alice.inference_key, "anthropic-version": "2023-06-01"},
        )
        embedding = await client.post(
            f"{env.root}/v1/embeddings",
            json={"model": "m-embed", "input": "hello"},
            headers={"Authorization": f"Bearer {env.alice.inference_key}"},
        )
    assert message.status_code == 200 and embedding.status_code == 200
    rows = {r["request_id"]: r for r in await env.wait_for_rows(env.alice, 2)}
    r = rows[message.headers["x-request-id"]]
    assert (r["endpoint"], r["status"], r["provider"]) == ("messages", "success", "good")
    assert r["completion_tokens"] == message.json()["usage"]["output_tokens"]
    r = rows[embedding.headers["x-request-id"]]
    assert (r["endpoint"], r["status"], r["completion_tokens"]) == ("embeddings", "success", 0)
    assert r["prompt_tokens"] > 0


async def test_scope_member_admin_other_project(env: Env) -> None:
    mine = (await env.chat(env.alice)).headers["x-request-id"]
    bobs = (await env.chat(env.bob)).headers["x-request-id"]
    carols = (await env.chat(env.carol)).headers["x-request-id"]
    admin_view = {r["request_id"] for r in await env.wait_for_rows(env.alice, 2)}
    assert admin_view == {mine, bobs}  # the whole project, not p2
    assert [r["request_id"] for r in await env.wait_for_rows(env.bob, 1)] == [bobs]
    assert [r["request_id"] for r in await env.wait_for_rows(env.carol, 1)] == [carols]
    assert (await env.manage(env.alice, f"requests/{bobs}")).status_code == 200
    for who, request_id in (
        (env.bob, mine),  # a member: another user's request
        (env.carol, mine),  # another project
        (env.alice, carols),
        (env.alice, "no-such-request"),
    ):
        response = await env.manage(who, f"requests/{request_id}")
        assert response.status_code == 404
        assert isinstance(response.json()["error"], str)
    # An inference key is not a management key.
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{env.root}/v1/manage/requests",
            headers={"Authorization": f"Bearer {env.alice.inference_key}"},
        )
    assert response.status_code == 403


async def test_filters(env: Env) -> None:
    await env.chat(env.alice, model="m-good")
    await env.chat(env.alice, model="m-flaky")
    await env.chat(env.alice, model="m-down")
    await env.chat(env.bob, model="m-good")
    await env.wait_for_rows(env.alice, 4)

    async def ids(**params: str) -> list[str]:
        response = await env.manage(env.alice, "requests", **params)
        assert response.status_code == 200, response.text
        return [f"{r['model']}:{r['status']}:{r['key_name']}" for r in response.json()["requests"]]

    assert sorted(await ids(model="m-good")) == ["m-good:success:p1-inf"] * 2
    assert await ids(status="upstream_error") == ["m-down:upstream_error:p1-inf"]
    assert sorted(await ids(provider="good")) == sorted(
        ["m-good:success:p1-inf", "m-flaky:success:p1-inf", "m-good:success:p1-inf"]
    )
    assert len(await ids(key_name="p1-inf")) == 4  # alice's and bob's keys share the name
    assert await ids(key_name="nobody") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert await ids(**{"from": future}) == []
    assert len(await ids(**{"from": past, "until": future})) == 4
    assert await ids(until=past) == []


async def test_cursor_pagination_newest_first(env: Env) -> None:
    for _ in range(5):
        assert (await env.chat(env.alice)).status_code == 200
    everything = await env.wait_for_rows(env.alice, 5)
    seen: list[dict[str, object]] = []
    cursor: str | None = None
    pages = []
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        response = await env.manage(env.alice, "requests", **params)
        assert response.status_code == 200
        page = response.json()
        pages.append(len(page["requests"]))
        seen += page["requests"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert [r["request_id"] for r in seen] == [r["request_id"] for r in everything]
    assert len({r["request_id"] for r in seen}) == 5
    created = [str(r["created_at"]) for r in seen]
    assert created == sorted(created, reverse=True)
    # The default page holds 50; exactly a page's worth leaves no next cursor.
    response = await env.manage(env.alice, "requests", limit="5")
    assert response.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "201"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # valid base64 of [1,2,3]: not ours
        ({"status": "fine"}, "status"),
        ({"from": "yesterday"}, "from"),
        ({"until": "2025-13-01"}, "until"),
        ({"from": "2025-03-02", "until": "2025-03-01"}, "from"),
        # PostgreSQL refuses a NUL even in a comparison: a 400, never a 500 (both backends)
        ({"model": "a\x00b"}, "model"),
        ({"provider": "\x00"}, "provider"),
        ({"key_name": "k\x00"}, "key_name"),
        ({"cursor": "WzUsImFcdTAwMDAiXQ"}, "cursor"),  # [5, "a\u0000"]
        ({"cursor": "WzE4NDQ2NzQ0MDczNzA5NTUxNjE1LCJ4Il0"}, "cursor"),  # [2^64 - 1, "x"]
    ],
)
async def test_bad_parameters_are_400_naming_them(
    env: Env, params: dict[str, str], named: str
) -> None:
    response = await env.manage(env.alice, "requests", **params)
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith(f"{named}:") and len(message) < 300


async def test_a_request_id_with_a_nul_is_404(env: Env) -> None:
    response = await env.manage(env.alice, "requests/a%00b")
    assert response.status_code == 404, response.text
    assert response.json() == {"error": "request 'a\x00b' not found"}


async def test_limit_200_is_the_maximum(env: Env) -> None:
    assert (await env.manage(env.alice, "requests", limit="200")).status_code == 200


async def test_writer_flushes_on_shutdown(
    world: World, upstreams: Upstreams, tmp_path: Path
) -> None:
    # A flush interval far longer than the test: only the shutdown can write these rows.
    async for e in make_env(world, upstreams, tmp_path, request_log_flush_ms=10_000):
        for _ in range(3):
            assert (await e.chat(e.alice)).status_code == 200
        async with world.db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(request_log))).scalar() == 0
    async with world.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(request_log))).scalar() == 3
