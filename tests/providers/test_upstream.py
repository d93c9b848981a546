"""The upstream client against real servers on loopback: SSE events however they are cut,
and failures translated at the seam."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.support.broken_upstream import (
    base_url,
    broken_upstream,
    chunked_sse,
    idle_closing_upstream,
    kept_alive_json,
    refused_url,
)
from tests.support.gateway import write_registry
from tollway.providers.redact import Redactor
from tollway.providers.registry import Provider, load_registry
from tollway.providers.upstream import UpstreamClient
from tollway.providers.upstream_errors import UpstreamError


def provider_at(tmp_path: Path, url: str) -> Provider:
    document: dict[str, object] = {
        "providers": [{"slug": "up", "name": "up", "base_url": url, "timeout_s": 5}],
        "models": [
            {
                "id": "m",
                "context_size": 4096,
                "endpoints": [
                    {
                        "provider": "up",
                        "upstream_model": "m",
                        "pricing": {"input_token": 1, "output_token": 1},
                    }
                ],
            }
        ],
    }
    provider = load_registry(write_registry(tmp_path / "r.yaml", document)).provider("up")
    assert provider is not None
    return provider


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(limit_per_host=4, redactor=Redactor())
    try:
        yield upstream
    finally:
        await upstream.close()


async def read_events(client: UpstreamClient, provider: Provider) -> list[bytes]:
    stream = await client.open_stream(provider, "/chat/completions", b"{}")
    try:
        return [event async for event in stream.events()]
    finally:
        stream.close()


async def test_an_event_longer_than_aiohttp_lines_is_read_whole(
    client: UpstreamClient, tmp_path: Path
) -> None:
    # A whole long reply in one event (1.5 MB), as some upstreams send it, cut into
    # HTTP chunks that split lines anywhere; plus comments and CRLF line ends.
    big = orjson.dumps({"choices": [{"delta": {"content": "x" * 1_500_000}}]})
    body = b": keep-alive\r\n\r\ndata: " + big + b'\r\n\r\ndata: {"n":2}\n\ndata: [DONE]\n\n'
    with broken_upstream(chunked_sse(body, size=65_537)) as url:
        events = await read_events(client, provider_at(tmp_path, url))
    assert events == [big, b'{"n":2}', b"[DONE]"]


async def test_an_event_without_a_line_end_before_the_close_is_still_read(
    client: UpstreamClient, tmp_path: Path
) -> None:
    with broken_upstream(chunked_sse(b"data: {}\n\ndata: [DONE]", size=5)) as url:
        events = await read_events(client, provider_at(tmp_path, url))
    assert events == [b"{}", b"[DONE]"]


async def test_refused_connection_names_the_provider_only(
    client: UpstreamClient, tmp_path: Path
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await client.post_json(provider_at(tmp_path, refused_url()), "/chat/completions", b"{}")
    assert caught.value.status == 503
    assert caught.value.message == "up: cannot connect"


def _answer(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
    return (
        head.encode() + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
    )


# A provider that echoes the request's headers in its error: the gateway's own upstream key.
ECHOED = orjson.dumps(
    {
        "error": {"message": "bad request; got Authorization: Bearer sk-upstream-SECRET-123456"},
        "request": {"headers": {"x-api-key": "SECRET-987654"}},
    }
)


@pytest.mark.parametrize(
    ("status", "code"), [("500 Internal Server Error", 502), ("422 Unprocessable", 422)]
)
async def test_echoed_credentials_reach_neither_the_log_nor_the_client(
    client: UpstreamClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: str,
    code: int,
) -> None:
    caplog.set_level(logging.INFO, logger="tollway.upstream")
    with broken_upstream(_answer(status, ECHOED)) as url, pytest.raises(UpstreamError) as caught:
        await client.post_json(provider_at(tmp_path, url), "/chat/completions", b"{}")
    assert caught.value.status == code
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "answered" in logged  # the failure is logged, with its body
    for text in (logged, caught.value.message):
        assert "SECRET" not in text and "sk-upstream" not in text, text


# -- a kept-alive connection the provider closed as the gateway sent on it -----------------

ANSWER = orjson.dumps({"id": "c1", "object": "chat.completion", "choices": []})
STREAM = chunked_sse(b'data: {"id":"c1","choices":[]}\n\ndata: [DONE]\n\n', size=64)


async def test_a_request_on_a_connection_closed_while_idle_is_sent_again_on_a_new_one(
    client: UpstreamClient, tmp_path: Path
) -> None:
    # Each connection answers one request, then hangs up on the next without a byte: the
    # second request meets the pooled connection the provider has just closed.
    with idle_closing_upstream(kept_alive_json(ANSWER)) as server:
        provider = provider_at(tmp_path, base_url(server))
        for _ in range(3):
            answer = await client.post_json(provider, "/chat/completions", b"{}")
            assert answer == orjson.loads(ANSWER)
        assert (server.connections, server.requests) == (3, 5)


async def test_a_stream_on_a_connection_closed_while_idle_is_opened_again_on_a_new_one(
    client: UpstreamClient, tmp_path: Path
) -> None:
    with idle_closing_upstream(STREAM) as server:
        provider = provider_at(tmp_path, base_url(server))
        for _ in range(3):
            assert await read_events(client, provider) == [b'{"id":"c1","choices":[]}', b"[DONE]"]
        assert (server.connections, server.requests) == (3, 5)


async def test_a_provider_that_hangs_up_on_every_request_is_tried_twice_not_more(
    client: UpstreamClient, tmp_path: Path
) -> None:
    with idle_closing_upstream(b"", answers=0) as server:
        provider = provider_at(tmp_path, base_url(server))
        with pytest.raises(UpstreamError) as caught:
            await client.post_json(provider, "/chat/completions", b"{}")
        assert (caught.value.status, caught.value.message) == (
            502,
            "up: connection lost before the answer was complete",
        )
        assert server.requests == 2
        with pytest.raises(UpstreamError):
            await client.open_stream(provider, "/chat/completions", b"{}")
        assert server.requests == 4
