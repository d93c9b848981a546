from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.mock_server import (
    fetch_mock_stats,
    mock_root,
    running_mock,
    running_mock_app,
    wait_for_mock_stats,
)
from tollway.providers.mock_replies import DEFAULT_REPLY_TOKENS
from tollway.providers.mock_settings import MockSettings
from tollway.providers.tokens import count_tokens

MESSAGES = [
    {"role": "system", "content": "you are terse"},
    {"role": "user", "content": "tell me a story about tollways"},
]
SDK_MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "you are terse"},
    {"role": "user", "content": "tell me a story about tollways"},
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_mock() as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        yield http


def chat(client: httpx.Client, **fields: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": "m", "messages": MESSAGES, **fields})


def stream_events(client: httpx.Client, **fields: Any) -> list[Any]:
    """Every SSE data payload of a streamed chat, decoded; `[DONE]` stays a string."""
    body = {"model": "m", "messages": MESSAGES, "stream": True, **fields}
    events: list[Any] = []
    with client.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content", "")
        for event in events
        if isinstance(event, dict)
        for choice in event["choices"]
    )


def test_chat_is_deterministic_and_echoes_the_model(client: httpx.Client) -> None:
    first, second = chat(client, model="any-model-at-all"), chat(client, model="any-model-at-all")
    assert first.status_code == 200
    assert first.json() == {**second.json(), "created": first.json()["created"]}
    body = first.json()
    assert body["model"] == "any-model-at-all"
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_reply_depends_on_the_last_message(client: httpx.Client) -> None:
    other = [{"role": "user", "content": "something else entirely"}]
    one = chat(client).json()["choices"][0]["message"]["content"]
    two = chat(client, messages=other).json()["choices"][0]["message"]["content"]
    assert one != two


def test_usage_counts_words_plus_three_per_message(client: httpx.Client) -> None:
    body = chat(client).json()
    content = body["choices"][0]["message"]["content"]
    assert body["usage"] == {
        "prompt_tokens": (3 + 3) + (6 + 3),
        "completion_tokens": DEFAULT_REPLY_TOKENS,
        "total_tokens": 15 + DEFAULT_REPLY_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert count_tokens(content) == DEFAULT_REPLY_TOKENS


def test_content_parts_count_like_strings(client: httpx.Client) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "tell me a story"}]}]
    plain = [{"role": "user", "content": "tell me a story"}]
    assert chat(client, messages=parts).json()["usage"]["prompt_tokens"] == 4 + 3
    assert (
        chat(client, messages=parts).json()["choices"]
        == chat(client, messages=plain).json()["choices"]
    )


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_the_reply_with_finish_reason_length(
    client: httpx.Client, field: str
) -> None:
    full = chat(client).json()["choices"][0]["message"]["content"]
    body = chat(client, **{field: 5}).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == " ".join(full.split()[:5])
    assert body["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("fields", "honoured"),
    [
        ({"max_tokens": 9, "max_completion_tokens": 4}, 4),  # vLLM, SGLang
        ({"max_tokens": 4, "max_completion_tokens": 9}, 9),
        ({"max_tokens": 9, "n_predict": 3}, 3),  # llama.cpp
        ({"max_tokens": 5, "max_completion_tokens": None}, 5),
    ],
)
def test_the_bound_is_read_like_upstreams_do(
    client: httpx.Client, fields: dict[str, Any], honoured: int
) -> None:
    body = chat(client, **fields).json()
    assert body["usage"]["completion_tokens"] == honoured


def test_max_tokens_above_the_reply_length_stops_normally(client: httpx.Client) -> None:
    body = chat(client, max_tokens=DEFAULT_REPLY_TOKENS).json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == DEFAULT_REPLY_TOKENS


def test_invalid_max_tokens_is_a_400(client: httpx.Client) -> None:
    response = chat(client, max_tokens=0)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_stream_content_equals_the_non_streamed_content(client: httpx.Client) -> None:
    events = stream_events(client, max_tokens=7)
    expected = chat(client, max_tokens=7).json()["choices"][0]["message"]["content"]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in chunk["choices"][0]["delta"] for chunk in chunks[1:])
    content_chunks = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(content_chunks) == 7
    assert streamed_text(events) == expected
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert all("usage" not in chunk for chunk in chunks)
    assert all(
        chunk["model"] == "m" and chunk["object"] == "chat.completion.chunk" for chunk in chunks
    )


def test_stream_include_usage_adds_a_final_usage_chunk(client: httpx.Client) -> None:
    events = stream_events(client, stream_options={"include_usage": True})
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == chat(client).json()["usage"]
    assert all(event["usage"] is None for event in events[:-2])


