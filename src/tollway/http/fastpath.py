"""The inference endpoints as plain ASGI: `POST /v1/chat/completions`, `/v1/embeddings`,
`/v1/messages` (and `/v1/messages/count_tokens`) and `/v1/responses` are served here,
without FastAPI's routing, dependency injection or request objects (the edge, `http/edge.py`,
dispatches to them; the FastAPI routes in `http/inference.py`, `http/messages.py` and
`http/responses.py` declare them for the OpenAPI document and answer through the same
handlers).

Each one: authenticate (before the body is read) → read the body within the limit → parse it
once (`gateway/request.py`, or a dialect's `request.py`) → `Gateway.handle` → the answer's
bytes as the gateway made them (Anthropic, Responses: translated), or the relay's chunks.
Errors are rendered as the app's exception handlers render them (`http/errors.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Final

import orjson
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tollway.dialects.anthropic.request import parse_messages
from tollway.dialects.anthropic.response import to_message
from tollway.dialects.anthropic.stream import AnthropicEvents
from tollway.dialects.responses.request import parse_responses
from tollway.dialects.responses.response import to_response
from tollway.dialects.responses.stream import ResponsesEvents
from tollway.errors import NotFound, TollwayError, Unauthorized, excerpt
from tollway.frozen import frozen
from tollway.gateway.auth import Principal
from tollway.gateway.request import (
    InferenceRequest,
    counted_prompt_tokens,
    parse_chat,
    parse_embeddings,
)
from tollway.gateway.stages import Served
from tollway.gateway.streaming import StreamRelay
from tollway.gateway.tally import Tally
from tollway.http._scope import EXCHANGE
from tollway.http.errors import render_tollway_error
from tollway.http.exchange import Exchange
from tollway.http.limits import read_body
from tollway.jsonbody import check_shape
from tollway.observe.record import Translation
from tollway.state import AppState

_JSON = (b"content-type", b"application/json")


class RelayResponse(StreamingResponse):
    """A stream that settles its reservation however the response ends, even when the
    client went away before the first chunk was sent. ``content`` is the relay's chunks as
    translated into another dialect (default: the relay's own OpenAI chunks)."""

    def __init__(self, relay: StreamRelay, content: AsyncIterator[bytes] | None = None) -> None:
        super().__init__(
            relay.iterate() if content is None else content,
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.relay.finalize()


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def anthropic_authorization(scope: Scope) -> str:
    """Anthropic clients send `x-api-key`; `Authorization: Bearer` works too."""
    key = header(scope, b"x-api-key")
    if key is not None:
        return f"Bearer {key}"
    authorization = header(scope, b"authorization")
    if authorization is None:
        raise Unauthorized("missing API key: send 'x-api-key' or 'Authorization: Bearer'")
    return authorization


async def _authenticate(state: AppState, authorization: str | None) -> Principal:
    with state.tracer.span("tollway.auth") as span:
        principal = await state.auth.inference(authorization)
        span.set("tollway.project_id", principal.project_id)
        span.set("tollway.key_id", principal.key_id)
    return principal


async def _send_json(send: Send, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += [(b"content-length", str(len(body)).encode()), _JSON]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    served: Served,
    relay: StreamRelay,
    content: AsyncIterator[bytes] | None = None,
) -> None:
    response = RelayResponse(relay, content)
    response.headers.update(served.headers)
    await response(scope, receive, send)


class _Begun:
    """An authenticated request whose body has been read: tallied from here on."""

    __slots__ = ("body", "principal", "state", "tally")

    def __init__(self, state: AppState, principal: Principal, tally: Tally, body: bytes) -> None:
        self.state = state
        self.principal = principal
        self.tally = tally
        self.body = body


async def _begin(
    scope: Scope, receive: Receive, endpoint: str, authorization: Callable[[Scope], str | None]
) -> _Begun:
    state: AppState = scope["app"].state.tollway
    principal = await _authenticate(state, authorization(scope))
    exchange: Exchange = scope[EXCHANGE]
    tally = exchange.inference(principal, endpoint)  # recorded from here on
    body = await read_body(receive)
    check_shape(body, state.settings.json_limits)  # before any parse: depth and number of values
    return _Begun(state, principal, tally, body)


def _openai_authorization(scope: Scope) -> str | None:
    return header(scope, b"authorization")


def openai_endpoint(
    endpoint: str, parse: Callable[[bytes], InferenceRequest]
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """`POST /v1/chat/completions` or `POST /v1/embeddings`."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            begun = await _begin(scope, receive, endpoint, _openai_authorization)
            parsed = parse(begun.body)
            begun.tally.model, begun.tally.stream = parsed.model, parsed.stream
            served = await begun.state.gateway.handle(begun.principal, parsed, begun.tally)
        except TollwayError as exc:
            await _refuse(scope, receive, send, exc)
            return
        if isinstance(served.result, StreamRelay):
            await _send_stream(scope, receive, send, served, served.result)
        else:
            await _send_json(send, served.result, served.headers)

    return serve


async def messages(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/messages` (Anthropic): translated onto the same gateway path."""
    try:
        begun = await _begin(scope, receive, "messages", anthropic_authorization)
        parsed = parse_messages(begun.body)
        inference = parsed.inference
        begun.tally.model, begun.tally.stream = inference.model, inference.stream
        begun.tally.translation = parsed.translation
        served = await begun.state.gateway.handle(begun.principal, inference, begun.tally)
    except TollwayError as exc:
        await _refuse(scope, receive, send, exc)
        return
    result = served.result
    if isinstance(result, StreamRelay):
        events = AnthropicEvents(parsed.stop_sequences, parsed.translation).translate(
            result.iterate()
        )
        await _send_stream(scope, receive, send, served, result, events)
        return
    message = to_message(orjson.loads(result), parsed.stop_sequences, parsed.translation)
    await _send_json(send, orjson.dumps(message), served.headers)


async def count_tokens(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/messages/count_tokens` (Anthropic): the gateway's own count of the prompt
    as translated — the count it bills by when an upstream reports no usage. Free: no
    reservation, no ledger row, no request log record (the log line names the key)."""
    try:
        state: AppState = scope["app"].state.tollway
        principal = await _authenticate(state, anthropic_authorization(scope))
        exchange: Exchange = scope[EXCHANGE]
        exchange.principal = principal
        headers = await state.gateway.limiter.admit_counting(principal)  # before the body
        parsed = parse_messages(await read_body(receive), counting=True)
        model = state.registry.model(parsed.inference.model)
        if model is None or model.kind != "chat":
            raise NotFound(
                f"model '{excerpt(parsed.inference.model)}' not found",
                param="model",
                code="model_not_found",
            )
        count = counted_prompt_tokens(parsed.inference)
    except TollwayError as exc:
        await _refuse(scope, receive, send, exc)
        return
    await _send_json(send, orjson.dumps({"input_tokens": count}), headers)


async def responses(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/responses` (OpenAI Responses): translated onto the same gateway path."""
    try:
        begun = await _begin(scope, receive, "responses", _openai_authorization)
        parsed = parse_responses(begun.body)
        inference = parsed.inference
        begun.tally.model, begun.tally.stream = inference.model, inference.stream
        begun.tally.translation = Translation.of([], list(parsed.dropped))
        served = await begun.state.gateway.handle(begun.principal, inference, begun.tally)
    except TollwayError as exc:
        await _refuse(scope, receive, send, exc)
        return
    result = served.result
    if isinstance(result, StreamRelay):
        events = ResponsesEvents(parsed).translate(result.iterate())
        await _send_stream(scope, receive, send, served, result, events)
        return
    response = to_response(orjson.loads(result), parsed)
    await _send_json(send, orjson.dumps(response), served.headers)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: TollwayError) -> None:
    """What the app's TollwayError handler does: note it for the log line, render it."""
    exchange: Exchange = scope[EXCHANGE]
    exchange.error = exc.message
    await render_tollway_error(scope["path"], exc)(scope, receive, send)


AsgiHandler = Callable[[Scope, Receive, Send], Awaitable[None]]


@frozen
class FastRoute:
    """One endpoint served here; it stands for the route in `scope["route"]` (the tracing
    middleware names the request's span after its `path`)."""

    path: str
    serve: AsgiHandler


CHAT_COMPLETIONS: Final = FastRoute(
    "/v1/chat/completions", openai_endpoint("chat.completions", parse_chat)
)
EMBEDDINGS: Final = FastRoute("/v1/embeddings", openai_endpoint("embeddings", parse_embeddings))
MESSAGES: Final = FastRoute("/v1/messages", messages)
COUNT_TOKENS: Final = FastRoute("/v1/messages/count_tokens", count_tokens)
RESPONSES: Final = FastRoute("/v1/responses", responses)
# The exact POST paths the edge serves itself.
FAST_ROUTES: Final[Mapping[str, FastRoute]] = MappingProxyType(
    {
        route.path: route
        for route in (CHAT_COMPLETIONS, EMBEDDINGS, MESSAGES, COUNT_TOKENS, RESPONSES)
    }
)


class Delegated(Response):
    """What a FastAPI route of these endpoints answers if it is ever reached (the edge
    serves their POSTs before routing): the same handler, so there is one implementation."""

    def __init__(self, route: FastRoute) -> None:
        super().__init__()
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.route.serve(scope, receive, send)
