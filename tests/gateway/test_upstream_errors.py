"""Every kind of upstream failure becomes its documented status and a message that names the
provider and what happened — never an address or an exception class — while the full reason
is logged at WARNING on `tollway.upstream` (docs/gateway.md, "Upstream errors")."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.broken_upstream import (
    NOT_HTTP,
    NOT_JSON,
    RESET_MID_BODY,
    STREAM_THEN_RESET,
    broken_upstream,
    refused_url,
)
from tests.support.gateway import running_gateway, write_registry
from tests.support.mock_server import running_mock
from tests.support.world import Member, World
from tollway.providers.mock_settings import MockSettings

# Whatever would leak how the gateway reaches its upstreams.
INTERNALS = re.compile(r"127\.0\.0\.1|localhost|:\d{4,5}\b|[A-Z]\w+(Error|Exception)\b|Errno")

# model → (provider slug, upstream model); every model has one endpoint, so no fallback.
FAILURES: dict[str, tuple[str, str]] = {
    "refused": ("p-refused", "mock-chat"),
    "timeout": ("p-mock", "x-mock-latency-3000"),
    "reset": ("p-reset", "mock-chat"),
    "not-json": ("p-not-json", "mock-chat"),
    "not-http": ("p-not-http", "mock-chat"),
    "up-500": ("p-mock", "x-mock-error-500"),
    "up-502": ("p-mock", "x-mock-error-502"),
    "up-503": ("p-mock", "x-mock-error-503"),
    "up-504": ("p-mock", "x-mock-error-504"),
    "up-429": ("p-mock", "x-mock-error-429"),
    "up-404": ("p-mock", "x-mock-error-404"),
    "up-401": ("p-mock", "x-mock-error-401"),
    "up-422": ("p-mock", "x-mock-error-422"),
    "stream-reset": ("p-stream-reset", "mock-chat"),
    "stream-stall": ("p-stall", "mock-chat"),
}


@dataclass(frozen=True)
class Env:
    base_url: str
    member: Member

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.member.inference_key}"}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        yield {
            "p-refused": refused_url(),
            "p-mock": stack.enter_context(running_mock()),
            "p-reset": stack.enter_context(broken_upstream(RESET_MID_BODY)),
            "p-not-json": stack.enter_context(broken_upstream(NOT_JSON)),
            "p-not-http": stack.enter_context(broken_upstream(NOT_HTTP)),
            "p-stream-reset": stack.enter_context(broken_upstream(STREAM_THEN_RESET)),
            # The first word at once, then one every 4 s: past the 1 s idle limit.
            "p-stall": stack.enter_context(running_mock(MockSettings(tokens_per_second=0.25))),
        }


@pytest.fixture
async def env(tmp_path: Path, upstreams: dict[str, str]) -> AsyncIterator[Env]:
    document: dict[str, Any] = {
        "providers": [
            {"slug": slug, "name": slug, "base_url": url, "timeout_s": 1, "connect_timeout_s": 1}
            for slug, url in upstreams.items()
        ],
        "models": [
            {
                "id": model,
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": slug,
                        "upstream_model": upstream_model,
                        "pricing": {"input_token": 0.01, "output_token": 0.01},
                    }
                ],
            }
            for model, (slug, upstream_model) in FAILURES.items()
        ],
    }
    registry = write_registry(tmp_path / "registry.yaml", document)
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    world = World(url)
    await world.migrate()
    member = await world.member("erin", "p1", credits_eur="1")
    try:
        with running_gateway(url, registry) as (base_url, _):
            yield Env(base_url, member)
    finally:
        await world.close()


async def chat(env: Env, model: str, **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{env.base_url}/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
            headers=env.headers(),
        )


# model → (client status, words the message carries)
MAPPING: dict[str, tuple[int, str]] = {
    "refused": (503, "p-refused: cannot connect"),
    "timeout": (504, "p-mock: timed out"),
    "reset": (502, "p-reset: connection lost before the answer was complete"),
    "not-json": (502, "p-not-json: malformed answer: not JSON"),
    "not-http": (502, "p-not-http: malformed answer"),
    "up-500": (502, "p-mock: upstream answered 500"),
    "up-502": (502, "p-mock: upstream answered 502"),
    "up-503": (503, "p-mock: upstream answered 503"),
    "up-504": (504, "p-mock: upstream answered 504"),
    "up-429": (503, "p-mock: upstream answered 429 (rate limited)"),
    "up-404": (502, "p-mock: upstream answered 404"),
    "up-401": (502, "p-mock: the provider rejected the gateway's credentials"),
}


@pytest.mark.parametrize("model", sorted(MAPPING))
async def test_upstream_failure_maps_to_its_documented_status(
    env: Env, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    status, words = MAPPING[model]
    with caplog.at_level(logging.INFO, logger="tollway.upstream"):
        response = await chat(env, model)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert error["code"] == "upstream_error"
    assert words in error["message"]
    assert not INTERNALS.search(error["message"]), error["message"]
    logged = [r for r in caplog.records if r.name == "tollway.upstream"]
    assert [r.levelno for r in logged] == [logging.WARNING]
    assert FAILURES[model][0] in logged[0].getMessage()


async def test_refused_connection_is_logged_with_its_address(
    env: Env, upstreams: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tollway.upstream"):
        response = await chat(env, "refused")
    assert response.status_code == 503
    port = upstreams["p-refused"].rsplit(":", 1)[1].split("/")[0]
    (record,) = [r for r in caplog.records if r.name == "tollway.upstream"]
    assert "p-refused" in record.getMessage()
    assert "ConnectError" in record.getMessage()  # the whole reason, for operators
    assert "Connection refused" in record.getMessage()
    assert port in record.getMessage()
    assert port not in response.text


async def test_upstream_validation_error_is_returned_as_is(env: Env) -> None:
    response = await chat(env, "up-422")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "mock_422"  # the upstream's own body


async def stream_events(env: Env, model: str) -> list[Any]:
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST",
            f"{env.base_url}/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers=env.headers(),
        ) as response,
    ):
        assert response.status_code == 200
        return [
            orjson.loads(line[6:])
            async for line in response.aiter_lines()
            if line.startswith("data: ") and line != "data: [DONE]"
        ]


@pytest.mark.parametrize(
    ("model", "message", "reason"),
    [
        (
            "stream-reset",
            "p-stream-reset: connection lost before the answer was complete",
            "error reading a body from connection",
        ),
        ("stream-stall", "p-stall: timed out", "TimeoutError"),
    ],
)
async def test_stream_broken_mid_way_ends_with_a_clean_error_event(
    env: Env, caplog: pytest.LogCaptureFixture, model: str, message: str, reason: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="tollway.upstream"):
        events = await stream_events(env, model)
    assert events[0]["choices"][0]["delta"]["content"]  # the stream had started
    assert events[-1]["error"]["message"] == message
    assert events[-1]["error"]["code"] == "upstream_error"
    logged = [r.getMessage() for r in caplog.records if r.name == "tollway.upstream"]
    assert len(logged) == 1
    assert FAILURES[model][0] in logged[0]
    assert reason in logged[0]
