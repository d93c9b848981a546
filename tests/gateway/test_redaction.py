"""A provider that echoes the gateway's own key — in a validation error it answers, in an error
event of a stream, in the text of an answer — never gets it to a client, a log line or the
request log. The key has no recognisable shape (no `sk-`): only redacting the actual secret
the gateway holds can catch it. Both backends (the request log is stored)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.broken_upstream import echoing_upstream
from tests.support.gateway import running_gateway, write_registry
from tests.support.world import Member, World

SECRET = "Zq" + secrets.token_hex(20)  # shapeless: no pattern would find it
MODELS = ("echo-400", "echo-413", "echo-415", "echo-422", "echo-stream-error", "echo-content")


@dataclass(frozen=True)
class Env:
    root: str
    member: Member

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(
                f"{self.root}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.member.inference_key}"},
            )


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with echoing_upstream() as url:
        yield url


@pytest.fixture
async def env(
    database_url: str, tmp_path: Path, upstream: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Env]:
    monkeypatch.setenv("ECHO_PROVIDER_KEY", SECRET)
    document: dict[str, Any] = {
        "providers": [
            {
                "slug": "echo",
                "name": "echo",
                "base_url": upstream,
                "api_key_env": "ECHO_PROVIDER_KEY",
            }
        ],
        "models": [
            {
                "id": model,
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": "echo",
                        "upstream_model": model,
                        "pricing": {"input_token": 1, "output_token": 1},
                    }
                ],
            }
            for model in MODELS
        ],
    }
    registry = write_registry(tmp_path / "registry.yaml", document)
    world = World(database_url)
    await world.migrate()
    member = await world.member("erin", "p1", credits_eur="1")
    try:
        with running_gateway(database_url, registry) as (base_url, _):
            yield Env(base_url.removesuffix("/v1"), member)
    finally:
        await world.close()


def chat(model: str, *, stream: bool = False) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def anthropic(model: str, *, stream: bool = False) -> dict[str, Any]:
    return {**chat(model, stream=stream), "max_tokens": 16}


@pytest.mark.parametrize("status", [400, 413, 415, 422])
async def test_a_validation_error_echoing_the_key_is_relayed_without_it(
    env: Env, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = f"echo-{status}"
    answers = [
        await env.post("/v1/chat/completions", chat(model)),
        await env.post("/v1/chat/completions", chat(model, stream=True)),
        await env.post("/v1/messages", anthropic(model)),
        await env.post("/v1/messages", anthropic(model, stream=True)),
    ]
    for answer in answers:
        assert answer.status_code == status, answer.text
        assert SECRET not in answer.text
        assert "Authorization: Bearer ***" in answer.text  # the upstream's words, redacted
    assert answers[0].json()["error"]["code"] == "x"  # still the upstream's own body
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"answered {status}" in logged
    assert SECRET not in logged
    await assert_request_log_clean(env, expected=len(answers))


async def test_an_error_event_inside_a_stream_is_relayed_without_the_key(env: Env) -> None:
    for path, body in (
        ("/v1/chat/completions", chat("echo-stream-error", stream=True)),
        ("/v1/messages", anthropic("echo-stream-error", stream=True)),
    ):
        answer = await env.post(path, body)
        assert answer.status_code == 200
        assert "fine so far" in answer.text
        assert "invalid request; got Authorization" in answer.text
        assert SECRET not in answer.text, answer.text


async def test_an_answer_quoting_the_key_is_relayed_without_it(env: Env) -> None:
    for path, body in (
        ("/v1/chat/completions", chat("echo-content")),
        ("/v1/chat/completions", chat("echo-content", stream=True)),
        ("/v1/messages", anthropic("echo-content")),
        ("/v1/messages", anthropic("echo-content", stream=True)),
    ):
        answer = await env.post(path, body)
        assert answer.status_code == 200, answer.text
        assert "Bearer ***" in answer.text
        assert SECRET not in answer.text


async def assert_request_log_clean(env: Env, *, expected: int) -> None:
    headers = {"Authorization": f"Bearer {env.member.management_key}"}
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(100):
            page = await client.get(f"{env.root}/v1/manage/requests", headers=headers)
            rows = page.json()["requests"]
            if len(rows) >= expected:
                break
            await asyncio.sleep(0.05)  # the writer flushes every 0.1 s
    assert len(rows) >= expected
    assert "upstream answered" in page.text
    assert SECRET not in page.text
    for row in rows:
        async with httpx.AsyncClient(timeout=30) as client:
            detail = await client.get(
                f"{env.root}/v1/manage/requests/{row['request_id']}", headers=headers
            )
        assert detail.status_code == 200
        assert SECRET not in detail.text
