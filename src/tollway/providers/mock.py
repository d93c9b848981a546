"""An OpenAI-compatible mock upstream for the tests, the demo and the benchmarks.

It is a raw ASGI app speaking orjson, so it costs next to nothing per request and the
benchmarks measure the gateway, not the mock. Reply text and usage are a pure function of
the request body (see `build_answer`: `n` choices, tool calls, JSON answers and stop
sequences in `tollway.providers.mock_choices`); tokens are counted with `tollway.providers.tokens`.

Endpoints: `POST /v1/chat/completions` (streaming and not), `POST /v1/embeddings`,
`GET /v1/models`, `GET /health`, `GET /_mock/stats` (request and stream counters of this
process, plus the last request body) and `POST /_mock/reset` (zero the counters). With
`api_key` set (`--require-key`), `/v1/` calls without `Authorization: Bearer <key>` get 401.

The completion bound is read like upstreams read it: `n_predict` (llama.cpp) or
`max_completion_tokens` (vLLM, SGLang) ahead of `max_tokens` (`requested_max_tokens`).

Test hooks, read from the request's `model` name so one process serves every behaviour:

- `mock-error-<status>` (400..599): answer that status with an OpenAI-shaped error body,
  e.g. model `x-mock-error-400` → 400 `invalid_request_error`, `x-mock-error-503` → 503.
- `mock-cut-<n>`: end a stream after n content chunks, without finish chunk or `[DONE]`.
- `mock-latency-<ms>`: wait that long before answering, on top of `latency_ms`.
- `mock-no-usage`: report no usage, as with `omit_usage`.

Token classes (cached, cache-written and reasoning tokens) follow the fixed rule of
`tollway.providers.mock_usage`: long prompts are half cached, `reasoning_effort` thinks.

Per-model pace (`MockSettings.paces`, `--demo-pace` for the demo's upstream models in
`DEMO_PACES`): a model with a `Pace` answers like a provider of that speed — a stream waits
`ttft_ms` before its first chunk and `1/tokens_per_second` between chunks, a whole answer
waits `ttft_ms + completion_tokens / tokens_per_second` — so the demo's providers, which
share one mock process, really differ in speed.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import importlib.util
import random
import struct
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import orjson
import uvicorn

from tollway.providers.mock_choices import StreamFrames, build_answer
from tollway.providers.mock_replies import (
    Hooks,
    MockRejection,
    embed,
    embedding_inputs,
    error_body,
    parse_hooks,
    requested_max_tokens,
    required_model,
)
from tollway.providers.mock_settings import MOCK_MODELS, MockSettings, MockStats, Pace
from tollway.providers.tokens import count_tokens

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Handler = Callable[[Receive, Send], Awaitable[None]]

_JSON_HEADERS = ((b"content-type", b"application/json"),)
_SSE_HEADERS = (
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
)
_DONE = b"data: [DONE]\n\n"


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def _read_json(receive: Receive) -> tuple[bytes, dict[str, Any]]:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MockRejection(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise MockRejection(400, "request body must be a JSON object")
    return raw, body


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _pause(seconds: float, gone: asyncio.Event) -> bool:
    """Sleep, waking early when the client goes away; False once it has gone."""
    if seconds > 0 and not gone.is_set():
        try:
            await asyncio.wait_for(gone.wait(), seconds)
        except TimeoutError:
            pass
    return not gone.is_set()


class MockProvider:
    """The ASGI app; all state (counters, dice) lives on the instance."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.stats = MockStats()
        self._random = random.Random(settings.seed)
        self._routes: Mapping[tuple[str, str], Handler] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
            ("GET", "/health"): self._health,
            ("GET", "/_mock/stats"): self._stats,
            ("POST", "/_mock/reset"): self._reset,
        }
        self._paths = frozenset(path for _, path in self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is not None and not self._authorised(scope):
            await _respond(send, 401, error_body(401, "invalid or missing API key"))
        elif handler is not None:
            await handler(receive, send)
        elif scope["path"] in self._paths:
            await _respond(send, 405, error_body(405, "method not allowed"))
        else:
            await _respond(send, 404, error_body(404, f"no route {scope['path']}"))

    def _authorised(self, scope: Scope) -> bool:
        expected = self.settings.api_key
        if expected is None or not scope["path"].startswith("/v1/"):
            return True
        sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(sent, f"Bearer {expected}".encode())

    async def _admit(self, receive: Receive) -> tuple[bytes, dict[str, Any], str, Hooks]:
        """Read the body and apply latency and error knobs common to every inference call."""
        self.stats.requests += 1
        raw, body = await _read_json(receive)
        self.stats.last_request = body
        model = required_model(body)
        hooks = parse_hooks(model)
        delay = (self.settings.latency_ms + hooks.latency_ms) / 1000
        if delay > 0:
            await asyncio.sleep(delay)
        if hooks.error_status is not None:
            raise MockRejection(hooks.error_status, f"mock error {hooks.error_status} requested")
        rate = self.settings.error_rate
        if rate > 0 and self._random.random() < rate:
            raise MockRejection(self.settings.error_status, "mock random failure")
        return raw, body, model, hooks

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            raw, body, model, hooks = await self._admit(receive)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise MockRejection(400, "'messages' must be a non-empty list")
            answer = build_answer(raw, body, requested_max_tokens(body))
        except MockRejection as rejection:
            await _respond(send, rejection.status, error_body(rejection.status, str(rejection)))
            return
        except ClientGone:
            return
        omit_usage = self.settings.omit_usage or hooks.omit_usage
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            stream = StreamFrames(model, answer, include_usage and not omit_usage, hooks.cut_after)
            await self._stream(receive, send, stream, self._pace(model))
            return
        completion = answer.completion(model, with_usage=not omit_usage)
        pace = self.settings.paces.get(model)
        if pace is not None:
            gone = asyncio.Event()
            watcher = asyncio.create_task(_watch_disconnect(receive, gone))
            try:
                if not await _pause(pace.whole_answer_s(answer.usage()["completion_tokens"]), gone):
                    return
            finally:
                watcher.cancel()
                await asyncio.wait([watcher])
        await _respond(send, 200, orjson.dumps(completion))

    def _pace(self, model: str) -> Pace:
        pace = self.settings.paces.get(model)
        if pace is not None:
            return pace
        return Pace(self.settings.ttft_ms, self.settings.tokens_per_second)

    async def _stream(self, receive: Receive, send: Send, stream: StreamFrames, pace: Pace) -> None:
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        self.stats.open_streams += 1
        outcome = "aborted"
        try:
            outcome = await self._deliver(send, stream, gone, pace)
        except OSError:
            pass  # the transport failed under us: the client is gone
        finally:
            watcher.cancel()
            await asyncio.wait([watcher])
            self.stats.open_streams -= 1
            if outcome == "completed":
                self.stats.completed_streams += 1
            elif outcome == "cut":
                self.stats.cut_streams += 1
            else:
                self.stats.aborted_streams += 1

    async def _deliver(
        self, send: Send, stream: StreamFrames, gone: asyncio.Event, pace: Pace
    ) -> str:
        """Send the stream chunk by chunk; returns "completed", "cut" or "aborted"."""
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        cut_after = self.settings.cut_stream_after
        if stream.cut_after is not None:
            cut_after = stream.cut_after
        tps = pace.tokens_per_second
        for index, event in enumerate(stream.token_events()):
            if cut_after is not None and index >= cut_after:
                await send({"type": "http.response.body", "body": b""})
                return "cut"
            delay = pace.ttft_ms / 1000 if index == 0 else (1 / tps if tps > 0 else 0)
            if not await _pause(delay, gone):
                return "aborted"
            await send(event)
        if gone.is_set():
            return "aborted"
        for event in stream.closing_events():
            await send(event)
        await send({"type": "http.response.body", "body": _DONE})
        return "completed"

    async def _embeddings(self, receive: Receive, send: Send) -> None:
        try:
            _, body, model, hooks = await self._admit(receive)
            texts = embedding_inputs(body.get("input"))
            dim = body.get("dimensions") or self.settings.embedding_dim
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise MockRejection(400, "'dimensions' must be a positive integer")
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise MockRejection(400, "'encoding_format' must be 'float' or 'base64'")
        except MockRejection as rejection:
            await _respond(send, rejection.status, error_body(rejection.status, str(rejection)))
            return
        except ClientGone:
            return
        data = []
        for index, text in enumerate(texts):
            vector: Any = embed(text, dim)
            if encoding == "base64":
                vector = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        result: dict[str, Any] = {"object": "list", "data": data, "model": model}
        if not (self.settings.omit_usage or hooks.omit_usage):
            tokens = sum(count_tokens(text) for text in texts)
            result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        await _respond(send, 200, orjson.dumps(result))

    async def _models(self, receive: Receive, send: Send) -> None:
        data = [
            {"id": model, "object": "model", "created": 0, "owned_by": "tollway-mock"}
            for model in MOCK_MODELS
        ]
        await _respond(send, 200, orjson.dumps({"object": "list", "data": data}))

    async def _health(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, b'{"status":"ok"}')

    async def _stats(self, receive: Receive, send: Send) -> None:
        await _respond(send, 200, orjson.dumps(self.stats.as_dict()))

    async def _reset(self, receive: Receive, send: Send) -> None:
        self.stats = MockStats(open_streams=self.stats.open_streams)
        await _respond(send, 200, orjson.dumps(self.stats.as_dict()))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_mock_app(settings: MockSettings) -> MockProvider:
    return MockProvider(settings)


def uvicorn_config(app: MockProvider, host: str, port: int) -> uvicorn.Config:
    """The uvicorn setup the mock always runs with: fastest loop, quiet, no websockets."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http="httptools",
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


def run_mock_provider(settings: MockSettings, host: str, port: int) -> None:
    """Serve the mock until interrupted (the `tollway mock-provider` command)."""
    uvicorn.Server(uvicorn_config(create_mock_app(settings), host, port)).run()