def test_a_long_prompt_is_half_cached_and_a_quarter_cache_written(client: httpx.Client) -> None:
    # 1021 words + 3 per message: 1024 prompt tokens, the first size that is cached.
    long = [{"role": "user", "content": " ".join(["word"] * 1021)}]
    usage = chat(client, messages=long).json()["usage"]
    assert usage["prompt_tokens"] == 1024
    assert usage["prompt_tokens_details"] == {"cached_tokens": 512, "cache_write_tokens": 256}
    shorter = [{"role": "user", "content": " ".join(["word"] * 1020)}]
    usage = chat(client, messages=shorter).json()["usage"]
    assert usage["prompt_tokens"] == 1023
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}


@pytest.mark.parametrize(("effort", "reasoning"), [("low", 16), ("high", 256), ("odd", 64)])
def test_reasoning_effort_adds_reasoning_tokens_to_the_completion(
    client: httpx.Client, effort: str, reasoning: int
) -> None:
    plain = chat(client).json()
    thought = chat(client, reasoning_effort=effort).json()
    assert thought["choices"][0]["message"] == plain["choices"][0]["message"]
    usage = thought["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": reasoning}
    assert usage["completion_tokens"] == DEFAULT_REPLY_TOKENS + reasoning
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Streamed: the same usage in the final chunk.
    events = stream_events(client, reasoning_effort=effort, stream_options={"include_usage": True})
    assert events[-2]["usage"] == usage


def test_reasoning_stays_within_max_tokens(client: httpx.Client) -> None:
    usage = chat(client, reasoning_effort="high", max_tokens=DEFAULT_REPLY_TOKENS + 5).json()[
        "usage"
    ]
    assert usage["completion_tokens"] == DEFAULT_REPLY_TOKENS + 5
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 5}


def test_embeddings_are_deterministic_unit_vectors(client: httpx.Client) -> None:
    one = client.post("/embeddings", json={"model": "e", "input": "hello world"}).json()
    many = client.post("/embeddings", json={"model": "e", "input": ["hello world", "bye"]}).json()
    assert one["object"] == "list" and one["model"] == "e"
    vector = one["data"][0]["embedding"]
    assert len(vector) == 8
    assert abs(sum(v * v for v in vector) - 1) < 1e-9
    assert many["data"][0]["embedding"] == vector
    assert many["data"][1]["embedding"] != vector
    assert [item["index"] for item in many["data"]] == [0, 1]
    assert many["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


def test_embeddings_honour_dimensions_and_base64(client: httpx.Client) -> None:
    plain = client.post("/embeddings", json={"model": "e", "input": "x", "dimensions": 4}).json()
    packed = client.post(
        "/embeddings",
        json={"model": "e", "input": "x", "dimensions": 4, "encoding_format": "base64"},
    ).json()
    decoded = struct.unpack("<4f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(plain["data"][0]["embedding"], rel=1e-6)


def test_embeddings_reject_bad_input(client: httpx.Client) -> None:
    response = client.post("/embeddings", json={"model": "e", "input": [1, 2]})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("model", "status", "kind"),
    [
        ("x-mock-error-400", 400, "invalid_request_error"),
        ("x-mock-error-401", 401, "authentication_error"),
        ("mock-error-429-y", 429, "rate_limit_error"),
        ("x-mock-error-503", 503, "server_error"),
    ],
)
def test_error_hook_answers_the_requested_status(
    client: httpx.Client, model: str, status: int, kind: str
) -> None:
    for path, body in [
        ("/chat/completions", {"model": model, "messages": MESSAGES}),
        ("/chat/completions", {"model": model, "messages": MESSAGES, "stream": True}),
        ("/embeddings", {"model": model, "input": "x"}),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == status
        error = response.json()["error"]
        assert error["type"] == kind
        assert set(error) == {"message", "type", "code", "param"}


def test_bad_requests_are_openai_shaped_400s(client: httpx.Client) -> None:
    assert client.post("/chat/completions", content=b"{not json").status_code == 400
    assert client.post("/chat/completions", json={"model": "m"}).status_code == 400
    response = client.post("/chat/completions", json={"messages": MESSAGES})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "'model' is required"


def test_models_health_and_unknown_routes(client: httpx.Client, base_url: str) -> None:
    models = client.get("/models").json()
    assert models["object"] == "list" and len(models["data"]) >= 2
    assert httpx.get(f"{mock_root(base_url)}/health").json() == {"status": "ok"}
    assert client.get("/nope").status_code == 404
    assert client.get("/chat/completions").status_code == 405


def test_cut_hook_ends_the_stream_without_done(client: httpx.Client) -> None:
    events = stream_events(client, model="m-mock-cut-2", stream_options={"include_usage": True})
    assert "[DONE]" not in events
    assert (
        streamed_text(events).split()
        == chat(client).json()["choices"][0]["message"]["content"].split()[:2]
    )
    assert all(event["choices"][0]["finish_reason"] is None for event in events)


def test_no_usage_hook(client: httpx.Client) -> None:
    assert "usage" not in chat(client, model="m-mock-no-usage").json()


def test_openai_sdk_talks_to_the_mock(base_url: str) -> None:
    with openai.OpenAI(base_url=base_url, api_key="unused") as sdk, httpx.Client() as http:
        reply = sdk.chat.completions.create(model="m", messages=SDK_MESSAGES, max_tokens=3)
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == 3
        stream = sdk.chat.completions.create(model="m", messages=SDK_MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        plain = http.post(
            f"{base_url}/chat/completions", json={"model": "m", "messages": SDK_MESSAGES}
        )
        assert text == plain.json()["choices"][0]["message"]["content"]
        vectors = sdk.embeddings.create(model="e", input=["a b", "c"])  # base64 on the wire
        assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="x-mock-error-400", messages=SDK_MESSAGES)


def test_omit_usage_setting_drops_usage_everywhere() -> None:
    with running_mock(MockSettings(omit_usage=True)) as url, httpx.Client(base_url=url) as client:
        assert "usage" not in chat(client).json()
        events = stream_events(client, stream_options={"include_usage": True})
        assert events[-1] == "[DONE]"
        assert all(event["choices"] and "usage" not in event for event in events[:-1])
        embedding = client.post("/embeddings", json={"model": "e", "input": "x"}).json()
        assert "usage" not in embedding


def test_cut_stream_after_setting() -> None:
    with (
        running_mock(MockSettings(cut_stream_after=3)) as url,
        httpx.Client(base_url=url) as client,
    ):
        events = stream_events(client)
        assert "[DONE]" not in events
        assert len(events) == 3
        assert wait_for_mock_stats(url, "cut_streams", 1)["cut_streams"] == 1


def test_error_rate_uses_the_error_status() -> None:
    settings = MockSettings(error_rate=1.0, error_status=502)
    with running_mock(settings) as url, httpx.Client(base_url=url) as client:
        assert chat(client).status_code == 502
        assert chat(client).json()["error"]["type"] == "server_error"
    half = MockSettings(error_rate=0.5, seed=7)
    with running_mock(half) as url, httpx.Client(base_url=url) as client:
        statuses = {chat(client).status_code for _ in range(40)}
        assert statuses == {200, 500}


def test_latency_and_pacing_knobs() -> None:
    settings = MockSettings(latency_ms=150, ttft_ms=100, tokens_per_second=100)
    with running_mock(settings) as url, httpx.Client(base_url=url) as client:
        start = time.monotonic()
        chat(client)
        assert time.monotonic() - start >= 0.15
        start = time.monotonic()
        stream_events(client)
        # 150 ms latency + 100 ms ttft + 15 gaps of 10 ms
        assert time.monotonic() - start >= 0.35


def test_stats_count_requests_and_streams() -> None:
    with running_mock() as url, httpx.Client(base_url=url) as client:
        chat(client)
        stream_events(client)
        client.post("/embeddings", json={"model": "e", "input": "x"})
        stats = wait_for_mock_stats(url, "completed_streams", 1)
        assert stats["requests"] == 3
        assert stats["open_streams"] == 0 and stats["aborted_streams"] == 0
        assert stats["last_request"] == {"model": "e", "input": "x"}
        reset = client.post(f"{mock_root(url)}/_mock/reset").json()
        assert reset["requests"] == 0 and reset["completed_streams"] == 0


def test_client_disconnect_mid_stream_counts_as_aborted() -> None:
    settings = MockSettings(tokens_per_second=20)  # 16 words take ~0.75 s
    with running_mock_app(settings) as (url, app), httpx.Client(base_url=url) as client:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with client.stream("POST", "/chat/completions", json=body) as response:
            lines = response.iter_lines()  # held: dropping it would close the connection
            assert next(lines).startswith("data: ")
            assert fetch_mock_stats(url)["open_streams"] == 1
        # Leaving the block closes the connection with most of the stream unread.
        stats = wait_for_mock_stats(url, "aborted_streams", 1)
        assert stats["aborted_streams"] == 1
        assert stats["open_streams"] == 0 and stats["completed_streams"] == 0
        assert app.stats.aborted_streams == 1


def test_required_key_is_checked_on_v1_calls_only() -> None:
    with running_mock(MockSettings(api_key="k-right")) as url:
        assert httpx.get(f"{url}/models").status_code == 401
        wrong = httpx.get(f"{url}/models", headers={"Authorization": "Bearer k-wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["type"] == "authentication_error"
        chat = httpx.post(f"{url}/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert chat.status_code == 401
        right = httpx.get(f"{url}/models", headers={"Authorization": "Bearer k-right"})
        assert right.status_code == 200
        assert "demo-chat" in {m["id"] for m in right.json()["data"]}
        assert httpx.get(f"{mock_root(url)}/health").status_code == 200
